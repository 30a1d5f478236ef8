"""Design-based regression: generalised linear models with design-based standard errors.

:func:`glm` fits a linear, logistic or Poisson model by iteratively reweighted least
squares with the sampling weights, as R's ``svyglm`` does, and takes its standard
errors from the design's one variance path (:meth:`volna.design.SurveyDesign.evaluate`):

* **linearization** -- the coefficients' influence values
  ``(X'WX)^-1 x_i w_i (y_i - mu_i) mu'(eta_i) / V(mu_i)`` are the numerators of a
  block of totals; the design sums them by PSU within strata (fpc, lonely PSU rules,
  calibration residuals) and returns their covariance: the sandwich estimator;
* **replicate weights** -- the model is refitted under every replicate at once
  (vectorised IRLS steps from the full-sample fit, to convergence) and the spread of
  the replicate coefficients, with the design's ``scale``, ``rscales`` and ``mse``,
  is the covariance (R's ``svrVar``).

A domain (``where=``) keeps the full design: rows outside it, and rows missing a
variable of the model, stay in the design with no influence (R: ``svyglm`` on
``subset(design, ...)``, ``na.omit``).

Models are written as formulas, without evaluating any code: ``"y ~ age + sector *
gender"``; ``a:b`` is an interaction, ``a*b`` means ``a + b + a:b``, ``- 1`` (or
``+ 0``) drops the intercept, ``offset(x)`` and ``offset(log(x))`` add an offset, and
a column name that is not a plain word is written in backticks (`` `fears/war` ``).
Text and true/false columns are categorical, with R's treatment contrasts against
their first level (levels in the order volna gives them: a question's choices, else
sorted).

>>> import polars as pl
>>> from volna.design import SurveyDesign
>>> frame = pl.DataFrame({
...     "psu": [1, 1, 2, 2, 3, 3, 4, 4],
...     "w": [1.0, 2.0, 1.0, 2.0, 1.0, 1.0, 2.0, 2.0],
...     "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
...     "y": [1.1, 2.3, 2.8, 4.4, 4.9, 6.2, 7.1, 7.7],
... })
>>> d = SurveyDesign.from_frame(frame, ids="psu", weights="w")
>>> fit = d.glm("y ~ x")
>>> fit.coefficients.round(4).tolist()
[0.3379, 0.9464]
>>> fit.df_residual
2.0
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from volna.design import DesignError, factorize, label
from volna.results import Estimates
from volna.variance import RatioBlock, replicate_covariance

if TYPE_CHECKING:
    from volna.design import SurveyDesign


class ModelError(DesignError):
    """A model cannot be fitted as asked: its formula, a variable or the family.

    >>> str(ModelError("formula 'y ~': no terms after '~'"))
    "formula 'y ~': no terms after '~'"
    """


# ---------------------------------------------------------------------------------------
# families


@dataclass(frozen=True)
class Family:
    """A GLM family with its canonical link (the links ``svyglm`` uses by default)."""

    name: str
    link: str

    def linkinv(self, eta: np.ndarray) -> np.ndarray:
        if self.link == "identity":
            return eta
        if self.link == "logit":
            # R's plogis clamps to keep mu inside (0, 1)
            e = np.exp(-np.abs(eta))
            mu = np.where(eta >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
            eps = np.finfo(float).eps
            return np.clip(mu, eps, 1 - eps)
        return np.maximum(np.exp(eta), np.finfo(float).eps)

    def linkfun(self, mu: np.ndarray) -> np.ndarray:
        if self.link == "identity":
            return mu
        if self.link == "logit":
            return np.log(mu / (1 - mu))
        return np.log(mu)

    def mu_eta(self, eta: np.ndarray, mu: np.ndarray) -> np.ndarray:
        if self.link == "identity":
            return np.ones_like(eta)
        if self.link == "logit":
            return np.maximum(mu * (1 - mu), np.finfo(float).eps)
        return mu

    def variance(self, mu: np.ndarray) -> np.ndarray:
        if self.link == "identity":
            return np.ones_like(mu)
        if self.link == "logit":
            return mu * (1 - mu)
        return mu

    def deviance(self, y: np.ndarray, mu: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Weighted deviance ``sum w d(y, mu)`` over axis 0 (R's ``dev.resids``)."""
        if self.link == "identity":
            return (w * (y - mu) ** 2).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ylogy = np.where(y > 0, y * np.log(y / mu), 0.0)
            if self.link == "logit":
                other = np.where(y < 1, (1 - y) * np.log((1 - y) / (1 - mu)), 0.0)
                return (2 * w * (ylogy + other)).sum(axis=0)
            return (2 * w * (ylogy - (y - mu))).sum(axis=0)

    def start(self, y: np.ndarray, w: np.ndarray) -> np.ndarray:
        """R's ``mustart`` of the family's ``initialize`` (prior weights ``w``)."""
        if self.link == "identity":
            return y.copy()
        if self.link == "logit":
            return (w * y + 0.5) / (w + 1)
        return y + 0.1

    @property
    def ratio_name(self) -> str | None:
        """What ``exp(coefficient)`` is called, or None for the identity link."""
        return {"logit": "odds ratio", "log": "rate ratio"}.get(self.link)


FAMILIES = {
    "gaussian": Family("gaussian", "identity"),
    "binomial": Family("binomial", "logit"),
    "quasibinomial": Family("quasibinomial", "logit"),
    "poisson": Family("poisson", "log"),
    "quasipoisson": Family("quasipoisson", "log"),
}


def _family(family: str | Family) -> Family:
    if isinstance(family, Family):
        return family
    key = str(family).lower().replace("-", "").replace("_", "")
    if key in ("linear", "normal"):
        key = "gaussian"
    if key in ("logistic", "logit"):
        key = "quasibinomial"
    if key not in FAMILIES:
        raise ModelError(
            f"family {family!r}: expected one of {', '.join(FAMILIES)} "
            "(identity, logit and log links)"
        )
    return FAMILIES[key]


# ---------------------------------------------------------------------------------------
# formulas


@dataclass(frozen=True)
class Formula:
    """A parsed model formula: response, terms (tuples of variables), intercept, offset.

    >>> f = parse_formula("y ~ age + sector * gender + offset(log(n))")
    >>> f.response, f.terms, f.offset
    ('y', (('age',), ('sector',), ('gender',), ('sector', 'gender')), ('n', True))
    >>> parse_formula("y ~ a:b - 1").intercept
    False
    """

    response: str
    terms: tuple[tuple[str, ...], ...]
    intercept: bool = True
    offset: tuple[str, bool] | None = None  # (column, take the log)

    def term_label(self, term: tuple[str, ...]) -> str:
        return ":".join(term)


_TOKEN = re.compile(r"\s*(?:(`[^`]+`)|([A-Za-z_.][A-Za-z0-9_.]*)|(\d+)|([~+*:()\-]))")


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ModelError(
                f"formula {text!r}: cannot read {text[pos:].strip()[:20]!r}; expected "
                "column names joined by +, *, : and -, with backticks around other names"
            )
        quoted, name, number, op = m.groups()
        if quoted:
            out.append("N" + quoted[1:-1])
        elif name:
            out.append("N" + name)
        elif number:
            out.append("#" + number)
        else:
            out.append(op)
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str, tokens: list[str]) -> None:
        self.text, self.t, self.i = text, tokens, 0
        self.order: list[str] = []
        self.offset: tuple[str, bool] | None = None
        self.intercept = True

    def error(self, what: str) -> ModelError:
        return ModelError(f"formula {self.text!r}: {what}")

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise self.error(f"expected {expected or 'a term'} at the end")
        self.i += 1
        return tok

    def expr(self) -> list[frozenset[str]]:
        terms = self.product()
        while self.peek() in ("+", "-"):
            op = self.take()
            if self.peek() in ("#0", "#1"):
                num = self.take()
                self.intercept = (op == "+") == (num == "#1")
                continue
            right = self.product()
            if op == "+":
                terms += [t for t in right if t not in terms]
            else:
                terms = [t for t in terms if t not in right]
        return terms

    def product(self) -> list[frozenset[str]]:
        terms = self.interaction()
        while self.peek() == "*":
            self.take()
            right = self.interaction()
            crossed = [a | b for a in terms for b in right]
            for t in right + crossed:
                if t not in terms:
                    terms.append(t)
        return terms

    def interaction(self) -> list[frozenset[str]]:
        terms = self.atom()
        while self.peek() == ":":
            self.take()
            right = self.atom()
            out: list[frozenset[str]] = []
            for t in (a | b for a in terms for b in right):
                if t not in out:
                    out.append(t)
            terms = out
        return terms

    def atom(self) -> list[frozenset[str]]:
        tok = self.take()
        if tok == "(":
            inner = self.expr()
            self.take(")")
            return inner
        if tok in ("#0", "#1"):
            self.intercept = tok == "#1"
            return []
        if tok.startswith("N"):
            name = tok[1:]
            if name == "offset" and self.peek() == "(":
                self.take("(")
                inner = self.take()
                log = False
                if inner == "Nlog" and self.peek() == "(":
                    self.take("(")
                    inner = self.take()
                    self.take(")")
                    log = True
                if not inner.startswith("N"):
                    raise self.error("offset() takes a column name or log(column)")
                self.take(")")
                if self.offset is not None:
                    raise self.error("only one offset() is allowed")
                self.offset = (inner[1:], log)
                return []
            if self.peek() == "(":
                raise self.error(
                    f"{name}(...) is not supported; compute the column first "
                    "(only offset(x) and offset(log(x)) are read)"
                )
            if name not in self.order:
                self.order.append(name)
            return [frozenset([name])]
        raise self.error(f"unexpected {tok.lstrip('N#')!r}")


