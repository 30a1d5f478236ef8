"""Check a response table against its questionnaire, every rule, every cell.

The validator never changes data. It lists every problem with the row
(respondent number, from 1), the column, the value as found and the rule it
breaks, and counts problems per rule, so a researcher can fix the file or
decide, explicitly, what to do about each kind of problem.

Rules (see :data:`volna.problems.RULES`): values of the wrong type and unknown
codes (found while reading), out of range, required but missing, answered
though not relevant (skip logic), an exclusive "none of these" option chosen
together with another, a failed constraint, and "please specify" text without
its "other" option.

All checks are vectorised: every relevance, requirement and constraint
expression of the questionnaire is compiled to a polars expression and the
whole set is evaluated in one pass over the table.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from volna.errors import ExpressionError, VolnaError
from volna.problems import RULES, Problem
from volna.questionnaire.expressions import parse, to_polars
from volna.questionnaire.model import Paradata, Question, Questionnaire

# How each question type looks to the expression language.
_KINDS = {
    "multiple": "multiple",
    "integer": "number",
    "decimal": "number",
    "date": "date",
    "text": "text",
    "single": "choice",
    "scale": "choice",
    "country": "choice",
}
_PARADATA_KINDS = {
    "duration": "number",
    "integer": "number",
    "decimal": "number",
    "datetime": "text",
    "id": "text",
    "text": "text",
}


class QuestionnaireResolver:
    """Tells the expression compiler what each ``${name}`` is in the table.

    >>> from volna import Questionnaire
    >>> q = Questionnaire.loads("id: d\\nquestions:\\n  - {name: age, type: integer}")
    >>> QuestionnaireResolver(q).kind("age")
    'number'
    """

    def __init__(self, questionnaire: Questionnaire):
        self.questionnaire = questionnaire
        self._paradata = {p.name: p for p in questionnaire.paradata}

    def kind(self, name: str) -> str:
        if name in self.questionnaire:
            q = self.questionnaire[name]
            if q.type in _KINDS:
                return _KINDS[q.type]
            raise ExpressionError(f"${{{name}}} is a {q.type}, which has no answer")
        if name in self._paradata:
            return _PARADATA_KINDS[self._paradata[name].type]
        raise ExpressionError(f"${{{name}}} names no question of the questionnaire")

    def options(self, name: str) -> Sequence[str]:
        return self.questionnaire[name].codes


@dataclass(frozen=True)
class ValidationReport:
    """Every problem found, and a count per rule.

    ``ok`` is true when there is none. ``source`` is the file checked, if any.
    """

    problems: tuple[Problem, ...]
    n_rows: int
    source: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no rule is broken anywhere."""
        return not self.problems

    def lines(self, limit: int | None = None) -> list[str]:
        """One line per problem (the first ``limit`` of them)."""
        shown = self.problems if limit is None else self.problems[:limit]
        return [p.describe(self.source) for p in shown]

    def to_frame(self) -> pl.DataFrame:
        """The problems as a table: row, column, value, rule, message, question."""
        schema = {
            "row": pl.Int64,
            "column": pl.String,
            "value": pl.String,
            "rule": pl.String,
            "message": pl.String,
            "question": pl.String,
        }
        return pl.DataFrame([p.as_dict() for p in self.problems], schema=schema, orient="row")

    def to_json(self) -> str:
        """A JSON document for machines: source, row count, counts per rule, problems."""
        return json.dumps(
            {
                "source": self.source,
                "rows": self.n_rows,
                "ok": self.ok,
                "counts": self.counts,
                "problems": [p.as_dict() for p in self.problems],
            },
            ensure_ascii=False,
            indent=1,
        )


