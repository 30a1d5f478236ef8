"""Report renderers: HTML, Markdown and XLSX show the same cells as ReportTable.display.

Built on a small report made by hand (``sample_report``), so that these tests do not
depend on how a report is computed. The browser test reuses it.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
import tempfile
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import openpyxl
import polars as pl
import pytest

from volna.report.html import render_html
from volna.report.markdown import escape_cell, render_markdown
from volna.report.model import Chart, Report, ReportTable, Section
from volna.report.write import (
    SUPPRESSED,
    ReportWriteError,
    cell_parts,
    check_svg,
    estimates_table,
    shown_text,
    write_report,
)
from volna.report.xlsx import read_estimates, sheet_name, write_xlsx

INJECTION = '=HYPERLINK("http://evil.example/x","click")'
TRICKY = "Грузия | Georgia\nline two <script>alert(1)</script> *bold* & [link](x)"

# A chart as a plotting library writes it: a declaration, a doctype naming an
# external DTD (never fetched, stripped when inlined), ids and references to them.
TINY_SVG = """<?xml version="1.0" encoding="utf-8" standalone="no"?>
<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN"
  "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"
     width="240" height="120" viewBox="0 0 240 120">
  <defs><clipPath id="p1"><rect x="0" y="0" width="240" height="120"/></clipPath>
  <path id="whisker" d="M 0 -4 L 0 4" stroke="#000"/></defs>
  <g clip-path="url(#p1)">
    <rect x="60" y="20" width="150" height="30" fill="#1f5fa8"/>
    <rect x="60" y="70" width="90" height="30" fill="#1f5fa8"/>
    <use xlink:href="#whisker" x="210" y="35"/>
    <text x="4" y="40" font-size="12">Грузия</text>
    <text x="4" y="90" font-size="12">Turkey</text>
  </g>