def parse_formula(formula: str) -> Formula:
    """Read ``"y ~ a + b * c + a:d - 1 + offset(log(n))"`` without evaluating anything.

    Terms come in R's order: main effects, then two-way interactions, and so on, each in
    the order of first appearance; the variables of a term in the order they first
    appear in the formula.

    >>> parse_formula("y ~ b:a + a").terms
    (('a',), ('b', 'a'))
    """
    if not isinstance(formula, str) or formula.count("~") != 1:
        raise ModelError(
            f"formula {formula!r}: expected one '~' between the response and the terms, "
            "e.g. 'stay ~ age + sector'"
        )
    left, right = formula.split("~")
    lt = _tokens(left)
    if len(lt) != 1 or not lt[0].startswith("N"):
        raise ModelError(f"formula {formula!r}: the response must be one column name")
    tokens = _tokens(right)
    if not tokens:
        raise ModelError(f"formula {formula!r}: no terms after '~' (write '~ 1' for none)")
    parser = _Parser(formula, tokens)
    terms = parser.expr()
    if parser.i != len(tokens):
        raise parser.error(f"unexpected {tokens[parser.i].lstrip('N#')!r}")
    rank = {v: k for k, v in enumerate(parser.order)}
    ordered = sorted(
        enumerate(terms), key=lambda it: (len(it[1]), it[0])
    )  # by order, then appearance
    out = tuple(tuple(sorted(t, key=rank.__getitem__)) for _, t in ordered)
    return Formula(lt[0][1:], out, parser.intercept, parser.offset)


# ---------------------------------------------------------------------------------------
# model matrix


@dataclass(frozen=True)
class _Coef:
    name: str  # R's column name: stypeH:sch.wideYes
    term: str  # the term: stype:sch.wide
    level: str | None  # H:Yes (levels of the categorical factors), None if numeric only
    key: str  # the reference name: stype=H:sch.wide=Yes
    term_index: int  # 0 for the intercept, else 1 + position in the terms


@dataclass
class _Matrix:
    x: np.ndarray  # (n, p)
    coefs: list[_Coef]
    missing: np.ndarray  # (n,) rows missing a predictor
    term_labels: list[str]


def _variable(design: SurveyDesign, name: str, categorical: Sequence[str] = ()):
    """(kind, values or codes, levels) of a model variable.

    Numeric columns named in ``categorical`` (codes such as 1 = yes, 2 = no) are
    categories, their levels in numeric order.
    """
    col = design.column(name)
    if col.kind == "numeric":
        if name in categorical:
            codes, levels = factorize(pl.Series(name, col.values))
            return "categorical", codes, tuple(label(v) for v in levels)
        return "numeric", col.values, ()
    if col.kind == "boolean":
        return "categorical", col.codes, ("False", "True")
    return "categorical", col.codes, tuple(label(v) for v in col.levels)


def _model_matrix(
    design: SurveyDesign,
    formula: Formula,
    override: dict[str, int] | None = None,
    categorical: Sequence[str] = (),
) -> _Matrix:
    n = design.data.height
    variables = {}
    for term in formula.terms:
        for v in term:
            if v not in variables:
                variables[v] = _variable(design, v, categorical)
                if override and v in override:
                    kind, values, levels = variables[v]
                    variables[v] = (kind, np.full(n, override[v], dtype=values.dtype), levels)
    missing = np.zeros(n, dtype=bool)
    for kind, values, _ in variables.values():
        missing |= np.isnan(values) if kind == "numeric" else values < 0
    present = {frozenset(t) for t in formula.terms}
    if formula.intercept:
        present.add(frozenset())
    columns: list[np.ndarray] = []
    coefs: list[_Coef] = []
    if formula.intercept:
        columns.append(np.ones(n))
        coefs.append(_Coef("(Intercept)", "(Intercept)", None, "(Intercept)", 0))
    labels = []
    for t_index, term in enumerate(formula.terms, start=1):
        term_label = ":".join(term)
        labels.append(term_label)
        # per variable: list of (column values, R name, level, reference name)
        parts = []
        for v in term:
            kind, values, levels = variables[v]
            if kind == "numeric":
                parts.append([(np.nan_to_num(values), v, None, v)])
                continue
            rest = frozenset(term) - {v}
            # R: a factor is coded by contrasts when the term without it is in the model
            first = 1 if rest in present else 0
            parts.append(
                [
                    ((values == k).astype(float), f"{v}{levels[k]}", levels[k], f"{v}={levels[k]}")
                    for k in range(first, len(levels))
                ]
            )
        combos = [((), np.ones(n))]
        # the first variable varies fastest, as in R's model.matrix
        for cols in parts:
            combos = [((*names, c), prod * c[0]) for c in cols for names, prod in combos]
        for names, values in combos:
            levels = [c[2] for c in names if c[2] is not None]
            coefs.append(
                _Coef(
                    ":".join(c[1] for c in names),
                    term_label,
                    ":".join(levels) if levels else None,
                    ":".join(c[3] for c in names),
                    t_index,
                )
            )
            columns.append(values)
    x = np.column_stack(columns) if columns else np.zeros((n, 0))
    return _Matrix(x, coefs, missing, labels)


def _response(design: SurveyDesign, name: str, family: Family) -> np.ndarray:
    col = design.column(name)
    if col.kind in ("numeric", "boolean"):
        y = col.values.astype(float)
    elif family.link == "logit" and len(col.levels) == 2:
        # R: the first level of a two-level factor is failure, the second success
        y = np.where(col.codes < 0, np.nan, (col.codes == 1).astype(float))
    else:
        raise ModelError(
            f"response {name}: a categorical column with {len(col.levels)} levels; expected "
            "numbers, true/false, or two levels for a logistic model"
        )
    ok = ~np.isnan(y)
    if family.link == "logit" and ((y[ok] < 0) | (y[ok] > 1)).any():
        raise ModelError(f"response {name}: a logistic model needs values between 0 and 1")
    if family.link == "log" and (y[ok] < 0).any():
        raise ModelError(f"response {name}: a Poisson model needs values of 0 or more")
    return y


# ---------------------------------------------------------------------------------------
# fitting


def _irls(x, y, w, offset, family: Family, epsilon=1e-8, maxit=25):
    """R's ``glm.fit``: IRLS from the family's start until the deviance settles.

    The stop is R's, ``|dev - dev_old| / (|dev| + 0.1) < epsilon``, so that volna and
    ``svyglm`` stop at the same iterate. Returns the coefficients, the working weights
    of the last step (computed at the previous iterate, as R's ``weights`` and
    ``cov.unscaled`` are), the fitted means, the linear predictor and the iterations.
    """
    p = x.shape[1]
    mu = family.start(y, w)
    eta = family.linkfun(mu)
    dev_old = family.deviance(y, mu, w)
    beta = np.zeros(p)
    for it in range(1, maxit + 1):
        d = family.mu_eta(eta, mu)
        ww = w * d * d / family.variance(mu)
        z = eta - offset + (y - mu) / d
        xw = x * ww[:, None]
        beta = np.linalg.solve(xw.T @ x, xw.T @ z) if p else np.zeros(0)
        eta = x @ beta + offset
        mu = family.linkinv(eta)
        dev = family.deviance(y, mu, w)
        if abs(dev - dev_old) / (abs(dev) + 0.1) < epsilon:
            return beta, ww, mu, eta, it
        dev_old = dev
    hint = (
        "; a predictor (or a combination of them) may separate the outcome perfectly"
        if family.link == "logit"
        else ""
    )
    raise ModelError(
        f"the {family.name} model did not converge in {maxit} iterations{hint}; "
        "drop or merge the levels that cause it, or allow more iterations (maxit=)"
    )


