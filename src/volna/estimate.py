"""Design-based estimates: means, totals, proportions, ratios and quantiles.

Each estimator turns its variables into :class:`~volna.variance.RatioBlock` s -- one
per variable, covering every level and every domain at once -- and asks the design for
estimates and variances (:meth:`volna.design.SurveyDesign.evaluate`). No estimator has
a variance formula of its own; they differ only in what they sum and in their
confidence intervals. Results come back as a tidy :class:`~volna.results.Estimates`
table.

Conventions follow R's survey package (Lumley), the reference volna is tested against:

* domains (``by=``, ``where=``) are estimated on the full design, with no influence
  outside the domain (``svyby``, ``subset``);
* missing values are dropped variable by variable (``na.rm=TRUE``): the rows stay in the
  design with no influence, and the ``missing`` column counts them;
* intervals of means, totals and ratios are normal (``confint``); proportions and
  quantiles use the design degrees of freedom (``svyciprop``, ``svyquantile``);
* design effects compare with simple random sampling without replacement
  (``deff=TRUE``).

>>> import polars as pl
>>> from volna.design import SurveyDesign
>>> frame = pl.DataFrame({"w": [2.0, 2.0, 1.0, 1.0], "x": [1.0, 2.0, 3.0, None],
...                       "g": ["a", "a", "b", "b"]})
>>> d = SurveyDesign.from_frame(frame, weights="w")
>>> d.mean("x", by="g").to_polars().select("domain", "estimate", "n", "missing")
shape: (2, 4)
┌────────┬──────────┬─────┬─────────┐
│ domain ┆ estimate ┆ n   ┆ missing │
│ ---    ┆ ---      ┆ --- ┆ ---     │
│ str    ┆ f64      ┆ i64 ┆ i64     │
╞════════╪══════════╪═════╪═════════╡
│ g=a    ┆ 1.5      ┆ 2   ┆ 0       │
│ g=b    ┆ 3.0      ┆ 1   ┆ 1       │
└────────┴──────────┴─────┴─────────┘
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from scipy import special

from volna.design import Column, DesignError, Domains, label
from volna.results import Estimates
from volna.variance import RatioBlock

if TYPE_CHECKING:
    from volna.design import SurveyDesign

#: confidence interval methods for proportions, with the names R and others use
PROPORTION_CI = {
    "logit": "logit",
    "xlogit": "xlogit",
    "likelihood": "likelihood",
    "beta": "beta",
    "korn-graubard": "beta",
    "kg": "beta",
    "clopper-pearson": "beta",
    "wilson": "wilson",
    "wald": "wald",
    "mean": "wald",
    "asin": "asin",
}

QUANTILE_RULES = (
    "math",
    "hf1",
    "school",
    "hf2",
    "hf3",
    "hf4",
    "hf5",
    "hf6",
    "hf7",
    "hf8",
    "hf9",
    "shahvaish",
)


@dataclass(eq=False)
class _Spec:
    """One variable's block and how to label its estimates."""

    variable: str
    estimator: str  # mean, total, proportion, ratio, quantile
    block: RatioBlock
    levels: list[str | None]  # per local column
    missing: np.ndarray  # (B,) rows of each domain dropped for missing values
    keep: np.ndarray | None = None  # local columns to report (None = all)
    cell_counts: bool = False  # n and n_weighted of the level, not of the domain
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# public estimators


def mean(
    design: SurveyDesign,
    variables: Any,
    *,
    by: Any = None,
    where: Any = None,
    na_rm: bool = True,
    conf_level: float = 0.95,
    df: float | str | None = None,
    deff: bool | str = True,
    vcov: bool = False,
) -> Estimates:
    """Weighted means, with normal intervals as R's ``confint(svymean(...))``.

    A categorical variable gives the proportion of each level (R's ``svymean`` on a
    factor); use :func:`proportion` for intervals that stay inside [0, 1].

    Parameters
    ----------
    variables:
        one column name (or Series) or a list of them; all are estimated in one pass.
    by:
        domain variable(s); several are crossed (every combination observed).
    where:
        restrict to a domain: a true/false column, mask or polars expression. The rest
        of the sample stays in the design with no influence.
    na_rm:
        drop missing values variable by variable (counted in ``missing``); when False a
        domain with a missing value has no estimate (flag ``missing_values``).
    conf_level:
        confidence level of the intervals.
    df:
        degrees of freedom of the intervals: ``None`` or ``inf`` for normal intervals
        (R's default), ``"design"`` for the design degrees of freedom in each domain,
        or a number.
    deff:
        design effects against simple random sampling without replacement (``True``,
        R's ``deff=TRUE``), with replacement (``"replace"``), or none (``False``).
    vcov:
        also return the covariance matrix of all the estimates (``Estimates.vcov``).

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> d = SurveyDesign.from_frame(pl.DataFrame({"y": [1.0, 2.0, 4.0], "w": [1.0, 1.0, 2.0]}),
    ...                             weights="w")
    >>> d.mean("y").value()
    2.75
    """
    domains = design.domains(by, where)
    specs = []
    for var in _as_list(variables):
        col = design.column(var)
        if col.kind == "categorical":
            specs.append(_level_spec(col, domains, "mean"))
        else:
            specs.append(_numeric_spec(col, domains, "mean", "ratio"))
    return _run(
        design,
        specs,
        domains,
        conf_level,
        _df_choice(df, "normal"),
        deff,
        vcov,
        estimator="mean",
        na_rm=na_rm,
    )


