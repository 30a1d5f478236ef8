"""Weighting diagnostics: what weighting did to the weights and to the sample's make-up.

:func:`diagnose` reads a weighted design and reports, before and after weighting:

* the spread of the weights (quantiles, coefficient of variation, largest / smallest),
  Kish's design effect due to weighting ``n sum(w^2) / sum(w)^2`` and the effective
  sample size ``sum(w)^2 / sum(w^2)``;
* how much of the total weight the respondents with the largest weights carry;
* every margin cell: the weighted share against the target share, the difference in
  percentage points and the absolute standardized mean difference (ASMD)
  ``|share - target| / sqrt(target (1 - target))`` of the cell's indicator;
* auxiliary variables: the same against known totals, or how far weighting moved them;
* the weighting steps: method, convergence, iterations, largest margin error.

The weights before weighting are those the first weighting step started from (the
sampling weights); a design never weighted is reported with the same weights twice.

>>> import polars as pl
>>> from volna.design import SurveyDesign
>>> frame = pl.DataFrame({"sex": ["f", "m", "m", "m"]})
>>> weighted = SurveyDesign.from_frame(frame).rake({"sex": {"f": 50, "m": 50}})
>>> report = diagnose(weighted)
>>> round(report.design_effect["after"], 4), round(report.effective_n["after"], 2)
(1.3333, 3.0)
>>> report.margins.select("cell", "target_pct", "before_pct", "after_pct").rows()
[('f', 50.0, 25.0, 50.0), ('m', 50.0, 75.0, 50.0)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from volna.margins import Margin
from volna.weighting import WeightingError

if TYPE_CHECKING:
    from volna.design import SurveyDesign

#: the quantiles of the weights reported, as fractions
QUANTILES = (0.01, 0.05, 0.25, 0.50, 0.75, 0.95, 0.99)


@dataclass(frozen=True, eq=False)
class WeightingReport:
    """What weighting did, as tables (polars) and as text or markdown.

    ``weights``: one row per statistic of the weights, ``before`` and ``after``.
    ``largest``: the share of the total weight carried by the top respondents.
    ``margins``: one row per margin cell, shares in percent, differences in points.
    ``auxiliaries``: auxiliary variables against known totals, or how far they moved.
    ``steps``: the weighting steps. ``estimates``: proportions before and after weighting
    (when asked with ``compare=``); ``before`` names what "before" means there
    ("unweighted", or "sampling weights" when those differ). ``notes``: what the steps
    said.
    """

    n: int
    weights: pl.DataFrame
    largest: pl.DataFrame
    margins: pl.DataFrame
    auxiliaries: pl.DataFrame
    steps: pl.DataFrame
    estimates: pl.DataFrame
    notes: tuple[str, ...] = ()
    before: str = "unweighted"

    # ---- reading ---------------------------------------------------------------------

    def statistic(self, name: str) -> dict[str, float]:
        """One row of the weights table as ``{"before": x, "after": y}``."""
        row = self.weights.filter(pl.col("statistic") == name)
        if row.height != 1:
            raise KeyError(f"no weight statistic {name!r}; see report.weights")
        return {"before": row["before"][0], "after": row["after"][0]}

    @property
    def design_effect(self) -> dict[str, float]:
        """Kish's design effect due to weighting, ``n sum(w^2) / sum(w)^2``."""
        return self.statistic("Kish design effect")

    @property
    def effective_n(self) -> dict[str, float]:
        """Effective sample size, ``sum(w)^2 / sum(w^2)`` (``n`` / design effect)."""
        return self.statistic("effective sample size")

    # ---- output ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain Python data (JSON-ready: NaN and infinity become ``None``)."""

        def rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
            return [{k: _plain(v) for k, v in r.items()} for r in frame.to_dicts()]

        return {
            "respondents": self.n,
            "steps": rows(self.steps),
            "weights": rows(self.weights),
            "largest": rows(self.largest),
            "margins": rows(self.margins),
            "auxiliaries": rows(self.auxiliaries),
            "estimates": rows(self.estimates),
            "notes": list(self.notes),
        }

    def to_text(self, sections: Sequence[str] | None = None) -> str:
        """The report as plain text for a terminal.

        ``sections`` picks some of: steps, weights, largest, margins, auxiliaries,
        estimates (default: all that have rows).
        """
        return _text(_blocks(self, sections))

    def to_markdown(self, sections: Sequence[str] | None = None) -> str:
        """The report as markdown: a heading and a table per section."""
        return _markdown(_blocks(self, sections))

    def __repr__(self) -> str:
        return self.to_text()