def _independent_columns(x: np.ndarray, w: np.ndarray, tol: float = 1e-12) -> np.ndarray:
    """Columns kept, left to right, dropping those collinear with earlier ones (R's NA).

    A column is dropped when its weighted residual sum of squares on the columns kept
    before it is below ``tol`` times its own (from the cross-product matrix).
    """
    gram = (x * w[:, None]).T @ x
    keep: list[int] = []
    for j in range(x.shape[1]):
        own = gram[j, j]
        if own <= 0:
            continue
        if keep:
            g_kk = gram[np.ix_(keep, keep)]
            g_kj = gram[keep, j]
            resid = own - g_kj @ np.linalg.solve(g_kk, g_kj)
        else:
            resid = own
        if resid > tol * own:
            keep.append(j)
    return np.array(keep, dtype=int)


def _replicate_fits(x, y, weights, rows, offset, family, beta0, epsilon=1e-8, maxit=25):
    """Coefficients ``(p, R)`` refitted under every replicate weight column at once.

    As R's ``svrepglm``: every replicate starts from the full-sample coefficients with
    its weights normalised to sum 1 and stops by ``glm.fit``'s deviance rule. ``weights``
    is the design's replicate weights (:class:`~volna.variance.ReplicateWeightColumns`,
    or an ``(N, R)`` array) and ``rows`` the rows of the fit. Each pass walks the rows in
    chunks, reading the replicate weights where they lie (never the whole matrix) and
    computing for every replicate still running its deviance at the current
    coefficients and the cross products ``X'W_r X`` (one ``(p(p+1)/2, m) @ (m, R)``
    product) and ``X'W_r z`` of the next step; all are linear in the weights, so the
    first pass also sums them and the normalisation is applied per pass. A replicate
    whose Newton step predicts a deviance change (``s' X'WX s``) a hundred times below
    the stop is stopped there: R's next iterate would be the last, at the same
    coefficients, and its deviance pass is saved.
    """
    n, p = x.shape
    R = weights.shape[1]
    chunk = max(256, min(1 << 14, (1 << 22) // max(p * p + 4 * R, 1)))
    starts = range(0, n, chunk)
    xt = np.ascontiguousarray(x.T)
    has_offset = bool(np.any(offset))
    buf = np.empty((min(chunk, n), R))

    def block(i0: int) -> np.ndarray:
        r = rows[i0 : i0 + chunk]
        if isinstance(weights, np.ndarray):
            return weights[r]
        if r[-1] - r[0] == len(r) - 1:
            lo, hi = int(r[0]), int(r[-1]) + 1
            if weights.multiplier is None:
                return weights.stored_rows(lo, hi, out=buf)
            return weights.rows(lo, hi)
        return weights.take_rows(r)

    # logistic with a 0/1 outcome: one exp and one log1p per row and replicate (the
    # generic family path costs several times that); chunks with |eta| > 30, where R
    # clamps mu, take the generic path
    fast = family.link == "logit" and bool(np.all((y == 0) | (y == 1)))
    flip = 1.0 - 2.0 * y  # eta * flip = -log-odds of the observed outcome
    upper = np.triu_indices(p)
    beta = np.repeat(beta0[None, :], R, axis=0)  # (R, p)
    dev_old = np.full(R, np.nan)
    active = np.ones(R, dtype=bool)
    norm = np.ones(R)
    for it in range(maxit + 1):
        act = np.flatnonzero(active)
        if not len(act):
            break
        b = beta[act]
        gram = np.zeros((len(upper[0]), len(act)))
        rhs = np.zeros((p, len(act)))
        dev = np.zeros(len(act))
        totals = np.zeros(R) if it == 0 else None
        for i0 in starts:
            i1 = min(n, i0 + chunk)
            xc, xtc = x[i0:i1], xt[:, i0:i1]
            oc = offset[i0:i1, None]
            wc = block(i0)
            if totals is not None:
                totals += wc.sum(axis=0)
            if len(act) < R:
                wc = wc[:, act]
            if it == 0 and fast:
                # every replicate starts at the full-sample coefficients: one linear
                # predictor, so the row terms are vectors and each sum one product
                e1 = xc @ beta0 + offset[i0:i1]
                if np.abs(e1).max() <= 30:
                    q1 = np.exp(e1 * flip[i0:i1])
                    dev += 2 * (np.log1p(q1) @ wc)
                    r1 = 1.0 / (1.0 + q1)
                    q1 *= r1
                    r1 *= q1
                    gram += (xtc[upper[0]] * xtc[upper[1]] * r1) @ wc
                    rhs += (xtc * ((e1 - offset[i0:i1]) * r1 - q1 * flip[i0:i1])) @ wc
                    continue
            eta = xc @ b.T
            if has_offset:
                eta += oc
            if fast and np.abs(eta).max() <= 30:
                q = eta * flip[i0:i1, None]
                np.exp(q, out=q)  # (1 - p_y) / p_y
                dev += 2 * np.einsum("ij,ij->j", wc, np.log1p(q))
                r = 1.0 / (1.0 + q)
                q *= r  # |y - mu|
                r *= q  # mu (1 - mu): the working weight and d mu / d eta
                ww = wc * r
                q *= flip[i0:i1, None]  # mu - y
                if has_offset:
                    eta -= oc
                eta *= ww
                eta -= wc * q  # ww * z, z = eta - offset + (y - mu) / (mu (1 - mu))
                wz = eta
            else:
                yc = y[i0:i1, None]
                mu = family.linkinv(eta)
                dev += family.deviance(yc, mu, wc)
                d = family.mu_eta(eta, mu)
                ww = wc * (d * d / family.variance(mu))
                wz = ww * (eta - oc + (yc - mu) / d)
            # the upper triangle of x x' per row: the cross products are symmetric
            gram += (xtc[upper[0]] * xtc[upper[1]]) @ ww
            rhs += xtc @ wz
        if totals is not None:
            with np.errstate(divide="ignore"):
                norm = np.where(totals > 0, 1.0 / totals, np.nan)
            active = np.isfinite(norm)
            beta[~active] = np.nan
            keep = active[act]
            act, gram, rhs, dev = act[keep], gram[:, keep], rhs[:, keep], dev[keep]
        dev *= norm[act]
        gram *= norm[act]
        rhs *= norm[act]
        if it > 0:
            done = np.abs(dev - dev_old[act]) / (np.abs(dev) + 0.1) < epsilon
            active[act[done]] = False
            keep = ~done
            act, gram, rhs, dev = act[keep], gram[:, keep], rhs[:, keep], dev[keep]
            if it == maxit:
                beta[act] = np.nan  # did not converge, as R's NA
                break
        dev_old[act] = dev
        g = np.zeros((len(act), p, p))
        g[:, upper[0], upper[1]] = gram.T
        g[:, upper[1], upper[0]] = gram.T
        new = np.full((len(act), p), np.nan)
        ok = np.linalg.matrix_rank(g) == p if len(act) else np.zeros(0, bool)
        if ok.any():
            new[ok] = np.linalg.solve(g[ok], rhs.T[ok][:, :, None])[:, :, 0]
        if it > 0 and it < maxit and ok.any():
            step = new - beta[act]
            change = np.einsum("ri,rij,rj->r", step, g, step)
            settled = ok & (change / (np.abs(dev) + 0.1) < epsilon * 1e-2)
            active[act[settled]] = False
        beta[act] = new
        active[act[~ok]] = False
    return beta.T


# ---------------------------------------------------------------------------------------
# results


@dataclass(eq=False)
class GlmFit:
    """A design-based generalised linear model: coefficients, covariance, tests.

    Read it with :meth:`table` (the tidy estimate table, ``exp=True`` for odds or rate
    ratios), :meth:`summary`, :meth:`wald_test`, ``vcov`` and ``coefficients``.
    """

    formula: Formula
    family: Family
    names: list[str]  # R's coefficient names
    coefs: list[_Coef]
    coefficients: np.ndarray
    vcov: np.ndarray
    df_residual: float
    design_df: float
    dispersion: float
    n: int
    n_weighted: float
    missing: int
    iterations: int
    variance_method: str
    where: str | None = None
    conf_level: float = 0.95
    term_labels: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    #: the model-based covariance (X'WX)^-1 of the fit (weights rescaled to mean 1)
    naive_cov: np.ndarray | None = None
    #: the weighted deviance of the fit (weights rescaled to mean 1), as R's ``deviance``
    deviance: float = math.nan
    _refit: Any = field(default=None, repr=False)
    _margins: Any = field(default=None, repr=False)
    #: what margins and marginal effects need: design, formula, kept columns, fit rows
    _context: Any = field(default=None, repr=False)

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.vcov))

    def table(self, exp: bool = False, conf_level: float | None = None) -> Estimates:
        """One row per coefficient: the estimate table every report reads.

        ``variable`` is the term (``sector``, ``age:sector``), ``level`` the level of
        its categorical variables (``it``), ``term`` R's name for the coefficient
        written as the reference cases write it (``sector=it``). ``statistic`` is the
        t value, ``df`` the residual degrees of freedom (design df + 1 - coefficients),
        intervals are Wald intervals with t on that df (R's ``confint.svyglm``).
        ``exp=True`` gives odds ratios (logit) or rate ratios (log): estimates and
        interval limits exponentiated, the standard error by the delta method.
        """
        from scipy import stats  # imported on first use: it is slow to import

        level = self.conf_level if conf_level is None else conf_level
        b, se, df = self.coefficients, self.se, self.df_residual
        with np.errstate(divide="ignore", invalid="ignore"):
            t = b / se
        if df > 0:
            p = 2 * stats.t.sf(np.abs(t), df)
            crit = stats.t.ppf(0.5 + level / 2, df)
        else:
            p = np.full(len(b), np.nan)
            crit = np.nan
        low, high = b - crit * se, b + crit * se
        estimator = "glm"
        if exp:
            if self.family.ratio_name is None:
                raise ModelError(
                    "exp=True: a gaussian (identity link) model has no odds or rate ratios"
                )
            b, se, low, high = np.exp(b), np.exp(b) * se, np.exp(low), np.exp(high)
            estimator = self.family.ratio_name
        flags = [list(self.flags) + (["no_degrees_of_freedom"] if df <= 0 else [])] * len(b)
        cols = {
            "variable": [c.term for c in self.coefs],
            "level": [c.level for c in self.coefs],
            "domain": [self.where] * len(b),
            "estimator": [estimator] * len(b),
            "estimate": b.tolist(),
            "se": se.tolist(),
            "ci_low": low.tolist(),
            "ci_high": high.tolist(),
            "ci_method": ["t"] * len(b),
            "df": [float(df)] * len(b),
            "n": [self.n] * len(b),
            "n_weighted": [self.n_weighted] * len(b),
            "missing": [self.missing] * len(b),
            "flags": flags,
            "statistic": t.tolist(),
            "p_value": p.tolist(),
            "term": [c.key for c in self.coefs],
            "coefficient": [c.name for c in self.coefs],
        }
        return Estimates(
            cols, conf_level=level, estimator=estimator, where=self.where, vcov=self.vcov
        )

    def to_polars(self, exp: bool = False):
        """The coefficient table as a polars DataFrame (see :meth:`table`)."""
        return self.table(exp=exp).to_polars()

    def to_pandas(self, exp: bool = False):
        """The coefficient table as a pandas DataFrame (see :meth:`table`)."""
        return self.table(exp=exp).to_pandas()

    def wald_test(
        self, terms: str | Sequence[str], df: float | None = None, method: str = "Wald"
    ) -> Estimates:
        """Test that all coefficients of some terms are zero (R's ``regTermTest``).

        ``terms`` are term labels (``"sector"``, ``"age:sector"``; the order of the
        variables of an interaction does not matter). ``method``:

        * ``"Wald"`` -- ``X = b' V^-1 b`` over the k coefficients tested, V their
          design-based covariance: with ``df`` None, ``F = X / k`` on (k, residual df);
          ``df=math.inf`` gives ``Chisq = X`` on k;
        * ``"LRT"`` -- the Rao-Scott working likelihood ratio: ``X`` is the difference of
          the weighted deviances of the model without the terms and with them, referred
          to a weighted sum of chi-squares (F-like with ``df``) whose weights are the
          eigenvalues of ``V0^-1 V`` (V0 the model-based covariance), by R's saddlepoint
          approximation;
        * ``"WorkingWald"`` -- ``X = b' V0^-1 b`` with the same reference distribution.

        The model without the terms is refitted on the same design and domain; as in R
        it drops only the rows missing its own variables.
        """
        from scipy import stats

        from volna.compare import _chisq_mixture_sf, _f_mixture_sf

        methods = {"wald": "Wald", "lrt": "LRT", "workingwald": "WorkingWald"}
        how = methods.get(str(method).lower().replace("_", "").replace("-", ""))
        if how is None:
            raise ModelError(f"wald_test: method {method!r}; expected Wald, LRT or WorkingWald")
        wanted = [terms] if isinstance(terms, str) else list(terms)
        canon = {":".join(sorted(t.split(":"))): i for i, t in enumerate(self.term_labels)}
        index, positions = [], []
        for term in wanted:
            key = ":".join(sorted(str(term).replace(" ", "").split(":")))
            if key not in canon:
                raise ModelError(
                    f"wald_test: term {term!r} is not in the model; its terms are "
                    + ", ".join(self.term_labels)
                )
            pos = canon[key] + 1
            positions.append(pos - 1)
            index += [j for j, c in enumerate(self.coefs) if c.term_index == pos]
        b = self.coefficients[index]
        v = self.vcov[np.ix_(index, index)]
        k = len(index)
        ddf = self.df_residual if df is None else float(df)
        lam = None
        if how == "Wald":
            chisq = float(b @ np.linalg.solve(v, b))
        else:
            v0 = self.naive_cov[np.ix_(index, index)]
            if how == "LRT":
                f = self.formula
                kept = tuple(t for i, t in enumerate(f.terms) if i not in positions)
                reduced = Formula(f.response, kept, f.intercept, f.offset)
                chisq = float(self._refit(reduced).deviance - self.deviance)
            else:
                chisq = float(b @ np.linalg.solve(v0, b))
            lam = np.sort(np.linalg.eigvals(np.linalg.solve(v0, v)).real)[::-1]
        if how == "Wald" and math.isinf(ddf):
            stat, p, name = chisq, float(stats.chi2.sf(chisq, k)), "Chisq"
        elif how == "Wald":
            stat, p, name = chisq / k, float(stats.f.sf(chisq / k, k, ddf)), "F"
        else:
            stat, name = chisq, how
            p = _chisq_mixture_sf(chisq, lam) if math.isinf(ddf) else _f_mixture_sf(chisq, lam, ddf)
        cols = {
            "variable": [" + ".join(wanted)],
            "estimator": [f"wald_{name.lower()}" if how == "Wald" else name.lower()],
            "statistic": [stat],
            "ndf": [float(k)],
            "ddf": [ddf],
            "p_value": [p],
            "domain": [self.where],
            "flags": [[]],
        }
        if lam is not None:
            cols["design_effects"] = [lam.tolist()]
        return Estimates(cols, estimator=f"{how} test", where=self.where)

    def margins(self, variable: str, conf_level: float | None = None) -> Estimates:
        """Predictive margins of a categorical predictor (R's ``svypredmeans``).

        For each level L of ``variable`` (a categorical term of the model), every
        respondent of the fit is given level L, their predicted mean is computed with
        the model, and the weighted mean of those predictions is the margin: "the share
        planning to stay if everyone were in IT". As R, the variance is the design
        variance of the mean of the predictions (the shared variance path) plus
        ``g' V g``, the coefficients' part (``g`` the derivatives of the margin by the
        coefficients, ``V`` their design-based covariance); the covariance of the two
        parts is left out, as R leaves it out. Intervals are normal, as R's
        ``confint`` of a mean. ``vcov`` of the table holds their covariance. With an
        offset the margins are rates per unit of exposure (R's ``predict.svyglm`` leaves
        the offset out). The respondents are the fit's (complete rows of the domain).

        >>> import polars as pl
        >>> from volna.design import SurveyDesign
        >>> frame = pl.DataFrame({
        ...     "stay": [1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 0],
        ...     "age": [25, 40, 31, 22, 52, 28, 45, 38, 27, 60, 33, 48],
        ...     "sector": ["it", "arts", "it", "it", "arts", "arts"] * 2,
        ... })
        >>> fit = SurveyDesign.from_frame(frame).glm("stay ~ age + sector", "binomial")
        >>> fit.margins("sector").to_polars().select("level", "estimate").with_columns(
        ...     pl.col("estimate").round(4))
        shape: (2, 2)
        ┌───────┬──────────┐
        │ level ┆ estimate │
        │ ---   ┆ ---      │
        │ str   ┆ f64      │
        ╞═══════╪══════════╡
        │ arts  ┆ 0.4746   │
        │ it    ┆ 0.5699   │
        └───────┴──────────┘
        """
        if self._margins is None:
            raise ModelError("margins: this fit does not carry its design")
        return self._margins(variable, self.conf_level if conf_level is None else conf_level)

    def marginal_effects(
        self, variables: str | Sequence[str] | None = None, conf_level: float | None = None
    ) -> Estimates:
        """Average marginal effects, with design-based standard errors.

        For a numeric predictor x: the weighted mean, over the fit's respondents, of
        each one's ``d mu_i / d x_i`` (the change in their predicted mean per unit of x,
        through every term holding x, interactions included): "one more year of age
        changes the share planning to stay by ...". For a categorical predictor: the
        contrasts of its predictive margins with its first level (see
        :meth:`margin_contrasts`), the discrete change "if everyone were in L rather
        than in the reference".

        The variance is R's ``svypredmeans`` variance of such a mean: the design
        variance of the weighted mean of the individual derivatives (the shared variance
        path: linearization or replicates) plus ``g' V g`` (``g`` the derivatives of the
        mean by the coefficients, ``V`` their design-based covariance); as in R, the
        covariance of the two parts is left out. Intervals are normal. As for margins, an
        offset is left out (effects on the rate per unit of exposure). ``variables``
        defaults to every variable of the model, in the order of the formula.

        >>> import polars as pl
        >>> from volna.design import SurveyDesign
        >>> frame = pl.DataFrame({
        ...     "stay": [1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 0],
        ...     "age": [25, 40, 31, 22, 52, 28, 45, 38, 27, 60, 33, 48],
        ...     "sector": ["it", "arts", "it", "it", "arts", "arts"] * 2,
        ... })
        >>> fit = SurveyDesign.from_frame(frame).glm("stay ~ age + sector", "binomial")
        >>> fit.marginal_effects().to_polars().select(
        ...     "variable", "level", pl.col("estimate").round(4))
        shape: (2, 3)
        ┌──────────┬───────────┬──────────┐
        │ variable ┆ level     ┆ estimate │
        │ ---      ┆ ---       ┆ ---      │
        │ str      ┆ str       ┆ f64      │
        ╞══════════╪═══════════╪══════════╡
        │ age      ┆ null      ┆ -0.0236  │
        │ sector   ┆ it - arts ┆ 0.0954   │
        └──────────┴───────────┴──────────┘
        """
        if self._context is None:
            raise ModelError("marginal_effects: this fit does not carry its design")
        level = self.conf_level if conf_level is None else conf_level
        if variables is None:
            variables = list(dict.fromkeys(v for t in self.formula.terms for v in t))
        elif isinstance(variables, str):
            variables = [variables]
        parts = [_marginal_effects(self._context, v, level) for v in variables]
        return _stack_estimates(parts, "marginal effect", level)

    def margin_contrasts(
        self, variable: str, reference: str | None = None, conf_level: float | None = None
    ) -> Estimates:
        """Differences of predictive margins from a reference level, with their SEs.

        Each row is ``margin(L) - margin(reference)`` (``level`` reads ``"L - ref"``),
        its variance ``c' C c`` with ``C`` the covariance of the margins
        (:meth:`margins`; R's ``svycontrast`` of ``svypredmeans``). ``reference``
        defaults to the first level.

        >>> import polars as pl
        >>> from volna.design import SurveyDesign
        >>> frame = pl.DataFrame({
        ...     "stay": [1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 0],
        ...     "age": [25, 40, 31, 22, 52, 28, 45, 38, 27, 60, 33, 48],
        ...     "sector": ["it", "arts", "it", "it", "arts", "arts"] * 2,
        ... })
        >>> fit = SurveyDesign.from_frame(frame).glm("stay ~ age + sector", "binomial")
        >>> fit.margin_contrasts("sector").to_polars().select(
        ...     "level", pl.col("estimate").round(4))
        shape: (1, 2)
        ┌───────────┬──────────┐
        │ level     ┆ estimate │
        │ ---       ┆ ---      │
        │ str       ┆ f64      │
        ╞═══════════╪══════════╡
        │ it - arts ┆ 0.0954   │
        └───────────┴──────────┘
        """
        level = self.conf_level if conf_level is None else conf_level
        return _contrast_margins(self.margins(variable, level), variable, reference, level)

    def summary(self, exp: bool = False) -> str:
        """A readable summary, like R's ``summary(svyglm)``.

        >>> import polars as pl
        >>> from volna.design import SurveyDesign
        >>> d = SurveyDesign.from_frame(pl.DataFrame({"y": [1.0, 3.0, 2.0, 5.0, 4.0],
        ...     "x": [1.0, 2.0, 3.0, 4.0, 5.0]}))
        >>> print(d.glm("y ~ x").summary())  # doctest: +NORMALIZE_WHITESPACE
        Design-based gaussian model (identity link): y ~ x
        linearization; 5 rows; residual df 3
                     estimate       se        t  df  p_value    ci_low  ci_high
        (Intercept)       0.6  0.68411  0.87706   3    0.445   -1.5771   2.7771
        x                 0.8  0.22804  3.50823   3  0.03925  0.074291   1.5257
        dispersion 0.9
        """
        tab = self.table(exp=exp)
        rows = list(tab)
        what = "estimate" if not exp else (self.family.ratio_name or "estimate")
        header = [what, "se", "t", "df", "p_value", "ci_low", "ci_high"]
        names = [c.name for c in self.coefs]
        width = max([len(n) for n in names] + [4])
        body = []
        for name, r in zip(names, rows, strict=True):
            cells = [
                _g(r["estimate"]),
                _g(r["se"]),
                f"{r['statistic']:.5f}" if np.isfinite(r["statistic"]) else "NaN",
                _g(r["df"]),
                f"{r['p_value']:.4g}" if r["p_value"] is not None else "NaN",
                _g(r["ci_low"]),
                _g(r["ci_high"]),
            ]
            body.append([name, *cells])
        widths = [width] + [
            max(len(header[j]), *(len(b[j + 1]) for b in body)) for j in range(len(header))
        ]
        lines = [
            f"Design-based {self.family.name} model ({self.family.link} link): "
            + self.formula_text(),
            f"{self.variance_method}; {self.n} rows"
            + (f" ({self.missing} missing)" if self.missing else "")
            + (f"; where {self.where}" if self.where else "")
            + f"; residual df {_g(self.df_residual)}",
            "  ".join(
                [" " * width] + [h.rjust(w) for h, w in zip(header, widths[1:], strict=True)]
            ),
        ]
        for b in body:
            lines.append(
                "  ".join(
                    [b[0].ljust(width)]
                    + [c.rjust(w) for c, w in zip(b[1:], widths[1:], strict=True)]
                )
            )
        lines.append(f"dispersion {_g(self.dispersion)}")
        return "\n".join(lines)

    def formula_text(self) -> str:
        f = self.formula
        rhs = [":".join(t) for t in f.terms]
        if not f.intercept:
            rhs.append("- 1")
        if f.offset is not None:
            rhs.append(f"offset(log({f.offset[0]}))" if f.offset[1] else f"offset({f.offset[0]})")
        text = " + ".join(rhs) if rhs else "1"
        return f"{f.response} ~ {text}".replace("+ - 1", "- 1")

    def __repr__(self) -> str:
        return self.summary()


