"""Convert one column's cells to its canonical type, as polars expressions.

Everything here builds expressions over a whole column; nothing loops over
rows. A conversion yields the canonical values (null where a cell is empty
*or* could not be converted) and, separately, which cells failed, so the
caller can report each failure as a :class:`~volna.problems.Problem`.

What is accepted, by canonical type (cells are stripped of surrounding
whitespace first, except text, which is kept exactly as written):

========= ==============================================================
integer   ``34``, ``+34``, ``034``; ``34.0`` and ``3.4e1`` (integral only);
          ``34,0`` in a ``;``-delimited CSV. Not ``1 000``, ``34.5``.
decimal   ``3.5``, ``-.5``, ``1e-3``; ``3,5`` in a ``;``-delimited CSV, where
          a column must not mix ``3,5`` and ``3.5`` (``1.234`` could then be a
          thousands separator). Not ``nan``, ``inf``.
date      ``2022-03-01`` (ISO) and ``01.03.2022`` / ``1.3.2022`` (the
          Russian day-first convention). Not ``01/03/2022``: day or month first?
datetime  ISO 8601 ``2022-03-01T10:05[:07[.123]]`` (T or space), optionally
          with ``Z`` or an offset ``+03:00``, which is converted to UTC (the
          canonical value is naive UTC then; without an offset the time is
          kept as written); a bare date means midnight;
          ``01.03.2022 10:05[:07]``. Fractions beyond microseconds are cut.
duration  seconds as a number (``754.2``), or ``H:MM:SS[.f]``.
========= ==============================================================

Native types (parquet, SPSS, Stata) convert directly where the meaning is
clear (a float 34.0 for an integer, a date-time at midnight for a date) and
otherwise through their text, so the same rules apply.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl

from volna.errors import ReadError
from volna.questionnaire.model import Paradata, Question

#: The canonical polars type of each question type and paradata type.
QUESTION_DTYPES: dict[str, pl.DataType] = {
    "single": pl.String(),
    "scale": pl.String(),
    "country": pl.String(),
    "integer": pl.Int64(),
    "decimal": pl.Float64(),
    "text": pl.String(),
    "date": pl.Date(),
}
PARADATA_DTYPES: dict[str, pl.DataType] = {
    "id": pl.String(),
    "datetime": pl.Datetime("us"),
    "duration": pl.Float64(),
    "integer": pl.Int64(),
    "decimal": pl.Float64(),
    "text": pl.String(),
}


def kind_of(item: Question | Paradata, code: str | None) -> str:
    """How a canonical column is converted: its item's type, refined.

    Option columns of a multiple-choice question are ``option``; "please
    specify" columns are ``text``; single choice and scale are ``choice``;
    paradata ``id`` is ``text``.

    >>> from volna.questionnaire.model import Question, Paradata
    >>> kind_of(Question("age", "integer"), None), kind_of(Paradata("sid", "id"), None)
    ('integer', 'text')
    """
    if isinstance(item, Paradata):
        return "text" if item.type == "id" else item.type
    if code is not None and code.startswith("_other:"):
        return "text"
    if item.type == "multiple":
        return "option"
    if item.type in ("single", "scale"):
        return "choice"
    return item.type


def canonical_dtype(item: Question | Paradata, code: str | None) -> pl.DataType:
    """The canonical polars type of one column."""
    kind = kind_of(item, code)
    if kind == "option":
        return pl.Boolean()
    if kind in ("text", "choice", "country"):
        return pl.String()
    if isinstance(item, Paradata):
        return PARADATA_DTYPES[item.type]
    return QUESTION_DTYPES[item.type]


#: Kinds converted through a lookup of each distinct value (see :func:`mapped`).
MAPPED_KINDS = frozenset({"choice", "country", "option"})


@dataclass(frozen=True)
class Failure:
    """Why a kind of cell failed: the problem's rule and message."""

    rule: str
    message: str


@dataclass(frozen=True)
class Converter:
    """How to convert a column: a fast expression for the usual case, then the full rules.

    ``primary`` handles the common spelling (``34``, ``2022-03-01``) at full
    speed. ``full``, if given, applies every rule and is run only on the
    cells ``primary`` left null, which are few in a clean file; so a million
    well-formed cells never pay for the rare spellings. With no ``full``,
    ``primary`` already applies every rule.
    """

    primary: pl.Expr
    full: Callable[[pl.Expr], pl.Expr] | None = None