# ---------------------------------------------------------------------------------------
# the computations


def diagnose(
    design: SurveyDesign,
    margins: Margin | Sequence[Margin] | Mapping | None = None,
    auxiliaries: Sequence[str] | Mapping[str, Any] | None = None,
    top: Sequence[float] = (0.01, 0.05),
    *,
    collapse: Mapping[str, Mapping[str, str]] | None = None,
    compare: Sequence[str] = (),
    unweighted: SurveyDesign | None = None,
) -> WeightingReport:
    """Diagnose the weights of a weighted design against its margins.

    Parameters
    ----------
    design:
        a design after :meth:`~volna.design.SurveyDesign.rake` (or any weighting).
    margins:
        the margins to check; by default those the weighting steps used. Margins the
        weighting did not use (benchmarks held out) can be checked too. Respondents
        without a value, or with an excluded code, are outside a margin's shares.
    auxiliaries:
        variables that are not margins: ``{variable: {level: count}}``, or calibration
        totals as :func:`~volna.weighting.calibrate` takes them (``"(Intercept)"``,
        ``"var=level"``, ``"var"`` for a numeric total), are checked against those
        totals; a list of names reports only how far weighting moved them. By default
        the auxiliaries of calibration steps, without totals.
    top:
        fractions of respondents: the share of the total weight the top ones carry.
    collapse:
        ``{variable: {level: into}}`` as given to the weighting (levels merged).
    compare:
        variables (``"var"``, or ``"var=level"`` for one level) whose proportions are
        estimated before and after weighting (the ``estimates`` table).
    unweighted:
        the design before weighting, for ``compare``; by default the design with the
        weights before weighting (linearization designs only).

    The weight statistics are computed on numpy arrays in a few passes (one sort per
    set of weights); a margin costs one mapping of the rows onto its cells.

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> frame = pl.DataFrame({"g": ["a", "a", "b", "b", "b"], "w": [1.0, 1, 1, 1, 6]})
    >>> r = diagnose(SurveyDesign.from_frame(frame, weights="w"), {"g": {"a": 1, "b": 1}})
    >>> r.margins.select("cell", "before_pct", pl.col("asmd_before").round(6)).rows()
    [('a', 20.0, 0.6), ('b', 80.0, 0.6)]
    >>> r.largest.select("respondents", "share_before").rows()  # 1 of 5 carries 6 of 10
    [(1, 0.6), (1, 0.6)]
    """
    rows = _rows(design)
    after = np.asarray(design.weights, dtype=float)
    before = after
    if design.weighting and design.weighting[0].weights_before is not None:
        before = np.asarray(design.weighting[0].weights_before, dtype=float)
    margins = _step_margins(design) if margins is None else Margin.coerce(margins)
    collapse = collapse if collapse is not None else _step_collapse(design)
    if auxiliaries is None:
        auxiliaries = _step_auxiliaries(design)
    b, a = before[rows], after[rows]
    data = design.data if rows.all() else design.data.filter(pl.Series(rows))
    notes = tuple(n for step in design.weighting for n in step.notes)
    estimates = _empty_estimates()
    if compare:
        if unweighted is None:
            unweighted = unweighted_design(design)
        estimates = compare_proportions(unweighted, design, compare)
    w0 = unweighted.weights if unweighted is not None else before
    label = "unweighted" if len(w0) == 0 or np.ptp(w0) == 0 else "sampling weights"
    return WeightingReport(
        n=len(b),
        weights=weight_summary(b, a),
        largest=largest_weights(b, a, top),
        margins=margin_balance(data, margins, b, a, collapse),
        auxiliaries=auxiliary_balance(design, auxiliaries, rows, b, a),
        steps=_steps(design),
        estimates=estimates,
        notes=notes,
        before=label,
    )


