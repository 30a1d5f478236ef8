"""Turning what a file says into a questionnaire's codes: choices, countries, yes/no.

Each lookup maps one cell's text to a code, or explains why it cannot. They
run once per distinct value of a column (a few dozen, typically), never per
row, so they can afford to be careful:

* a choice cell may hold the code, or a choice label in any of the
  questionnaire's languages (Kobo's "XLS with labels" export, SPSS value
  labels), compared without regard to case or runs of whitespace; a label
  shared by two choices is refused as ambiguous rather than guessed;
* a country cell may hold an alpha-2 or alpha-3 code or an English or Russian
  name (pycountry's), always stored as upper-case alpha-2;
* a yes/no cell (one option of a multiple-choice question) may hold 1/0,
  true/false, yes/no or да/нет.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from volna.questionnaire.countries import country_code  # noqa: F401  (re-exported)
from volna.questionnaire.model import Question

#: Texts read as "selected" / "not selected" in an option column (compared casefolded).
TRUE_TEXTS = frozenset({"1", "1.0", "true", "yes", "да"})
FALSE_TEXTS = frozenset({"0", "0.0", "false", "no", "нет"})

# An SPSS value label is at most 120 bytes; a longer choice label written to
# .sav comes back cut, so a label this long may be matched by its beginning.
SAV_VALUE_LABEL_BYTES = 120
_TRUNCATED_AT_LEAST = SAV_VALUE_LABEL_BYTES - 3


def fold(text: str) -> str:
    """Normalise text for matching labels: casefolded, whitespace runs collapsed.

    >>> fold("  Да,  ПОЛНОСТЬЮ\\tсогласен ")
    'да, полностью согласен'
    """
    return " ".join(text.split()).casefold()


def as_text(value: Any) -> str:
    """A cell's value as text, the way a person would have typed it.

    Integral floats lose their ``.0`` (SPSS stores every number as a float).

    >>> as_text(3.0), as_text(2.5), as_text(True), as_text("x")
    ('3', '2.5', 'true', 'x')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 2**63:
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def _listing(codes: tuple[str, ...], limit: int = 12) -> str:
    shown = ", ".join(codes[:limit])
    return shown + (f", ... ({len(codes)} in all)" if len(codes) > limit else "")


