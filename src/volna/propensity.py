"""Propensity weighting of a self-selected sample towards a reference sample.

An online sample (say, emigrants recruited through Telegram channels) is compared with
a probability *reference* survey of the population it should stand for. A weighted
logistic regression of membership -- 1 for a sample respondent, 0 for a reference
respondent -- on shared covariates gives each respondent's propensity ``p``; weighting
the sample by the odds ``(1 - p) / p`` makes its covariate distribution look like the
reference's (inverse propensity weighting, as ``balance``'s IPW with a plain logistic
model). :func:`balance_table` shows how far each covariate was from the reference before
and after, as absolute standardized mean differences (ASMD).

>>> import polars as pl
>>> from volna.design import SurveyDesign
>>> sample = SurveyDesign.from_frame(pl.DataFrame({"g": ["a", "a", "a", "b"]}))
>>> reference = pl.DataFrame({"g": ["a", "b", "b", "b"]})
>>> weighted = propensity_weights(sample, reference, ["g"])
>>> weighted.weights.round(6).tolist()
[0.333333, 0.333333, 0.333333, 3.0]
>>> balance_table(weighted, reference, ["g"]).select("level", "sample_before", "sample_after")
shape: (2, 3)
┌───────┬───────────────┬──────────────┐
│ level ┆ sample_before ┆ sample_after │
│ ---   ┆ ---           ┆ ---          │
│ str   ┆ f64           ┆ f64          │
╞═══════╪═══════════════╪══════════════╡
│ a     ┆ 0.75          ┆ 0.25         │
│ b     ┆ 0.25          ┆ 0.75         │
└───────┴───────────────┴──────────────┘

The variance of estimates from the weighted design treats the propensity weights as
fixed: it does not include the uncertainty of estimating the propensity model (as
``balance`` and most tools). Calibrating afterwards to known margins (``rake``,
``calibrate``) -- the doubly robust order -- lets the calibration part count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import scipy.linalg
import scipy.special

from volna.design import label, level_labels, to_polars
from volna.weighting import WeightingError, WeightingStep

if TYPE_CHECKING:
    from volna.design import SurveyDesign

#: the level that stands for a missing value (``missing="indicator"``, balance tables)
MISSING_LEVEL = "(missing)"

#: a coefficient beyond this on the standardized scale (an odds ratio of e**25 per
#: standard deviation or per level) means the fit is running off to infinity
_DIVERGED = 25.0

#: weighting steps after which the design's weights reproduce known totals
_CALIBRATING = ("rake", "poststratify", "calibrate", "trim")

_KINDS = ("categorical", "numeric")
_MISSING_POLICIES = ("error", "indicator")
_CHUNK = 1 << 16


# ---------------------------------------------------------------------------------------
# covariates as both samples see them


@dataclass(frozen=True, eq=False)
class _Covariate:
    """One covariate on the sample and reference rows.

    Categorical: ``codes_*`` index ``levels`` (``-1``: missing). Numeric: ``values_*``
    (``NaN``: missing).
    """

    name: str
    kind: str
    levels: tuple[str, ...] = ()
    codes_s: np.ndarray | None = None
    codes_r: np.ndarray | None = None
    values_s: np.ndarray | None = None
    values_r: np.ndarray | None = None

    @property
    def missing_s(self) -> np.ndarray:
        return self.codes_s < 0 if self.kind == "categorical" else np.isnan(self.values_s)

    @property
    def missing_r(self) -> np.ndarray:
        return self.codes_r < 0 if self.kind == "categorical" else np.isnan(self.values_r)


def _covariate_kinds(covariates: Any, data: pl.DataFrame) -> dict[str, str]:
    """``{name: kind}``: strings, booleans and integers are categorical, floats numeric."""
    if isinstance(covariates, str):
        covariates = [covariates]
    if isinstance(covariates, Mapping):
        asked = {str(k): v for k, v in covariates.items()}
    else:
        asked = {str(c): None for c in covariates}
    if not asked:
        raise WeightingError("propensity weighting needs at least one covariate")
    kinds = {}
    for name, kind in asked.items():
        if name not in data.columns:
            raise WeightingError(
                f"covariate {name} is not a column of the sample; its columns are "
                + ", ".join(data.columns[:20])
                + (" ..." if data.width > 20 else "")
            )
        dtype = data.schema[name]
        if kind is None:
            if dtype.is_float():
                kind = "numeric"
            elif (
                dtype.is_integer()
                or dtype in (pl.String, pl.Categorical, pl.Boolean)
                or isinstance(dtype, pl.Enum)
            ):
                kind = "categorical"
            else:
                raise WeightingError(
                    f"covariate {name}: type {dtype} is neither categorical nor numeric; "
                    "convert it, or say {'" + name + "': 'categorical'}"
                )
        if kind not in _KINDS:
            raise WeightingError(
                f"covariate {name}: kind {kind!r} is not one of {', '.join(_KINDS)}"
            )
        if kind == "numeric" and not (dtype.is_numeric() or dtype == pl.Boolean):
            raise WeightingError(
                f"covariate {name}: type {dtype} is not numeric; treat it as categorical"
            )
        kinds[name] = kind
    return kinds


def _level_order(values: list[Any], enum_order: list[str] | None) -> list[str]:
    """Levels in a stable order: an Enum's own, numbers by value, text alphabetically."""
    labels = {label(v): v for v in values}
    if enum_order is not None:
        first = [x for x in enum_order if x in labels]
        return first + sorted(set(labels) - set(first))
    if all(isinstance(v, (bool, int, float)) for v in labels.values()):
        return sorted(labels, key=lambda k: float(labels[k]))
    return sorted(labels)


