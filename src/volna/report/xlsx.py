"""A report as an Excel workbook: an "about" sheet, one sheet per table, the estimates.

- "about": the title, the synthetic-data notice, the key facts, the rules applied, the
  metadata, and a list of the tables with their sheets.
- one sheet per :class:`~volna.report.model.ReportTable`, as the reader sees it:
  header groups merged over their columns, suppressed cells a grey dash, unreliable
  cells in italics with their footnote symbol, significance letters superscript.
  A cell that displays a plain number ("45.2", "1 234", "45,2", "12.5%") is written as
  that number, formatted to show as many decimals as it did, so that it sorts and
  sums; every other cell (a dash, "<0.5", a cell with letters or a footnote) is text.
- "estimates": every table's tidy estimate rows in one sheet, a ``table`` column (the
  table's key) first, numbers as numbers (what :func:`read_estimates` reads back):
  NaN an empty cell, infinities (an SRS's degrees of freedom) the text "inf".

Text never runs as a formula: a text starting with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return is stored as a string with Excel's quote prefix (what typing a
leading apostrophe does), so a choice label ``=HYPERLINK(...)`` stays a label even
when someone edits the cell.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time
from pathlib import Path

import polars as pl
from openpyxl import Workbook, load_workbook
from openpyxl.cell.cell import Cell
from openpyxl.cell.rich_text import CellRichText, TextBlock
from openpyxl.cell.text import InlineFont
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from volna.report.model import Report, ReportTable
from volna.report.write import (
    cell_parts,
    estimates_table,
    header_spans,
    labels,
    notes_for_marks,
    shown_text,
    table_cells,
)

ABOUT, ESTIMATES = "about", "estimates"
#: the characters a sheet name may not hold
#: how an infinite number is written (a spreadsheet has none), by sign
_INFINITY = {True: "inf", False: "-inf"}
_SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\\x00-\x1f]")
#: what makes a spreadsheet read a text as a formula (OWASP's CSV injection list)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: a displayed number: an optional sign, digits in groups of three (spaces, or commas in
#: English, between them), decimals after a point (or a comma, outside English), an
#: optional percent sign. No leading zero before another digit: codes stay text.
_SPACES = " \u00a0\u202f\u2009"
_NUMBER = {
    "en": re.compile(rf"^([-−]?)(0|[1-9]\d{{0,2}}(?:[,{_SPACES}]?\d{{3}})*)(?:\.(\d+))?(%?)$"),
    "": re.compile(rf"^([-−]?)(0|[1-9]\d{{0,2}}(?:[{_SPACES}]?\d{{3}})*)(?:[.,](\d+))?(%?)$"),
}

_BOLD = Font(bold=True)
_TITLE = Font(bold=True, size=14)
_WARN = Font(bold=True, color="9C5700")
_WARN_FILL = PatternFill("solid", fgColor="FFF4D6")
_GREY = Font(color="8A919C")
_ITALIC = Font(italic=True)
_MUTED = Font(italic=True, color="5B6472")
_HEAD_BORDER = Border(bottom=Side(style="medium"))
_SUP = InlineFont(vertAlign="superscript", b=True)


def sheet_name(text: str, taken: set[str]) -> str:
    """A valid, unused sheet name made from ``text``; added to ``taken`` (lower case).

    Excel's rules: at most 31 characters, none of ``[]:*?/\\``, not starting or
    ending with an apostrophe, not "History", unique regardless of case.

    >>> taken = {"about"}
    >>> sheet_name("banner:plans/by sector [2024]", taken)
    'banner_plans_by sector _2024_'
    >>> sheet_name("About", taken), sheet_name("x" * 40, taken), sheet_name("x" * 40, taken)
    ('About~2', 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx', 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxx~2')
    """
    base = _SHEET_FORBIDDEN.sub("_", str(text)).strip().strip("'").strip() or "sheet"
    if base.lower() == "history":
        base = "history_"
    name, i = base[:31], 1
    while name.lower() in taken:
        i += 1
        suffix = f"~{i}"
        name = base[: 31 - len(suffix)] + suffix
    taken.add(name.lower())
    return name


def write_xlsx(report: Report, path: str | Path) -> Path:
    """Write the workbook to ``path`` (through a temporary file); the path."""
    path = Path(path)
    words = labels(report.lang)
    book = Workbook()
    about = book.active
    about.title = ABOUT
    taken = {ABOUT, ESTIMATES}
    sheets = []
    for table in report.tables():
        name = sheet_name(table.key, taken)
        _table_sheet(book.create_sheet(name), table, report.lang)
        sheets.append((name, table))
    _about_sheet(about, report, sheets, words)
    _estimates_sheet(book.create_sheet(ESTIMATES), estimates_table(report))
    tmp = path.with_name(f".{path.name}.tmp")
    book.save(tmp)
    tmp.replace(path)
    return path


def read_estimates(path: str | Path) -> pl.DataFrame:
    """The "estimates" sheet of a report workbook, as written (empty cells are null)."""
    book = load_workbook(path, read_only=True, data_only=True)
    try:
        rows = list(book[ESTIMATES].iter_rows(values_only=True))
    finally:
        book.close()
    if not rows:
        return pl.DataFrame()
    header = [str(h) for h in rows[0]]
    columns = {h: [row[i] for row in rows[1:]] for i, h in enumerate(header)}
    return pl.DataFrame({h: _column(h, values) for h, values in columns.items()})


def _column(name: str, values: list) -> pl.Series:
    """A column read back: numbers (with "inf" and "-inf" as infinities) or as read."""
    infinite = {text: float(text) for text in _INFINITY.values()}
    numbers = [v for v in values if v is not None]
    if numbers and all(
        (isinstance(v, int | float) and not isinstance(v, bool)) or v in infinite for v in numbers
    ):
        if any(isinstance(v, str | float) for v in numbers):
            return pl.Series(name, [infinite.get(v, v) for v in values], dtype=pl.Float64)
        return pl.Series(name, values, dtype=pl.Int64)
    return pl.Series(name, values, strict=False)


def set_text(cell: Cell, text: str) -> Cell:
    """Put ``text`` in ``cell`` as text, never a formula (see the module's note)."""
    cell.value = text
    cell.data_type = "s"
    if text.startswith(_FORMULA_START):
        cell.quotePrefix = True
    return cell


def _put(sheet: Worksheet, row: int, column: int, value: object) -> Cell:
    """A value as a spreadsheet cell: numbers and dates as such, everything else text."""
    cell = sheet.cell(row=row, column=column)
    if value is None:
        return cell
    if isinstance(value, bool):
        cell.value = value
    elif isinstance(value, int | float):
        if isinstance(value, float) and math.isnan(value):
            return cell  # no spreadsheet value: left empty
        if isinstance(value, float) and math.isinf(value):
            return set_text(cell, _INFINITY[value > 0])  # (degrees of freedom of an SRS)
        cell.value = value
    elif isinstance(value, datetime | date | time):
        cell.value = value
    else:
        set_text(cell, str(value))
    return cell


def _about_sheet(sheet: Worksheet, report: Report, sheets: list, words: dict) -> None:
    row = 1
    set_text(sheet.cell(row, 1), report.title).font = _TITLE
    row += 1
    if report.synthetic_notice:
        cell = set_text(sheet.cell(row, 1), f"{words['synthetic']}. {report.synthetic_notice}")
        cell.font, cell.fill = _WARN, _WARN_FILL
        sheet.merge_cells(start_row=row, start_column=1, end_row=row, end_column=3)
        row += 1
    blocks = [
        (words["facts"], list(report.facts)),
        (words["rules"], [(rule, None) for rule in report.rules]),
        ("meta", [(str(k), v) for k, v in report.meta.items() if not isinstance(v, dict)]),
        (words["contents"], [(name, table.title) for name, table in sheets]),
    ]
    blocks.append((ESTIMATES, [(ESTIMATES, words["estimates"])]))
    for heading, pairs in blocks:
        if not pairs:
            continue
        row += 1
        set_text(sheet.cell(row, 1), heading).font = _BOLD
        row += 1
        for label, value in pairs:
            _put(sheet, row, 1, label)
            if value is not None:
                _put(sheet, row, 2, value if _simple(value) else str(value))
            row += 1
    sheet.column_dimensions["A"].width = 48
    sheet.column_dimensions["B"].width = 60
    for line in sheet.iter_rows(min_col=1, max_col=2):
        for cell in line:
            cell.alignment = Alignment(wrap_text=True, vertical="top")


def _simple(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool | date | datetime)


def _table_sheet(sheet: Worksheet, table: ReportTable, lang: str) -> None:
    words = labels(lang)
    row = 1
    set_text(sheet.cell(row, 1), table.title).font = _TITLE
    if table.question:
        row += 1
        set_text(sheet.cell(row, 1), f"{words['question']}: {table.question}").font = _MUTED
    row += 2
    columns = list(table.display.columns)
    spans = header_spans(table)
    if spans:
        column = 1
        for label, span in spans:
            if label:
                cell = set_text(sheet.cell(row, column), label)
                cell.font, cell.alignment = _BOLD, Alignment(horizontal="center")
                if span > 1:
                    sheet.merge_cells(
                        start_row=row,
                        start_column=column,
                        end_row=row,
                        end_column=column + span - 1,
                    )
            column += span
        row += 1
    header_row = row
    for j, name in enumerate(columns, start=1):
        cell = set_text(sheet.cell(row, j), name)
        cell.font, cell.border = _BOLD, _HEAD_BORDER
        cell.alignment = Alignment(horizontal="left" if j == 1 else "right", wrap_text=True)
    for values in table_cells(table):
        row += 1
        for j, (text, mark) in enumerate(values, start=1):
            _display_cell(sheet.cell(row, j), text, mark, lang, first=j == 1)
    notes = [*notes_for_marks(table, lang), *table.notes]
    if notes:
        row += 1
        for note in notes:
            row += 1
            set_text(sheet.cell(row, 1), note).font = _MUTED
    sheet.freeze_panes = sheet.cell(header_row + 1, 2)
    label_width = max([len(str(c)) for c in table.display.get_column(columns[0])] + [10]) + 2
    sheet.column_dimensions["A"].width = min(label_width, 60) if columns else 10
    for j, name in enumerate(columns[1:], start=2):
        width = max([len(str(name)), *(len(str(v)) for v in table.display.get_column(name))])
        sheet.column_dimensions[get_column_letter(j)].width = min(max(width + 2, 9), 30)


def _display_cell(cell: Cell, text: str, mark: str, lang: str, *, first: bool) -> None:
    if first:  # a row label is text as it is
        set_text(cell, shown_text(text, mark))
        return
    value, letters, symbol = cell_parts(text, mark)
    cell.alignment = Alignment(horizontal="right")
    if letters:
        cell.value = CellRichText(
            [value + " ", TextBlock(_SUP, letters), *([symbol] if symbol else [])]
        )
        cell.data_type = "s"
        if mark in ("unreliable", "disclosure"):
            cell.font = _ITALIC
        return
    number = _as_number(value, lang)
    if number is not None and not symbol:
        cell.value, cell.number_format = number
    else:
        set_text(cell, value + symbol)
    if mark == "suppressed":
        cell.font = _GREY
        cell.alignment = Alignment(horizontal="center")
    elif mark in ("unreliable", "disclosure"):
        cell.font = _ITALIC


def _as_number(text: str, lang: str) -> tuple[float | int, str] | None:
    """A displayed number and the number format that shows it alike, or None.

    >>> _as_number("45.2", "en"), _as_number("1,234", "en"), _as_number("1 234,5", "ru")
    ((45.2, '0.0'), (1234, '#,##0'), (1234.5, '#,##0.0'))
    >>> _as_number("−3,50", "ru"), _as_number("12.5%", "en"), _as_number("007", "en")
    ((-3.5, '0.00'), (0.125, '0.0%'), None)
    >>> _as_number("1,5", "en"), _as_number("*", "en")
    (None, None)
    """
    found = _NUMBER.get(lang, _NUMBER[""]).match(text.strip())
    if not found:
        return None
    sign, whole, fraction, percent = found.groups()
    digits = re.sub(r"\D", "", whole)
    number: float | int = float(f"{digits}.{fraction}") if fraction else int(digits)
    if sign:
        number = -number
    fmt = "0." + "0" * len(fraction) if fraction else "0"
    if len(digits) > 3:
        fmt = "#,##" + fmt
    if percent:
        number, fmt = number / 100, fmt + "%"
    return number, fmt


def _estimates_sheet(sheet: Worksheet, frame: pl.DataFrame) -> None:
    for j, name in enumerate(frame.columns, start=1):
        cell = set_text(sheet.cell(1, j), name)
        cell.font, cell.border = _BOLD, _HEAD_BORDER
        sheet.column_dimensions[get_column_letter(j)].width = max(10, min(len(name) + 4, 30))
    for i, values in enumerate(frame.iter_rows(), start=2):
        for j, value in enumerate(values, start=1):
            _put(sheet, i, j, value)
    sheet.freeze_panes = "B2"
    if frame.width:
        sheet.auto_filter.ref = f"A1:{get_column_letter(frame.width)}{frame.height + 1}"