def total(
    design: SurveyDesign,
    variables: Any,
    *,
    by: Any = None,
    where: Any = None,
    na_rm: bool = True,
    conf_level: float = 0.95,
    df: float | str | None = None,
    deff: bool | str = True,
    vcov: bool = False,
    categorical: Any = (),
) -> Estimates:
    """Population totals; for a categorical variable the weighted count of each level.

    ``categorical`` names numeric columns holding codes (1 = yes, 2 = no; ``True``: every
    variable): their levels are counted, in numeric order, as R's ``svytable`` and
    ``svytotal`` of a factor do, instead of summing the codes. Other parameters as
    :func:`mean`.

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> d = SurveyDesign.from_frame(pl.DataFrame({"y": [1.0, 2.0, 4.0], "w": [1.0, 1.0, 2.0]}),
    ...                             weights="w")
    >>> d.total("y").value()
    11.0
    >>> d.total("y", categorical=["y"]).to_polars().select("level", "estimate").rows()
    [('1', 1.0), ('2', 1.0), ('4', 2.0)]
    """
    domains = design.domains(by, where)
    specs = []
    for var in _as_list(variables):
        col = design.column(var)
        if col.kind == "numeric" and (categorical is True or var in _as_list(categorical)):
            codes, lv = _numeric_levels(col)
            col = Column(col.name, "categorical", None, codes, tuple(lv))
        if col.kind == "categorical":
            spec = _level_spec(col, domains, "total", kind="total")
            spec.cell_counts = True
        else:
            spec = _numeric_spec(col, domains, "total", "total")
        specs.append(spec)
    return _run(
        design,
        specs,
        domains,
        conf_level,
        _df_choice(df, "normal"),
        deff,
        vcov,
        estimator="total",
        na_rm=na_rm,
    )


def proportion(
    design: SurveyDesign,
    variables: Any,
    *,
    by: Any = None,
    where: Any = None,
    levels: Sequence[Any] | None = None,
    ci: str = "logit",
    na_rm: bool = True,
    conf_level: float = 0.95,
    df: float | str | None = None,
    deff: bool | str = True,
    vcov: bool = False,
) -> Estimates:
    """The proportion of each level of categorical variables, with proper intervals.

    A true/false variable gives the proportion of true (an indicator). Numbers are
    treated as categories. ``n`` and ``n_weighted`` count the respondents of the level.

    Parameters
    ----------
    levels:
        report only these levels (the estimates do not depend on this choice).
    ci:
        the interval, as R's ``svyciprop``: ``"logit"`` (default), ``"xlogit"``,
        ``"likelihood"``, ``"beta"`` (Korn-Graubard), ``"wilson"``, ``"asin"`` or
        ``"wald"`` (R's ``"mean"``).
    df:
        degrees of freedom: ``None``/``"design"`` for the design degrees of freedom of
        each domain (R's default), ``inf`` for normal quantiles, or a number.

    Other parameters as :func:`mean`.

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> frame = pl.DataFrame({"v": ["yes", "no", "yes", "yes"], "psu": [1, 2, 3, 4]})
    >>> d = SurveyDesign.from_frame(frame, ids="psu")
    >>> d.proportion("v", levels=["yes"]).to_polars().select("level", "estimate").row(0)
    ('yes', 0.75)
    """
    method = PROPORTION_CI.get(str(ci).lower())
    if method is None:
        raise DesignError(
            f"ci={ci!r} is not an interval for proportions; expected one of "
            + ", ".join(sorted(set(PROPORTION_CI)))
        )
    domains = design.domains(by, where)
    specs = []
    for var in _as_list(variables):
        col = design.column(var)
        if col.kind == "numeric":
            codes, lv = _numeric_levels(col)
            col = Column(col.name, "categorical", None, codes, tuple(lv))
        spec = _level_spec(col, domains, "proportion")
        spec.cell_counts = True
        if col.kind == "boolean":
            spec.keep = np.array([1])
        if levels is not None:
            wanted = [label(v) for v in levels]
            unknown = [v for v in wanted if v not in spec.levels]
            if unknown:
                raise DesignError(
                    f"column {col.name}: level {unknown[0]!r} does not occur; levels are "
                    + ", ".join(str(v) for v in spec.levels)
                )
            spec.keep = np.array([spec.levels.index(v) for v in wanted])
        specs.append(spec)
    return _run(
        design,
        specs,
        domains,
        conf_level,
        _df_choice(df, "design"),
        deff,
        vcov,
        estimator="proportion",
        na_rm=na_rm,
        proportion_ci=method,
    )


def ratio(
    design: SurveyDesign,
    numerator: Any,
    denominator: Any,
    *,
    by: Any = None,
    where: Any = None,
    na_rm: bool = True,
    conf_level: float = 0.95,
    df: float | str | None = None,
    deff: bool | str = True,
    vcov: bool = False,
) -> Estimates:
    """Ratios of population totals, ``total(numerator) / total(denominator)``.

    Several numerators (and denominators) give every pair. Rows missing either
    variable are dropped. Design effects compare with the ratio estimator under simple
    random sampling (R's ``svyratio`` reports none).

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> frame = pl.DataFrame({"spend": [10.0, 20.0, 30.0], "size": [1.0, 2.0, 2.0]})
    >>> SurveyDesign.from_frame(frame).ratio("spend", "size").value()
    12.0
    """
    domains = design.domains(by, where)
    specs = []
    for num in _as_list(numerator):
        ncol = design.column(num)
        for den in _as_list(denominator):
            dcol = design.column(den)
            for c in (ncol, dcol):
                if c.kind == "categorical":
                    raise DesignError(f"column {c.name}: a ratio needs numbers, got categories")
            missing = ncol.missing | dcol.missing
            base = np.where(missing, -1, domains.codes)
            block = RatioBlock(
                base=base,
                n_bases=domains.n,
                numerator=ncol.values,
                denominator=dcol.values,
            )
            specs.append(
                _Spec(
                    f"{ncol.name}/{dcol.name}",
                    "ratio",
                    block,
                    [None],
                    _missing_counts(domains, missing),
                )
            )
    return _run(
        design,
        specs,
        domains,
        conf_level,
        _df_choice(df, "normal"),
        deff,
        vcov,
        estimator="ratio",
        na_rm=na_rm,
    )