@dataclass(frozen=True)
class ChoiceLookup:
    """Resolve a cell of one choice question to a code.

    Messages do not repeat the cell (a problem shows its value already), so
    one message string serves every unknown value of a column.

    >>> from volna.questionnaire.model import Choice, Question
    >>> q = Question("left", "single", choices=(
    ...     Choice("yes", {"ru": "Да", "en": "Yes"}), Choice("no", {"ru": "Нет", "en": "No"})))
    >>> look = ChoiceLookup(q)
    >>> [look.resolve(t)[0] for t in ("yes", " да ", "NO", "maybe")]
    ['yes', 'yes', 'no', None]
    >>> look.resolve("maybe")[1]
    'not a code or label of question left (codes: yes, no)'
    """

    question: Question

    @cached_property
    def _codes(self) -> frozenset[str]:
        return frozenset(self.question.codes)

    @cached_property
    def _folded(self) -> dict[str, set[str]]:
        # Labels first, then codes: both are compared casefolded.
        out: dict[str, set[str]] = {}
        for c in self.question.choices:
            for label in c.labels.values():
                out.setdefault(fold(label), set()).add(c.code)
        return out

    @cached_property
    def _folded_codes(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for c in self.question.choices:
            out.setdefault(fold(c.code), set()).add(c.code)
        return out

    @cached_property
    def unknown(self) -> str:
        """The message for a value that is no code or label."""
        q = self.question
        return f"not a code or label of question {q.name} (codes: {_listing(q.codes)})"

    def _match(self, text: str, *, truncated: bool = False) -> str | set[str] | None:
        """The code, a set of candidates if ambiguous, or None."""
        stripped = text.strip()
        if stripped in self._codes:
            return stripped
        key = fold(stripped)
        for table in (self._folded, self._folded_codes):
            found = table.get(key)
            if found:
                return next(iter(found)) if len(found) == 1 else found
        number = _integral(stripped)
        if number is not None and number in self._codes:
            return number
        if truncated and len(stripped.encode("utf-8")) >= _TRUNCATED_AT_LEAST:
            hits = {
                code
                for label, codes in self._folded.items()
                if label.startswith(key)
                for code in codes
            }
            if hits:
                return next(iter(hits)) if len(hits) == 1 else hits
        return None

    def _why(self, found: str | set[str] | None) -> str:
        if isinstance(found, set):
            return (
                f"matches several choices of question {self.question.name} "
                f"({', '.join(sorted(found))}); write the code"
            )
        return self.unknown

    def resolve(self, text: str) -> tuple[str | None, str]:
        """(code, "") or (None, what is wrong) for one cell's text."""
        found = self._match(text)
        if isinstance(found, str):
            return found, ""
        return None, self._why(found)

    def code(self, text: str) -> str | None:
        """The code ``text`` stands for, or None."""
        return self.resolve(text)[0]

    def labelled(self, value: Any, labels: Mapping[Any, str]) -> tuple[str | None, str]:
        """Resolve an SPSS/Stata value through its value label; (code, why not).

        The label is tried first (it is what the value means), then the value
        itself as a code.
        """
        label = labels.get(value)
        if label is not None:
            found = self._match(label, truncated=True)
            if isinstance(found, str):
                return found, ""
        code, why = self.resolve(as_text(value))
        if code is not None:
            return code, ""
        if label is not None:
            return None, (
                f"labelled {label!r}, which is not a label of question "
                f"{self.question.name} (codes: {_listing(self.question.codes)})"
            )
        return None, why


def _integral(text: str) -> str | None:
    """``'2.0'`` -> ``'2'``: numbers written by spreadsheets, matched to integer codes."""
    try:
        number = float(text)
    except ValueError:
        return None
    if math.isfinite(number) and number.is_integer() and abs(number) < 2**53:
        return str(int(number))
    return None


def yes_no(text: str) -> bool | None:
    """True/False for a yes/no cell, None if it is neither.

    >>> yes_no("1"), yes_no(" Нет "), yes_no("TRUE"), yes_no("2")
    (True, False, True, None)
    """
    key = fold(text)
    if key in TRUE_TEXTS:
        return True
    if key in FALSE_TEXTS:
        return False
    return None


@dataclass(frozen=True)
class SelectMultiple:
    """Parse a select_multiple cell written as space-separated codes (Kobo, ODK).

    >>> from volna.questionnaire.model import Choice, Question
    >>> q = Question("fears", "multiple", choices=(
    ...     Choice("persecution", {"en": "Persecution"}), Choice("conscription")))
    >>> sm = SelectMultiple(q)
    >>> sorted(sm.codes("conscription persecution")), sm.codes("persecution war")
    (['conscription', 'persecution'], None)
    >>> sm.why("persecution war")
    "'war' is not a code of question fears (codes: persecution, conscription)"
    """

    question: Question

    @cached_property
    def _lookup(self) -> ChoiceLookup:
        return ChoiceLookup(self.question)

    def _parse(self, text: str) -> tuple[set[str], list[str]]:
        chosen: set[str] = set()
        unknown: list[str] = []
        for token in text.split():
            code = self._lookup.code(token)
            if code is None:
                unknown.append(token)
            else:
                chosen.add(code)
        if unknown:
            # One option chosen, written as its label (which may hold spaces).
            whole = self._lookup.code(text)
            if whole is not None:
                return {whole}, []
        return chosen, unknown

    def codes(self, text: str) -> set[str] | None:
        """The chosen codes, or None if some part is not a code."""
        chosen, unknown = self._parse(text)
        return None if unknown else chosen

    def why(self, text: str) -> str:
        """Which parts of ``text`` are not codes (for a problem's message)."""
        _, unknown = self._parse(text)
        shown = ", ".join(repr(u) for u in unknown)
        verb = "is not a code" if len(unknown) == 1 else "are not codes"
        return f"{shown} {verb} of question {self.question.name} (codes: " + (
            _listing(self.question.codes) + ")"
        )
