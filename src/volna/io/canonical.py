"""Stage two of reading: give a raw table the questionnaire's columns and types.

The canonical table is the contract the rest of volna relies on: exactly
``questionnaire.columns``, in that order, one row per respondent in file
order, each column in its canonical type (see :func:`canonical_schema`).

Cells that cannot be converted become null and are reported as
:class:`~volna.problems.Problem` records: ``row`` is the respondent's number
(1 = the first record after the header; in a spreadsheet, sheet row 2),
``column`` is the column name *as the file spells it* (``group/age``,
``fears__persecution``), because that is where the value can be found and
fixed, ``value`` the cell as written, and ``question`` the questionnaire's
name for it. Without a problems list the first problem (lowest row, then
leftmost column) is raised as a one-line :class:`~volna.errors.ReadError`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

from volna.errors import ReadError, Remedy
from volna.io import cells
from volna.io.cells import Failure, canonical_dtype, kind_of
from volna.io.codes import ChoiceLookup, SelectMultiple, as_text, country_code, yes_no
from volna.io.kobo import ColumnMatch, match_columns
from volna.io.raw import RawTable
from volna.problems import Problem
from volna.questionnaire.model import Paradata, Question, Questionnaire

log = logging.getLogger("volna.io")

UnknownColumns = Literal["error", "drop", "keep"]
MissingColumns = Literal["error", "null"]


def canonical_schema(questionnaire: Questionnaire) -> dict[str, pl.DataType]:
    """The canonical table's columns and polars types, in order.

    >>> from volna import Questionnaire
    >>> q = Questionnaire.loads('''
    ... id: demo
    ... paradata: [{name: sid, type: id}]
    ... questions:
    ...   - {name: age, type: integer}
    ...   - {name: fears, type: multiple, choices: [{code: war}, {code: draft}]}
    ... ''')
    >>> {c: str(t) for c, t in canonical_schema(q).items()}
    {'sid': 'String', 'age': 'Int64', 'fears/war': 'Boolean', 'fears/draft': 'Boolean'}
    """
    return {c: canonical_dtype(item, code) for c, (item, code) in questionnaire.column_map.items()}


@dataclass(frozen=True)
class _Check:
    """Cells of one file column that failed; ``flag`` names the Boolean result column.

    With ``full`` set, the flagged cells are first given a second chance
    under the full rules, and those that pass are written into ``target``.
    """

    flag: str
    column: str
    question: str | None
    failure: Callable[[str], Failure]
    full: Callable[[pl.Expr], pl.Expr] | None = None
    target: str | None = None


class _Plan:
    """Collects the expressions and checks of one conversion.

    Two stages, so no conversion is computed twice: ``stage1`` computes each
    converted column under a temporary name; ``stage2`` derives the final
    columns and the failure flags from those.
    """

    def __init__(self, raw: RawTable, questionnaire: Questionnaire):
        self.raw = raw
        self.frame = raw.frame
        self.schema = raw.frame.schema
        self.questionnaire = questionnaire
        self.stage1: list[pl.Expr] = []
        self.stage2: list[pl.Expr] = []
        self.checks: list[_Check] = []
        self._uniques: dict[str, list[Any]] = {}
        prefix = "\x00tmp"
        while any(c.startswith(prefix) for c in self.frame.columns):
            prefix += "_"
        self._prefix = prefix

    def compute(self, value: pl.Expr) -> pl.Expr:
        """Compute ``value`` in stage one; the column to refer to it by."""
        name = f"{self._prefix}v{len(self.stage1)}"
        self.stage1.append(value.alias(name))
        return pl.col(name)

    def check(
        self,
        bad: pl.Expr,
        column: str,
        question: str | None,
        failure: Callable[[str], Failure],
        full: Callable[[pl.Expr], pl.Expr] | None = None,
        target: str | None = None,
    ) -> None:
        flag = f"{self._prefix}f{len(self.checks)}"
        self.stage2.append(bad.fill_null(False).alias(flag))
        self.checks.append(_Check(flag, column, question, failure, full, target))

    def prefetch(self, keys: dict[str, pl.Expr]) -> None:
        """Compute the distinct values of several columns in one parallel pass."""
        if not keys:
            return
        found = (
            self.frame.lazy()
            .select(key.unique().implode().alias(name) for name, key in keys.items())
            .collect()
        )
        self._uniques = {name: found[name][0].to_list() for name in keys}

    def uniques(self, name: str, key: pl.Expr) -> list[Any]:
        """Distinct values of ``key`` (prefetched under ``name`` if possible)."""
        if name in self._uniques:
            return self._uniques[name]
        return self.frame.select(key.unique()).to_series().to_list()


def to_canonical(
    raw: RawTable,
    questionnaire: Questionnaire,
    *,
    unknown_columns: UnknownColumns = "error",
    missing_columns: MissingColumns = "error",
    problems: list[Problem] | None = None,
) -> pl.DataFrame:
    """Convert a raw table to the canonical table of ``questionnaire``.

    ``unknown_columns``: what to do with a file column the questionnaire does
    not know: ``"error"`` (ReadError), ``"drop"`` (logged) or ``"keep"``
    (placed after the canonical columns, as read). Kobo/ODK platform columns
    are always dropped (logged). ``missing_columns``: a questionnaire column
    the file lacks is an ``"error"`` or is added as ``"null"``; paradata
    (start and end times, say) is added as null whatever it says, unless the
    questionnaire marks it ``required``.

    ``problems``: if a list, each cell that cannot be converted is appended as
    a Problem and becomes null; if None, the first such cell raises ReadError.

    >>> import polars as pl
    >>> from volna import Questionnaire
    >>> from volna.io.raw import RawTable
    >>> q = Questionnaire.loads('''
    ... id: demo
    ... questions:
    ...   - {name: age, type: integer}
    ...   - {name: left, type: single, choices: [{code: "yes", label: {ru: Да}}, {code: "no"}]}
    ... ''')
    >>> raw = RawTable(pl.DataFrame({"age": ["34", "x"], "left": ["да", "no"]}), "d.csv", "csv")
    >>> found = []
    >>> to_canonical(raw, q, problems=found).rows()
    [(34, 'yes'), (None, 'no')]
    >>> found[0].describe("d.csv")
    "d.csv: row 2, column age: 'x': expected a whole number (like 34) [invalid_value]"
    """
    _option("unknown_columns", unknown_columns, ("error", "drop", "keep"))
    _option("missing_columns", missing_columns, ("error", "null"))
    source = raw.source
    frame = raw.frame
    for column, dtype in frame.schema.items():
        cells.check_dtype(dtype, column, source)
    floats = [c for c, t in frame.schema.items() if cells.is_float(t)]
    if floats:
        # NaN is how pandas, SPSS and Stata spell "missing" in a float column.
        frame = frame.with_columns(pl.col(c).fill_nan(None) for c in floats)
        raw = dataclasses.replace(raw, frame=frame)
    match = match_columns(frame.columns, questionnaire, source)
    kept = _settle_columns(match, questionnaire, source, unknown_columns, missing_columns)

    plan = _Plan(raw, questionnaire)
    plan.prefetch(_lookup_keys(plan, match, questionnaire))
    combined = {
        name: _combined(plan, questionnaire[name], column)
        for name, column in match.combined.items()
    }
    for column, (item, code) in questionnaire.column_map.items():
        file_column = match.sources.get(column)
        from_combined = None
        if isinstance(item, Question) and item.name in combined and code in combined[item.name]:
            from_combined = combined[item.name][code]
        if file_column is not None:
            value = _convert(plan, item, code, file_column, column)
            if from_combined is not None:
                value = _compare(plan, item, value, from_combined, file_column, match)
        elif from_combined is not None:
            value = from_combined
        else:
            value = pl.lit(None, dtype=canonical_dtype(item, code))
        plan.stage2.append(value.alias(column))

    lazy = frame.lazy().with_columns(*plan.stage1).with_columns(*plan.stage2)
    out = lazy.collect(**_NO_CSE)
    out = _second_chance(out, frame, plan.checks)
    _report(out, frame, plan.checks, source, problems)
    # Indexing, not select(): select() on a wide frame of fresh columns is slow.
    return out[[*questionnaire.columns, *kept]]


# Common-subexpression elimination costs more than it saves on a plan of a
# hundred independent column expressions (3.8 s against 2.2 s on a million rows).
_NO_CSE: dict[str, Any] = (
    {"optimizations": pl.QueryOptFlags(comm_subexpr_elim=False)}
    if hasattr(pl, "QueryOptFlags")
    else {"comm_subexpr_elim": False}
)


def _lookup_keys(
    plan: _Plan, match: ColumnMatch, questionnaire: Questionnaire
) -> dict[str, pl.Expr]:
    """The columns converted by looking up distinct values, with their keys."""
    keys: dict[str, pl.Expr] = {}
    for column, (item, code) in questionnaire.column_map.items():
        source = match.sources.get(column)
        if source is not None and kind_of(item, code) in cells.MAPPED_KINDS:
            keys["key:" + source] = cells.key_of(pl.col(source), plan.schema[source])
    for source in match.combined.values():
        keys["text:" + source] = cells.text_of(pl.col(source), plan.schema[source])
    return keys


def _option(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, not {value!r}")


#: Columns ``volna export`` adds after the questionnaire's: the UTC day a submission
#: arrived and the web form's bot flags. They describe the submission, not the
#: respondent, and no questionnaire declares them, so reading an export keeps them
#: (as text) for screening instead of refusing them as unknown; a release drops them.
FORM_PARADATA = ("submitted_day", "screening_flags")


def _settle_columns(
    match: ColumnMatch,
    questionnaire: Questionnaire,
    source: str,
    unknown_columns: str,
    missing_columns: str,
) -> list[str]:
    """Apply the unknown/missing column policies; the unknown columns to keep."""
    form = [c for c in match.unknown if c in FORM_PARADATA]
    if form and unknown_columns != "drop":
        match = dataclasses.replace(match, unknown=[c for c in match.unknown if c not in form])
    if match.platform:
        # Names only: the values may identify respondents or devices.
        log.info("%s: dropped Kobo/ODK platform columns: %s", source, ", ".join(match.platform))
    if match.unknown and unknown_columns == "error":
        known = list(questionnaire.columns)
        shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
        more = ""
        if len(match.unknown) > 1:
            others = match.unknown[1:6]
            more = f"; also unknown: {', '.join(map(repr, others))}"
            more += ", ..." if len(match.unknown) > 6 else ""
        raise ReadError(
            f"{source}: column {match.unknown[0]!r} is not in the questionnaire "
            f"(known: {shown}){more}",
            remedy=Remedy("unknown_columns", "drop", lead="remove it or"),
        )
    if match.unknown and unknown_columns == "drop":
        log.info(
            "%s: dropped columns not in the questionnaire: %s", source, ", ".join(match.unknown)
        )
    # Paradata may be absent (an export without the form's start and end times)
    # unless the study marks it required.
    needed = [
        c
        for c in match.missing
        if not (isinstance(p := questionnaire.column_map[c][0], Paradata) and not p.required)
    ]
    if needed and missing_columns == "error":
        shown = ", ".join(needed[:10])
        more = f" and {len(needed) - 10} more" if len(needed) > 10 else ""
        raise ReadError(
            f"{source}: the file has no column for {shown}{more}, which the questionnaire defines",
            remedy=Remedy("missing_columns", "null", lead="add it or"),
        )
    if match.missing:
        log.info(
            "%s: columns absent from the file, added empty: %s", source, ", ".join(match.missing)
        )
    return [*form, *match.unknown] if unknown_columns == "keep" else form


# -- one column ---------------------------------------------------------------


def _convert(
    plan: _Plan, item: Question | Paradata, code: str | None, column: str, target: str
) -> pl.Expr:
    """The canonical value of column ``target`` read from file column ``column``."""
    dtype = plan.schema[column]
    e = pl.col(column)
    kind = kind_of(item, code)
    question = item.name if isinstance(item, Question) else None
    if kind == "text":
        return plan.compute(cells.to_text(e, dtype))
    if kind in cells.MAPPED_KINDS:
        return _lookup(plan, item, code, column, kind)
    decimal_comma = plan.raw.decimal_comma
    if kind == "integer":
        converter = cells.integer(e, dtype, decimal_comma)
    elif kind == "decimal":
        converter = cells.decimal(e, dtype, decimal_comma)
    elif kind == "date":
        converter = cells.date(e, dtype)
    elif kind == "datetime":
        converter = cells.datetime(e, dtype)
    elif kind == "duration":
        converter = cells.duration(e, dtype, decimal_comma)
    else:  # pragma: no cover - the model admits no other types
        raise AssertionError(kind)
    explain = cells.expected(kind, decimal_comma)
    value = plan.compute(converter.primary)
    # With a second chance to come, flag every non-null miss (blank cells
    # included, cheaply); the full rules then sort blanks from failures.
    filled = e.is_not_null() if converter.full else cells.filled(e, dtype)
    plan.check(
        filled & value.is_null(),
        column,
        question,
        lambda text: Failure("invalid_value", explain(text)),
        converter.full,
        target,
    )
    return value


def _lookup(
    plan: _Plan, item: Question | Paradata, code: str | None, column: str, kind: str
) -> pl.Expr:
    """Choice, country and option columns: resolve each distinct value once."""
    dtype = plan.schema[column]
    e = pl.col(column)
    assert isinstance(item, Question)
    if kind == "option" and dtype == pl.Boolean:
        return e  # nothing to compute: refer to the raw column itself
    key = cells.key_of(e, dtype)
    resolve: Callable[[Any], tuple[Any, Failure | None]]
    if kind == "choice":
        lookup = ChoiceLookup(item)
        labels = plan.raw.value_labels.get(column)

        unknown = Failure("unknown_code", lookup.unknown)  # shared by every unknown value

        def resolve(value: Any) -> tuple[Any, Failure | None]:
            if labels:
                found, why = lookup.labelled(value, labels)
            else:
                found, why = lookup.resolve(value if isinstance(value, str) else as_text(value))
            if found is not None:
                return found, None
            return None, unknown if why == unknown.message else Failure("unknown_code", why)

        out_type: pl.DataType = pl.String()
    elif kind == "country":
        not_country = Failure(
            "unknown_code",
            "not a country: expected an ISO code (GE, GEO) or a country name in English or Russian",
        )

        def resolve(value: Any) -> tuple[Any, Failure | None]:
            found = country_code(as_text(value))
            return (found, None) if found else (None, not_country)

        out_type = pl.String()
    else:
        not_yes_no = Failure(
            "invalid_value",
            f"expected 1 or 0 (option {code!r} of question {item.name} chosen or not)",
        )

        def resolve(value: Any) -> tuple[Any, Failure | None]:
            found = yes_no(as_text(value))
            return (found, None) if found is not None else (None, not_yes_no)

        out_type = pl.Boolean()
    value, failures = cells.mapped(key, plan.uniques("key:" + column, key), resolve, out_type)
    _check_failures(plan, key, failures, column, item.name)
    return plan.compute(value)


def _check_failures(
    plan: _Plan, key: pl.Expr, failures: dict[Any, Failure], column: str, question: str
) -> None:
    if not failures:
        return
    by_text = {as_text(value): failure for value, failure in failures.items()}
    plan.check(
        key.is_in(list(failures)),
        column,
        question,
        lambda text: by_text.get(text, Failure("unknown_code", f"{text!r} cannot be read")),
    )


# -- multiple choice written as one column ------------------------------------------


def _combined(plan: _Plan, question: Question, column: str) -> dict[str, pl.Expr]:
    """Option values of ``question`` from a column of space-separated codes."""
    key = cells.text_of(pl.col(column), plan.schema[column])
    parser = SelectMultiple(question)
    tables: dict[str, dict[str, bool]] = {c: {} for c in question.codes}
    failures: dict[Any, Failure] = {}
    for text in plan.uniques("text:" + column, key):
        if text is None or not text.strip():
            continue  # not answered: every option null
        chosen = parser.codes(text)
        if chosen is None:
            failures[text] = Failure("unknown_code", parser.why(text))
            continue
        for code, table in tables.items():
            table[text] = code in chosen
    _check_failures(plan, key, failures, column, question.name)
    return {
        code: plan.compute(key.replace_strict(table, default=None, return_dtype=pl.Boolean))
        if table
        else pl.lit(None, dtype=pl.Boolean)
        for code, table in tables.items()
    }


def _compare(
    plan: _Plan,
    item: Question | Paradata,
    value: pl.Expr,
    from_combined: pl.Expr,
    column: str,
    match: ColumnMatch,
) -> pl.Expr:
    """An option column and the combined column both given: they must agree."""
    assert isinstance(item, Question)
    combined_column = match.combined[item.name]
    disagree = value.is_not_null() & from_combined.is_not_null() & (value != from_combined)
    plan.check(
        disagree,
        column,
        item.name,
        lambda _: Failure(
            "invalid_value",
            f"disagrees with column {combined_column!r}, the same answer written as codes",
        ),
    )
    return pl.when(disagree).then(None).otherwise(value)


# -- problems -------------------------------------------------------------------


def _second_chance(out: pl.DataFrame, frame: pl.DataFrame, checks: list[_Check]) -> pl.DataFrame:
    """Convert the cells the fast expressions missed under the full rules."""
    for check in checks:
        if check.full is None or check.target is None:
            continue
        rows = out[check.flag].arg_true()
        if rows.len() == 0:
            continue
        cells_ = frame[check.column].gather(rows).to_frame("cell")
        x = pl.col("cell")
        redo = cells_.select(value=check.full(x), filled=cells.filled(x, cells_.schema["cell"]))
        fixed = redo["value"].cast(out.schema[check.target])
        ok = fixed.is_not_null()
        still_bad = redo["filled"] & ~ok
        value = out[check.target].clone()
        if ok.any():
            value = value.scatter(rows.filter(ok), fixed.filter(ok))
        flag = pl.repeat(False, out.height, eager=True)
        if still_bad.any():
            flag = flag.scatter(rows.filter(still_bad), True)
        out = out.with_columns(value.alias(check.target), flag.alias(check.flag))
    return out


def _report(
    out: pl.DataFrame,
    frame: pl.DataFrame,
    checks: list[_Check],
    source: str,
    problems: list[Problem] | None,
) -> None:
    """Turn failed cells into Problems (or raise the first one)."""
    failing = [c for c in checks if out[c.flag].any()]
    if not failing:
        return
    order = {name: i for i, name in enumerate(frame.columns)}
    if problems is None:
        firsts = [(int(out[c.flag].arg_max() or 0), order[c.column], c) for c in failing]
        row, _, check = min(firsts, key=lambda t: (t[0], t[1]))
        value = frame[check.column][row]
        raise ReadError(_problem(check, row, value).describe(source))
    found: list[Problem] = []
    for check in failing:
        rows = out[check.flag].arg_true()
        values = frame[check.column].gather(rows).to_list()
        found.extend(_problem(check, r, v) for r, v in zip(rows.to_list(), values, strict=True))
    found.sort(key=lambda p: (p.row, order[p.column]))
    problems.extend(found)


def _problem(check: _Check, row: int, value: Any) -> Problem:
    text = None if value is None else as_text(value)
    failure = check.failure(text or "")
    return Problem(row + 1, check.column, text, failure.rule, failure.message, check.question)