def quantile(
    design: SurveyDesign,
    variables: Any,
    probs: float | Sequence[float] = (0.5,),
    *,
    by: Any = None,
    where: Any = None,
    na_rm: bool = True,
    conf_level: float = 0.95,
    df: float | str | None = None,
    rule: str = "math",
    ci: str = "wald",
) -> Estimates:
    """Quantiles with Woodruff intervals, as ``svyquantile(..., ci=TRUE)`` in R 4.x.

    The quantile is the smallest value whose weighted distribution function reaches
    ``p`` (``rule="math"``; ``"school"`` averages at exact ties); ``rule`` also takes
    R's ``qrule`` names ``"hf1"``-``"hf9"`` (Hyndman and Fan's types, weighted as R
    does) and ``"shahvaish"``. The interval inverts
    a confidence interval for the proportion of values at or below the estimate, using
    the design degrees of freedom; ``se`` is its width over twice the critical value.
    That interval for the proportion is ``ci="wald"`` (R's ``interval.type="mean"``),
    ``"beta"``, ``"xlogit"`` or ``"asin"``, as for :func:`proportion`. On a replicate
    design ``ci="quantile"`` is R's ``interval.type="quantile"`` instead: the quantile
    under every replicate weight, their replicate variance, and estimate ± t × se.

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> d = SurveyDesign.from_frame(pl.DataFrame({"y": [3.0, 1.0, 2.0, 5.0, 4.0]}))
    >>> d.median("y").value()
    3.0
    >>> d.quantile("y", 0.25, rule="hf7").value()
    2.0
    """
    if rule not in QUANTILE_RULES:
        raise DesignError(f"rule={rule!r}: expected one of {', '.join(QUANTILE_RULES)}")
    interval = "quantile" if str(ci).lower() == "quantile" else PROPORTION_CI.get(str(ci).lower())
    if interval not in ("wald", "beta", "xlogit", "asin", "quantile"):
        raise DesignError(
            f"ci={ci!r} is not a Woodruff interval; expected wald (R's mean), beta, "
            "xlogit or asin, or 'quantile' on a replicate design"
        )
    if interval == "quantile" and design.replicates is None:
        raise DesignError(
            "ci='quantile' takes the quantile under every replicate weight: it needs a "
            "replicate design (with_replicates); use a Woodruff interval here"
        )
    probs_ = [float(p) for p in (_as_list(probs))]
    for p in probs_:
        if not 0 <= p <= 1:
            raise DesignError(f"probs: {p} is not a probability between 0 and 1")
    domains = design.domains(by, where)
    specs = []
    w = design.weights
    for var in _as_list(variables):
        col = design.column(var)
        if col.kind == "categorical":
            raise DesignError(f"column {col.name}: quantiles need numbers, got categories")
        values = col.values
        missing = col.missing
        base = np.where(missing, -1, domains.codes)
        sorted_ = _sorted_domains(values, w, base, domains.n)
        q = np.array([[_qrule(sorted_[d], p, rule) for p in probs_] for d in range(domains.n)])
        rep_se = None
        if interval == "quantile":
            rep_se = _replicate_quantile_se(design, values, base, domains.n, probs_, rule, q)
        miss = _missing_counts(domains, missing)
        for j, p in enumerate(probs_):
            threshold = np.where(base >= 0, q[np.maximum(base, 0), j], np.nan)
            with np.errstate(invalid="ignore"):
                indicator = (values <= threshold).astype(float)
            block = RatioBlock(base=base, n_bases=domains.n, numerator=indicator)
            specs.append(
                _Spec(
                    col.name,
                    "quantile",
                    block,
                    [f"{p:g}"],
                    miss,
                    extra={
                        "quantile": q[:, j],
                        "p": p,
                        "sorted": sorted_,
                        "rule": rule,
                        "interval": interval,
                        "rep_se": None if rep_se is None else rep_se[:, j],
                    },
                )
            )
    return _run(
        design,
        specs,
        domains,
        conf_level,
        _df_choice(df, "design"),
        False,
        False,
        estimator="quantile",
        na_rm=na_rm,
    )


# ---------------------------------------------------------------------------------------
# blocks


def _as_list(x: Any) -> list[Any]:
    if isinstance(x, (str, pl.Series, pl.Expr, np.ndarray)) or not isinstance(x, Sequence):
        return [x]
    return list(x)


def _missing_counts(domains: Domains, missing: np.ndarray) -> np.ndarray:
    if not missing.any():
        return np.zeros(domains.n, dtype=np.int64)
    rows = (domains.codes >= 0) & missing
    return np.bincount(domains.codes[rows], minlength=domains.n)


def _numeric_levels(col: Column) -> tuple[np.ndarray, list[Any]]:
    values = col.values
    ok = ~np.isnan(values)
    levels, inverse = np.unique(values[ok], return_inverse=True)
    codes = np.full(len(values), -1, dtype=np.int64)
    codes[ok] = inverse
    return codes, list(levels)


def _numeric_spec(col: Column, domains: Domains, estimator: str, kind: str) -> _Spec:
    missing = col.missing
    base = np.where(missing, -1, domains.codes)
    block = RatioBlock(base=base, n_bases=domains.n, numerator=col.values, kind=kind)
    return _Spec(col.name, estimator, block, [None], _missing_counts(domains, missing))


def _level_spec(col: Column, domains: Domains, estimator: str, kind: str = "ratio") -> _Spec:
    missing = col.missing
    if missing.any():
        base, local = np.where(missing, -1, domains.codes), np.where(missing, 0, col.codes)
    else:
        # nobody skipped the question: share the domain and level codes, no copies
        base, local = domains.codes, col.codes
    per = max(len(col.levels), 1)
    block = RatioBlock(base=base, n_bases=domains.n, local=local, per=per, kind=kind)
    levels = [label(v) for v in col.levels] or [None]
    return _Spec(col.name, estimator, block, levels, _missing_counts(domains, missing))


# ---------------------------------------------------------------------------------------
# running blocks and assembling the table


def _df_choice(df: float | str | None, default: str) -> float | str:
    if df is None:
        return np.inf if default == "normal" else "design"
    if isinstance(df, str):
        if df != "design":
            meaning = "normal" if default == "normal" else "the design's"
            raise DesignError(f"df={df!r}: expected 'design', a number or None ({meaning})")
        return df
    return float(df)