def kish(weights: np.ndarray) -> tuple[float, float]:
    """Kish's design effect due to weighting and the effective sample size.

    >>> deff, ess = kish(np.array([1.0, 1.0, 2.0]))  # 3 * 6 / 4^2, 4^2 / 6
    >>> round(deff, 4), round(ess, 4)
    (1.125, 2.6667)
    """
    w = np.asarray(weights, dtype=float)
    s, s2 = float(w.sum()), float(np.dot(w, w))
    if s <= 0 or s2 <= 0:
        return math.nan, math.nan
    return len(w) * s2 / (s * s), s * s / s2


def weight_summary(before: np.ndarray, after: np.ndarray) -> pl.DataFrame:
    """The weights before and after: size, spread, quantiles, design effect.

    Quantiles are R's default (type 7, linear interpolation). The coefficient of
    variation uses the population standard deviation, so that Kish's design effect is
    ``1 + cv^2``.

    >>> t = weight_summary(np.array([1.0, 1, 1, 1]), np.array([1.0, 1, 1, 5]))
    >>> dict(t.select("statistic", "after").rows())["Kish design effect"]
    1.75
    """
    return pl.DataFrame(
        {
            "statistic": _STATISTICS,
            "before": _weight_statistics(before),
            "after": _weight_statistics(after),
        },
        schema={"statistic": pl.String, "before": pl.Float64, "after": pl.Float64},
    )


_STATISTICS = [
    "respondents",
    "sum",
    "mean",
    "minimum",
    *[f"{round(q * 100)}%" for q in QUANTILES],
    "maximum",
    "coefficient of variation",
    "maximum / minimum",
    "Kish design effect",
    "effective sample size",
]


def _weight_statistics(w: np.ndarray) -> list[float]:
    n = len(w)
    if n == 0:
        return [0.0] + [math.nan] * (len(_STATISTICS) - 1)
    total = float(w.sum())
    mean = total / n
    lo, hi = float(w.min()), float(w.max())
    quantiles = np.quantile(w, QUANTILES).tolist()
    cv = float(w.std()) / mean if mean > 0 else math.nan
    ratio = hi / lo if lo > 0 else math.inf
    deff, ess = kish(w)
    return [float(n), total, mean, lo, *quantiles, hi, cv, ratio, deff, ess]


def largest_weights(
    before: np.ndarray, after: np.ndarray, top: Sequence[float] = (0.01, 0.05)
) -> pl.DataFrame:
    """The share of the total weight carried by the top 1%, 5%... of respondents.

    The top ``p`` are the ``ceil(p n)`` respondents with the largest weights (at least
    one), ranked separately before and after weighting.

    >>> t = largest_weights(np.ones(200), np.r_[np.ones(198), 51.0, 51.0])
    >>> t.with_columns(pl.col("share_after").round(4)).rows()  # 102 and 110 of 300
    [('1%', 2, 0.01, 0.34), ('5%', 10, 0.05, 0.3667)]
    """
    n = len(after)
    cum_b = np.cumsum(np.sort(before)[::-1])
    cum_a = np.cumsum(np.sort(after)[::-1])
    out: dict[str, list] = {"top": [], "respondents": [], "share_before": [], "share_after": []}
    for p in top:
        if not 0 < p <= 1:
            raise WeightingError(f"top={p!r}: expected fractions of respondents in (0, 1]")
        k = min(n, max(1, math.ceil(p * n - 1e-9)))
        out["top"].append(f"{p * 100:g}%")
        out["respondents"].append(k)
        out["share_before"].append(_share(cum_b, k))
        out["share_after"].append(_share(cum_a, k))
    return pl.DataFrame(
        out,
        schema={
            "top": pl.String,
            "respondents": pl.Int64,
            "share_before": pl.Float64,
            "share_after": pl.Float64,
        },
    )


def _share(cumulative: np.ndarray, k: int) -> float:
    if len(cumulative) == 0 or cumulative[-1] <= 0:
        return math.nan
    return float(cumulative[k - 1] / cumulative[-1])


_MARGIN_SCHEMA = {
    "margin": pl.String,
    "cell": pl.String,
    "n": pl.Int64,
    "target_pct": pl.Float64,
    "before_pct": pl.Float64,
    "after_pct": pl.Float64,
    "diff_before_pp": pl.Float64,
    "diff_after_pp": pl.Float64,
    "asmd_before": pl.Float64,
    "asmd_after": pl.Float64,
}