def _g(v: float | None) -> str:
    if v is None or not np.isfinite(v):
        return "NaN"
    return f"{v:.5g}" if abs(v) >= 1e-4 or v == 0 else f"{v:.4e}"


def _replicate_vcov(betas: np.ndarray, beta: np.ndarray, rep, flags: list[str]) -> np.ndarray:
    """R's ``svrVar``: replicates whose refit failed (singular, not converged) are dropped."""
    ok = np.isfinite(betas).all(axis=0)
    if not ok.all():
        flags.append("replicates_dropped")
    return replicate_covariance(betas[:, ok], beta, rep.scale, np.asarray(rep.rscales)[ok], rep.mse)


def _lonely_factor(design: SurveyDesign, result) -> float:
    """The ``"average"`` lonely-PSU rule's factor, which the covariance path leaves out."""
    from volna.compare import lonely_average_factor

    return lonely_average_factor(design, result)


# ---------------------------------------------------------------------------------------
# the estimator


def glm(
    design: SurveyDesign,
    formula: str,
    family: str | Family = "gaussian",
    *,
    where=None,
    offset=None,
    conf_level: float = 0.95,
    epsilon: float = 1e-8,
    maxit: int = 25,
    categorical: Sequence[str] = (),
) -> GlmFit:
    """Fit a generalised linear model with design-based standard errors (R's ``svyglm``).

    ``formula`` is ``"response ~ terms"`` (see :func:`parse_formula`); ``family`` one of
    ``gaussian`` (identity link), ``binomial``/``quasibinomial`` (logit; ``logistic``
    means quasibinomial), ``poisson``/``quasipoisson`` (log). A family and its quasi
    version give the same coefficients and standard errors, as in ``svyglm``.
    ``offset`` (a column name, Series or array) is added to the linear predictor, like
    ``offset(...)`` in the formula. ``where`` restricts the fit to a domain of the full
    design. Rows missing the response, a predictor or the offset are left out of the
    fit with no influence; ``missing`` counts those in the domain. ``categorical``
    names numeric columns to treat as categories (codes, in numeric order).

    The fit follows R's ``glm.fit`` step by step -- the family's start, IRLS, the stop
    ``|dev - dev_old| / (|dev| + 0.1) < epsilon`` (``glm.control``'s ``epsilon`` and
    ``maxit``), the working weights of the last step in the sandwich -- and so do the
    replicate refits, so volna and ``svyglm`` stop at the same iterate and agree to
    rounding. A smaller ``epsilon`` gets closer to the exact solution (``1e-8`` leaves
    standard errors up to about 1e-6 relative from it on small samples).

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> frame = pl.DataFrame({
    ...     "stratum": ["a"] * 6 + ["b"] * 6,
    ...     "stay": [1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 0],
    ...     "age": [25, 40, 31, 22, 52, 28, 45, 38, 27, 60, 33, 48],
    ...     "sector": ["it", "arts", "it", "it", "arts", "arts"] * 2,
    ... })
    >>> d = SurveyDesign.from_frame(frame, strata="stratum")
    >>> fit = d.glm("stay ~ age + sector", family="quasibinomial")
    >>> fit.table(exp=True).to_polars().select("variable", "level", "estimate").with_columns(
    ...     pl.col("estimate").round(4))
    shape: (3, 3)
    ┌─────────────┬───────┬────────────┐
    │ variable    ┆ level ┆ estimate   │
    │ ---         ┆ ---   ┆ ---        │
    │ str         ┆ str   ┆ f64        │
    ╞═════════════╪═══════╪════════════╡
    │ (Intercept) ┆ null  ┆ 88527.3833 │
    │ age         ┆ null  ┆ 0.7216     │
    │ sector      ┆ it    ┆ 3.4081     │
    └─────────────┴───────┴────────────┘
    """
    fam = _family(family)
    f = formula if isinstance(formula, Formula) else parse_formula(formula)
    n = design.data.height
    if offset is not None and f.offset is not None:
        raise ModelError("give the offset either in the formula or as offset=, not both")
    off = np.zeros(n)
    off_missing = np.zeros(n, dtype=bool)
    if f.offset is not None:
        col = design.column(f.offset[0])
        if col.kind != "numeric":
            raise ModelError(f"offset {f.offset[0]}: expected numbers, got {col.kind} values")
        off = col.values.copy()
        if f.offset[1]:
            with np.errstate(divide="ignore", invalid="ignore"):
                bad = off <= 0
                if bad.any():
                    row = int(np.flatnonzero(bad)[0])
                    raise ModelError(
                        f"offset log({f.offset[0]}): row {row + 1}: value {label(off[row])} "
                        "has no logarithm; expected positive numbers"
                    )
                off = np.log(off)
    elif offset is not None:
        col = design.column(offset)
        if col.kind != "numeric":
            raise ModelError("offset: expected numbers")
        off = col.values.copy()
    off_missing = np.isnan(off)
    off = np.nan_to_num(off)
    y = _response(design, f.response, fam)
    mm = _model_matrix(design, f, categorical=tuple(categorical))
    domain = np.ones(n, dtype=bool) if design.restriction is None else design.restriction.copy()
    where_label = None
    if where is not None:
        from volna.design import describe_spec

        domain &= design._mask(where, "where")
        where_label = describe_spec(where)
    missing = mm.missing | np.isnan(y) | off_missing
    fit_rows = domain & ~missing
    w_all = np.where(fit_rows, design.weights, 0.0)
    rows = np.flatnonzero(fit_rows & (w_all > 0))
    if len(rows) == 0:
        raise ModelError(f"model {formula!r}: no row with a positive weight to fit")
    x, yy, w, oo = mm.x[rows], np.nan_to_num(y[rows]), w_all[rows], off[rows]
    # svyglm rescales the weights to mean 1 over the rows its design holds: the domain's
    # (a subset drops rows), or all rows of a calibrated design (a subset zeroes them);
    # the start of IRLS, hence R's last iterate, depends on it
    held = domain if (design.is_replicate or not design.calibrations) else np.ones(n, bool)
    w_mean = design.weights[domain].sum() / held.sum()
    w_scaled = w / w_mean
    keep = _independent_columns(x, w_scaled)
    coefs = [mm.coefs[j] for j in keep]
    xk = x[:, keep]
    beta, ww, mu, eta, iterations = _irls(xk, yy, w_scaled, oo, fam, epsilon, maxit)
    flags = []
    tiny = 10 * np.finfo(float).eps
    if fam.link == "logit" and ((mu < tiny) | (mu > 1 - tiny)).any():
        flags.append("fitted_probabilities_0_or_1")  # R's warning: perfect separation
    if len(keep) < x.shape[1]:
        flags.append("aliased_coefficients")
    p = len(keep)
    a_inv = np.linalg.inv((xk * ww[:, None]).T @ xk)
    if design.is_replicate:
        rep = design.replicates
        betas = _replicate_fits(xk, yy, rep.columns, rows, oo, fam, beta, epsilon, maxit)
        vcov = _replicate_vcov(betas, beta, rep, flags)
        design_df = (design.subset(domain) if where is not None else design).degf
        method = f"{rep.type} replicate weights ({rep.n_replicates})"
    else:
        d = fam.mu_eta(eta, mu)
        # R's estfun: working residuals at the fit times the working weights of the
        # last step; the block multiplies by the design weight w
        score = (yy - mu) / d * ww / w
        infl = (xk * score[:, None]) @ a_inv
        base = np.where(fit_rows, 0, -1).astype(np.int64)
        blocks = []
        for j in range(p):
            num = np.zeros(n)
            num[rows] = infl[:, j]
            blocks.append(RatioBlock(base=base, n_bases=1, numerator=num, kind="total"))
        results = design.evaluate(blocks, covariance=True)
        vcov = results[0].covariance * _lonely_factor(design, results[0])
        design_df = float(results[0].degf()[0])
        method = "linearization"
    vcov = (vcov + vcov.T) / 2
    df_residual = float(design_df) + 1 - p
    # R's dispersion: the weighted variance of the Pearson residuals over the fit's rows;
    # with missing values survey 4.1.1 multiplies them by sqrt(w / mean of the design's
    # rows) / sqrt(w / mean of its complete rows)
    r = (yy - mu) / np.sqrt(fam.variance(mu))
    if not design.is_replicate:
        complete = held & ~missing
        r = r * math.sqrt(w.sum() / complete.sum() / w_mean)
    rbar = np.sum(w * r) / w.sum()
    m = len(rows)
    dispersion = m / (m - 1) * np.sum(w * (r - rbar) ** 2) / w.sum() if m > 1 else math.nan

    def margins(variable: str, level: float) -> Estimates:
        return _predictive_margins(
            design,
            f,
            fam,
            keep,
            beta,
            vcov,
            fit_rows,
            variable,
            level,
            where_label,
            tuple(categorical),
        )

    return GlmFit(
        _margins=margins,
        _context=(design, f, fam, keep, beta, vcov, fit_rows, where_label, tuple(categorical)),
        formula=f,
        family=fam,
        names=[c.name for c in coefs],
        coefs=coefs,
        coefficients=beta,
        vcov=vcov,
        df_residual=df_residual,
        design_df=float(design_df),
        dispersion=float(dispersion),
        n=int(fit_rows.sum()),
        n_weighted=float(w.sum()),
        missing=int((domain & missing).sum()),
        iterations=iterations,
        variance_method=method,
        where=where_label,
        conf_level=conf_level,
        term_labels=mm.term_labels,
        flags=flags,
        naive_cov=a_inv,
        deviance=float(fam.deviance(yy, mu, w_scaled)),
        _refit=lambda reduced: glm(
            design,
            reduced,
            fam,
            where=where,
            offset=offset,
            conf_level=conf_level,
            epsilon=epsilon,
            maxit=maxit,
            categorical=categorical,
        ),
    )