def _run(
    design: SurveyDesign,
    specs: list[_Spec],
    domains: Domains,
    conf_level: float,
    df: float | str,
    deff: bool | str,
    vcov: bool,
    *,
    estimator: str,
    na_rm: bool = True,
    proportion_ci: str | None = None,
) -> Estimates:
    """Evaluate the blocks on the design and lay the estimates out as a tidy table."""
    if not 0 < conf_level < 1:
        raise DesignError(f"conf_level={conf_level}: expected a level between 0 and 1")
    if deff not in (True, False, "wor", "replace"):
        raise DesignError(f"deff={deff!r}: expected True, False, 'wor' or 'replace'")
    results = design.evaluate([s.block for s in specs], covariance=vcov)
    in_domain = domains.codes >= 0
    if domains.n == 1 and in_domain.all():
        domain_rows = np.array([len(in_domain)])
        domain_weight = np.array([design.weights.sum()])
    else:
        domain_rows = np.bincount(domains.codes[in_domain], minlength=domains.n)
        domain_weight = np.bincount(
            domains.codes[in_domain], weights=design.weights[in_domain], minlength=domains.n
        )
    alpha = 1 - conf_level
    table = _Table(domains)
    keep_index: list[np.ndarray] = []
    offset = 0
    for spec, res in zip(specs, results, strict=True):
        tot = res.totals
        theta = np.asarray(res.estimate, dtype=float)
        B, per = theta.shape
        flags = _Flags((B, per))
        var = res.variance
        se = np.sqrt(np.where(var < 0, 0.0, var))
        dfs = res.degf() if df == "design" else np.full(B, float(df))
        df_cell = np.repeat(dfs[:, None], per, axis=1)

        present = tot.n_positive > 0
        flags.add("empty_domain", (domain_rows == 0)[:, None])
        flags.add("all_missing", ((domain_rows > 0) & (tot.n_rows == 0))[:, None])
        flags.add("zero_weight", ((tot.n_rows > 0) & ~present)[:, None])
        if spec.block.kind != "total":
            flags.add("zero_denominator", (present & (tot.denominator == 0))[:, None])

        if spec.estimator == "quantile":
            bounds = None
            estimate = spec.extra["quantile"][:, None].astype(float)
            method = "woodruff"
            if spec.extra["interval"] == "quantile":
                # R's repCI: the replicates' variance of the quantile itself
                se = spec.extra["rep_se"][:, None]
                crit = _critical(df_cell, alpha, flags)
                low, high = estimate - crit * se, estimate + crit * se
                method = "replicate quantiles"
            else:
                if spec.extra["interval"] != "wald":
                    domain = (domain_rows, domain_weight)
                    bounds = _proportion_ci(
                        spec.extra["interval"], theta, se, df_cell, tot, domain, None, alpha, flags
                    )
                low, high, se, df_cell = _woodruff(spec, theta, se, df_cell, alpha, flags, bounds)
        elif proportion_ci is not None:
            # R's svyciprop sees the domain's rows, those missing the variable included
            domain = (domain_rows, domain_weight)
            start = None
            if proportion_ci == "likelihood":
                with np.errstate(divide="ignore", invalid="ignore"):
                    mean_w = domain_weight / domain_rows
                start = _irls_start_sums(spec.block, design.weights, mean_w)
            low, high = _proportion_ci(
                proportion_ci, theta, se, df_cell, tot, domain, start, alpha, flags
            )
            estimate = theta
            method = proportion_ci
        else:
            estimate = theta
            crit = _critical(df_cell, alpha, flags)
            low, high = estimate - crit * se, estimate + crit * se
            method = "normal" if np.all(np.isinf(df_cell)) else "t"

        deff_v = np.full((B, per), np.nan)
        if deff and spec.estimator != "quantile":
            deff_v = _design_effect(spec, tot, theta, var, deff, flags)

        pres = res.presence
        if pres is not None:
            flags.add("lonely_psu", (pres.lonely_strata > 0)[:, None])
            flags.add("single_psu_in_stratum", (pres.domain_lonely > 0)[:, None])
        flags.add("replicates_dropped", (res.dropped_replicates > 0) & present[:, None])
        flags.add(
            "zero_variance",
            (se == 0)
            & np.isfinite(estimate)
            & present[:, None]
            & ~flags.get("proportion_boundary"),
        )
        # nothing to estimate: no standard error, and only the flags that say why
        absent = ~present[:, None] | flags.get("zero_denominator")
        estimate[np.broadcast_to(absent, estimate.shape)] = np.nan
        for arr in (se, low, high, deff_v):
            arr[np.broadcast_to(absent, arr.shape)] = np.nan
        flags.keep_only(absent, ("empty_domain", "all_missing", "zero_weight", "zero_denominator"))
        if not na_rm:
            kept = (spec.missing > 0)[:, None] & present[:, None]
            flags.add("missing_values", kept)
            for arr in (estimate, se, low, high, deff_v):
                arr[np.broadcast_to(kept, arr.shape)] = np.nan

        if spec.cell_counts:
            n_v, nw_v = tot.cell_n, tot.cell_weight
        else:
            n_v = np.repeat(tot.n_positive[:, None], per, axis=1)
            nw_v = np.repeat(tot.weight_sum[:, None], per, axis=1)
        keep = np.arange(per) if spec.keep is None else np.asarray(spec.keep)
        bb, jj = (a.ravel() for a in np.meshgrid(np.arange(B), keep, indexing="ij"))
        table.add(
            spec,
            bb,
            jj,
            estimate=estimate,
            se=se,
            ci_low=low,
            ci_high=high,
            ci_method=method,
            df=df_cell,
            deff=deff_v,
            n=n_v,
            n_weighted=nw_v,
            flags=flags,
        )
        keep_index.append(offset + bb * per + jj)
        offset += B * per
    cov = None
    if vcov and results and results[0].covariance is not None:
        idx = np.concatenate(keep_index) if keep_index else np.zeros(0, int)
        cov = results[0].covariance[np.ix_(idx, idx)]
    return Estimates(
        table.columns,
        by=domains.by,
        by_columns=table.by_columns,
        conf_level=conf_level,
        estimator=estimator,
        design=design.describe(),
        where=domains.where,
        vcov=cov,
    )