</svg>
"""


def _estimates(variable: str, levels: list[str], domain: str | None = None) -> pl.DataFrame:
    n = len(levels)
    est = [0.1 + 0.8 * i / max(n, 1) + 1e-13 for i in range(n)]
    return pl.DataFrame(
        {
            "variable": [variable] * n,
            "level": levels,
            "domain": [domain] * n,
            "estimate": est,
            "se": [0.01 * (i + 1) for i in range(n)],
            "ci_low": [e - 0.02 for e in est],
            "ci_high": [e + 0.02 for e in est],
            "deff": [1.3] * (n - 1) + [float("nan")],
            "n": list(range(5, 5 + n)),
            "n_weighted": [123.456789012345 * (i + 1) for i in range(n)],
            "flags": [["small_n", "unreliable"]] + [[] for _ in range(n - 1)],
        },
        schema_overrides={"domain": pl.String},
    )


def sample_report(lang: str = "en", *, synthetic: bool = True) -> Report:
    """A small report made by hand: a topline, a banner with spans and letters, a chart."""
    chart = Chart(
        key="figure1:destination",
        title="Figure 1. Where they went",
        svg=TINY_SVG,
        alt="Bar chart: Georgia 60%, Turkey 35%, with 95% confidence intervals",
        caption="Weighted %, whiskers: 95% CI. n = 2000.",
    )
    topline = ReportTable(
        key="topline:destination",
        kind="topline",
        title="Destination <country>",
        question="Where did you go first? (one answer)",
        estimates=_estimates("destination", ["GE", "TR", "other", "formula"]),
        display=pl.DataFrame(
            {
                "": ["Грузия", "Turkey", TRICKY, INJECTION],
                "%": ["45.2", "3.1", "12.0", "1 234"],
                "95% CI": ["41.0–49.5", "—", "9.9–14.4", "-"],
                "n": ["904", "7", "240", "+5"],
            }
        ),
        marks=pl.DataFrame(
            {
                "": ["", "", "", ""],
                "%": ["", "suppressed", "unreliable", ""],
                "95% CI": ["", "suppressed", "unreliable", ""],
                "n": ["", "suppressed", "", ""],
            }
        ),
        notes=("Base: all respondents. Weighted.", "Note with a | pipe"),
        chart=chart,
    )
    banner = ReportTable(
        key="banner:plans/by sector [and destination]",
        kind="banner",
        title="Plans by sector and destination",
        estimates=_estimates("plans", ["stay", "return"], domain="sector=it"),
        display=pl.DataFrame(
            {
                "": ["Stay", "2022 Q"],
                "Total": ["70.1", "29.9"],
                "IT (A)": ["75.0 B", "25.0"],
                "Other (B)": ["60.0", "40.0 A"],
                "Georgia (C)": ["71.0", "—"],
            }
        ),
        marks=pl.DataFrame(
            {
                "": ["", ""],
                "Total": ["", ""],
                "IT (A)": ["significant", ""],
                "Other (B)": ["", "unreliable"],
                "Georgia (C)": ["disclosure", "suppressed"],
            }
        ),
        header_groups=(("", 1), ("Sector", 2), ("Destination", 1)),
        notes=("Letters: column proportions tested, Holm-corrected, alpha 0.05.",),
    )
    methodology = ReportTable(
        key="methodology",
        kind="methodology",
        title="Sample",
        estimates=pl.DataFrame(),
        display=pl.DataFrame({"": ["Respondents", "Fieldwork"], "Value": ["2000", "2024"]}),
    )
    return Report(
        title="OK Russians <test> & report" if lang == "en" else "Хорошие русские: отчёт",
        lang=lang,
        sections=(
            Section(
                "method", "Methodology", intro=("How the survey was run.",), tables=(methodology,)
            ),
            Section(
                "topline", "Topline", intro=("- not a list\n# not a heading",), tables=(topline,)
            ),
            Section("banner", "Banner tables", tables=(banner,), charts=(chart,)),
        ),
        synthetic_notice="SYNTHETIC DATA: generated, not real people." if synthetic else "",
        facts=(("Respondents", "2000"), ("Design effect", "1.42"), ("Fieldwork", "2024-03")),
        rules=(
            "Cells with fewer than 10 respondents are suppressed.",
            "Estimates failing the NCHS presentation standard are flagged †.",
        ),
        meta={"generator": "tests", "config": {"nested": True}},
    )


# ----------------------------------------------------------------------------- HTML


class _Tables(HTMLParser):
    """Tables of a page as rows of cell texts, plus every URL-carrying attribute."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self.spans: list[list[tuple[str, int]]] = []
        self.references: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._colspan = 1
        self._in_groups = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        for name in ("href", "xlink:href", "src", "action", "srcset", "poster", "data"):
            if attrs.get(name) is not None:
                self.references.append((tag, name, attrs[name]))
        if tag == "table":
            self.tables.append([])
            self.spans.append([])
        elif tag == "tr":
            self._row = []
            self._in_groups = "groups" in (attrs.get("class") or "")
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
            self._colspan = int(attrs.get("colspan") or 1)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell).strip()
            if self._in_groups:
                self.spans[-1].append((text, self._colspan))
            else:
                self._row.append(text)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if not self._in_groups:
                self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _expected_rows(table: ReportTable, show=shown_text) -> list[list[str]]:
    """The display as every renderer must show it: dashes, letters, footnote symbols."""
    marks = table.marks
    if marks is None:
        marks = table.display.with_columns(pl.lit("").alias(c) for c in table.display.columns)
    rows = [list(table.display.columns)]
    for values, row_marks in zip(table.display.iter_rows(), marks.iter_rows(), strict=True):
        cells = zip(values, row_marks, strict=True)
        # a row label is shown as it is; the other cells as the renderer draws them
        rows.append([(shown_text if j == 0 else show)(v, m) for j, (v, m) in enumerate(cells)])
    return rows


def _html_cell(text: str, mark: str) -> str:
    # letters and symbols are superscripts right after the value, no space between
    return "".join(cell_parts(text, mark))


