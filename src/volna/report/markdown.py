"""A report as GitHub-flavoured Markdown: headings, pipe tables, notes, linked charts.

Markdown has no column spans, so a banner table's header groups are named in a line
above it. Charts are separate SVG files (``write_report`` writes them to
``charts/``), shown as images with their text alternative. Every text from the
report is escaped: a pipe or a newline cannot break a table, an asterisk or a
bracket cannot turn into emphasis or a link, and raw HTML is shown, not run.

>>> escape_cell("a | b\\nc *d*")
'a \\\\| b<br>c \\\\*d\\\\*'
"""

from __future__ import annotations

import re

from volna.report.model import Chart, Report, ReportTable
from volna.report.write import (
    chart_filename,
    check_svg,
    header_spans,
    labels,
    notes_for_marks,
    shown_text,
    table_cells,
)

# CommonMark lets a backslash escape any ASCII punctuation; these are the ones that
# could start markup inside a line (emphasis, code, links, raw HTML, entities, tables).
_SPECIAL = re.compile(r"([\\`*_\[\]<>|&~])")
_BLOCK_START = re.compile(r"^(\s*)([#>+=-])")
_ORDERED_START = re.compile(r"^(\s*\d+)([.)])")


def escape_inline(text: object) -> str:
    """Text that Markdown shows as it is, on one line (newlines become spaces)."""
    one_line = re.sub(r"\s*[\r\n]+\s*", " ", str(text))
    return _SPECIAL.sub(r"\\\1", one_line)


def escape_cell(text: object) -> str:
    """A table cell: escaped, and a line break is ``<br>`` (the table stays one row)."""
    lines = re.split(r"\r\n|\r|\n", str(text))
    return "<br>".join(_SPECIAL.sub(r"\\\1", line) for line in lines)


def escape_paragraph(text: object) -> str:
    """A paragraph: escaped, and no line may start a heading, quote or list."""
    lines = re.split(r"\r\n|\r|\n", str(text))
    out = []
    for line in lines:
        line = _SPECIAL.sub(r"\\\1", line)
        line = _BLOCK_START.sub(r"\1\\\2", line)
        out.append(_ORDERED_START.sub(r"\1\\\2", line))
    return "  \n".join(out)


def render_markdown(report: Report, chart_dir: str = "charts") -> str:
    """The whole report as Markdown; charts linked as ``<chart_dir>/<key>.<lang>.svg``."""
    words = labels(report.lang)
    parts = [f"# {escape_inline(report.title)}"]
    if report.synthetic_notice:
        parts.append(
            f"> **{escape_inline(words['synthetic'])}.** {escape_inline(report.synthetic_notice)}"
        )
    if report.facts:
        rows = [f"- **{escape_inline(k)}:** {escape_inline(v)}" for k, v in report.facts]
        parts.append(f"## {escape_inline(words['facts'])}\n\n" + "\n".join(rows))
    if report.rules:
        rules = [f"- {escape_inline(rule)}" for rule in report.rules]
        parts.append(f"## {escape_inline(words['rules'])}\n\n" + "\n".join(rules))
    for section in report.sections:
        parts.append(f"## {escape_inline(section.title)}")
        parts.extend(escape_paragraph(p) for p in section.intro)
        parts.extend(_chart(c, chart_dir, report.lang) for c in section.charts)
        parts.extend(_table(t, chart_dir, report.lang) for t in section.tables)
    return "\n\n".join(p for p in parts if p) + "\n"


def _chart(chart: Chart, chart_dir: str, lang: str) -> str:
    check_svg(chart.svg, chart.key)  # the file written beside must load nothing either
    target = f"{chart_dir}/{chart_filename(chart.key, lang)}" if chart_dir else ""
    lines = [f"![{escape_inline(chart.alt)}]({target})"]
    caption = ". ".join(x for x in (chart.title, chart.caption) if x)
    if caption:
        lines.append(f"*{escape_inline(caption)}*")
    return "\n\n".join(lines)


def _table(table: ReportTable, chart_dir: str, lang: str) -> str:
    words = labels(lang)
    parts = [f"### {escape_inline(table.title)}"]
    if table.question:
        parts.append(f"*{escape_inline(words['question'])}:* {escape_inline(table.question)}")
    if table.chart is not None:
        parts.append(_chart(table.chart, chart_dir, lang))
    spans = header_spans(table)
    if spans:
        columns = list(table.display.columns)
        named, position = [], 0
        for label, span in spans:
            if label:
                members = ", ".join(escape_inline(c) for c in columns[position : position + span])
                named.append(f"*{escape_inline(label)}:* {members}")
            position += span
        parts.append(f"{escape_inline(words['groups'])}: " + "; ".join(named))
    parts.append(_pipe_table(table))
    notes = [*notes_for_marks(table, lang), *table.notes]
    if notes:
        parts.append("\n".join(f"- {escape_inline(n)}" for n in notes))
    return "\n\n".join(parts)


def _pipe_table(table: ReportTable) -> str:
    columns = list(table.display.columns)
    if not columns:
        return ""
    header = "| " + " | ".join(escape_cell(c) or " " for c in columns) + " |"
    rule = "| " + " | ".join([":--", *["--:"] * (len(columns) - 1)]) + " |"
    body = [
        "| " + " | ".join(escape_cell(shown_text(text, mark)) for text, mark in row) + " |"
        for row in table_cells(table)
    ]
    return "\n".join([header, rule, *body])
