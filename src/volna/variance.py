"""The numeric kernels behind every standard error: linearization and replicate weights.

Every estimator volna offers (mean, total, proportion, ratio, the Woodruff interval of a
quantile) is a *ratio of weighted totals* computed in many cells at once: the cells are
the levels of a variable (or a single cell for a numeric variable) within each domain.
A :class:`RatioBlock` describes one such family of estimates row by row; the two
variance paths below take blocks and never look at the estimator that built them:

* **linearization** -- the influence values of all estimates are summed by sampling unit,
  centred within strata and squared, stage by stage, as R's ``svyrecvar`` does for
  multistage designs with a finite population correction at every stage;
* **replicate weights** -- the totals of all blocks are recomputed under every replicate
  weight with one sparse ``(k x n) @ (n x R)`` product, and the spread of the replicate
  estimates gives the variance, as R's ``svrVar``.

Nothing here builds an ``n x k`` dense matrix: rows are summed straight into
(sampling unit, domain) cells, so memory follows the number of PSUs, not the number of
rows times the number of estimates.

>>> import numpy as np
>>> w = np.array([1.0, 1.0, 2.0, 2.0])
>>> block = RatioBlock(base=np.array([0, 0, 1, -1]), n_bases=2)  # two domains
>>> cells = cell_sums(block, w, (w > 0).astype(float), np.array([0, 1, 1, 1]), 2)
>>> cells.weight.tolist()  # (PSU, domain) cells: (0,0), (0,1), (1,0), (1,1)
[1.0, 0.0, 1.0, 2.0]
>>> block_totals(block, w, (w > 0).astype(float), cells).weight_sum.tolist()
[2.0, 2.0]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

#: cell grids up to this many entries are counted with dense ``np.bincount``; larger
#: ones (e.g. one PSU per respondent times many domains) are compressed by sorting
DENSE_LIMIT = 1 << 22

#: how many matrix entries a chunk of influence values may hold (columns are chunked)
CHUNK_ENTRIES = 1 << 23

#: largest (strata x bases x levels) grid for the moment shortcut of element designs
MOMENT_LIMIT = 1 << 24

LONELY_PSU_RULES = ("fail", "remove", "certainty", "adjust", "average")


@dataclass(frozen=True, eq=False)
class Stage:
    """One sampling stage of a design, factorised once when the design is built.

    Sampling units are numbered so that the units of a stratum are contiguous. From the
    second stage on, strata are nested in the units of the previous stage (R's
    ``svydesign`` rule: second-stage strata are the first-stage clusters).
    """

    #: (n,) the sampling unit of every row at this stage
    unit: np.ndarray
    #: (U,) the stratum of every unit
    unit_stratum: np.ndarray
    #: (U,) the unit of the previous stage each unit belongs to (None at stage 1)
    unit_parent: np.ndarray | None
    #: (H,) sampled units per stratum, counted on the whole design
    n_units: np.ndarray
    #: (H,) population units per stratum; ``inf`` when unknown (with replacement)
    pop_units: np.ndarray
    #: (H,) product of the sampling fractions of the earlier stages
    multiplier: np.ndarray
    #: (H,) the unit of the previous stage a stratum sits in (0 at stage 1)
    stratum_group: np.ndarray
    #: (H,) readable stratum names for messages
    labels: tuple[str, ...]
    #: True when every unit is a single row (element sampling)
    elements: bool = False

    @property
    def n_strata(self) -> int:
        return len(self.n_units)

    @property
    def n_unit_total(self) -> int:
        return len(self.unit_stratum)

    @property
    def sampling_fraction(self) -> np.ndarray:
        """(H,) n/N per stratum; 0 where the population size is unknown."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(np.isinf(self.pop_units), 0.0, self.n_units / self.pop_units)

    def lonely(self) -> np.ndarray:
        """(H,) strata with a single sampled unit that are not self-representing."""
        return (self.n_units == 1) & ~self.self_representing()

    def self_representing(self) -> np.ndarray:
        """(H,) strata sampled exhaustively (R: ``(N - n)/N < 1e-7``) -- no variance."""
        return self.fpc_factor() < 1e-7

    def fpc_factor(self) -> np.ndarray:
        """(H,) the finite population correction ``(N - n) / N`` (1 when N is unknown)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(
                np.isinf(self.pop_units), 1.0, (self.pop_units - self.n_units) / self.pop_units
            )


@dataclass(frozen=True)
class StratumCoefficients:
    """How much the squared, centred unit totals of each stratum weigh in the variance."""

    coef: np.ndarray  # (H,)
    centred: np.ndarray  # (H,) bool: False for lonely PSUs under the "adjust" rule
    lonely: np.ndarray  # (H,) bool
    averaged: bool  # the "average" rule rescales the stage by nstrat/nokstrat


def stratum_coefficients(stage: Stage, lonely_psu: str) -> StratumCoefficients:
    """Per-stratum factors ``multiplier * (1 - f) * n/(n-1)`` with R's lonely-PSU rules.

    >>> st = Stage(np.array([0, 1, 2]), np.array([0, 0, 1]), None, np.array([2, 1]),
    ...            np.array([np.inf, np.inf]), np.ones(2), np.zeros(2, int), ("a", "b"))
    >>> stratum_coefficients(st, "remove").coef.tolist()
    [2.0, 0.0]
    >>> stratum_coefficients(st, "adjust").coef.tolist()
    [2.0, 1.0]
    """
    n = stage.n_units.astype(float)
    f = stage.fpc_factor()
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = stage.multiplier * f * np.where(n > 1, n / (n - 1), 1.0)
    selfrep = stage.self_representing()
    coef = np.where(selfrep, 0.0, coef)
    lonely = stage.lonely()
    centred = np.ones(len(n), dtype=bool)
    if lonely.any():
        if lonely_psu == "adjust":
            # R centres a lonely PSU at the grand mean of the influence values, which is
            # zero for every estimating equation: the total is used uncentred
            centred = ~lonely
        else:
            coef = np.where(lonely, 0.0, coef)
    return StratumCoefficients(coef, centred, lonely, lonely_psu == "average")


@dataclass(frozen=True, eq=False)
class RatioBlock:
    """A family of ratio-of-totals estimates, ``N[b, l] / D[b]``, described row by row.

    ``b`` is a *base* (a domain, restricted to the rows where the variable is observed)
    and ``l`` a *local* column (the level of a categorical variable; 0 for a numeric one).
    Row ``i`` adds ``w_i * numerator_i`` to ``N[base_i, local_i]`` and
    ``w_i * denominator_i`` to ``D[base_i]``. ``kind="total"`` estimates ``N`` itself.
    With neither numerator nor denominator the block counts weights: the proportions
    (or weighted counts) of the levels -- the cheapest and most common case.
    """

    base: np.ndarray  # (n,) int, -1 for rows outside every base
    n_bases: int
    local: np.ndarray | None = None  # (n,) int in [0, per); None = all 0
    per: int = 1
    numerator: np.ndarray | None = None  # (n,) float; None = 1
    denominator: np.ndarray | None = None  # (n,) float; None = 1
    kind: str = "ratio"

    @property
    def n_estimates(self) -> int:
        return self.n_bases * self.per

    @property
    def counts_only(self) -> bool:
        """True when every row adds its weight (proportions, counts of levels)."""
        return self.numerator is None and self.denominator is None

    def rows(self) -> np.ndarray:
        return np.flatnonzero(self.base >= 0)

    def codes(self, rows: np.ndarray) -> np.ndarray:
        base = self.base[rows].astype(np.int64)
        if self.local is None:
            return base * self.per
        return base * self.per + self.local[rows]

    def values(self, which: str, rows: np.ndarray) -> np.ndarray:
        v = self.numerator if which == "numerator" else self.denominator
        return np.ones(len(rows)) if v is None else v[rows].astype(float)


@dataclass(eq=False)
class CellSums:
    """A block's rows summed into cells: (group, base), with one column per local.

    The group is the sampling unit of the design's last stage (linearization), a group
    of rows sharing their replicate factors (replicate weights), or one group for the
    whole sample. Every later step -- totals, influence values, presence -- reads these
    sums and never the rows again.
    """

    group: np.ndarray  # (m,)
    base: np.ndarray  # (m,)
    per: int
    weight: np.ndarray  # (m,) sum of w
    den: np.ndarray  # (m,) sum of w * denominator
    positive: np.ndarray  # (m,) rows with a positive weight
    count: np.ndarray  # (m,) rows
    num: np.ndarray | None = None  # (m, per) sum of w * numerator, dense
    local: np.ndarray | None = None  # (m,) one local per cell (cells are rows)
    value: np.ndarray | None = None  # (m,) w * numerator of that row
    dense_groups: int | None = None  # cells are the full grid group-major: m = G * B
    cell_positive: np.ndarray | None = None  # (m, per) positive-weight rows per local

    @property
    def m(self) -> int:
        return len(self.base)

    def num_columns(self, c0: int, c1: int) -> np.ndarray:
        """Numerator sums of locals ``c0:c1``, as an ``(m, c1 - c0)`` array."""
        if self.num is not None:
            return self.num[:, c0:c1]
        out = np.zeros((self.m, c1 - c0))
        take = (self.local >= c0) & (self.local < c1)
        out[np.flatnonzero(take), self.local[take] - c0] = self.value[take]
        return out

    def by_base(self, values: np.ndarray, n_bases: int) -> np.ndarray:
        """Sum cell values (1-d or ``(m, k)``) over groups, per base."""
        if self.dense_groups is not None:
            shape = (self.dense_groups, n_bases, *values.shape[1:])
            return values.reshape(shape).sum(axis=0)
        return group_sum(self.base, n_bases, values)


def cell_sums(
    block: RatioBlock,
    weights: np.ndarray,
    positive: np.ndarray,
    group_of_row: np.ndarray | None,
    n_groups: int,
    rows_are_groups: bool = False,
) -> CellSums:
    """Sum a block's rows by (group, base, local) with as few passes as possible.

    Three layouts: when each group is one row, the cells are the rows themselves; when
    the grid of groups x bases x locals is small, dense ``bincount`` s fill it (rows
    outside every base go to a spare bin, so nothing is gathered); otherwise the cells
    present are found by sorting their keys.
    """
    B, per = block.n_bases, block.per
    base = block.base
    if group_of_row is None and B == 1 and per == 1 and (base >= 0).all():
        # one cell holding every row: plain sums
        n = len(base)
        total = weights.sum()
        num = total if block.numerator is None else np.dot(weights, block.numerator)
        den = total if block.denominator is None else np.dot(weights, block.denominator)
        return CellSums(
            group=np.zeros(1, np.int64),
            base=np.zeros(1, np.int64),
            per=1,
            weight=np.array([total]),
            den=np.array([den]),
            positive=np.array([positive.sum()]),
            count=np.array([float(n)]),
            num=np.array([[num]]),
            dense_groups=1,
        )
    if group_of_row is None:
        group_of_row = np.zeros(len(base), dtype=np.int64)
        n_groups = 1
    local = block.local
    size = n_groups * B
    if rows_are_groups and size * per > DENSE_LIMIT:
        rows = np.flatnonzero(base >= 0)
        w = weights[rows]
        den = w if block.denominator is None else w * block.denominator[rows]
        value = w if block.numerator is None else w * block.numerator[rows]
        return CellSums(
            group=group_of_row[rows].astype(np.int64),
            base=base[rows].astype(np.int64),
            per=per,
            weight=w,
            den=den,
            positive=positive[rows],
            count=np.ones(len(rows)),
            local=np.zeros(len(rows), np.int64) if local is None else local[rows].astype(np.int64),
            value=value,
        )
    if size * per <= DENSE_LIMIT:
        valid = base >= 0
        if B == 1 and valid.all():
            # everyone in the one base: the cells are the groups, nothing to mask
            cell = group_of_row
        else:
            cell = np.where(valid, group_of_row * B + base, size)
        if block.counts_only and local is not None and per > 1:
            code = np.where(valid, cell * per + local, size * per)
            w_cells = np.bincount(code, weights=weights, minlength=size * per + 1)[:-1]
            num = w_cells.reshape(size, per)
            pos = np.bincount(code, weights=positive, minlength=size * per + 1)[:-1]
            cnt = np.bincount(code, minlength=size * per + 1)[:-1].astype(float)
            pos = pos.reshape(size, per)
            cnt = cnt.reshape(size, per)
            weight = num.sum(axis=1)
            return CellSums(
                group=np.repeat(np.arange(n_groups), B),
                base=np.tile(np.arange(B), n_groups),
                per=per,
                weight=weight,
                den=weight,
                positive=pos.sum(axis=1),
                count=cnt.sum(axis=1),
                num=num,
                dense_groups=n_groups,
                cell_positive=pos,
            )
        weight = np.bincount(cell, weights=weights, minlength=size + 1)[:-1]
        # missing values only sit in rows outside every base, whose sums land in the
        # spare last bin and are dropped
        den = weight
        if block.denominator is not None:
            den = np.bincount(cell, weights=weights * block.denominator, minlength=size + 1)
            den = den[:-1]
        wn = weights if block.numerator is None else weights * block.numerator
        if local is None or per == 1:
            num = np.bincount(cell, weights=wn, minlength=size + 1)[:-1].reshape(size, 1)
        else:
            code = np.where(valid, cell * per + local, size * per)
            num = np.bincount(code, weights=wn, minlength=size * per + 1)[:-1].reshape(size, per)
        return CellSums(
            group=np.repeat(np.arange(n_groups), B),
            base=np.tile(np.arange(B), n_groups),
            per=per,
            weight=weight,
            den=den,
            positive=np.bincount(cell, weights=positive, minlength=size + 1)[:-1],
            count=np.bincount(cell, minlength=size + 1)[:-1].astype(float),
            num=num,
            dense_groups=n_groups,
        )
    # large grids (many groups and domains): only the cells present, found by sorting
    rows = np.flatnonzero(base >= 0)
    b = base[rows].astype(np.int64)
    index, keys = compress(group_of_row[rows].astype(np.int64) * B + b, size)
    m = len(keys)
    w = weights[rows]
    den_v = w if block.denominator is None else w * block.denominator[rows]
    num_v = w if block.numerator is None else w * block.numerator[rows]
    loc = np.zeros(len(rows), np.int64) if local is None else local[rows].astype(np.int64)
    num = np.bincount(index * per + loc, weights=num_v, minlength=m * per).reshape(m, per)
    return CellSums(
        group=keys // B,
        base=keys % B,
        per=per,
        weight=np.bincount(index, weights=w, minlength=m),
        den=np.bincount(index, weights=den_v, minlength=m),
        positive=np.bincount(index, weights=positive[rows], minlength=m),
        count=np.bincount(index, minlength=m).astype(float),
        num=num,
    )


@dataclass(frozen=True)
class BlockTotals:
    """Full-sample weighted sums of a block, per base ``(B,)`` or cell ``(B, per)``."""

    numerator: np.ndarray  # (B, per)
    denominator: np.ndarray  # (B,)
    weight_sum: np.ndarray  # (B,)
    n_positive: np.ndarray  # (B,) rows with a positive weight
    n_rows: np.ndarray  # (B,) all rows (R's nrow(design) for a domain)
    cell_n: np.ndarray  # (B, per) rows with a positive weight in the cell
    cell_weight: np.ndarray  # (B, per)
    # second moments, for the design effect
    num_sq: np.ndarray  # (B, per) sum w * num^2
    num_den: np.ndarray  # (B, per) sum w * num * den
    den_sq: np.ndarray  # (B,) sum w * den^2


def block_totals(
    block: RatioBlock, weights: np.ndarray, positive: np.ndarray, cells: CellSums
) -> BlockTotals:
    """Weighted sums of a block over the full sample, from its cell sums.

    Only what the cells cannot give is read from the rows again: the counts per level
    of a general block and the second moments of numeric variables (design effects).
    """
    B, per = block.n_bases, block.per
    if cells.num is not None:
        numerator = cells.by_base(cells.num, B)
    else:
        numerator = np.bincount(
            cells.base * per + cells.local, weights=cells.value, minlength=B * per
        ).reshape(B, per)
    denominator = cells.by_base(cells.den, B)
    weight_sum = cells.by_base(cells.weight, B)
    n_positive = cells.by_base(cells.positive, B)
    n_rows = cells.by_base(cells.count, B)
    if block.counts_only:
        if cells.cell_positive is not None:
            cell_n = cells.by_base(cells.cell_positive, B)
        elif cells.local is not None:
            cell_n = np.bincount(
                cells.base * per + cells.local, weights=cells.positive, minlength=B * per
            ).reshape(B, per)
        elif per == 1:
            cell_n = n_positive[:, None].copy()
        else:
            rows = block.rows()
            cell_n = np.bincount(
                block.codes(rows), weights=positive[rows], minlength=B * per
            ).reshape(B, per)
        return BlockTotals(
            numerator,
            denominator,
            weight_sum,
            n_positive,
            n_rows,
            cell_n,
            numerator,
            numerator,
            numerator,
            weight_sum,
        )
    if B == 1 and per == 1 and block.local is None:
        # one estimate (a mean or total of everyone): dot products, no gathers
        valid = block.base >= 0
        w = weights if valid.all() else np.where(valid, weights, 0.0)
        num = _filled(block.numerator, valid)
        wn = w if num is None else w * num
        num_sq = np.array([[np.dot(wn, num) if num is not None else w.sum()]])
        if block.denominator is None:
            num_den, den_sq = numerator, weight_sum
        else:
            den = _filled(block.denominator, valid)
            num_den = np.array([[np.dot(wn, den)]])
            den_sq = np.array([np.dot(w * den, den)])
        return BlockTotals(
            numerator,
            denominator,
            weight_sum,
            n_positive,
            n_rows,
            n_positive[:, None].copy(),
            weight_sum[:, None].copy(),
            num_sq,
            num_den,
            den_sq,
        )
    rows = block.rows()
    code = block.codes(rows)
    w = weights[rows]
    num = block.values("numerator", rows)
    if per == 1:
        cell_n, cell_weight = n_positive[:, None].copy(), weight_sum[:, None].copy()
    else:
        cell_n = np.bincount(code, weights=positive[rows], minlength=B * per).reshape(B, per)
        cell_weight = np.bincount(code, weights=w, minlength=B * per).reshape(B, per)
    num_sq = np.bincount(code, weights=w * num * num, minlength=B * per).reshape(B, per)
    if block.denominator is None:
        num_den, den_sq = numerator, weight_sum
    else:
        den = block.values("denominator", rows)
        num_den = np.bincount(code, weights=w * num * den, minlength=B * per).reshape(B, per)
        den_sq = np.bincount(block.base[rows], weights=w * den * den, minlength=B)
    return BlockTotals(
        numerator,
        denominator,
        weight_sum,
        n_positive,
        n_rows,
        cell_n,
        cell_weight,
        num_sq,
        num_den,
        den_sq,
    )


def _filled(values: np.ndarray | None, valid: np.ndarray) -> np.ndarray | None:
    """Row values with those outside every base set to 0 (they may be missing)."""
    if values is None:
        return None
    values = values.astype(float, copy=False)
    return values if valid.all() else np.where(valid, values, 0.0)


def block_estimates(block: RatioBlock, numerator: np.ndarray, denominator: np.ndarray):
    """``N / D`` (or ``N`` for totals); works on ``(B, per)`` or ``(B, per, R)`` arrays."""
    if block.kind == "total":
        return numerator
    d = denominator.reshape((denominator.shape[0], 1, *denominator.shape[1:]))
    with np.errstate(divide="ignore", invalid="ignore"):
        return numerator / d


# ---------------------------------------------------------------------------------------
# grouping helpers


def compress(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Map integer keys in ``[0, size)`` to dense indices; return (index, present keys).

    >>> compress(np.array([5, 2, 5]), 8)
    (array([1, 0, 1]), array([2, 5]))
    """
    if size <= DENSE_LIMIT:
        counts = np.bincount(keys, minlength=size)
        present = np.flatnonzero(counts)
        remap = np.full(size, -1, dtype=np.int64)
        remap[present] = np.arange(len(present))
        return remap[keys], present
    present, index = np.unique(keys, return_inverse=True)
    return index.astype(np.int64), present


