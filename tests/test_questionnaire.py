"""The questionnaire model and volna's YAML format."""

from __future__ import annotations

import pytest

from volna import Choice, Question, Questionnaire, QuestionnaireError, Section
from volna.questionnaire.countries import country_codes, country_lookup, country_name

EVERY_TYPE = """
volna: 1
id: every-type
version: "2024-01"
title: {ru: Все типы, en: Every type}
languages: [ru, en]
default_language: ru
choice_lists:
  agree:
    - {code: "1", label: {ru: Совсем нет, en: Not at all}, value: 1}
    - {code: "2", label: {ru: Скорее нет, en: Rather not}, value: 2}
    - {code: "3", label: {ru: Скорее да, en: Rather yes}, value: 3}
    - {code: dk, label: {ru: Затрудняюсь ответить, en: "Don't know"}, missing: true}
paradata:
  - {name: respondent_id, type: id}
  - {name: duration_sec, type: duration}
questions:
  - {name: intro, type: note, label: {ru: Спасибо!, en: Thank you!}}
  - section: departure
    label: {ru: Отъезд, en: Departure}
    questions:
      - name: left
        type: single
        label: {ru: "Вы уехали?", en: "Did you leave?"}
        required: true
        choices:
          - {code: "yes", label: {ru: Да, en: "Yes"}}
          - {code: "no", label: {ru: Нет, en: "No"}}
      - name: destination
        type: country
        label: {ru: Страна, en: Country}
        relevant: "${left} = 'yes'"
      - name: left_on
        type: date
        min: 2022-02-24
        max: 2022-12-31
      - section: work
        label: {ru: Работа, en: Work}
        relevant: "${left} = 'yes'"
        questions:
          - name: sector
            type: single
            choices:
              - {code: it, label: {ru: ИТ, en: IT}}
              - {code: other, label: {ru: Другое, en: Other}, other: true}
  - name: fears
    type: multiple
    label: {ru: "Чего вы боитесь?", en: "What do you fear?"}
    hint: {ru: Отметьте все подходящие, en: Select all that apply}
    required: "${left} = 'yes'"
    required_message: {ru: Ответьте, en: Please answer}
    choices:
      - {code: persecution, label: {ru: Преследования, en: Persecution}}
      - {code: conscription, label: {ru: Мобилизации, en: Conscription}}
      - {code: none, label: {ru: Ничего из этого, en: None of these}, exclusive: true}
  - {name: living, type: scale, choices: agree, label: {ru: Жизнь, en: Living}}
  - name: age
    type: integer
    min: 18
    max: 99
    constraint: ". != 50"
    constraint_message: {ru: Не 50, en: Not 50}
  - {name: income, type: decimal, min: 0}
  - {name: comment, type: text, appearance: multiline}
  - name: rallies_before
    type: single
    period: before
    choices:
      - {code: "yes", label: {ru: Да, en: "Yes"}}
      - {code: "no", label: {ru: Нет, en: "No"}}
  - name: rallies_after
    type: single
    period: after
    paired_with: rallies_before
    choices:
      - {code: "yes", label: {ru: Да, en: "Yes"}}
      - {code: "no", label: {ru: Нет, en: "No"}}
"""


@pytest.fixture
def every_type() -> Questionnaire:
    return Questionnaire.loads(EVERY_TYPE, "every.yaml")


def test_every_type_loads_with_its_columns(every_type: Questionnaire) -> None:
    q = every_type
    assert [x.type for x in q.questions][:4] == ["note", "single", "country", "date"]
    assert q.columns == (
        "respondent_id",
        "duration_sec",
        "left",
        "destination",
        "left_on",
        "sector",
        "sector_other",
        "fears/persecution",
        "fears/conscription",
        "fears/none",
        "living",
        "age",
        "income",
        "comment",
        "rallies_before",
        "rallies_after",
    )
    assert q["intro"].columns == ()
    assert q["left"].label("en") == "Did you leave?"
    assert q["left"].choice("yes").label("ru") == "Да"
    assert q["fears"].choice("none").exclusive
    assert q["fears"].hints["en"] == "Select all that apply"
    assert q["fears"].required == "${left} = 'yes'"
    assert q["living"].choice_list == "agree"
    assert q["living"].scale_codes == ("1", "2", "3")
    assert q["living"].choice("dk").missing
    assert q["age"].minimum == 18 and q["age"].maximum == 99
    assert q["left_on"].minimum == "2022-02-24"
    assert q["sector"].other_column == "sector_other"
    assert q["sector"].section == ("departure", "work")
    assert q.title["en"] == "Every type" and q.version == "2024-01"
    assert q.multiple_choice == (q["fears"],)
    assert [s.name for s in q.sections] == ["departure", "work"]


