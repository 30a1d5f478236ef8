"""CSV (and tab- or semicolon-delimited text): read strictly, write plainly.

Reading checks what a lenient parser would paper over, because a shifted
field silently moves an answer into the wrong question:

* the encoding (see :mod:`volna.io.encoding`);
* the delimiter, chosen from the header line among ``,`` ``;`` and tab;
* every record has exactly as many fields as the header (a ragged line is a
  ReadError naming the line), and every quote is closed.

Blank lines are skipped when the file has more than one column (they carry no
answer); in a one-column file a blank line is an empty answer and is kept.
Rows are numbered by record (respondent), the header not counted; a record
may span several lines when a quoted answer contains line breaks.

The field-count check runs in polars on the file's lines (counting
delimiters outside quotes, carrying the "inside a quote" state from line to
line by the parity of quote characters), so a million rows take about a
second, not the many seconds a Python loop would.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import polars as pl

from volna.errors import ReadError
from volna.io.encoding import TextSource, recode, sniff_text
from volna.io.raw import RawTable, settle_header

DELIMITERS = (",", ";", "\t")
_QUOTED = re.compile(r'"[^"]*"')
_SHOWN = {",": "','", ";": "';'", "\t": "tab"}


def read_delimited(path: Path, source: str) -> RawTable:
    """Read a delimited text file into a RawTable of String columns.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "data.csv"
    >>> _ = p.write_text('id,comment\\nr1,"one, two"\\nr2,\\n', encoding="utf-8")
    >>> read_delimited(p, "data.csv").frame.rows()
    [('r1', 'one, two'), ('r2', None)]
    >>> _ = p.write_text("id,age\\nr1,34\\nr2\\n", encoding="utf-8")
    >>> read_delimited(p, "data.csv")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    volna.errors.ReadError: data.csv: line 3 has 1 field, the header has 2; every line needs ...
    """
    text = sniff_text(path, source)
    try:
        return _read(path, source, text)
    except pl.exceptions.ComputeError as exc:
        if "utf-8" not in str(exc).lower():
            raise
    # Not UTF-8: Windows-1251 if it is plausible, else a ReadError.
    return _read(path, source, recode(path, source))


def _read(path: Path, source: str, text: TextSource) -> RawTable:
    src: Path | bytes = text.data if text.data is not None else path
    lines = _lines(src)
    head = lines.head(1000).collect().to_series() if lines.collect_schema() else pl.Series()
    if head.len() == 0 or (head.len() < 1000 and head.str.strip_chars().str.len_bytes().max() == 0):
        raise ReadError(f"{source}: the file is empty (expected a header line with column names)")
    header_text = _header_record(head, source)
    delimiter = _delimiter(header_text, source)
    names = next(csv.reader(io.StringIO(header_text), delimiter=delimiter))
    # Only the quote counts are kept, not the lines: memory for the parse.
    quotes = lines.select(pl.col("line").str.count_matches('"', literal=True))
    starts = _record_starts(quotes.collect(engine="streaming").to_series(), source)
    try:
        frame = pl.read_csv(
            src,
            separator=delimiter,
            has_header=True,
            infer_schema=False,
            quote_char='"',
            null_values=None,
            truncate_ragged_lines=False,
            raise_if_empty=False,
        )
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException) as exc:
        if "utf-8" in str(exc).lower():
            raise
        # Too many fields on some line, or quoting polars reads differently:
        # let the standard library find the line.
        raise _locate_error(src, delimiter, len(names), source, exc) from None
    if frame.width != len(names) or frame.height != starts.len() - 1:
        raise _locate_error(src, delimiter, len(names), source, None)
    if len(names) > 1:
        blank = _short_records(frame, lines, starts, delimiter, source)
        if blank is not None:
            frame = frame.filter(~blank)
    return RawTable(
        settle_header(names, frame, source),
        source,
        "csv",
        delimiter=delimiter,
        encoding=text.encoding,
    )


def _lines(src: Path | bytes) -> pl.LazyFrame:
    """The file's physical lines, one String row each ("line"), lazily."""
    # NUL cannot occur (sniff_text refuses it), so it works as a separator
    # that never splits a line; quote_char=None keeps quotes as text.
    options: dict[str, Any] = {
        "has_header": False,
        "separator": "\x00",
        "quote_char": None,
        "infer_schema": False,
        "empty_string_is_null": False,
        "new_columns": ["line"],
        "raise_if_empty": False,
    }
    if isinstance(src, Path):
        return pl.scan_csv(src, **options)
    # Re-encoded text is already in memory; scanning bytes lazily is slow.
    return pl.read_csv(src, **options).lazy()


def _header_record(lines: pl.Series, source: str) -> str:
    """The header record's text (several lines if a quoted name holds a line break)."""
    if not lines[0].strip():
        raise ReadError(f"{source}: line 1 is blank; the first line must name the columns")
    parts = []
    quotes = 0
    for line in lines.head(1000):
        parts.append(line)
        quotes += line.count('"')
        if quotes % 2 == 0:
            return "\n".join(parts)
    raise ReadError(f"{source}: line 1: a quoted column name is never closed")