def _encode(
    sample: pl.DataFrame, reference: pl.DataFrame, kinds: Mapping[str, str]
) -> list[_Covariate]:
    out = []
    for name, kind in kinds.items():
        if name not in reference.columns:
            raise WeightingError(
                f"covariate {name} is not a column of the reference sample; its columns "
                "are " + ", ".join(reference.columns[:20])
            )
        s, r = sample.get_column(name), reference.get_column(name)
        if kind == "numeric":
            if not (r.dtype.is_numeric() or r.dtype in (pl.Boolean, pl.Null)):
                raise WeightingError(
                    f"covariate {name} is numeric in the sample but {r.dtype} in the "
                    "reference sample"
                )
            vs = s.cast(pl.Float64).fill_nan(None).fill_null(np.nan).to_numpy()
            vr = r.cast(pl.Float64).fill_nan(None).fill_null(np.nan).to_numpy()
            out.append(_Covariate(name, kind, values_s=vs, values_r=vr))
            continue
        ls, lr = level_labels(s), level_labels(r)
        enum = s.dtype.categories.to_list() if isinstance(s.dtype, pl.Enum) else None
        natural = []
        for series in (s, r):
            uniq = series.drop_nulls()
            if uniq.dtype.is_float():
                uniq = uniq.fill_nan(None).drop_nulls()
            if uniq.dtype == pl.Categorical or isinstance(uniq.dtype, pl.Enum):
                uniq = uniq.cast(pl.String)
            natural.extend(uniq.unique().to_list())
        levels = _level_order(natural, enum)
        enum_type = pl.Enum(levels)
        cs = ls.cast(enum_type).to_physical().cast(pl.Int64).fill_null(-1).to_numpy()
        cr = lr.cast(enum_type).to_physical().cast(pl.Int64).fill_null(-1).to_numpy()
        out.append(_Covariate(name, kind, tuple(levels), codes_s=cs, codes_r=cr))
    return out


def _rows_text(rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r) + 1) for r in rows[:5])
    return shown + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")


def _with_missing_level(cov: _Covariate) -> _Covariate:
    """A categorical covariate whose missing values form their own level."""
    if not (cov.missing_s.any() or cov.missing_r.any()):
        return cov
    k = len(cov.levels)
    return _Covariate(
        cov.name,
        cov.kind,
        (*cov.levels, MISSING_LEVEL),
        codes_s=np.where(cov.codes_s < 0, k, cov.codes_s),
        codes_r=np.where(cov.codes_r < 0, k, cov.codes_r),
    )


def _check_missing(covs: list[_Covariate], missing: str) -> list[_Covariate]:
    if missing not in _MISSING_POLICIES:
        raise WeightingError(f"missing={missing!r}: expected one of {', '.join(_MISSING_POLICIES)}")
    out = []
    for cov in covs:
        if missing == "error":
            for side, mask in (("sample", cov.missing_s), ("reference", cov.missing_r)):
                rows = np.flatnonzero(mask)
                if len(rows):
                    rows_have = "rows" if len(rows) > 1 else "row"
                    verb = "have" if len(rows) > 1 else "has"
                    raise WeightingError(
                        f"covariate {cov.name}: {side} {rows_have} {_rows_text(rows)} {verb} no "
                        "value; propensity weighting needs every covariate of every "
                        "respondent (missing='indicator' makes missing a level of its own, "
                        "or impute or drop those rows first)"
                    )
            out.append(cov)
        elif cov.kind == "categorical":
            out.append(_with_missing_level(cov))
        else:
            out.append(cov)
    return out


