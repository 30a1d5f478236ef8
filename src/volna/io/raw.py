"""Stage one of reading: a file as it is, before the questionnaire gives it meaning.

:func:`read_raw` turns any supported file into a :class:`RawTable`: the cells
as the file holds them (CSV and XLSX as text, parquet, SPSS and Stata in their
own types) plus whatever metadata the format carries (SPSS/Stata value and
variable labels). The validator and :func:`volna.io.to_canonical` both start
from it.

Formats are chosen by extension unless ``format=`` says otherwise:

=========== ========================== =====================================
format      extensions                 notes
=========== ========================== =====================================
``csv``     .csv .txt .tsv             delimiter , ; or tab, from the header
``xlsx``    .xlsx                      first sheet unless ``sheet=``
``parquet`` .parquet .pq
``sav``     .sav .zsav                 SPSS
``dta``     .dta                       Stata
=========== ========================== =====================================
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from volna.errors import ReadError, Remedy

log = logging.getLogger("volna.io")

#: Format names, each with the file extensions that select it.
FORMATS: dict[str, tuple[str, ...]] = {
    "csv": (".csv", ".txt", ".tsv"),
    "xlsx": (".xlsx",),
    "parquet": (".parquet", ".pq"),
    "sav": (".sav", ".zsav"),
    "dta": (".dta",),
}

# Extensions people try, with what to do instead.
_REFUSED = {
    ".xls": "an old Excel .xls file; save it as .xlsx or CSV",
    ".xlsm": "a macro-enabled workbook; save it as .xlsx (without macros)",
    ".ods": "an OpenDocument spreadsheet; save it as .xlsx or CSV",
    ".json": "JSON; export the responses as CSV or .xlsx",
}


@dataclass(frozen=True)
class RawTable:
    """A response file as read, before matching it to a questionnaire.

    ``frame`` holds the cells: CSV and XLSX columns are all String (empty
    cells null); parquet, SPSS and Stata columns keep their types. Column
    names are the file's, with surrounding whitespace removed. ``source`` is
    the path for messages. ``value_labels`` maps a column to its SPSS/Stata
    value labels (value -> label); ``variable_labels`` a column to its label.
    ``delimiter`` and ``encoding`` are set for CSV files only.

    >>> import polars as pl
    >>> t = RawTable(pl.DataFrame({"age": ["34"]}), "data.csv", "csv", delimiter=";")
    >>> t.decimal_comma
    True
    """

    frame: pl.DataFrame
    source: str
    format: str
    value_labels: dict[str, dict[Any, str]] = field(default_factory=dict)
    variable_labels: dict[str, str] = field(default_factory=dict)
    delimiter: str | None = None
    encoding: str | None = None

    @property
    def decimal_comma(self) -> bool:
        """True when numbers may be written ``3,5``: a CSV delimited by ``;``.

        That is what Excel writes where the comma is the decimal separator
        (Russia, most of Europe); in a comma-delimited file ``3,5`` would have
        to be quoted and is far more likely a list or a typo.
        """
        return self.format == "csv" and self.delimiter == ";"


def detect_format(path: str | Path, format: str | None = None) -> str:
    """The format name for ``path``: ``format`` if given, else from the extension.

    >>> detect_format("answers.TSV"), detect_format("x.bin", "parquet")
    ('csv', 'parquet')
    >>> detect_format("answers.xls")
    Traceback (most recent call last):
    ...
    volna.errors.ReadError: answers.xls: an old Excel .xls file; save it as .xlsx or CSV
    """
    if format is not None:
        if format not in FORMATS:
            raise ReadError(f"{path}: unknown format {format!r} (expected one of {_names()})")
        return format
    suffix = Path(path).suffix.lower()
    for name, suffixes in FORMATS.items():
        if suffix in suffixes:
            return name
    if suffix in _REFUSED:
        raise ReadError(f"{path}: {_REFUSED[suffix]}")
    raise ReadError(
        f"{path}: cannot tell the format from the extension {suffix or '(none)'!r}; "
        f"name it {', '.join(s for v in FORMATS.values() for s in v)}",
        remedy=Remedy("format", choices=tuple(FORMATS), lead="or"),
    )


def _names() -> str:
    return ", ".join(FORMATS)


def read_raw(
    path: str | Path, *, format: str | None = None, sheet: str | int | None = None
) -> RawTable:
    """Read a response file as it is; ReadError (one line) if it cannot be read.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "data.csv"
    >>> _ = p.write_text("id;age\\nr1;34\\n", encoding="utf-8")
    >>> t = read_raw(p)
    >>> t.format, t.delimiter, t.frame.rows()
    ('csv', ';', [('r1', '34')])
    """
    fmt = detect_format(path, format)
    p = Path(path)
    if sheet is not None and fmt != "xlsx":
        raise ReadError(f"{path}: sheet= only applies to .xlsx files, this is {fmt}")
    if not p.is_file():
        raise ReadError(f"{path}: no such file" if not p.exists() else f"{path}: not a file")
    # Import lazily: pyreadstat and openpyxl are slow to import and a CSV
    # user should not pay for them.
    if fmt == "csv":
        from volna.io.delimited import read_delimited

        return read_delimited(p, str(path))
    if fmt == "xlsx":
        from volna.io.excel import read_xlsx

        return read_xlsx(p, str(path), sheet)
    if fmt == "parquet":
        from volna.io.parquet import read_parquet

        return read_parquet(p, str(path))
    from volna.io.stats import read_stats

    return read_stats(p, str(path), fmt)


def settle_header(names: list[Any], frame: pl.DataFrame, source: str) -> pl.DataFrame:
    """Give ``frame`` the header ``names`` after checking them; shared by CSV and XLSX.

    Names are stripped of surrounding whitespace. A column with no name is
    dropped if it is empty throughout (spreadsheets often carry a stray
    trailing column) and refused if it holds data, since nobody can say what
    the data means. Duplicate names are refused: which copy would be the answer?

    >>> f = pl.DataFrame({"a": ["1"], "b": [None]})
    >>> settle_header([" age ", None], f, "d.csv").columns
    ['age']
    >>> settle_header(["age", "age"], f, "d.csv")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    volna.errors.ReadError: d.csv: column name 'age' appears 2 times (columns 1, 2); ...
    """
    clean = ["" if n is None else str(n).strip() for n in names]
    keep: list[int] = []
    for i, n in enumerate(clean):
        if n:
            keep.append(i)
            continue
        column = frame.to_series(i)
        if column.null_count() != frame.height:
            first = int(column.is_not_null().arg_true()[0]) + 1
            raise ReadError(
                f"{source}: column {i + 1} has no name in the header but holds data "
                f"(first in row {first}); give it a name or delete it"
            )
        log.info("%s: dropped column %d, which has no name and no data", source, i + 1)
    counts = Counter(clean[i] for i in keep)
    dupes = [n for n, k in counts.items() if k > 1]
    if dupes:
        n = dupes[0]
        where = ", ".join(str(i + 1) for i in keep if clean[i] == n)
        more = f" (also: {', '.join(repr(d) for d in dupes[1:4])})" if len(dupes) > 1 else ""
        raise ReadError(
            f"{source}: column name {n!r} appears {counts[n]} times (columns {where}); "
            f"rename or remove the copies{more}"
        )
    # Select and rename by position: the frame's own names may be placeholders.
    return frame.select(pl.nth(i).alias(clean[i]) for i in keep)
