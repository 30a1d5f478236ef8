"""SPSS (.sav) and Stata (.dta) through pyreadstat, labels included.

Reading keeps the file's values and its metadata:

* values are read without applying value labels, with user-defined missing
  values kept (SPSS ``99 = refused`` declared missing would otherwise turn
  into an empty cell: an answer silently lost). Stata's extended missing
  values ``.a``-``.z`` likewise survive, as text (``.a``); a column holding
  them is read as text;
* ``value_labels`` and ``variable_labels`` come from the file's metadata;
  :func:`volna.io.to_canonical` maps a labelled number to a choice through
  its label;
* SPSS stores date-times as a floating-point count of seconds, exact to
  about a microsecond only, so .sav date-times are rounded to the
  millisecond (the writer refuses finer ones).

Writing (``language`` picks the labels):

* names follow :mod:`volna.io.names` (``fears/persecution`` ->
  ``fears__persecution``), mapped back on reading;
* variable labels are the question texts (an option column:
  "question: option"), cut to the format's limit (Stata 80 characters,
  SPSS 256 bytes);
* a single-choice or scale question whose codes are all integers (``1``,
  ``-9``) is stored as those numbers; otherwise as positions 1..k in
  questionnaire order. Either way each number carries the choice label as
  its value label (SPSS: at most 120 bytes), and reading maps label -> code.
  A label that would not lead back to its own code (two choices with the
  same label, or cut to the same 120 bytes) is replaced by the code itself;
* option columns are 1/0 with labels "selected"/"not selected";
* text stays text (null as empty, which reads back as null); integers beyond
  2**53, which both formats keep as doubles, are refused, as are .sav
  date-times with sub-millisecond digits.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl

from volna.errors import ReadError, WriteError
from volna.io.codes import SAV_VALUE_LABEL_BYTES, ChoiceLookup
from volna.io.names import stored_names
from volna.io.raw import RawTable
from volna.questionnaire.model import Paradata, Question, Questionnaire, pick_label

_INTEGER_CODE = re.compile(r"^-?[1-9][0-9]{0,8}$|^0$")
_STATA_LABEL_CHARS = 80
_SAV_LABEL_BYTES = 256
_STATA_VALUE_LABEL_BYTES = 32_000
_SAV_STRING_BYTES = 32_767
_SELECTED = {
    "ru": ("не выбрано", "выбрано"),
    "en": ("not selected", "selected"),
}


def read_stats(path: Path, source: str, fmt: str) -> RawTable:
    """Read a .sav or .dta file with its value and variable labels.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "data.sav"
    >>> _ = p.write_bytes(b"$FL2 not really SPSS")
    >>> read_stats(p, "data.sav", "sav")
    Traceback (most recent call last):
    ...
    volna.errors.ReadError: data.sav: not a valid SPSS .sav file (damaged or truncated)
    """
    import pyreadstat

    reader = pyreadstat.read_sav if fmt == "sav" else pyreadstat.read_dta
    kind = "SPSS .sav" if fmt == "sav" else "Stata .dta"
    try:
        frame, meta = reader(
            str(path), apply_value_formats=False, user_missing=True, output_format="polars"
        )
    except Exception:  # hostile input: any parser failure is a ReadError
        raise ReadError(f"{source}: not a valid {kind} file (damaged or truncated)") from None
    frame = _settle_objects(frame)
    if fmt == "sav":
        frame = frame.with_columns(
            pl.col(c).dt.round("1ms") for c, t in frame.schema.items() if isinstance(t, pl.Datetime)
        )
    value_labels = {
        column: dict(labels)
        for column, labels in (meta.variable_value_labels or {}).items()
        if labels
    }
    variable_labels = {
        c: label for c, label in (meta.column_names_to_labels or {}).items() if label
    }
    return RawTable(frame, source, fmt, value_labels, variable_labels)


def _settle_objects(frame: pl.DataFrame) -> pl.DataFrame:
    """Columns of mixed Python objects (Stata's .a-.z beside numbers) as text."""
    objects = [c for c, t in frame.schema.items() if t == pl.Object]
    if not objects:
        return frame
    from volna.io.codes import as_text

    def text(value: Any) -> str | None:
        if value is None or (isinstance(value, float) and value != value):
            return None
        if isinstance(value, str):
            return "." + value  # Stata spells extended missing values .a-.z
        return as_text(value)

    return frame.with_columns(
        pl.Series(c, [text(v) for v in frame[c].to_list()], dtype=pl.String) for c in objects
    )


# -- writing ----------------------------------------------------------------------


def write_stats(
    frame: pl.DataFrame,
    path: Path,
    questionnaire: Questionnaire,
    fmt: str,
    language: str | None,
    target: str,
) -> None:
    """Write the canonical table as .sav or .dta with variable and value labels."""
    import pyreadstat

    try:
        names = stored_names(frame.columns)
    except ValueError as exc:
        raise WriteError(f"{target}: {exc}") from None
    column_map = questionnaire.column_map
    columns: list[pl.Series] = []
    variable_labels: dict[str, str] = {}
    value_labels: dict[str, dict[int, str]] = {}
    for name in frame.columns:
        s = frame[name]
        stored = names[name]
        item, code = column_map.get(name, (None, None))
        label = _variable_label(item, code, language) if item is not None else None
        if label:
            variable_labels[stored] = _cut_label(label, fmt)
        if isinstance(item, Question) and item.type in ("single", "scale") and code is None:
            numbers, labels = _choice_numbers(item, language, fmt)
            unknown = s.is_not_null() & ~s.is_in(list(numbers))
            if unknown.any():
                row = int(unknown.arg_max() or 0) + 1
                raise WriteError(
                    f"{target}: row {row}, column {name}: {s[row - 1]!r} is not a code of "
                    f"question {item.name}, and {fmt} can store only its codes"
                )
            s = s.replace_strict(numbers, default=None, return_dtype=pl.Float64)
            value_labels[stored] = labels
        elif s.dtype == pl.Boolean:
            s = s.cast(pl.Float64)
            words = _SELECTED.get(language or "", _SELECTED["en"])
            value_labels[stored] = {0: words[0], 1: words[1]}
        else:
            s = _plain(s, fmt, target)
        columns.append(s.alias(stored))
    out = pl.DataFrame(columns)
    title = pick_label(questionnaire.title, language, questionnaire.id)
    try:
        if fmt == "sav":
            pyreadstat.write_sav(
                out,
                str(path),
                compress=Path(target).suffix.lower() == ".zsav",
                file_label=_cut_bytes(title, 64),
                column_labels=variable_labels,
                variable_value_labels=value_labels,
            )
        else:
            pyreadstat.write_dta(
                out,
                str(path),
                file_label=title[:_STATA_LABEL_CHARS],
                column_labels=variable_labels,
                variable_value_labels=value_labels,
            )
    except Exception as exc:  # pyreadstat's errors name no column; say what we can
        raise WriteError(f"{target}: cannot write {fmt}: {exc}") from None


def _variable_label(item: Question | Paradata, code: str | None, language: str | None) -> str:
    text = pick_label(item.labels, language, item.name)
    if isinstance(item, Question) and code is not None:
        if code.startswith("_other:"):
            choice = item.choice(code.removeprefix("_other:"))
            return f"{text}: {choice.label(language)} (text)"
        return f"{text}: {item.choice(code).label(language)}"
    return text


def _cut_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def _cut_label(text: str, fmt: str) -> str:
    return _cut_bytes(text, _SAV_LABEL_BYTES) if fmt == "sav" else text[:_STATA_LABEL_CHARS]


def _choice_numbers(
    question: Question, language: str | None, fmt: str
) -> tuple[dict[str, float], dict[int, str]]:
    """Code -> stored number, and number -> value label, for one choice question."""
    codes = question.codes
    if all(_INTEGER_CODE.match(c) for c in codes):
        numbers = {c: int(c) for c in codes}
    else:
        numbers = {c: i for i, c in enumerate(codes, start=1)}
    limit = SAV_VALUE_LABEL_BYTES if fmt == "sav" else _STATA_VALUE_LABEL_BYTES
    lookup = ChoiceLookup(question)
    labels: dict[int, str] = {}
    for choice in question.choices:
        number = numbers[choice.code]
        label = _cut_bytes(choice.label(language), limit)
        # The reader maps label -> code; make sure this label leads back here.
        if lookup.labelled(number, {number: label})[0] != choice.code:
            label = choice.code
        labels[number] = label
    return {c: float(n) for c, n in numbers.items()}, labels


def _plain(s: pl.Series, fmt: str, target: str) -> pl.Series:
    """A column without value labels, checked against what the format can hold."""
    if s.dtype == pl.String:
        if fmt == "sav":
            long = s.str.len_bytes() > _SAV_STRING_BYTES
            if long.any():
                row = int(long.arg_max() or 0) + 1
                raise WriteError(
                    f"{target}: row {row}, column {s.name}: longer than the "
                    f"{_SAV_STRING_BYTES} bytes an SPSS string holds; write CSV or parquet"
                )
        # Neither format has a missing string; empty reads back as null.
        return s.fill_null("")
    if s.dtype == pl.Int64:
        big = s.abs() > 2**53
        if big.any():
            row = int(big.arg_max() or 0) + 1
            raise WriteError(
                f"{target}: row {row}, column {s.name}: {s[row - 1]} is too large for "
                f"{fmt} (numbers are doubles there: at most 2**53); write CSV or parquet"
            )
        return s
    if isinstance(s.dtype, pl.Datetime) and fmt == "sav":
        fine = (s.dt.microsecond() % 1000 != 0) & s.is_not_null()
        if fine.any():
            row = int(fine.arg_max() or 0) + 1
            raise WriteError(
                f"{target}: row {row}, column {s.name}: SPSS keeps date-times to the "
                "millisecond; round them (dt.round('1ms')) or write parquet"
            )
    return s
