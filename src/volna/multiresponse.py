"""Multi-response sets ("select all that apply"): shares, counts, covariance and tests.

A multi-response question has one true/false column per option in the canonical
response table (``fears/persecution``, ``fears/conscription``...), all null when the
question was not answered (skipped, or not asked). The share choosing an option is
estimated among those who answered the set: the ratio of the option indicator's
total to the answered indicator's total, R's ``svyratio(~option, ~answered)`` -- the
same as the proportion of the option within the domain of answerers. An answerer whose
option column is null (a partial record) counts as not choosing it.

Everything goes through the design's one variance path: the options are estimated in
one pass (one ratio block per option, every ``by`` domain at once) with their full
covariance, from which the tests below are built.

================================  ========================================================
volna                             R (survey), ``a`` = ``subset(design, answered)``
================================  ========================================================
``option_shares``                 ``svyratio(~o1+o2, ~answered, design, covmat=TRUE)``,
                                  ``svyby(~o1+o2, ~g, a, svymean, covmat=TRUE)``
``options_chosen``                ``svymean(~n_chosen, a)``
``option_difference``             ``svycontrast(<the shares>, c(1, -1))``
``profile_test``                  Wald test of ``svycontrast`` s of ``svyby`` shares (below)
================================  ========================================================

>>> import polars as pl
>>> from volna.design import SurveyDesign
>>> frame = pl.DataFrame({
...     "fears/war": [True, True, False, None, True],
...     "fears/prison": [False, True, False, None, True],
... })
>>> design = SurveyDesign.from_frame(frame)
>>> option_shares(design, ["fears/war", "fears/prison"]).to_polars().select(
...     "variable", "level", "estimate", "n")
shape: (2, 4)
┌──────────┬────────┬──────────┬─────┐
│ variable ┆ level  ┆ estimate ┆ n   │
│ ---      ┆ ---    ┆ ---      ┆ --- │
│ str      ┆ str    ┆ f64      ┆ i64 │
╞══════════╪════════╪══════════╪═════╡
│ fears    ┆ war    ┆ 0.75     ┆ 3   │
│ fears    ┆ prison ┆ 0.5      ┆ 2   │
└──────────┴────────┴──────────┴─────┘
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from scipy import stats

from volna.compare import (
    _critical,
    _f_sf,
    _flag_lists,
    _two_sided,
    lonely_average_factor,
    rebuild,
)
from volna.design import DesignError, describe_spec
from volna.estimate import _df_choice
from volna.questionnaire import Question
from volna.results import Estimates
from volna.variance import RatioBlock

if TYPE_CHECKING:
    from volna.design import SurveyDesign

#: tests of equal profiles across groups
PROFILE_TESTS = {"wald": "Wald", "adjwald": "adjWald", "chisq": "Chisq"}


@dataclass(frozen=True)
class ResponseSet:
    """The options of one multi-response question: columns, codes, exclusive options.

    Build it from a questionnaire :class:`~volna.questionnaire.Question` of type
    ``multiple`` or from a list of option columns (``set/option`` names give the set
    and option names). Exclusive options ("none of these") are reported with the
    others but not counted among the options chosen.

    >>> rs = ResponseSet.of(["fears/war", "fears/prison"])
    >>> rs.name, rs.options
    ('fears', ('war', 'prison'))
    """

    name: str
    columns: tuple[str, ...]
    options: tuple[str, ...]
    exclusive: tuple[str, ...] = ()

    @classmethod
    def of(cls, spec: Any, *, name: str | None = None) -> ResponseSet:
        """A response set from a Question, a list of columns, or a ResponseSet."""
        if isinstance(spec, ResponseSet):
            return spec if name is None else cls(name, spec.columns, spec.options, spec.exclusive)
        if isinstance(spec, Question):
            if spec.type != "multiple":
                raise DesignError(
                    f"question {spec.name}: type {spec.type!r} is not a multi-response set; "
                    "expected a question of type multiple"
                )
            return cls(
                name or spec.name,
                tuple(spec.option_column(c) for c in spec.codes),
                spec.codes,
                tuple(c.code for c in spec.choices if c.exclusive),
            )
        columns = [spec] if isinstance(spec, str) else list(spec)
        if not columns or not all(isinstance(c, str) for c in columns):
            raise DesignError(
                "a multi-response set is a Question of type multiple or a list of its "
                f"option columns; got {spec!r}"
            )
        if len(set(columns)) != len(columns):
            raise DesignError(f"options {columns}: a column is listed twice")
        prefixes = {c.split("/", 1)[0] for c in columns if "/" in c}
        if len(prefixes) == 1 and all("/" in c for c in columns):
            options = tuple(c.split("/", 1)[1] for c in columns)
            return cls(name or prefixes.pop(), tuple(columns), options)
        return cls(name or "options", tuple(columns), tuple(columns))

    def indicators(self, design: SurveyDesign) -> tuple[np.ndarray, np.ndarray]:
        """(n, K) 0/1 choices and the (n,) rows that answered the set (any option known)."""
        values = []
        for column in self.columns:
            col = design.column(column)
            v = col.values
            if col.kind == "categorical" or (
                col.kind == "numeric" and not np.all(np.isin(v[~np.isnan(v)], (0.0, 1.0)))
            ):
                raise DesignError(
                    f"column {column}: an option of a multi-response set must be true/false "
                    "(or 0/1), null when the set was not answered"
                )
            values.append(v)
        matrix = np.column_stack(values)
        known = ~np.isnan(matrix)
        return np.where(known, matrix, 0.0), known.any(axis=1)


def _answered_domain(
    design: SurveyDesign, rs: ResponseSet, where: Any, answered: np.ndarray
) -> pl.Series:
    """The rows in ``where`` (and the design's subset) that answered the set, as a mask."""
    inside = design.domains(None, where).codes >= 0
    text = f"answered {rs.name}"
    if where is not None:
        text = f"{describe_spec(where)} & {text}"
    return pl.Series(text, inside & answered)


def option_shares(
    design: SurveyDesign,
    options: Any,
    *,
    by: Any = None,
    where: Any = None,
    ci: str = "logit",
    conf_level: float = 0.95,
    df: float | str | None = None,
) -> Estimates:
    """The share of those who answered the set choosing each option, in every domain.

    One row per option and domain: ``variable`` is the set, ``level`` the option, ``n``
    the answerers choosing it and ``missing`` the respondents of the domain who did
    not answer the set. Intervals as :meth:`SurveyDesign.proportion` (``ci``, ``df``).
    ``Estimates.vcov`` holds the covariance matrix of all the shares, in row order
    (options within the same domain are correlated: the same people choose them).

    ``options`` is a questionnaire Question of type ``multiple``, a list of option
    columns, or a :class:`ResponseSet`.

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> d = SurveyDesign.from_frame(pl.DataFrame({"s/a": [True, False, True, None],
    ...                                          "s/b": [True, True, False, None]}))
    >>> est = option_shares(d, ["s/a", "s/b"])
    >>> [round(x, 4) for x in est.column("estimate")], est.vcov.shape
    ([0.6667, 0.6667], (2, 2))
    """
    rs = ResponseSet.of(options)
    chosen, answered = rs.indicators(design)
    domain = _answered_domain(design, rs, where, answered)
    series = [
        pl.Series(code, chosen[:, j].astype(bool)).set(pl.Series(~answered), None)
        for j, code in enumerate(rs.options)
    ]
    est = design.proportion(
        series, by=by, where=domain, ci=ci, conf_level=conf_level, df=df, vcov=True
    )
    # respondents of each domain who did not answer the set
    domains = design.domains(by, where)
    skipped = np.bincount(
        domains.codes[(domains.codes >= 0) & ~answered], minlength=domains.n
    ).astype(int)
    by_label = dict(zip(domains.labels, skipped.tolist(), strict=True))
    vcov = est.vcov
    if design.lonely_psu == "average" and not design.is_replicate:
        # the engine's covariance leaves out the "average" rule's factor: apply the one
        # of the answerers' domain, as R's svyby(..., subset(design, answered), covmat=TRUE)
        block = RatioBlock(base=np.where(domain.to_numpy(), 0, -1), n_bases=1)
        vcov = vcov * lonely_average_factor(design, design.evaluate([block])[0])
    return rebuild(
        est,
        columns={
            "variable": [rs.name] * len(est),
            "level": est.column("variable"),
            "missing": [by_label.get(d, 0) for d in est.column("domain")],
        },
        where=domain.name,
        vcov=vcov,
    )


def options_chosen(
    design: SurveyDesign,
    options: Any,
    *,
    by: Any = None,
    where: Any = None,
    conf_level: float = 0.95,
    df: float | str | None = None,
) -> Estimates:
    """Mean number of options chosen by those who answered the set (exclusive ones aside).

    R: ``svymean(~n_chosen, subset(design, answered))``.

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> d = SurveyDesign.from_frame(pl.DataFrame({"s/a": [True, False, True, None],
    ...                                          "s/b": [True, True, False, None]}))
    >>> round(options_chosen(d, ["s/a", "s/b"]).value(), 4)
    1.3333
    """
    rs = ResponseSet.of(options)
    chosen, answered = rs.indicators(design)
    counted = np.array([o not in rs.exclusive for o in rs.options])
    count = np.where(answered, chosen[:, counted].sum(axis=1), np.nan)
    domain = _answered_domain(design, rs, where, answered)
    series = pl.Series(f"{rs.name}: options chosen", count)
    return design.mean(series, by=by, where=domain, conf_level=conf_level, df=df)


def _answerers(design: SurveyDesign, domains: Any, answered: np.ndarray):
    """Answerers with a positive weight per domain, and their weighted count."""
    rows = (domains.codes >= 0) & answered & (design.weights > 0)
    n = np.bincount(domains.codes[rows], minlength=domains.n)
    nw = np.bincount(domains.codes[rows], weights=design.weights[rows], minlength=domains.n)
    return n, nw


def option_difference(
    design: SurveyDesign,
    options: Any,
    first: str,
    second: str,
    *,
    by: Any = None,
    where: Any = None,
    conf_level: float = 0.95,
    df: float | str | None = None,
) -> Estimates:
    """Is one option chosen more often than another? Share of ``first`` minus ``second``.

    The same respondents choose both, so the standard error uses the covariance of the
    two shares (a paired comparison): ``Var(a) + Var(b) - 2 Cov(a, b)``, as R's
    ``svycontrast(svyratio(~a+b, ~answered, design, covmat=TRUE), c(1, -1))``. One row
    per domain with ``statistic`` and a two-sided ``p_value``: normal unless ``df`` is
    ``"design"`` (the design degrees of freedom of the domain's answerers) or a number.

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> d = SurveyDesign.from_frame(pl.DataFrame({"s/a": [True, True, True, False],
    ...                                          "s/b": [True, False, False, False]}))
    >>> option_difference(d, ["s/a", "s/b"], "a", "b").value()
    0.5
    """
    rs = ResponseSet.of(options)
    for code in (first, second):
        if code not in rs.options:
            raise DesignError(
                f"set {rs.name}: no option {code!r}; options are {', '.join(rs.options)}"
            )
    df_ = _df_choice(df, "normal")
    shares = option_shares(design, rs, by=by, where=where, conf_level=conf_level, df="design")
    K = len(rs.options)
    B = len(shares) // K
    ia = rs.options.index(first) * B + np.arange(B)
    ib = rs.options.index(second) * B + np.arange(B)
    theta = np.asarray(shares.column("estimate"), dtype=float)
    V = shares.vcov
    diff = theta[ia] - theta[ib]
    var = V[ia, ia] + V[ib, ib] - 2 * V[ia, ib]
    se = np.sqrt(np.maximum(var, 0.0))
    if df_ == "design":
        dfree = np.asarray(shares.column("df"), dtype=float)[ia]
    else:
        dfree = np.full(B, float(df_))
    crit = _critical(dfree, conf_level)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.where(se > 0, diff / se, np.nan)
    _, answered = rs.indicators(design)
    domains = design.domains(by, where)
    n, nw = _answerers(design, domains, answered)
    labels = shares.column("domain")[:B]
    order = [domains.labels.index(d) for d in labels]
    empty = n[order] == 0
    cols = {
        "variable": [rs.name] * B,
        "level": [f"{first} - {second}"] * B,
        "domain": labels,
        "estimator": ["difference"] * B,
        "estimate": diff.tolist(),
        "se": np.where(empty, np.nan, se).tolist(),
        "ci_low": (diff - crit * se).tolist(),
        "ci_high": (diff + crit * se).tolist(),
        "ci_method": ["normal" if math.isinf(d) else "t" for d in dfree],
        "df": dfree.tolist(),
        "n": n[order].tolist(),
        "n_weighted": nw[order].tolist(),
        "missing": shares.column("missing")[:B],
        "flags": _flag_lists(
            {
                "empty_domain": empty,
                "zero_variance": (se == 0) & ~empty,
                "no_degrees_of_freedom": ~(dfree > 0),
            },
            B,
        ),
        "statistic": stat.tolist(),
        "p_value": _two_sided(stat, dfree).tolist(),
        "first_estimate": theta[ia].tolist(),
        "second_estimate": theta[ib].tolist(),
    }
    by_columns = {name: shares.column(name)[:B] for name in shares.by}
    return Estimates(
        cols,
        by=shares.by,
        by_columns=by_columns,
        conf_level=conf_level,
        estimator="difference",
        design=design.describe(),
        where=shares.where,
    )


def profile_test(
    design: SurveyDesign,
    options: Any,
    by: Any,
    *,
    where: Any = None,
    statistic: str | Sequence[str] = "adjWald",
) -> Estimates:
    """Do the groups of ``by`` choose the options differently? A design-based Wald test.

    Method: the vector of option shares of every group, ``p[k, g]`` (K options, G
    groups, among answerers), is estimated in one pass with its full covariance ``V``
    (options and groups are all correlated through the design). The null hypothesis
    is that every group has the same profile: ``p[k, g] - p[k, 1] = 0`` for all k and
    g > 1, a vector ``y = C p`` of ``K (G - 1)`` contrasts. The Wald statistic is
    ``X2 = y' (C V C')^+ y`` with ``q`` the rank of ``C V C'``: options nobody -- or
    everybody -- chose in some groups add no information and drop out of the rank, as
    do contrasts beyond what few PSUs can estimate (flag ``reduced_rank``).
    With ``df`` the design degrees of freedom of the answerers (PSUs minus strata, as
    R's ``degf``):

    * ``"adjWald"`` (default): ``X2 (df - q + 1) / (q df)`` on F(q, df - q + 1), the
      adjusted Wald test that R's ``svychisq(statistic="adjWald")`` uses for tables;
    * ``"Wald"``: ``X2 / q`` on F(q, df), as ``svychisq(statistic="Wald")`` and
      ``regTermTest``;
    * ``"Chisq"``: ``X2`` on chi-square with q degrees of freedom (large samples).

    R equivalent: ``b <- svyby(~o1+o2, ~g, subset(design, answered), svymean,
    covmat=TRUE)``; ``y <- svycontrast(b, <the K(G-1) contrasts>)``;
    ``X2 <- coef(y) %*% solve(vcov(y), coef(y))``. This is not the Rao-Scott test of
    multiple marginal independence (Bilder and Loughin), which needs the multinomial
    covariance of the option combinations; with few PSUs and many options the
    adjusted Wald test is the safer choice, and with ``q > df`` it is undefined.

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> d = SurveyDesign.from_frame(pl.DataFrame({
    ...     "g": ["x", "x", "x", "y", "y", "y"],
    ...     "s/a": [True, False, True, True, False, True],
    ...     "s/b": [False, False, True, False, False, True]}))
    >>> profile_test(d, ["s/a", "s/b"], "g").value("statistic")
    0.0
    """
    names = [statistic] if isinstance(statistic, str) else list(statistic)
    wanted = []
    for name in names:
        key = PROFILE_TESTS.get(str(name).lower())
        if key is None:
            raise DesignError(
                f"statistic={name!r} is not a profile test; expected one of "
                + ", ".join(PROFILE_TESTS.values())
            )
        wanted.append(key)
    rs = ResponseSet.of(options)
    shares = option_shares(design, rs, by=by, where=where, df="design")
    K = len(rs.options)
    G = len(shares) // K
    theta = np.asarray(shares.column("estimate"), dtype=float)
    V = shares.vcov
    _, answered = rs.indicators(design)
    domains = design.domains(by, where)
    n, nw = _answerers(design, domains, answered)
    labels = shares.column("domain")[:G]
    order = [domains.labels.index(d) for d in labels]
    present = n[order] > 0
    # a group emptied by `where` is simply not compared; one whose members skipped the
    # set is flagged
    in_domain = np.bincount(domains.codes[domains.codes >= 0], minlength=domains.n)[order] > 0
    flags = ["empty_domain"] if np.any(in_domain & ~present) else []
    groups = np.flatnonzero(present)
    X2, q = math.nan, 0
    if len(groups) >= 2:
        # the shares of the groups compared, option-major; contrasts against the first
        use = (np.arange(K)[:, None] * G + groups[None, :]).ravel()
        theta_use, V_use = theta[use], V[np.ix_(use, use)]
        m = len(groups)
        rows = np.arange(K * (m - 1))
        k_idx = np.repeat(np.arange(K), m - 1)
        C = np.zeros((K * (m - 1), K * m))
        C[rows, k_idx * m + np.tile(np.arange(1, m), K)] = 1.0
        C[rows, k_idx * m] = -1.0
        y = C @ theta_use
        S = C @ V_use @ C.T
        values, vectors = np.linalg.eigh(S)
        keep = values > values.max(initial=0.0) * 1e-10
        q = int(keep.sum())
        if q < len(y):
            # structural zeros, or more contrasts than the design has degrees of freedom
            flags.append("reduced_rank")
        if q:
            z = vectors[:, keep].T @ y
            X2 = float(np.sum(z * z / values[keep]))
    else:
        flags.append("single_group")
    nu = design.subset(_answered_domain(design, rs, where, answered)).degf
    if not nu > 0:
        flags.append("no_degrees_of_freedom")
    cols: dict[str, list[Any]] = {
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
            "n",
            "n_weighted",
            "flags",
            "compared",
        )
    }
    for key in wanted:
        if key == "Chisq":
            stat, ndf, ddf, dfree = X2, math.nan, math.nan, float(q)
            p = float(stats.chi2.sf(X2, q)) if q else math.nan
        elif key == "Wald":
            stat, ndf, ddf, dfree = X2 / q if q else math.nan, float(q), nu, math.nan
            p = _f_sf(stat, q, nu)
        else:
            ddf = nu - q + 1
            stat = X2 * ddf / (q * nu) if q and nu > 0 else math.nan
            ndf, dfree = float(q), math.nan
            p = _f_sf(stat, q, ddf)
        cols["variable"].append(rs.name)
        cols["estimator"].append("test of equal profiles")
        cols["test"].append(key)
        cols["statistic"].append(stat)
        cols["df"].append(dfree)
        cols["ndf"].append(ndf)
        cols["ddf"].append(ddf)
        cols["p_value"].append(p)
        cols["n"].append(int(n.sum()))
        cols["n_weighted"].append(float(nw.sum()))
        cols["flags"].append(list(flags))
        cols["compared"].append(", ".join(str(labels[g]) for g in groups))
    return Estimates(
        cols,
        conf_level=shares.conf_level,
        estimator="test of equal profiles",
        design=design.describe(),
        where=shares.where,
    )