def _html_text(text: str) -> str:
    # HTML collapses whitespace; a superscript letter follows its value without a space
    return re.sub(r"\s+", " ", text).strip()


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_html_tables_agree_with_display(lang):
    report = sample_report(lang)
    page = render_html(report)
    parser = _Tables()
    parser.feed(page)
    assert len(parser.tables) == len(report.tables())
    for got, table in zip(parser.tables, report.tables(), strict=True):
        want = [[_html_text(c) for c in row] for row in _expected_rows(table, _html_cell)]
        assert [[_html_text(c) for c in row] for row in got] == want, table.key


def test_html_header_spans_and_marks():
    page = render_html(sample_report())
    parser = _Tables()
    parser.feed(page)
    banner_spans = parser.spans[2]
    assert banner_spans == [("", 1), ("", 1), ("Sector", 2), ("Destination", 1)]
    assert parser.spans[1] == []  # the topline has no groups
    assert '<td class="suppressed">—</td>' in page
    assert '<td class="unreliable">12.0<sup class="symbol">†</sup></td>' in page
    assert '<td class="significant">75.0<sup class="letters">B</sup></td>' in page
    letters_and_symbol = '<sup class="letters">A</sup><sup class="symbol">†</sup>'
    assert f'<td class="unreliable">40.0{letters_and_symbol}</td>' in page
    assert '<th scope="row">2022 Q</th>' in page
    assert "Georgia" in page and "1.42" in page  # the facts box


def test_html_is_self_contained_and_escaped():
    report = sample_report()
    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in page and '<html lang="en">' in page
    parser = _Tables()
    parser.feed(page)
    # nothing to fetch: every reference is a fragment inside the page
    assert parser.references, "the table of contents links inside the page"
    assert all(value.startswith("#") for _, _, value in parser.references), parser.references
    assert not {"script", "link", "img", "iframe", "object", "embed"} & set(parser.tags)
    assert "@import" not in page and "url(http" not in page and "@font-face" not in page
    # the report's text is escaped, never markup
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "OK Russians &lt;test&gt; &amp; report" in page
    assert "<!DOCTYPE svg" not in page and "<?xml" not in page
    # the synthetic notice, prominently, and the chart with its text alternative
    assert 'class="synthetic"' in page and "SYNTHETIC DATA" in page
    assert page.count('role="img"') == 2  # the section's chart and the table's
    assert 'aria-label="Bar chart: Georgia 60%, Turkey 35%, with 95% confidence intervals"' in page
    assert "<figcaption>" in page
    # the same chart twice: its ids made unique in the page, references following them
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    for ref in re.findall(r'(?:href="#|url\(#)([^")]+)', page):
        assert ref in ids, ref
    assert "Rules applied" in page and "NCHS" in page


def test_html_without_synthetic_notice():
    page = render_html(sample_report(synthetic=False))
    assert 'class="synthetic"' not in page


@pytest.mark.parametrize(
    "svg",
    [
        '<svg><image href="http://example.org/a.png"/></svg>',
        '<svg><image xlink:href="https://example.org/a.png"/></svg>',
        "<svg><use href='//example.org/s.svg#x'/></svg>",
        '<svg><image href="local.png"/></svg>',
        "<svg><script>fetch('x')</script></svg>",
        '<svg><rect onload="alert(1)"/></svg>',
        '<svg><style>@import "http://x/y.css";</style></svg>',
        '<svg><rect style="fill: url(http://x/p.svg#g)"/></svg>',
        '<svg><foreignObject><img src="x"/></foreignObject></svg>',
        '<svg><a><set attributeName="href" to="https://example.org/"/></a></svg>',
        "<div>not svg</div>",
    ],
)
def test_chart_svg_with_external_references_is_refused(svg):
    with pytest.raises(ValueError, match="chart c"):
        check_svg(svg, "c")


def test_chart_svg_internal_references_pass():
    body = check_svg(TINY_SVG, "c")
    assert body.startswith("<svg") and "DOCTYPE" not in body
    data = '<svg><image href="data:image/png;base64,iVBORw0KGgo="/></svg>'
    assert check_svg(data, "c") == data