def group_sum(index: np.ndarray, m: int, values: np.ndarray) -> np.ndarray:
    """Sum rows of ``values`` (1-d or 2-d) that share an index in ``[0, m)``."""
    if values.ndim == 1:
        return np.bincount(index, weights=values, minlength=m)
    if values.shape[1] <= 4:
        return np.column_stack(
            [np.bincount(index, weights=values[:, j], minlength=m) for j in range(values.shape[1])]
        )
    indicator = sp.csr_matrix(
        (np.ones(len(index)), (index, np.arange(len(index)))), shape=(m, len(index))
    )
    return np.asarray(indicator @ values)


# ---------------------------------------------------------------------------------------
# linearization


def _stage_contribution(
    stage: Stage,
    coefs: StratumCoefficients,
    unit: np.ndarray,
    base: np.ndarray,
    vals: np.ndarray,
    n_bases: int,
) -> np.ndarray:
    """Sum over strata of ``coef_h * sum_u (T_u - mean_h)^2`` for every base and column.

    Units absent from ``unit`` have zero totals: they count in the stratum size ``n_h``
    (R pads subsets with zero PSUs) but add nothing else.
    """
    h = stage.unit_stratum[unit].astype(np.int64)
    index, keys = compress(h * n_bases + base, stage.n_strata * n_bases)
    m = len(keys)
    kh = keys // n_bases
    kb = keys % n_bases
    nh = stage.n_units[kh].astype(float)
    count = np.bincount(index, minlength=m).astype(float)
    s1 = group_sum(index, m, vals)
    centred = coefs.centred[kh]
    mean = np.where(centred[:, None], s1 / nh[:, None], 0.0)
    dev = vals - mean[index]
    # two-pass sum of squares: the present units, then the absent (zero) ones
    ss = group_sum(index, m, dev * dev) + ((nh - count)[:, None] * mean * mean)
    contrib = ss * coefs.coef[kh][:, None]
    return group_sum(kb, n_bases, contrib)