class _Flags:
    """Named boolean masks over a block's cells, turned into one list per estimate."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = shape
        self.masks: dict[str, np.ndarray] = {}

    def add(self, name: str, mask: Any) -> None:
        mask = np.broadcast_to(np.asarray(mask, dtype=bool), self.shape)
        self.masks[name] = self.get(name) | mask

    def keep_only(self, where: np.ndarray, names: Sequence[str]) -> None:
        """Drop every flag but ``names`` from the cells in ``where``."""
        where = np.broadcast_to(where, self.shape)
        for name in list(self.masks):
            if name not in names:
                self.masks[name] = self.masks[name] & ~where

    def get(self, name: str) -> np.ndarray:
        return self.masks.get(name, np.zeros(self.shape, dtype=bool))

    def lists(self, bb: np.ndarray, jj: np.ndarray) -> list[list[str]]:
        out: list[list[str]] = [[] for _ in range(len(bb))]
        for name, mask in self.masks.items():
            for i in np.flatnonzero(mask[bb, jj]):
                out[i].append(name)
        return out


class _Table:
    """Columns of the result table, filled block by block."""

    def __init__(self, domains: Domains) -> None:
        self.domains = domains
        self.columns: dict[str, list] = {k: [] for k in _COLUMNS}
        self.by_columns: dict[str, list] = {name: [] for name in domains.by}

    def add(self, spec: _Spec, bb, jj, *, ci_method: str, flags: _Flags, **cells) -> None:
        k = len(bb)
        cols = self.columns
        cols["variable"] += [spec.variable] * k
        cols["level"] += [spec.levels[j] if j < len(spec.levels) else None for j in jj]
        cols["domain"] += [self.domains.labels[b] for b in bb]
        cols["estimator"] += [spec.estimator] * k
        cols["ci_method"] += [ci_method] * k
        for name in ("estimate", "se", "ci_low", "ci_high", "df", "deff", "n_weighted"):
            cols[name] += np.asarray(cells[name], dtype=float)[bb, jj].tolist()
        cols["n"] += np.asarray(cells["n"])[bb, jj].astype(np.int64).tolist()
        cols["missing"] += spec.missing[bb].astype(np.int64).tolist()
        cols["flags"] += flags.lists(bb, jj)
        for j, name in enumerate(self.domains.by):
            self.by_columns[name] += [self.domains.values[b][j] for b in bb]


_COLUMNS = (
    "variable",
    "level",
    "domain",
    "estimator",
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "ci_method",
    "df",
    "deff",
    "n",
    "n_weighted",
    "missing",
    "flags",
)


def _critical(df: np.ndarray, alpha: float, flags: _Flags) -> np.ndarray:
    """Normal or t quantile for each estimate; NaN (flagged) without degrees of freedom."""
    from scipy import stats  # imported on first use: it is slow to import

    df = np.asarray(df, dtype=float)
    with np.errstate(invalid="ignore"):
        crit = np.where(
            np.isinf(df),
            stats.norm.ppf(1 - alpha / 2),
            stats.t.ppf(1 - alpha / 2, np.where(df > 0, df, 1.0)),
        )
    bad = ~(df > 0)
    flags.add("no_degrees_of_freedom", bad)
    return np.where(bad, np.nan, crit)


# ---------------------------------------------------------------------------------------
# intervals for proportions


def _proportion_ci(
    method: str,
    p: np.ndarray,
    se: np.ndarray,
    df: np.ndarray,
    tot: Any,
    domain: tuple[np.ndarray, np.ndarray],
    start: Any,
    alpha: float,
    flags: _Flags,
) -> tuple[np.ndarray, np.ndarray]:
    """Intervals of R's ``svyciprop`` for arrays of proportions (and Wilson's).

    At a proportion of 0 or 1 the design variance is 0 and logit-type intervals are
    undefined; there, as Korn and Graubard suggest, the interval is the exact binomial
    one on the respondents of the domain (flag ``proportion_boundary``).
    """
    p = np.asarray(p, dtype=float)

    def cells(v: np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.asarray(v, dtype=float)[:, None], p.shape)

    n_pos = cells(tot.n_positive)
    n_domain = cells(domain[0])
    crit = _critical(df, alpha, flags)
    boundary = ((p <= 0) | (p >= 1)) & np.isfinite(p)
    flags.add("proportion_boundary", boundary)
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "wald":
            return p - crit * se, p + crit * se
        if method in ("logit", "xlogit"):
            eta = special.logit(p)
            se_eta = se / (p * (1 - p))
            low, high = special.expit(eta - crit * se_eta), special.expit(eta + crit * se_eta)
        elif method == "asin":
            eta = np.arcsin(np.sqrt(p))
            se_eta = se / (2 * np.sqrt(p * (1 - p)))
            lo = np.clip(eta - crit * se_eta, 0, np.pi / 2)
            hi = np.clip(eta + crit * se_eta, 0, np.pi / 2)
            low, high = np.sin(lo) ** 2, np.sin(hi) ** 2
        elif method == "beta":
            low, high = _beta_ci(p, se, df, n_domain, alpha)
        elif method == "wilson":
            n_eff = p * (1 - p) / se**2
            z2 = crit**2
            centre = (p + z2 / (2 * n_eff)) / (1 + z2 / n_eff)
            half = crit * np.sqrt(p * (1 - p) / n_eff + z2 / (4 * n_eff**2)) / (1 + z2 / n_eff)
            low, high = centre - half, centre + half
        elif method == "likelihood":
            rows = (cells(tot.n_rows), n_pos, cells(tot.weight_sum), n_domain, cells(domain[1]))
            low, high = _likelihood_ci(p, se, df, rows, start, alpha)
        else:  # pragma: no cover - checked by the caller
            raise DesignError(f"unknown interval {method}")
    if boundary.any():
        blo, bhi = _beta_ci(p, np.zeros_like(p), df, n_pos, alpha, exact_n=True)
        low = np.where(boundary, blo, low)
        high = np.where(boundary, bhi, high)
    low = np.where(np.isnan(crit), np.nan, low)
    high = np.where(np.isnan(crit), np.nan, high)
    return low, high


def _beta_ci(p, se, df, n_rows, alpha, exact_n: bool = False):
    """Korn-Graubard: a Clopper-Pearson interval on the effective sample size.

    The effective size ``p(1-p)/var`` is corrected by ``(t_{n-1}/t_df)^2`` as R's
    ``svyciprop(method="beta")``; with no design variance the respondents are counted.
    """
    from scipy import stats  # imported on first use: it is slow to import

    with np.errstate(divide="ignore", invalid="ignore"):
        if exact_n:
            n_eff = n_rows
        else:
            n_eff = p * (1 - p) / se**2
            dfv = np.where(np.asarray(df) > 0, df, np.nan)
            n_eff = n_eff * (stats.t.ppf(alpha / 2, n_rows - 1) / stats.t.ppf(alpha / 2, dfv)) ** 2
        a = n_eff * p
        b = n_eff * (1 - p)
        low = np.where(a > 0, stats.beta.ppf(alpha / 2, np.maximum(a, 1e-300), b + 1), 0.0)
        high = np.where(b > 0, stats.beta.ppf(1 - alpha / 2, a + 1, np.maximum(b, 1e-300)), 1.0)
    return low, high


def _likelihood_ci(p, se, df, rows, start, alpha):
    """Profile likelihood interval of a design-based logistic intercept, as R computes it.

    R's ``svyciprop(method="likelihood")`` fits ``svyglm(y ~ 1, quasibinomial)`` by
    iteratively reweighted least squares (``glm.fit``), then MASS's ``profile.glm``
    steps the intercept on a grid, computes the deviance scaled by the dispersion and
    ``confint.profile.glm`` reads the limits off an FMM spline through the profile at
    ``t * sqrt(lambda)``, where lambda is the design over the model variance. Every step
    is reproduced here (the model has one parameter, so each is closed-form), including
    the working weights of the last-but-one iteration that R's model variance uses: the
    interval matches R to rounding, not just to the accuracy of the spline.

    ``rows`` holds, per estimate: rows with the variable, those with a positive weight,
    their weight sum, and the rows and weight sum of the whole domain (svyglm scales the
    weights to mean 1 over the domain, then drops rows missing the variable).
    """
    from scipy import stats  # imported on first use: it is slow to import

    p = np.asarray(p, dtype=float)
    low = np.full(p.shape, np.nan)
    high = np.full(p.shape, np.nan)
    n_ok, n_pos, w_ok, n_all, w_all = rows
    a_sum, c_sum, dev_start = start
    for idx in zip(*np.nonzero(np.isfinite(p) & (p > 0) & (p < 1) & (se > 0)), strict=True):
        d = float(df[idx])
        if not d > 0 or n_pos[idx] < 2:
            continue
        mean_w = w_all[idx] / n_all[idx]
        n_glm = w_ok[idx] / mean_w  # the sum of glm's prior weights
        mu_f, _mu_p, naive_sum = _irls_intercept(
            p[idx], n_glm, a_sum[idx], c_sum[idx], dev_start[idx]
        )
        v = mu_f * (1 - mu_f)
        var_b = (se[idx] / v) ** 2
        lam = var_b * naive_sum
        tq = stats.t.ppf(alpha / 2, d) if np.isfinite(d) else stats.norm.ppf(alpha / 2)
        level = 1 - 2 * stats.norm.cdf(tq * np.sqrt(lam))
        # summary.svyglm's dispersion: the design variance of the Pearson residuals
        ratio = (w_ok[idx] / n_ok[idx]) / mean_w
        disp = ratio * n_pos[idx] / (n_pos[idx] - 1) * p[idx] * (1 - p[idx]) / v
        lo, hi = _profile_interval(p[idx], n_glm, n_ok[idx], mu_f, np.sqrt(var_b), disp, level)
        low[idx], high[idx] = special.expit(lo), special.expit(hi)
    return low, high


def _irls_start_sums(block: RatioBlock, weights: np.ndarray, mean_w: np.ndarray):
    """Sums over a domain's rows that glm.fit's first iteration needs, per level.

    glm starts each row at ``(W y + 0.5) / (W + 1)`` with ``W`` the weights scaled to
    mean 1 in the domain, so the first step depends on the individual weights.
    """
    rows = block.rows()
    b = block.base[rows].astype(np.int64)
    code = block.codes(rows)
    B, per = block.n_bases, block.per
    with np.errstate(divide="ignore", invalid="ignore"):
        W = weights[rows] / mean_w[b]

    def parts(y: float):
        m = (W * y + 0.5) / (W + 1)
        v = m * (1 - m)
        a = W * v
        c = W * (v * special.logit(m) + y - m)
        dev = -2 * W * (y * np.log(m) + (1 - y) * np.log(1 - m))
        return a, c, dev

    out = []
    for zero, one in zip(parts(0.0), parts(1.0), strict=True):
        base_sum = np.bincount(b, weights=zero, minlength=B)
        cell = np.bincount(code, weights=one - zero, minlength=B * per).reshape(B, per)
        out.append(base_sum[:, None] + cell)
    return tuple(out)


def _irls_intercept(p, n, a_sum, c_sum, dev_start, epsilon=1e-8, maxit=25):
    """glm.fit's path for ``y ~ 1`` (logit): final mean, the mean before, model weights.

    The first step uses the per-row starting values (through their sums); afterwards all
    rows share one mean and each step is the scalar Newton update R's least squares
    gives. Returns the final fitted mean, the one whose working weights R keeps, and the
    sum of those working weights (the inverse of R's model variance).
    """

    def dev(mu):
        return -2 * n * (special.xlogy(p, mu) + special.xlogy(1 - p, 1 - mu))

    beta = c_sum / a_sum
    mu = special.expit(beta)
    d = dev(mu)
    if abs(d - dev_start) / (abs(d) + 0.1) < epsilon:
        return mu, None, a_sum
    dev_old = d
    for _ in range(maxit - 1):
        mu_prev = mu
        beta = beta + (p - mu) / (mu * (1 - mu))
        mu = special.expit(beta)
        d = dev(mu)
        if abs(d - dev_old) / (abs(d) + 0.1) < epsilon:
            break
        dev_old = d
    return mu, mu_prev, n * mu_prev * (1 - mu_prev)


def _profile_interval(p, n, n_obs, mu_f, std_err, disp, level, maxsteps=10):
    """MASS's profile.glm grid and confint.profile.glm spline for a one-parameter logit.

    ``n`` is the sum of the prior weights (the deviance scale), ``n_obs`` the rows.
    """
    from scipy import stats  # imported on first use: it is slow to import

    b0 = special.logit(mu_f)
    alpha = (1 - level) / 4
    zmax = np.sqrt(stats.f.ppf(1 - alpha, 1, n_obs - 1))
    step_size = zmax / 5

    def dev(mu):
        return -2 * n * (special.xlogy(p, mu) + special.xlogy(1 - p, 1 - mu))

    d0 = dev(mu_f)
    zs, bs = [0.0], [b0]
    for sign in (-1, 1):
        step, z = 0, 0.0
        while True:
            step += 1
            if not (step < maxsteps and abs(z) < zmax):
                break
            bi = b0 + sign * step * step_size * std_err
            zz = (dev(special.expit(bi)) - d0) / disp
            z = sign * np.sqrt(max(zz, 0.0))
            zs.append(z)
            bs.append(bi)
    order = np.argsort(zs, kind="stable")
    z_arr, b_arr = np.array(zs)[order], np.array(bs)[order]
    grid = np.linspace(b_arr[0], b_arr[-1], 3 * len(b_arr))
    spline_z = _fmm_eval(b_arr, z_arr, grid)
    a = (1 - level) / 2
    cutoff = stats.norm.ppf([a, 1 - a])
    order = np.argsort(spline_z, kind="stable")
    lo, hi = np.interp(cutoff, spline_z[order], grid[order], left=np.nan, right=np.nan)
    return lo, hi


def _fmm_eval(x: np.ndarray, y: np.ndarray, u: np.ndarray) -> np.ndarray:
    """R's ``spline(method="fmm")``: Forsythe, Malcolm and Moler's cubic spline."""
    n = len(x)
    b, c, d = np.zeros(n), np.zeros(n), np.zeros(n)
    if n < 3:
        slope = (y[1] - y[0]) / (x[1] - x[0])
        return y[0] + slope * (u - x[0])
    d[0] = x[1] - x[0]
    c[1] = (y[1] - y[0]) / d[0]
    for i in range(1, n - 1):
        d[i] = x[i + 1] - x[i]
        b[i] = 2.0 * (d[i - 1] + d[i])
        c[i + 1] = (y[i + 1] - y[i]) / d[i]
        c[i] = c[i + 1] - c[i]
    # end conditions: third derivatives from divided differences
    b[0], b[n - 1] = -d[0], -d[n - 2]
    c[0] = c[n - 1] = 0.0
    if n > 3:
        c[0] = c[2] / (x[3] - x[1]) - c[1] / (x[2] - x[0])
        c[n - 1] = c[n - 2] / (x[n - 1] - x[n - 3]) - c[n - 3] / (x[n - 2] - x[n - 4])
        c[0] = c[0] * d[0] * d[0] / (x[3] - x[0])
        c[n - 1] = -c[n - 1] * d[n - 2] * d[n - 2] / (x[n - 1] - x[n - 4])
    for i in range(1, n):
        t = d[i - 1] / b[i - 1]
        b[i] = b[i] - t * d[i - 1]
        c[i] = c[i] - t * c[i - 1]
    c[n - 1] = c[n - 1] / b[n - 1]
    for i in range(n - 2, -1, -1):
        c[i] = (c[i] - d[i] * c[i + 1]) / b[i]
    b[n - 1] = (y[n - 1] - y[n - 2]) / d[n - 2] + d[n - 2] * (c[n - 2] + 2.0 * c[n - 1])
    for i in range(n - 1):
        b[i] = (y[i + 1] - y[i]) / d[i] - d[i] * (c[i + 1] + 2.0 * c[i])
        d[i] = (c[i + 1] - c[i]) / d[i]
        c[i] = 3.0 * c[i]
    c[n - 1] = 3.0 * c[n - 1]
    d[n - 1] = d[n - 2]
    i = np.clip(np.searchsorted(x, u, side="right") - 1, 0, n - 1)
    dx = u - x[i]
    return y[i] + dx * (b[i] + dx * (c[i] + dx * d[i]))


# ---------------------------------------------------------------------------------------
# design effects


def _design_effect(spec: _Spec, tot: Any, theta, var, deff, flags: _Flags) -> np.ndarray:
    """Variance over the variance of the same estimator under simple random sampling.

    As R: the SRS variance uses the weighted variance of the linearised variable with an
    ``n/(n-1)`` divisor, times ``(N - n)/N`` without replacement (``deff=TRUE``), ``N``
    being the sum of weights. Weights that do not sum to more than the sample (scaled to
    the sample, not the population) get the with-replacement version, flagged
    ``deff_replace``.
    """
    n = tot.n_positive[:, None]
    W = tot.weight_sum[:, None]
    D = tot.denominator[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        if spec.block.kind == "total":
            centre = tot.numerator / W
            scale = W * W
        else:
            centre = theta
            scale = (W / D) ** 2
        sum_sq = tot.num_sq - 2 * centre * tot.num_den + centre**2 * tot.den_sq[:, None]
        s2 = sum_sq / W * n / (n - 1)
        vsrs = scale * s2 / n
        finite_pop = n < W
        if deff in (True, "wor"):
            vsrs = np.where(finite_pop, vsrs * (W - n) / W, vsrs)
        out = var / vsrs
    # undefined without two respondents or when the variable is constant in the domain
    out = np.where((n > 1) & np.isfinite(out), out, np.nan)
    if deff in (True, "wor"):
        flags.add("deff_replace", ~finite_pop & np.isfinite(out))
    return out


# ---------------------------------------------------------------------------------------
# quantiles


def _sorted_domains(values, weights, base, n_bases):
    """Per domain, the values with a positive weight, sorted, and their cumulated weights.

    The sums are accumulated in extended precision, as R's ``cumsum`` does, so exact
    ties between the cumulated weight and ``p`` are decided as in R.
    """
    ok = (base >= 0) & (weights > 0)
    rows = np.flatnonzero(ok)
    order = rows[np.lexsort((values[rows], base[rows]))]
    b = base[order]
    counts = np.bincount(b, minlength=n_bases)
    starts = np.concatenate(([0], np.cumsum(counts)))
    out = []
    for d in range(n_bases):
        seg = order[starts[d] : starts[d + 1]]
        x = values[seg]
        cw = np.cumsum(weights[seg], dtype=np.longdouble).astype(float)
        out.append((x, cw))
    return out


def _qrule(sorted_: tuple[np.ndarray, np.ndarray], p: float, rule: str) -> float:
    """R's ``qrule_*`` functions of ``svyquantile`` on sorted values and cumulated weights.

    ``math``/``hf1`` and ``school``/``hf2`` step at the cumulated weights; ``hf3`` steps
    on the distinct values, to the even-numbered one at exact ties; ``hf4`` interpolates
    between the values around ``p``; ``hf5``-``hf9`` interpolate linearly between the
    plotting positions R gives each value (constant beyond them); ``shahvaish`` is Shah
    and Vaish's step rule.
    """
    x, cw = sorted_
    if len(x) == 0:
        return np.nan
    total = cw[-1]
    if rule in ("hf5", "hf6", "hf7", "hf8", "hf9", "shahvaish"):
        w = np.diff(cw, prepend=0.0)
        before = np.concatenate(([0.0], cw[:-1]))
        n = len(x)
        if rule == "hf5":
            pk = (cw - w / 2) / total
        elif rule == "hf6":
            pk = cw / (total + w[-1])
        elif rule == "hf7":
            if n < 2:
                return float(x[0])
            pk = before / cw[-2]
        elif rule == "hf8":
            pk = (before / 3 + cw * 2 / 3) / (total + w[-1] / 3)
        elif rule == "hf9":
            pk = (before * 3 / 8 + cw * 5 / 8) / (total + w[-1] / 4)
        else:
            wbar = w / w.mean()
            # R subtracts half the raw weight (not of wbar), so the positions need not
            # rise with x; approx() sorts them and averages the values at tied positions
            pk = (np.cumsum(wbar) + 0.5 - w / 2) / (n + 1)
            order = np.argsort(pk, kind="stable")
            pk, xs = pk[order], x[order]
            pk, first, counts = np.unique(pk, return_index=True, return_counts=True)
            xs = np.add.reduceat(xs, first) / counts
            # approx(method="constant", f=0, rule=2): the value at the last position at
            # or below p, the first one below them all
            i = int(np.searchsorted(pk, p, side="right")) - 1
            return float(xs[min(max(i, 0), len(xs) - 1)])
        return float(np.interp(p, pk, x))
    if rule == "hf3":
        # ties collapsed: one value per distinct x with its summed weight
        last = np.append(x[1:] != x[:-1], True)
        x, cw = x[last], cw[last]
    pos = int(np.searchsorted(cw, p * total, side="right")) - 1
    if pos < 0 and rule == "hf4" and len(x) > 1:
        # R's qs() takes the first value as the one below: hf4 then extrapolates
        pos = 0
    if pos < 0:
        # p below the first cumulated weight: the smallest value (R returns the second)
        return float(x[0])
    nxt = min(pos + 1, len(x) - 1)
    wlow = p - cw[pos] / total
    exact = wlow == 0
    if rule == "hf4":
        wup = cw[nxt] / total - p
        if wup + wlow == 0:
            return float(x[pos])
        gamma = wlow / (wup + wlow)
        return float(x[pos] * (1 - gamma) + x[nxt] * gamma)
    if exact:
        if rule in ("school", "hf2"):
            return float((x[pos] + x[nxt]) / 2)
        if rule == "hf3" and (pos + 1) % 2 == 1:
            return float(x[nxt])
        return float(x[pos])
    return float(x[nxt])


def _replicate_quantile_se(design, values, base, n_bases, probs, rule, q) -> np.ndarray:
    """SE of each (domain, p) quantile from its value under every replicate weight.

    As R's ``repCI``: the rule applied with each replicate's weights, then the replicate
    variance ``scale * sum rscales (q_r - centre)^2`` (centre: the replicates' mean, or
    the estimate with ``mse``).
    """
    rep = design.replicates
    n_rep = rep.n_replicates
    reps = np.empty((n_bases, len(probs), n_rep))
    for r in range(n_rep):
        sorted_r = _sorted_domains(values, rep.columns.column(r), base, n_bases)
        for d in range(n_bases):
            reps[d, :, r] = [_qrule(sorted_r[d], p, rule) for p in probs]
    centre = q[:, :, None] if rep.mse else reps.mean(axis=2, keepdims=True)
    var = rep.scale * np.sum(np.asarray(rep.rscales) * (reps - centre) ** 2, axis=2)
    return np.sqrt(var)


def _woodruff(spec: _Spec, theta, se, df_cell, alpha, flags, bounds=None):
    """Interval for the proportion below the quantile, mapped back through the quantile.

    ``bounds``: that interval when it is not Wald's (beta, xlogit, asin).
    """
    crit = _critical(df_cell, alpha, flags)
    pf = theta[:, 0]
    B = len(pf)
    low = np.full((B, 1), np.nan)
    high = np.full((B, 1), np.nan)
    rule = spec.extra["rule"]
    for b in range(B):
        if not np.isfinite(pf[b]) or not np.isfinite(crit[b, 0]):
            continue
        if bounds is None:
            plo = pf[b] - crit[b, 0] * se[b, 0]
            phi = pf[b] + crit[b, 0] * se[b, 0]
        else:
            plo, phi = float(bounds[0][b, 0]), float(bounds[1][b, 0])
            if not (np.isfinite(plo) and np.isfinite(phi)):
                continue
        if plo < 0 or phi > 1:
            flags.add("ci_clamped", np.arange(B)[:, None] == b)
        low[b, 0] = _qrule(spec.extra["sorted"][b], min(max(plo, 0.0), 1.0), rule)
        high[b, 0] = _qrule(spec.extra["sorted"][b], min(max(phi, 0.0), 1.0), rule)
    with np.errstate(invalid="ignore"):
        q_se = (high - low) / (2 * crit)
    return low, high, q_se, df_cell