def _predictive_margins(
    design, f: Formula, fam: Family, keep, beta, vcov, fit_rows, variable, level, where, categorical
) -> Estimates:
    from scipy import stats

    if not any(variable in t for t in f.terms):
        raise ModelError(f"margins: {variable} is not a term of the model")
    kind, _, levels = _variable(design, variable, categorical)
    if kind != "categorical":
        raise ModelError(f"margins: {variable} is numeric; margins are for categories")
    rows = np.flatnonzero(fit_rows)
    w = design.weights[rows]
    fits, grads = [], []
    for code in range(len(levels)):
        x = _model_matrix(design, f, {variable: code}, categorical).x[rows][:, keep]
        # without the offset, as R's predict.svyglm: rates per unit of exposure
        eta = x @ beta
        mu = fam.linkinv(eta)
        fits.append(mu)
        grads.append((w * fam.mu_eta(eta, mu)) @ x / w.sum())
    n = design.data.height
    base = np.where(fit_rows, 0, -1).astype(np.int64)
    blocks = []
    for mu in fits:
        num = np.zeros(n)
        num[rows] = mu
        blocks.append(RatioBlock(base=base, n_bases=1, numerator=num))
    results = design.evaluate(blocks, covariance=True)
    estimate = np.array([r.estimate.ravel()[0] for r in results])
    g = np.array(grads)  # (levels, p)
    cov = results[0].covariance * _lonely_factor(design, results[0]) + g @ vcov @ g.T
    se = np.sqrt(np.diag(cov))
    crit = stats.norm.ppf(0.5 + level / 2)
    k = len(levels)
    return Estimates(
        {
            "variable": [variable] * k,
            "level": list(levels),
            "domain": [where] * k,
            "estimator": ["predictive margin"] * k,
            "estimate": estimate.tolist(),
            "se": se.tolist(),
            "ci_low": (estimate - crit * se).tolist(),
            "ci_high": (estimate + crit * se).tolist(),
            "ci_method": ["normal"] * k,
            "df": [math.inf] * k,
            "n": [len(rows)] * k,
            "n_weighted": [float(w.sum())] * k,
            "flags": [[] for _ in range(k)],
        },
        conf_level=level,
        estimator="predictive margin",
        where=where,
        vcov=cov,
    )