def _check_overlap(covs: list[_Covariate], d: np.ndarray, r: np.ndarray) -> None:
    """Every level (and missingness) must occur on both sides, among weighted rows."""
    for cov in covs:
        if cov.kind == "categorical":
            k = len(cov.levels)
            s_has = np.bincount(cov.codes_s[d > 0], minlength=k) > 0
            r_has = np.bincount(cov.codes_r[r > 0], minlength=k) > 0
            levels = list(cov.levels)
        else:
            s_has = np.array([(cov.missing_s & (d > 0)).any()])
            r_has = np.array([(cov.missing_r & (r > 0)).any()])
            levels = [MISSING_LEVEL]
        for j in np.flatnonzero(s_has != r_has):
            level = levels[j]
            if cov.kind == "categorical":
                rows_s, rows_r = cov.codes_s == j, cov.codes_r == j
            else:
                rows_s, rows_r = cov.missing_s, cov.missing_r
            what, fix = f"level {level}", "merge it into another level or drop"
            if level == MISSING_LEVEL:
                what, fix = "a missing value", "impute it or drop"
            if s_has[j]:
                hit = np.flatnonzero(rows_s & (d > 0))
                raise WeightingError(
                    f"covariate {cov.name}: {what} occurs in {len(hit)} sample row(s) "
                    f"(first: row {int(hit[0]) + 1}) but in no reference row, so no one in "
                    "the reference can stand for them (their propensity is 1, their weight "
                    f"0); {fix} those respondents"
                )
            share = float(r[rows_r].sum() / r.sum())
            raise WeightingError(
                f"covariate {cov.name}: {what} occurs in the reference ({share:.1%} of its "
                "weight) but in no weighted sample row, so no respondent can stand for "
                f"them; {fix} those reference rows"
            )


# ---------------------------------------------------------------------------------------
# the membership model


@dataclass(frozen=True, eq=False)
class _Units:
    """Distinct covariate patterns of both samples, with each side's weight on them."""

    unit_s: np.ndarray  # (n_s,) pattern of every sample row
    x: np.ndarray  # (units, p) model matrix, intercept first, numeric standardized
    a: np.ndarray  # (units,) normalized sample weight
    b: np.ndarray  # (units,) normalized reference weight
    names: tuple[str, ...]  # a coefficient per column of x
    owners: tuple[str, ...]  # the covariate of each column
    centre: np.ndarray  # (p,) how numeric columns were standardized (0, 1 otherwise)
    scale: np.ndarray


def _pattern_codes(cov: _Covariate) -> tuple[np.ndarray, np.ndarray, int]:
    """Integer codes over sample + reference rows, and the value of every code."""
    if cov.kind == "categorical":
        codes = np.concatenate([cov.codes_s, cov.codes_r])
        return codes, np.arange(len(cov.levels), dtype=float), len(cov.levels)
    values = np.concatenate([cov.values_s, cov.values_r])
    uniq, inverse = np.unique(values, return_inverse=True)  # NaN (one code) sorts last
    return inverse.ravel().astype(np.int64), uniq, len(uniq)


def _units(covs: list[_Covariate], d: np.ndarray, r: np.ndarray) -> _Units:
    n_s = len(d)
    total = (n_s + len(r)) / 2.0
    weights = np.concatenate([d * (total / d.sum()), r * (total / r.sum())])
    side = np.concatenate([np.ones(n_s, dtype=bool), np.zeros(len(r), dtype=bool)])
    parts = [_pattern_codes(c) for c in covs]
    sizes = [max(size, 1) for _, _, size in parts]
    n_keys = math.prod(float(s) for s in sizes)
    if n_keys < 2.0**62:
        key = np.zeros(n_s + len(r), dtype=np.int64)
        for (codes, _, _), size in zip(parts, sizes, strict=True):
            key = key * size + codes
        if n_keys <= 1 << 25:  # few possible patterns: number them without sorting
            present = np.bincount(key, minlength=int(n_keys)) > 0
            unit = (np.cumsum(present) - 1)[key]
            first = np.empty(int(present.sum()), dtype=np.int64)
            first[unit] = np.arange(len(key))  # any row of a pattern stands for it
        else:
            _, first, unit = np.unique(key, return_index=True, return_inverse=True)
            unit = unit.ravel()
    else:  # too many combinations to number: every row is its own pattern
        first = np.arange(n_s + len(r))
        unit = first
    n_units = len(first)
    a = np.bincount(unit[side], weights=weights[side], minlength=n_units)
    b = np.bincount(unit[~side], weights=weights[~side], minlength=n_units)
    both = a + b

    # the model matrix: first what its columns are, then filled column by column
    # (Fortran order keeps every write contiguous)
    names, owners = ["(Intercept)"], ["(Intercept)"]
    centres, scales = [0.0], [1.0]
    fills: list[Any] = [lambda: 1.0]
    for cov, (codes, values, _) in zip(covs, parts, strict=True):
        at = codes[first]
        if cov.kind == "categorical":
            for j in range(1, len(cov.levels)):  # the first level is the baseline
                names.append(f"{cov.name}={cov.levels[j]}")
                owners.append(cov.name)
                centres.append(0.0)
                scales.append(1.0)
                fills.append(lambda at=at, j=j: at == j)
            continue
        v = values[at]
        seen = ~np.isnan(v)
        weight, m, sd = both[seen], 0.0, 0.0
        if weight.sum() > 0:
            m = float(weight @ v[seen] / weight.sum())
            sd = math.sqrt(float(weight @ (v[seen] - m) ** 2 / weight.sum()))
        if not sd > 0:
            raise WeightingError(
                f"covariate {cov.name} has the same value ({label(m)}) for every weighted "
                "respondent of both samples; it cannot tell them apart, drop it"
            )
        names.append(cov.name)
        owners.append(cov.name)
        centres.append(m)
        scales.append(sd)
        fills.append(lambda v=v, seen=seen, m=m, sd=sd: np.where(seen, (v - m) / sd, 0.0))
        if not seen.all():
            names.append(f"{cov.name}={MISSING_LEVEL}")
            owners.append(cov.name)
            centres.append(0.0)
            scales.append(1.0)
            fills.append(lambda seen=seen: ~seen)
    x = np.empty((n_units, len(names)), order="F")
    for col, fill in enumerate(fills):
        x[:, col] = fill()
    return _Units(
        unit_s=unit[:n_s],
        x=x,
        a=a,
        b=b,
        names=tuple(names),
        owners=tuple(owners),
        centre=np.array(centres),
        scale=np.array(scales),
    )


