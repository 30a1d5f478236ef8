"""Weighting to known margins: rake, post-stratify, calibrate, trim.

Each function takes a design and returns a new one whose weights reproduce the known
population figures exactly (to the tolerance asked), with a :class:`WeightingStep`
recording what was done and how close it got, and a :class:`Calibration` record that
makes standard errors account for the weighting as R's survey package does:
linearization uses the residuals of the influence values on the calibration variables
(g-weights), replicate designs recalibrate every replicate.

The work is done on *cells* -- the distinct combinations of the calibration variables
(and replicate groups) -- never on a dense table of every possible combination, so
memory grows with the rows, not with the product of the numbers of levels.

>>> import polars as pl
>>> from volna.design import SurveyDesign
>>> frame = pl.DataFrame({"sex": ["f", "m", "m", "m"], "age": ["y", "y", "o", "o"],
...                       "y": [1.0, 2.0, 3.0, 4.0]})
>>> d = SurveyDesign.from_frame(frame).rake({"sex": {"f": 50, "m": 50},
...                                          "age": {"y": 60, "o": 40}})
>>> d.weights.round(3).tolist()
[50.0, 10.0, 20.0, 20.0]
>>> d.weighting[-1].converged, d.weighting[-1].max_error < 1e-9
(True, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import scipy.sparse as sp
from scipy.special import expit

from volna.design import level_labels
from volna.errors import VolnaError
from volna.margins import Margin, MarginCells
from volna.variance import group_sum

if TYPE_CHECKING:
    from volna.design import SurveyDesign

CALFUNS = ("linear", "raking", "logit")


class WeightingError(VolnaError):
    """Weighting cannot reach its targets: infeasible bounds, no convergence, bad input."""


@dataclass(frozen=True)
class WeightingStep:
    """What one weighting step did, and how close the weights came to the targets.

    ``max_error`` is the largest relative difference between a weighted sample total and
    its target, over every margin (or auxiliary) of the step; ``errors`` gives it per
    margin. Stopping rules differ between tools; the achieved error is what to report.
    """

    method: str
    margins: tuple[Margin, ...] = ()
    converged: bool = True
    iterations: int = 0
    max_error: float = 0.0
    errors: Mapping[str, float] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    weights_before: np.ndarray | None = field(default=None, repr=False, compare=False)

    def describe(self) -> str:
        state = "converged" if self.converged else "NOT converged"
        head = f"{self.method}: {state} after {self.iterations} iteration(s), "
        what = "largest ASMD" if self.method == "propensity" else "largest margin error"
        head += f"{what} {self.max_error:.2e}"
        lines = [head]
        for name, err in self.errors.items():
            lines.append(f"  {name}: {err:.2e}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class Calibration:
    """How weights were calibrated, for the variance: ``w = g * d`` on columns ``X``.

    ``x`` is the (n, p) sparse matrix of calibration variables (indicators of margin
    cells, numeric auxiliaries); ``d`` the weights before the step and ``w`` after.
    Linearization replaces each influence value ``u_i`` by
    ``u_i - w_i x_i' B^+ sum_j x_j (d_j / w_j) u_j`` with ``B = sum_j d_j x_j x_j'``:
    the residual of a ``d``-weighted regression on ``x`` (R's ``svyrecvar``).

    ``variance="rake"`` reproduces R's ``rake()`` instead: ten backfitting sweeps that
    subtract, margin by margin, the *unweighted* mean of ``u / w`` within each level.
    It equals the regression residual when weights are constant within every cell (as
    in R's examples) and otherwise differs from it (by up to 2.5% in the SE on NHANES);
    volna keeps it only to reproduce R's published numbers.
    """

    d: np.ndarray
    w: np.ndarray
    #: the calibration columns, or how to make them: for each margin its cell codes, its
    #: number of cells and, for shares of the part of the sample it covers, the shares
    columns: sp.csr_matrix | tuple[tuple[np.ndarray, int, np.ndarray | None], ...]
    variance: str = "regression"
    _cache: dict = field(default_factory=dict)

    def solve(self, t: np.ndarray) -> np.ndarray:
        """Residual coefficients ``a`` (p, k) from the regression totals ``t = xr' u``."""
        if self.variance == "regression":
            return self.b_pinv @ t
        if "backfit" not in self._cache:
            x = self.x
            counts = np.asarray(x.sum(axis=0)).ravel()
            xtx = np.asarray((x.T @ x).todense())
            sizes = [column[1] for column in self.columns]
            self._cache["backfit"] = (counts, xtx, np.cumsum([0, *sizes]))
        counts, xtx, edges = self._cache["backfit"]
        a = np.zeros_like(t)
        inv = np.where(counts > 0, 1.0 / np.where(counts > 0, counts, 1.0), 0.0)
        for _ in range(10):  # R's svyrecvar: ten sweeps, whatever the convergence
            for j0, j1 in pairwise(edges):
                a[j0:j1] += (t[j0:j1] - xtx[j0:j1] @ a) * inv[j0:j1, None]
        return a

    @property
    def x(self) -> sp.csr_matrix:
        """The (n, p) calibration columns, built on first use (variance, trimming)."""
        if isinstance(self.columns, sp.spmatrix):
            return self.columns
        if "x" not in self._cache:
            self._cache["x"] = sp.hstack(
                [_margin_columns(*column) for column in self.columns]
            ).tocsr()
        return self._cache["x"]

    @property
    def b_pinv(self) -> np.ndarray:
        if "b" not in self._cache:
            xd = self.x.multiply(self.d[:, None]).tocsr()
            b = np.asarray((self.x.T @ xd).todense())
            self._cache["b"] = _pinv_sym(b)
        return self._cache["b"]

    @property
    def xr(self) -> sp.csc_matrix:
        """``x_j * d_j / w_j``: how a row's influence enters the regression totals."""
        if "xr" not in self._cache:
            num = self.d if self.variance == "regression" else np.ones_like(self.w)
            with np.errstate(divide="ignore", invalid="ignore"):
                r = np.where(self.w != 0, num / self.w, 0.0)
            self._cache["xr"] = self.x.multiply(r[:, None]).tocsc()
        return self._cache["xr"]

    @property
    def xw(self) -> sp.csr_matrix:
        """``w_i x_i``: what the residual takes away from each row."""
        if "xw" not in self._cache:
            self._cache["xw"] = self.x.multiply(self.w[:, None]).tocsr()
        return self._cache["xw"]


# ---------------------------------------------------------------------------------------
# helpers


def _pinv_sym(b: np.ndarray) -> np.ndarray:
    """Pseudo-inverse of a symmetric positive semi-definite matrix (collinear indicators)."""
    vals, vecs = np.linalg.eigh(b)
    tol = vals.max(initial=0.0) * b.shape[0] * 1e-12
    inv = np.where(vals > tol, 1.0 / np.where(vals > tol, vals, 1.0), 0.0)
    return (vecs * inv) @ vecs.T


def _margin_columns(codes: np.ndarray, n_cells: int, shares: np.ndarray | None) -> sp.csr_matrix:
    """A margin's calibration columns: its cell indicators, or for shares of the covered
    part ``1[cell = c] - s_c 1[covered]`` (the constraint ``sum w (x_c - s_c) = 0``)."""
    x = _indicators(codes, n_cells)
    if shares is None:
        return x
    covered = (codes >= 0).astype(float)
    return (x - sp.csr_matrix(covered[:, None] * shares[None, :])).tocsr()


def _indicators(codes: np.ndarray, n_cells: int) -> sp.csr_matrix:
    """Sparse (n, cells) indicator matrix of cell codes (``-1``: no cell)."""
    rows = np.flatnonzero(codes >= 0)
    return sp.csr_matrix((np.ones(len(rows)), (rows, codes[rows])), shape=(len(codes), n_cells))


def _relative_errors(achieved: np.ndarray, target: np.ndarray) -> np.ndarray:
    scale = np.maximum(np.abs(target), 1e-12 * max(1.0, float(np.abs(target).max(initial=1))))
    return np.abs(achieved - target) / scale


def _population_size(margins: Sequence[Margin], design_total: float) -> float:
    """The population total shares are taken of: the counts margins' common total."""
    totals = [
        (m.title, m.total_of_targets()) for m in margins if m.type == "counts" and not m.excluded
    ]
    if not totals:
        shares_total = [m.total for m in margins if m.type == "shares" and m.total]
        return float(shares_total[0]) if shares_total else design_total
    name0, t0 = totals[0]
    for name, t in totals[1:]:
        if not math.isclose(t, t0, rel_tol=1e-6):
            raise WeightingError(
                f"margins disagree on the population size: {name0} totals {t0:,.6g}, {name} "
                f"totals {t:,.6g}; scale one of them, or weight with them one at a time"
            )
    return t0


def _cells(
    design: SurveyDesign, margins: Sequence[Margin], missing: str, collapse
) -> list[MarginCells]:
    return [m.cells(design.data, missing=missing, collapse=collapse) for m in margins]


def _targets(cells: list[MarginCells], population: float) -> tuple[list, list[bool]]:
    """Each margin's targets as counts, or -- for shares of a margin that leaves some
    respondents out -- as shares of whatever weight the covered respondents carry.

    A shares margin covering everyone is a count: the shares of the population size.
    One that leaves respondents out (codes it excludes, missing values under
    ``missing="exclude"``) says nothing about how many they are, so it only shares out
    the covered part's weight, whatever the other margins make it: ``relative``.
    """
    out, relative = [], []
    for c in cells:
        m = c.margin
        if m.type == "counts":
            out.append(c.targets.astype(float))
            relative.append(False)
        elif c.outside.any():
            out.append(c.targets / c.targets.sum())
            relative.append(True)
        else:
            out.append(c.targets / c.targets.sum() * population)
            relative.append(False)
    return out, relative


def _check_weights(design: SurveyDesign) -> np.ndarray:
    d = np.asarray(design.weights, dtype=float)
    if (d < 0).any():
        row = int(np.flatnonzero(d < 0)[0])
        raise WeightingError(f"row {row + 1}: weight {d[row]:g} is negative; cannot weight")
    return d


# ---------------------------------------------------------------------------------------
# raking by iterative proportional fitting, on collapsed cells


@dataclass
class _RakeResult:
    factor: np.ndarray  # (cells,) or (cells, R) multiplicative adjustment
    iterations: int
    converged: bool
    errors: list[float]


def _ipf(
    cell_codes: list[np.ndarray],
    sizes: list[int],
    base: np.ndarray,
    targets: list[np.ndarray],
    tol: float,
    max_iter: int,
    relative: Sequence[bool] | None = None,
) -> _RakeResult:
    """Iterative proportional fitting of cell weights ``base`` (cells,) or (cells, R).

    A ``relative`` margin's targets are shares of the weight its cells hold at the
    moment of its adjustment.

    ``cell_codes[k]`` gives the level of margin ``k`` of every cell (-1: outside it).
    Converges when every margin is within ``tol`` (relative) of its target: the sums
    each adjustment computes anyway tell when a sweep changed (almost) nothing, and a
    final check measures the achieved error of every margin.
    """
    w = base.copy()
    targets = [t if t.ndim == w.ndim else t[:, None] for t in targets]
    # cells outside a margin are left out of its sums and keep their weight
    inside = [None if (c >= 0).all() else np.flatnonzero(c >= 0) for c in cell_codes]
    codes_in = [c if i is None else c[i] for c, i in zip(cell_codes, inside, strict=True)]

    relative = list(relative) if relative is not None else [False] * len(targets)

    def sums_of(k: int) -> np.ndarray:
        part = w if inside[k] is None else w[inside[k]]
        return group_sum(codes_in[k], sizes[k], part)

    def target_of(k: int, sums: np.ndarray) -> np.ndarray:
        if relative[k]:
            return targets[k] * sums.sum(axis=0)
        return np.broadcast_to(targets[k], sums.shape)

    def errors_now() -> list[float]:
        out = []
        for k in range(len(targets)):
            sums = sums_of(k)
            out.append(float(_relative_errors(sums, target_of(k, sums)).max(initial=0)))
        return out

    iterations = 0
    converged = False
    for sweep in range(1, max_iter + 1):
        iterations = sweep
        worst_before = 0.0
        for k in range(len(targets)):
            sums = sums_of(k)
            target = target_of(k, sums)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(sums > 0, target / sums, 1.0)
                err = np.abs(ratio - 1.0)
            worst_before = max(worst_before, float(err.max(initial=0.0)))
            factor = ratio[codes_in[k]]
            if inside[k] is None:
                w *= factor
            else:
                w[inside[k]] *= factor
        if worst_before <= tol:
            errors = errors_now()
            if max(errors) <= tol:
                converged = True
                break
    else:
        errors = errors_now()
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(base > 0, w / np.where(base > 0, base, 1.0), 1.0)
    return _RakeResult(factor, iterations, converged, errors)


def _collapse(codes: list[np.ndarray], extra: np.ndarray | None = None):
    """Distinct combinations of several code arrays: (cell of each row, codes per cell).

    Combinations are numbered by a mixed-radix key: a ``bincount`` over the key when
    the number of possible combinations is moderate, a sort otherwise -- never a table
    of every possible combination.
    """
    cols = [*codes, extra] if extra is not None else list(codes)
    sizes = [int(c.max(initial=-1)) + 2 for c in cols]  # -1 -> 0
    if math.prod(float(s) for s in sizes) < 2**62:
        key = np.zeros(len(cols[0]), dtype=np.int64)
        for c, size in zip(cols, sizes, strict=True):
            key *= size
            key += c + 1
        possible = math.prod(sizes)
        if possible <= 1 << 25:
            seen = np.zeros(possible, dtype=bool)
            seen[key] = True
            remap = np.cumsum(seen) - 1
            inverse = remap[key]
            first = np.zeros(int(seen.sum()), dtype=np.int64)
            first[inverse[::-1]] = np.arange(len(key) - 1, -1, -1)
        else:
            _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    else:
        stacked = np.stack([c + 1 for c in cols], axis=1)
        _, first, inverse = np.unique(stacked, axis=0, return_index=True, return_inverse=True)
    cell_codes = [c[first] for c in codes]
    return inverse.astype(np.int64).ravel(), cell_codes, first


def rake(
    design: SurveyDesign,
    margins: Any,
    *,
    tol: float = 1e-10,
    max_iter: int = 1000,
    missing: str = "error",
    collapse: Mapping[str, Mapping[str, str]] | None = None,
    variance: str = "regression",
    method: str = "rake",
) -> SurveyDesign:
    """Rake the weights to several margins (iterative proportional fitting).

    Parameters
    ----------
    margins:
        :class:`~volna.margins.Margin` objects (simple or crossed, counts or shares,
        e.g. read from a margins YAML file) or ``{variable: {level: count}}``.
    tol:
        stop when every weighted margin is within ``tol`` (relative) of its target.
    max_iter:
        the most sweeps over the margins; not converging is an error naming the margin
        furthest from its target and how far off it is.
    missing:
        ``"error"``: a missing value in a margin variable is an error naming the rows;
        ``"exclude"``: those respondents are outside that margin (not adjusted by it).
    collapse:
        ``{variable: {level: into_level}}`` merges levels in data and targets (the
        explicit way to handle a target level no respondent has).
    variance:
        how linearization accounts for the raking: ``"regression"`` (the residuals of
        the calibration model, as R's ``calibrate``; exact for any weights) or
        ``"rake"`` (R's ``rake()``: ten backfitting sweeps of unweighted cell means,
        to reproduce R's numbers).

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> d = SurveyDesign.from_frame(pl.DataFrame({"g": ["a", "a", "b"]}))
    >>> d.rake({"g": {"a": 30, "b": 70}}).weights.tolist()
    [15.0, 15.0, 70.0]
    """
    margins = Margin.coerce(margins)
    if not margins:
        raise WeightingError("rake needs at least one margin")
    if variance not in ("regression", "rake"):
        raise WeightingError(f"variance={variance!r}: expected 'regression' or 'rake'")
    d = _check_weights(design)
    cells = _cells(design, margins, missing, collapse)
    population = _population_size(margins, float(d.sum()))
    targets, relative = _targets(cells, population)
    codes = [c.codes for c in cells]
    sizes = [c.n_cells for c in cells]
    row_cell, cell_codes, _ = _collapse(codes)
    n_cells = int(row_cell.max(initial=-1)) + 1
    base = np.bincount(row_cell, weights=d, minlength=n_cells)
    result = _ipf(cell_codes, sizes, base, targets, tol, max_iter, relative)
    if not result.converged:
        worst = int(np.argmax(result.errors))
        raise WeightingError(
            f"{method} did not converge in {max_iter} sweeps: margin "
            f"{margins[worst].title} is still {result.errors[worst]:.2e} (relative) off its "
            "targets; the margins may be inconsistent with each other or with the sample "
            "(a crossed cell with no respondents), or raise max_iter"
        )
    w = d * result.factor[row_cell]
    # the last sweep measured every margin on the cells: the same sums as on the rows
    errors = {m.title: float(e) for m, e in zip(margins, result.errors, strict=True)}
    step = WeightingStep(
        method=method,
        margins=tuple(margins),
        converged=True,
        iterations=result.iterations,
        max_error=max(errors.values()),
        errors=errors,
        options={
            "tol": tol,
            "max_iter": max_iter,
            "missing": missing,
            "collapse": {k: dict(v) for k, v in (collapse or {}).items()},
            "variance": variance,
        },
        notes=_outside_notes(cells),
        weights_before=d,
    )
    columns = tuple(
        (c.codes, c.n_cells, t if rel else None)
        for c, t, rel in zip(cells, targets, relative, strict=True)
    )
    calibration = Calibration(d=d, w=w, columns=columns, variance=variance)
    replicate_weights = None
    if design.replicates is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(d > 0, w / np.where(d > 0, d, 1.0), 1.0)
        replicate_weights = _rake_replicates(
            design, codes, sizes, targets, relative, margins, tol, max_iter, method, factor
        )
    return design.reweighted(w, step, calibration, replicate_weights)


#: replicates stop at this relative margin error at the tightest (their differences from
#: the full sample, not rounding, are what the variance measures)
REPLICATE_TOL = 1e-9


def _rake_replicates(
    design, codes, sizes, targets, relative, margins, tol, max_iter, method, factor
):
    """Rake every replicate to the same targets (shares of each replicate's covered part).

    Each replicate starts from its weights times the full sample's raking factor, so it
    is already close to its margins: a few sweeps instead of hundreds.
    """
    # the replicates times the raking factor: new weights, one (n, R) array
    rep = design.replicates.columns.to_array(factor)
    tol = max(tol, REPLICATE_TOL)
    n_rep = rep.shape[1]
    groups = design._replicate_groups()
    extra = groups.group if groups is not None else np.arange(len(design.weights))
    row_cell, cell_codes, first = _collapse(codes, extra)
    n_cells = len(first)
    base = group_sum(row_cell, n_cells, rep)
    targets_r = [np.repeat(t[:, None], n_rep, axis=1) for t in targets]
    result = _ipf(cell_codes, sizes, base, targets_r, tol, max_iter, relative)
    if not result.converged:
        worst = int(np.argmax(result.errors))
        raise WeightingError(
            f"{method} of the replicate weights did not converge in {max_iter} sweeps: "
            f"margin {margins[worst].title} is {result.errors[worst]:.2e} off in some replicate"
        )
    for r in range(n_rep):  # in place, one replicate at a time: no second (n, R) array
        rep[:, r] *= result.factor[row_cell, r]
    return rep


def _outside_notes(cells: list[MarginCells]) -> tuple[str, ...]:
    notes = []
    for c in cells:
        k = int(c.outside.sum())
        if k:
            notes.append(
                f"{k} respondent(s) outside margin {c.margin.title} (excluded codes or "
                "missing values) keep the weight the other margins give them"
                + (
                    "; its shares are of the weight the respondents it covers carry"
                    if c.margin.type == "shares"
                    else ""
                )
            )
    return tuple(notes)


# ---------------------------------------------------------------------------------------
# post-stratification


def poststratify(
    design: SurveyDesign,
    cells: Any,
    *,
    missing: str = "error",
    collapse: Mapping[str, Mapping[str, str]] | None = None,
) -> SurveyDesign:
    """Post-stratify: scale the weights in each cell to its known population count.

    ``cells`` is one :class:`~volna.margins.Margin` (one variable, or a crossed margin for
    joint cells such as age x gender) or ``{variable: {level: count}}``.

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> d = SurveyDesign.from_frame(pl.DataFrame({"g": ["a", "a", "b"]}))
    >>> d.poststratify({"g": {"a": 30, "b": 70}}).weights.tolist()
    [15.0, 15.0, 70.0]
    """
    margins = Margin.coerce(cells)
    if len(margins) != 1:
        raise WeightingError(
            "poststratify takes one margin (cross the variables for joint cells); "
            "use rake for several margins"
        )
    return rake(
        design,
        margins,
        tol=1e-12,
        max_iter=2,
        missing=missing,
        collapse=collapse,
        method="poststratify",
    )


# ---------------------------------------------------------------------------------------
# calibration (GREG, raking and logit distances) by Newton's method, as R's grake


def _model_matrix(design: SurveyDesign, auxiliaries: Sequence[str], totals: Mapping[str, Any]):
    """Columns of the calibration model and their population totals.

    Totals follow R's model matrix names -- ``(Intercept)``, ``var=level`` indicator
    columns, numeric variable names -- or give a categorical variable's totals as
    ``{variable: {level: count}}`` (all levels).
    """
    data = design.data
    n = data.height
    cols: list[np.ndarray] = []
    names: list[str] = []
    target: list[float] = []
    used = set()
    flat = {str(k): v for k, v in totals.items()}
    if "(Intercept)" in flat:
        cols.append(np.ones(n))
        names.append("(Intercept)")
        target.append(float(flat["(Intercept)"]))
        used.add("(Intercept)")
    for var in auxiliaries:
        if var not in data.columns:
            raise WeightingError(f"auxiliary {var} is not a column of the data")
        series = data.get_column(var)
        if series.dtype.is_float():
            series = series.fill_nan(None)
        nulls = series.is_null().to_numpy()
        if nulls.any():
            rows = np.flatnonzero(nulls)
            more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
            raise WeightingError(
                f"auxiliary {var}: rows {', '.join(str(r + 1) for r in rows[:5])}{more} "
                "have no value; calibration needs every respondent's auxiliaries (impute "
                "them or drop those respondents first)"
            )
        if var in flat and isinstance(flat[var], Mapping):
            levels = {str(k): float(v) for k, v in flat[var].items()}
            used.add(var)
            values = level_labels(series)
            unknown = sorted(set(values.unique().to_list()) - set(levels))
            if unknown:
                raise WeightingError(
                    f"auxiliary {var}: data level {unknown[0]} has no population total"
                )
            for level, t in levels.items():
                cols.append((values == level).to_numpy().astype(float))
                names.append(f"{var}={level}")
                target.append(t)
            continue
        if series.dtype.is_numeric() and var in flat:
            cols.append(series.cast(pl.Float64).to_numpy())
            names.append(var)
            target.append(float(flat[var]))
            used.add(var)
            continue
        values = level_labels(series)
        keys = [k for k in flat if k.startswith(f"{var}=")]
        if not keys:
            raise WeightingError(
                f"auxiliary {var}: no population total given (expected '{var}' for a "
                f"number, '{var}=<level>' keys or {{'{var}': {{level: count}}}})"
            )
        for key in keys:
            level = key.split("=", 1)[1]
            cols.append((values == level).fill_null(False).to_numpy().astype(float))
            names.append(key)
            target.append(float(flat[key]))
            used.add(key)
    extra = sorted(set(flat) - used)
    if extra:
        raise WeightingError(
            f"population total {extra[0]} matches no auxiliary column; auxiliaries are "
            + ", ".join(auxiliaries)
        )
    x = np.column_stack(cols) if cols else np.zeros((n, 0))
    return x, names, np.array(target)


@dataclass(frozen=True)
class _Distance:
    """``g = 1 + F(x'eta)`` and its derivative, as R's calfun objects.

    The logit distance is written as ``g = lo + (hi - lo) expit(A u + c)`` -- the same
    function as R's ``cal.logit`` -- which cannot overflow.
    """

    name: str
    #: bounds on g: numbers, or one per row (trimming's caps on each weight)
    lower: float | np.ndarray
    upper: float | np.ndarray

    def _logit(self, u: np.ndarray) -> tuple[np.ndarray, float]:
        lo, hi = self.lower, self.upper
        a = (hi - lo) / ((1 - lo) * (hi - 1))
        return expit(a * u + math.log((1 - lo) / (hi - 1))), a

    def g(self, u: np.ndarray) -> np.ndarray:
        if self.name == "linear":
            return np.clip(1.0 + u, self.lower, self.upper)
        if self.name == "raking":
            return np.exp(np.minimum(u, 700.0))
        q, _ = self._logit(u)
        return self.lower + (self.upper - self.lower) * q

    def dg(self, u: np.ndarray) -> np.ndarray:
        if self.name == "linear":
            g = 1.0 + u
            return ((g > self.lower) & (g < self.upper)).astype(float)
        if self.name == "raking":
            return np.exp(np.minimum(u, 700.0))
        q, a = self._logit(u)
        return (self.upper - self.lower) * a * q * (1 - q)


def _grake(
    x: np.ndarray,
    d: np.ndarray,
    target: np.ndarray,
    dist: _Distance,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, int, bool, np.ndarray]:
    """Solve ``sum d g(x'eta) x = target`` for eta by Newton's method (R's grake).

    Columns are scaled to comparable sizes first (a total of incomes next to a count of
    people), and a step is halved while it does not reduce the relative misfit.
    """
    scale_cols = np.abs(x).max(axis=0)
    scale_cols = np.where(scale_cols > 0, scale_cols, 1.0)
    xs = x / scale_cols
    ts = target / scale_cols
    xd = xs * d[:, None]
    rel_scale = (1.0 + np.abs(target)) / scale_cols

    def misfit_of(eta):
        g = dist.g(xs @ eta)
        return g, ts - xd.T @ g

    def size(m):
        return float(np.sqrt(np.sum((m / rel_scale) ** 2)))

    eta = np.zeros(xs.shape[1])
    g, misfit = misfit_of(eta)
    it = 0
    for it in range(1, max_iter + 1):
        if np.all(np.abs(misfit) / rel_scale < tol):
            return g, it - 1, True, misfit * scale_cols
        deriv = dist.dg(xs @ eta)
        jac = (xd * deriv[:, None]).T @ xs
        step = np.linalg.lstsq(jac, misfit, rcond=None)[0]
        old = size(misfit)
        for _ in range(60):
            g_new, m_new = misfit_of(eta + step)
            if np.all(np.isfinite(g_new)) and size(m_new) < old:
                break
            step = step / 2
        else:
            break
        eta = eta + step
        g, misfit = g_new, m_new
    ok = bool(np.all(np.abs(misfit) / rel_scale < tol))
    return g, it, ok, misfit * scale_cols


def calibrate(
    design: SurveyDesign,
    auxiliaries: str | Sequence[str],
    totals: Mapping[str, Any],
    *,
    calfun: str = "linear",
    bounds: tuple[float, float] | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> SurveyDesign:
    """Calibrate the weights to known population totals of auxiliary variables.

    Parameters
    ----------
    auxiliaries:
        the calibration variables: numeric (their totals) or categorical (totals of
        their levels).
    totals:
        population totals named as R's model matrix -- ``"(Intercept)"`` (the population
        size), ``"var=level"`` for levels, ``"var"`` for a numeric variable -- or
        ``{variable: {level: count}}`` for every level of a categorical one.
    calfun:
        the distance: ``"linear"`` (GREG; weights may go negative without bounds),
        ``"raking"`` (multiplicative, always positive) or ``"logit"`` (bounded; needs
        ``bounds``).
    bounds:
        ``(low, high)`` limits on the g-weights (new weight / old weight). Infeasible
        bounds are an error saying how far off the totals stay.

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> frame = pl.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]})
    >>> d = SurveyDesign.from_frame(frame).calibrate(["x"], {"(Intercept)": 8, "x": 24})
    >>> round(float(d.weights.sum()), 6), round(float((d.weights * frame["x"]).sum()), 6)
    (8.0, 24.0)
    """
    if calfun not in CALFUNS:
        raise WeightingError(f"calfun={calfun!r}: expected one of {', '.join(CALFUNS)}")
    auxiliaries = [auxiliaries] if isinstance(auxiliaries, str) else list(auxiliaries)
    lo, hi = (-math.inf, math.inf) if bounds is None else (float(bounds[0]), float(bounds[1]))
    if calfun == "logit" and not (math.isfinite(lo) and math.isfinite(hi)):
        raise WeightingError("calfun='logit' needs finite bounds=(low, high) with low < 1 < high")
    if bounds is not None and not lo < 1 < hi:
        raise WeightingError(f"bounds=({lo:g}, {hi:g}) must satisfy low < 1 < high")
    d = _check_weights(design)
    x, names, target = _model_matrix(design, auxiliaries, totals)
    dist = _Distance(calfun, lo, hi)
    # g depends on a row only through its auxiliaries: solve on the distinct rows
    row_of, distinct = _distinct_rows(x)
    d_distinct = np.bincount(row_of, weights=d, minlength=len(distinct))
    g_distinct, iterations, converged, misfit = _grake(
        distinct, d_distinct, target, dist, tol, max_iter
    )
    g = g_distinct[row_of]
    w = d * g
    rel = np.abs(misfit) / np.maximum(np.abs(target), 1e-300)
    if not converged:
        worst = int(np.argmax(rel))
        raise WeightingError(
            f"calibration ({calfun}) did not reach its totals in {max_iter} iterations: "
            f"{names[worst]} is still {rel[worst]:.2e} (relative) off"
            + (f" within bounds ({lo:g}, {hi:g}); widen them" if bounds is not None else "")
        )
    step = WeightingStep(
        method="calibrate",
        converged=True,
        iterations=iterations,
        max_error=float(rel.max(initial=0.0)),
        errors={name: float(e) for name, e in zip(names, rel, strict=True)},
        options={"calfun": calfun, "bounds": bounds, "auxiliaries": auxiliaries},
        weights_before=d,
    )
    calibration = Calibration(d=d, w=w, columns=sp.csr_matrix(x))
    replicate_weights = None
    if design.replicates is not None:
        reps = design.replicates.columns
        rep_distinct = reps.group_sum(row_of, len(distinct))
        out = np.empty(reps.shape, order="F")
        for r in range(reps.n_replicates):
            g_r, _, ok, mis = _grake(distinct, rep_distinct[:, r], target, dist, tol, max_iter)
            g_r = g_r[row_of]
            if not ok:
                raise WeightingError(
                    f"calibration ({calfun}) of replicate {r + 1} did not reach its totals "
                    f"({np.abs(mis).max():.3g} off)"
                )
            out[:, r] = reps.column(r) * g_r
        replicate_weights = out
    return design.reweighted(w, step, calibration, replicate_weights)


def _distinct_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``x`` and the distinct row of every row.

    Rows are hashed by a random projection, then checked: equal projections of unequal
    rows (never seen, but possible) fall back to an exact sort.
    """
    if x.shape[0] == 0 or x.shape[1] == 0:
        return np.zeros(x.shape[0], dtype=np.int64), x[:1]
    probe = np.random.default_rng(11).standard_normal(x.shape[1])
    _, first, row_of = np.unique(x @ probe, return_index=True, return_inverse=True)
    row_of = row_of.ravel()
    distinct = x[first]
    if not np.array_equal(distinct[row_of], x):
        distinct, row_of = np.unique(x, axis=0, return_inverse=True)
        row_of = row_of.ravel()
    return row_of.astype(np.int64), distinct


# ---------------------------------------------------------------------------------------
# trimming that keeps the calibration


def trim(
    design: SurveyDesign,
    upper: float | None = None,
    lower: float | None = None,
    *,
    relative: bool = True,
    redistribute: str = "calibrate",
    strict: bool = False,
    tol: float = 1e-10,
    max_iter: int = 200,
) -> SurveyDesign:
    """Cap extreme weights and re-calibrate, so the margins still hold exactly.

    ``upper`` and ``lower`` are caps on the final weights: multiples of the mean weight
    (``relative=True``, e.g. ``upper=5``) or absolute weights. The last calibration's
    totals (rake, post-stratify, calibrate) are solved again under those caps, staying
    as close as possible to the current weights (truncated linear distance, as R's
    ``calibrate(bounds=)`` with bounds on the weights), so every margin is met and no
    weight leaves the caps. When
    the caps make that impossible it is an error saying which total stays how far off.
    Without an earlier calibration the total weight is kept.

    ``redistribute="equal"`` is R's ``trimWeights`` instead: weights outside the caps
    are set to them and the trimmed excess is shared equally among the weights that
    were inside, so only the total weight is kept (the margins move, and an untrimmed
    weight may end above the cap); ``strict=True`` repeats that until every weight is
    within the caps (R's ``strict=TRUE``). The variance keeps the earlier calibration
    as it was, as R's design does. Not offered on replicate designs (R's replicate
    version does not share the excess per replicate), nor needed: trim, then build
    the replicates.

    >>> import polars as pl
    >>> from volna.design import SurveyDesign
    >>> frame = pl.DataFrame({"g": ["a", "a", "a", "b", "b", "b"],
    ...                       "w": [1.0, 1.0, 10.0, 2.0, 2.0, 2.0]})
    >>> d = SurveyDesign.from_frame(frame, weights="w").rake({"g": {"a": 12, "b": 6}})
    >>> t = d.trim(upper=2)
    >>> bool(t.weights.max() <= 2 * t.weights.mean() + 1e-9)
    True
    >>> round(float(t.weights[:3].sum()), 9), round(float(t.weights[3:].sum()), 9)
    (12.0, 6.0)
    >>> e = d.trim(upper=5, relative=False, redistribute="equal")  # R's trimWeights
    >>> [round(float(v), 6) for v in e.weights]
    [2.0, 2.0, 5.0, 3.0, 3.0, 3.0]
    """
    if upper is None and lower is None:
        raise WeightingError("trim needs upper= and/or lower=")
    if redistribute not in ("calibrate", "equal"):
        raise WeightingError(
            f"trim: redistribute={redistribute!r}; expected 'calibrate' or 'equal'"
        )
    w_now = np.asarray(design.weights, dtype=float)
    mean = w_now.mean()
    hi = math.inf if upper is None else float(upper) * (mean if relative else 1.0)
    lo = 0.0 if lower is None else float(lower) * (mean if relative else 1.0)
    if not lo < hi:
        raise WeightingError(f"trim: lower cap {lo:g} is not below upper cap {hi:g}")
    if redistribute == "equal":
        return _trim_equal(design, w_now, lo, hi, strict, upper, lower, relative)
    if strict:
        raise WeightingError("trim: strict=True goes with redistribute='equal'")
    # the trimmed weights stay as close as they can to the current ones (linear distance
    # from them), under the caps, with the calibration totals unchanged
    d = w_now
    if design.calibrations:
        cal = design.calibrations[-1]
        x = cal.x.toarray()
        target = x.T @ cal.w
        names = [f"calibration total {j + 1}" for j in range(x.shape[1])]
        if design.weighting and design.weighting[-1].margins:
            names = _cell_names(design.weighting[-1].margins, x.shape[1]) or names
    else:
        x = np.ones((len(w_now), 1))
        target = np.array([w_now.sum()])
        names = ["total weight"]
    g, iterations, converged, misfit = _bounded(x, d, target, lo, hi, tol, max_iter)
    rel = np.abs(misfit) / np.maximum(np.abs(target), 1e-300)
    if not converged:
        worst = int(np.argmax(rel))
        raise WeightingError(
            f"trimming to [{lo:.6g}, {hi:.6g}] cannot keep the margins: {names[worst]} stays "
            f"{rel[worst]:.2e} (relative) off its target; loosen the caps"
        )
    w = d * g
    step = WeightingStep(
        method="trim",
        margins=design.weighting[-1].margins if design.calibrations and design.weighting else (),
        converged=True,
        iterations=iterations,
        max_error=float(rel.max(initial=0.0)),
        errors={"all margins": float(rel.max(initial=0.0))},
        options={"upper": upper, "lower": lower, "relative": relative, "caps": (lo, hi)},
        notes=(f"{int(np.sum(np.isclose(w, hi)))} weight(s) at the upper cap {hi:.6g}",),
        weights_before=w_now,
    )
    calibration = None
    if design.calibrations:
        # the variance keeps the calibration model, now with the trimmed weights
        cal = design.calibrations[-1]
        calibration = Calibration(d=cal.d, w=w, columns=cal.columns)
    replicate_weights = None
    if design.replicates is not None:
        # each replicate trimmed the same way, caps scaled to the replicate's weights
        reps = design.replicates.columns
        replicate_weights = np.empty(reps.shape, order="F")
        for r in range(reps.n_replicates):
            wr = reps.column(r)
            ratio = np.where(w_now > 0, wr / np.where(w_now > 0, w_now, 1), 0.0)
            g_r, _, ok, _ = _bounded(x, wr, x.T @ wr, lo * ratio, hi * ratio, tol, max_iter)
            replicate_weights[:, r] = wr * g_r if ok else wr * g
    return design.reweighted(
        w, step, calibration, replicate_weights, replace_last=bool(design.calibrations)
    )


def _trim_equal(design, w_now, lo, hi, strict, upper, lower, relative) -> SurveyDesign:
    """R's ``trimWeights``: cap, then share the trimmed excess equally among the rest."""
    if design.replicates is not None:
        raise WeightingError(
            "trim(redistribute='equal') on a replicate design: trim the sampling weights "
            "first, then build the replicates"
        )
    w = w_now.copy()
    rounds = 0
    while True:
        outside = (w < lo) | (w > hi)
        if not outside.any():
            break
        if outside.all():
            raise WeightingError(
                f"trimming to [{lo:.6g}, {hi:.6g}]: every weight is outside the caps, "
                "none is left to take the trimmed excess"
            )
        capped = np.clip(w, lo, hi)
        capped[~outside] += (w - capped).sum() / np.count_nonzero(~outside)
        w = capped
        rounds += 1
        if not strict or rounds >= 10_000:
            break
    step = WeightingStep(
        method="trim",
        margins=(),
        converged=True,
        iterations=rounds,
        max_error=0.0,
        errors={"total weight": abs(w.sum() - w_now.sum()) / max(abs(w_now.sum()), 1e-300)},
        options={
            "upper": upper,
            "lower": lower,
            "relative": relative,
            "caps": (lo, hi),
            "redistribute": "equal",
            "strict": strict,
        },
        notes=(
            f"{int(np.sum(w_now > hi))} weight(s) capped at {hi:.6g}, "
            f"{int(np.sum(w_now < lo))} raised to {lo:.6g}; the excess shared equally "
            "(the margins of earlier weighting are not kept)",
        ),
        weights_before=w_now,
    )
    # the calibration stays as it was: R's trimmed design keeps its calibration residuals
    return design.reweighted(w, step)


def _cell_names(margins: Sequence[Margin], p: int) -> list[str] | None:
    names = [f"{m.title} {'/'.join(cell)}" for m in margins for cell in m.targets]
    return names if len(names) == p else None


def _bounded(
    x: np.ndarray,
    d: np.ndarray,
    target: np.ndarray,
    lo: float | np.ndarray,
    hi: float | np.ndarray,
    tol: float,
    max_iter: int,
):
    """Calibrate ``d`` to ``target`` with every weight ``d g`` kept in ``[lo, hi]``.

    The truncated linear distance ``g = clip(1 + x'eta, lo/d, hi/d)`` with bounds per
    row, solved by the same Newton iterations as :func:`calibrate` (on the rows not at a
    bound: a semi-smooth Newton).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        glo = np.where(d > 0, lo / np.where(d > 0, d, 1), 0.0)
        ghi = np.where(d > 0, hi / np.where(d > 0, d, 1), np.inf)
    return _grake(x, d, target, _Distance("linear", glo, ghi), tol, max_iter)