def _contrast_margins(margins: Estimates, variable, reference, level) -> Estimates:
    from scipy import stats

    table = margins.to_polars()
    levels = table["level"].to_list()
    if reference is None:
        reference = levels[0]
    if reference not in levels:
        raise ModelError(
            f"margin contrasts: reference {reference!r} is not a level of {variable}; "
            f"expected one of {', '.join(levels)}"
        )
    r = levels.index(reference)
    others = [k for k in range(len(levels)) if k != r]
    c = np.zeros((len(others), len(levels)))
    for row, k in enumerate(others):
        c[row, k], c[row, r] = 1.0, -1.0
    est = c @ table["estimate"].to_numpy()
    cov = c @ margins.vcov @ c.T
    se = np.sqrt(np.diag(cov))
    crit = stats.norm.ppf(0.5 + level / 2)
    k = len(others)
    return Estimates(
        {
            "variable": [variable] * k,
            "level": [f"{levels[j]} - {reference}" for j in others],
            "domain": [table["domain"][0]] * k,
            "estimator": ["margin contrast"] * k,
            "estimate": est.tolist(),
            "se": se.tolist(),
            "ci_low": (est - crit * se).tolist(),
            "ci_high": (est + crit * se).tolist(),
            "ci_method": ["normal"] * k,
            "df": [math.inf] * k,
            "n": [table["n"][0]] * k,
            "n_weighted": [table["n_weighted"][0]] * k,
            "flags": [[] for _ in range(k)],
        },
        conf_level=level,
        estimator="margin contrast",
        where=table["domain"][0],
        vcov=cov,
    )


