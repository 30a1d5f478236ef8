"""A report as one self-contained HTML file: inline CSS and SVG, no script, no request.

The page opens from a file on a machine without network and prints well: a summary
box with the key facts, the synthetic-data notice when there is one, a table of
contents, then each section's tables (header spans, marked cells, notes) and charts
(inline SVG with a text alternative and a caption), and the rules applied.
Everything from the report is escaped by jinja2's autoescape; the only markup let
through is the charts' SVG, after :func:`volna.report.write.check_svg` has checked
it refers to nothing outside itself, and with its ids made unique in the page.

>>> from volna.report.model import Report, Section
>>> page = render_html(Report("A <b>test</b>", "en", (Section("s", "One"),)))
>>> '<html lang="en">' in page, "A &lt;b&gt;test&lt;/b&gt;" in page, "<script" in page
(True, True, False)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

import volna
from volna.report.model import Chart, Report, ReportTable
from volna.report.write import (
    anchor,
    cell_parts,
    check_svg,
    header_spans,
    labels,
    notes_for_marks,
    shown_text,
    table_cells,
)

_ENV = Environment(
    loader=PackageLoader("volna.report", "templates"),
    autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class _Cell:
    value: str
    letters: str = ""
    symbol: str = ""
    mark: str = ""
    #: in a column of prose (wrapped, left-aligned) rather than of figures
    prose: bool = False

    @property
    def classes(self) -> str:
        return " ".join(c for c in (self.mark, "text" if self.prose else "") if c)


def _is_prose(text: str) -> bool:
    return len(text) > 24 or text.count(" ") > 3


@dataclass(frozen=True)
class _Figure:
    id: str
    title: str
    svg: Markup
    alt: str
    caption: str


@dataclass(frozen=True)
class _Table:
    id: str
    title: str
    question: str
    spans: list[tuple[str, int]]
    columns: list[str]
    prose: list[bool]
    rows: list[list[_Cell]]
    notes: list[str]
    legend: list[str]
    figure: _Figure | None


def render_html(report: Report) -> str:
    """The whole report as one HTML document (a string)."""
    taken: set[str] = {"contents", "summary", "rules", "synthetic"}
    sections = []
    for number, section in enumerate(report.sections):
        sections.append(
            {
                "id": anchor(f"s-{section.key}", taken),
                "title": section.title,
                "intro": section.intro,
                "figures": [_figure(c, anchor(f"c-{c.key}", taken)) for c in section.charts],
                "tables": [_table(t, taken, report.lang) for t in section.tables],
                "number": number + 1,
            }
        )
    meta = {str(k): str(v) for k, v in report.meta.items() if _scalar(v)}
    generator = meta.pop("generator", f"volna {volna.__version__}")
    return _ENV.get_template("report.html.j2").render(
        report=report,
        words=labels(report.lang),
        sections=sections,
        meta=meta,
        generator=generator,
    )


def _scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool) and str(value) != ""


def _table(table: ReportTable, taken: set[str], lang: str) -> _Table:
    cells = table_cells(table)
    # the methodology table is words, not figures: every column reads as text
    wordy = table.kind == "methodology"
    prose = [
        wordy or any(_is_prose(row[j][0]) for row in cells) for j in range(table.display.width)
    ]
    rows = [
        [
            # a row label is text as it is (a label "2022 Q" has no significance letters)
            _Cell(shown_text(text, mark), mark=mark, prose=prose[j])
            if j == 0
            else _Cell(*cell_parts(text, mark), mark=mark, prose=prose[j])
            for j, (text, mark) in enumerate(row)
        ]
        for row in cells
    ]
    table_id = anchor(f"t-{table.key}", taken)
    figure = None
    if table.chart is not None:
        figure = _figure(table.chart, anchor(f"c-{table.chart.key}", taken))
    return _Table(
        id=table_id,
        title=table.title,
        question=table.question,
        spans=header_spans(table),
        columns=list(table.display.columns),
        prose=prose,
        rows=rows,
        notes=list(table.notes),
        legend=notes_for_marks(table, lang),
        figure=figure,
    )


def _figure(chart: Chart, figure_id: str) -> _Figure:
    svg = _unique_ids(check_svg(chart.svg, chart.key), figure_id)
    return _Figure(figure_id, chart.title, Markup(svg), chart.alt, chart.caption)


_ID = re.compile(r"""(\sid\s*=\s*)(["'])([^"']+)\2""")
_LOCAL_REF = re.compile(r"""((?:xlink:)?href\s*=\s*)(["'])#([^"']+)\2""")
_LOCAL_URL = re.compile(r"""url\(\s*(["']?)#([^"')]+)\1\s*\)""")


def _unique_ids(svg: str, prefix: str) -> str:
    """Prefix every id (and every reference to one) with the figure's id.

    Two charts drawn by the same library often reuse ids (clip paths, markers,
    gradients); inlined in one page, the second would silently use the first's.

    >>> _unique_ids('<path id="m1"/><use xlink:href="#m1"/><g clip-path="url(#m1)"/>', "c")
    '<path id="c-m1"/><use xlink:href="#c-m1"/><g clip-path="url(#c-m1)"/>'
    """
    ids = {m.group(3) for m in _ID.finditer(svg)}
    if not ids:
        return svg

    def rename(name: str) -> str:
        return f"{prefix}-{name}" if name in ids else name

    svg = _ID.sub(lambda m: f"{m.group(1)}{m.group(2)}{rename(m.group(3))}{m.group(2)}", svg)
    svg = _LOCAL_REF.sub(
        lambda m: f"{m.group(1)}{m.group(2)}#{rename(m.group(3))}{m.group(2)}", svg
    )
    return _LOCAL_URL.sub(lambda m: f"url({m.group(1)}#{rename(m.group(2))}{m.group(1)})", svg)