# ------------------------------------------------------------------------- Markdown


def _md_tables(text: str) -> list[list[list[str]]]:
    """GFM pipe tables as rows of cells, unescaped (\\| \\* ... and <br>)."""
    tables, current = [], None
    for line in text.splitlines():
        if line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
            cells = [c.strip() for c in cells]
            if all(re.fullmatch(r":?-+:?", c) for c in cells):
                continue
            cells = [re.sub(r"\\(.)", r"\1", c.replace("<br>", "\n")) for c in cells]
            if current is None:
                current = []
                tables.append(current)
            current.append(cells)
        else:
            current = None
    return tables


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_markdown_tables_agree_with_display(lang):
    report = sample_report(lang)
    text = render_markdown(report)
    got = _md_tables(text)
    assert len(got) == len(report.tables())
    for rows, table in zip(got, report.tables(), strict=True):
        want = [[c.strip() for c in row] for row in _expected_rows(table)]
        assert rows == want, table.key


def test_markdown_escapes_and_links_charts():
    text = render_markdown(sample_report())
    assert "\\|" in escape_cell("a|b") and "<br>" in escape_cell("a\nb")
    # every table row has as many unescaped pipes as its table's header
    header = None
    for line in text.splitlines():
        pipes = len(re.findall(r"(?<!\\)\|", line))
        if line.startswith("|"):
            header = header or pipes
            assert pipes == header, line
        else:
            header = None
    assert "<script>" not in text and "\\<script\\>" in text
    assert "![Bar chart: Georgia 60%, Turkey 35%" in text
    assert "](charts/figure1-destination.en.svg)" in text
    assert "\\- not a list" in text and "\\# not a heading" in text
    assert "> **Synthetic data.** SYNTHETIC DATA" in text
    assert "Column groups: *Sector:* IT (A), Other (B); *Destination:* Georgia (C)" in text


# ----------------------------------------------------------------------------- XLSX


def _same(a, b) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if isinstance(a, int | float) and not isinstance(a, bool):
        return isinstance(b, int | float) and math.isclose(a, b, rel_tol=1e-14, abs_tol=0)
    return a == b


def test_xlsx_estimates_sheet_equals_the_estimates(tmp_path):
    report = sample_report()
    path = write_xlsx(report, tmp_path / "r.xlsx")
    got = read_estimates(path)
    # the expected table, built here independently of estimates_table()
    frames = []
    for t in report.tables():
        if t.estimates.height:
            f = t.estimates.with_columns(pl.col("flags").list.join("; "))
            frames.append(f.select(pl.lit(t.key).alias("table"), pl.all()))
    want = pl.concat(frames, how="diagonal_relaxed")
    assert got.columns == want.columns
    assert got.height == want.height == 6
    for column in want.columns:
        pairs = zip(want.get_column(column), got.get_column(column), strict=True)
        for a, b in pairs:
            assert _same(a if a != "" else None, b), (column, a, b)
    assert estimates_table(report).columns == want.columns


def test_xlsx_table_sheets_show_the_display(tmp_path):
    report = sample_report("ru")
    path = write_xlsx(report, tmp_path / "r.xlsx")
    book = openpyxl.load_workbook(path)
    assert book.sheetnames[0] == "about" and book.sheetnames[-1] == "estimates"
    assert len(book.sheetnames) == len(report.tables()) + 2
    for name, table in zip(book.sheetnames[1:-1], report.tables(), strict=True):
        sheet = book[name]
        assert sheet["A1"].value == table.title
        cells = [[c.value for c in row] for row in sheet.iter_rows()]
        header = list(table.display.columns)
        header_cells = [h or None for h in header]
        start = next(i for i, row in enumerate(cells) if row[: len(header)] == header_cells)
        for want, got in zip(_expected_rows(table)[1:], cells[start + 1 :], strict=False):
            for w, g in zip(want, got, strict=False):
                if isinstance(g, int | float):
                    number = float(re.sub(r"[^\d.\-]", "", w.replace(",", ".")))
                    assert math.isclose(g, number), (w, g)
                else:
                    assert str(g) == w, (w, g)
    banner = book[book.sheetnames[3]]
    assert [str(r) for r in banner.merged_cells.ranges] == ["C3:D3"]  # the "Sector" span
    assert banner["C3"].value == "Sector" and banner["E3"].value == "Destination"
    topline = book[book.sheetnames[2]]
    values = [c.value for row in topline.iter_rows() for c in row]
    assert 45.2 in values and 1234 in values and SUPPRESSED in values
    about = [c.value for row in book["about"].iter_rows() for c in row if c.value]
    assert report.title in about and any("SYNTHETIC DATA" in str(v) for v in about)
    assert "1.42" in about and report.rules[0] in about