def test_relevance_inherits_from_sections(every_type: Questionnaire) -> None:
    assert every_type.relevance("sector") == ["${left} = 'yes'"]
    assert every_type.relevance("destination") == ["${left} = 'yes'"]
    assert every_type.relevance("age") == []


def test_pairs_are_found_once_in_order(every_type: Questionnaire) -> None:
    (pair,) = every_type.pairs
    assert (pair.first.name, pair.second.name) == ("rallies_before", "rallies_after")
    assert pair.periods == ("before", "after")


def test_yaml_round_trip_is_exact(every_type: Questionnaire) -> None:
    again = Questionnaire.loads(every_type.to_yaml())
    assert again == every_type
    assert again.to_yaml() == every_type.to_yaml()


def test_save_and_load_file(tmp_path, every_type: Questionnaire) -> None:
    path = tmp_path / "q.yaml"
    every_type.save(path)
    assert Questionnaire.load(path) == every_type
    assert "Преследования" in path.read_text(encoding="utf-8")


def test_bare_label_is_in_default_language() -> None:
    q = Questionnaire.loads(
        "id: x\nlanguages: [en, ru]\nquestions:\n  - {name: a, type: text, label: Age}"
    )
    assert dict(q["a"].labels) == {"en": "Age"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "id: x\nquestions:\n  - {name: a, type: singel}\n",
            "every.yaml:3: question a: unknown type",
        ),
        (
            "id: x\nquestions:\n  - {name: a, typ: text}\n",
            "every.yaml:3: questions[0].typ: unknown key",
        ),
        (
            "id: x\nquestions:\n  - name: a\n    type: single\n    choices: nolist\n",
            "every.yaml:5: questions[0].choices: no choice list named 'nolist'",
        ),
        ("id: x\nid: y\nquestions: []\n", "every.yaml:2: key 'id' appears twice"),
        ("id: x\nquestions: [\n", "every.yaml:3: not valid YAML"),
        ("", "every.yaml: the file is empty"),
        ("questions: []\n", "every.yaml:1: id: is required"),
        (
            "id: x\nquestions:\n  - {name: a, type: single, choices: [{code: x, value: yes}]}",
            "every.yaml:3: questions[0].choices[0].value: expected a number",
        ),
        (
            "id: x\nquestions:\n  - {name: a, type: text, label: {de: Alter}}",
            "every.yaml:3: questions[0].label.de: language not declared",
        ),
        (
            "id: x\nquestions:\n  - {name: a, type: single, choices: [{code: x}, {code: x}]}",
            "every.yaml:3: question a: choice code(s) used twice: x",
        ),
        (
            "id: x\nquestions:\n  - {name: a, type: single, choices: [{code: 'a b'}]}",
            "may not be empty or contain spaces",
        ),
        ("id: x\nquestions:\n  - {name: a, type: single}", "needs choices"),
        (
            "id: x\nquestions:\n  - {name: a, type: text, choices: [{code: x}]}",
            "a text question cannot have choices",
        ),
        (
            "id: x\nquestions:\n  - {name: a, type: scale, choices: [{code: x}, {code: y}]}",
            "every scale choice needs a numeric value",
        ),
        (
            "id: x\nquestions:\n  - {name: a, type: single, choices: [{code: x, exclusive: true}]}",
            "only makes sense in a multiple-choice question",
        ),
        ("id: x\nquestions:\n  - {name: a, type: text, min: 3}", "minimum/maximum apply to"),
        ("id: x\nquestions:\n  - {name: 2a, type: text}", "'2a' is not a valid name"),
        ("id: x\nquestions:\n  - {name: a, type: text}\n  - {name: a, type: text}", "used twice"),
        (
            "id: x\nquestions:\n  - {name: a, type: text, paired_with: b}",
            "paired_with names no question: 'b'",
        ),
        (
            "id: x\nquestions:\n  - {name: a, type: text}\n  - {name: b, type: integer, "
            "paired_with: a}",
            "differ in type or choices",
        ),
        (
            "id: x\nquestions:\n  - {name: a, type: single, choices: [{code: o, other: true}]}\n"
            "  - {name: a_other, type: text}",
            "column 'a_other' is also used by a",
        ),
        ("id: x\nvolna: 2\nquestions: []", "unknown format version 2"),
        ("id: x\nquestions:\n  - {name: n, type: note, required: true}", "cannot be required"),
        ("- 1\n", "every.yaml:1: top level: expected a mapping"),
        (
            "id: x\nquestions:\n  - {name: a, type: single, choices: [{code: x}], attention: y}",
            "every.yaml:3: question a: attention: 'y' is not one of its codes (x)",
        ),
        (
            "id: x\nquestions:\n  - {name: a, type: text, attention: y}",
            "every.yaml:3: question a: an attention check asks for one answer",
        ),
        (
            "id: x\nquestions:\n  - {name: a, type: single, choices: [{code: x}], "
            "attention: {x: 1}}",
            "every.yaml:3: questions[0].attention: expected the answer code(s)",
        ),
        (
            "id: x\nquestions:\n  - {name: a, type: text, honeypot: true, required: true}",
            "a honeypot is hidden from people: it cannot be a note or required",
        ),
        (
            "id: x\nquestions:\n  - {name: a, type: integer, reverse: true}",
            "every.yaml:3: question a: only a scale question can be reverse-keyed",
        ),
        (
            "id: x\nquestions:\n  - {name: a, type: text, honeypot: yes please}",
            "questions[0].honeypot: expected true or false",
        ),
        (
            "id: x\nchecks: [{name: c, when: '${b} = 1'}]\nquestions:\n  - {name: a, type: text}",
            "check c: when: expression",
        ),
        (
            "id: x\nchecks: [{name: a, when: '${a} = 1'}]\nquestions:\n  - {name: a, type: text}",
            "check a: the name is used twice",
        ),
        ("id: x\nchecks: [{name: c}]\nquestions: []", "every.yaml:2: checks[0].when: is required"),
        ("id: x\nchecks: {c: 1}\nquestions: []", "every.yaml:2: checks: expected a list"),
    ],
)
def test_schema_errors_name_file_line_and_key(text: str, expected: str) -> None:
    with pytest.raises(QuestionnaireError) as caught:
        Questionnaire.loads(text, "every.yaml")
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message
    assert message.startswith("every.yaml")