def margin_balance(
    data: pl.DataFrame,
    margins: Sequence[Margin],
    before: np.ndarray,
    after: np.ndarray,
    collapse: Mapping[str, Mapping[str, str]] | None = None,
) -> pl.DataFrame:
    """Every margin cell: weighted share before and after against the target share.

    Shares are of the respondents inside the margin (a value, not an excluded code), in
    percent; ``diff_*_pp`` is share minus target in percentage points; ``asmd_*`` is
    ``|share - target| / sqrt(target (1 - target))`` with shares as fractions (null for
    a target of 0 or 100%).

    >>> frame = pl.DataFrame({"g": ["a", "b", "b", "b"]})
    >>> t = margin_balance(frame, Margin.coerce({"g": {"a": 1, "b": 1}}),
    ...                    np.ones(4), np.array([3.0, 1, 1, 1]))
    >>> t.select("cell", "before_pct", "diff_before_pp", "asmd_after").rows()
    [('a', 25.0, -25.0, 0.0), ('b', 75.0, 25.0, 0.0)]
    """
    parts = []
    for m in margins:
        cells = m.cells(data, missing="exclude", collapse=collapse)
        inside = cells.codes >= 0
        codes = cells.codes[inside]
        k = cells.n_cells
        target = cells.targets / cells.targets.sum()
        share_b = _shares(codes, before[inside], k)
        share_a = _shares(codes, after[inside], k)
        with np.errstate(divide="ignore", invalid="ignore"):
            sd = np.sqrt(target * (1 - target))
            asmd_b = np.where(sd > 0, np.abs(share_b - target) / sd, np.nan)
            asmd_a = np.where(sd > 0, np.abs(share_a - target) / sd, np.nan)
        parts.append(
            pl.DataFrame(
                {
                    "margin": [m.title] * k,
                    "cell": ["/".join(c) for c in cells.labels],
                    "n": np.bincount(codes, minlength=k).astype(np.int64),
                    "target_pct": target * 100,
                    "before_pct": share_b * 100,
                    "after_pct": share_a * 100,
                    "diff_before_pp": (share_b - target) * 100,
                    "diff_after_pp": (share_a - target) * 100,
                    "asmd_before": asmd_b,
                    "asmd_after": asmd_a,
                },
                schema=_MARGIN_SCHEMA,
            ).fill_nan(None)
        )
    if not parts:
        return pl.DataFrame(schema=_MARGIN_SCHEMA)
    return pl.concat(parts)