def test_xlsx_text_never_runs_as_a_formula(tmp_path):
    path = write_xlsx(sample_report(), tmp_path / "r.xlsx")
    book = openpyxl.load_workbook(path)
    found = [c for s in book for row in s.iter_rows() for c in row if c.value == INJECTION]
    assert found, "the label is written"
    for cell in found:
        assert cell.data_type == "s" and cell.quotePrefix
    for text in ("+5", "-"):  # other formula starters in the display
        sheet = book["topline_destination"]
        cells = [c for row in sheet.iter_rows() for c in row if c.value == text]
        assert cells and all(c.quotePrefix and c.data_type == "s" for c in cells)
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if name.startswith("xl/worksheets/"):
                assert "<f>" not in z.read(name).decode() and "<f " not in z.read(name).decode()


def test_sheet_names_are_valid_and_unique():
    taken: set[str] = {"about", "estimates"}
    keys = ["a:b", "a/b", "a?b", "[a]b", "x" * 50, "x" * 50, "'quoted'", "History", "ESTIMATES", ""]
    names = [sheet_name(k, taken) for k in keys]
    assert len({n.lower() for n in names}) == len(names)
    for name in names:
        assert 0 < len(name) <= 31
        assert not re.search(r"[\[\]:*?/\\]", name)
        assert not name.startswith("'") and not name.endswith("'")
        assert name.lower() not in ("history", "about", "estimates")


# --------------------------------------------------------------------- write_report


def test_write_report_writes_every_format(tmp_path):
    report = sample_report("ru")
    paths = write_report(report, tmp_path / "out")
    names = [p.relative_to(tmp_path / "out").as_posix() for p in paths]
    assert names == [
        "report.ru.html",
        "report.ru.xlsx",
        "report.ru.md",
        "charts/figure1-destination.ru.svg",
    ]
    svg = (tmp_path / "out" / names[-1]).read_text(encoding="utf-8")
    assert svg.startswith("<?xml") and 'xmlns="http://www.w3.org/2000/svg"' in svg
    assert "Грузия" in (tmp_path / "out/report.ru.md").read_text(encoding="utf-8")
    assert not list((tmp_path / "out").glob(".*.tmp"))
    # two languages share the folder without overwriting each other's charts
    write_report(sample_report("en"), tmp_path / "out", formats=("md",))
    assert (tmp_path / "out/charts/figure1-destination.en.svg").exists()


def test_write_report_rejects_unknown_formats(tmp_path):
    with pytest.raises(ReportWriteError, match="'pdf' is not one of html, xlsx, md"):
        write_report(sample_report(), tmp_path, formats=("html", "pdf"))
    written = write_report(sample_report(), tmp_path, formats=["markdown"])
    assert written[0].name == "report.en.md"


def test_refused_chart_stops_the_report(tmp_path):
    report = sample_report()
    bad = Chart("bad", "Bad", '<svg><image href="https://x/y.png"/></svg>', "alt")
    broken = Report(report.title, "en", (Section("s", "S", charts=(bad,)),))
    with pytest.raises(ValueError, match="refers outside itself"):
        render_html(broken)
    with pytest.raises(ValueError, match="refers outside itself"):
        write_report(broken, tmp_path, formats=("md",))
    assert not Path(tmp_path / "charts").exists() or not list((tmp_path / "charts").iterdir())