def is_float(dtype: pl.DataType) -> bool:
    return dtype in (pl.Float32, pl.Float64)


def text_of(e: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Any column as String, the way a person would write each value.

    Integral floats lose ``.0`` (SPSS keeps every number as a float); dates
    and date-times are ISO; booleans are ``true``/``false``.
    """
    if dtype == pl.String:
        return e
    if dtype == pl.Boolean:
        return pl.when(e).then(pl.lit("true")).when(~e).then(pl.lit("false"))
    if is_float(dtype):
        integral = e.is_finite() & (e.round(0) == e) & (e.abs() < 2.0**53)
        return pl.when(integral).then(e.cast(pl.Int64).cast(pl.String)).otherwise(e.cast(pl.String))
    if dtype.is_numeric():
        return e.cast(pl.String)
    if dtype == pl.Date:
        return e.dt.to_string("%Y-%m-%d")
    if isinstance(dtype, pl.Datetime):
        return e.dt.to_string("%Y-%m-%d %H:%M:%S%.f")
    if dtype == pl.Time:
        return e.dt.to_string("%H:%M:%S%.f")
    if isinstance(dtype, pl.Duration):
        return (e.dt.total_microseconds() / 1e6).cast(pl.String)
    return e.cast(pl.String)


def filled(e: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """True where a cell holds something (not null, not blank text)."""
    if dtype == pl.String:
        return (e.str.strip_chars() != "").fill_null(False)
    return e.is_not_null()


def _clean(e: pl.Expr) -> pl.Expr:
    """Text stripped of surrounding whitespace, null if nothing is left."""
    s = e.str.strip_chars()
    return pl.when(s != "").then(s)


# -- text ---------------------------------------------------------------------


def to_text(e: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Text answers are kept exactly as written; only blank cells become null."""
    if dtype == pl.String:
        return pl.when(e.str.strip_chars() != "").then(e)
    return text_of(e, dtype)


# -- numbers ------------------------------------------------------------------


def _number_text(e: pl.Expr, decimal_comma: bool) -> pl.Expr:
    s = _clean(e)
    if not decimal_comma:
        return s
    # A column that writes decimals with a comma cannot also use a point:
    # "1.234" might be a thousands separator. Such cells fail.
    uses_comma = s.str.contains(",", literal=True).any()
    s = pl.when(uses_comma & s.str.contains(".", literal=True)).then(None).otherwise(s)
    return s.str.replace(",", ".", literal=True)


def integer(e: pl.Expr, dtype: pl.DataType, decimal_comma: bool) -> Converter:
    """Integers: see the table in the module docstring."""
    if dtype.is_integer():
        return Converter(e.cast(pl.Int64, strict=False))
    if is_float(dtype):
        ok = e.is_finite() & (e.round(0) == e) & (e.abs() < 2.0**63)
        return Converter(pl.when(ok).then(e.cast(pl.Int64, strict=False)))

    def full(x: pl.Expr) -> pl.Expr:
        s = _number_text(text_of(x, dtype), decimal_comma)
        # "34.0" is 34 (spreadsheets write integers so); "34.5" is not.
        # Digits alone are cast exactly; anything else must be an integral
        # float small enough (2**53) to be exact.
        number = s.cast(pl.Float64, strict=False)
        integral = number.is_finite() & (number.round(0) == number) & (number.abs() <= 2.0**53)
        return pl.coalesce(
            s.cast(pl.Int64, strict=False), pl.when(integral).then(number.cast(pl.Int64))
        )

    if dtype == pl.String and not decimal_comma:
        return Converter(e.cast(pl.Int64, strict=False), full)
    # A decimal comma is decided for the whole column: no fast path.
    return Converter(full(e))


def decimal(e: pl.Expr, dtype: pl.DataType, decimal_comma: bool) -> Converter:
    """Decimals: see the table in the module docstring."""
    if dtype.is_numeric():
        v = e.cast(pl.Float64)
        return Converter(pl.when(v.is_finite()).then(v))

    def full(x: pl.Expr) -> pl.Expr:
        # The cast alone would accept "nan" and "inf"; finiteness rules them out.
        v = _number_text(text_of(x, dtype), decimal_comma).cast(pl.Float64, strict=False)
        return pl.when(v.is_finite()).then(v)

    if dtype == pl.String and not decimal_comma:
        v = e.cast(pl.Float64, strict=False)
        return Converter(pl.when(v.is_finite()).then(v), full)
    return Converter(full(e))


# -- dates and times ------------------------------------------------------------

_ISO_DATE = r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}$"
_RU_DATE = r"^[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{4}$"
_ISO_DATETIME = (
    r"^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})"
    r"(?:[T ]([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]{1,9}))?)?)?"
    r"\s*(Z|[+-][0-9]{2}(?::?[0-9]{2})?)?$"
)
_RU_DATETIME = (
    r"^([0-9]{1,2})\.([0-9]{1,2})\.([0-9]{4})(?:,?\s+([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?)?$"
)
_HMS = r"^([+-]?)([0-9]+):([0-5][0-9]):([0-5][0-9](?:[.,][0-9]+)?)$"