def _shares(codes: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    totals = np.bincount(codes, weights=weights, minlength=k)
    s = totals.sum()
    return totals / s if s > 0 else np.full(k, np.nan)


_AUX_SCHEMA = {
    "variable": pl.String,
    "level": pl.String,
    "statistic": pl.String,
    "n": pl.Int64,
    "target": pl.Float64,
    "before": pl.Float64,
    "after": pl.Float64,
    "asmd_before": pl.Float64,
    "asmd_after": pl.Float64,
    "shift": pl.Float64,
}


def auxiliary_balance(
    design: SurveyDesign,
    auxiliaries: Sequence[str] | Mapping[str, Any],
    rows: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
) -> pl.DataFrame:
    """Auxiliary variables before and after weighting, against totals where known.

    A categorical variable gives a row per level (weighted share in percent), a numeric
    one a row with its weighted mean. ``shift`` is how far weighting moved it, in
    standard deviations before weighting; ``asmd_*`` compare with the target.

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> d = SurveyDesign.from_frame(pl.DataFrame({"x": [1.0, 3.0]}))
    >>> t = auxiliary_balance(d, {"(Intercept)": 2, "x": 6}, np.ones(2, bool),
    ...                       np.ones(2), np.array([0.5, 1.5]))
    >>> t.select("target", "before", "after", "asmd_before", "asmd_after", "shift").row(0)
    (3.0, 2.0, 2.5, 1.0, 0.5, 0.5)
    """
    if isinstance(auxiliaries, str):
        auxiliaries = [auxiliaries]
    totals: dict[str, Any] = {}
    if isinstance(auxiliaries, Mapping):
        totals = {str(k): v for k, v in auxiliaries.items()}
        names = list(
            dict.fromkeys(
                k.split("=", 1)[0] for k in totals if k != "(Intercept)" and not k.startswith("=")
            )
        )
    else:
        names = list(auxiliaries)
    population = float(totals["(Intercept)"]) if "(Intercept)" in totals else None
    out: dict[str, list] = {k: [] for k in _AUX_SCHEMA}

    def add(var, level, stat, n, target, b, a, sd_target, sd_before):
        out["variable"].append(var)
        out["level"].append(level)
        out["statistic"].append(stat)
        out["n"].append(n)
        out["target"].append(target)
        out["before"].append(b)
        out["after"].append(a)
        scale = 100.0 if stat == "share %" else 1.0
        for key, value in (("asmd_before", b), ("asmd_after", a)):
            ok = target is not None and sd_target and sd_target > 0
            out[key].append(abs(value - target) / scale / sd_target if ok else None)
        out["shift"].append(abs(a - b) / scale / sd_before if sd_before else None)

    for var in names:
        column = design.column(var)
        known = ~column.missing[rows]
        wb, wa = before[known], after[known]
        if column.kind == "numeric":
            x = column.values[rows][known]
            mb, ma = _wmean(x, wb), _wmean(x, wa)
            sd_b = math.sqrt(_wmean((x - mb) ** 2, wb)) if len(x) else math.nan
            target = None
            if var in totals and not isinstance(totals[var], Mapping):
                size = population if population is not None else float(after.sum())
                target = float(totals[var]) / size
            add(var, None, "mean", int(known.sum()), target, mb, ma, sd_b, sd_b)
            continue
        codes = column.codes[rows][known]
        levels = [_label(v) for v in column.levels]
        k = len(levels)
        share_b = _shares(codes, wb, k)
        share_a = _shares(codes, wa, k)
        counts = np.bincount(codes, minlength=k)
        level_totals = _level_totals(var, totals)
        size = sum(level_totals.values()) if level_totals else None
        if population is not None and level_totals and not isinstance(totals.get(var), Mapping):
            size = population
        for j, level in enumerate(levels):
            target = None
            if level_totals:
                target = level_totals.get(level, 0.0) / size if size else None
            p = target if target is not None else None
            sd_t = math.sqrt(p * (1 - p)) if p is not None else None
            sd_b = math.sqrt(share_b[j] * (1 - share_b[j]))
            add(
                var,
                level,
                "share %",
                int(counts[j]),
                None if target is None else target * 100,
                share_b[j] * 100,
                share_a[j] * 100,
                sd_t,
                sd_b,
            )
    return pl.DataFrame(out, schema=_AUX_SCHEMA).fill_nan(None)


def _level_totals(var: str, totals: Mapping[str, Any]) -> dict[str, float]:
    if isinstance(totals.get(var), Mapping):
        return {str(k): float(v) for k, v in totals[var].items()}
    prefix = f"{var}="
    return {k[len(prefix) :]: float(v) for k, v in totals.items() if k.startswith(prefix)}


def _wmean(x: np.ndarray, w: np.ndarray) -> float:
    s = w.sum()
    return float(np.dot(x, w) / s) if s > 0 else math.nan


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ---------------------------------------------------------------------------------------
# estimates before and after weighting


_ESTIMATE_SCHEMA = {
    "variable": pl.String,
    "level": pl.String,
    "n": pl.Int64,
    "before_pct": pl.Float64,
    "after_pct": pl.Float64,
    "change_pp": pl.Float64,
    "ci_low_pct": pl.Float64,
    "ci_high_pct": pl.Float64,
}


def _empty_estimates() -> pl.DataFrame:
    return pl.DataFrame(schema=_ESTIMATE_SCHEMA)


def unweighted_design(design: SurveyDesign) -> SurveyDesign:
    """The design with the weights it had before weighting (linearization designs).

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> d = SurveyDesign.from_frame(pl.DataFrame({"g": ["a", "b", "b"]}))
    >>> unweighted_design(d.rake({"g": {"a": 5, "b": 5}})).weights.tolist()
    [1.0, 1.0, 1.0]
    """
    if not design.weighting:
        return design
    if design.replicates is not None:
        raise WeightingError(
            "a replicate design cannot be unweighted after the fact (its replicate weights "
            "were recalibrated); pass unweighted= the design before weighting"
        )
    return replace(
        design,
        weights=np.asarray(design.weighting[0].weights_before, dtype=float),
        calibrations=(),
        weighting=(),
        _cache={},
    )


def compare_proportions(
    unweighted: SurveyDesign, weighted: SurveyDesign, variables: Sequence[str]
) -> pl.DataFrame:
    """Proportions of each level before and after weighting: what weighting changed.

    ``variables`` are names (every level) or ``"name=level"`` (one level). Shares are in
    percent; the confidence interval is the weighted estimate's.

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> d = SurveyDesign.from_frame(pl.DataFrame({"g": ["a", "a", "a", "b"]}))
    >>> t = compare_proportions(d, d.rake({"g": {"a": 1, "b": 1}}), ["g=b"])
    >>> t.select("level", "before_pct", "after_pct", "change_pp").rows()
    [('b', 25.0, 50.0, 25.0)]
    """
    if isinstance(variables, str):
        variables = [v.strip() for v in variables.split(",") if v.strip()]
    wanted: dict[str, list[str] | None] = {}
    for item in variables:
        var, _, level = item.partition("=")
        if not level:
            wanted[var] = None
        elif wanted.get(var, []) is not None:
            wanted.setdefault(var, []).append(level)
    parts = []
    for var, levels in wanted.items():
        before = unweighted.proportion(var).to_polars()
        after = weighted.proportion(var).to_polars()
        if levels is not None:
            have = before["level"].to_list()
            for level in levels:
                if level not in have:
                    raise WeightingError(
                        f"compare {var}={level}: {var} has no level {level} in the data "
                        f"(levels: {', '.join(str(h) for h in have[:20])})"
                    )
            order = pl.DataFrame({"level": list(dict.fromkeys(levels))})
            before = order.join(before, on="level", how="left", maintain_order="left")
            after = after.filter(pl.col("level").is_in(levels))
        joined = before.select(
            "variable", "level", "n", (pl.col("estimate") * 100).alias("before_pct")
        ).join(
            after.select(
                "variable",
                "level",
                (pl.col("estimate") * 100).alias("after_pct"),
                (pl.col("ci_low") * 100).alias("ci_low_pct"),
                (pl.col("ci_high") * 100).alias("ci_high_pct"),
            ),
            on=["variable", "level"],
            how="left",
            maintain_order="left",
        )
        parts.append(
            joined.with_columns(
                (pl.col("after_pct") - pl.col("before_pct")).alias("change_pp")
            ).select(list(_ESTIMATE_SCHEMA))
        )
    if not parts:
        return _empty_estimates()
    return pl.concat(parts).cast(_ESTIMATE_SCHEMA)


# ---------------------------------------------------------------------------------------
# what the design says about its weighting


def _rows(design: SurveyDesign) -> np.ndarray:
    if design.restriction is None:
        return np.ones(design.data.height, dtype=bool)
    return np.asarray(design.restriction, dtype=bool)


def _step_margins(design: SurveyDesign) -> list[Margin]:
    seen: dict[str, Margin] = {}
    for step in design.weighting:
        for m in step.margins:
            seen.setdefault(m.title, m)
    return list(seen.values())


def _step_collapse(design: SurveyDesign) -> dict | None:
    for step in reversed(design.weighting):
        if step.options.get("collapse"):
            return step.options["collapse"]
    return None


def _step_auxiliaries(design: SurveyDesign) -> list[str]:
    names: list[str] = []
    for step in design.weighting:
        for var in step.options.get("auxiliaries") or ():
            if var not in names:
                names.append(var)
    return names


def _steps(design: SurveyDesign) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "step": list(range(1, len(design.weighting) + 1)),
            "method": [s.method for s in design.weighting],
            "margins": [", ".join(m.title for m in s.margins) for s in design.weighting],
            "converged": [s.converged for s in design.weighting],
            "iterations": [s.iterations for s in design.weighting],
            "max_error": [float(s.max_error) for s in design.weighting],
            "errors": [
                [{"margin": k, "error": float(v)} for k, v in s.errors.items()]
                for s in design.weighting
            ],
        },
        schema={
            "step": pl.Int64,
            "method": pl.String,
            "margins": pl.String,
            "converged": pl.Boolean,
            "iterations": pl.Int64,
            "max_error": pl.Float64,
            "errors": pl.List(pl.Struct({"margin": pl.String, "error": pl.Float64})),
        },
    )


