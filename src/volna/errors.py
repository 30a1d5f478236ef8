"""The errors a volna user can cause, each saying where and what was expected.

Every message names, where they exist, the file, the row, the column, the
offending value and what was expected, so the command line can print it as a
single line and exit non-zero. A traceback reaching the user is a bug.
"""

from __future__ import annotations


class VolnaError(Exception):
    """Base of every error caused by the user's files, options or data.

    >>> str(VolnaError("data.csv: row 3, column age: '-4' is below the minimum 18"))
    "data.csv: row 3, column age: '-4' is below the minimum 18"
    """

    #: the exit status the command line uses for this kind of error
    exit_code = 2


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