def test_load_refuses_unreadable_and_non_utf8(tmp_path) -> None:
    with pytest.raises(QuestionnaireError, match="cannot read"):
        Questionnaire.load(tmp_path / "missing.yaml")
    bad = tmp_path / "cp1251.yaml"
    bad.write_bytes("id: x\nquestions: []\ntitle: Опрос\n".encode("cp1251"))
    with pytest.raises(QuestionnaireError, match="not UTF-8"):
        Questionnaire.load(bad)


def test_model_is_immutable(every_type: Questionnaire) -> None:
    with pytest.raises(AttributeError):
        every_type["age"].name = "years"  # type: ignore[misc]
    with pytest.raises(TypeError):
        every_type["left"].labels["en"] = "changed"  # type: ignore[index]


def test_python_construction_and_lookup_errors() -> None:
    q = Questionnaire(
        id="py",
        items=(
            Section("s", {"en": "S"}),
            Question("a", "single", choices=(Choice("x"), Choice("y")), section=("s",)),
        ),
    )
    assert q.default_language == "ru"
    assert q["a"].codes == ("x", "y")
    assert "a" in q and "b" not in q and len(q) == 1
    with pytest.raises(QuestionnaireError, match="no question named 'b'"):
        q["b"]
    with pytest.raises(QuestionnaireError, match="no choice with code 'z'"):
        q["a"].choice("z")
    with pytest.raises(QuestionnaireError, match="unknown section 't'"):
        Questionnaire(id="bad", items=(Question("a", "text", section=("t",)),))


def test_countries_come_from_pycountry_in_russian_and_english() -> None:
    assert len(country_codes()) == 249
    assert country_name("AM", "ru") == "Армения"
    assert country_name("AM", "en") == "Armenia"
    assert country_lookup()["армения"] == "AM"
    assert country_lookup()["arm"] == "AM"
    with pytest.raises(KeyError):
        country_name("XX")