# ---------------------------------------------------------------------------------------
# text and markdown: the report as blocks (heading, line, table), rendered either way


def _plain(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _fixed(x: Any, digits: int = 1) -> str:
    """``x`` with ``digits`` decimals and thousands separated; '-' for none."""
    if _missing(x):
        return "-"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:,.{digits}f}"


def _signed(x: Any, digits: int = 1) -> str:
    if _missing(x):
        return "-"
    if abs(x) < 0.5 * 10**-digits:
        return f"{0:.{digits}f}"
    return f"{x:+.{digits}f}"


def _pct(x: Any) -> str:
    return "-" if _missing(x) else f"{x * 100:.1f}%"


#: decimals of each weight statistic in text
_DIGITS = {
    "respondents": 0,
    "coefficient of variation": 3,
    "maximum / minimum": 1,
    "Kish design effect": 3,
    "effective sample size": 1,
}


SECTIONS = ("steps", "weights", "largest", "margins", "auxiliaries", "estimates")


def _blocks(report: WeightingReport, sections: Sequence[str] | None = None) -> list[tuple]:
    """The report as ("h", title), ("p", text), ("t", headers, rows, left) blocks."""
    if sections is None:
        sections = SECTIONS
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise WeightingError(f"no report section {unknown[0]!r}; expected {', '.join(SECTIONS)}")
    out: list[tuple] = []
    if "steps" in sections:
        out.extend(_steps_blocks(report))
    if "weights" in sections:
        out.extend(_weights_blocks(report))
    if "largest" in sections:
        out.extend(_largest_blocks(report))
    if "margins" in sections and report.margins.height:
        out.extend(_margin_blocks(report))
    if "auxiliaries" in sections and report.auxiliaries.height:
        out.extend(_auxiliary_blocks(report))
    if "estimates" in sections and report.estimates.height:
        out.extend(_estimate_blocks(report))
    return out