def validate(
    data: str | Path | pl.DataFrame | Any,
    questionnaire: Questionnaire | str | Path,
    *,
    today: dt.date | None = None,
    format: str | None = None,
    unknown_columns: str = "error",
    missing_columns: str = "error",
) -> ValidationReport:
    """Check responses against the questionnaire and report every problem.

    ``data`` is a file (csv, xlsx, parquet, sav, dta, Kobo export) or a table
    already in volna's canonical layout (polars or pandas). Problems that
    stop a file being read at all (encoding, broken columns) raise
    :class:`~volna.errors.ReadError`; everything cell-level is reported.
    ``format``, ``unknown_columns`` and ``missing_columns`` read a file as
    :func:`volna.io.read` does.

    >>> import polars as pl
    >>> from volna import Questionnaire
    >>> q = Questionnaire.loads('''
    ... id: demo
    ... questions:
    ...   - {name: age, type: integer, min: 18, required: true}
    ...   - {name: job, type: text, relevant: "${age} >= 25"}
    ... ''')
    >>> table = pl.DataFrame({"age": [30, 16, None], "job": ["teacher", "student", None]})
    >>> report = validate(table, q)
    >>> report.counts
    {'out_of_range': 1, 'required_missing': 1, 'not_relevant': 1}
    >>> print(report.lines()[0])
    row 2, column age: '16': below the minimum 18 [out_of_range]
    """
    if not isinstance(questionnaire, Questionnaire):
        questionnaire = Questionnaire.load(questionnaire)
    problems: list[Problem] = []
    source = None
    if isinstance(data, str | Path):
        from volna.io import read_raw, to_canonical

        raw = read_raw(data, format=format)
        source = raw.source
        frame = to_canonical(
            raw,
            questionnaire,
            unknown_columns=unknown_columns,
            missing_columns=missing_columns,
            problems=problems,
        )
    else:
        frame = _as_polars(data)
        missing = [c for c in questionnaire.columns if c not in frame.columns]
        if missing:
            raise VolnaError(
                f"the table lacks {len(missing)} questionnaire column(s): {', '.join(missing[:8])}"
            )
    problems.extend(_check(frame, questionnaire, today or dt.date.today(), problems))
    position = {c: i for i, c in enumerate(questionnaire.columns)}
    problems.sort(key=lambda p: (p.row, position.get(p.column, len(position))))
    counts = Counter(p.rule for p in problems)
    return ValidationReport(
        problems=tuple(problems),
        n_rows=frame.height,
        source=source,
        counts={rule: counts[rule] for rule in RULES if counts[rule]},
    )


def _as_polars(data: Any) -> pl.DataFrame:
    if isinstance(data, pl.DataFrame):
        return data
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(data, pd.DataFrame):
        return pl.from_pandas(data)
    raise VolnaError(
        f"cannot validate a {type(data).__name__}: give a file path or a polars/pandas table"
    )


def compile_expression(
    text: str,
    questionnaire: Questionnaire,
    *,
    current: str | None = None,
    today: dt.date | None = None,
) -> pl.Expr:
    """Compile an XLSForm expression against this questionnaire's columns.

    >>> from volna import Questionnaire
    >>> q = Questionnaire.loads("id: d\\nquestions:\\n  - {name: age, type: integer}")
    >>> table = pl.DataFrame({"age": [17, 30]})
    >>> table.select(compile_expression("${age} >= 18", q)).to_series().to_list()
    [False, True]
    """
    resolver = QuestionnaireResolver(questionnaire)
    return to_polars(parse(text), resolver, current=current, today=today)


def _compile(
    text: str, question: Question, what: str, questionnaire: Questionnaire, today: dt.date
) -> pl.Expr:
    """Compile one expression; errors name the questionnaire, question and column."""
    try:
        return compile_expression(text, questionnaire, current=question.name, today=today)
    except ExpressionError as exc:
        where = f"{questionnaire.source}: " if questionnaire.source else ""
        raise ExpressionError(f"{where}question {question.name}: {what}: {exc}") from None


def _answered(q: Question) -> pl.Expr:
    """True where the question holds an answer (any option chosen, for a multiple)."""
    if q.type == "multiple":
        return pl.any_horizontal([pl.col(c).fill_null(False) for c in q.columns if "/" in c])
    return pl.col(q.name).is_not_null()


def _as_text(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.String)


