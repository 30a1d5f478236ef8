"""What a report is, independent of how it is drawn: the contract between its parts.

``volna.report.build`` turns a (weighted) design, the questionnaire and a report
configuration into a :class:`Report`: sections of tables and charts, every table
carrying the tidy estimate rows it shows (``DESIGN.md``'s result table, plus the flags
the disclosure and reliability rules added). ``volna.report.charts`` draws charts as
self-contained SVG. The renderers (``html``, ``xlsx``, ``markdown``) read only these
objects: no renderer computes a number.

>>> table = ReportTable(
...     key="topline:q1", kind="topline", title="Q1",
...     estimates=pl.DataFrame({"variable": ["q1"], "estimate": [0.5]}),
...     display=pl.DataFrame({"": ["yes"], "%": ["50.0"]}),
... )
>>> table.key, table.display.shape
('topline:q1', (1, 2))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

#: the kinds of table a report holds
TABLE_KINDS = (
    "methodology",
    "weighting",
    "topline",
    "banner",
    "multiresponse",
    "paired",
    "benchmark",
    "wave",
    "model",
)

#: what a cell of a displayed table may be marked with (``ReportTable.marks``)
CELL_MARKS = (
    "",  # nothing to say
    "suppressed",  # fewer unweighted respondents than the minimum: value not shown
    "unreliable",  # fails the NCHS presentation standard: shown, flagged
    "disclosure",  # 0% or 100% of a small group: shown only if the rule allows, flagged
    "significant",  # a banner cell with significance letters
)


@dataclass(frozen=True)
class Chart:
    """A chart drawn once, as self-contained SVG (no external fonts, images or links)."""

    key: str
    title: str
    svg: str
    #: a text alternative: what the chart shows, in the report language
    alt: str
    #: a short note under the chart (source, base, what the whiskers are)
    caption: str = ""


@dataclass(frozen=True)
class ReportTable:
    """One table of the report: the numbers behind it and how it is displayed.

    ``estimates`` holds the tidy rows (variable, level, domain, estimate, se, ci_low,
    ci_high, n, n_weighted, flags, ...) the table shows -- the XLSX "estimates" sheet
    and the tests compare against them. ``display`` is the table as a reader sees it:
    all cells strings, the first column the row labels, column names the header
    (in the report language). ``marks`` has the shape of ``display`` (same column
    names) with one of :data:`CELL_MARKS` per cell, so that every renderer styles
    suppressed and unreliable cells alike. ``header_groups`` optionally spans
    header columns: ``(("Sector", 3), ("Destination", 4))`` over the columns after the
    row labels (banner spans).
    """

    key: str
    kind: str
    title: str
    estimates: pl.DataFrame
    display: pl.DataFrame
    marks: pl.DataFrame | None = None
    notes: tuple[str, ...] = ()
    header_groups: tuple[tuple[str, int], ...] = ()
    chart: Chart | None = None
    #: the question wording, when the table shows one question
    question: str = ""


@dataclass(frozen=True)
class Section:
    """A part of the report: methodology, topline, banner tables, comparisons..."""

    key: str
    title: str
    intro: tuple[str, ...] = ()
    tables: tuple[ReportTable, ...] = ()
    charts: tuple[Chart, ...] = ()


@dataclass(frozen=True)
class Report:
    """A whole report in one language, ready for any renderer."""

    title: str
    lang: str
    sections: tuple[Section, ...]
    #: a line shown prominently when the data are synthetic (the bundled example)
    synthetic_notice: str = ""
    #: "key facts" for the summary box: (label, value) pairs in the report language
    facts: tuple[tuple[str, str], ...] = ()
    #: the reliability and disclosure rules applied, in words
    rules: tuple[str, ...] = ()
    #: free-form metadata (generator version, date, config) for the XLSX "about" sheet
    meta: dict = field(default_factory=dict)

    def tables(self) -> list[ReportTable]:
        """Every table of every section, in order."""
        return [t for s in self.sections for t in s.tables]

    def charts(self) -> list[Chart]:
        """Every chart, in order: those of the sections, then those of their tables."""
        out = []
        for s in self.sections:
            out.extend(s.charts)
            out.extend(t.chart for t in s.tables if t.chart is not None)
        return out