def _mu_eta_derivative(fam: Family, eta: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """d mu_eta / d eta: 0 (identity), mu (1 - mu) (1 - 2 mu) (logit), mu (log)."""
    if fam.link == "identity":
        return np.zeros_like(eta)
    if fam.link == "logit":
        return mu * (1 - mu) * (1 - 2 * mu)
    return mu


def _marginal_effects(context, variable: str, level: float) -> Estimates:
    from scipy import stats

    design, f, fam, keep, beta, vcov, fit_rows, where, categorical = context
    if not any(variable in t for t in f.terms):
        raise ModelError(f"marginal effects: {variable} is not a term of the model")
    kind, _, _ = _variable(design, variable, categorical)
    if kind == "categorical":
        margins = _predictive_margins(
            design, f, fam, keep, beta, vcov, fit_rows, variable, level, where, categorical
        )
        return _contrast_margins(margins, variable, None, level)
    rows = np.flatnonzero(fit_rows)
    w = design.weights[rows]
    x = _model_matrix(design, f, None, categorical).x[rows][:, keep]
    # every column is linear in a numeric variable (it enters a term once), so the
    # columns' derivatives by it are exactly X(x = 1) - X(x = 0)
    dx = (
        _model_matrix(design, f, {variable: 1.0}, categorical).x[rows][:, keep]
        - _model_matrix(design, f, {variable: 0.0}, categorical).x[rows][:, keep]
    )
    eta = x @ beta  # without the offset, as the margins
    mu = fam.linkinv(eta)
    slope = dx @ beta
    effect = fam.mu_eta(eta, mu) * slope
    jac = _mu_eta_derivative(fam, eta, mu) * slope
    grad = (w * jac) @ x / w.sum() + (w * fam.mu_eta(eta, mu)) @ dx / w.sum()
    n = design.data.height
    num = np.zeros(n)
    num[rows] = effect
    base = np.where(fit_rows, 0, -1).astype(np.int64)
    result = design.evaluate([RatioBlock(base=base, n_bases=1, numerator=num)], covariance=True)[0]
    estimate = float(result.estimate.ravel()[0])
    var = float(np.ravel(result.covariance)[0]) * _lonely_factor(design, result)
    var += float(grad @ vcov @ grad)
    se = math.sqrt(var)
    crit = stats.norm.ppf(0.5 + level / 2)
    return Estimates(
        {
            "variable": [variable],
            "level": [None],
            "domain": [where],
            "estimator": ["marginal effect"],
            "estimate": [estimate],
            "se": [se],
            "ci_low": [estimate - crit * se],
            "ci_high": [estimate + crit * se],
            "ci_method": ["normal"],
            "df": [math.inf],
            "n": [len(rows)],
            "n_weighted": [float(w.sum())],
            "flags": [[]],
        },
        conf_level=level,
        estimator="marginal effect",
        where=where,
        vcov=np.array([[var]]),
    )


def _stack_estimates(parts: list[Estimates], estimator: str, level: float) -> Estimates:
    """One table of several, the covariance block-diagonal (across blocks unknown: NaN)."""
    frames = [p.to_polars() for p in parts]
    cols: dict[str, list] = {}
    for key in (
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
        "n",
        "n_weighted",
        "flags",
    ):
        cols[key] = [v for fr in frames for v in fr[key].to_list()]
    k = len(cols["estimate"])
    cov = np.full((k, k), np.nan)
    at = 0
    for p in parts:
        m = p.vcov.shape[0]
        cov[at : at + m, at : at + m] = p.vcov
        at += m
    return Estimates(
        cols,
        conf_level=level,
        estimator=estimator,
        where=cols["domain"][0] if k else None,
        vcov=cov,
    )


# ---------------------------------------------------------------------------------------
# proportional odds


def _olr_parts(x, y, theta, p, k):
    """Per-row probabilities, scores (n, q) and the weighted-Hessian ingredients."""
    from scipy.special import expit

    beta, zeta = theta[:p], theta[p:]
    eta = x @ beta
    n, q = len(y), p + k - 1
    cuts = np.concatenate(([-np.inf], zeta, [np.inf]))
    a = cuts[y + 1] - eta  # upper
    b = cuts[y] - eta  # lower
    fa, fb = expit(a), expit(b)
    da, db = fa * (1 - fa), fb * (1 - fb)  # densities (0 at +-inf)
    d2a, d2b = da * (1 - 2 * fa), db * (1 - 2 * fb)
    prob = fa - fb
    ua = np.zeros((n, q))
    ub = np.zeros((n, q))
    ua[:, :p] = -x
    ub[:, :p] = -x
    top = y < k - 1
    bottom = y > 0
    ua[np.flatnonzero(top), p + y[top]] = 1.0
    ub[np.flatnonzero(bottom), p + y[bottom] - 1] = 1.0
    ua[~top] = 0.0
    ub[~bottom] = 0.0
    grad_p = da[:, None] * ua - db[:, None] * ub
    score = grad_p / prob[:, None]
    return prob, score, ua, ub, d2a / prob, d2b / prob


def _olr_fit(x, y, w, p, k, theta=None, tol=1e-10, maxit=100):
    """Newton's method on the weighted cumulative-logit likelihood; (theta, A, scores)."""
    if theta is None:
        share = np.cumsum(np.bincount(y, weights=w, minlength=k))[:-1] / w.sum()
        theta = np.concatenate((np.zeros(p), np.log(share / (1 - share))))
    for _ in range(maxit):
        prob, score, ua, ub, ca, cb = _olr_parts(x, y, theta, p, k)
        loglik = float(w @ np.log(prob))
        grad = w @ score
        # minus the Hessian of the log-likelihood
        info = (score * w[:, None]).T @ score
        info -= (ua * (w * ca)[:, None]).T @ ua - (ub * (w * cb)[:, None]).T @ ub
        step = np.linalg.solve(info, grad)
        t = 1.0
        while True:
            new = theta + t * step
            ok = np.all(np.diff(new[p:]) > 0)
            if ok:
                prob_new = _olr_parts(x, y, new, p, k)[0]
                if np.all(prob_new > 0) and w @ np.log(prob_new) >= loglik - 1e-12 * abs(loglik):
                    break
            t /= 2
            if t < 1e-10:
                raise ModelError("the proportional-odds model did not converge")
        theta = new
        if np.max(np.abs(t * step)) <= tol * (1 + np.max(np.abs(theta))):
            break
    else:
        raise ModelError(f"the proportional-odds model did not converge in {maxit} iterations")
    prob, score, ua, ub, ca, cb = _olr_parts(x, y, theta, p, k)
    info = (score * w[:, None]).T @ score
    info -= (ua * (w * ca)[:, None]).T @ ua - (ub * (w * cb)[:, None]).T @ ub
    return theta, info, score


@dataclass(eq=False)
class OlrFit:
    """A design-based proportional-odds model: ``logit P(Y <= j) = zeta_j - x'beta``."""

    formula: Formula
    levels: list[str]
    names: list[str]
    terms: list[str]
    coefficients: np.ndarray
    vcov: np.ndarray
    n: int
    missing: int
    variance_method: str
    where: str | None = None
    conf_level: float = 0.95
    coef_rows: list[_Coef] = field(default_factory=list)

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.vcov))

    def table(self, exp: bool = False) -> Estimates:
        """One row per coefficient, then one per cut-point (``low|mid``).

        ``statistic`` is estimate/se (R's t value); intervals and p-values are normal,
        as R's ``confint`` of a ``svyolr``. ``exp=True`` gives the odds ratios of the
        coefficients (of a higher answer) and leaves the cut-points as they are.
        """
        from scipy import stats

        b, se = self.coefficients, self.se
        z = b / se
        crit = stats.norm.ppf(0.5 + self.conf_level / 2)
        low, high = b - crit * se, b + crit * se
        nb = len(self.coef_rows)
        est, s, lo, hi = b.copy(), se.copy(), low.copy(), high.copy()
        if exp:
            est[:nb], s[:nb] = np.exp(b[:nb]), np.exp(b[:nb]) * se[:nb]
            lo[:nb], hi[:nb] = np.exp(low[:nb]), np.exp(high[:nb])
        k = len(b)
        cuts = self.names[nb:]
        return Estimates(
            {
                "variable": [c.term for c in self.coef_rows] + ["cut-point"] * len(cuts),
                "level": [c.level for c in self.coef_rows] + cuts,
                "domain": [self.where] * k,
                "estimator": ["odds ratio" if exp else "olr"] * nb + ["olr"] * len(cuts),
                "estimate": est.tolist(),
                "se": s.tolist(),
                "ci_low": lo.tolist(),
                "ci_high": hi.tolist(),
                "ci_method": ["normal"] * k,
                "df": [math.inf] * k,
                "n": [self.n] * k,
                "missing": [self.missing] * k,
                "flags": [[] for _ in range(k)],
                "statistic": z.tolist(),
                "p_value": (2 * stats.norm.sf(np.abs(z))).tolist(),
                "term": [c.key for c in self.coef_rows] + cuts,
                "coefficient": self.names,
            },
            conf_level=self.conf_level,
            estimator="proportional odds",
            where=self.where,
            vcov=self.vcov,
        )

    def to_polars(self, exp: bool = False):
        """The coefficient table as a polars DataFrame (see :meth:`table`)."""
        return self.table(exp=exp).to_polars()

    def to_pandas(self, exp: bool = False):
        """The coefficient table as a pandas DataFrame (see :meth:`table`)."""
        return self.table(exp=exp).to_pandas()

    def __repr__(self) -> str:
        head = (
            f"Design-based proportional-odds model: {self.formula.response} "
            f"({' < '.join(self.levels)}); {self.variance_method}; {self.n} rows"
        )
        return head + "\n" + repr(self.table())