def linearization_variance(
    stages: Sequence[Stage],
    coefs: Sequence[StratumCoefficients],
    unit: np.ndarray,
    base: np.ndarray,
    vals: np.ndarray,
    n_bases: int,
    stage1_factor: np.ndarray | None = None,
) -> np.ndarray:
    """Multistage variance of influence totals given at the last stage's units.

    ``unit``, ``base`` and ``vals`` list the non-zero (unit, base) cells: ``vals`` is
    ``(r, c)`` -- one column per estimate of the base. Stage by stage the totals are
    centred within strata, squared and weighted; then summed into the units of the
    previous stage. Returns ``(n_bases, c)`` variances.
    """
    var = np.zeros((n_bases, vals.shape[1]))
    for s in range(len(stages) - 1, -1, -1):
        stage = stages[s]
        part = _stage_contribution(stage, coefs[s], unit, base, vals, n_bases)
        if s == 0 and stage1_factor is not None:
            part = part * stage1_factor[:, None]
        var += part
        if s > 0:
            parent = stage.unit_parent[unit].astype(np.int64)
            n_parent = stages[s - 1].n_unit_total
            index, keys = compress(parent * n_bases + base, n_parent * n_bases)
            vals = group_sum(index, len(keys), vals)
            unit, base = keys // n_bases, keys % n_bases
    return var