# ------------------------------------------------------------- the bundled study


@functools.cache
def bundled_report(lang: str) -> Report:
    """The bundled study's report as `make demo` builds it (needs volna.report.build)."""
    build = pytest.importorskip("volna.report.build", reason="volna.report.build not written yet")
    from volna import example_path, read
    from volna.examples.generate_okrussians import write_example
    from volna.questionnaire.model import Questionnaire
    from volna.report.config import load_config

    questionnaire = Path(example_path("okrussians", "questionnaire.yaml"))
    q = Questionnaire.load(questionnaire)
    folder = Path(tempfile.mkdtemp(prefix="volna-report-"))
    data = write_example(folder / "data.csv", n=2000, seed=1)[0]
    frame = read(data, q, unknown_columns="keep")
    config = load_config(questionnaire.with_name("report.yaml"))
    return build.build_report(q, frame, config, lang=lang)


@pytest.mark.parametrize("lang", ["ru", "en"])
def test_bundled_report_renders_alike(tmp_path, lang):
    report = bundled_report(lang)
    parser = _Tables()
    parser.feed(render_html(report))
    md = _md_tables(render_markdown(report))
    assert len(parser.tables) == len(md) == len(report.tables())
    for html_rows, md_rows, table in zip(parser.tables, md, report.tables(), strict=True):
        want = [[_html_text(c) for c in row] for row in _expected_rows(table, _html_cell)]
        assert [[_html_text(c) for c in row] for row in html_rows] == want, table.key
        assert md_rows == [[c.strip() for c in row] for row in _expected_rows(table)], table.key
    path = write_xlsx(report, tmp_path / "r.xlsx")
    got, want = read_estimates(path), estimates_table(report)
    assert got.columns == want.columns and got.height == want.height > 0
    for column in want.columns:
        for a, b in zip(want.get_column(column), got.get_column(column), strict=True):
            a = None if a == "" else a
            if isinstance(a, dt.date | dt.datetime) and isinstance(b, dt.datetime):
                b = b if isinstance(a, dt.datetime) else b.date()
            assert _same(a, b), (column, a, b)


@pytest.mark.parametrize("lang", ["ru", "en"])
def test_an_unreliable_test_of_association_shows_no_p_value_in_any_format(tmp_path, lang):
    """The bundled study has 13 channels (12 design df): most of its tables of association
    have more free cells than that, and HTML, Markdown and XLSX say "unreliable" with the
    note why, where a p-value would be rounding of a covariance the design cannot carry."""
    from volna.report.i18n import t

    report = bundled_report(lang)
    table = next(x for x in report.tables() if x.key == "banners:tests")
    word, note = t("test_unreliable", lang), t("test_unreliable_note", lang, df="12")
    unreliable = table.estimates.filter(pl.col("mark") == "unreliable")
    assert unreliable.height > 0 and note in table.notes
    # every unreliable cell is a flagged test, shown as the word with the footnote mark
    assert all(set(f) & {"too_few_psus", "singular_design_effects"} for f in unreliable["flags"])
    cell = shown_text(word, "unreliable")
    assert cell == word + "†"
    html = render_html(report)
    assert f'<td class="unreliable">{word}<sup class="symbol">†</sup></td>' in html
    assert note in html
    md = render_markdown(report)
    assert f"| {cell} |" in md and note in md
    book = openpyxl.load_workbook(write_xlsx(report, tmp_path / "r.xlsx"))
    texts = {str(c.value) for ws in book.worksheets for row in ws.iter_rows() for c in row}
    assert cell in texts and any(note in x for x in texts)
    # and no p-value of a flagged test is displayed anywhere
    for r in unreliable.iter_rows(named=True):
        assert table.display.get_column(r["display_column"])[r["display_row"]] == word