def olr(
    design: SurveyDesign,
    formula: str,
    *,
    levels: Sequence[str] | None = None,
    where=None,
    conf_level: float = 0.95,
    categorical: Sequence[str] = (),
) -> OlrFit:
    """A proportional-odds (cumulative logit) model for ordered answers (R's ``svyolr``).

    ``logit P(Y <= levels[j]) = zeta_j - x'beta``: a positive coefficient moves answers
    up the scale. ``levels`` lists the answers from lowest to highest (default: the
    column's order -- a question's choices, else sorted); answers not listed are left
    out like missing ones. Standard errors are the sandwich of the scores through the
    design's variance path (linearization), or refits under every replicate.

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> frame = pl.DataFrame({
    ...     "hope": ["low", "mid", "high", "mid", "low", "high", "mid", "high", "low", "mid"],
    ...     "age": [50, 40, 22, 35, 61, 30, 45, 25, 33, 28],
    ... })
    >>> fit = SurveyDesign.from_frame(frame).olr("hope ~ age", levels=["low", "mid", "high"])
    >>> fit.to_polars().select("variable", "level", "estimate").with_columns(
    ...     pl.col("estimate").round(4))
    shape: (3, 3)
    ┌───────────┬──────────┬──────────┐
    │ variable  ┆ level    ┆ estimate │
    │ ---       ┆ ---      ┆ ---      │
    │ str       ┆ str      ┆ f64      │
    ╞═══════════╪══════════╪══════════╡
    │ age       ┆ null     ┆ -0.2194  │
    │ cut-point ┆ low|mid  ┆ -9.6531  │
    │ cut-point ┆ mid|high ┆ -6.357   │
    └───────────┴──────────┴──────────┘
    """
    f = formula if isinstance(formula, Formula) else parse_formula(formula)
    if f.offset is not None:
        raise ModelError("olr: offsets are not supported in a proportional-odds model")
    n = design.data.height
    col = design.column(f.response)
    if col.kind == "categorical":
        names = [label(v) for v in col.levels]
        codes = col.codes
    else:
        values = col.values
        uniq = np.unique(values[~np.isnan(values)])
        names = [label(float(v)) for v in uniq]
        codes = np.where(np.isnan(values), -1, np.searchsorted(uniq, np.nan_to_num(values)))
    order = list(levels) if levels is not None else names
    unknown = [v for v in order if v not in names]
    if unknown:
        raise ModelError(
            f"olr: response {f.response} has no answer {unknown[0]!r}; its answers are "
            + ", ".join(names)
        )
    remap = np.full(len(names) + 1, -1)
    for j, v in enumerate(order):
        remap[names.index(v)] = j
    y_all = remap[np.where(codes < 0, len(names), codes)]
    k = len(order)
    if k < 3:
        raise ModelError("olr: the response needs at least three ordered answers")
    mm = _model_matrix(design, Formula(f.response, f.terms, True, None), categorical=categorical)
    domain = np.ones(n, dtype=bool) if design.restriction is None else design.restriction.copy()
    where_label = None
    if where is not None:
        from volna.design import describe_spec

        domain &= design._mask(where, "where")
        where_label = describe_spec(where)
    missing = mm.missing | (y_all < 0)
    fit_rows = domain & ~missing
    rows = np.flatnonzero(fit_rows & (design.weights > 0))
    x_full = mm.x[rows][:, 1:]  # no intercept: the cut-points take its place
    coefs_all = mm.coefs[1:]
    y = y_all[rows].astype(np.int64)
    w = design.weights[rows]
    w_scaled = w / w.mean()
    keep = _independent_columns(np.column_stack([np.ones(len(rows)), x_full]), w_scaled)
    keep = keep[keep > 0] - 1
    x = x_full[:, keep]
    coef_rows = [coefs_all[j] for j in keep]
    p = x.shape[1]
    theta, info, score = _olr_fit(x, y, w_scaled, p, k)
    a_inv = np.linalg.inv(info)
    if design.is_replicate:
        rep = design.replicates
        reps = rep.weights
        out = np.empty((len(theta), rep.n_replicates))
        for r in range(rep.n_replicates):
            wr = reps[rows, r]
            out[:, r] = _olr_fit(x, y, wr / wr.sum() * len(rows), p, k, theta=theta)[0]
        vcov = _replicate_vcov(out, theta, rep, [])
        method = f"{rep.type} replicate weights ({rep.n_replicates})"
    else:
        infl = (score * (w_scaled / w)[:, None]) @ a_inv
        base = np.where(fit_rows, 0, -1).astype(np.int64)
        blocks = []
        for j in range(len(theta)):
            num = np.zeros(n)
            num[rows] = infl[:, j]
            blocks.append(RatioBlock(base=base, n_bases=1, numerator=num, kind="total"))
        result = design.evaluate(blocks, covariance=True)[0]
        vcov = result.covariance * _lonely_factor(design, result)
        method = "linearization"
    cuts = [f"{order[j]}|{order[j + 1]}" for j in range(k - 1)]
    return OlrFit(
        formula=f,
        levels=order,
        names=[c.name for c in coef_rows] + cuts,
        terms=mm.term_labels,
        coefficients=theta,
        vcov=(vcov + vcov.T) / 2,
        n=int(fit_rows.sum()),
        missing=int((domain & missing).sum()),
        variance_method=method,
        where=where_label,
        conf_level=conf_level,
        coef_rows=coef_rows,
    )
