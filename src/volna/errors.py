"""The errors a volna user can cause, each saying where and what was expected.

Every message names, where they exist, the file, the row, the column, the
offending value and what was expected, so the command line can print it as a
single line and exit non-zero. A traceback reaching the user is a bug.

When a setting would avoid the error (drop the unknown columns, read the file
as CSV), the error carries it as a :class:`Remedy`: the parameter of the
Python API and the value to give it. Each interface says it in its own words:
``str(error)`` in Python's (``unknown_columns='drop'``), the ``volna`` command
in its options' (``--unknown-columns drop``), so no message ever names an
option the reader cannot type.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Remedy:
    """A setting that avoids an error: a Python parameter and the value to give it.

    ``lead`` says what to do (``remove it or``) before the setting, ``then``
    what the setting does, after it. ``value`` is None when the reader must
    choose among ``choices``.

    >>> r = Remedy("unknown_columns", "drop", lead="remove it or")
    >>> r.python()
    "remove it or pass unknown_columns='drop'"
    >>> r.spell("--unknown-columns")
    'remove it or use --unknown-columns drop'
    >>> Remedy("format", choices=("csv", "xlsx")).python()
    "pass format='csv'|'xlsx'"
    """

    parameter: str
    value: Any = None
    choices: Sequence[str] = ()
    lead: str = ""
    then: str = ""

    def python(self) -> str:
        """The remedy as a Python caller writes it."""
        if self.value is None and self.choices:
            setting = f"{self.parameter}={'|'.join(repr(c) for c in self.choices)}"
        else:
            setting = f"{self.parameter}={self.value!r}"
        return self._sentence("pass", setting)

    def spell(self, option: str, value: Callable[[Any], str] = str) -> str:
        """The remedy as ``option`` on a command line, ``value`` writing the value."""
        if self.value is None and self.choices:
            setting = f"{option} {'|'.join(self.choices)}"
        else:
            setting = f"{option} {value(self.value)}"
        return self._sentence("use", setting)

    def _sentence(self, verb: str, setting: str) -> str:
        parts = [self.lead, verb, setting, self.then]
        return " ".join(p for p in parts if p)


class VolnaError(Exception):
    """Base of every error caused by the user's files, options or data.

    ``message`` says what is wrong and where; ``remedy``, if any, the setting
    that would avoid it, which ``str()`` spells as a Python argument and
    :meth:`render` as the caller likes.

    >>> str(VolnaError("data.csv: row 3, column age: '-4' is below the minimum 18"))
    "data.csv: row 3, column age: '-4' is below the minimum 18"
    >>> e = VolnaError("data.csv: column 'x' is unknown", remedy=Remedy("unknown_columns", "drop"))
    >>> str(e)
    "data.csv: column 'x' is unknown; pass unknown_columns='drop'"
    >>> e.render(lambda r: r.spell("--unknown-columns"))
    "data.csv: column 'x' is unknown; use --unknown-columns drop"
    >>> e.render(lambda r: None)  # an interface without that setting says only what is wrong
    "data.csv: column 'x' is unknown"
    """

    #: the exit status the command line uses for this kind of error
    exit_code = 2

    def __init__(self, message: str = "", *, remedy: Remedy | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy

    def render(self, spell: Callable[[Remedy], str | None] = Remedy.python) -> str:
        """The message, with the remedy as ``spell`` writes it (None: leave it out)."""
        said = spell(self.remedy) if self.remedy is not None else None
        return f"{self.message}; {said}" if said else self.message

    def __str__(self) -> str:
        return self.render()

    def within(self, prefix: str) -> VolnaError:
        """The same error, its message placed in ``prefix`` (a file name, say).

        >>> e = VolnaError("no rows", remedy=Remedy("missing", "exclude"))
        >>> str(e.within("data.csv"))
        "data.csv: no rows; pass missing='exclude'"
        """
        placed = copy.copy(self)
        placed.message = f"{prefix}: {self.message}"
        placed.args = (placed.message,)
        return placed


class QuestionnaireError(VolnaError):
    """A questionnaire file (YAML or XLSForm) is malformed or inconsistent."""


class ExpressionError(QuestionnaireError):
    """An XLSForm-style expression cannot be parsed or refers to unknown names."""


class UnsupportedFormError(QuestionnaireError):
    """An XLSForm uses a feature volna refuses (repeats, geopoint, device metadata...)."""


class ReadError(VolnaError):
    """A response file cannot be read: encoding, format, truncation, bad columns."""


class WriteError(VolnaError):
    """A response table cannot be written in the requested format."""


def excerpt(value: object, limit: int = 40) -> str:
    """``repr(value)``, cut to about ``limit`` characters: how a message quotes a file.

    A long value is more likely a whole file in the wrong place (responses
    where the questionnaire was expected) than a typo, and its content must
    not land in a terminal or a log: it may be respondents' answers.

    >>> excerpt("singel")
    "'singel'"
    >>> excerpt("respondent_id,age,destination r1,34,Tbilisi r2,51,Yerevan", 20)
    "'respondent_id,age,de'... (57 characters)"
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    if isinstance(value, str):
        return f"{value[:limit]!r}... ({len(value)} characters)"
    return f"a {type(value).__name__} ({len(text)} characters written out)"


def where(
    file: object | None = None,
    row: int | None = None,
    column: str | None = None,
) -> str:
    """Format the location prefix shared by all messages: ``file: row 3, column q:``.

    >>> where("data.csv", 3, "age")
    'data.csv: row 3, column age:'
    >>> where("form.yaml")
    'form.yaml:'
    """
    parts = []
    if row is not None:
        parts.append(f"row {row}")
    if column is not None:
        parts.append(f"column {column}")
    head = str(file) if file is not None else ""
    if parts:
        head = f"{head}: {', '.join(parts)}" if head else ", ".join(parts)
    return f"{head}:"
