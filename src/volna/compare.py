"""Comparisons: cross-tabulations and their tests, differences, paired items, benchmarks.

Every comparison is a function of the design first, as in R's survey package, and
returns the tidy :class:`~volna.results.Estimates` table (tests add the columns
``statistic``, ``ndf``/``ddf`` or ``df``, and ``p_value``). Nothing here has a variance
formula of its own: the estimates and their covariance come from the design's one
variance path (:meth:`volna.design.SurveyDesign.evaluate` with ``covariance=True``),
linearization or replicate weights alike.

==========================  ===============================================  ==============
volna                       what                                             R (survey)
==========================  ===============================================  ==============
``crosstab(d, r, c)``       cell, row and column proportions                 ``svymean``,
                                                                             ``svyby``
``.test("F")``              Rao-Scott second-order F                         ``svychisq``
``.test("Chisq")``          Pearson X2, first-order Rao-Scott p-value        ``svychisq``
``.test("Wald")``           Wald test of independence, F(q, df)              ``svychisq``
``.test("adjWald")``        adjusted Wald, F(q, df - q + 1)                  ``svychisq``
``.test("saddlepoint")``    X2 against its weighted chi-square mixture       ``svychisq``
``difference(d, y, g)``     difference of two domain means or proportions    ``svyby`` +
                                                                             ``svycontrast``
``paired_difference``       mean of first minus second, same respondents     ``svymean(~I(a-b))``
``against_benchmark``       an estimate minus an external figure             by hand
==========================  ===============================================  ==============

Intervals and p-values of differences are normal by default, as R's
``confint(svycontrast(...))``; ``df="design"`` uses a t distribution with the design
degrees of freedom of the rows analysed (``degf``), and a number sets them (R's
``svyttest`` uses ``degf - 1``).

>>> import polars as pl
>>> from volna.design import SurveyDesign
>>> frame = pl.DataFrame({
...     "left": ["2022", "2022", "2014", "2022", "2014", "2014", "2022", "2014"],
...     "job": ["IT", "IT", "arts", "arts", "IT", "arts", "IT", "arts"],
...     "income": [3.0, 4.0, 2.0, 3.5, 5.0, 1.5, 4.5, 2.5],
... })
>>> design = SurveyDesign.from_frame(frame)
>>> table = crosstab(design, "job", "left")
>>> table.column_proportions.to_polars().select("domain", "level", "estimate").head(2)
shape: (2, 3)
┌───────────┬───────┬──────────┐
│ domain    ┆ level ┆ estimate │
│ ---       ┆ ---   ┆ ---      │
│ str       ┆ str   ┆ f64      │
╞═══════════╪═══════╪══════════╡
│ left=2014 ┆ IT    ┆ 0.25     │
│ left=2014 ┆ arts  ┆ 0.75     │
└───────────┴───────┴──────────┘
>>> round(difference(design, "income", "left", ("2022", "2014")).value(), 3)
1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from scipy import optimize, stats

from volna.design import Column, DesignError, describe_spec, factorize, label
from volna.estimate import _df_choice
from volna.results import COLUMNS, Estimates
from volna.variance import RatioBlock

if TYPE_CHECKING:
    from volna.design import SurveyDesign

#: tests of association of a two-way table, by the names R's ``svychisq`` uses
ASSOCIATION_TESTS = {
    "f": "F",
    "chisq": "Chisq",
    "wald": "Wald",
    "adjwald": "adjWald",
    "saddlepoint": "saddlepoint",
}

#: flags of a test of association whose p-value is not to be reported (see
#: :meth:`CrossTab.test`): the design has too few PSUs for the table, or the design
#: effects or the covariance of its free cells are singular
UNRELIABLE_TEST_FLAGS = frozenset(
    {
        "too_few_psus",
        "singular_design_effects",
        "negative_design_effects",
        "singular_covariance",
        "no_degrees_of_freedom",
    }
)

#: a covariance matrix whose smallest eigenvalue is below this fraction of its largest
#: is singular: its inverse would be rounding noise
SINGULAR = 1e-12

#: singular values of the (order 1) interaction contrasts below this fraction of the
#: largest are zero: the contrast is not estimable
RANK_TOLERANCE = 1e-10

#: eigenvalues of a positive semi-definite matrix below 0 by less than this fraction of
#: its scale are rounding
ROUNDING = 1e-9

_METHODS = {
    "F": "Pearson's X^2: Rao & Scott adjustment (second order)",
    "Chisq": "Pearson's X^2: Rao & Scott adjustment (first order)",
    "Wald": "Design-based Wald test of association",
    "adjWald": "Design-based Wald test of association (adjusted)",
    "saddlepoint": "Pearson's X^2: saddlepoint approximation",
}


# ---------------------------------------------------------------------------------------
# cross-tabulations


@dataclass(frozen=True, eq=False, repr=False)
class CrossTab:
    """A two-way table of a design: proportions of its cells, rows and columns, and tests.

    Build it with :func:`crosstab`. The tables are computed when first read and are
    ordinary :class:`~volna.results.Estimates` from :meth:`SurveyDesign.proportion`
    (intervals, design effects and flags as there); each carries the row and the column
    variable as columns named after them, so it pivots into a banner table directly.
    Respondents missing either variable are left out (complete cases), as R's
    ``svychisq(na.rm=TRUE)``.
    """

    design: SurveyDesign
    row: Any
    col: Any
    where: Any = None
    ci: str = "logit"
    conf_level: float = 0.95
    df: float | str | None = None
    _cache: dict = field(default_factory=dict)

    @property
    def row_name(self) -> str:
        return self._row.name

    @property
    def col_name(self) -> str:
        return self._col.name

    @property
    def _row(self) -> _Categories:
        if "row" not in self._cache:
            self._cache["row"] = _categories(self.design.column(self.row))
        return self._cache["row"]

    @property
    def _col(self) -> _Categories:
        if "col" not in self._cache:
            self._cache["col"] = _categories(self.design.column(self.col))
        return self._cache["col"]

    def _cell_series(self) -> pl.Series:
        """One categorical variable whose levels are the cells, row by row."""
        r, c = self._row, self._col
        nc = len(c.levels)
        names = [f"{a}:{b}" for a in r.levels for b in c.levels]
        ok = (r.codes >= 0) & (c.codes >= 0)
        index = pl.Series(np.where(ok, r.codes * nc + c.codes, 0).astype(np.uint32))
        index = index.set(pl.Series(~ok), None) if not ok.all() else index
        values = pl.Series(names, dtype=pl.String).gather(index)
        return values.cast(pl.Enum(names)).rename(f"{r.name}:{c.name}")

    def _with_both(self, est: Estimates, rows: list[str], cols: list[str]) -> Estimates:
        return rebuild(
            est,
            by=(self.row_name, self.col_name),
            by_columns={self.row_name: rows, self.col_name: cols},
        )

    @property
    def cells(self) -> Estimates:
        """Share of the complete cases in each cell (R's ``svymean(~interaction(r, c))``).

        >>> import polars as pl
        >>> from volna.design import SurveyDesign
        >>> d = SurveyDesign.from_frame(pl.DataFrame({"a": ["x", "x", "y", "y"],
        ...                                          "b": ["u", "v", "u", "u"]}))
        >>> crosstab(d, "a", "b").cells.column("estimate")
        [0.25, 0.25, 0.5, 0.0]
        """
        if "cells" not in self._cache:
            est = self.design.proportion(
                self._cell_series(),
                where=self.where,
                ci=self.ci,
                conf_level=self.conf_level,
                df=self.df,
            )
            self._cache["cells"] = self._cell_table(est)
        return self._cache["cells"]

    @property
    def counts(self) -> Estimates:
        """Weighted counts of the cells (R's ``svytable``, with ``svytotal`` errors)."""
        if "counts" not in self._cache:
            est = self.design.total(
                self._cell_series(), where=self.where, conf_level=self.conf_level, df=self.df
            )
            self._cache["counts"] = self._cell_table(est)
        return self._cache["counts"]

    def _cell_table(self, est: Estimates) -> Estimates:
        r, c = self._row, self._col
        rows = [a for a in r.levels for _ in c.levels]
        cols = [b for _ in r.levels for b in c.levels]
        return self._with_both(est, rows, cols)

    @property
    def row_proportions(self) -> Estimates:
        """Share of each column level within each row level (``svyby(~col, ~row, svymean)``)."""
        if "rows" not in self._cache:
            est = self.design.proportion(
                self.col,
                by=self.row,
                where=self.where,
                ci=self.ci,
                conf_level=self.conf_level,
                df=self.df,
            )
            rows = est.column(self.row_name)
            self._cache["rows"] = self._with_both(est, rows, est.column("level"))
        return self._cache["rows"]

    @property
    def column_proportions(self) -> Estimates:
        """Share of each row level within each column level: the banner table."""
        if "columns" not in self._cache:
            est = self.design.proportion(
                self.row,
                by=self.col,
                where=self.where,
                ci=self.ci,
                conf_level=self.conf_level,
                df=self.df,
            )
            cols = est.column(self.col_name)
            self._cache["columns"] = self._with_both(est, est.column("level"), cols)
        return self._cache["columns"]

    def test(self, statistic: str | Sequence[str] = "F") -> Estimates:
        """Tests of independence of rows and columns, as R's ``svychisq``.

        ``statistic`` is one name or a list of them (one row each):

        * ``"F"`` (default): Pearson's X2 divided by the trace of the generalized
          design effect matrix Delta, on F(d, d * df) with ``d = tr(Delta)^2/tr(Delta^2)``
          (Rao-Scott second order);
        * ``"Chisq"``: Pearson's X2 (weighted table scaled to the rows of the domain),
          p-value from ``X2 / mean(eigenvalues of Delta)`` on chi-square with q = (r-1)(c-1)
          degrees of freedom (Rao-Scott first order);
        * ``"Wald"``: the Wald statistic of ``N_ij - N_i. N_.j / N`` over q, on F(q, df);
        * ``"adjWald"``: the Wald statistic times ``(df - q + 1)/(q df)`` on
          F(q, df - q + 1);
        * ``"saddlepoint"``: X2 against the mixture of chi-squares with the eigenvalues
          of Delta as weights (saddlepoint approximation; what R's ``"lincom"`` falls
          back to without the CompQuadForm package).

        ``df`` is the design degrees of freedom of the domain (R: PSUs minus strata, or
        the rank of the replicate weights minus one). The ``deff`` column of the Rao-Scott
        rows holds the mean generalized design effect ``tr(Delta)/q``.

        The design effects are the eigenvalues of Delta, computed as those of a symmetric
        positive semi-definite matrix (see ``_design_effects``): never negative, and the
        same whatever the BLAS. On a full table with enough PSUs this is R's result.
        Where R stops or returns noise, the rows carry ``flags`` instead; a report shows
        a test with any of :data:`UNRELIABLE_TEST_FLAGS` as unreliable, not its p-value:

        * ``too_few_psus``: the design df is at most q (every test). The covariance of
          the table has rank at most df, so at most df design effects are not zero and
          the second-order correction rests on a covariance the design cannot estimate;
          the numbers are still R's (``svychisq`` returns them without a word).
        * ``singular_design_effects`` (Rao-Scott rows): empty cells leave only k < q
          free cells whose design effect can be estimated (Delta is 0/0 on the rest;
          R stops: "system is computationally singular"). ``deff`` is the mean of the k,
          the q - k others are taken equal to it, and Chisq keeps q degrees of freedom,
          as X2 sums over all q free cells.
        * ``negative_design_effects`` (Rao-Scott rows): the covariance of the cells is
          not positive semi-definite beyond rounding; the negative ones are set to 0.
        * ``singular_covariance`` (Wald rows): the covariance of the q free cells is
          singular (R stops); the Wald tests are NaN, the Rao-Scott tests remain.
        * ``no_degrees_of_freedom``, ``empty_domain``, ``single_level``: no test.

        >>> import polars as pl
        >>> from volna.design import SurveyDesign
        >>> d = SurveyDesign.from_frame(pl.DataFrame({"a": ["x", "x", "y", "y", "x", "y"],
        ...                                          "b": ["u", "v", "u", "u", "u", "v"]}))
        >>> t = crosstab(d, "a", "b").test(["Chisq", "F"])
        >>> t.column("test"), [round(s, 4) for s in t.column("statistic")]
        (['Chisq', 'F'], [0.0, 0.0])
        """
        names = [statistic] if isinstance(statistic, str) else list(statistic)
        wanted = []
        for name in names:
            key = ASSOCIATION_TESTS.get(str(name).lower())
            if key is None:
                raise DesignError(
                    f"statistic={name!r} is not a test of association; expected one of "
                    + ", ".join(ASSOCIATION_TESTS.values())
                )
            wanted.append(key)
        assoc = self._association()
        rows: dict[str, list[Any]] = {
            k: []
            for k in (
                "variable",
                "estimator",
                "test",
                "statistic",
                "df",
                "ndf",
                "ddf",
                "p_value",
                "deff",
                "n",
                "n_weighted",
                "flags",
                "method",
            )
        }
        for key in wanted:
            stat, ndf, ddf, dfree, p, deff = assoc.result(key)
            rows["variable"].append(f"{self.row_name}:{self.col_name}")
            rows["estimator"].append("test of association")
            rows["test"].append(key)
            rows["statistic"].append(stat)
            rows["df"].append(dfree)
            rows["ndf"].append(ndf)
            rows["ddf"].append(ddf)
            rows["p_value"].append(p)
            rows["deff"].append(deff)
            rows["n"].append(assoc.n)
            rows["n_weighted"].append(assoc.n_weighted)
            rows["flags"].append(assoc.flags_of(key))
            rows["method"].append(_METHODS[key])
        return Estimates(
            rows,
            conf_level=self.conf_level,
            estimator="test of association",
            design=self.design.describe(),
            where=describe_spec(self.where) if self.where is not None else None,
        )

    def _association(self) -> _Association:
        if "assoc" not in self._cache:
            self._cache["assoc"] = _association(self.design, self._row, self._col, self.where)
        return self._cache["assoc"]

    def __repr__(self) -> str:
        r, c = self._row, self._col
        inside = self.design.domains(None, self.where).codes >= 0
        complete = int(np.sum(inside & (r.codes >= 0) & (c.codes >= 0)))
        where = f"; where {describe_spec(self.where)}" if self.where is not None else ""
        return (
            f"CrossTab: {r.name} ({len(r.levels)} levels) by {c.name} ({len(c.levels)} "
            f"levels), {complete} complete cases{where}"
        )


def crosstab(
    design: SurveyDesign,
    row: Any,
    col: Any,
    *,
    where: Any = None,
    ci: str = "logit",
    conf_level: float = 0.95,
    df: float | str | None = None,
) -> CrossTab:
    """A two-way table of ``row`` by ``col``: proportions, counts and tests of association.

    Parameters
    ----------
    row, col:
        categorical (or true/false, or numeric codes) variables: column names, Series or
        polars expressions.
    where:
        restrict to a domain (true/false column, mask or expression); the rest of the
        sample stays in the design with no influence.
    ci, conf_level, df:
        intervals of the proportions, as :meth:`SurveyDesign.proportion`.

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> d = SurveyDesign.from_frame(pl.DataFrame({"a": ["x", "x", "y", "y"],
    ...                                          "b": ["u", "v", "u", "u"]}))
    >>> crosstab(d, "a", "b")
    CrossTab: a (2 levels) by b (2 levels), 4 complete cases
    """
    table = CrossTab(design, row, col, where=where, ci=ci, conf_level=conf_level, df=df)
    if table.row_name == table.col_name:
        raise DesignError(f"column {table.row_name}: a cross-tabulation needs two variables")
    return table


@dataclass(frozen=True, eq=False)
class _Categories:
    name: str
    codes: np.ndarray  # (n,) -1 when missing
    levels: list[str]


def _categories(col: Column) -> _Categories:
    """Codes and labels of a variable used as categories (numbers become their values)."""
    if col.codes is not None and col.kind != "numeric":
        return _Categories(col.name, col.codes, [label(v) for v in col.levels])
    codes, levels = factorize(pl.Series(col.values).fill_nan(None))
    return _Categories(col.name, codes, [label(v) for v in levels])


@dataclass(frozen=True, eq=False)
class _Association:
    """What every test of a two-way table needs, computed once."""

    x2: float  # Pearson's X2 on the weighted table scaled to N rows
    deffs: np.ndarray  # (k,) generalized design effects: eigenvalues of Delta, k <= q
    wald: float  # Y' V^-1 Y on the (r-1)(c-1) free cells
    q: int
    nu: float  # design degrees of freedom
    n: int
    n_weighted: float
    replicate: bool
    flags: tuple[str, ...] = ()  # of every test
    wald_flags: tuple[str, ...] = ()  # of the Wald tests only
    rao_scott_flags: tuple[str, ...] = ()  # of the tests of X2 (F, Chisq, saddlepoint)

    def flags_of(self, key: str) -> list[str]:
        own = self.wald_flags if key in ("Wald", "adjWald") else self.rao_scott_flags
        return list(self.flags) + list(own)

    def result(self, key: str) -> tuple[float, ...]:
        """(statistic, ndf, ddf, df, p-value, mean generalized deff) of one test."""
        q, nu, nan = self.q, self.nu, math.nan
        if q == 0:
            return nan, nan, nan, nan, nan, nan
        if key == "Wald":
            stat = self.wald / q
            return stat, float(q), nu, nan, _f_sf(stat, q, nu), nan
        if key == "adjWald":
            ddf = nu - q + 1
            stat = self.wald * ddf / (q * nu) if nu > 0 else nan
            return stat, float(q), ddf, nan, _f_sf(stat, q, ddf), nan
        weights = self.weights()
        mean_deff = float(weights.mean())
        if not mean_deff > 0:
            # no variation between PSUs at all: no test can be made
            stat = self.x2 if key in ("Chisq", "saddlepoint") else nan
            return stat, nan, nan, float(q) if key == "Chisq" else nan, nan, mean_deff
        trace = float(weights.sum())
        if key == "F":
            d0 = trace**2 / float(np.sum(weights**2))
            stat = self.x2 / trace
            p = _f_sf(stat, d0, d0 * nu)
            return stat, d0, d0 * nu, nan, p, mean_deff
        if key == "Chisq":
            p = float(stats.chi2.sf(self.x2 / mean_deff, q))
            return self.x2, nan, nan, float(q), p, mean_deff
        # saddlepoint
        if self.replicate:
            # R's svychisq for replicate designs ignores the denominator df here
            p = _chisq_mixture_sf(self.x2, weights)
        else:
            d0 = trace**2 / float(np.sum(weights**2))
            p = _f_mixture_sf(self.x2, weights, d0 * nu)
        return self.x2, nan, nan, nan, p, mean_deff

    def weights(self) -> np.ndarray:
        """The q design effects the Rao-Scott tests weigh X2 by (eigenvalues of Delta).

        With empty cells only k < q of them can be estimated (the others are 0/0); the
        q - k missing ones are taken as the mean of the k estimated, so that X2, which
        sums over all q free cells, is compared with q terms of the same mean design
        effect -- the first-order Rao-Scott assumption, applied where nothing else is known.
        """
        deffs = self.deffs
        if len(deffs) == 0:
            return np.full(self.q, math.nan)
        return np.concatenate([deffs, np.full(self.q - len(deffs), deffs.mean())])


def _association(design: SurveyDesign, r: _Categories, c: _Categories, where: Any):
    """Cell proportions and totals with their covariance, then R's svychisq algebra."""
    inside = design.domains(None, where).codes >= 0
    complete = inside & (r.codes >= 0) & (c.codes >= 0)
    # R builds the table from factor(): levels nobody in the domain has are dropped
    rr, nr = _dense_codes(r.codes, complete)
    cc, nc = _dense_codes(c.codes, complete)
    k = nr * nc
    flags: list[str] = []
    wald_flags: list[str] = []
    if complete.sum() == 0 or nr < 2 or nc < 2:
        flags.append("empty_domain" if complete.sum() == 0 else "single_level")
        return _Association(
            math.nan,
            np.zeros(0),
            math.nan,
            0,
            math.nan,
            int(complete.sum()),
            float(design.weights[complete].sum()),
            design.is_replicate,
            tuple(flags),
        )
    # cells numbered with the row level varying fastest, as R's interaction()
    cell = np.where(complete, rr + nr * cc, 0)
    base = np.where(complete, 0, -1)
    shares = RatioBlock(base=base, n_bases=1, local=cell, per=k)
    totals = RatioBlock(base=base, n_bases=1, local=cell, per=k, kind="total")
    domain = RatioBlock(base=np.where(inside, 0, -1), n_bases=1)
    res = design.evaluate([shares, totals, domain], covariance=True)
    cov = res[0].covariance * lonely_average_factor(design, res[2])
    p = res[0].estimate[0]
    v_p = cov[:k, :k]
    t = res[1].estimate[0]
    v_t = cov[k : 2 * k, k : 2 * k]
    nu = float(res[2].degf()[0])
    # R scales the weighted table to the rows of the (sub)design, missing values included
    n_rows = float(inside.sum())
    row_of = np.arange(k) % nr
    col_of = np.arange(k) // nr
    pr = np.bincount(row_of, weights=p, minlength=nr)
    pc = np.bincount(col_of, weights=p, minlength=nc)
    expected = pr[row_of] * pc[col_of]
    with np.errstate(divide="ignore", invalid="ignore"):
        x2 = float(n_rows * np.sum((p - expected) ** 2 / expected))

    # Rao-Scott: the interaction contrasts, orthogonal to the main effects
    main = np.column_stack(
        [np.ones(k)]
        + [(row_of == i).astype(float) for i in range(1, nr)]
        + [(col_of == j).astype(float) for j in range(1, nc)]
    )
    inter = np.column_stack(
        [(row_of == i) & (col_of == j) for j in range(1, nc) for i in range(1, nr)]
    ).astype(float)
    contrasts = inter - main @ np.linalg.lstsq(main, inter, rcond=None)[0]
    deffs, negative = _design_effects(contrasts, p, v_p, n_rows)
    rao_scott_flags: list[str] = []
    if len(deffs) < contrasts.shape[1]:
        rao_scott_flags.append("singular_design_effects")
    if negative:
        rao_scott_flags.append("negative_design_effects")

    # Wald: N_ij - N_i. N_.j / N on the cells off the first row and column
    tr = np.bincount(row_of, weights=t, minlength=nr)
    tc = np.bincount(col_of, weights=t, minlength=nc)
    total = t.sum()
    y = t - tr[row_of] * tc[col_of] / total
    jac = (
        np.eye(k)
        - (row_of[:, None] == row_of[None, :]) * (tc[col_of] / total)[:, None]
        - (col_of[:, None] == col_of[None, :]) * (tr[row_of] / total)[:, None]
        + (tr[row_of] * tc[col_of] / total**2)[:, None]
    )
    v_y = jac @ v_t @ jac.T
    use = np.flatnonzero((row_of > 0) & (col_of > 0))
    v_use = v_y[np.ix_(use, use)]
    eigen = np.linalg.eigvalsh(v_use)
    if eigen.min() > eigen.max() * SINGULAR:
        wald = float(y[use] @ np.linalg.solve(v_use, y[use]))
    else:
        # more free cells than the design can estimate a covariance for (R: "system is
        # computationally singular"): no Wald test
        wald_flags.append("singular_covariance")
        wald = math.nan
    q = (nr - 1) * (nc - 1)
    if not nu > 0:
        flags.append("no_degrees_of_freedom")
    elif nu <= q:
        # the covariance of the table has rank at most nu: at most nu design effects are
        # not zero, and the Wald tests' covariance of the q free cells is singular
        flags.append("too_few_psus")
    return _Association(
        x2,
        deffs,
        wald,
        q,
        nu,
        int(complete.sum()),
        float(res[1].totals.numerator.sum()),
        design.is_replicate,
        tuple(flags),
        tuple(wald_flags),
        tuple(rao_scott_flags),
    )


def _design_effects(
    contrasts: np.ndarray, p: np.ndarray, v_p: np.ndarray, n_rows: float
) -> tuple[np.ndarray, bool]:
    """The generalized design effects of a table: eigenvalues of R's svychisq ``Delta``.

    R computes ``Delta = solve(denom, numer)`` with ``denom = C' D- C / N`` and
    ``numer = C' D- V D- C`` (C the interaction contrasts, D- the inverse cell proportions,
    0 for empty cells, V their covariance) and takes its trace and eigenvalues. Only the
    eigenvalues are used, and they are the generalized eigenvalues of the symmetric pair
    (numer, denom), so they are computed as such. Write ``M = D^-1/2 C / sqrt(N)`` over
    the cells not empty: ``denom = M'M`` and ``numer = M' A M`` with
    ``A = N D^-1/2 V D^-1/2`` (positive semi-definite); the eigenvalues are those of
    ``Q' A Q``, Q an orthonormal basis of the columns of M. They are real and >= 0 up to
    rounding, whatever the BLAS, where ``solve`` on a nearly singular ``denom`` returns
    noise (R stops: "system is computationally singular").

    A contrast that is zero on every cell not empty is in the null space of both
    matrices (0/0: its design effect cannot be estimated); the rank k of C on the cells
    not empty counts the free cells that can. Returns the k design effects (rounding
    negatives set to 0) and whether some were negative beyond rounding (V not positive
    semi-definite), which are set to 0 too.
    """
    seen = p > 0
    c_seen = contrasts[seen]
    # the rank is decided on C itself (entries of order 1), not on the scaled M
    sv = np.linalg.svd(c_seen, compute_uv=False)
    k = int(np.sum(sv > sv.max(initial=0.0) * RANK_TOLERANCE)) if len(sv) else 0
    if k == 0:
        return np.zeros(0), False
    root = 1.0 / np.sqrt(p[seen])
    basis = np.linalg.svd(c_seen * (root / math.sqrt(n_rows))[:, None], full_matrices=False)[0]
    basis = basis[:, :k]
    a = n_rows * (root[:, None] * v_p[np.ix_(seen, seen)] * root[None, :])
    inner = basis.T @ a @ basis
    deffs = np.linalg.eigvalsh((inner + inner.T) / 2)
    # rounding of a positive semi-definite matrix: a few units of eps of its largest
    rounding = ROUNDING * max(float(np.abs(deffs).max()), float(np.trace(a)) / len(a))
    negative = bool(np.any(deffs < -rounding))
    return np.clip(deffs, 0.0, None), negative


def lonely_average_factor(design: SurveyDesign, domain: Any) -> float:
    """The factor the ``"average"`` lonely-PSU rule puts on a covariance matrix.

    ``domain`` is the evaluated one-base block of the rows analysed. The engine's
    covariance path leaves the rule's ``strata / (strata - lonely strata)`` out (its
    variances include it, per domain); R applies it once to the whole matrix of the
    (sub)design -- ``svyby(covmat=TRUE)``, ``svychisq`` -- so it is applied here.
    """
    if design.is_replicate or design.lonely_psu != "average" or domain.presence is None:
        return 1.0
    factor = domain.presence.average_factor
    return float(factor[0]) if factor is not None and factor[0] > 0 else 1.0


def _dense_codes(codes: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, int]:
    """Renumber the codes seen in ``rows`` as 0..k-1, keeping their order."""
    seen = np.unique(codes[rows])
    remap = np.full(int(codes.max(initial=0)) + 1, -1, dtype=np.int64)
    remap[seen] = np.arange(len(seen))
    return np.where(rows, remap[np.maximum(codes, 0)], -1), len(seen)


# ---------------------------------------------------------------------------------------
# distributions


def _f_sf(stat: float, ndf: float, ddf: float) -> float:
    if not (ndf > 0 and ddf > 0) or not np.isfinite(stat):
        return math.nan
    return float(stats.f.sf(stat, ndf, ddf))


def _saddle(x: float, lam: np.ndarray) -> float:
    """R survey's ``saddle``: upper tail of ``sum lam_i chi2_1`` at ``x`` (Kuonen 1999).

    NaN where the saddlepoint is too close to 0 for the approximation (R returns NA and
    falls back to Satterthwaite).
    """
    d = lam.max()
    lam = lam / d
    x = x / d

    def k0(z: float) -> float:
        return -np.sum(np.log(1 - 2 * z * lam)) / 2

    def k1(z: float) -> float:
        return float(np.sum(lam / (1 - 2 * z * lam)))

    def k2(z: float) -> float:
        return float(2 * np.sum(lam**2 / (1 - 2 * z * lam) ** 2))

    if np.any(lam < 0):
        lmin = np.max(1 / (2 * lam[lam < 0])) * 0.99999
    elif x > lam.sum():
        lmin = -0.01
    else:
        lmin = -len(lam) / (2 * x)
    lmax = np.min(1 / (2 * lam[lam > 0])) * 0.99999
    zeta = optimize.brentq(lambda z: k1(z) - x, lmin, lmax, xtol=1e-14, rtol=1e-15)
    w = np.sign(zeta) * math.sqrt(2 * (zeta * x - k0(zeta)))
    v = zeta * math.sqrt(k2(zeta))
    if abs(zeta) < 1e-4:
        return math.nan
    return float(stats.norm.sf(w + math.log(v / w) / w))


def _chisq_mixture_sf(x: float, weights: np.ndarray) -> float:
    """R's ``pchisqsum(method="saddlepoint", lower.tail=FALSE)`` with 1 df per weight."""
    tr = weights.mean()
    tr2 = np.mean(weights**2) / tr**2
    guess = float(stats.chi2.sf(x / (tr * tr2), len(weights) / tr2))
    s = _saddle(x, weights)
    return guess if math.isnan(s) else s


def _f_mixture_sf(x: float, weights: np.ndarray, ddf: float) -> float:
    """R's ``pFsum(method="saddlepoint", lower.tail=FALSE)``: X2 over a chi2_ddf/ddf.

    As R, the denominator chi-square enters as ``floor(ddf)`` terms of ``-x/ddf``.
    """
    if not np.isfinite(ddf):
        return _chisq_mixture_sf(x, weights)
    tr = weights.mean()
    tr2 = np.mean(weights**2) / tr**2
    ndf = len(weights) / tr2
    guess = _f_sf(x / ndf / (tr * tr2), ndf, ddf)
    lam = np.concatenate([weights, np.full(int(ddf), -x / ddf)])
    s = _saddle(0.0, lam)
    return guess if math.isnan(s) else s


def _critical(df: np.ndarray, conf_level: float) -> np.ndarray:
    df = np.asarray(df, dtype=float)
    upper = 1 - (1 - conf_level) / 2
    with np.errstate(invalid="ignore"):
        crit = np.where(
            np.isinf(df), stats.norm.ppf(upper), stats.t.ppf(upper, np.where(df > 0, df, 1.0))
        )
    return np.where(df > 0, crit, np.nan)


def _two_sided(stat: np.ndarray, df: np.ndarray) -> np.ndarray:
    stat = np.abs(np.asarray(stat, dtype=float))
    df = np.asarray(df, dtype=float)
    with np.errstate(invalid="ignore"):
        p = np.where(
            np.isinf(df), 2 * stats.norm.sf(stat), 2 * stats.t.sf(stat, np.where(df > 0, df, 1))
        )
    return np.where(df > 0, p, np.nan)


# ---------------------------------------------------------------------------------------
# tidy tables


def rebuild(
    est: Estimates,
    *,
    columns: dict[str, Sequence[Any]] | None = None,
    by: Sequence[str] | None = None,
    by_columns: dict[str, Sequence[Any]] | None = None,
    estimator: str | None = None,
    where: str | None = None,
    vcov: np.ndarray | None = None,
) -> Estimates:
    """A copy of a result table with some columns replaced or added (``None`` = keep).

    >>> est = Estimates({"variable": ["x"], "estimate": [1.0]})
    >>> rebuild(est, columns={"variable": ["y"]}).value("variable")
    'y'
    """
    frame = est.to_polars()
    by_keys = {key for name in est.by for key in (name, f"by:{name}")} - set(COLUMNS)
    cols: dict[str, list[Any]] = {
        name: frame.get_column(name).to_list() for name in frame.columns if name not in by_keys
    }
    for name, values in (columns or {}).items():
        cols[name] = list(values)
    if by_columns is None:
        by_columns = {name: est.column(name) for name in est.by}
    return Estimates(
        cols,
        by=tuple(by) if by is not None else est.by,
        by_columns=by_columns,
        conf_level=est.conf_level,
        estimator=estimator or est.estimator,
        design=est.design,
        where=where if where is not None else est.where,
        vcov=vcov if vcov is not None else est.vcov,
    )


def with_test(est: Estimates, df: np.ndarray | None = None) -> Estimates:
    """Add ``statistic = estimate / se`` and its two-sided ``p_value`` to a table.

    The p-value uses each row's ``df`` (normal when infinite) unless ``df`` is given.

    >>> est = Estimates({"variable": ["x"], "estimate": [1.96], "se": [1.0],
    ...                  "df": [math.inf]})
    >>> round(with_test(est).value("p_value"), 4)
    0.05
    """
    estimate = np.asarray(est.column("estimate"), dtype=float)
    se = np.asarray(est.column("se"), dtype=float)
    if df is None:
        df = np.asarray([math.inf if v is None else v for v in est.column("df")], dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.where(se > 0, estimate / se, np.nan)
    return rebuild(
        est,
        columns={"statistic": stat.tolist(), "p_value": _two_sided(stat, df).tolist()},
    )


def _flag_lists(masks: dict[str, np.ndarray], k: int) -> list[list[str]]:
    out: list[list[str]] = [[] for _ in range(k)]
    for name, mask in masks.items():
        for i in np.flatnonzero(mask):
            out[i].append(name)
    return out


# ---------------------------------------------------------------------------------------
# differences


def _domain_index(domains: Any, level: Any, by: Any) -> int:
    wanted = tuple(label(v) for v in (level if isinstance(level, tuple) else (level,)))
    for i, values in enumerate(domains.values):
        if tuple(values) == wanted:
            return i
    known = ", ".join("/".join(v) for v in domains.values)
    raise DesignError(
        f"by {describe_spec(by) if not isinstance(by, list) else ', '.join(map(str, by))}: "
        f"level {'/'.join(wanted)!r} does not occur; levels are {known}"
    )


def _as_list(x: Any) -> list[Any]:
    if isinstance(x, (str, pl.Series, pl.Expr, np.ndarray)) or not isinstance(x, Sequence):
        return [x]
    return list(x)


def difference(
    design: SurveyDesign,
    variable: Any,
    by: Any,
    levels: Sequence[Any] | None = None,
    *,
    where: Any = None,
    conf_level: float = 0.95,
    df: float | str | None = None,
) -> Estimates:
    """The difference between two domains' means (or proportions), first minus second.

    Both domains come from one design, so their estimates are correlated (clusters
    and strata cut across domains); the standard error uses the full covariance,
    ``Var(a - b) = Var(a) + Var(b) - 2 Cov(a, b)``, as R's
    ``svycontrast(svyby(~y, ~g, design, svymean, covmat=TRUE), c(a=1, b=-1))``.

    Parameters
    ----------
    variable:
        a numeric or true/false variable (a true/false one gives a difference of
        proportions), or a categorical one (one row per level: differences of the
        proportions of each level). A list gives one result per variable, in one pass.
    by, levels:
        the domain variable(s) and the two domains compared, ``(first, second)``; with
        several ``by`` variables each level is a tuple. Without ``levels`` ``by`` must
        have exactly two domains, compared in their order.
    where:
        restrict to a domain; the rest of the sample stays in the design.
    df:
        ``None`` for normal intervals and p-values (as ``confint(svycontrast(...))``),
        ``"design"`` for a t distribution with the design degrees of freedom of the rows
        in ``where`` (R's ``degf``), or a number (``svyttest`` uses ``degf - 1``).

    The table holds the difference in ``estimate`` with its ``se``, interval,
    ``statistic`` (difference over se) and two-sided ``p_value``; the two domain
    estimates are in ``first_estimate`` and ``second_estimate``.

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> d = SurveyDesign.from_frame(pl.DataFrame({"g": ["a", "a", "b", "b"],
    ...                                          "y": [1.0, 3.0, 2.0, 2.0]}))
    >>> difference(d, "y", "g", ("a", "b")).to_polars().select("domain", "estimate", "se")
    shape: (1, 3)
    ┌───────────┬──────────┬──────────┐
    │ domain    ┆ estimate ┆ se       │
    │ ---       ┆ ---      ┆ ---      │
    │ str       ┆ f64      ┆ f64      │
    ╞═══════════╪══════════╪══════════╡
    │ g=a - g=b ┆ 0.0      ┆ 0.816497 │
    └───────────┴──────────┴──────────┘
    """
    df_ = _df_choice(df, "normal")
    domains = design.domains(by, where)
    if levels is None:
        if domains.n != 2:
            raise DesignError(
                f"by has {domains.n} domains ({', '.join(str(x) for x in domains.labels)}); "
                "name the two to compare with levels=(first, second)"
            )
        ia, ib = 0, 1
    else:
        if len(levels) != 2:
            raise DesignError(f"levels={levels!r}: expected two domains, (first, second)")
        ia = _domain_index(domains, levels[0], by)
        ib = _domain_index(domains, levels[1], by)
    pair = np.full(domains.n + 1, -1, dtype=np.int64)
    pair[ia], pair[ib] = 0, 1
    in_pair = pair[domains.codes]  # codes of -1 pick the spare last entry
    blocks: list[RatioBlock] = []
    names: list[str] = []
    level_names: list[list[str | None]] = []
    missing: list[np.ndarray] = []
    for var in _as_list(variable):
        col = design.column(var)
        base = np.where(col.missing, -1, in_pair)
        if col.kind == "categorical":
            per = max(len(col.levels), 1)
            block = RatioBlock(
                base=base, n_bases=2, local=np.where(col.missing, 0, col.codes), per=per
            )
            level_names.append([label(v) for v in col.levels])
        else:
            block = RatioBlock(base=base, n_bases=2, numerator=col.values)
            level_names.append([None])
        blocks.append(block)
        names.append(col.name)
        missing.append(np.bincount(in_pair[(in_pair >= 0) & col.missing], minlength=2))
    # the design degrees of freedom of the rows in `where`, from the same pass
    blocks.append(
        RatioBlock(base=np.where(design.domains(None, where).codes >= 0, 0, -1), n_bases=1)
    )
    results = design.evaluate(blocks, covariance=True)
    cov = results[0].covariance * lonely_average_factor(design, results[-1])
    nu = float(results[-1].degf()[0])
    dfree = nu if df_ == "design" else float(df_)

    cols: dict[str, list[Any]] = {
        k: []
        for k in (
            "variable",
            "level",
            "estimate",
            "se",
            "n",
            "n_weighted",
            "missing",
            "first_estimate",
            "second_estimate",
        )
    }
    empties: list[np.ndarray] = []
    offset = 0
    for block, res, name, lv, miss in zip(
        blocks[:-1], results[:-1], names, level_names, missing, strict=True
    ):
        per = block.per
        theta = res.estimate  # (2, per)
        a = offset + np.arange(per)
        b = offset + per + np.arange(per)
        var = cov[a, a] + cov[b, b] - 2 * cov[a, b]
        present = res.totals.n_positive > 0
        est = theta[0] - theta[1]
        empty = ~(present[0] & present[1])
        est = np.where(empty, np.nan, est)
        cols["variable"] += [name] * per
        cols["level"] += lv
        cols["estimate"] += est.tolist()
        cols["se"] += np.where(empty, np.nan, np.sqrt(np.maximum(var, 0.0))).tolist()
        cols["n"] += [int(res.totals.n_positive.sum())] * per
        cols["n_weighted"] += [float(res.totals.weight_sum.sum())] * per
        cols["missing"] += [int(miss.sum())] * per
        cols["first_estimate"] += theta[0].tolist()
        cols["second_estimate"] += theta[1].tolist()
        empties.append(np.full(per, empty))
        offset += 2 * per
    k = len(cols["estimate"])
    estimate = np.asarray(cols["estimate"], dtype=float)
    se = np.asarray(cols["se"], dtype=float)
    crit = _critical(np.full(k, dfree), conf_level)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.where(se > 0, estimate / se, np.nan)
    empty = np.concatenate(empties) if empties else np.zeros(0, bool)
    flags = _flag_lists(
        {
            "empty_domain": empty,
            "zero_variance": (se == 0) & ~empty,
            "no_degrees_of_freedom": np.full(k, not dfree > 0),
        },
        k,
    )
    label_a, label_b = domains.labels[ia], domains.labels[ib]
    cols.update(
        domain=[f"{label_a} - {label_b}"] * k,
        estimator=["difference"] * k,
        ci_low=(estimate - crit * se).tolist(),
        ci_high=(estimate + crit * se).tolist(),
        ci_method=["normal" if math.isinf(dfree) else "t"] * k,
        df=[dfree] * k,
        statistic=stat.tolist(),
        p_value=_two_sided(stat, np.full(k, dfree)).tolist(),
        flags=flags,
    )
    return Estimates(
        cols,
        conf_level=conf_level,
        estimator="difference",
        design=design.describe(),
        where=domains.where,
    )


def _pair_names(first: Any, second: Any) -> tuple[list[Any], list[Any]]:
    """Two lists of paired variables, from names, lists, or a questionnaire Pair."""
    from volna.questionnaire import Pair

    if isinstance(first, Pair) and second is None:
        a, b = first.first, first.second
        if a.type == "multiple":
            return [a.option_column(c) for c in a.codes], [b.option_column(c) for c in a.codes]
        return [a.name], [b.name]
    if second is None:
        raise DesignError("paired_difference needs two variables (first, second) or a Pair")
    firsts, seconds = _as_list(first), _as_list(second)
    if len(firsts) != len(seconds):
        raise DesignError(
            f"first has {len(firsts)} variables but second has {len(seconds)}; pair them one to one"
        )
    return firsts, seconds


def paired_difference(
    design: SurveyDesign,
    first: Any,
    second: Any = None,
    *,
    by: Any = None,
    where: Any = None,
    conf_level: float = 0.95,
    df: float | str | None = None,
) -> Estimates:
    """Mean of ``first - second`` over the respondents who answered both (before/after).

    The same respondents answer both items, so the difference is estimated as the mean
    of the per-respondent differences: R's ``svymean(~I(first - second), design,
    na.rm=TRUE)``. True/false items give the change in a proportion. ``first`` and
    ``second`` may be lists (paired one to one) or ``first`` a questionnaire ``Pair``
    (a multi-response pair compares each option). Intervals and p-values are normal
    unless ``df`` says otherwise (see :func:`difference`); ``first_estimate`` and
    ``second_estimate`` are the two means on the same respondents.

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> d = SurveyDesign.from_frame(pl.DataFrame({"before": [1.0, 2.0, 3.0, None],
    ...                                          "after": [2.0, 2.0, 5.0, 1.0]}))
    >>> est = paired_difference(d, "after", "before")
    >>> est.value(), est.value("n")
    (1.0, 3)
    """
    firsts, seconds = _pair_names(first, second)
    df_ = _df_choice(df, "normal")
    series, means_a, means_b = [], [], []
    for a, b in zip(firsts, seconds, strict=True):
        ca, cb = design.column(a), design.column(b)
        for c in (ca, cb):
            if c.kind == "categorical":
                raise DesignError(
                    f"column {c.name}: a paired difference needs numbers or true/false, "
                    "got categories"
                )
        both = ~(ca.missing | cb.missing)
        name = f"{ca.name} - {cb.name}"
        series.append(pl.Series(name, np.where(both, ca.values - cb.values, np.nan)))
        means_a.append(pl.Series(f"{name}#a", np.where(both, ca.values, np.nan)))
        means_b.append(pl.Series(f"{name}#b", np.where(both, cb.values, np.nan)))
    # one pass: the differences and both means on the same respondents
    est = design.mean(
        series + means_a + means_b,
        by=by,
        where=where,
        conf_level=conf_level,
        df=None if df_ == math.inf else df_,
        deff=False,
    )
    rows = len(est) // 3
    values = np.asarray(est.column("estimate"), dtype=float)
    head = rebuild(
        _head(est, rows),
        columns={
            "estimator": ["paired difference"] * rows,
            "first_estimate": values[rows : 2 * rows].tolist(),
            "second_estimate": values[2 * rows :].tolist(),
        },
        estimator="paired difference",
    )
    return with_test(head)


def _head(est: Estimates, rows: int) -> Estimates:
    """The first ``rows`` rows of a table."""
    frame = est.to_polars().head(rows)
    by_keys = {key for name in est.by for key in (name, f"by:{name}")} - set(COLUMNS)
    cols = {name: frame.get_column(name).to_list() for name in frame.columns if name not in by_keys}
    by_columns = {name: est.column(name)[:rows] for name in est.by}
    return Estimates(
        cols,
        by=est.by,
        by_columns=by_columns,
        conf_level=est.conf_level,
        estimator=est.estimator,
        design=est.design,
        where=est.where,
    )


# ---------------------------------------------------------------------------------------
# benchmarks


def against_benchmark(
    design: SurveyDesign | None,
    estimate: Any,
    value: float | Sequence[float],
    *,
    level: Any = None,
    se: float | Sequence[float] | None = None,
    by: Any = None,
    where: Any = None,
    conf_level: float = 0.95,
    df: float | str | None = None,
) -> Estimates:
    """An estimate against an external figure: the difference, its interval and a test.

    ``estimate`` is a variable of the design (numeric: its mean; true/false: the
    proportion true; categorical: the proportion of ``level``) or an existing result
    table (every row is compared). ``value`` is the benchmark in the estimate's units
    (a proportion, not a percentage), one number or one per row; ``se`` its standard
    error when the benchmark is itself a sample estimate, from an independent sample:
    ``se = sqrt(se_survey^2 + se_benchmark^2)``. The test is ``(estimate - value) / se``,
    normal unless ``df`` says otherwise: ``"design"`` takes the design degrees of
    freedom of each row (R's ``svyttest(I(y - value) ~ 0)`` uses ``degf - 1``).

    The table holds the difference in ``estimate``; ``survey_estimate``, ``benchmark``
    and ``benchmark_se`` keep the parts.

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> d = SurveyDesign.from_frame(pl.DataFrame({"voted": [True, False, True, True]}))
    >>> est = against_benchmark(d, "voted", 0.5)
    >>> est.value(), est.value("benchmark")
    (0.25, 0.5)
    """
    df_ = _df_choice(df, "normal")
    if isinstance(estimate, Estimates):
        base = estimate
    else:
        if design is None:
            raise DesignError("against_benchmark needs the design to estimate a variable")
        col = design.column(estimate)
        common = {
            "by": by,
            "where": where,
            "conf_level": conf_level,
            "df": None if df_ == math.inf else df_,
        }
        if col.kind == "numeric":
            base = design.mean(estimate, **common)
        else:
            if col.kind == "categorical" and level is None:
                raise DesignError(
                    f"column {col.name}: name the level compared with the benchmark (level=)"
                )
            levels = [True] if col.kind == "boolean" else [level]
            base = design.proportion(estimate, levels=levels, ci="wald", **common)
    k = len(base)
    survey = np.asarray(base.column("estimate"), dtype=float)
    survey_se = np.asarray(base.column("se"), dtype=float)
    bench = np.broadcast_to(np.asarray(value, dtype=float), (k,))
    bench_se = np.broadcast_to(np.asarray(0.0 if se is None else se, dtype=float), (k,))
    if df_ == "design":
        dfree = np.asarray([math.inf if v is None else v for v in base.column("df")], float)
    else:
        dfree = np.full(k, float(df_))
    diff = survey - bench
    total_se = np.sqrt(survey_se**2 + bench_se**2)
    crit = _critical(dfree, conf_level)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.where(total_se > 0, diff / total_se, np.nan)
    return rebuild(
        base,
        columns={
            "estimate": diff.tolist(),
            "se": total_se.tolist(),
            "ci_low": (diff - crit * total_se).tolist(),
            "ci_high": (diff + crit * total_se).tolist(),
            "ci_method": ["normal" if math.isinf(d) else "t" for d in dfree],
            "df": dfree.tolist(),
            "deff": [None] * k,
            "estimator": ["difference from benchmark"] * k,
            "statistic": stat.tolist(),
            "p_value": _two_sided(stat, dfree).tolist(),
            "survey_estimate": survey.tolist(),
            "benchmark": bench.tolist(),
            "benchmark_se": ([None] * k if se is None else bench_se.tolist()),
        },
        estimator="difference from benchmark",
    )
