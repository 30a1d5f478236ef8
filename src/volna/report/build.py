"""Build a report: from a questionnaire, responses and a configuration to a :class:`Report`.

:func:`build_report` weights the responses as configured, estimates every reported
question on the design's one variance path, applies the table rules of
:mod:`volna.disclosure` to every estimate, computes the significance letters of the
banner tables (:mod:`volna.report.banner`) and lays everything out as the sections of
:mod:`volna.report.model`, in one language:

* **methodology**: the AAPOR disclosure items (sponsor, who conducted the study,
  population, recruitment, mode, dates, sample size, weighting with its design effect
  and effective sample size, how variances, intervals and tests are computed, the rules
  applied, limitations) and a notice when the data are synthetic;
* **weighting**: the diagnostics of :func:`volna.diagnostics.diagnose` -- the weights
  before and after, every margin cell against its target, the steps;
* **topline**: every question -- weighted %, interval and unweighted n per answer; the
  share choosing each option of a multiple-choice question; the mean of a scale; mean
  and median of a number. The first country question gets Figure 1 (bars with interval
  whiskers) and a world map; scales get diverging bars;
* **banner tables**: every question by the banner variables -- a "Total" column, then a
  span of columns per banner variable, column percentages with significance letters and
  the base of each column; then one table of the Rao-Scott test of association of every
  single-choice question with every banner variable (p, or "unreliable" where the design
  has too few PSUs for the table: :func:`association_cell`);
* **before and after**: the questionnaire's paired items, the change with its interval
  and p-value, and a dot plot;
* **benchmarks**: survey estimates against external figures, with the test;
* **waves**: the same questions in other waves, with the change.

Every :class:`~volna.report.model.ReportTable` carries the tidy rows it shows
(``estimates``: the result table of ``DESIGN.md`` plus ``base``, ``n_effective``,
``ci_width``, ``mark``, ``shown``, the rule ``flags``, ``letters`` for banner cells,
and where each row is displayed: ``display_row``, ``display_column`` and ``unit`` --
``percent`` (the estimate times 100), ``points`` (a difference times 100), ``value``,
``count`` or ``p`` (the ``p_value`` of a test)), its ``display`` (all strings, in the
report language's number style: ``45,2`` in Russian) and ``marks`` of the same shape.

Estimation is vectorised: one proportion call per banner variable covers every
single-choice question at once (its covariance gives the letters), one mean call the
scales and numbers, one ``option_shares`` call each multi-response question.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import polars as pl

from volna.compare import UNRELIABLE_TEST_FLAGS, against_benchmark, crosstab, paired_difference
from volna.design import DesignError, SurveyDesign, to_polars
from volna.disclosure import apply_table_rules, flag_text, flags_fired, rules_text
from volna.errors import VolnaError
from volna.questionnaire.model import Question, Questionnaire
from volna.report import i18n
from volna.report.banner import column_letters, compare_columns
from volna.report.config import Banner, ConfigError, ReportConfig, read_benchmarks, text_in
from volna.report.i18n import t
from volna.report.model import Chart, Report, ReportTable, Section

#: question types a report tabulates
CATEGORICAL = ("single", "scale", "country")
NUMERIC = ("integer", "decimal")
REPORTED = (*CATEGORICAL, "multiple", *NUMERIC)

Progress = Callable[[str, int, int], None]

_EMPTY_FLAGS = pl.List(pl.String)


class ReportError(VolnaError):
    """A report cannot be built from these data and settings (a column, a code, a name)."""


def build_report(
    questionnaire: Questionnaire,
    data: Any,
    config: ReportConfig | None = None,
    *,
    lang: str,
    progress: Progress | None = None,
) -> Report:
    """The report of ``data`` (responses to ``questionnaire``) in language ``lang``.

    Parameters
    ----------
    questionnaire:
        the questionnaire the responses answer (labels, choices, pairs).
    data:
        the responses, a polars or pandas frame as ``volna.read`` returns it.
    config:
        what to report and how (``ReportConfig.default()`` when not given).
    lang:
        the report's language (``ru``, ``en``): labels come from the questionnaire in it.
    progress:
        called as ``progress(step, done, total)`` as the work advances (``step`` names
        what is being done), for a progress bar.

    >>> from volna import Questionnaire
    >>> from volna.examples import example_path
    >>> from volna.examples.generate_okrussians import generate
    >>> q = Questionnaire.load(example_path("okrussians", "questionnaire.yaml"))
    >>> responses, _ = generate(n=300, seed=2)
    >>> report = build_report(q, responses, ReportConfig(questions=("plans",)), lang="en")
    >>> [s.key for s in report.sections]
    ['methodology', 'weighting', 'topline']
    >>> report.tables()[-1].display.columns
    ['', '%', '95% CI', 'n']
    """
    if lang not in i18n.LANGUAGES:
        raise ReportError(f"lang={lang!r}: reports are written in {', '.join(i18n.LANGUAGES)}")
    return _Builder(
        questionnaire, to_polars(data), config or ReportConfig.default(), lang, progress
    ).build()


# ---------------------------------------------------------------------------------------
# what the builder knows about each reported question and banner


@dataclass
class _Q:
    """A reported question and how it is estimated."""

    q: Question
    kind: str  # categorical, multiple, numeric
    #: levels in display order (codes; countries by weighted share)
    levels: list[str] = field(default_factory=list)
    #: numeric values of a scale's codes ("don't know" left out)
    values: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.q.name

    @property
    def has_mean(self) -> bool:
        return self.kind == "numeric" or (self.q.type == "scale" and bool(self.values))


@dataclass
class _Banner:
    spec: Banner
    column: str  # the column of the frame holding its levels
    levels: list[str]  # present levels, in order
    title: str
    level_titles: dict[str, str]
    letters: dict[str, str] = field(default_factory=dict)  # domain label -> letter

    @property
    def name(self) -> str:
        return self.spec.name

    def domain(self, level: str) -> str:
        return f"{self.column}={level}"


# ---------------------------------------------------------------------------------------
# formatting


def _fmt(row: Mapping[str, Any], unit: str, lang: str, digits: int = 1) -> str:
    """The displayed value of an estimate row (``—`` when it is not shown)."""
    if row.get("shown") is False:
        return i18n.SUPPRESSED
    x = row.get("estimate")
    if unit == "percent":
        return i18n.pct(x, lang, digits)
    if unit == "points":
        return i18n.points(x, lang, digits)
    if unit == "count":
        return i18n.count(x, lang)
    return i18n.number(x, lang, digits)


def _fmt_ci(row: Mapping[str, Any], unit: str, lang: str, digits: int = 1) -> str:
    if row.get("shown") is False:
        return i18n.SUPPRESSED
    scale = 100 if unit in ("percent", "points") else 1
    return i18n.interval(row.get("ci_low"), row.get("ci_high"), lang, digits, scale)


def _fmt_n(row: Mapping[str, Any], lang: str) -> str:
    # the count of a hidden cell would give the hidden figure away
    if row.get("shown") is False:
        return i18n.SUPPRESSED
    return i18n.count(row.get("n"), lang)


def _mark(row: Mapping[str, Any]) -> str:
    mark = row.get("mark") or ""
    if not mark and row.get("letters"):
        return "significant"
    return mark


def association_cell(row: Mapping[str, Any], lang: str) -> tuple[str, str]:
    """The text and mark of a test of association: its p-value, or "unreliable".

    A test flagged with any of :data:`volna.compare.UNRELIABLE_TEST_FLAGS` -- the
    Rao-Scott tests' ``too_few_psus`` or ``singular_design_effects``, the Wald tests'
    ``singular_covariance`` -- shows no p-value, whatever number it holds.

    >>> association_cell({"p_value": 0.0123, "flags": []}, "en")
    ('0.012', '')
    >>> association_cell({"p_value": 0.7, "flags": ["too_few_psus"]}, "ru")
    ('ненадёжно', 'unreliable')
    """
    if set(row.get("flags") or ()) & UNRELIABLE_TEST_FLAGS:
        return t("test_unreliable", lang), "unreliable"
    return i18n.p_value(row.get("p_value"), lang), ""


class _Grid:
    """A display table filled cell by cell: strings, marks, and which estimate is where."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self.rows: list[list[str]] = []
        self.marks: list[list[str]] = []
        self.at: list[tuple[int, int, str, str]] = []  # (estimate id, row, column, unit)

    def add_row(self, label_: str) -> int:
        self.rows.append([label_] + [""] * (len(self.columns) - 1))
        self.marks.append([""] * len(self.columns))
        return len(self.rows) - 1

    def set(self, r: int, column: str, text: str, mark: str = "") -> None:
        j = self.columns.index(column)
        self.rows[r][j] = text
        self.marks[r][j] = mark

    def place(self, ident: int, r: int, column: str, unit: str) -> None:
        self.at.append((ident, r, column, unit))

    def display(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        data = {c: [row[j] for row in self.rows] for j, c in enumerate(self.columns)}
        marks = {c: [row[j] for row in self.marks] for j, c in enumerate(self.columns)}
        schema = dict.fromkeys(self.columns, pl.String)
        return pl.DataFrame(data, schema=schema), pl.DataFrame(marks, schema=schema)

    def located(self, estimates: pl.DataFrame, ident: str = "_id") -> pl.DataFrame:
        """The estimates with ``display_row``, ``display_column`` and ``unit`` filled in."""
        placed = [a[0] for a in self.at]
        if len(set(placed)) != len(placed):  # pragma: no cover - a bug in a table's layout
            raise AssertionError("an estimate is placed in two cells of one table")
        where = pl.DataFrame(
            {
                ident: [a[0] for a in self.at],
                "display_row": [a[1] for a in self.at],
                "display_column": [a[2] for a in self.at],
                "unit": [a[3] for a in self.at],
            },
            schema={
                ident: pl.Int64,
                "display_row": pl.Int64,
                "display_column": pl.String,
                "unit": pl.String,
            },
        )
        drop = [c for c in ("display_row", "display_column", "unit") if c in estimates.columns]
        out = estimates.drop(drop).join(where, on=ident, how="left")
        out = out.sort(ident)
        return out.drop([c for c in out.columns if c.startswith("_")])


def _ids(frame: pl.DataFrame, start: int = 0) -> pl.DataFrame:
    return frame.with_columns(
        pl.int_range(start, start + frame.height, dtype=pl.Int64).alias("_id")
    )


def _concat(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    frames = [f for f in frames if f is not None and f.width]
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames, how="diagonal_relaxed")


# ---------------------------------------------------------------------------------------
# the builder


class _Builder:
    def __init__(
        self,
        questionnaire: Questionnaire,
        frame: pl.DataFrame,
        config: ReportConfig,
        lang: str,
        progress: Progress | None,
    ) -> None:
        self.qn = questionnaire
        self.raw = frame
        self.config = config
        self.lang = lang
        self.rules = config.rules
        self._progress = progress
        self._done = 0
        self._total = 0
        self.figures = 0
        self.charts_module = None
        if config.charts:
            try:
                from volna.report import charts

                self.charts_module = charts
            except ImportError:  # the chart helper is optional while it is written
                self.charts_module = None

    # ---- progress ----------------------------------------------------------------------

    def step(self, what: str) -> None:
        if self._progress is not None:
            self._progress(what, self._done, self._total)
        self._done += 1

    # ---- the whole report --------------------------------------------------------------

    def build(self) -> Report:
        config = self.config
        self.questions = self._questions()
        self._total = (
            4
            + len(config.banners)
            + bool(config.paired)
            + (config.benchmarks is not None)
            + bool(config.models)
            + len(config.waves)
        )
        self.step("data")
        self.screening = None
        if config.screening is not None:
            self._screen()
        frame = self._prepare(self.raw, self.questions)
        self.banners = self._banners(frame)
        frame = self._banner_columns(frame, self.banners)
        frame = self._model_columns(frame)
        self.frame = frame
        self.step("weighting")
        self.base_design, self.design, self.diagnostics = self._design(frame, "")
        self.w_positive = self.design.weights > 0
        self.answered = self._answered(frame, self.w_positive)
        self.step("topline")
        top = self._topline_estimates(self.design, self.answered)
        self._order_levels(top)
        sections = [self._topline_section(top)]
        if self.banners:
            self._assign_letters()
            sections.append(self._banner_section(top))
        if config.paired:
            self.step("paired")
            if self._pairs():
                sections.append(self._paired_section(top))
        if config.benchmarks is not None:
            self.step("benchmarks")
            sections.append(self._benchmark_section())
        if config.models:
            self.step("models")
            sections.append(self._models_section())
        if config.waves:
            sections.append(self._waves_section(top))
        self.step("methodology")
        first = [self._methodology_section()]
        if self.screening is not None:
            first.append(self._screening_section())
        sections = [*first, self._weighting_section(), *sections]
        self._done = self._total
        if self._progress is not None:
            self._progress("done", self._total, self._total)
        return Report(
            title=text_in(config.title, self.lang) or text_in(self.qn.title, self.lang, self.qn.id),
            lang=self.lang,
            sections=tuple(sections),
            synthetic_notice=t("synthetic_notice", self.lang) if self.synthetic else "",
            facts=tuple(self.facts),
            rules=tuple(rules_text(self.rules, self.lang)),
            meta=self._meta(),
        )

    # ---- questions ---------------------------------------------------------------------

    def _questions(self) -> list[_Q]:
        config, qn = self.config, self.qn
        if config.questions is not None:
            names = list(config.questions)
            for name in names:
                if name not in qn:
                    raise ConfigError(
                        f"{config.where('questions')}: no question named {name!r} "
                        "in the questionnaire"
                    )
                if qn[name].type not in REPORTED:
                    raise ConfigError(
                        f"{config.where('questions')}: question {name} is of type {qn[name].type}, "
                        "which a report cannot tabulate (it tabulates single, multiple, scale, "
                        "country, integer and decimal questions)"
                    )
        else:
            # Attention checks and honeypots measure the data's quality, not the population.
            names = [q.name for q in qn.answerable if q.type in REPORTED and not q.is_quality_check]
        for name in config.exclude:
            if name not in qn:
                raise ConfigError(
                    f"{config.where('exclude')}: no question named {name!r} in the questionnaire"
                )
        names = [n for n in names if n not in config.exclude]
        out = []
        for name in names:
            q = qn[name]
            if q.type in CATEGORICAL:
                item = _Q(q, "categorical", levels=list(q.codes))
                if q.type == "scale":
                    item.values = {
                        c.code: float(c.value)
                        for c in q.choices
                        if not c.missing and c.value is not None
                    }
            elif q.type == "multiple":
                item = _Q(q, "multiple", levels=list(q.codes))
            else:
                item = _Q(q, "numeric")
            out.append(item)
        return out

    def _prepare(
        self, frame: pl.DataFrame, questions: Sequence[_Q], source: str = "data"
    ) -> pl.DataFrame:
        """Choice columns as Enums of the questionnaire's codes; options as true/false."""
        casts = []
        for item in questions:
            q = item.q
            cols = q.columns[:-1] if q.other_column else q.columns
            for col in cols:
                if col not in frame.columns:
                    raise ReportError(f"{source}: column {col} (question {q.name}) is missing")
            if q.type in ("single", "scale"):
                casts.append(self._enum(frame, q.name, list(q.codes), source))
            elif q.type == "multiple":
                for col in cols:
                    s = frame.get_column(col)
                    if s.dtype != pl.Boolean:
                        casts.append(self._boolean(s, source))
            elif q.type in NUMERIC:
                s = frame.get_column(q.name)
                if not s.dtype.is_numeric():
                    raise ReportError(
                        f"{source}: column {q.name}: expected numbers, found {s.dtype}"
                    )
            elif q.type == "country":
                s = frame.get_column(q.name)
                if s.dtype != pl.String:
                    casts.append(s.cast(pl.String))
        return frame.with_columns(casts) if casts else frame

    @staticmethod
    def _enum(frame: pl.DataFrame, name: str, codes: list[str], source: str) -> pl.Series:
        s = frame.get_column(name)
        if isinstance(s.dtype, pl.Enum) and s.dtype.categories.to_list() == codes:
            return s
        text = s.cast(pl.String) if s.dtype != pl.String else s
        bad = text.is_not_null() & ~text.is_in(codes)
        if bad.any():
            row = int(bad.arg_max())
            raise ReportError(
                f"{source}: row {row + 1}, column {name}: {text[row]!r} is not a code of the "
                f"question (codes: {', '.join(codes)}); validate the data first (volna validate)"
            )
        return text.cast(pl.Enum(codes))

    @staticmethod
    def _boolean(s: pl.Series, source: str) -> pl.Series:
        if s.dtype.is_numeric():
            ok = s.is_null() | s.is_in([0, 1])
            if ok.all():
                return (s == 1).alias(s.name)
        raise ReportError(
            f"{source}: column {s.name}: an option of a multiple-choice question must be true/false"
        )

    # ---- banners -----------------------------------------------------------------------

    def _banners(self, frame: pl.DataFrame) -> list[_Banner]:
        out = []
        for i, spec in enumerate(self.config.banners):
            key = f"banners[{i}]"
            source = spec.source
            if source not in self.qn:
                k = f"{key}.from" if spec.derived else key
                raise ConfigError(
                    f"{self.config.where(k)}: no question named {source!r} in the questionnaire"
                )
            q = self.qn[source]
            if source not in frame.columns:
                raise ReportError(f"data: column {source} (banner {spec.name}) is missing")
            title = text_in(spec.label, self.lang) or q.label(self.lang)
            if spec.bins is not None:
                if q.type not in NUMERIC:
                    raise ConfigError(
                        f"{self.config.where(key + '.bins')}: {source} is a {q.type} "
                        "question; bins cut numbers"
                    )
                levels = list(spec.bins)
                titles = {lv: lv for lv in levels}
            elif spec.groups is not None:
                if q.type not in CATEGORICAL:
                    raise ConfigError(
                        f"{self.config.where(key + '.groups')}: {source} is a {q.type} "
                        "question; groups gather the codes of a choice or country question"
                    )
                levels = list(spec.groups)
                if spec.other is not None and spec.other not in levels:
                    levels.append(spec.other)
                codes = self._known_codes(q, frame)
                for group, members in spec.groups.items():
                    for code in members:
                        if q.type != "country" and code not in q.codes:
                            raise ConfigError(
                                f"{self.config.where(key + '.groups.' + group)}: {code!r} is "
                                f"not a code of {source} (codes: {', '.join(q.codes)})"
                            )
                listed = {c for members in spec.groups.values() for c in members}
                unlisted = [c for c in codes if c not in listed]
                if unlisted and spec.other is None:
                    raise ConfigError(
                        f"{self.config.where(key + '.groups')}: code {unlisted[0]} of "
                        f"{source} is in no group; "
                        "list it, or name a group for every other code with other:"
                    )
                titles = {lv: self._code_title(q, lv) for lv in levels}
            else:
                if q.type not in CATEGORICAL:
                    raise ConfigError(
                        f"{self.config.where(key)}: {source} is a {q.type} question; a banner is a "
                        "single-choice, scale or country question, or a variable made from "
                        "one with bins or groups"
                    )
                levels = list(q.codes) if q.type != "country" else self._known_codes(q, frame)
                titles = {lv: self._code_title(q, lv) for lv in levels}
            for lv, text in spec.labels.items():
                if lv not in titles:
                    raise ConfigError(
                        f"{self.config.where(key + '.labels')}: {lv!r} is not a level of "
                        f"banner {spec.name} (levels: {', '.join(levels)})"
                    )
                titles[lv] = text_in(text, self.lang, lv)
            column = spec.name if spec.derived else source
            if spec.derived and spec.name in frame.columns:
                raise ConfigError(
                    f"{self.config.where(key + '.name')}: {spec.name} is already a column "
                    "of the data; name the banner otherwise"
                )
            out.append(_Banner(spec, column, levels, title, titles))
        return out

    def _known_codes(self, q: Question, frame: pl.DataFrame) -> list[str]:
        if q.type != "country":
            return list(q.codes)
        counts = frame.get_column(q.name).cast(pl.String).drop_nulls().value_counts()
        col = counts.columns[0]
        return counts.sort(["count", col], descending=[True, False]).get_column(col).to_list()

    def _code_title(self, q: Question, code: str) -> str:
        if q.type == "country":
            from volna.questionnaire.countries import country_name

            try:
                return country_name(code, self.lang)
            except KeyError:
                return code
        if code in q.codes:
            return q.choice(code).label(self.lang)
        return code

    def _banner_columns(self, frame: pl.DataFrame, banners: Sequence[_Banner]) -> pl.DataFrame:
        adds = []
        for b in banners:
            spec = b.spec
            src = frame.get_column(spec.source)
            if spec.bins is not None:
                x = src.cast(pl.Float64)
                expr = pl.lit(None, dtype=pl.String)
                for level, (lo, hi) in reversed(list(spec.bins.items())):
                    cond = x.is_not_null()
                    if lo is not None:
                        cond = cond & (x >= lo)
                    if hi is not None:
                        cond = cond & (x <= hi)
                    expr = pl.when(cond).then(pl.lit(level)).otherwise(expr)
                values = frame.select(expr.alias(spec.name)).to_series()
            elif spec.groups is not None:
                text = src.cast(pl.String)
                mapping = {c: g for g, members in spec.groups.items() for c in members}
                values = text.replace_strict(mapping, default=spec.other, return_dtype=pl.String)
                values = pl.select(pl.when(text.is_null()).then(None).otherwise(values)).to_series()
            else:
                values = src.cast(pl.String)
            s = values.cast(pl.Enum(b.levels)).alias(b.column)
            # the levels someone (with a positive weight, checked later) is in
            present = set(s.drop_nulls().unique().cast(pl.String).to_list())
            b.levels = [lv for lv in b.levels if lv in present]
            adds.append(s)
        return frame.with_columns(adds) if adds else frame

    # ---- the design and weighting ------------------------------------------------------

    def _design(self, frame: pl.DataFrame, source: str):
        from volna.diagnostics import diagnose
        from volna.margins import MarginError, read_margins, select_margins
        from volna.weighting import WeightingError

        config = self.config
        for key, col in (
            ("design.clusters", config.clusters),
            ("design.strata", config.strata),
            ("weights", config.weights),
        ):
            if col is not None and col not in frame.columns:
                where = f"{source}: " if source else ""
                raise ConfigError(f"{config.where(key)}: {where}{col} is not a column of the data")
        if config.replicates is not None:
            rep = config.replicates
            try:
                base = SurveyDesign.replicate(
                    frame,
                    weights=config.weights,
                    replicate_weights=rep.columns,
                    type=rep.type,
                    scale=rep.scale,
                    mse=rep.mse,
                )
            except DesignError as exc:
                raise ConfigError(f"{config.where('design.replicate_weights')}: {exc}") from None
        else:
            base = SurveyDesign.from_frame(
                frame, ids=config.clusters, strata=config.strata, weights=config.weights
            )
        wc = config.weighting
        if wc is None:
            return base, base, None
        try:
            margins = read_margins(wc.margins)
            chosen = select_margins(margins, list(wc.use) if wc.use else None)
        except MarginError as exc:
            raise ConfigError(
                f"{config.where('weighting.use' if wc.use else 'weighting.margins')}: {exc}"
            ) from None
        self.margins_used = chosen
        try:
            if wc.method == "rake":
                weighted = base.rake(chosen, missing=wc.missing, collapse=wc.collapse)
            else:
                weighted = base.poststratify(chosen, missing=wc.missing, collapse=wc.collapse)
            if wc.trim_upper is not None:
                weighted = weighted.trim(upper=wc.trim_upper)
        except (MarginError, WeightingError) as exc:
            where = f"{source}: " if source else ""
            raise type(exc)(f"{config.where('weighting')}: {where}{exc}") from None
        report = diagnose(weighted, collapse=wc.collapse, unweighted=base)
        return base, weighted, report

    def _answered(self, frame: pl.DataFrame, pos: np.ndarray) -> dict[str, np.ndarray]:
        """Per question, the rows that answered it (with a positive weight ``pos``)."""
        out = {}
        for item in self.questions:
            q = item.q
            if item.kind == "multiple":
                cols = [q.option_column(c) for c in q.codes]
                known = frame.select(
                    pl.any_horizontal([pl.col(c).is_not_null() for c in cols])
                ).to_series()
                out[q.name] = known.to_numpy().astype(bool) & pos
            else:
                s = frame.get_column(q.name)
                ok = s.is_not_null()
                if s.dtype.is_float():
                    ok = ok & ~s.is_nan()
                out[q.name] = ok.to_numpy().astype(bool) & pos
            if item.q.type == "scale" and item.values:
                codes = frame.get_column(q.name).cast(pl.String)
                out[f"{q.name}#mean"] = codes.is_in(list(item.values)).to_numpy().astype(bool) & pos
        return out

    def _scale_series(self, frame: pl.DataFrame, item: _Q) -> pl.Series:
        codes = frame.get_column(item.name).cast(pl.String)
        return codes.replace_strict(item.values, default=None, return_dtype=pl.Float64).alias(
            item.name
        )

    def _mean_inputs(self, frame: pl.DataFrame, items: Sequence[_Q]) -> list:
        out = []
        for item in items:
            if item.kind == "numeric":
                out.append(frame.get_column(item.name).cast(pl.Float64).alias(item.name))
            elif item.has_mean:
                out.append(self._scale_series(frame, item))
        return out

    # ---- estimation --------------------------------------------------------------------

    def _topline_estimates(
        self,
        design: SurveyDesign,
        answered: Mapping[str, np.ndarray],
        frame: pl.DataFrame | None = None,
    ) -> dict[str, pl.DataFrame]:
        """Rule-applied estimates of every question for everyone, by question name."""
        from volna.multiresponse import option_shares

        frame = self.frame if frame is None else frame
        rules = self.rules
        out: dict[str, pl.DataFrame] = {}
        cats = [i for i in self.questions if i.kind == "categorical"]
        if cats:
            est = design.proportion(
                [i.name for i in cats], ci=rules.ci, conf_level=rules.conf_level
            ).to_polars()
            bases = pl.DataFrame(
                {
                    "variable": [i.name for i in cats],
                    "base": [int(answered[i.name].sum()) for i in cats],
                }
            )
            est = est.join(bases, on="variable", how="left", maintain_order="left")
            est = apply_table_rules(est, rules)
            for i in cats:
                out[i.name] = est.filter(pl.col("variable") == i.name)
        for item in self.questions:
            if item.kind == "multiple":
                est = option_shares(
                    design, item.q, ci=rules.ci, conf_level=rules.conf_level
                ).to_polars()
                est = est.with_columns(
                    pl.lit(int(answered[item.name].sum()), dtype=pl.Int64).alias("base")
                )
                out[item.name] = apply_table_rules(est, rules)
        means = self._mean_inputs(frame, self.questions)
        if means:
            est = design.mean(means, conf_level=rules.conf_level).to_polars()
            est = est.with_columns(pl.col("n").alias("base"))
            est = apply_table_rules(est, rules)
            for name in est.get_column("variable").to_list():
                key = f"{name}#mean"
                out[key] = est.filter(pl.col("variable") == name)
        numeric = [i.name for i in self.questions if i.kind == "numeric"]
        if numeric:
            est = design.median(numeric, conf_level=rules.conf_level).to_polars()
            est = apply_table_rules(est.with_columns(pl.col("n").alias("base")), rules)
            for name in numeric:
                out[f"{name}#median"] = est.filter(pl.col("variable") == name)
        return out

    def _order_levels(self, top: Mapping[str, pl.DataFrame]) -> None:
        """Countries by weighted share, largest first (codes only seen in the data)."""
        for item in self.questions:
            if item.q.type == "country":
                est = top[item.name].sort(
                    ["estimate", "level"], descending=[True, False], nulls_last=True
                )
                item.levels = est.get_column("level").to_list()

    def _assign_letters(self) -> None:
        letters = column_letters(sum(len(b.levels) for b in self.banners))
        k = 0
        for b in self.banners:
            for lv in b.levels:
                b.letters[b.domain(lv)] = letters[k]
                k += 1

    def _banner_estimates(self, b: _Banner) -> dict[str, pl.DataFrame]:
        """Rule-applied banner estimates with letters, per question (and question#mean)."""
        from volna.multiresponse import option_shares

        design, rules = self.design, self.rules
        codes = (
            self.frame.get_column(b.column).to_physical().cast(pl.Int64).fill_null(-1).to_numpy()
        )
        all_levels = self.frame.schema[b.column].categories.to_list()
        level_of = np.asarray(all_levels, dtype=object)
        ok = codes >= 0
        out: dict[str, pl.DataFrame] = {}
        items = [i for i in self.questions if i.name != b.spec.source]
        df = design.degf

        def bases(names_keys: Sequence[tuple[str, str]]) -> pl.DataFrame:
            rows: dict[str, list] = {"variable": [], "_level": [], "base": []}
            for var, key in names_keys:
                counts = np.bincount(codes[ok & self.answered[key]], minlength=len(all_levels))
                rows["variable"] += [var] * len(all_levels)
                rows["_level"] += list(level_of)
                rows["base"] += counts.astype(int).tolist()
            return pl.DataFrame(
                rows, schema={"variable": pl.String, "_level": pl.String, "base": pl.Int64}
            )

        def finish(est, names_keys, row_key) -> pl.DataFrame:
            frame = est.to_polars().with_columns(
                pl.Series("_level", est.column(b.column), dtype=pl.String),
            )
            frame = frame.join(
                bases(names_keys), on=["variable", "_level"], how="left", maintain_order="left"
            )
            frame = apply_table_rules(frame, rules)
            frame = frame.with_columns(
                pl.lit(b.name).alias("banner"),
                pl.concat_str(
                    [pl.col("variable"), pl.col(row_key).fill_null("")], separator="\x1f"
                ).alias("_row"),
            )
            return frame

        def letters(frame: pl.DataFrame, vcov: np.ndarray | None) -> pl.DataFrame:
            if vcov is None:
                se = frame.get_column("se").fill_null(np.nan).to_numpy()
                vcov = np.diag(se**2)
            out_, _pairs = compare_columns(
                frame,
                vcov,
                letters=b.letters,
                span="banner",
                column="domain",
                row="_row",
                alpha=rules.alpha,
                correction=rules.correction,
                df=df,
            )
            return out_

        cats = [i for i in items if i.kind == "categorical"]
        if cats:
            est, full = self._with_cov(
                lambda **kw: design.proportion(
                    [i.name for i in cats],
                    by=b.column,
                    ci=rules.ci,
                    conf_level=rules.conf_level,
                    **kw,
                )
            )
            frame = letters(finish(est, [(i.name, i.name) for i in cats], "level"), est.vcov)
            for i in cats:
                out[i.name] = frame.filter(pl.col("variable") == i.name)
                if not full:
                    self.no_cov.add(i.name)
        mean_items = [i for i in items if i.has_mean]
        if mean_items:
            series = self._mean_inputs(self.frame, mean_items)
            est, full = self._with_cov(
                lambda **kw: design.mean(series, by=b.column, conf_level=rules.conf_level, **kw)
            )
            keys = [
                (i.name, f"{i.name}#mean" if i.kind != "numeric" else i.name) for i in mean_items
            ]
            frame = letters(finish(est, keys, "level"), est.vcov)
            for i in mean_items:
                out[f"{i.name}#mean"] = frame.filter(pl.col("variable") == i.name)
        for i in items:
            if i.kind == "multiple":
                est = option_shares(
                    design, i.q, by=b.column, ci=rules.ci, conf_level=rules.conf_level
                )
                frame = letters(finish(est, [(i.name, i.name)], "level"), est.vcov)
                out[i.name] = frame
        return out

    def _with_cov(self, call):
        try:
            est = call(vcov=True)
            return est, True
        except DesignError as exc:
            if "too much memory" not in str(exc):
                raise
            return call(vcov=False), False

    # ---- topline -----------------------------------------------------------------------

    def _labels(self, item: _Q) -> dict[str, str]:
        return {lv: self._code_title(item.q, lv) for lv in item.levels}

    def _notes(self, estimates: pl.DataFrame, extra: Sequence[str] = ()) -> tuple[str, ...]:
        notes = list(extra)
        fired = flags_fired(estimates)
        if fired:
            flags = estimates.get_column("flags").to_list()
            parts = []
            for f in fired:
                n = sum(f in fl for fl in flags if fl)
                parts.append(
                    t("rule_note", self.lang, rule=flag_text(f, self.rules, self.lang), count=n)
                )
            notes.append(t("rules_fired", self.lang, rules="; ".join(parts)))
        return tuple(notes)

    def _topline_table(self, item: _Q, top: Mapping[str, pl.DataFrame]) -> ReportTable:
        lang = self.lang
        ci_head = t("ci", lang, level=f"{self.rules.conf_level * 100:g}")
        q = item.q
        notes = [t("base_note", lang)]
        parts = []
        if item.kind == "numeric":
            grid = _Grid(["", t("value", lang), ci_head, t("n", lang)])
            start = 0
            for key, word in ((f"{q.name}#mean", "mean"), (f"{q.name}#median", "median")):
                est = _ids(top[key], start)
                start += est.height
                parts.append(est)
                for row in est.iter_rows(named=True):
                    r = grid.add_row(t(word, lang))
                    mark = _mark(row)
                    grid.set(r, t("value", lang), _fmt(row, "value", lang), mark)
                    grid.set(r, ci_head, _fmt_ci(row, "value", lang), mark)
                    grid.set(
                        r, t("n", lang), _fmt_n(row, lang), mark if mark == "suppressed" else ""
                    )
                    grid.place(row["_id"], r, t("value", lang), "value")
        else:
            est = _ids(top[q.name])
            parts.append(est)
            by_level = {row["level"]: row for row in est.iter_rows(named=True)}
            grid = _Grid(["", t("percent", lang), ci_head, t("n", lang)])
            labels = self._labels(item)
            for lv in item.levels:
                row = by_level.get(lv)
                if row is None:
                    continue
                r = grid.add_row(labels.get(lv, lv))
                mark = _mark(row)
                grid.set(r, t("percent", lang), _fmt(row, "percent", lang), mark)
                grid.set(r, ci_head, _fmt_ci(row, "percent", lang), mark)
                grid.set(r, t("n", lang), _fmt_n(row, lang), mark if mark == "suppressed" else "")
                grid.place(row["_id"], r, t("percent", lang), "percent")
            if item.has_mean:
                m = _ids(top[f"{q.name}#mean"], est.height)
                parts.append(m)
                row = m.row(0, named=True)
                r = grid.add_row(t("mean", lang))
                mark = _mark(row)
                grid.set(r, t("percent", lang), _fmt(row, "value", lang, 2), mark)
                grid.set(r, ci_head, _fmt_ci(row, "value", lang, 2), mark)
                grid.set(r, t("n", lang), _fmt_n(row, lang), mark if mark == "suppressed" else "")
                grid.place(row["_id"], r, t("percent", lang), "value")
                notes.append(self._scale_note(item))
            r = grid.add_row(t("base", lang))
            base = int(est.get_column("base").max() or 0) if est.height else 0
            grid.set(r, t("n", lang), i18n.count(base, lang))
            if item.kind == "multiple":
                notes.append(t("multi_note", lang))
        estimates = grid.located(_concat(parts))
        if _has_flag(estimates, "zero_variance"):
            notes.append(t("zero_variance_note", lang))
        display, marks = grid.display()
        kind = "multiresponse" if item.kind == "multiple" else "topline"
        return ReportTable(
            key=f"topline:{q.name}",
            kind=kind,
            title=q.label(lang),
            estimates=estimates,
            display=display,
            marks=marks,
            notes=self._notes(estimates, notes),
        )

    def _scale_note(self, item: _Q) -> str:
        values = list(item.values.values())
        low, high = i18n.number(min(values), self.lang, 0), i18n.number(max(values), self.lang, 0)
        missing = [c.label(self.lang) for c in item.q.choices if c.missing]
        if missing:
            return t("scale_mean_note", self.lang, low=low, high=high, missing="», «".join(missing))
        return t("scale_mean_note_plain", self.lang, low=low, high=high)

    def _topline_section(self, top: Mapping[str, pl.DataFrame]) -> Section:
        lang = self.lang
        tables = []
        section_charts: list[Chart] = []
        first_country = next((i for i in self.questions if i.q.type == "country"), None)
        for item in self.questions:
            table = self._topline_table(item, top)
            if item is first_country and self.charts_module is not None:
                bars, world = self._country_charts(item, top[item.name])
                if bars is not None:
                    table = _with_chart(table, bars)
                if world is not None:
                    section_charts.append(world)
            tables.append(table)
        if self.charts_module is not None:
            for group in self._scale_groups():
                chart = self._diverging(group, top)
                if chart is None:
                    continue
                # next to the first table of the group: the chart covers every item of it
                idx = next(k for k, tb in enumerate(tables) if tb.key == f"topline:{group[0].name}")
                tables[idx] = _with_chart(tables[idx], chart)
        return Section(
            key="topline",
            title=t("topline", lang),
            intro=(t("topline_intro", lang, level=f"{self.rules.conf_level * 100:g}"),),
            tables=tuple(tables),
            charts=tuple(section_charts),
        )

    # ---- charts ------------------------------------------------------------------------

    def _chart_fn(self, name: str):
        if self.charts_module is None:
            return None
        try:
            return getattr(self.charts_module, name)
        except (AttributeError, ImportError):
            return None

    def _figure_title(self, text: str, number: bool = False) -> str:
        """A chart's title; "Figure 1" is the destinations' (the renderers place the rest)."""
        if not number:
            return text
        self.figures += 1
        word = "Рисунок" if self.lang == "ru" else "Figure"
        return f"{word} {self.figures}. {text}"

    def _caption(self, base: int) -> str:
        source = ""
        if self.synthetic:
            source = "Синтетические данные." if self.lang == "ru" else "Synthetic data."
        return t(
            "chart_caption",
            self.lang,
            level=f"{self.rules.conf_level * 100:g}",
            n=i18n.count(base, self.lang),
            source=source,
        ).strip()

    def _country_charts(self, item: _Q, est: pl.DataFrame) -> tuple[Chart | None, Chart | None]:
        bars_fn, map_fn = self._chart_fn("estimate_bars"), self._chart_fn("world_map")
        base = int(est.get_column("base").max() or 0) if est.height else 0
        rows = est.select("level", "estimate", "ci_low", "ci_high", "n", "mark")
        caption = self._caption(base)
        if _has_flag(est, "zero_variance"):
            caption = f"{caption} {t('zero_variance_note', self.lang)}"
        bars = world = None
        if bars_fn is not None:
            bars = bars_fn(
                rows,
                key=f"topline:{item.name}",
                title=self._figure_title(item.q.label(self.lang), number=True),
                labels=self._labels(item),
                lang=self.lang,
                caption=caption,
                min_n=self.rules.min_n,
            )
        if map_fn is not None:
            shares = est.select(pl.col("level").alias("country"), "estimate", "mark")
            world = map_fn(
                shares,
                key=f"map:{item.name}",
                title=t("map_title", self.lang, label=item.q.label(self.lang)),
                lang=self.lang,
                caption=self._caption(base),
            )
        return bars, world

    def _scale_groups(self) -> list[list[_Q]]:
        """Consecutive scale questions with the same choices: one diverging chart each."""
        groups: list[list[_Q]] = []
        for item in self.questions:
            if item.q.type != "scale":
                continue
            if (
                groups
                and groups[-1][-1].q.codes == item.q.codes
                and groups[-1][-1] is self._previous(item)
            ):
                groups[-1].append(item)
            else:
                groups.append([item])
        return groups

    def _previous(self, item: _Q) -> _Q | None:
        idx = self.questions.index(item)
        return self.questions[idx - 1] if idx else None

    def _diverging(self, group: Sequence[_Q], top: Mapping[str, pl.DataFrame]) -> Chart | None:
        fn = self._chart_fn("diverging_bars")
        if fn is None:
            return None
        first = group[0]
        order = [c.code for c in first.q.choices if not c.missing]
        frames = []
        for item in group:
            est = top[item.name].filter(pl.col("level").is_in(order))
            frames.append(
                est.select(
                    pl.lit(item.q.label(self.lang)).alias("item"), "level", "estimate", "mark"
                )
            )
        rows = pl.concat(frames)
        neutral = order[len(order) // 2] if len(order) % 2 == 1 else None
        title = (
            first.q.label(self.lang)
            if len(group) == 1
            else (self._section_label(first.q) or first.q.label(self.lang))
        )
        base = int(top[first.name].get_column("base").max() or 0)
        return fn(
            rows,
            key=f"scale:{first.name}",
            title=title,
            order=order,
            neutral=neutral,
            labels={c.code: c.label(self.lang) for c in first.q.choices},
            lang=self.lang,
            caption=self._caption(base),
            min_n=self.rules.min_n,
        )

    def _pair_title(self, before: Question, after: Question) -> str:
        """The pair's section and "before and after"; its wordings go in ``question``."""
        section = self._section_label(before)
        words = t("paired", self.lang)
        return (
            f"{section}: {words.lower()}"
            if section
            else f"{before.label(self.lang)} / {after.label(self.lang)}"
        )

    def _section_label(self, q: Question) -> str:
        """The title of the innermost section holding ``q`` ("" outside any)."""
        if not q.section:
            return ""
        try:
            return self.qn.section(q.section[-1]).label(self.lang)
        except VolnaError:
            return ""

    # ---- banner tables -----------------------------------------------------------------

    def _banner_section(self, top: Mapping[str, pl.DataFrame]) -> Section:
        lang = self.lang
        self.no_cov: set[str] = set()
        by_banner = []
        for b in self.banners:
            self.step(f"banner {b.name}")
            by_banner.append(self._banner_estimates(b))
        tables = []
        for item in self.questions:
            tables.append(self._banner_table(item, top, by_banner))
        tests = self._association_table()
        if tests is not None:
            tables.append(tests)
        names = ", ".join(b.title for b in self.banners)
        return Section(
            key="banners",
            title=t("banners", lang),
            intro=(t("banners_intro", lang, banners=names),),
            tables=tuple(tables),
        )

    def _banner_table(
        self,
        item: _Q,
        top: Mapping[str, pl.DataFrame],
        by_banner: Sequence[Mapping[str, pl.DataFrame]],
    ) -> ReportTable:
        lang = self.lang
        q = item.q
        total = t("total", lang)
        spans = [
            (b, est)
            for b, est in zip(self.banners, by_banner, strict=True)
            if b.spec.source != q.name
        ]
        columns = ["", total]
        heads: dict[str, str] = {}
        for b, _est in spans:
            for lv in b.levels:
                dom = b.domain(lv)
                head = f"{b.level_titles.get(lv, lv)} ({b.letters[dom]})"
                heads[dom] = head
                columns.append(head)
        grid = _Grid(columns)
        parts: list[pl.DataFrame] = []
        start = 0

        def take(frame: pl.DataFrame) -> pl.DataFrame:
            nonlocal start
            framed = _ids(frame, start)
            start += framed.height
            parts.append(framed)
            return framed

        # the rows of the table: levels, then the mean, then the base
        row_keys: list[tuple[str, str | None]] = []
        if item.kind != "numeric":
            row_keys += [(item.name, lv) for lv in item.levels]
        if item.has_mean:
            row_keys.append((f"{item.name}#mean", None))
        labels = self._labels(item) if item.kind != "numeric" else {}
        row_at: dict[tuple[str, str | None], int] = {}
        for key, lv in row_keys:
            row_at[(key, lv)] = grid.add_row(
                labels.get(lv, lv) if lv is not None else t("mean", lang)
            )
        base_row = grid.add_row(t("base", lang))

        def fill(frame: pl.DataFrame, key: str, column_of) -> None:
            mean = key.endswith("#mean")
            unit = "value" if mean else "percent"
            digits = 2 if mean and item.q.type == "scale" else 1
            for row in frame.iter_rows(named=True):
                lv = None if mean else row["level"]
                r = row_at.get((key, lv))
                col = column_of(row)
                if r is None or col is None:
                    continue
                text = _fmt(row, unit, lang, digits)
                if row.get("letters") and row.get("shown") is not False:
                    text = f"{text} {row['letters']}"
                grid.set(r, col, text, _mark(row))
                grid.place(row["_id"], r, col, unit)

        # Total: the topline estimates
        keys = [item.name] if item.kind != "numeric" else []
        if item.has_mean:
            keys.append(f"{item.name}#mean")
        for key in keys:
            fill(
                take(top[key].with_columns(pl.lit(None, dtype=pl.String).alias("banner"))),
                key,
                lambda row: total,
            )
        base_total = int(
            self.answered[
                f"{item.name}#mean"
                if item.kind == "numeric" and f"{item.name}#mean" in self.answered
                else item.name
            ].sum()
        )
        grid.set(base_row, total, i18n.count(base_total, lang))
        for b, est in spans:
            for key in keys:
                frame = est.get(key)
                if frame is None:
                    continue
                fill(take(frame), key, lambda row: heads.get(row["domain"]))
            # the base of each column: those who answered, in the column
            first = est.get(item.name if item.kind != "numeric" else f"{item.name}#mean")
            if first is not None:
                bases = dict(
                    zip(
                        first.get_column("domain").to_list(),
                        first.get_column("base").to_list(),
                        strict=True,
                    )
                )
                for lv in b.levels:
                    dom = b.domain(lv)
                    grid.set(base_row, heads[dom], i18n.count(bases.get(dom, 0) or 0, lang))
        estimates = grid.located(_concat(parts))
        display, marks = grid.display()
        groups = [("", 1)] + [(b.title, len(b.levels)) for b, _ in spans if b.levels]
        notes = [t("base_note", lang)]
        if item.kind == "multiple":
            notes.append(t("multi_note", lang))
        if item.has_mean and item.q.type == "scale":
            notes.append(self._scale_note(item))
        notes.append(
            t(
                "letters_note",
                lang,
                alpha=i18n.number(self.rules.alpha, lang, 2),
                correction=_correction(self.rules.correction, lang),
            )
        )
        if item.name in getattr(self, "no_cov", ()):
            notes.append(t("no_cov_note", lang))
        return ReportTable(
            key=f"banner:{q.name}",
            kind="banner",
            title=q.label(lang),
            estimates=estimates,
            display=display,
            marks=marks,
            notes=self._notes(estimates, notes),
            header_groups=tuple(groups),
        )

    def _association_table(self) -> ReportTable | None:
        """Rao-Scott F tests of every single-choice question against every banner variable.

        A test the design cannot carry (flags in :data:`volna.compare.UNRELIABLE_TEST_FLAGS`:
        too few PSUs for the table, design effects or covariance singular) shows as
        unreliable, with a note saying why, instead of a p-value.
        """
        lang = self.lang
        items = [i for i in self.questions if i.kind == "categorical"]
        if not items or not self.banners:
            return None
        columns = ["", *(b.title for b in self.banners)]
        grid = _Grid(columns)
        parts: list[pl.DataFrame] = []
        for item in items:
            r = grid.add_row(item.q.label(lang))
            for b in self.banners:
                if b.spec.source == item.name:
                    continue
                test = crosstab(self.design, item.name, b.column, conf_level=self.rules.conf_level)
                frame = test.test("F").to_polars().with_columns(pl.lit(b.name).alias("banner"))
                frame = _ids(frame, len(parts))
                text, mark = association_cell(frame.row(0, named=True), lang)
                frame = frame.with_columns(pl.lit(mark).alias("mark"))
                grid.set(r, b.title, text, mark)
                grid.place(frame.item(0, "_id"), r, b.title, "p")
                parts.append(frame)
        if not parts:
            return None
        estimates = grid.located(_concat(parts))
        display, marks = grid.display()
        df = i18n.number(self.design.degf, lang, 0 if float(self.design.degf).is_integer() else 1)
        notes = [t("association_note", lang, df=df)]
        if (marks.unpivot().get_column("value") == "unreliable").any():
            notes.append(t("test_unreliable_note", lang, df=df))
        return ReportTable(
            key="banners:tests",
            kind="banner",
            title=t("association_table", lang),
            estimates=estimates,
            display=display,
            marks=marks,
            notes=tuple(notes),
        )

    # ---- paired items ------------------------------------------------------------------

    def _pairs(self) -> list:
        names = {i.name for i in self.questions}
        return [p for p in self.qn.pairs if p.first.name in names and p.second.name in names]

    def _paired_section(self, top: Mapping[str, pl.DataFrame]) -> Section:
        from volna.report.banner import adjust_p

        lang = self.lang
        tables = []
        level = f"{self.rules.conf_level * 100:g}"
        for pair in self._pairs():
            before_q, after_q = pair.first, pair.second
            if before_q.period == "after" or after_q.period == "before":
                before_q, after_q = after_q, before_q
            item = next(i for i in self.questions if i.name == before_q.name)
            frame = self.frame
            if before_q.type == "multiple":
                codes = list(before_q.codes)
                after_s = [
                    frame.get_column(after_q.option_column(c))
                    .cast(pl.Boolean)
                    .alias(f"{after_q.name}/{c}")
                    for c in codes
                ]
                before_s = [
                    frame.get_column(before_q.option_column(c))
                    .cast(pl.Boolean)
                    .alias(f"{before_q.name}/{c}")
                    for c in codes
                ]
            elif before_q.type in CATEGORICAL:
                codes = list(item.levels)
                after_s, before_s = [], []
                for c in codes:
                    for q, target in ((after_q, after_s), (before_q, before_s)):
                        s = frame.get_column(q.name).cast(pl.String)
                        target.append(
                            pl.select(pl.when(s.is_null()).then(None).otherwise(s == c))
                            .to_series()
                            .alias(f"{q.name}/{c}")
                        )
            else:
                codes = [""]
                after_s = [frame.get_column(after_q.name).cast(pl.Float64)]
                before_s = [frame.get_column(before_q.name).cast(pl.Float64)]
            est = paired_difference(
                self.design, after_s, before_s, conf_level=self.rules.conf_level
            ).to_polars()
            p_adj = adjust_p(
                est.get_column("p_value").fill_null(np.nan).to_numpy(), self.rules.correction
            )
            est = est.with_columns(
                pl.Series("p_adjusted", p_adj),
                pl.Series("level", codes, dtype=pl.String),
                pl.col("n").alias("base"),
            )
            est = apply_table_rules(est, self.rules)
            numeric = before_q.type in NUMERIC
            tb, ta = (
                (top.get(f"{before_q.name}#mean"), top.get(f"{after_q.name}#mean"))
                if numeric
                else (top[before_q.name], top[after_q.name])
            )
            b_rows = {r["level"] if not numeric else "": r for r in tb.iter_rows(named=True)}
            a_rows = {r["level"] if not numeric else "": r for r in ta.iter_rows(named=True)}
            # a change next to a hidden figure would give it away
            hidden = [
                not (
                    b_rows.get(c, {}).get("shown", False) and a_rows.get(c, {}).get("shown", False)
                )
                for c in codes
            ]
            est = est.with_columns(
                pl.when(pl.Series(hidden))
                .then(pl.lit("suppressed"))
                .otherwise(pl.col("mark"))
                .alias("mark"),
                (~pl.Series(hidden) & pl.col("shown")).alias("shown"),
            )
            sig = (est.get_column("p_adjusted") <= self.rules.alpha).fill_null(
                False
            ) & est.get_column("shown")
            est = est.with_columns(
                pl.when(sig & (pl.col("mark") == ""))
                .then(pl.lit("significant"))
                .otherwise(pl.col("mark"))
                .alias("mark")
            )
            ci_head = t("ci", lang, level=level)
            cols = [
                "",
                t("before", lang),
                t("after", lang),
                t("change", lang),
                ci_head,
                t("p", lang),
            ]
            grid = _Grid(cols)
            unit = "value" if numeric else "percent"
            diff_unit = "value" if numeric else "points"
            b_part = _ids(tb.filter(pl.col("level").is_in(codes)) if not numeric else tb, 0)
            a_part = _ids(
                ta.filter(pl.col("level").is_in(codes)) if not numeric else ta, b_part.height
            )
            d_part = _ids(est, b_part.height + a_part.height)
            b_ids = {
                r["level"] if not numeric else "": r["_id"] for r in b_part.iter_rows(named=True)
            }
            a_ids = {
                r["level"] if not numeric else "": r["_id"] for r in a_part.iter_rows(named=True)
            }
            labels = self._labels(item) if not numeric else {"": before_q.label(lang)}
            dots: dict[str, list] = {
                k: []
                for k in (
                    "item",
                    "before",
                    "before_low",
                    "before_high",
                    "after",
                    "after_low",
                    "after_high",
                )
            }
            for row in d_part.iter_rows(named=True):
                c = row["level"]
                r = grid.add_row(labels.get(c, c))
                br, ar = b_rows.get(c, {}), a_rows.get(c, {})
                grid.set(r, cols[1], _fmt(br, unit, lang), br.get("mark", ""))
                grid.set(r, cols[2], _fmt(ar, unit, lang), ar.get("mark", ""))
                if c in b_ids:
                    grid.place(b_ids[c], r, cols[1], unit)
                if c in a_ids:
                    grid.place(a_ids[c], r, cols[2], unit)
                mark = row["mark"]
                grid.set(r, cols[3], _fmt(row, diff_unit, lang), mark)
                grid.set(r, cols[4], _fmt_ci(row, diff_unit, lang), mark)
                grid.set(
                    r,
                    cols[5],
                    i18n.p_value(row["p_adjusted"], lang) if row["shown"] else i18n.SUPPRESSED,
                    mark,
                )
                grid.place(row["_id"], r, cols[3], diff_unit)
                dots["item"].append(labels.get(c, c))
                for side, rr in (("before", br), ("after", ar)):
                    shown = rr.get("shown", False)
                    dots[side].append(rr.get("estimate") if shown else None)
                    dots[f"{side}_low"].append(rr.get("ci_low") if shown else None)
                    dots[f"{side}_high"].append(rr.get("ci_high") if shown else None)
            estimates = grid.located(_concat([b_part, a_part, d_part]))
            display, marks = grid.display()
            title = self._pair_title(before_q, after_q)
            chart = None
            fn = self._chart_fn("paired_dots")
            if fn is not None and not numeric:
                chart = fn(
                    pl.DataFrame(
                        dots,
                        schema={"item": pl.String, **{k: pl.Float64 for k in dots if k != "item"}},
                    ),
                    key=f"paired:{before_q.name}",
                    title=title,
                    before=_period(before_q, lang, "before"),
                    after=_period(after_q, lang, "after"),
                    lang=lang,
                    caption=self._caption(int(est.get_column("n").max() or 0)),
                    min_n=self.rules.min_n,
                )
            notes = [
                t(
                    "paired_note",
                    lang,
                    level=level,
                    correction=_correction(self.rules.correction, lang),
                )
            ]
            tables.append(
                ReportTable(
                    key=f"paired:{before_q.name}",
                    kind="paired",
                    title=title,
                    estimates=estimates,
                    display=display,
                    marks=marks,
                    notes=self._notes(estimates, notes),
                    chart=chart,
                    question=f"{before_q.label(lang)} / {after_q.label(lang)}",
                )
            )
        return Section(
            key="paired",
            title=t("paired", lang),
            intro=(t("paired_intro", lang),),
            tables=tuple(tables),
        )

    # ---- screening ---------------------------------------------------------------------

    def _screen(self) -> None:
        """Screen the responses; the rest of the report uses those the policy keeps."""
        from volna.screening import read_rules, screen, sensitivity

        sc = self.config.screening
        rules = read_rules(sc.rules) if sc.rules is not None else None
        result = screen(self.raw, self.qn, rules)
        compare = sensitivity(result, list(sc.compare)) if sc.compare else None
        self.screening = (result, compare, self.raw.height)
        self.raw = result.kept

    def _screening_section(self) -> Section:
        lang = self.lang
        result, compare, n = self.screening
        sc = self.config.screening
        rules_name = sc.rules.name if sc.rules is not None else "(defaults)"
        k = result.n_excluded
        intro = t(
            "screening_intro",
            lang,
            rules=rules_name,
            excluded=i18n.count(k, lang),
            n=i18n.count(n, lang),
            kept=i18n.count(n - k, lang),
        )
        summary = result.summary
        display = pl.DataFrame(
            {
                t("screening_rule", lang): summary["rule"].cast(pl.String),
                t("screening_flagged", lang): [i18n.count(v, lang) for v in summary["flagged"]],
                t("screening_excluded", lang): [i18n.count(v, lang) for v in summary["excluded"]],
                t("screening_only", lang): [i18n.count(v, lang) for v in summary["only"]],
            }
        )
        tables = [
            ReportTable(
                key="screening:rules",
                kind="methodology",
                title=t("screening_rules_table", lang),
                estimates=summary,
                display=display,
                marks=display.select(pl.all().map_elements(lambda _: "", return_dtype=pl.String)),
            )
        ]
        if compare is not None and compare.height:
            rows = compare.with_columns(pl.col("level").fill_null("(mean)"))
            display = pl.DataFrame(
                {
                    "": [
                        self._item_label(r["variable"], r["level"])
                        for r in rows.iter_rows(named=True)
                    ],
                    t("screening_all", lang): [i18n.pct(v, lang) for v in rows["all"]],
                    t("screening_kept", lang): [i18n.pct(v, lang) for v in rows["kept"]],
                    t("screening_diff", lang): [i18n.points(v, lang) for v in rows["difference"]],
                    t("screening_ci", lang): [
                        i18n.interval(a, b, lang)
                        for a, b in zip(rows["ci_low"], rows["ci_high"], strict=True)
                    ],
                    t("screening_p", lang): [
                        "—" if p is None or not math.isfinite(p) else f"{p:.3f}"
                        for p in rows["p_value"]
                    ],
                }
            )
            tables.append(
                ReportTable(
                    key="screening:compare",
                    kind="topline",
                    title=t("screening_compare_table", lang),
                    estimates=compare,
                    display=display,
                    marks=display.select(
                        pl.all().map_elements(lambda _: "", return_dtype=pl.String)
                    ),
                    notes=(t("screening_note", lang),),
                )
            )
        return Section(
            key="screening", title=t("screening", lang), intro=(intro,), tables=tuple(tables)
        )

    def _item_label(self, variable: str, level: str | None) -> str:
        """``Question: choice`` in the report language, for a row of a comparison."""
        names = {q.name: q for q in self.qn.questions}
        q = names.get(variable)
        if q is None:
            return f"{variable}: {level}" if level else variable
        text = q.label(self.lang)
        if level is None or level == "(mean)":
            return text
        choice = next((c for c in q.choices if c.code == level), None)
        return f"{text}: {choice.label(self.lang) if choice is not None else level}"

    # ---- benchmarks --------------------------------------------------------------------

    def _benchmark_section(self) -> Section:
        lang = self.lang
        benchmarks = read_benchmarks(self.config.benchmarks)
        names = {b.name for b in benchmarks}
        for name in self.config.benchmark_labels:
            if name not in names:
                raise ConfigError(
                    f"{self.config.where('benchmarks.labels')}: no benchmark named {name!r} in "
                    f"{self.config.benchmarks} (benchmarks: {', '.join(sorted(names))})"
                )
        series = []
        for b in benchmarks:
            if b.question not in self.qn:
                raise ConfigError(
                    f"{b.where('compares_to.question')}: no question named {b.question!r} "
                    "in the questionnaire"
                )
            q = self.qn[b.question]
            if q.type not in ("single", "scale"):
                raise ConfigError(
                    f"{b.where('compares_to.question')}: {b.question} is a {q.type} "
                    "question; a benchmark compares the share of some codes of a choice question"
                )
            for k, codes in (("levels", b.levels), ("among", b.among)):
                for c in codes:
                    if c not in q.codes:
                        raise ConfigError(
                            f"{b.where('compares_to.' + k)}: {c!r} is not a code of "
                            f"{b.question} (codes: {', '.join(q.codes)})"
                        )
            if b.question not in self.frame.columns:
                raise ReportError(f"data: column {b.question} (benchmark {b.name}) is missing")
            s = self.frame.get_column(b.question).cast(pl.String)
            base = s.is_in(list(b.among)) if b.among else s.is_not_null()
            values = pl.select(
                pl.when(base).then(s.is_in(list(b.levels))).otherwise(None)
            ).to_series()
            series.append(values.alias(b.name))
        rules = self.rules
        est = self.design.proportion(series, ci=rules.ci, conf_level=rules.conf_level)
        ours = est.to_polars()
        answered = [int((s.is_not_null().to_numpy() & self.w_positive).sum()) for s in series]
        ours = apply_table_rules(
            ours.with_columns(pl.Series("base", answered, dtype=pl.Int64)), rules
        )
        test = against_benchmark(
            None, est, [b.value / 100 for b in benchmarks], conf_level=rules.conf_level
        ).to_polars()
        test = test.with_columns(
            ours.get_column("shown").alias("shown"),
            pl.when(ours.get_column("shown"))
            .then(pl.lit(""))
            .otherwise(pl.lit("suppressed"))
            .alias("mark"),
            pl.Series("benchmark_name", [b.name for b in benchmarks]),
        )
        p_adj = test.get_column("p_value").fill_null(np.nan).to_numpy()
        sig = (pl.Series(p_adj) <= rules.alpha).fill_null(False) & test.get_column("shown")
        test = test.with_columns(
            pl.when(sig & (pl.col("mark") == ""))
            .then(pl.lit("significant"))
            .otherwise(pl.col("mark"))
            .alias("mark")
        )
        ci_head = t("ci", lang, level=f"{rules.conf_level * 100:g}")
        cols = [
            "",
            t("ours", lang),
            ci_head,
            t("benchmark", lang),
            t("difference", lang),
            ci_head + " ",
            t("p", lang),
            t("n", lang),
        ]
        grid = _Grid(cols)
        o_part = _ids(ours.with_columns(pl.Series("benchmark_name", [b.name for b in benchmarks])))
        t_part = _ids(test, o_part.height)
        for b, orow, trow in zip(
            benchmarks, o_part.iter_rows(named=True), t_part.iter_rows(named=True), strict=True
        ):
            r = grid.add_row(self._benchmark_label(b))
            mark = _mark(orow)
            grid.set(r, cols[1], _fmt(orow, "percent", lang), mark)
            grid.set(r, cols[2], _fmt_ci(orow, "percent", lang), mark)
            grid.set(r, cols[3], i18n.number(b.value, lang, 1))
            tmark = trow["mark"]
            grid.set(r, cols[4], _fmt(trow, "points", lang), tmark)
            grid.set(r, cols[5], _fmt_ci(trow, "points", lang), tmark)
            grid.set(
                r,
                cols[6],
                i18n.p_value(trow["p_value"], lang) if trow["shown"] else i18n.SUPPRESSED,
                tmark,
            )
            grid.set(r, cols[7], _fmt_n(orow, lang), mark if mark == "suppressed" else "")
            grid.place(orow["_id"], r, cols[1], "percent")
            grid.place(trow["_id"], r, cols[4], "points")
        estimates = grid.located(_concat([o_part, t_part]))
        display, marks = grid.display()
        notes = [t("benchmark_note", lang)]
        if lang != "en":
            notes.append(t("source_notes", lang))
        for b in benchmarks:
            extra = "; ".join(x for x in (b.population, b.denominator, b.definition) if x)
            if extra:
                notes.append(f"{self._benchmark_label(b)}: {extra}")
        table = ReportTable(
            key="benchmarks",
            kind="benchmark",
            title=t("benchmarks_table", lang),
            estimates=estimates,
            display=display,
            marks=marks,
            notes=self._notes(estimates, notes),
        )
        return Section(
            key="benchmarks",
            title=t("benchmarks", lang),
            intro=(t("benchmarks_intro", lang),),
            tables=(table,),
        )

    def _benchmark_label(self, b) -> str:
        if b.name in self.config.benchmark_labels:
            return text_in(self.config.benchmark_labels[b.name], self.lang, b.name)
        if b.label:
            return text_in(b.label, self.lang, b.name)
        q = self.qn[b.question]
        levels = ", ".join(q.choice(c).label(self.lang) for c in b.levels)
        who = b.source.get("publisher") or b.source.get("title") or b.name
        date = f", {b.date}" if b.date else ""
        return f"{levels} — {who}{date}"

    # ---- models ------------------------------------------------------------------------

    def _model_columns(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The models' variables ready to fit: choices as Enums, derived outcome and domain.

        ``_model{i}_y`` is 1 for the ``success`` codes of the response (0 for the other
        answers, missing if unanswered), ``_model{i}_where`` the domain.
        """
        from volna.models import parse_formula

        self._model_specs = []
        for i, spec in enumerate(self.config.models):
            where_key = self.config.where(f"{spec.key}.formula")
            f = parse_formula(spec.formula)
            names = [f.response, *(v for term in f.terms for v in term)]
            if f.offset is not None:
                names.append(f.offset[0])
            for name in dict.fromkeys(names):
                if name not in frame.columns:
                    raise ConfigError(
                        f"{where_key}: no column {name!r} in the data; expected a question's "
                        "name (or a multiple-choice option as `question/code`)"
                    )
                q = self._question(name)
                if q is not None and q.type in ("single", "scale"):
                    frame = frame.with_columns(self._enum(frame, name, list(q.codes), "data"))
                elif q is None and "/" in name and name.split("/")[0] in self.qn:
                    s = frame.get_column(name)
                    if s.dtype != pl.Boolean:
                        frame = frame.with_columns(self._boolean(s, "data"))
            extra = []
            response = f.response
            if spec.success:
                q = self._question(f.response)
                if q is None or q.type not in ("single", "scale"):
                    raise ConfigError(
                        f"{self.config.where(spec.key + '.success')}: the response "
                        f"{f.response} is not a choice question; success names its codes"
                    )
                for code in spec.success:
                    if code not in q.codes:
                        raise ConfigError(
                            f"{self.config.where(spec.key + '.success')}: {code!r} is not a "
                            f"code of {q.name} (codes: {', '.join(q.codes)})"
                        )
                response = f"_model{i}_y"
                col = pl.col(f.response).cast(pl.String)
                extra.append(
                    pl.when(col.is_null())
                    .then(None)
                    .otherwise(col.is_in(list(spec.success)).cast(pl.Float64))
                    .alias(response)
                )
            where = None
            if spec.where:
                conds = []
                for qname, codes in spec.where.items():
                    key = self.config.where(f"{spec.key}.where")
                    if qname not in frame.columns or qname not in self.qn:
                        raise ConfigError(f"{key}: no question named {qname!r}")
                    q = self.qn[qname]
                    for code in codes:
                        if code not in q.codes:
                            raise ConfigError(
                                f"{key}.{qname}: {code!r} is not a code of {qname} "
                                f"(codes: {', '.join(q.codes)})"
                            )
                    conds.append(pl.col(qname).cast(pl.String).is_in(list(codes)).fill_null(False))
                where = f"_model{i}_where"
                expr = conds[0]
                for c in conds[1:]:
                    expr = expr & c
                extra.append(expr.alias(where))
            if extra:
                frame = frame.with_columns(extra)
            self._model_specs.append((spec, replace(f, response=response), where))
        return frame

    def _question(self, name: str) -> Question | None:
        return self.qn[name] if name in self.qn else None  # noqa: SIM401 (no .get)

    def _reference(self, name: str) -> str | None:
        """The reference level of a choice question in a model: its first code answered."""
        q = self._question(name)
        present = set(self.frame.get_column(name).drop_nulls().cast(pl.String).to_list())
        first = next((c for c in q.codes if c in present), None)
        return None if first is None else q.choice(first).label(self.lang)

    def _term_label(self, coef, fit) -> str:
        """A coefficient in words: the question's label, and the choice's for a level."""
        if coef.term == "(Intercept)":
            return t("intercept", self.lang)
        variables = coef.term.split(":")
        levels = coef.level.split(":") if coef.level else []
        parts = []
        for v in variables:
            base = v.split("/")[0]
            q = self._question(base)
            text = q.label(self.lang) if q is not None else v
            if q is not None and q.type == "multiple" and "/" in v:
                code = v.split("/", 1)[1]
                option = q.choice(code).label(self.lang) if code in q.codes else code
                text = _label_and_choice(text, option)
                if levels and levels[0] in ("True", "False"):
                    levels.pop(0)
            elif q is not None and q.type in ("single", "scale") and levels:
                code = levels.pop(0)
                choice = q.choice(code).label(self.lang) if code in q.codes else code
                text = _label_and_choice(text, choice)
            elif levels and self.frame.schema.get(v) == pl.Boolean:
                levels.pop(0)
            parts.append(text)
        return " × ".join(parts)

    def _models_section(self) -> Section:
        tables = [self._model_table(i, *m) for i, m in enumerate(self._model_specs)]
        return Section(
            key="models",
            title=t("models", self.lang),
            intro=(t("models_intro", self.lang),),
            tables=tuple(tables),
        )

    def _model_table(self, i: int, spec, formula, where) -> ReportTable:
        from volna.models import ModelError, _model_matrix

        lang = self.lang
        try:
            fit = self.design.glm(
                formula, spec.family, where=None if where is None else pl.col(where)
            )
        except ModelError as exc:
            raise ConfigError(f"{self.config.where(spec.key + '.formula')}: {exc}") from None
        ratio = fit.family.ratio_name is not None
        est = fit.table(exp=ratio, conf_level=self.rules.conf_level).to_polars()
        level = f"{self.rules.conf_level * 100:g}"
        head = t("odds_ratio" if fit.family.link == "logit" else "rate_ratio", lang)
        if not ratio:
            head = t("coefficient", lang)
        cols = [
            t("model_term", lang),
            head,
            t("ci_low", lang, level=level),
            t("ci_high", lang, level=level),
            t("p", lang),
            t("model_flag", lang),
        ]
        problems = {
            "replicates_dropped": t("model_replicates_dropped", lang),
            "fitted_probabilities_0_or_1": t("model_separation", lang),
            "no_degrees_of_freedom": t("model_no_df", lang),
        }
        grid = _Grid(cols)
        est = _ids(est)
        grouped: set[str] = set()
        for coef, row in zip(fit.coefs, est.iter_rows(named=True), strict=True):
            q = self._question(coef.term)
            if q is not None and q.type in ("single", "scale") and coef.level is not None:
                # the levels of a choice question under one row naming it and its reference
                if coef.term not in grouped:
                    grouped.add(coef.term)
                    ref = self._reference(coef.term)
                    head = q.label(lang)
                    if ref is not None:
                        head = t("model_group", lang, question=head, reference=ref)
                    grid.add_row(head)
                label_ = q.choice(coef.level).label(lang) if coef.level in q.codes else coef.level
                r = grid.add_row(label_)
            else:
                r = grid.add_row(self._term_label(coef, fit))
            grid.set(r, cols[1], i18n.number(row["estimate"], lang, 2))
            grid.set(r, cols[2], i18n.number(row["ci_low"], lang, 2))
            grid.set(r, cols[3], i18n.number(row["ci_high"], lang, 2))
            grid.set(r, cols[4], i18n.p_value(row["p_value"], lang))
            flags = [problems[f] for f in row["flags"] or [] if f in problems]
            grid.set(r, cols[5], "; ".join(flags))
            grid.place(row["_id"], r, cols[1], "ratio" if ratio else "coefficient")
        # coefficients left out as collinear (R: NA), each a row with the reason
        full = _model_matrix(self.design, formula)
        kept = set(fit.names)
        for coef in full.coefs:
            if coef.name not in kept:
                r = grid.add_row(self._term_label(coef, fit))
                for c in cols[1:5]:
                    grid.set(r, c, i18n.SUPPRESSED)
                grid.set(r, cols[5], t("model_aliased", lang))
        estimates = grid.located(est.with_columns(pl.lit(f"models[{i}]").alias("model")))
        display, marks = grid.display()
        families = {
            "logit": "family_logistic",
            "identity": "family_linear",
            "log": "family_poisson",
        }
        from volna.models import parse_formula

        asked = parse_formula(spec.formula).response
        q = self._question(asked)
        response = q.label(lang) if q is not None else asked
        if spec.success and q is not None:
            chosen = ", ".join(q.choice(c).label(lang) for c in spec.success)
            response = f"{response} — {chosen}"
        notes = [
            t("model_response", lang, response=response),
            t(
                "model_note",
                lang,
                n=i18n.number(fit.n, lang, 0),
                missing=i18n.number(fit.missing, lang, 0),
                df=i18n.number(fit.design_df, lang, 0),
                family=t(families[fit.family.link], lang),
                method=(
                    t("method_linearization", lang)
                    if not self.design.is_replicate
                    else t(
                        "method_replicates",
                        lang,
                        type=self.design.replicates.type,
                        n=self.design.replicates.n_replicates,
                    )
                ),
            ),
        ]
        title = text_in(spec.label, lang) or spec.formula
        return ReportTable(
            key=f"model:{i}",
            kind="model",
            title=title,
            estimates=estimates,
            display=display,
            marks=marks,
            notes=tuple(notes),
        )

    # ---- waves -------------------------------------------------------------------------

    def _waves_section(self, top: Mapping[str, pl.DataFrame]) -> Section:
        from scipy import stats

        from volna.compare import _two_sided
        from volna.io import read
        from volna.report.banner import adjust_p

        lang = self.lang
        rules = self.rules
        waves = []
        for w in self.config.waves:
            self.step(f"wave {text_in(w.label, lang, w.data.name)}")
            frame = read(w.data, self.qn, unknown_columns="keep")
            frame = self._prepare(frame, self.questions, source=str(w.data))
            _base, design, _diag = self._design(frame, str(w.data))
            answered = self._answered(frame, design.weights > 0)
            est = self._topline_estimates(design, answered, frame)
            waves.append((text_in(w.label, lang, w.data.name), est))
        this = text_in(self.config.wave, lang) or t("wave", lang)
        all_waves = [*waves, (this, top)]
        level = f"{rules.conf_level * 100:g}"
        tables = []
        for item in self.questions:
            if item.kind == "numeric":
                continue
            cols = ["", *[f"{name}, %" for name, _ in all_waves], t("change", lang), t("p", lang)]
            if len(set(cols)) != len(cols):
                cols = [
                    "",
                    *[f"{name} ({k + 1}), %" for k, (name, _) in enumerate(all_waves)],
                    t("change", lang),
                    t("p", lang),
                ]
            grid = _Grid(cols)
            parts = []
            start = 0
            rows_by_wave = []
            for name, est in all_waves:
                framed = _ids(est[item.name].with_columns(pl.lit(name).alias("wave")), start)
                start += framed.height
                parts.append(framed)
                rows_by_wave.append({r["level"]: r for r in framed.iter_rows(named=True)})
            first, last = rows_by_wave[0], rows_by_wave[-1]
            diffs: dict[str, list] = {
                k: []
                for k in (
                    "variable",
                    "level",
                    "estimator",
                    "estimate",
                    "se",
                    "ci_low",
                    "ci_high",
                    "p_value",
                    "shown",
                    "mark",
                )
            }
            crit = float(stats.norm.ppf(1 - (1 - rules.conf_level) / 2))
            levels = [lv for lv in item.levels if lv in last or lv in first]
            for lv in levels:
                a, b = first.get(lv, {}), last.get(lv, {})
                d = (b.get("estimate") or math.nan) - (a.get("estimate") or math.nan)
                se = math.sqrt((a.get("se") or math.nan) ** 2 + (b.get("se") or math.nan) ** 2)
                z = d / se if se > 0 else math.nan
                diffs["variable"].append(item.name)
                diffs["level"].append(lv)
                diffs["estimator"].append("difference between waves")
                diffs["estimate"].append(d)
                diffs["se"].append(se)
                diffs["ci_low"].append(d - crit * se)
                diffs["ci_high"].append(d + crit * se)
                diffs["p_value"].append(
                    float(_two_sided(np.array([z]), np.array([math.inf]))[0])
                    if math.isfinite(z)
                    else math.nan
                )
                shown = bool(a.get("shown")) and bool(b.get("shown"))
                diffs["shown"].append(shown)
                diffs["mark"].append("" if shown else "suppressed")
            dframe = pl.DataFrame(
                diffs,
                schema={
                    "variable": pl.String,
                    "level": pl.String,
                    "estimator": pl.String,
                    "estimate": pl.Float64,
                    "se": pl.Float64,
                    "ci_low": pl.Float64,
                    "ci_high": pl.Float64,
                    "p_value": pl.Float64,
                    "shown": pl.Boolean,
                    "mark": pl.String,
                },
            )
            p_adj = (
                adjust_p(dframe.get_column("p_value").to_numpy(), rules.correction)
                if dframe.height
                else np.zeros(0)
            )
            dframe = dframe.with_columns(pl.Series("p_adjusted", p_adj, dtype=pl.Float64))
            dframe = dframe.with_columns(
                pl.when(
                    pl.col("shown") & (pl.col("p_adjusted") <= rules.alpha) & (pl.col("mark") == "")
                )
                .then(pl.lit("significant"))
                .otherwise(pl.col("mark"))
                .alias("mark")
            )
            dframe = _ids(dframe, start)
            parts.append(dframe)
            labels = self._labels(item)
            for row in dframe.iter_rows(named=True):
                lv = row["level"]
                r = grid.add_row(labels.get(lv, lv))
                for k, rows in enumerate(rows_by_wave):
                    wr = rows.get(lv)
                    if wr is not None:
                        grid.set(r, cols[1 + k], _fmt(wr, "percent", lang), _mark(wr))
                        grid.place(wr["_id"], r, cols[1 + k], "percent")
                grid.set(r, cols[-2], _fmt(row, "points", lang), row["mark"])
                grid.set(
                    r,
                    cols[-1],
                    i18n.p_value(row["p_adjusted"], lang) if row["shown"] else i18n.SUPPRESSED,
                    row["mark"],
                )
                grid.place(row["_id"], r, cols[-2], "points")
            estimates = grid.located(_concat(parts))
            display, marks = grid.display()
            tables.append(
                ReportTable(
                    key=f"wave:{item.name}",
                    kind="wave",
                    title=item.q.label(lang),
                    estimates=estimates,
                    display=display,
                    marks=marks,
                    notes=self._notes(estimates, [t("waves_note", lang, level=level)]),
                )
            )
        names = ", ".join(name for name, _ in all_waves)
        return Section(
            key="waves",
            title=t("waves", lang),
            intro=(t("waves_intro", lang, waves=names),),
            tables=tuple(tables),
        )

    # ---- weighting and methodology -----------------------------------------------------

    @cached_property
    def synthetic(self) -> bool:
        ids = [p.name for p in self.qn.paradata if p.type == "id" and p.name in self.raw.columns]
        if not ids:
            return False
        s = self.raw.get_column(ids[0]).cast(pl.String)
        return (
            s.len() > 0
            and bool(s.drop_nulls().str.starts_with("synthetic-").all())
            and s.null_count() == 0
        )

    def _weighting_section(self) -> Section:
        lang = self.lang
        report = self.diagnostics
        if report is None:
            text = (
                t("unweighted", lang)
                if self.config.weights is None
                else t("base_weights", lang, column=self.config.weights)
            )
            return Section(key="weighting", title=t("weighting", lang), intro=(text,))
        tables = []
        # the weights
        # one row per statistic and moment (before, after): the value in ``estimate``
        w = report.weights.unpivot(
            index="statistic",
            on=["before", "after"],
            variable_name="weights",
            value_name="estimate",
        )
        cols = ["", t("before_weighting", lang), t("after_weighting", lang)]
        column_of = {"before": cols[1], "after": cols[2]}
        grid = _Grid(cols)
        est = _ids(w)
        row_of: dict[str, int] = {}
        for row in est.iter_rows(named=True):
            name = row["statistic"]
            if name not in row_of:
                row_of[name] = grid.add_row(_statistic_name(name, lang))
            col = column_of[row["weights"]]
            grid.set(row_of[name], col, _weight_value(name, row["estimate"], lang))
            unit = "count" if name in _COUNTED else "value"
            grid.place(row["_id"], row_of[name], col, unit)
        display, marks = grid.display()
        tables.append(
            ReportTable(
                key="weighting:weights",
                kind="weighting",
                title=t("weights_table", lang),
                estimates=grid.located(est),
                display=display,
                marks=marks,
            )
        )
        # the margins
        m = report.margins.with_columns(pl.col("after_pct").alias("estimate"))
        if m.height:
            heads = [
                "",
                t("cell", lang),
                t("n", lang),
                t("target_pct", lang),
                t("before_pct", lang),
                t("after_pct", lang),
            ]
            grid = _Grid(heads)
            est = _ids(m)
            for row in est.iter_rows(named=True):
                r = grid.add_row(row["margin"])
                grid.set(r, heads[1], str(row["cell"]))
                grid.set(r, heads[2], i18n.count(row["n"], lang))
                for col, key in (
                    (heads[3], "target_pct"),
                    (heads[4], "before_pct"),
                    (heads[5], "after_pct"),
                ):
                    grid.set(r, col, i18n.number(row[key], lang, 1))
                grid.place(row["_id"], r, heads[5], "value")
            display, marks = grid.display()
            tables.append(
                ReportTable(
                    key="weighting:margins",
                    kind="weighting",
                    title=t("margins_table", lang),
                    estimates=grid.located(est),
                    display=display,
                    marks=marks,
                )
            )
        s = report.steps
        if s.height:
            heads = ["", t("converged", lang), t("iterations", lang), t("max_error", lang)]
            grid = _Grid(heads)
            est = _ids(s)
            for row in est.iter_rows(named=True):
                r = grid.add_row(str(row.get("method", "")))
                grid.set(r, heads[1], t("yes", lang) if row.get("converged") else t("no", lang))
                grid.set(r, heads[2], str(row.get("iterations", "")))
                err = row.get("max_error")
                grid.set(r, heads[3], "" if err is None else f"{err:.1e}")
            display, marks = grid.display()
            tables.append(
                ReportTable(
                    key="weighting:steps",
                    kind="weighting",
                    title=t("steps_table", lang),
                    estimates=grid.located(est),
                    display=display,
                    marks=marks,
                    notes=tuple(report.notes),
                )
            )
        return Section(
            key="weighting",
            title=t("weighting", lang),
            intro=(t("weights_intro", lang),),
            tables=tuple(tables),
        )

    def _methodology_section(self) -> Section:
        lang = self.lang
        study = self.config.study
        n = self.raw.height
        design = self.design
        missing = t("not_stated", lang)
        w = design.weights
        deff = float(len(w) * np.dot(w, w) / w.sum() ** 2) if w.sum() > 0 else math.nan
        ess = float(w.sum() ** 2 / np.dot(w, w)) if w.sum() > 0 else math.nan
        self.deff, self.ess = deff, ess
        if study.fieldwork_start or study.fieldwork_end:
            dates = t(
                "dates", lang, start=study.fieldwork_start or "?", end=study.fieldwork_end or "?"
            )
        else:
            dates = missing
        weighting = self._weighting_text()
        variance = self._variance_text()
        level = f"{self.rules.conf_level * 100:g}"
        from volna.disclosure import ci_method_name

        items = [
            ("sponsor", text_in(study.sponsor, lang, missing)),
            ("conducted_by", text_in(study.conducted_by, lang, missing)),
            ("population", text_in(study.population, lang, missing)),
            ("sample", text_in(study.sample, lang, missing)),
            ("mode", text_in(study.mode, lang, missing)),
            ("fieldwork", dates),
            (
                "questionnaire",
                t(
                    "questionnaire_text",
                    lang,
                    questions=len(self.questions),
                    languages=", ".join(self.qn.languages),
                ),
            ),
            ("respondents", i18n.count(n, lang)),
            ("weighting_item", weighting),
            ("design_effect", i18n.number(deff, lang, 2)),
            ("effective_n", i18n.count(ess, lang)),
            ("variance", variance),
            (
                "intervals",
                t("intervals_text", lang, level=level, method=ci_method_name(self.rules.ci, lang)),
            ),
            (
                "tests",
                t(
                    "tests_text",
                    lang,
                    alpha=i18n.number(self.rules.alpha, lang, 2),
                    correction=_correction(self.rules.correction, lang),
                ),
            ),
            ("rules_item", " ".join(rules_text(self.rules, lang)[:3])),
            ("limitations", text_in(study.limitations, lang, missing)),
            ("data", t("synthetic_notice", lang) if self.synthetic else t("real_data", lang)),
        ]
        grid = _Grid(["", t("value", lang)])
        values = {"respondents": float(n), "design_effect": deff, "effective_n": ess}
        est_rows: dict[str, list] = {"variable": [], "estimate": [], "_id": []}
        for key, text in items:
            r = grid.add_row(t(key, lang))
            grid.set(r, t("value", lang), text)
            if key in values:
                est_rows["variable"].append(key)
                est_rows["estimate"].append(values[key])
                est_rows["_id"].append(len(est_rows["_id"]))
                grid.place(
                    est_rows["_id"][-1],
                    r,
                    t("value", lang),
                    "count" if key != "design_effect" else "value",
                )
        est = pl.DataFrame(
            est_rows, schema={"variable": pl.String, "estimate": pl.Float64, "_id": pl.Int64}
        )
        display, marks = grid.display()
        table = ReportTable(
            key="methodology:disclosure",
            kind="methodology",
            title=t("disclosure_table", lang),
            estimates=grid.located(est),
            display=display,
            marks=marks,
        )
        self.facts = [
            (t("respondents", lang), i18n.count(n, lang)),
            (t("fieldwork", lang), dates),
            (t("design_effect", lang), i18n.number(deff, lang, 2)),
            (t("effective_n", lang), i18n.count(ess, lang)),
        ]
        if self.diagnostics is not None:
            self.facts.append(
                (t("weighting_item", lang), ", ".join(m.title for m in self.margins_used))
            )
        intro = [t("respondents_text", lang, n=i18n.count(n, lang)), weighting, variance]
        return Section(
            key="methodology", title=t("methodology", lang), intro=tuple(intro), tables=(table,)
        )

    def _weighting_text(self) -> str:
        lang = self.lang
        wc = self.config.weighting
        parts = []
        if self.config.weights is not None:
            parts.append(t("base_weights", lang, column=self.config.weights))
        if wc is None:
            if not parts:
                parts.append(t("unweighted", lang))
            return " ".join(parts)
        names = []
        for m in self.margins_used:
            publisher = (m.source or {}).get("publisher") or (m.source or {}).get("title") or "?"
            illustrative = f"; {t('illustrative', lang)}" if m.illustrative else ""
            names.append(
                t(
                    "margin_source",
                    lang,
                    name=m.title,
                    publisher=publisher,
                    date=m.reference_date,
                    illustrative=illustrative,
                )
            )
        key = "raked" if wc.method == "rake" else "poststratified"
        parts.append(t(key, lang, margins="; ".join(names)))
        if wc.trim_upper is not None:
            parts.append(t("trimmed", lang, times=i18n.number(wc.trim_upper, lang, 1)))
        rep = self.diagnostics
        if rep is not None:
            deff = rep.design_effect["after"]
            ess = rep.effective_n["after"]
            parts.append(
                t(
                    "deff_text",
                    lang,
                    deff=i18n.number(deff, lang, 2),
                    ess=i18n.count(ess, lang),
                    n=i18n.count(rep.n, lang),
                )
            )
        return " ".join(parts)

    def _variance_text(self) -> str:
        lang = self.lang
        config = self.config
        if self.design.replicates is not None:
            rep = self.design.replicates
            return t(
                "variance_text_replicates",
                lang,
                count=rep.n_replicates,
                type=rep.type,
                df=i18n.number(self.design.degf, lang, 0),
            )
        strata = t("strata_text", lang, strata=config.strata) if config.strata else ""
        if config.clusters:
            psus = self.design.stages[0].n_unit_total if self.design.stages else 0
            return t(
                "variance_text_clusters",
                lang,
                clusters=config.clusters,
                psus=psus,
                strata=strata,
                df=i18n.number(self.design.degf, lang, 0),
            )
        return t("variance_text", lang, strata=strata)

    def _meta(self) -> dict:
        import volna

        return {
            "generator": f"volna {volna.__version__}",
            "questionnaire": self.qn.id,
            "questionnaire_version": self.qn.version,
            "config": self.config.source,
            "lang": self.lang,
            "respondents": self.raw.height,
            "rules": {
                "min_n": self.rules.min_n,
                "nchs": self.rules.nchs,
                "group_disclosure": self.rules.group_disclosure,
                "group_k": self.rules.group_k,
                "alpha": self.rules.alpha,
                "correction": self.rules.correction,
                "ci": self.rules.ci,
                "conf_level": self.rules.conf_level,
            },
            "design_degf": self.design.degf,
        }


# ---------------------------------------------------------------------------------------
# small helpers


def _label_and_choice(question: str, choice: str) -> str:
    """A question's label and one of its choices: "Sector: IT", "Which field? — IT".

    >>> _label_and_choice("In which field did you work?", "IT")
    'In which field did you work? — IT'
    """
    return f"{question} — {choice}" if question.rstrip()[-1:] in "?:." else f"{question}: {choice}"


def _has_flag(frame: pl.DataFrame, flag: str) -> bool:
    if "flags" not in frame.columns or frame.height == 0:
        return False
    return bool(frame.select(pl.col("flags").list.contains(flag).any()).item())


def _with_chart(table: ReportTable, chart: Chart) -> ReportTable:
    from dataclasses import replace

    return replace(table, chart=chart)


def _correction(correction: str, lang: str) -> str:
    from volna.disclosure import correction_name

    return correction_name(correction, lang)


def _period(q: Question, lang: str, default: str) -> str:
    words = {
        "before": {"ru": "До", "en": "Before"},
        "after": {"ru": "После", "en": "After"},
    }
    key = q.period if q.period in words else default
    return words[key]["ru" if lang == "ru" else "en"]


_STAT_RU = {
    "respondents": "респондентов",
    "sum": "сумма",
    "mean": "среднее",
    "minimum": "минимум",
    "maximum": "максимум",
    "coefficient of variation": "коэффициент вариации",
    "maximum / minimum": "максимум / минимум",
    "Kish design effect": "эффект дизайна (Киш)",
    "effective sample size": "эффективный размер выборки",
}


def _statistic_name(name: str, lang: str) -> str:
    if lang == "ru":
        return _STAT_RU.get(name, name)
    return name


_COUNTED = ("respondents", "sum", "effective sample size")


def _weight_value(statistic: str, value: float | None, lang: str) -> str:
    if statistic in _COUNTED:
        return i18n.count(value, lang)
    return i18n.number(value, lang, 2)
