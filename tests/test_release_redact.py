"""Free-text redaction: planted personal data in Russian and English, clean text untouched."""

from __future__ import annotations

import pytest

from volna.release.redact import Redactor


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


PHONES = [
    "+7 (912) 345-67-89",
    "8 912 345 67 89",
    "+995 555 12 34 56",
    "+90 532 123 45 67",
    "+49 1512 3456789",
    "+380 67 123 4567",
    "+375 29 123-45-67",
    "+7 701 123 4567",
    "+374 91 123456",
    "+381 64 1234567",
    "+972 52-123-4567",
    "89123456789",
]


@pytest.mark.parametrize("phone", PHONES)
def test_phones_in_many_national_formats(redactor, phone):
    assert redactor.redact_one(f"Мой номер {phone}, звоните.") == "Мой номер [PHONE], звоните."
    assert redactor.redact_one(f"Call me at {phone} after six") == "Call me at [PHONE] after six"


PLANTED = [
    ("пишите ivan.petrov@mail.ru", "пишите [EMAIL]"),
    ("email: john_smith+news@gmail.com.", "email: [EMAIL]."),
    ("мой телеграм @ivan_sidorov", "мой телеграм [TELEGRAM]"),
    ("канал t.me/okrussians_chat и https://t.me/joinchat/abc", "канал [TELEGRAM] и [TELEGRAM]"),
    ("см. https://vk.com/id12345, а также www.example.org/page", "см. [URL], а также [URL]"),
    ("сайт mysite.ru", "сайт [URL]"),
    ("Меня зовут Иван Петров, живу в Тбилиси.", "Меня зовут [PERSON], живу в [PLACE]."),
    ("Работал в Газпроме до 2022 года.", "Работал в [ORG] до 2022 года."),
    ("Маша и Петя помогли с переездом", "[PERSON] и [PERSON] помогли с переездом"),
    ("Анна Иванова", "[PERSON]"),
    ("My friend John Smith helped me.", "My friend [PERSON] helped me."),
    ("I worked with Ivan Petrov and Anna Ivanova.", "I worked with [PERSON] and [PERSON]."),
    ("Petrov Ivan", "[PERSON]"),
    ("Ask Dr. Smith", "Ask Dr. [PERSON]"),
    ("Я говорил с John Smith вчера", "Я говорил с [PERSON] вчера"),
    ("I talked to Shevchenko yesterday", "I talked to [PERSON] yesterday"),
]


@pytest.mark.parametrize(("text", "expected"), PLANTED)
def test_planted_personal_data_is_caught(redactor, text, expected):
    assert redactor.redact_one(text) == expected


CLEAN = [
    "Работал в IT, уехал в 2022 году.",
    "Зарплата 1500 долларов, аренда 800 евро.",
    "Уехал 24.02.2022, вернулся 01.03.2023.",
    "Фриланс, дизайн интерфейсов",
    "Сантехник",
    "ИП, 2019-2022",
    "In 2023 I worked for a small company as a designer.",
    "The rent is 1200 EUR per month since March 2022.",
    "Prices rose by 30% between 2021 and 2023.",
    "Freelance translation, mostly technical documents.",
    "Before leaving I was a teacher at a secondary school.",
    "I will stay here; maybe I will move on in May.",
    "",
]


@pytest.mark.parametrize("text", CLEAN)
def test_clean_text_is_left_unchanged(redactor, text):
    assert redactor.redact_one(text) == text


def test_identical_texts_redacted_once_and_counted(redactor):
    texts = ["пишите a@b.ru"] * 3 + [None, "ок"]
    out, counts = redactor.redact(texts)
    assert out == ["пишите [EMAIL]"] * 3 + [None, "ок"]
    assert counts == {"EMAIL": 3}