def cell_influence(
    block: RatioBlock,
    cells: CellSums,
    keep,
    theta: np.ndarray,
    totals: BlockTotals,
    c0: int,
    c1: int,
) -> np.ndarray:
    """Influence totals of the kept cells for columns ``c0:c1``.

    Cell (unit, base) has ``(N_cell[l] - theta[base, l] * D_cell) / D[base]`` for a
    ratio, ``N_cell[l]`` for a total.
    """
    num = cells.num_columns(c0, c1)[keep]
    if block.kind == "total":
        return num
    base = cells.base[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_d = (1.0 / totals.denominator)[base]
        return (num - theta[base, c0:c1] * cells.den[keep][:, None]) * inv_d[:, None]


def block_linearization_variance(
    block: RatioBlock,
    cells: CellSums,
    theta: np.ndarray,
    totals: BlockTotals,
    stages: Sequence[Stage],
    coefs: Sequence[StratumCoefficients],
    stage1_factor: np.ndarray | None = None,
) -> np.ndarray:
    """Linearization variances ``(B, per)`` of one block, chunked over its columns.

    The influence total of cell (unit, base) for column l is
    ``(N_cell[l] - theta[base, l] * D_cell) / D[base]`` (or ``N_cell[l]`` for totals).
    """
    B, per = block.n_bases, block.per
    if len(stages) == 1 and cells.local is not None:
        fast = _element_variance(block, cells, theta, totals, stages[0], coefs[0], stage1_factor)
        if fast is not None:
            return fast
    var = np.zeros((B, per))
    keep = (cells.count > 0) if cells.dense_groups is not None else slice(None)
    unit, base = cells.group[keep], cells.base[keep]
    m = len(unit)
    if m == 0:
        return var
    step = max(1, CHUNK_ENTRIES // max(m, 1))
    for c0 in range(0, per, step):
        c1 = min(per, c0 + step)
        vals = cell_influence(block, cells, keep, theta, totals, c0, c1)
        var[:, c0:c1] = linearization_variance(stages, coefs, unit, base, vals, B, stage1_factor)
    return var


def _element_variance(
    block: RatioBlock,
    cells: CellSums,
    theta: np.ndarray,
    totals: BlockTotals,
    stage: Stage,
    coefs: StratumCoefficients,
    stage1_factor: np.ndarray | None,
) -> np.ndarray | None:
    """One-stage designs whose PSUs are single rows, from moments by stratum.

    Each row's influence value for column l is ``w (num [l_i = l] - theta_l den) / D``,
    so its sum and its sum of squares over a stratum are linear in a handful of
    weighted sums by (stratum, base, level) -- two ``bincount`` s for proportions --
    and no ``rows x levels`` matrix is ever built.
    """
    moments = _element_moments(block, cells, theta, totals, stage)
    if moments is None:
        return None
    s1, s2 = moments
    return _stratum_variance(s1, s2, stage, coefs, stage1_factor)


def _stratum_variance(s1, s2, stage: Stage, coefs: StratumCoefficients, stage1_factor):
    """``sum_h coef_h sum_u (T_u - mean_h)^2`` from the sums ``s1``, ``s2`` (H, B, per)."""
    nh = stage.n_units[:, None, None].astype(float)
    centred = coefs.centred[:, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        ss = np.where(centred, s2 - s1 * s1 / nh, s2)
    # rounding can leave a tiny negative sum of squares where all values are equal
    ss = np.maximum(ss, 0.0)
    var = (ss * coefs.coef[:, None, None]).sum(axis=0)
    if stage1_factor is not None:
        var = var * stage1_factor[:, None]
    return var


def _element_moments(
    block: RatioBlock, cells: CellSums, theta: np.ndarray, totals: BlockTotals, stage: Stage
) -> tuple[np.ndarray, np.ndarray] | None:
    """Sums of influence values and of their squares by (stratum, base, level)."""
    B, per, H = block.n_bases, block.per, stage.n_strata
    if H * B * per > MOMENT_LIMIT:
        return None
    h = stage.unit_stratum[cells.group].astype(np.int64)
    key_hb = h * B + cells.base
    key = key_hb * per + cells.local
    v, d = cells.value, cells.den

    def by_level(x: np.ndarray) -> np.ndarray:
        return np.bincount(key, weights=x, minlength=H * B * per).reshape(H, B, per)

    def by_base(x: np.ndarray) -> np.ndarray:
        return np.bincount(key_hb, weights=x, minlength=H * B).reshape(H, B, 1)

    a1, a2 = by_level(v), by_level(v * v)
    if block.kind == "total":
        return a1, a2
    if block.counts_only:
        a3, b1, b2 = a2, a1.sum(axis=2, keepdims=True), a2.sum(axis=2, keepdims=True)
    else:
        a3, b1, b2 = by_level(v * d), by_base(d), by_base(d * d)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_d = (1.0 / totals.denominator)[None, :, None]
        th = theta[None]
        s1 = (a1 - th * b1) * inv_d
        s2 = (a2 - 2 * th * a3 + th * th * b2) * inv_d * inv_d
    return s1, s2


def linearization_covariance(
    blocks: Sequence[RatioBlock],
    cells: Sequence[CellSums],
    thetas: Sequence[np.ndarray],
    totals: Sequence[BlockTotals],
    stages: Sequence[Stage],
    coefs: Sequence[StratumCoefficients],
    calibration: CalibrationModel | None = None,
    residual_coefs: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Full covariance of all estimates of several blocks (dense; for moderate sizes).

    Tests of association and contrasts need the off-diagonal terms. The influence totals
    are laid out densely as (units x estimates) at each stage.
    """
    U = stages[-1].n_unit_total
    columns = []
    for block, c, theta, tot in zip(blocks, cells, thetas, totals, strict=True):
        B, per = block.n_bases, block.per
        vals = cell_influence(block, c, slice(None), theta, tot, 0, per)
        t = np.zeros((U, B * per))
        cols = c.base[:, None] * per + np.arange(per)[None, :]
        np.add.at(t, (np.repeat(c.group, per), cols.ravel()), np.nan_to_num(vals.ravel()))
        if calibration is not None:
            t -= np.asarray(calibration.unit_c @ residual_coefs[len(columns)])
        columns.append(t)
    t = np.hstack(columns) if columns else np.zeros((U, 0))
    k = t.shape[1]
    cov = np.zeros((k, k))
    for s in range(len(stages) - 1, -1, -1):
        stage, c = stages[s], coefs[s]
        h = stage.unit_stratum
        sums = group_sum(h, stage.n_strata, t)
        mean = np.where(c.centred[:, None], sums / stage.n_units[:, None], 0.0)
        dev = t - mean[h]
        # every unit of the design is a row of t, so no padding term is needed
        cov += dev.T @ (dev * c.coef[h][:, None])
        if s > 0:
            t = group_sum(stage.unit_parent, stages[s - 1].n_unit_total, t)
    return cov


@dataclass(frozen=True)
class Presence:
    """Where a block's bases have data, at the first stage: degrees of freedom and flags."""

    psus: np.ndarray  # (B,) PSUs with a positive-weight row in the base
    strata: np.ndarray  # (B,) strata holding such PSUs
    lonely_strata: np.ndarray  # (B,) design strata with one PSU among them
    domain_lonely: np.ndarray  # (B,) strata where the base sits in one of several PSUs
    average_factor: np.ndarray | None = field(default=None)  # (B,) nstrat/nokstrat

    @property
    def degf(self) -> np.ndarray:
        """R's ``degf``: PSUs with a non-zero weight minus strata."""
        return self.psus - self.strata


def presence(
    unit1: np.ndarray,
    base: np.ndarray,
    n_bases: int,
    stage: Stage,
    lonely: np.ndarray,
    distinct: bool = False,
) -> Presence:
    """Count, per base, the first-stage PSUs and strata holding positive-weight rows.

    ``unit1`` and ``base`` list cells with a positive weight; repeats are fine unless
    ``distinct`` says there are none (then no sorting is needed).
    """
    if distinct:
        pu, pb = unit1.astype(np.int64), base.astype(np.int64)
    else:
        _, keys = compress(unit1.astype(np.int64) * n_bases + base, stage.n_unit_total * n_bases)
        pu, pb = keys // n_bases, keys % n_bases
    ph = stage.unit_stratum[pu].astype(np.int64)
    index, hkeys = compress(ph * n_bases + pb, stage.n_strata * n_bases)
    per_stratum = np.bincount(index, minlength=len(hkeys))
    hh, hb = hkeys // n_bases, hkeys % n_bases
    psus = np.bincount(pb, minlength=n_bases)
    strata = np.bincount(hb, minlength=n_bases)
    lonely_strata = np.bincount(hb, weights=lonely[hh].astype(float), minlength=n_bases)
    dom_lonely = (per_stratum == 1) & (stage.n_units[hh] > 1)
    domain_lonely = np.bincount(hb, weights=dom_lonely.astype(float), minlength=n_bases)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(
            strata > lonely_strata, strata / np.maximum(strata - lonely_strata, 1), 0.0
        )
    return Presence(psus, strata, lonely_strata.astype(int), domain_lonely.astype(int), factor)


# ---------------------------------------------------------------------------------------
# replicate weights


@dataclass(frozen=True, eq=False)
class ReplicateGroups:
    """Replicate weights stored as R's "compressed" weights: ``w_i * factors[group_i]``.

    Weights built from a design's PSUs (jackknife, BRR, bootstrap, SDR) multiply every
    row of a PSU by the same factors, so the totals of any block under all replicates
    are ``(cell sums by group) @ factors``: a product of size groups x replicates
    instead of rows x replicates.
    """

    group: np.ndarray  # (n,)
    factors: np.ndarray  # (G, R)

    @property
    def n_groups(self) -> int:
        return self.factors.shape[0]

    def __repr__(self) -> str:
        G, R = self.factors.shape
        return f"ReplicateGroups({len(self.group)} rows in {G} groups, {R} replicates)"


def find_replicate_groups(
    weights: np.ndarray,
    replicate_weights: np.ndarray,
    candidate: np.ndarray | None = None,
    rtol: float = 1e-12,
) -> ReplicateGroups | None:
    """Group rows whose replicate weights are their sampling weight times the same factors.

    ``candidate`` (e.g. the PSUs the weights were made from) is tried first; otherwise
    rows are grouped by a random projection of their factors. Every row is then checked
    against its group; ``None`` when the weights do not compress (or barely do).
    """
    n, R = replicate_weights.shape
    pos = weights > 0
    if not np.all(pos):
        zero_rows = ~pos
        if np.any(replicate_weights[zero_rows] != 0):
            return None
    w_safe = np.where(pos, weights, 1.0)
    rng = np.random.default_rng(7)
    probe = rng.standard_normal(R)
    # factors projected on a random direction: rows with equal factors share the value
    h = (replicate_weights @ probe) / w_safe
    if candidate is None:
        key = np.round(h / (np.abs(h).max() or 1.0), 10)
        _, group = np.unique(key, return_inverse=True)
    else:
        _, group = np.unique(candidate, return_inverse=True)
    group = group.astype(np.int64)
    G = int(group.max()) + 1 if n else 0
    if n // 2 < G:
        return None
    first = np.full(G, -1, dtype=np.int64)
    order = np.flatnonzero(pos)[::-1]
    first[group[order]] = order
    if np.any(first < 0):
        # a group of zero-weight rows only: any factors do, their weight is zero
        first = np.where(first < 0, 0, first)
    factors = replicate_weights[first] / w_safe[first][:, None]
    # verify, in chunks of rows, that every row follows its group's factors
    step = max(1, (1 << 22) // max(R, 1))
    for i0 in range(0, n, step):
        i1 = min(n, i0 + step)
        sl = slice(i0, i1)
        expected = factors[group[sl]] * weights[sl, None]
        actual = replicate_weights[sl]
        if not np.allclose(actual, expected, rtol=rtol, atol=0.0):
            return None
    return ReplicateGroups(group, np.ascontiguousarray(factors))


def replicate_estimates(
    blocks: Sequence[RatioBlock],
    cells: Sequence[CellSums] | None,
    replicate_weights: np.ndarray,
    groups: ReplicateGroups | None,
) -> list[np.ndarray]:
    """Estimates ``(B, per, R)`` of every block under every replicate.

    With replicate groups, the blocks' cell sums by group are stacked into one
    ``(k x G)`` matrix and multiplied once by the ``(G x R)`` factors. Otherwise the
    rows are summed straight from the ``(n x R)`` weights, one chunk of rows at a time
    so that each chunk of replicate weights is read from memory once for all blocks.
    """
    if not blocks:
        return []
    layout = []
    offset = 0
    for block in blocks:
        K, B = block.n_estimates, block.n_bases
        has_den = not block.counts_only
        layout.append((offset, K, B, has_den))
        offset += K + (B if has_den else 0)
    if groups is not None:
        product = _grouped_product(blocks, cells, groups, layout, offset)
    else:
        product = _chunked_product(blocks, replicate_weights, layout, offset)
    R = product.shape[1]
    out = []
    for block, (off, K, B, has_den) in zip(blocks, layout, strict=True):
        num = product[off : off + K].reshape(B, block.per, R)
        den = product[off + K : off + K + B] if has_den else num.sum(axis=1)
        out.append(block_estimates(block, num, den))
    return out


def _grouped_product(blocks, cells, groups, layout, size) -> np.ndarray:
    G = groups.n_groups
    rows_i, cols_i, vals = [], [], []
    for block, c, (off, _K, _B, has_den) in zip(blocks, cells, layout, strict=True):
        per = block.per
        nz = np.flatnonzero(c.count > 0) if c.dense_groups is not None else np.arange(c.m)
        num = c.num_columns(0, per)[nz]
        r = (off + c.base[nz, None] * per + np.arange(per)[None, :]).ravel()
        rows_i.append(r)
        cols_i.append(np.repeat(c.group[nz], per))
        vals.append(num.ravel())
        if has_den:
            rows_i.append(off + block.n_estimates + c.base[nz])
            cols_i.append(c.group[nz])
            vals.append(c.den[nz])
    matrix = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows_i), np.concatenate(cols_i))),
        shape=(size, G),
    )
    return np.asarray(matrix @ groups.factors)


#: up to this many estimate rows (a mean: numerator and denominator), replicate totals use
#: a dense BLAS product; beyond, each row adds to so few of them that a sparse one is cheaper
DENSE_PRODUCT_ROWS = 4

#: rows per chunk of the dense product
DENSE_PRODUCT_CHUNK = 1 << 16

#: threads for the sparse replicate product (scipy releases the GIL inside it)
PRODUCT_THREADS = max(1, min(4, os.cpu_count() or 1))


def _chunked_product(blocks, replicate_weights, layout, size) -> np.ndarray:
    if size <= DENSE_PRODUCT_ROWS:
        return _dense_product(blocks, replicate_weights, layout, size)
    n, R = replicate_weights.shape
    # small row chunks keep the sparse product's reads of the weights in cache
    step = max(1024, min(4096, (1 << 21) // max(R, 1)))
    workers = min(PRODUCT_THREADS, max(1, n // (16 * step)))
    if workers == 1:
        return _chunk_range(blocks, replicate_weights, layout, size, 0, n, step)
    # scipy's sparse product releases the GIL: halves of the rows on two cores
    bounds = np.linspace(0, n // step, workers + 1).astype(int) * step
    bounds[-1] = n
    with ThreadPoolExecutor(workers) as pool:
        parts = pool.map(
            lambda k: _chunk_range(
                blocks, replicate_weights, layout, size, bounds[k], bounds[k + 1], step
            ),
            range(workers),
        )
        return sum(parts)


def _chunk_range(blocks, replicate_weights, layout, size, start, stop, step) -> np.ndarray:
    """``X.T @ W`` over rows ``start:stop``, ``step`` rows at a time."""
    R = replicate_weights.shape[1]
    n = stop
    out = np.zeros((size, R))
    for i0 in range(start, stop, step):
        i1 = min(n, i0 + step)
        rows_i, cols_i, vals = [], [], []
        for block, (off, K, _B, has_den) in zip(blocks, layout, strict=True):
            base = block.base[i0:i1]
            rows = np.flatnonzero(base >= 0)
            b = base[rows].astype(np.int64, copy=False)
            code = b * block.per
            if block.local is not None:
                code = code + block.local[i0:i1][rows]
            rows_i.append(off + code)
            cols_i.append(rows)
            num = block.numerator
            vals.append(np.ones(len(rows)) if num is None else num[i0:i1][rows])
            if has_den:
                den = block.denominator
                rows_i.append(off + K + b)
                cols_i.append(rows)
                vals.append(np.ones(len(rows)) if den is None else den[i0:i1][rows])
        matrix = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows_i), np.concatenate(cols_i))),
            shape=(size, i1 - i0),
        )
        chunk = np.ascontiguousarray(replicate_weights[i0:i1])
        out += matrix @ chunk
    return out


def _dense_product(blocks, replicate_weights, layout, size) -> np.ndarray:
    """``X.T @ W`` with ``X`` the ``(rows x size)`` indicator/value matrix, chunked by rows.

    Within a block each row adds to one numerator cell and one denominator cell, and
    blocks occupy disjoint rows of the result, so ``X`` is filled by plain assignment.
    """
    n, R = replicate_weights.shape
    out = np.zeros((size, R))
    step = DENSE_PRODUCT_CHUNK
    for i0 in range(0, n, step):
        i1 = min(n, i0 + step)
        x = np.zeros((i1 - i0, size))
        for block, (off, K, _B, has_den) in zip(blocks, layout, strict=True):
            base = block.base[i0:i1]
            rows = np.flatnonzero(base >= 0)
            b = base[rows].astype(np.int64)
            code = b * block.per
            if block.local is not None:
                code = code + block.local[i0:i1][rows]
            num = block.numerator
            x[rows, off + code] = 1.0 if num is None else num[i0:i1][rows]
            if has_den:
                den = block.denominator
                x[rows, off + K + b] = 1.0 if den is None else den[i0:i1][rows]
        out += x.T @ replicate_weights[i0:i1]
    return out


def replicate_variance(
    replicates: np.ndarray,
    estimate: np.ndarray,
    scale: float,
    rscales: np.ndarray,
    mse: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """R's ``svrVar`` for many estimates: ``scale * sum_r rscales_r (theta_r - centre)^2``.

    ``replicates`` is ``(k, R)``. The centre is the mean of the replicates with a positive
    ``rscales`` (or the full-sample estimate when ``mse``). Replicates giving no value for
    an estimate (an empty domain in that replicate) are dropped for that estimate, as R
    drops them; the second result counts them.

    >>> reps = np.array([[1.0, 2.0, 3.0]])
    >>> replicate_variance(reps, np.array([2.0]), 0.5, np.ones(3), False)[0].tolist()
    [1.0]
    """
    rscales = np.asarray(rscales, dtype=float)
    finite = np.isfinite(replicates)
    dropped = (~finite).sum(axis=1)
    use = finite & (rscales > 0)[None, :]
    x = np.where(finite, replicates, 0.0)
    if mse:
        centre = estimate
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            centre = (x * use).sum(axis=1) / use.sum(axis=1)
    dev = np.where(finite, x - centre[:, None], 0.0)
    var = (dev * dev) @ rscales * scale
    var = np.where(finite.any(axis=1) & np.isfinite(estimate), var, np.nan)
    return var, dropped


def replicate_covariance(
    replicates: np.ndarray, estimate: np.ndarray, scale: float, rscales: np.ndarray, mse: bool
) -> np.ndarray:
    """Covariance matrix version of :func:`replicate_variance` (all replicates finite)."""
    rscales = np.asarray(rscales, dtype=float)
    centre = estimate if mse else replicates[:, rscales > 0].mean(axis=1)
    dev = replicates - centre[:, None]
    return (dev * rscales[None, :]) @ dev.T * scale


def replicate_rank(
    replicate_weights: np.ndarray, base: np.ndarray, n_bases: int, seed: int = 20240611
) -> np.ndarray:
    """Rank of the replicate weights restricted to each base, R's ``degf`` plus one.

    R computes ``qr(weights(design, "analysis"))$rank`` on the rows of a (sub)design;
    that QR is what makes R slow on large replicate designs. The rank of a matrix is
    unchanged by a generic random mixing of its rows, so each base's rows are folded
    into a few random combinations (one sparse product for all bases) before the small
    singular value decomposition. Bases with few rows are used as they are.
    """
    R = replicate_weights.shape[1]
    ranks = np.zeros(n_bases, dtype=int)
    rows = np.flatnonzero(base >= 0)
    if len(rows) == 0:
        return ranks
    b = base[rows].astype(np.int64)
    counts = np.bincount(b, minlength=n_bases)
    buckets = 2 * R + 8
    rng = np.random.default_rng(seed)
    slot = rng.integers(0, buckets, size=len(rows))
    # small bases keep one row per slot, so nothing is mixed and the rank is exact
    position = np.zeros(len(rows), dtype=np.int64)
    order = np.argsort(b, kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)))
    position[order] = np.arange(len(rows)) - np.repeat(starts[:-1], counts)
    small = counts[b] <= buckets
    slot = np.where(small, position, slot)
    coef = np.where(small, 1.0, rng.standard_normal(len(rows)))
    matrix = sp.csr_matrix((coef, (b * buckets + slot, rows)), shape=(n_bases * buckets, len(base)))
    folded = np.asarray(matrix @ replicate_weights).reshape(n_bases, buckets, R)
    for k in np.flatnonzero(counts):
        gram = folded[k].T @ folded[k]
        eig = np.linalg.eigvalsh(gram)
        if eig.max() > 0:
            ranks[k] = int((eig > eig.max() * 1e-12).sum())
    return ranks


# ---------------------------------------------------------------------------------------
# calibrated (raked, post-stratified, GREG) designs


@dataclass(frozen=True, eq=False)
class CalibrationModel:
    """The calibration steps of a design, in the form the variance needs them.

    Step ``s`` calibrated weights ``d_s`` to ``w_s`` on columns ``X_s``. R's ``svyrecvar``
    replaces the influence values ``u``, step after step, by the residuals
    ``u - w_s X_s B_s^+ X_s' (d_s / w_s) u`` with ``B_s = X_s' diag(d_s) X_s``. Stacking
    the steps, the residual is ``u - C a`` with ``C = [w_1 X_1, w_2 X_2, ...]`` and the
    coefficients ``a`` solved step by step (:func:`calibration_coefficients`).
    """

    xr: tuple[sp.csc_matrix, ...]  # X_s d_s / w_s, (n, p_s)
    solvers: tuple  # per step: regression totals (p_s, k) -> coefficients (p_s, k)
    cross: dict  # (s, t) -> X_s r_s' C_t for t < s, (p_s, p_t)
    offsets: tuple[int, ...]  # first column of step s in C
    unit_c: sp.csr_matrix  # C summed by sampling unit of the last stage, (units, P)
    cache: dict = field(default_factory=dict)

    @property
    def n_columns(self) -> int:
        return self.offsets[-1]


def calibration_model(calibrations, unit: np.ndarray, n_units: int) -> CalibrationModel:
    """Prepare the calibration steps of a design (``unit``: last-stage unit of each row)."""
    xr = tuple(c.xr for c in calibrations)
    xw = [c.xw for c in calibrations]
    offsets = [0]
    for x in xw:
        offsets.append(offsets[-1] + x.shape[1])
    cross = {}
    for s in range(len(calibrations)):
        for t in range(s):
            cross[(s, t)] = np.asarray((xr[s].T @ xw[t]).todense())
    c_all = sp.hstack(xw).tocsr()
    n = c_all.shape[0]
    to_unit = sp.csr_matrix((np.ones(n), (unit, np.arange(n))), shape=(n_units, n))
    return CalibrationModel(
        xr=xr,
        solvers=tuple(c.solve for c in calibrations),
        cross=cross,
        offsets=tuple(offsets),
        unit_c=(to_unit @ c_all).tocsr(),
    )


def calibration_coefficients(
    model: CalibrationModel,
    block: RatioBlock,
    weights: np.ndarray,
    theta: np.ndarray,
    denominator: np.ndarray,
) -> np.ndarray:
    """Coefficients ``a`` (P, B * per) of the calibration residuals of a block's influence.

    The influence value of row i for estimate (b, l) is
    ``w_i (num_i [l_i = l] - theta_bl den_i) / D_b`` on the rows of base b (``num_i`` for
    totals); its regression totals on each step's columns come from two sparse products.
    """
    B, per = block.n_bases, block.per
    n = len(block.base)
    rows = block.rows()
    w = weights[rows]
    num = w if block.numerator is None else w * block.numerator[rows]
    local = np.zeros(len(rows), np.int64) if block.local is None else block.local[rows]
    col = block.base[rows].astype(np.int64) * per + local
    m_num = sp.csr_matrix((num, (rows, col)), shape=(n, B * per))
    ratio = block.kind != "total"
    if ratio:
        den = w if block.denominator is None else w * block.denominator[rows]
        m_den = sp.csr_matrix((den, (rows, block.base[rows].astype(np.int64))), shape=(n, B))
        with np.errstate(divide="ignore", invalid="ignore"):
            inv_d = np.where(denominator != 0, 1.0 / denominator, 0.0)
        th = np.where(np.isfinite(theta), theta, 0.0)
    parts = []
    for s, (xr, solve) in enumerate(zip(model.xr, model.solvers, strict=True)):
        p = xr.shape[1]
        tn = np.asarray((xr.T @ m_num).todense()).reshape(p, B, per)
        if ratio:
            td = np.asarray((xr.T @ m_den).todense())
            t = (tn - th[None] * td[:, :, None]) * inv_d[None, :, None]
        else:
            t = tn
        t = t.reshape(p, B * per)
        for u in range(s):
            t = t - model.cross[(s, u)] @ parts[u]
        parts.append(solve(t))
    return np.vstack(parts)


def calibrated_block_variance(
    block: RatioBlock,
    cells: CellSums,
    theta: np.ndarray,
    totals: BlockTotals,
    stages: Sequence[Stage],
    coefs: Sequence[StratumCoefficients],
    stage1_factor: np.ndarray | None,
    model: CalibrationModel,
    a: np.ndarray,
) -> np.ndarray:
    """Linearization variances ``(B, per)`` of a block of a calibrated design.

    The residual influence is not zero outside a domain, so every (unit, base) pair has a
    total: they are laid out densely, ``units x bases`` for a chunk of columns at a time.
    """
    B, per = block.n_bases, block.per
    if len(stages) == 1:
        fast = calibrated_one_stage_variance(
            block, cells, theta, totals, stages[0], coefs[0], stage1_factor, model, a
        )
        if fast is not None:
            return fast
    U = stages[-1].n_unit_total
    var = np.zeros((B, per))
    keep = cells.count > 0
    group, base = cells.group[keep], cells.base[keep]
    a3 = a.reshape(a.shape[0], B, per)
    unit = np.repeat(np.arange(U), B)
    bases = np.tile(np.arange(B), U)
    flat = group * B + base
    step = max(1, CHUNK_ENTRIES // max(U * B, 1))
    for c0 in range(0, per, step):
        c1 = min(per, c0 + step)
        vals = np.nan_to_num(cell_influence(block, cells, keep, theta, totals, c0, c1))
        correction = model.unit_c @ a3[:, :, c0:c1].reshape(a.shape[0], -1)
        t = -np.asarray(correction).reshape(U * B, c1 - c0)
        for j in range(c1 - c0):
            t[:, j] += np.bincount(flat, weights=vals[:, j], minlength=U * B)
        var[:, c0:c1] = linearization_variance(stages, coefs, unit, bases, t, B, stage1_factor)
    return var


def _stratum_moments(model: CalibrationModel, stage: Stage) -> tuple[np.ndarray, np.ndarray]:
    """Sums ``sum_u C_u`` (H, P) and ``sum_u C_u C_u'`` (H, P, P) of the units of each stratum."""
    key = ("moments", id(stage))
    if key not in model.cache:
        c = model.unit_c
        H, P = stage.n_strata, c.shape[1]
        h = stage.unit_stratum.astype(np.int64)
        to_h = sp.csr_matrix((np.ones(len(h)), (h, np.arange(len(h)))), shape=(H, len(h)))
        c_sum = np.asarray((to_h @ c).todense())
        q = np.zeros((H, P, P))
        order = np.argsort(h, kind="stable")
        edges = np.searchsorted(h[order], np.arange(H + 1))
        sorted_c = c[order]
        for s in range(H):
            block = sorted_c[edges[s] : edges[s + 1]]
            q[s] = (block.T @ block).toarray()
        model.cache[key] = (c_sum, q)
    return model.cache[key]


def calibrated_one_stage_variance(
    block: RatioBlock,
    cells: CellSums,
    theta: np.ndarray,
    totals: BlockTotals,
    stage: Stage,
    coefs: StratumCoefficients,
    stage1_factor: np.ndarray | None,
    model: CalibrationModel,
    a: np.ndarray,
) -> np.ndarray | None:
    """Variances of a block of a calibrated one-stage design, from moments by stratum.

    With ``T_u = S_u - C_u'a`` (influence total of unit u minus its calibration part),
    ``sum_h T`` and ``sum_h T^2`` expand into the block's own sums of ``S`` and ``S^2``,
    the cross sums ``sum_h S_u C_u'a`` -- linear in ``G = sum num C_u`` and
    ``sum den C_u`` by (stratum, base, level), two sparse products -- and the quadratic
    forms ``a' (sum_h C_u C_u') a``: nothing of size units x estimates is ever built.
    Returns None when the strata are too many for the (H, P, P) moments.
    """
    B, per = block.n_bases, block.per
    H, P = stage.n_strata, a.shape[0]
    if H * P * P > MOMENT_LIMIT or H * B * per * max(P, 1) > MOMENT_LIMIT:
        return None
    c_sum, q = _stratum_moments(model, stage)
    U = stage.n_unit_total
    ratio = block.kind != "total"
    keep = cells.count > 0 if cells.local is None else slice(None)
    unit, base = cells.group[keep], cells.base[keep]
    key_hb = stage.unit_stratum[unit].astype(np.int64) * B + base
    if cells.local is not None:
        moments = _element_moments(block, cells, theta, totals, stage)
        if moments is None:
            return None
        s1, s2 = moments
        g_num = sp.csr_matrix(
            (cells.value, (key_hb * per + cells.local, unit)), shape=(H * B * per, U)
        )
    else:
        num = cells.num_columns(0, per)[keep]
        vals = np.nan_to_num(cell_influence(block, cells, keep, theta, totals, 0, per))
        s1 = group_sum(key_hb, H * B, vals).reshape(H, B, per)
        s2 = group_sum(key_hb, H * B, vals * vals).reshape(H, B, per)
        rows = (key_hb[:, None] * per + np.arange(per)[None, :]).ravel()
        g_num = sp.csr_matrix((num.ravel(), (rows, np.repeat(unit, per))), shape=(H * B * per, U))
    a3 = a.reshape(P, B, per)
    a_flat = a.reshape(P, B * per)
    # cross sums: sum over units of S_u (C_u . a), from G = (sums of num and den) x C
    gn = np.asarray((g_num @ model.unit_c).todense()).reshape(H, B, per, P)
    cross = np.einsum("hblp,pbl->hbl", gn, a3)
    if ratio:
        den = cells.den[keep]
        g_den = sp.csr_matrix((den, (key_hb, unit)), shape=(H * B, U))
        gd = np.asarray((g_den @ model.unit_c).todense()).reshape(H, B, P)
        cd = np.einsum("hbp,pbl->hbl", gd, a3)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(totals.denominator != 0, 1.0 / totals.denominator, 0.0)
        th = np.where(np.isfinite(theta), theta, 0.0)
        cross = (cross - th[None] * cd) * inv[None, :, None]
    s1 = np.nan_to_num(s1)
    s2 = np.nan_to_num(s2)
    sum_t = s1 - (c_sum @ a_flat).reshape(H, B, per)
    quad = np.einsum("hpk,pk->hk", q @ a_flat, a_flat).reshape(H, B, per)
    sum_t2 = s2 - 2 * cross + quad
    return _stratum_variance(sum_t, sum_t2, stage, coefs, stage1_factor)
