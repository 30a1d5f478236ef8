"""A problem found in a response table: where it is, what was found, which rule.

Readers (type conversion, label mapping) and the validator (skip logic,
ranges, constraints) report the same kind of record, so one list, one count
per rule and one JSON shape serve both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: The rules a response can break, with the wording used in reports.
RULES = {
    "invalid_value": "not a value of the question's type (number, date, yes/no)",
    "unknown_code": "a code or label the question's choices do not have",
    "out_of_range": "outside the question's minimum and maximum",
    "required_missing": "required, relevant, but not answered",
    "not_relevant": "answered although the skip logic says it is not asked",
    "exclusive_conflict": "an exclusive option ('none of these') chosen with another",
    "constraint_failed": "the question's constraint does not hold",
    "other_without_choice": "'please specify' text without the 'other' option chosen",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken rule in one cell.

    ``row`` counts respondents from 1 (the first record after the header);
    ``value`` is the offending value as text, exactly as found (None when the
    problem is a missing answer).

    >>> p = Problem(3, "age", "-4", "out_of_range", "below the minimum 18", "age")
    >>> p.describe("data.csv")
    "data.csv: row 3, column age: '-4': below the minimum 18 [out_of_range]"
    """

    row: int
    column: str
    value: str | None
    rule: str
    message: str
    question: str | None = None

    def describe(self, file: str | None = None) -> str:
        """One line naming file, row, column, value and what was expected."""
        head = f"{file}: " if file else ""
        shown = "(empty)" if self.value is None else repr(self.value)
        return f"{head}row {self.row}, column {self.column}: {shown}: {self.message} [{self.rule}]"

    def as_dict(self) -> dict:
        """The problem as plain data (for ``--format json``)."""
        return asdict(self)
