"""Free-text redaction in Russian and English: contacts, links, names, places, organisations.

Each finding is replaced by a typed placeholder:

============== ==============================================================
``[EMAIL]``    e-mail addresses
``[PHONE]``    phone numbers, national or international (Google's ``phonenumbers``;
               a number without ``+`` is read as Russian: ``8 912 ...``)
``[TELEGRAM]`` ``@handles`` and ``t.me/...`` links
``[URL]``      other links, with or without ``https://``
``[PERSON]``   people: natasha's NER in Cyrillic text; in Latin script a capitalised
               pair with a known given name (:mod:`.latin_names`), a title ("Dr Smith")
               or a regional surname ending ("Petrov", "Shevchenko")
``[PLACE]``    places (natasha, Cyrillic text)
``[ORG]``      organisations (natasha, Cyrillic text)
============== ==============================================================

The patterns come first and win where they overlap a name (an e-mail holds a name). The
limits, which the release report repeats: natasha reads Russian only, and Latin-script
places and organisations are not recognised; a reviewer should read the redacted
answers before they are published.

>>> r = Redactor(names=False)
>>> r.redact_one("пишите ivan@mail.ru или @ivan_petrov, тел. +7 (912) 345-67-89")
'пишите [EMAIL] или [TELEGRAM], тел. [PHONE]'
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from volna.release.latin_names import GIVEN_NAMES, RUSSIAN_NAME_STEMS, TITLES

PLACEHOLDERS = {
    "EMAIL": "[EMAIL]",
    "PHONE": "[PHONE]",
    "TELEGRAM": "[TELEGRAM]",
    "URL": "[URL]",
    "PERSON": "[PERSON]",
    "PLACE": "[PLACE]",
    "ORG": "[ORG]",
}

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}", re.UNICODE)
_TELEGRAM_LINK = re.compile(
    r"(?:https?://)?(?:www\.)?(?:t\.me|telegram\.me|telegram\.dog)/[\w+/-]+", re.IGNORECASE
)
# Telegram usernames are 5-32 characters; shorter @words are kept as handles too,
# since other networks allow them and the cost of a false alarm here is small.
_HANDLE = re.compile(r"(?<![\w@.])@[A-Za-z][A-Za-z0-9_]{2,31}\b")
_TLD = (
    r"com|ru|org|net|io|me|info|рф|su|ua|by|kz|ge|am|rs|tr|il|de|uk|eu|co|app|dev|tv|fm|ly|"
    r"gg|ee|lv|lt|pl|cz|fi|fr|es|it|nl|uz|kg|az|me|online|site|pro|biz|edu|gov"
)
_URL = re.compile(
    r"(?:https?://|www\.)[^\s<>\"']+"
    rf"|(?<![\w@.])(?:[\w-]+\.)+(?:{_TLD})(?![\w.-]*@)(?:/[^\s<>\"']*)?\b",
    re.IGNORECASE,
)
_LATIN_WORD = re.compile(r"\b[A-Z][a-z]+(?:-[A-Z][a-z]+)?\b")
_SURNAME = re.compile(
    r"^[A-Z][a-z]{3,}(?:ov|ova|ev|eva|enko|shvili|dze|skaya|sky|skiy|ovich|evich|ovna|evna)$"
)
_CYRILLIC = re.compile(r"[А-Яа-яЁё]")
_SENTENCE_END = re.compile(r"(?:^|[.!?…]\s*|\n\s*)$")
# natasha reads some common abbreviations as organisations; they identify no one
_NOT_ENTITIES = frozenset({"IT", "ИТ", "HR", "PR", "SMM", "QA", "UX", "UI", "CEO", "CTO", "IT-"})
# trailing punctuation the URL pattern may swallow
_URL_TAIL = ".,;:!?)»\"'"


class Redactor:
    """Replace personal data in free-text answers by typed placeholders.

    natasha's models are loaded on the first text that needs them, once per Redactor.
    ``names=False`` skips named entities (contacts and links only).

    >>> Redactor().redact_one("My friend John Smith moved in 2022, rent was 500 euros.")
    'My friend [PERSON] moved in 2022, rent was 500 euros.'
    """

    def __init__(self, *, names: bool = True, region: str = "RU") -> None:
        self.names = names
        self.region = region
        self._ner = None

    # -- finding --------------------------------------------------------------

    def _patterns(self, text: str) -> list[tuple[int, int, str]]:
        import phonenumbers

        spans: list[tuple[int, int, str]] = []
        for m in _EMAIL.finditer(text):
            spans.append((m.start(), m.end(), "EMAIL"))
        for m in _TELEGRAM_LINK.finditer(text):
            spans.append((m.start(), _trim(text, m.start(), m.end()), "TELEGRAM"))
        for m in _URL.finditer(text):
            spans.append((m.start(), _trim(text, m.start(), m.end()), "URL"))
        for m in _HANDLE.finditer(text):
            spans.append((m.start(), m.end(), "TELEGRAM"))
        if sum(ch.isdigit() for ch in text) >= 6:
            matcher = phonenumbers.PhoneNumberMatcher(
                text, self.region, leniency=phonenumbers.Leniency.POSSIBLE
            )
            for m in matcher:
                spans.append((m.start, m.end, "PHONE"))
        return spans

    def _latin_people(self, text: str) -> list[tuple[int, int, str]]:
        words = [(m.start(), m.end(), m.group()) for m in _LATIN_WORD.finditer(text)]
        spans = []
        i = 0
        while i < len(words):
            # a run of capitalised words separated by single spaces
            j = i
            while j + 1 < len(words) and text[words[j][1] : words[j + 1][0]] in (" ", ". "):
                j += 1
            run = words[i : j + 1]
            names = [w for w in run if w[2] in GIVEN_NAMES or w[2] in TITLES]
            if len(run) >= 2 and names:
                first = run.index(names[0])
                if run[first][2] in TITLES:
                    first += 1
                else:
                    # a surname before the given name ("Petrov Ivan"), not a sentence's
                    # first word ("Ask John")
                    while first > 0 and (
                        _SURNAME.match(run[first - 1][2])
                        or not _sentence_start(text, run[first - 1][0])
                    ):
                        first -= 1
                if first < len(run):
                    spans.append((run[first][0], run[-1][1], "PERSON"))
            else:
                for start, _end, word in run:
                    if _sentence_start(text, start):
                        continue  # a capital at the start of a sentence says nothing
                    if word in GIVEN_NAMES or _SURNAME.match(word):
                        spans.append((start, start + len(word), "PERSON"))
            i = j + 1
        return spans

    def _entities(self, texts: Sequence[str]) -> list[list[tuple[int, int, str]]]:
        if not texts:
            return []
        if self._ner is None:
            # Lazy: loading natasha's embeddings and NER model takes about a second.
            from natasha import NewsEmbedding, NewsNERTagger

            self._ner = NewsNERTagger(NewsEmbedding())
        kinds = {"PER": "PERSON", "LOC": "PLACE", "ORG": "ORG"}
        out = []
        for text, markup in zip(texts, self._ner.map(list(texts)), strict=True):
            found = []
            for span in markup.spans:
                word = text[span.start : span.stop]
                if word.strip() in _NOT_ENTITIES or span.type not in kinds:
                    continue
                if span.type == "PER" and _doubtful_name(text, span.start, word):
                    continue
                found.append((span.start, span.stop, kinds[span.type]))
            out.append(found)
        return out

    # -- replacing ------------------------------------------------------------

    def redact(self, texts: Iterable[str | None]) -> tuple[list[str | None], Counter]:
        """Redact every text; identical texts are redacted once. Returns texts and counts.

        >>> out, counts = Redactor(names=False).redact(["см. https://example.org/x", None])
        >>> out, dict(counts)
        (['см. [URL]', None], {'URL': 1})
        """
        texts = list(texts)
        distinct = list(dict.fromkeys(t for t in texts if t))
        found = {t: self._patterns(t) for t in distinct}
        if self.names:
            for t in distinct:
                found[t] += self._latin_people(t)
            cyrillic = [t for t in distinct if _CYRILLIC.search(t)]
            for t, spans in zip(cyrillic, self._entities(cyrillic), strict=True):
                found[t] += spans
        redacted: dict[str, tuple[str, Counter]] = {}
        for t in distinct:
            redacted[t] = _replace(t, found[t])
        counts: Counter = Counter()
        out: list[str | None] = []
        for t in texts:
            if not t:
                out.append(t)
                continue
            new, c = redacted[t]
            counts.update(c)
            out.append(new)
        return out, counts

    def redact_one(self, text: str) -> str:
        """Redact a single text."""
        return self.redact([text])[0][0] or ""


def _sentence_start(text: str, start: int) -> bool:
    return start == 0 or bool(_SENTENCE_END.search(text[:start]))


def _doubtful_name(text: str, start: int, word: str) -> bool:
    """A one-word "name" at the start of a sentence that is no known given name.

    natasha takes a capitalised first word for a name too readily ("Фриланс, дизайн");
    mid-sentence, a capital is evidence enough.
    """
    if " " in word.strip() or not _sentence_start(text, start):
        return False
    return not any(
        word.startswith(stem) and len(word) - len(stem) <= 3 for stem in RUSSIAN_NAME_STEMS
    )


_PRIORITY = {"EMAIL": 0, "TELEGRAM": 1, "URL": 2, "PHONE": 3, "PERSON": 4, "PLACE": 5, "ORG": 6}


def _trim(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1] in _URL_TAIL:
        end -= 1
    return end


def _replace(text: str, spans: list[tuple[int, int, str]]) -> tuple[str, Counter]:
    """Apply non-overlapping spans, the more certain kinds winning overlaps."""
    chosen: list[tuple[int, int, str]] = []
    for start, end, kind in sorted(spans, key=lambda s: (_PRIORITY[s[2]], s[0], -s[1])):
        if end <= start or any(start < e and s < end for s, e, _ in chosen):
            continue
        chosen.append((start, end, kind))
    counts: Counter = Counter()
    out = text
    for start, end, kind in sorted(chosen, reverse=True):
        out = out[:start] + PLACEHOLDERS[kind] + out[end:]
        counts[kind] += 1
    return out, counts