def _delimiter(header: str, source: str) -> str:
    """The delimiter the header uses: the most frequent of , ; tab outside quotes."""
    bare = _QUOTED.sub("", header)
    counts = {d: bare.count(d) for d in DELIMITERS}
    best = max(counts.values())
    if best == 0:
        return ","  # a single column
    winners = [d for d, k in counts.items() if k == best]
    if len(winners) > 1:
        shown = " and ".join(_SHOWN[d] for d in winners)
        raise ReadError(
            f"{source}: line 1: cannot tell the delimiter, the header has as many {shown}; "
            "use one delimiter"
        )
    return winners[0]


def _record_starts(quotes: pl.Series, source: str) -> pl.Series:
    """0-based index of the first line of each record (the header is record 0).

    ``quotes`` counts the quote characters on each line. A line starts a
    record unless it begins inside a quoted field, which is the case when the
    lines before it hold an odd number of quotes.
    """
    before = quotes.cum_sum() - quotes
    starts = (before % 2 == 0).arg_true()
    if quotes.sum() % 2 == 1:
        line = int(starts[-1]) + 1
        raise ReadError(f"{source}: line {line}: a quoted field is never closed (missing '\"')")
    return starts


def _short_records(
    frame: pl.DataFrame, scan: pl.LazyFrame, starts: pl.Series, delimiter: str, source: str
) -> pl.Series | None:
    """Refuse records with too few fields; return which rows are blank lines (or None).

    polars pads a short record with nulls, so only rows whose last column is
    null can be short: count those records' fields outside quotes.
    """
    candidates = frame.to_series(frame.width - 1).is_null().arg_true()
    if candidates.len() == 0:
        return None
    lines = scan.collect().to_series()
    ends = starts.append(pl.Series([lines.len()], dtype=starts.dtype))
    bounds = pl.DataFrame(
        {"start": starts.gather(candidates + 1), "end": ends.gather(candidates + 2)}
    ).with_row_index("row")
    single = bounds.filter(pl.col("end") - pl.col("start") == 1)
    text = lines.gather(single["start"])
    fields = (
        text.str.replace_all(_QUOTED.pattern, "").str.count_matches(delimiter, literal=True) + 1
    )
    checked = single.with_columns(fields=fields, blank=text.str.strip_chars("\r") == "").select(
        "row", "start", "fields", "blank"
    )
    multi = bounds.filter(pl.col("end") - pl.col("start") > 1)
    if multi.height:
        # Records with line breaks in quoted fields: rare, counted exactly by csv.
        counted = [
            len(next(csv.reader(io.StringIO("\n".join(lines[s:e].to_list())), delimiter=delimiter)))
            for s, e in multi.select("start", "end").iter_rows()
        ]
        checked = pl.concat(
            [
                checked,
                multi.select(
                    "row", "start", fields=pl.Series(counted, dtype=fields.dtype), blank=False
                ),
            ]
        ).sort("row")
    width = frame.width
    bad = checked.filter((pl.col("fields") != width) & ~pl.col("blank")).head(1)
    if bad.height:
        line, count = int(bad["start"][0]) + 1, int(bad["fields"][0])
        raise ReadError(
            f"{source}: line {line} has {count} field{'s' if count != 1 else ''}, "
            f"the header has {width}; every line needs one field per column "
            f"(look for a missing or unquoted {_SHOWN[delimiter]})"
        )
    blank_rows = checked.filter("blank")["row"]
    if blank_rows.len() == 0:
        return None
    return pl.repeat(False, frame.height, eager=True).scatter(candidates.gather(blank_rows), True)


def _locate_error(
    src: Path | bytes, delimiter: str, width: int, source: str, exc: BaseException | None
) -> ReadError:
    """Find the first malformed line with the csv module (slow, error path only)."""
    data = src.read_bytes() if isinstance(src, Path) else src
    stream = io.StringIO(data.decode("utf-8-sig"), newline="")
    reader = csv.reader(stream, delimiter=delimiter, strict=True)
    try:
        for row in reader:
            if row and len(row) != width:
                return ReadError(
                    f"{source}: line {reader.line_num} has {len(row)} fields, the header has "
                    f"{width}; every line needs one field per column "
                    f"(look for a missing or unquoted {_SHOWN[delimiter]})"
                )
    except csv.Error as err:
        return ReadError(f"{source}: line {reader.line_num}: malformed CSV: {err}")
    detail = str(exc).splitlines()[0] if exc is not None else "the parsers disagree"
    return ReadError(f"{source}: cannot parse as CSV ({detail}); check the quoting")


def write_delimited(frame: pl.DataFrame, path: Path, separator: str = ",") -> None:
    """Write a prepared export frame as UTF-8 text, empty for null.

    Comma-delimited (tab for .tsv). Dates are ISO (``2022-03-01``),
    date-times ISO with microseconds, floats in the shortest form that reads
    back exactly.
    """
    frame.write_csv(
        path,
        separator=separator,
        quote_char='"',
        null_value="",
        datetime_format="%Y-%m-%dT%H:%M:%S%.6f",
        date_format="%Y-%m-%d",
        line_terminator="\n",
    )