def date(e: pl.Expr, dtype: pl.DataType) -> Converter:
    """Dates: ISO or DD.MM.YYYY; see the module docstring."""
    if dtype == pl.Date:
        return Converter(e)
    if isinstance(dtype, pl.Datetime):
        local = e.dt.replace_time_zone(None) if dtype.time_zone else e
        return Converter(pl.when(local.dt.time() == pl.time(0)).then(local.dt.date()))

    def full(x: pl.Expr) -> pl.Expr:
        s = _clean(text_of(x, dtype))
        iso = pl.when(s.str.contains(_ISO_DATE)).then(s.str.to_date("%Y-%m-%d", strict=False))
        ru = pl.when(s.str.contains(_RU_DATE)).then(s.str.to_date("%d.%m.%Y", strict=False))
        return pl.coalesce(iso, ru)

    if dtype == pl.String:
        # The regex guards against polars reading "22-03-01" as the year 22.
        iso = e.str.contains(_ISO_DATE)
        return Converter(pl.when(iso).then(e.str.to_date("%Y-%m-%d", strict=False)), full)
    return Converter(full(e))


def datetime(e: pl.Expr, dtype: pl.DataType) -> Converter:
    """Date-times: ISO 8601 or DD.MM.YYYY HH:MM; see the module docstring."""
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone:
            e = e.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        return Converter(e.cast(pl.Datetime("us")))
    if dtype == pl.Date:
        return Converter(e.cast(pl.Datetime("us")))
    return Converter(_datetime_text(e, dtype))