def _steps_blocks(report: WeightingReport) -> list[tuple]:
    out: list[tuple] = [("h", f"Weighting report: {report.n:,} respondents")]
    out.append(("h", "Steps"))
    if report.steps.height:
        for s in report.steps.iter_rows(named=True):
            state = "converged" if s["converged"] else "NOT converged"
            to = f" to {s['margins']}" if s["margins"] else ""
            out.append(
                (
                    "p",
                    f"{s['step']}. {s['method']}{to}: {state} after {s['iterations']} "
                    f"iteration(s), largest margin error {s['max_error']:.1e}",
                )
            )
            if len(s["errors"]) > 1:
                out.extend(("p", f"   {e['margin']}: error {e['error']:.1e}") for e in s["errors"])
        out.extend(("p", f"note: {n}") for n in report.notes)
    else:
        out.append(("p", "The design has no weighting steps: before and after are the same."))
    return out


def _weights_blocks(report: WeightingReport) -> list[tuple]:
    out: list[tuple] = [("h", "Weights")]
    rows = [
        [s, _fixed(b, _DIGITS.get(s, 2)), _fixed(a, _DIGITS.get(s, 2))]
        for s, b, a in report.weights.iter_rows()
    ]
    out.append(("t", ["", "before", "after"], rows, 1))
    return out


def _largest_blocks(report: WeightingReport) -> list[tuple]:
    out: list[tuple] = [("h", "Largest weights: share of the total weight they carry")]
    rows = [
        [f"top {t} ({k:,} respondent{'s' if k != 1 else ''})", _pct(b), _pct(a)]
        for t, k, b, a in report.largest.iter_rows()
    ]
    out.append(("t", ["", "before", "after"], rows, 1))
    return out


