""".xlsx workbooks: read one sheet as text, write one sheet safely.

Reading (openpyxl, read-only, XML parsed through defusedxml):

* the file must be under :data:`MAX_BYTES`, a zip whose declared unpacked
  size is under :data:`MAX_UNPACKED` (a zip bomb is refused before it is
  opened), and readable as a workbook; otherwise one-line ReadError;
* row 1 is the header; the first sheet unless ``sheet=`` (a name or 0-based
  index);
* every cell becomes text the way the spreadsheet shows it: integral numbers
  without ``.0``, dates as ISO ``2022-03-01`` (date-times at midnight too),
  other date-times ``2022-03-01 10:05:00``, times ``10:05:00``, durations
  ``30:00:05``, booleans ``true``/``false``, error cells as their code
  (``#N/A``, which no number or date parser accepts);
* a formula is read as its last computed value; a formula Excel never
  computed (no cached value, as written by some libraries) is refused rather
  than read as empty;
* trailing empty rows are dropped; empty rows in between are kept (they are
  respondents with no answers, and dropping them would renumber the rest).

Writing: bold, frozen header; text cells are always written as text, so
``=HYPERLINK(...)`` typed by a respondent stays a string and never becomes a
live formula; integers beyond 2**53 (which Excel would round) and date-times
with sub-millisecond digits (which Excel cannot hold) are written as text.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path
from typing import Any

import polars as pl

from volna.errors import ReadError, WriteError
from volna.io.codes import as_text
from volna.io.raw import RawTable, settle_header

MAX_BYTES = 200_000_000
MAX_UNPACKED = 2_000_000_000
MAX_ROWS = 1_048_576
MAX_COLUMNS = 16_384
MAX_CELL_CHARS = 32_767
_FORMULA_LIKE = ("=", "+", "-", "@")


def read_xlsx(path: Path, source: str, sheet: str | int | None = None) -> RawTable:
    """Read one sheet of an .xlsx workbook as String columns.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "data.xlsx"
    >>> _ = p.write_bytes(b"PK\\x03\\x04 truncated")
    >>> read_xlsx(p, "data.xlsx")
    Traceback (most recent call last):
    ...
    volna.errors.ReadError: data.xlsx: not a valid .xlsx file (truncated or damaged zip)
    """
    _check_container(path, source)
    import openpyxl  # slow to import; only .xlsx users pay

    values, formulas = _read_cells(path, source, sheet, openpyxl, data_only=False)
    if formulas:
        # Take what Excel computed; refuse formulas it never computed.
        cached, _ = _read_cells(path, source, sheet, openpyxl, data_only=True)
        for r, c in formulas:
            value = cached[r][c] if c < len(cached[r]) else None
            if value is None:
                raise ReadError(
                    f"{source}: cell {_cell_name(r, c)} holds a formula with no saved result; "
                    "open and save the file in Excel, or paste the values"
                )
            values[r][c] = value
    return _to_table(values, source)


def _check_container(path: Path, source: str) -> None:
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ReadError(
            f"{source}: {size / 1e6:.0f} MB is larger than the {MAX_BYTES // 1_000_000} MB "
            "volna reads from .xlsx; save it as CSV"
        )
    try:
        with zipfile.ZipFile(path) as z:
            unpacked = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise ReadError(f"{source}: not a valid .xlsx file (truncated or damaged zip)") from None
    if unpacked > MAX_UNPACKED:
        raise ReadError(
            f"{source}: unpacks to {unpacked // 1_000_000} MB, more than the "
            f"{MAX_UNPACKED // 1_000_000} MB volna accepts from an .xlsx; save it as CSV"
        )


def _read_cells(
    path: Path, source: str, sheet: str | int | None, openpyxl: Any, *, data_only: bool
) -> tuple[list[list[Any]], list[tuple[int, int]]]:
    """Rows of cell values as text (or None), and where the formulas are."""
    rows: list[list[Any]] = []
    formulas: list[tuple[int, int]] = []
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=data_only, keep_links=False)
    except Exception as exc:  # hostile input: any parser failure is a ReadError
        raise ReadError(f"{source}: not a valid .xlsx file ({_brief(exc)})") from None
    try:
        ws = _sheet(wb, sheet, source)
        # The declared dimension may be a lie; iterate what is there.
        ws.reset_dimensions()
        for r, row in enumerate(ws.iter_rows()):
            if r >= MAX_ROWS or len(row) > MAX_COLUMNS:
                # More than Excel itself allows: a damaged or crafted file.
                raise ReadError(
                    f"{source}: row {r + 1} lies beyond what an .xlsx sheet can hold "
                    f"({MAX_ROWS} rows x {MAX_COLUMNS} columns)"
                )
            out = []
            for c, cell in enumerate(row):
                if cell.data_type == "f":
                    formulas.append((r, c))
                    out.append(None)
                else:
                    out.append(_text(cell.value))
            rows.append(out)
    except ReadError:
        raise
    except Exception as exc:  # a damaged sheet fails while streaming
        raise ReadError(f"{source}: not a valid .xlsx file ({_brief(exc)})") from None
    finally:
        wb.close()
    return rows, formulas


def _brief(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


def _sheet(wb: Any, sheet: str | int | None, source: str) -> Any:
    names = wb.sheetnames
    if not names:
        raise ReadError(f"{source}: the workbook has no sheets")
    if sheet is None:
        return wb[names[0]]
    if isinstance(sheet, int):
        if 0 <= sheet < len(names):
            return wb[names[sheet]]
        raise ReadError(f"{source}: no sheet number {sheet} (sheets: {', '.join(names)})")
    if sheet in names:
        return wb[sheet]
    raise ReadError(f"{source}: no sheet named {sheet!r} (sheets: {', '.join(names)})")


def _text(value: Any) -> str | None:
    """A cell value as the text the spreadsheet shows."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, dt.timedelta):
        sign = "-" if value < dt.timedelta(0) else ""
        total = abs(value)
        hours, rest = divmod(total.days * 86400 + total.seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        frac = f".{total.microseconds:06d}" if total.microseconds else ""
        return f"{sign}{hours}:{minutes:02d}:{seconds:02d}{frac}"
    return as_text(value)


def _cell_name(row: int, column: int) -> str:
    from openpyxl.utils import get_column_letter

    return f"{get_column_letter(column + 1)}{row + 1}"


def _to_table(rows: list[list[Any]], source: str) -> RawTable:
    while rows and all(v is None or (isinstance(v, str) and not v.strip()) for v in rows[-1]):
        rows.pop()
    if not rows:
        raise ReadError(f"{source}: the sheet is empty (expected a header row with column names)")
    header = rows[0]
    width = max(len(r) for r in rows)
    header = header + [None] * (width - len(header))
    columns = [f"column_{i}" for i in range(width)]
    data = {
        name: pl.Series(name, [r[i] if i < len(r) else None for r in rows[1:]], dtype=pl.String)
        for i, name in enumerate(columns)
    }
    frame = pl.DataFrame(data) if data else pl.DataFrame()
    return RawTable(settle_header(header, frame, source), source, "xlsx")


# -- writing ----------------------------------------------------------------------


def write_xlsx(frame: pl.DataFrame, path: Path, target: str) -> None:
    """Write the table as one sheet; see the module docstring for the safety rules."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils.exceptions import IllegalCharacterError

    if frame.height + 1 > MAX_ROWS or frame.width > MAX_COLUMNS:
        raise WriteError(
            f"{target}: {frame.height} rows x {frame.width} columns do not fit in an .xlsx "
            f"sheet ({MAX_ROWS - 1} x {MAX_COLUMNS}); write CSV or parquet"
        )
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("responses")
    ws.freeze_panes = "A2"
    bold = Font(bold=True)

    def text_cell(value: str) -> Any:
        cell = WriteOnlyCell(ws, value=value)
        cell.data_type = "s"  # never a formula, whatever it starts with
        return cell

    header = []
    for name in frame.columns:
        cell = text_cell(name)
        cell.font = bold
        header.append(cell)
    ws.append(header)
    columns = [_column_values(frame[name], text_cell, target) for name in frame.columns]
    for r in range(frame.height):
        row = [col[r] for col in columns]
        try:
            ws.append(row)
        except IllegalCharacterError:
            c = next(i for i, v in enumerate(row) if _illegal(v))
            raise WriteError(
                f"{target}: row {r + 1}, column {frame.columns[c]}: contains a control "
                "character .xlsx cannot store; write CSV or parquet"
            ) from None
    wb.save(path)


def _illegal(value: Any) -> bool:
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    text = getattr(value, "value", value)
    return isinstance(text, str) and bool(ILLEGAL_CHARACTERS_RE.search(text))


def _column_values(s: pl.Series, text_cell: Any, target: str) -> list[Any]:
    dtype = s.dtype
    if dtype == pl.Boolean:
        return s.cast(pl.Int8).to_list()
    if dtype == pl.String:
        too_long = s.str.len_chars() > MAX_CELL_CHARS
        if too_long.any():
            row = int(too_long.arg_max() or 0) + 1
            raise WriteError(
                f"{target}: row {row}, column {s.name}: longer than the {MAX_CELL_CHARS} "
                "characters an .xlsx cell holds; write CSV or parquet"
            )
        return [
            text_cell(v) if v is not None and v.startswith(_FORMULA_LIKE) else v
            for v in s.to_list()
        ]
    if dtype == pl.Int64:
        # Excel keeps numbers as doubles: larger integers would be rounded.
        return [text_cell(str(v)) if v is not None and abs(v) > 2**53 else v for v in s.to_list()]
    if isinstance(dtype, pl.Datetime):
        if (s.dt.microsecond() % 1000 != 0).any():
            # Excel keeps milliseconds at best; text keeps every digit.
            return [None if v is None else text_cell(v.isoformat(sep=" ")) for v in s.to_list()]
        return s.to_list()
    if dtype.is_nested() or dtype in (pl.Object, pl.Binary):
        raise WriteError(f"{target}: column {s.name} is {dtype}, which .xlsx cannot hold")
    return s.to_list()