def _datetime_text(e: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    s = _clean(text_of(e, dtype))
    iso = s.str.extract_groups(_ISO_DATETIME)
    ru = s.str.extract_groups(_RU_DATETIME)

    def part(iso_field: str, ru_field: str | None, default: str | None = None) -> pl.Expr:
        options = [iso.struct.field(iso_field)]
        if ru_field:
            options.append(ru.struct.field(ru_field))
        if default is not None:
            options.append(pl.lit(default))
        return pl.coalesce(options)

    matched = pl.coalesce(iso.struct.field("1"), ru.struct.field("3"))
    fraction = (part("7", None, "") + pl.lit("000000")).str.slice(0, 6)
    text = pl.format(
        "{}-{}-{} {}:{}:{}.{}",
        matched,
        part("2", "2").str.zfill(2),
        part("3", "1").str.zfill(2),
        part("4", "4", "0").str.zfill(2),
        part("5", "5", "00"),
        part("6", "6", "00"),
        fraction,
    )
    naive = text.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us", strict=False)
    zone = iso.struct.field("8")
    sign = pl.when(zone.str.starts_with("-")).then(-1).otherwise(1)
    digits = zone.str.replace_all(r"[^0-9]", "")
    hours = digits.str.slice(0, 2).cast(pl.Int64, strict=False).fill_null(0)
    minutes = digits.str.slice(2, 2).cast(pl.Int64, strict=False).fill_null(0)
    offset = (
        pl.when(zone.is_null() | (zone == "Z")).then(0).otherwise(sign * (hours * 60 + minutes))
    )
    return pl.when(matched.is_not_null()).then(naive - pl.duration(minutes=offset))


def duration(e: pl.Expr, dtype: pl.DataType, decimal_comma: bool) -> Converter:
    """Durations in seconds: a number or H:MM:SS; see the module docstring."""
    if isinstance(dtype, pl.Duration):
        return Converter(e.dt.total_microseconds().cast(pl.Float64) / 1e6)
    if dtype == pl.Time:
        return Converter(e.cast(pl.Int64).cast(pl.Float64) / 1e9)
    if dtype.is_numeric():
        v = e.cast(pl.Float64)
        return Converter(pl.when(v.is_finite()).then(v))

    def full(x: pl.Expr) -> pl.Expr:
        s = _clean(text_of(x, dtype))
        number = _number_text(s, decimal_comma).cast(pl.Float64, strict=False)
        number = pl.when(number.is_finite()).then(number)
        hms = s.str.extract_groups(_HMS)
        seconds = (
            hms.struct.field("2").cast(pl.Float64) * 3600
            + hms.struct.field("3").cast(pl.Float64) * 60
            + hms.struct.field("4").str.replace(",", ".", literal=True).cast(pl.Float64)
        )
        signed = pl.when(hms.struct.field("1") == "-").then(-seconds).otherwise(seconds)
        return pl.coalesce(number, signed)

    if dtype == pl.String and not decimal_comma:
        v = e.cast(pl.Float64, strict=False)
        return Converter(pl.when(v.is_finite()).then(v), full)
    return Converter(full(e))


# -- lookups of distinct values -------------------------------------------------


def key_of(e: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """The values a lookup is keyed on: strings, numbers and booleans as they are."""
    if dtype == pl.String or dtype == pl.Boolean or dtype.is_numeric():
        return e
    return text_of(e, dtype)


def mapped(
    key: pl.Expr,
    values: Iterable[Any],
    resolve: Callable[[Any], tuple[Any, Failure | None]],
    dtype: pl.DataType,
) -> tuple[pl.Expr, dict[Any, Failure]]:
    """Convert a column by resolving each distinct value once.

    ``resolve(value)`` returns (canonical value, None) or (None, Failure).
    Returns the converted column and the failures keyed by the cell's value.
    Blank text is not resolved: it is an empty cell, null without a problem.
    """
    table: dict[Any, Any] = {}
    failures: dict[Any, Failure] = {}
    blanks: list[Any] = []
    for value in values:
        if value is None:
            continue
        if isinstance(value, str) and not value.strip():
            blanks.append(value)
            continue
        result, failure = resolve(value)
        if failure is None:
            table[value] = result
        else:
            failures[value] = failure
    if not table:
        return pl.lit(None, dtype=dtype), failures
    if all(type(k) is type(v) and k == v for k, v in table.items()) and key.meta.is_column():
        # Every value already is its canonical form (codes written as codes):
        # keep the column, nulling only blanks and failures. Much faster.
        nulls = [*blanks, *failures]
        if nulls:
            return pl.when(~key.is_in(nulls)).then(key).cast(dtype), failures
        return key.cast(dtype), failures
    return key.replace_strict(table, default=None, return_dtype=dtype), failures


# -- messages ---------------------------------------------------------------------


def expected(kind: str, decimal_comma: bool) -> Callable[[str], str]:
    """What a cell of this kind should look like, as a problem message."""
    comma = decimal_comma

    def integer(text: str) -> str:
        if comma and "." in text:
            return "expected a whole number; this column writes decimals with a comma"
        return "expected a whole number (like 34)"

    def decimal(text: str) -> str:
        if comma and "." in text:
            return (
                "expected a number like 3,5: this column writes decimals with a comma, "
                "so a point is ambiguous (thousands separator?)"
            )
        return "expected a number (like 3,5)" if comma else "expected a number (like 3.5)"

    def date(text: str) -> str:
        if "/" in text:
            return (
                "expected a date as YYYY-MM-DD or DD.MM.YYYY; dates with '/' are "
                "ambiguous (day or month first?)"
            )
        return "expected a date as YYYY-MM-DD or DD.MM.YYYY"

    messages: dict[str, Callable[[str], str]] = {
        "integer": integer,
        "decimal": decimal,
        "date": date,
        "datetime": lambda _: (
            "expected a date and time as YYYY-MM-DD HH:MM[:SS] (ISO 8601, "
            "optionally with an offset like +03:00) or DD.MM.YYYY HH:MM"
        ),
        "duration": lambda _: "expected a duration in seconds (like 754.2) or as H:MM:SS",
    }
    return messages[kind]


def check_dtype(dtype: pl.DataType, column: str, source: str) -> None:
    """Refuse column types no survey answer can be (lists, structs, binary)."""
    if dtype.is_nested() or dtype in (pl.Binary, pl.Object):
        raise ReadError(
            f"{source}: column {column!r} holds {dtype} values, which volna cannot read; "
            "store answers as text, numbers or dates"
        )