def _gram(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``x' diag(h) x`` in row blocks, so no second (units, p) matrix is held."""
    p = x.shape[1]
    out = np.zeros((p, p))
    for start in range(0, x.shape[0], _CHUNK):
        xc = x[start : start + _CHUNK]
        out += xc.T @ (xc * h[start : start + _CHUNK, None])
    return out


@dataclass(frozen=True)
class _Fit:
    beta: np.ndarray
    eta: np.ndarray
    iterations: int
    rank: int


def _objective(beta, x, a, both, pen) -> float:
    eta = x @ beta
    return float(both @ np.logaddexp(0.0, eta) - a @ eta + 0.5 * (pen * beta) @ beta)


def _newton(units: _Units, penalty: float, tol: float, max_iter: int) -> _Fit:
    """Penalized weighted logistic regression by Newton's method with step halving."""
    x, a, b = units.x, units.a, units.b
    both = a + b
    p = x.shape[1]
    pen = np.full(p, float(penalty))
    pen[0] = 0.0
    beta = np.zeros(p)
    f = _objective(beta, x, a, both, pen)
    rank = p
    last_step = np.zeros(p)
    for it in range(1, max_iter + 1):
        eta = x @ beta
        prob = _expit(eta)
        grad = x.T @ (both * prob - a) + pen * beta
        hess = _gram(x, both * prob * (1.0 - prob)) + np.diag(pen)
        step, rank = _solve(hess, grad)
        t = 1.0
        if np.abs(step).max(initial=0.0) > 1e-6:
            # Armijo backtracking; near the optimum the full step is taken as is, since
            # the objective's rounding error then exceeds the decrease it could show
            slope = float(grad @ step)
            for _ in range(60):
                f_new = _objective(beta - t * step, x, a, both, pen)
                if f_new <= f - 1e-4 * t * slope:
                    break
                t /= 2
            else:  # no decrease along the Newton direction: rounding has the last word
                if np.abs(step).max() > 1e-4 * (1.0 + np.abs(beta).max()):
                    last_step = step
                    break
                t, f_new = 1.0, _objective(beta - step, x, a, both, pen)
        else:
            f_new = _objective(beta - step, x, a, both, pen)
        last_step = t * step
        beta = beta - last_step
        f = f_new
        big = np.abs(beta[1:])
        if big.size and big.max() > _DIVERGED:
            raise _separation(units, int(np.argmax(big)) + 1, beta)
        if np.abs(last_step).max(initial=0.0) <= tol * (1.0 + np.abs(beta).max(initial=0.0)):
            return _Fit(beta, x @ beta, it, rank)
    worst = int(np.argmax(np.abs(last_step[1:]))) + 1 if p > 1 else 0
    raise WeightingError(
        f"the propensity model did not converge in {max_iter} iterations: the coefficient "
        f"of {units.names[worst]} (covariate {units.owners[worst]}) still moved by "
        f"{abs(last_step[worst]):.2e}; the covariates may nearly separate the sample from "
        "the reference (merge sparse levels, or set penalty= above 0), or raise max_iter"
    )


def _separation(units: _Units, j: int, beta: np.ndarray) -> WeightingError:
    name, owner = units.names[j], units.owners[j]
    up = beta[j] > 0
    if name == owner:  # a numeric covariate
        why = f"its {'higher' if up else 'lower'} values occur (almost) only in the sample"
    else:
        level = name.split("=", 1)[1]
        why = f"its level {level} occurs (almost) only in the {'sample' if up else 'reference'}"
    return WeightingError(
        f"the propensity model diverged: the coefficient of {name} (covariate {owner}) runs "
        f"off to {'+' if up else '-'}infinity, because {owner} (nearly) separates the sample "
        f"from the reference -- {why}; merge or cut its levels, drop it, or set penalty= "
        "above 0 to keep the coefficients finite"
    )


def _expit(eta: np.ndarray) -> np.ndarray:
    return scipy.special.expit(eta)


def _solve(hess: np.ndarray, grad: np.ndarray) -> tuple[np.ndarray, int]:
    """Newton step; collinear columns get the minimum-norm step (fitted values unique)."""
    try:
        c = scipy.linalg.cho_factor(hess, check_finite=False)
        step = scipy.linalg.cho_solve(c, grad, check_finite=False)
        if np.all(np.isfinite(step)):
            vals = np.linalg.eigvalsh(hess)
            if vals.min() > vals.max() * 1e-12:
                return step, len(grad)
    except np.linalg.LinAlgError:
        pass
    vals, vecs = np.linalg.eigh(hess)
    keep = vals > vals.max(initial=0.0) * len(grad) * 1e-12
    step = vecs[:, keep] @ ((vecs[:, keep].T @ grad) / vals[keep])
    return step, int(keep.sum())


def _collinear(units: _Units) -> list[str]:
    """Model columns that are linear combinations of earlier ones (not identified)."""
    g = _gram(units.x, units.a + units.b)
    _, rr, piv = scipy.linalg.qr(g, pivoting=True)
    diag = np.abs(np.diag(rr))
    keep = diag > diag.max(initial=0.0) * len(diag) * 1e-12
    return sorted(units.names[int(j)] for j in piv[~keep])


# ---------------------------------------------------------------------------------------
# balance: absolute standardized mean differences


def _weighted_shares(codes: np.ndarray, w: np.ndarray, k: int) -> np.ndarray:
    """Weighted share of each level, missing (``-1``) last, over all rows."""
    sums = np.bincount(codes + 1, weights=w, minlength=k + 1)
    total = w.sum()
    shares = sums / total if total > 0 else np.full(k + 1, np.nan)
    return np.concatenate([shares[1:], shares[:1]])


def _weighted_mean_sd(values: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    seen = ~np.isnan(values)
    ws = w[seen]
    total = ws.sum()
    if not total > 0:
        return math.nan, math.nan
    v = values[seen]
    m = float(ws @ v / total)
    return m, math.sqrt(max(float(ws @ (v - m) ** 2 / total), 0.0))


def _asmd(mean_s: np.ndarray, mean_r: np.ndarray, sd_r: np.ndarray) -> np.ndarray:
    diff = np.abs(np.asarray(mean_s) - np.asarray(mean_r))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = diff / sd_r
    # a reference without spread: no difference is balance, any difference is infinite
    return np.where(sd_r > 0, out, np.where(diff <= 1e-12, 0.0, np.inf))


def _balance_rows(
    covs: list[_Covariate], before: np.ndarray, after: np.ndarray, r: np.ndarray
) -> dict[str, list]:
    rows: dict[str, list] = {
        k: []
        for k in (
            "variable",
            "level",
            "sample_before",
            "sample_after",
            "reference",
            "asmd_before",
            "asmd_after",
        )
    }

    def add(name, levels, sb, sa, ref, sd):
        rows["variable"].extend([name] * len(levels))
        rows["level"].extend(levels)
        rows["sample_before"].extend(np.asarray(sb, dtype=float).tolist())
        rows["sample_after"].extend(np.asarray(sa, dtype=float).tolist())
        rows["reference"].extend(np.asarray(ref, dtype=float).tolist())
        rows["asmd_before"].extend(_asmd(sb, ref, sd).tolist())
        rows["asmd_after"].extend(_asmd(sa, ref, sd).tolist())

    for cov in covs:
        any_missing = bool(cov.missing_s.any() or cov.missing_r.any())
        if cov.kind == "categorical":
            k = len(cov.levels)
            sb = _weighted_shares(cov.codes_s, before, k)
            sa = _weighted_shares(cov.codes_s, after, k)
            ref = _weighted_shares(cov.codes_r, r, k)
            levels = [*cov.levels, MISSING_LEVEL]
            keep = slice(None) if any_missing else slice(0, k)
            add(cov.name, levels[keep], sb[keep], sa[keep], ref[keep], _bernoulli_sd(ref[keep]))
            continue
        mb, _ = _weighted_mean_sd(cov.values_s, before)
        ma, _ = _weighted_mean_sd(cov.values_s, after)
        mr, sdr = _weighted_mean_sd(cov.values_r, r)
        add(cov.name, [None], [mb], [ma], [mr], np.array([sdr]))
        if any_missing:
            shares = [_missing_share(cov.missing_s, w) for w in (before, after)]
            ref_share = _missing_share(cov.missing_r, r)
            add(
                cov.name,
                [MISSING_LEVEL],
                [shares[0]],
                [shares[1]],
                [ref_share],
                _bernoulli_sd(np.array([ref_share])),
            )
    return rows


def _bernoulli_sd(p: np.ndarray) -> np.ndarray:
    return np.sqrt(np.clip(p * (1.0 - p), 0.0, None))


def _missing_share(mask: np.ndarray, w: np.ndarray) -> float:
    total = w.sum()
    return float(w[mask].sum() / total) if total > 0 else math.nan


def _asmd_by_level(covs, before, after, r) -> dict[str, float]:
    rows = _balance_rows(covs, before, after, r)
    return {
        (var if lev is None else f"{var}={lev}"): float(e)
        for var, lev, e in zip(rows["variable"], rows["level"], rows["asmd_after"], strict=True)
    }


# ---------------------------------------------------------------------------------------
# inputs


def _reference_frame(reference: Any, reference_weights: str | None) -> tuple[pl.DataFrame, Any]:
    from volna.design import SurveyDesign

    if isinstance(reference, SurveyDesign):
        if reference_weights is not None:
            raise WeightingError(
                "the reference is a SurveyDesign, whose weights are used; drop "
                f"reference_weights={reference_weights!r}"
            )
        return reference.data, np.asarray(reference.weights, dtype=float)
    try:
        frame = to_polars(reference)
    except Exception as exc:  # DesignError: not a frame
        raise WeightingError(f"reference: {exc}") from exc
    if frame.height == 0:
        raise WeightingError("the reference sample has no rows")
    if reference_weights is None:
        return frame, np.ones(frame.height)
    if reference_weights not in frame.columns:
        raise WeightingError(
            f"reference_weights={reference_weights!r} is not a column of the reference "
            "sample; its columns are " + ", ".join(frame.columns[:20])
        )
    col = frame.get_column(reference_weights)
    if not col.dtype.is_numeric():
        raise WeightingError(
            f"reference weight column {reference_weights} holds {col.dtype}, not numbers"
        )
    return frame, col.cast(pl.Float64).fill_nan(None).fill_null(np.nan).to_numpy()


def _check_weight_vector(w: np.ndarray, what: str) -> np.ndarray:
    w = np.asarray(w, dtype=float)
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if len(bad):
        row = int(bad[0])
        raise WeightingError(
            f"{what} row {row + 1}: weight {w[row]:g} is "
            + ("missing" if np.isnan(w[row]) else "not a non-negative number")
            + (f" ({len(bad) - 1} more such rows)" if len(bad) > 1 else "")
        )
    if not w.sum() > 0:
        raise WeightingError(f"every {what} weight is zero; there is nothing to weight with")
    return w


def _weights_before(design: SurveyDesign) -> np.ndarray:
    """The design weights before propensity weighting, if that was the last step."""
    if design.weighting and design.weighting[-1].method == "propensity":
        before = design.weighting[-1].weights_before
        if before is not None:
            return np.asarray(before, dtype=float)
    return np.asarray(design.weights, dtype=float)


def _trim(w: np.ndarray, cap: float, total: float) -> tuple[np.ndarray, int, int]:
    """Cap at ``cap`` and scale the rest up so the total stays: (weights, capped, rounds)."""
    capped = np.zeros(len(w), dtype=bool)
    out = w
    for rounds in range(1, len(w) + 2):
        free = w[~capped].sum()
        factor = (total - cap * capped.sum()) / free
        out = np.where(capped, cap, w * factor)
        over = ~capped & (out > cap * (1 + 1e-12))
        if not over.any():
            return out, int(capped.sum()), rounds
        capped |= over
    return out, int(capped.sum()), len(w) + 1  # pragma: no cover - at most n rounds


# ---------------------------------------------------------------------------------------
# public functions


def propensity_weights(
    design: SurveyDesign,
    reference: Any,
    covariates: str | Sequence[str] | Mapping[str, str],
    *,
    reference_weights: str | None = None,
    penalty: float = 0.0,
    max_iter: int = 100,
    tol: float = 1e-10,
    trim_upper: float | None = None,
    missing: str = "error",
) -> SurveyDesign:
    """Weight a self-selected sample towards a reference sample by inverse propensity odds.

    A logistic regression of membership (1: a row of ``design``, 0: a row of
    ``reference``) on the covariates is fitted with the sample rows weighted by their
    design weights and the reference rows by theirs, both groups scaled to the same
    total. Each respondent's new weight is ``d * (1 - p) / p`` -- the design weight times
    the odds of being in the reference -- scaled so that the weights add up to the
    reference's weighted total (the population it represents).

    Parameters
    ----------
    design:
        the non-probability sample; its weights are the base weights.
    reference:
        the reference sample, a pandas or polars DataFrame with the covariate columns,
        or a :class:`~volna.design.SurveyDesign` (then its weights are used).
    covariates:
        the columns to balance. Strings, booleans and integers are categorical (one
        indicator per level, the first level the baseline), floats numeric
        (standardized internally); ``{"age": "numeric", "year": "categorical"}`` says
        which explicitly. Every level of the sample must occur in the reference and the
        other way round (otherwise no one can stand for those people): an error names it.
    reference_weights:
        the reference's weight column (default: every reference row weighs 1).
    penalty:
        ridge penalty on the coefficients of the standardized covariates (not on the
        intercept), on the scale of a log-likelihood whose weights total the number of
        rows -- sklearn's ``LogisticRegression(C=1/penalty)``. It keeps coefficients
        finite when levels are sparse.
    max_iter, tol:
        Newton iterations at most, and the largest change of a (standardized)
        coefficient at which the fit has converged.
    trim_upper:
        cap the weights at this multiple of their mean (which the fixed total fixes); the
        other weights are scaled up to keep the total, repeated until no weight exceeds
        the cap. Must be above 1.
    missing:
        ``"error"``: a missing covariate value is an error naming the rows;
        ``"indicator"``: missing is a level of its own (numeric covariates get an
        indicator and the mean in place of the value). Missingness must then occur in
        both samples.

    Returns
    -------
    SurveyDesign
        the design with the new weights, recording a :class:`~volna.weighting.WeightingStep`
        with ``method="propensity"``: ``errors`` holds the ASMD of every covariate (level)
        after weighting and ``max_error`` the largest; ``options["coefficients"]`` the
        fitted model on the covariates' own scale (its intercept is the log-odds of
        membership with both groups weighted to the same total, at the baseline levels
        and numeric covariates at 0).

    Weight by propensity before raking or calibrating: a design whose weights already
    reproduce margins is refused, since new weights would undo them. Every row of the
    design is weighted, as by ``rake`` (a ``subset`` restriction is not applied).

    The standard errors of the weighted design treat these weights as fixed: they do not
    include the uncertainty of estimating the propensity model (as ``balance`` and most
    tools). Replicate weights are multiplied by the same adjustment, not refitted.

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> sample = SurveyDesign.from_frame(pl.DataFrame({
    ...     "sex": ["f", "f", "f", "m", "m", "f"],
    ...     "age": [25.0, 31.0, 28.0, 45.0, 52.0, 38.0]}))
    >>> reference = pl.DataFrame({
    ...     "sex": ["f", "m", "m", "f", "m", "m"],
    ...     "age": [41.0, 47.0, 55.0, 30.0, 62.0, 36.0], "w": [10, 20, 20, 10, 20, 20]})
    >>> d = propensity_weights(sample, reference, ["sex", "age"], reference_weights="w")
    >>> round(float(d.weights.sum()), 9)
    100.0
    >>> step = d.weighting[-1]
    >>> step.method, step.converged
    ('propensity', True)
    >>> {level: round(asmd, 3) for level, asmd in step.errors.items()}  # ASMD after
    {'sex=f': 0.02, 'sex=m': 0.02, 'age': 0.119}
    """
    d = _check_weight_vector(design.weights, "sample")
    if design.calibrations or any(s.method in _CALIBRATING for s in design.weighting):
        done = ", ".join(s.method for s in design.weighting) or "calibrated"
        raise WeightingError(
            f"the design's weights are already calibrated ({done}); propensity weighting "
            "would undo those margins. Weight by propensity first, then rake or calibrate "
            "to the margins (the doubly robust order)"
        )
    if not penalty >= 0:
        raise WeightingError(f"penalty={penalty!r} must be zero or positive")
    if trim_upper is not None and not trim_upper > 1:
        raise WeightingError(
            f"trim_upper={trim_upper!r} must be above 1 (a multiple of the mean weight)"
        )
    if max_iter < 1 or not tol > 0:
        raise WeightingError("max_iter must be at least 1 and tol above 0")
    ref_frame, r = _reference_frame(reference, reference_weights)
    r = _check_weight_vector(r, "reference")
    kinds = _covariate_kinds(covariates, design.data)
    covs = _check_missing(_encode(design.data, ref_frame, kinds), missing)
    _check_overlap(covs, d, r)

    units = _units(covs, d, r)
    notes = []
    fit = _newton(units, penalty, tol, max_iter)
    if fit.rank < units.x.shape[1]:
        loose = _collinear(units)
        notes.append(
            "coefficients of " + ", ".join(loose) + " are not identified (collinear with "
            "other covariates); the weights do not depend on them"
        )
    odds = np.exp(-fit.eta)[units.unit_s]  # (1 - p) / p of every sample row
    total = float(r.sum())
    raw = d * odds
    scale = total / raw.sum()
    w = raw * scale
    if trim_upper is not None:
        cap = trim_upper * total / len(w)
        if cap * np.count_nonzero(w) < total * (1 - 1e-12):
            raise WeightingError(
                f"trim_upper={trim_upper:g}: {np.count_nonzero(w)} weighted respondents "
                f"capped at {cap:.6g} cannot reach the reference total {total:.6g}"
            )
        w, n_capped, rounds = _trim(w, cap, total)
        notes.append(
            f"{n_capped} weight(s) capped at {cap:.6g} ({trim_upper:g} x the mean weight) "
            f"in {rounds} round(s), the others scaled up to keep the total"
        )
    kish = len(w) * float(w @ w) / float(w.sum()) ** 2
    notes.append(
        f"Kish design effect of the weights {kish:.3f} (effective sample size "
        f"{len(w) / kish:,.0f} of {len(w):,} rows)"
    )
    prob = _expit(fit.eta[units.unit_s][d > 0])
    notes.append(f"propensities of weighted respondents from {prob.min():.3g} to {prob.max():.3g}")
    notes.append(
        "standard errors treat these weights as fixed: they do not include the "
        "uncertainty of estimating the propensity model"
    )

    replicate_weights = None
    if design.replicates is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(d > 0, w / np.where(d > 0, d, 1.0), odds * scale)
        replicate_weights = design.replicates.columns.to_array(factor)
        notes.append(
            "replicate weights multiplied by the same adjustment (the model is not "
            "refitted per replicate)"
        )

    errors = _asmd_by_level(covs, d, w, r)
    beta = fit.beta / units.scale
    beta[0] = fit.beta[0] - float(np.sum(fit.beta[1:] * units.centre[1:] / units.scale[1:]))
    step = WeightingStep(
        method="propensity",
        converged=True,
        iterations=fit.iterations,
        max_error=max(errors.values(), default=0.0),
        errors=errors,
        options={
            "covariates": dict(kinds),
            "reference_weights": reference_weights,
            "reference_rows": len(r),
            "reference_total": total,
            "penalty": penalty,
            "max_iter": max_iter,
            "tol": tol,
            "trim_upper": trim_upper,
            "missing": missing,
            "coefficients": dict(zip(units.names, beta.tolist(), strict=True)),
        },
        notes=tuple(notes),
        weights_before=d,
    )
    return design.reweighted(w, step, None, replicate_weights)


def balance_table(
    design: SurveyDesign,
    reference: Any,
    covariates: str | Sequence[str] | Mapping[str, str],
    reference_weights: str | None = None,
) -> pl.DataFrame:
    """How far the sample's covariates are from the reference's, before and after weighting.

    One row per level of a categorical covariate (its weighted share) and per numeric
    covariate (its weighted mean, ``level`` empty); missing values appear as the level
    ``"(missing)"`` (for numeric covariates, its share; the mean is over known values).

    Columns: ``variable``, ``level``, ``sample_before`` (with the weights before
    propensity weighting when that was the design's last step, otherwise the design's
    weights), ``sample_after`` (the design's weights), ``reference`` and the absolute
    standardized mean differences ``asmd_before`` and ``asmd_after``:
    ``|mean_sample - mean_reference| / sd_reference``, the reference's weighted standard
    deviation (``sqrt(p (1 - p))`` for a level's share), as ``balance``. A difference where
    the reference has no spread is infinite. :func:`asmd_summary` averages them.

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> sample = SurveyDesign.from_frame(pl.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]}))
    >>> reference = pl.DataFrame({"x": [2.0, 4.0, 6.0, 8.0]})
    >>> balance_table(sample, reference, ["x"]).select("sample_before", "reference",
    ...                                                "asmd_before")
    shape: (1, 3)
    ┌───────────────┬───────────┬─────────────┐
    │ sample_before ┆ reference ┆ asmd_before │
    │ ---           ┆ ---       ┆ ---         │
    │ f64           ┆ f64       ┆ f64         │
    ╞═══════════════╪═══════════╪═════════════╡
    │ 2.5           ┆ 5.0       ┆ 1.118034    │
    └───────────────┴───────────┴─────────────┘
    """
    after = _check_weight_vector(design.weights, "sample")
    before = _weights_before(design)
    ref_frame, r = _reference_frame(reference, reference_weights)
    r = _check_weight_vector(r, "reference")
    kinds = _covariate_kinds(covariates, design.data)
    covs = _encode(design.data, ref_frame, kinds)
    rows = _balance_rows(covs, before, after, r)
    return pl.DataFrame(
        rows,
        schema={
            "variable": pl.String,
            "level": pl.String,
            "sample_before": pl.Float64,
            "sample_after": pl.Float64,
            "reference": pl.Float64,
            "asmd_before": pl.Float64,
            "asmd_after": pl.Float64,
        },
    )


def asmd_summary(table: pl.DataFrame) -> pl.DataFrame:
    """Mean ASMD per covariate (over its levels) and over covariates, before and after.

    The last row, ``variable == "(all)"``, averages the covariates' means, so a covariate
    with many levels counts once (as ``balance``'s ``asmd_mean``).

    >>> import polars as pl
    >>> table = pl.DataFrame({"variable": ["g", "g", "x"], "level": ["a", "b", None],
    ...                       "asmd_before": [0.4, 0.2, 0.6], "asmd_after": [0.0, 0.1, 0.2]})
    >>> asmd_summary(table).rows()
    [('g', 0.30000000000000004, 0.05), ('x', 0.6, 0.2), ('(all)', 0.45, 0.125)]
    """
    per = table.group_by("variable", maintain_order=True).agg(
        pl.col("asmd_before").mean(), pl.col("asmd_after").mean()
    )
    overall = per.select(
        pl.lit("(all)").alias("variable"),
        pl.col("asmd_before").mean(),
        pl.col("asmd_after").mean(),
    )
    return pl.concat([per, overall])