def _check(
    frame: pl.DataFrame, questionnaire: Questionnaire, today: dt.date, earlier: list[Problem]
) -> list[Problem]:
    """Evaluate every rule for every question in one polars pass, then list the failures."""
    # Cells that could not be read are already reported; do not report them
    # again as "required but missing".
    unreadable = {(p.row, p.question) for p in earlier}
    checks: list[pl.Expr] = []
    # What each check means, by its output column name.
    meaning: dict[str, tuple[Question, str, str, str]] = {}

    def add(expr: pl.Expr, q: Question, rule: str, column: str, message: str) -> None:
        name = f"__check{len(checks)}"
        checks.append(expr.fill_null(False).alias(name))
        meaning[name] = (q, rule, column, message)

    for q in questionnaire.answerable:
        relevant = pl.lit(True)
        for text in questionnaire.relevance(q):
            relevant = relevant & _compile(text, q, "relevant", questionnaire, today).fill_null(
                False
            )
        answered = _answered(q)
        first_column = q.columns[0]
        if questionnaire.relevance(q):
            add(
                answered & ~relevant,
                q,
                "not_relevant",
                first_column,
                f"answered, but not asked when {' and '.join(questionnaire.relevance(q))}",
            )
        if q.required is True:
            required = pl.lit(True)
            need = "required"
        elif isinstance(q.required, str):
            required = _compile(q.required, q, "required", questionnaire, today)
            need = f"required when {q.required}"
        else:
            required = None
        if required is not None:
            add(
                required.fill_null(False) & relevant & ~answered,
                q,
                "required_missing",
                first_column,
                f"{need}, but not answered",
            )
        if q.type in ("single", "scale"):
            add(
                pl.col(q.name).is_not_null() & ~pl.col(q.name).is_in(list(q.codes)),
                q,
                "unknown_code",
                q.name,
                f"not a code of the choices ({', '.join(q.codes)})",
            )
        if q.type == "country":
            from volna.questionnaire.countries import country_codes

            add(
                pl.col(q.name).is_not_null() & ~pl.col(q.name).is_in(sorted(country_codes())),
                q,
                "unknown_code",
                q.name,
                "not an ISO 3166-1 alpha-2 country code",
            )
        bounds = ((q.minimum, "lt", "below the minimum"), (q.maximum, "gt", "above the maximum"))
        for bound, op, word in bounds:
            if bound is None:
                continue
            value = dt.date.fromisoformat(bound) if q.type == "date" else bound
            col = pl.col(q.name)
            add(
                col.is_not_null() & (col < value if op == "lt" else col > value),
                q,
                "out_of_range",
                q.name,
                f"{word} {bound}",
            )
        if q.type == "multiple":
            for exclusive in (c for c in q.choices if c.exclusive):
                others = [q.option_column(c.code) for c in q.choices if c.code != exclusive.code]
                if others:
                    add(
                        pl.col(q.option_column(exclusive.code)).fill_null(False)
                        & pl.any_horizontal([pl.col(c).fill_null(False) for c in others]),
                        q,
                        "exclusive_conflict",
                        q.option_column(exclusive.code),
                        f"'{exclusive.code}' excludes every other option, but another is chosen",
                    )
        if q.constraint:
            ok = _compile(q.constraint, q, "constraint", questionnaire, today)
            add(
                answered & ~ok.fill_null(False),
                q,
                "constraint_failed",
                q.name if q.type != "multiple" else q.columns[0],
                f"breaks the constraint {q.constraint}",
            )
        other = q.other_choice
        if other is not None:
            chosen = (
                pl.col(q.option_column(other.code)).fill_null(False)
                if q.type == "multiple"
                else (pl.col(q.name) == other.code).fill_null(False)
            )
            text_column = q.other_column
            add(
                pl.col(text_column).is_not_null() & ~chosen,
                q,
                "other_without_choice",
                text_column,
                f"'please specify' text, but '{other.code}' is not chosen",
            )
    if not checks:
        return []
    results = frame.select(checks)
    # Only rows that fail something are materialised into Problem records.
    failing = results.with_row_index("__row").filter(pl.any_horizontal(pl.exclude("__row")))
    problems: list[Problem] = []
    for name, (q, rule, column, message) in meaning.items():
        rows = failing.filter(pl.col(name))["__row"].to_list()
        if not rows:
            continue
        if rule == "required_missing":
            rows = [r for r in rows if (r + 1, q.name) not in unreadable]
        values = _values(frame, q, column, rows)
        problems.extend(
            Problem(row + 1, column, value, rule, message, q.name)
            for row, value in zip(rows, values, strict=True)
        )
    return problems


def _values(frame: pl.DataFrame, q: Question | Paradata, column: str, rows: list[int]) -> list:
    """The offending values as text (the whole answer, for a multiple choice)."""
    if not rows:
        return []
    if isinstance(q, Question) and q.type == "multiple":
        options = [c for c in q.columns if "/" in c]
        picked = frame.select(
            pl.concat_str(
                [pl.when(pl.col(c)).then(pl.lit(c.split("/", 1)[1])) for c in options],
                separator=" ",
                ignore_nulls=True,
            )
        ).to_series()
        return [v if v else None for v in picked.gather(rows).to_list()]
    return frame.select(_as_text(column)).to_series().gather(rows).to_list()