def _margin_blocks(report: WeightingReport) -> list[tuple]:
    out: list[tuple] = [("h", "Margins: weighted share against the target")]
    out.append(
        (
            "p",
            "Shares in %, differences in percentage points; "
            "ASMD = |share - target| / sqrt(target (1 - target)).",
        )
    )
    headers = ["cell", "n", "target", "before", "after", "diff before", "diff after"]
    headers += ["ASMD before", "ASMD after"]
    rows = []
    for margin, part in report.margins.group_by("margin", maintain_order=True):
        rows.append([margin[0]] + [""] * (len(headers) - 1))
        rows.extend(
            [
                f"  {r['cell']}",
                f"{r['n']:,}",
                _fixed(r["target_pct"]),
                _fixed(r["before_pct"]),
                _fixed(r["after_pct"]),
                _signed(r["diff_before_pp"]),
                _signed(r["diff_after_pp"]),
                _fixed(r["asmd_before"], 3),
                _fixed(r["asmd_after"], 3),
            ]
            for r in part.iter_rows(named=True)
        )
    out.append(("t", headers, rows, 1))
    worst = report.margins.group_by("margin", maintain_order=True).agg(
        pl.col("asmd_before").max(), pl.col("asmd_after").max()
    )
    for name, b, a in worst.iter_rows():
        out.append(("p", f"largest ASMD of {name}: {_fixed(b, 3)} before, {_fixed(a, 3)} after"))
    return out


def _auxiliary_blocks(report: WeightingReport) -> list[tuple]:
    out: list[tuple] = [("h", "Auxiliaries: before and after weighting")]
    out.append(
        (
            "p",
            "Shares in % (means for numbers); shift = |after - before| / standard "
            "deviation before; ASMD against the target where one is known.",
        )
    )
    headers = ["variable", "level", "n", "target", "before", "after", "shift"]
    headers += ["ASMD before", "ASMD after"]
    rows = [
        [
            r["variable"],
            r["level"] or f"({r['statistic']})",
            f"{r['n']:,}",
            _fixed(r["target"]),
            _fixed(r["before"]),
            _fixed(r["after"]),
            _fixed(r["shift"], 3),
            _fixed(r["asmd_before"], 3),
            _fixed(r["asmd_after"], 3),
        ]
        for r in report.auxiliaries.iter_rows(named=True)
    ]
    out.append(("t", headers, rows, 2))
    return out


def _estimate_blocks(report: WeightingReport) -> list[tuple]:
    out: list[tuple] = [("h", "Estimates before and after weighting (percent)")]
    headers = ["variable", "level", "n", report.before, "weighted", "change (pp)"]
    headers += ["95% CI (weighted)"]
    rows = [
        [
            r["variable"],
            r["level"],
            f"{r['n']:,}",
            _fixed(r["before_pct"]),
            _fixed(r["after_pct"]),
            _signed(r["change_pp"]),
            f"{_fixed(r['ci_low_pct'])} to {_fixed(r['ci_high_pct'])}",
        ]
        for r in report.estimates.iter_rows(named=True)
    ]
    out.append(("t", headers, rows, 2))
    return out


def _text(blocks: list[tuple]) -> str:
    lines: list[str] = []
    for i, block in enumerate(blocks):
        if block[0] == "h":
            if i:
                lines.append("")
            lines.append(block[1])
        elif block[0] == "p":
            lines.append(f"  {block[1]}")
        else:
            lines.extend(_text_table(*block[1:]))
    return "\n".join(lines)


def _text_table(headers: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """Aligned columns: the first ``left`` columns left-aligned, the others right."""
    widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        parts = [
            c.ljust(widths[j]) if j < left else c.rjust(widths[j]) for j, c in enumerate(cells)
        ]
        return ("  " + "  ".join(parts)).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def _markdown(blocks: list[tuple]) -> str:
    lines: list[str] = []
    for i, block in enumerate(blocks):
        if block[0] == "h":
            lines.append(f"{'#' if i == 0 else '##'} {block[1]}")
        elif block[0] == "p":
            lines.append(block[1].replace("|", "\\|"))
        else:
            headers, rows, left = block[1:]

            def row(cells: list[str]) -> str:
                return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

            lines.append(row(headers))
            lines.append(
                "|" + "|".join(":--" if j < left else "--:" for j in range(len(headers))) + "|"
            )
            lines.extend(row(r) for r in rows)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
