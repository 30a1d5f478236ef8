"""Write a canonical table in any format, so that reading it back gives an equal table.

=========== ====================================================================
csv         UTF-8 (no byte-order mark), comma-delimited (tab for .tsv); options 1/0,
            empty for null; dates ISO; date-times ISO with microseconds.
xlsx        one sheet "responses"; header bold and frozen; text is always
            stored as text (never as a formula, even when it starts with ``=``).
parquet     the canonical types as they are.
sav, dta    names as in :mod:`volna.io.names`; variable labels from the
            questionnaire; value labels for choice and option columns (see
            :mod:`volna.io.stats`).
=========== ====================================================================

The table is checked first: every questionnaire column present, in its
canonical type (lossless widenings such as Int32 -> Int64 are made), no NaN
or infinity. Columns the questionnaire does not know are written after the
canonical ones. Files are written to a temporary name and renamed, so a
failed write never leaves a half-written file under the real name; the
temporary file is created readable by its owner only (mode 0600), and the
written file keeps that mode, since it holds respondents' answers.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from volna.errors import ReadError, WriteError
from volna.io.canonical import canonical_schema
from volna.io.raw import detect_format
from volna.questionnaire.model import Questionnaire


def write(
    frame: pl.DataFrame,
    path: str | Path,
    questionnaire: Questionnaire,
    *,
    format: str | None = None,
    language: str | None = None,
) -> None:
    """Write a canonical table to ``path`` (format from the extension or ``format=``).

    ``language`` chooses the labels written to .sav/.dta files (default: the
    questionnaire's default language).

    >>> import tempfile, pathlib, polars as pl
    >>> from volna import Questionnaire
    >>> from volna.io import read
    >>> q = Questionnaire.loads("id: demo\\nquestions:\\n  - {name: age, type: integer}")
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "out.csv"
    >>> write(pl.DataFrame({"age": [34, None]}), p, q)
    >>> p.read_text()
    'age\\n34\\n\\n'
    >>> read(p, q).rows()
    [(34,), (None,)]
    """
    try:
        fmt = detect_format(path, format)
    except ReadError as exc:  # its remedy (format=) is the reader's: the message says enough
        raise WriteError(exc.message) from None
    if language is not None and language not in questionnaire.languages:
        raise WriteError(
            f"{path}: language {language!r} is not one of the questionnaire's "
            f"({', '.join(questionnaire.languages)})"
        )
    language = language or questionnaire.default_language
    table = check_frame(frame, questionnaire, str(path))
    path = Path(path)
    with _replacing(path) as tmp:
        if fmt == "csv":
            from volna.io.delimited import write_delimited

            write_delimited(csv_frame(table), tmp, "\t" if path.suffix.lower() == ".tsv" else ",")
        elif fmt == "xlsx":
            from volna.io.excel import write_xlsx

            write_xlsx(table, tmp, str(path))
        elif fmt == "parquet":
            from volna.io.parquet import write_parquet

            write_parquet(table, tmp)
        else:
            from volna.io.stats import write_stats

            write_stats(table, tmp, questionnaire, fmt, language, str(path))


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path``, renamed over it if the block succeeds."""
    if not path.parent.is_dir():
        raise WriteError(f"{path}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise WriteError(f"{path}: is a folder; give a file name")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    except OSError as exc:
        raise WriteError(f"{path}: cannot write in {path.parent}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise WriteError(f"{path}: cannot write: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def check_frame(frame: pl.DataFrame, questionnaire: Questionnaire, target: str) -> pl.DataFrame:
    """The table in canonical order and types, or WriteError saying what is wrong.

    >>> from volna import Questionnaire
    >>> q = Questionnaire.loads("id: demo\\nquestions:\\n  - {name: age, type: integer}")
    >>> check_frame(pl.DataFrame({"age": ["34"]}), q, "out.csv")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    volna.errors.WriteError: out.csv: column age is String, expected Int64 (convert with ...
    """
    if not isinstance(frame, pl.DataFrame):
        raise WriteError(f"{target}: expected a polars DataFrame, got {type(frame).__name__}")
    schema = canonical_schema(questionnaire)
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise WriteError(
            f"{target}: the table lacks the questionnaire's column(s) "
            f"{', '.join(missing[:10])}{more}"
        )
    columns = []
    for name, want in schema.items():
        columns.append(_conform(frame[name], want, target))
    extras = [frame[c] for c in frame.columns if c not in schema]
    for s in extras:
        if s.dtype.is_float():
            _finite(s, target)
    return pl.DataFrame(columns + extras)


def _conform(s: pl.Series, want: pl.DataType, target: str) -> pl.Series:
    have = s.dtype
    if have == want:
        out = s
    elif have == pl.Null:
        out = s.cast(want)
    elif want == pl.Int64 and have.is_integer():
        out = s.cast(pl.Int64, strict=False)
        if out.null_count() != s.null_count():
            raise WriteError(f"{target}: column {s.name} has integers too large for Int64")
    elif want == pl.Float64 and have == pl.Float32:
        out = s.cast(pl.Float64)
    elif isinstance(want, pl.Datetime) and isinstance(have, pl.Datetime) and not have.time_zone:
        if have.time_unit == "ns" and (s.dt.nanosecond() % 1000 != 0).any():
            raise WriteError(
                f"{target}: column {s.name} has nanoseconds; canonical times keep microseconds"
            )
        out = s.cast(want)
    else:
        raise WriteError(
            f"{target}: column {s.name} is {have}, expected {want} "
            "(convert with volna.io.to_canonical)"
        )
    if want == pl.Float64:
        _finite(out, target)
    return out


def _finite(s: pl.Series, target: str) -> None:
    bad = s.is_not_null() & ~s.is_finite()
    if bad.any():
        row = int(bad.arg_max() or 0) + 1
        raise WriteError(
            f"{target}: row {row}, column {s.name}: {s[row - 1]!r} is not a number "
            "(NaN or infinite); use null for a missing value"
        )


def csv_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """The table as CSV holds it: option columns (Boolean) as 1/0."""
    return frame.with_columns(pl.col(pl.Boolean).cast(pl.Int8))
