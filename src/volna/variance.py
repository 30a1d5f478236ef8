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
  estimates gives the variance, as R's ``svrVar``. The ``n x R`` weights are read where
  they are stored (:class:`ReplicateWeightColumns`: the data frame's own columns), a
  chunk of rows at a time.

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

import itertools
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
    local = block.local
    if (
        group_of_row is None
        and block.counts_only
        and local is not None
        and per > 1
        and B * per <= DENSE_LIMIT
    ):
        # one group (replicate weights that do not compress): the cells are the bases
        return _one_group_counts(block, weights, positive)
    one_group = group_of_row is None
    if one_group:
        group_of_row = np.zeros(len(base), dtype=np.int64) if B * per > DENSE_LIMIT else None
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
        if one_group:
            # one group: the cells are the bases (a spare one for rows outside them)
            cell = base if valid.all() else np.where(valid, base, size)
        elif B == 1 and valid.all():
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
            return _count_grid(num, pos.reshape(size, per), cnt.reshape(size, per), n_groups)
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


def _one_group_counts(block: RatioBlock, weights: np.ndarray, positive: np.ndarray) -> CellSums:
    """Cell sums of a proportion block with every row in one group: two bincounts."""
    B, per = block.n_bases, block.per
    base, local = block.base, block.local
    outside = base < 0
    size = B * per
    if not outside.any():
        code = local if B == 1 else base * per + local
    else:
        code = np.where(outside, size, base * per + local)
    num = np.bincount(code, weights=weights, minlength=size + 1)[:size].reshape(B, per)
    cnt = np.bincount(code, minlength=size + 1)[:size].astype(float).reshape(B, per)
    if positive.min(initial=1.0) > 0:
        pos = cnt  # every weight is positive: the counts are the positive-weight counts
    else:
        pos = np.bincount(code, weights=positive, minlength=size + 1)[:size].reshape(B, per)
    return _count_grid(num, pos, cnt, 1)


def _count_grid(num: np.ndarray, pos: np.ndarray, cnt: np.ndarray, n_groups: int) -> CellSums:
    """The cell sums of a proportion block from its dense (groups x bases, levels) grids
    of weights, positive-weight counts and counts; groups are the slow index."""
    size, per = num.shape
    B = size // n_groups
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


class ReplicateWeightColumns:
    """Replicate weights held column by column, in the buffers they already live in.

    A replicate design read from a data frame keeps 1-D float64 views of the frame's own
    columns (zero-copy: a polars Float64 column without nulls is a numpy view, one per
    chunk), so the design adds no second copy of the largest thing it holds. Weights
    made by volna (replicate construction, recalibrated replicates) come as one matrix
    and are held as its column views. ``multiplier`` (``combined_weights=False``: the
    columns are factors, the weights are factor x sampling weight) is applied on the
    fly, never stored as an ``n x R`` product.

    The consumers get what they need without the full matrix: row chunks as a small
    C-contiguous ``(rows x R)`` buffer (:meth:`stored_rows`), columns, products with a
    vector or a sparse matrix, sums by group, the rows of a few indices, and the check
    that every value is finite, column by column.

    >>> cols = ReplicateWeightColumns([np.array([1.0, 2.0, 3.0]), np.array([0.0, 4.0, 2.0])])
    >>> cols.shape, cols.rows(1, 3).tolist()
    ((3, 2), [[2.0, 4.0], [3.0, 2.0]])
    >>> cols.dot(np.array([1.0, 1.0])).tolist()
    [1.0, 6.0, 5.0]
    >>> half = ReplicateWeightColumns.from_matrix(np.ones((2, 2)), multiplier=np.array([0.5, 2]))
    >>> half.to_array().tolist()
    [[0.5, 0.5], [2.0, 2.0]]
    """

    def __init__(
        self,
        columns: Sequence[np.ndarray | Sequence[np.ndarray]],
        multiplier: np.ndarray | None = None,
        *,
        matrix: np.ndarray | None = None,
    ) -> None:
        # each column: one array, or its pieces (a polars column's chunks)
        pieces = [[c] if isinstance(c, np.ndarray) else list(c) for c in columns]
        lengths = {tuple(len(p) for p in col) for col in pieces}
        if len(lengths) > 1:
            # chunk boundaries differ between columns: split every column at all of them
            # (views, still no copy)
            cuts = sorted({int(x) for ls in lengths for x in np.cumsum((0, *ls))})
            pieces = [_split_pieces(col, cuts) for col in pieces]
        first = pieces[0] if pieces else []
        self._bounds = np.cumsum([0, *(len(p) for p in first)]).astype(np.int64)
        self._pieces = [[np.asarray(p, dtype=np.float64) for p in col] for col in pieces]
        self.multiplier = None if multiplier is None else np.asarray(multiplier, dtype=float)
        self._matrix = matrix  # the (n, R) matrix the columns are views of, if any
        self._piece_sums: np.ndarray | None = None

    @property
    def matrix(self) -> np.ndarray | None:
        """The ``(n, R)`` array the columns are views of, when they came as one."""
        return self._matrix

    @classmethod
    def from_matrix(
        cls, matrix: np.ndarray, multiplier: np.ndarray | None = None
    ) -> ReplicateWeightColumns:
        """Columns that are views of one ``(n, R)`` matrix (kept as it is, any order)."""
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim != 2:
            raise ValueError(f"replicate weights must be a 2-d array, got shape {matrix.shape}")
        return cls([matrix[:, j] for j in range(matrix.shape[1])], multiplier, matrix=matrix)

    # ---- shape ---------------------------------------------------------------------------

    @property
    def n_rows(self) -> int:
        return int(self._bounds[-1])

    @property
    def n_replicates(self) -> int:
        return len(self._pieces)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_rows, self.n_replicates)

    def stored_pieces(self, j: int):
        """``(start, stop, values)`` of column ``j`` as stored (without the multiplier)."""
        b = self._bounds
        return [(int(b[p]), int(b[p + 1]), a) for p, a in enumerate(self._pieces[j])]

    def row_ranges(self, step: int) -> list[tuple[int, int]]:
        """Ranges of at most ``step`` rows, none straddling two stored pieces."""
        out = []
        for p in range(len(self._bounds) - 1):
            lo, hi = int(self._bounds[p]), int(self._bounds[p + 1])
            out += [(i, min(hi, i + step)) for i in range(lo, hi, step)]
        return out

    # ---- access ----------------------------------------------------------------------------

    def column(self, j: int) -> np.ndarray:
        """Column ``j`` (times the multiplier); a view when stored in one piece."""
        parts = self._pieces[j]
        col = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return col if self.multiplier is None else col * self.multiplier

    def whole_piece(self, i0: int, i1: int) -> int | None:
        """The stored piece that rows ``i0:i1`` are exactly, if they are one."""
        p = int(np.searchsorted(self._bounds, i0, side="right")) - 1
        return p if self._bounds[p] == i0 and self._bounds[p + 1] == i1 else None

    def column_slices(self, i0: int, i1: int) -> list[np.ndarray]:
        """Views of rows ``i0:i1`` of every stored column (a range within one piece)."""
        p = int(np.searchsorted(self._bounds, i0, side="right")) - 1
        s = int(self._bounds[p])
        return [parts[p][i0 - s : i1 - s] for parts in self._pieces]

    def stored_rows(self, i0: int, i1: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``i0:i1`` as stored (no multiplier), a C-contiguous ``(rows, R)`` array."""
        m = self._matrix
        if m is not None and m.flags.c_contiguous:
            return m[i0:i1]
        buf = np.empty((i1 - i0, self.n_replicates)) if out is None else out[: i1 - i0]
        p = int(np.searchsorted(self._bounds, i0, side="right")) - 1
        if self._bounds[p + 1] >= i1:
            # within one piece: one strided copy per column
            s = int(self._bounds[p])
            for j, parts in enumerate(self._pieces):
                buf[:, j] = parts[p][i0 - s : i1 - s]
            return buf
        for j in range(self.n_replicates):
            for lo, hi, a in self.stored_pieces(j):
                a0, a1 = max(lo, i0), min(hi, i1)
                if a0 < a1:
                    buf[a0 - i0 : a1 - i0, j] = a[a0 - lo : a1 - lo]
        return buf

    def rows(self, i0: int, i1: int) -> np.ndarray:
        """Rows ``i0:i1`` of the replicate weights (times the multiplier): ``(rows, R)``."""
        x = np.array(self.stored_rows(i0, i1), copy=True)
        if self.multiplier is not None:
            x *= self.multiplier[i0:i1, None]
        return x

    def take_rows(self, index: np.ndarray) -> np.ndarray:
        """The rows at ``index`` (times the multiplier): ``(len(index), R)``."""
        index = np.asarray(index, dtype=np.int64)
        out = np.empty((len(index), self.n_replicates))
        piece = np.searchsorted(self._bounds, index, side="right") - 1
        for p in np.unique(piece):
            sel = np.flatnonzero(piece == p)
            local = index[sel] - self._bounds[p]
            for j, parts in enumerate(self._pieces):
                out[sel, j] = parts[p][local]
        if self.multiplier is not None:
            out *= self.multiplier[index, None]
        return out

    def to_array(self, factor: np.ndarray | None = None) -> np.ndarray:
        """A new Fortran-ordered ``(n, R)`` array of the weights (times ``factor``)."""
        out = np.empty(self.shape, order="F")
        for j in range(self.n_replicates):
            col = out[:, j]
            for lo, hi, a in self.stored_pieces(j):
                col[lo:hi] = a
            if self.multiplier is not None:
                col *= self.multiplier
            if factor is not None:
                col *= factor
        return out

    # ---- products ----------------------------------------------------------------------------

    def dot(self, vector: np.ndarray) -> np.ndarray:
        """``W @ vector`` for a vector of ``R`` values: ``(n,)``."""
        out = np.zeros(self.n_rows)
        for j, v in enumerate(np.asarray(vector, dtype=float)):
            for lo, hi, a in self.stored_pieces(j):
                out[lo:hi] += v * a
        if self.multiplier is not None:
            out *= self.multiplier
        return out

    def left_product(self, matrix) -> np.ndarray:
        """``matrix @ W`` for a ``(k, n)`` sparse or dense matrix: ``(k, R)``."""
        m = self._matrix
        if m is not None and m.flags.c_contiguous and self.multiplier is None:
            return np.asarray(matrix @ m)  # (a column-major one would be copied row-major)
        # in compressed-column form, slices by rows of W are cheap
        matrix = sp.csc_matrix(matrix) if sp.issparse(matrix) else np.asarray(matrix)
        if self.multiplier is not None:
            matrix = (
                matrix.multiply(self.multiplier[None, :]).tocsc()
                if sp.issparse(matrix)
                else matrix * self.multiplier[None, :]
            )
        out = np.zeros((matrix.shape[0], self.n_replicates))
        slices = {(lo, hi): matrix[:, lo:hi] for lo, hi, _ in self.stored_pieces(0)}
        for j in range(self.n_replicates):
            for lo, hi, a in self.stored_pieces(j):
                out[:, j] += slices[(lo, hi)] @ a
        return out

    def group_sum(self, index: np.ndarray, m: int) -> np.ndarray:
        """Sums of the rows sharing an index in ``[0, m)``: ``(m, R)``."""
        out = np.zeros((m, self.n_replicates))
        index = np.asarray(index)
        mult = self.multiplier
        for j in range(self.n_replicates):
            for lo, hi, a in self.stored_pieces(j):
                v = a if mult is None else a * mult[lo:hi]
                out[:, j] += np.bincount(index[lo:hi], weights=v, minlength=m)
        return out

    # ---- checks ------------------------------------------------------------------------------

    def piece_sums(self) -> np.ndarray:
        """Sums of every stored piece of every column (no multiplier): ``(pieces, R)``.

        Computed once (the finiteness check needs them anyway) and kept: a total over
        whole pieces, e.g. the denominator of a mean over everyone, reads no weight.
        """
        if self._piece_sums is None:
            sums = np.empty((len(self._bounds) - 1, self.n_replicates))
            for j, parts in enumerate(self._pieces):
                for p, a in enumerate(parts):
                    sums[p, j] = np.add.reduce(a)
            self._piece_sums = sums
        return self._piece_sums

    def first_nonfinite(self) -> tuple[int, int] | None:
        """``(row, column)`` of the first missing or infinite value, column by column."""
        sums = self.piece_sums()
        for j in range(self.n_replicates):
            for p, (lo, _hi, a) in enumerate(self.stored_pieces(j)):
                # a sum is finite when every value is (the exact check runs only if not)
                if not np.isfinite(sums[p, j]):
                    bad = np.flatnonzero(~np.isfinite(a))
                    if len(bad):
                        return lo + int(bad[0]), j
        return None

    def __repr__(self) -> str:
        n, R = self.shape
        held = "one matrix" if self._matrix is not None else f"{len(self._bounds) - 1} piece(s)"
        return f"ReplicateWeightColumns({n} rows x {R} replicates, {held})"


def _split_pieces(pieces: Sequence[np.ndarray], cuts: list[int]) -> list[np.ndarray]:
    """Views of a column's pieces cut at every boundary in ``cuts``."""
    out = []
    start = 0
    for a in pieces:
        stop = start + len(a)
        inner = [c for c in cuts if start <= c <= stop]
        for lo, hi in itertools.pairwise(inner):
            out.append(a[lo - start : hi - start])
        start = stop
    return out


def as_replicate_columns(weights) -> ReplicateWeightColumns:
    """Replicate weights given as columns or as one ``(n, R)`` array."""
    if isinstance(weights, ReplicateWeightColumns):
        return weights
    return ReplicateWeightColumns.from_matrix(weights)


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
    replicate_weights: ReplicateWeightColumns | np.ndarray,
    candidate: np.ndarray | None = None,
    rtol: float = 1e-12,
) -> ReplicateGroups | None:
    """Group rows whose replicate weights are their sampling weight times the same factors.

    ``candidate`` (e.g. the PSUs the weights were made from) is tried first; otherwise
    rows are grouped by a random projection of their factors. Every row is then checked
    against its group, column by column; ``None`` when the weights do not compress (or
    barely do).
    """
    reps = as_replicate_columns(replicate_weights)
    n, R = reps.shape
    pos = weights > 0
    if not np.all(pos):
        zero_rows = ~pos
        for j in range(R):
            if np.any(reps.column(j)[zero_rows] != 0):
                return None
    w_safe = np.where(pos, weights, 1.0)
    rng = np.random.default_rng(7)
    probe = rng.standard_normal(R)
    # factors projected on a random direction: rows with equal factors share the value
    h = reps.dot(probe) / w_safe
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
    factors = reps.take_rows(first) / w_safe[first][:, None]
    # verify, one replicate at a time, that every row follows its group's factors
    for j in range(R):
        expected = factors[group, j] * weights
        if not np.allclose(reps.column(j), expected, rtol=rtol, atol=0.0):
            return None
    return ReplicateGroups(group, np.ascontiguousarray(factors))


def replicate_estimates(
    blocks: Sequence[RatioBlock],
    cells: Sequence[CellSums] | None,
    replicate_weights: ReplicateWeightColumns | np.ndarray,
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
        reps = as_replicate_columns(replicate_weights)
        product = _chunked_product(blocks, reps, layout, offset)
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


#: rows per chunk whose sparse coefficients are built at once (one vectorised pass per block)
PRODUCT_CHUNK = 1 << 15

#: rows of replicate weights laid out row by row at a time for the sparse product (small
#: enough for the buffer to stay in cache while it is filled column by column)
PRODUCT_ROWS = 1024

#: up to this many cells (a mean: numerator and denominator), the product is dense: every
#: row adds to the same few sums, which a scatter would add one after the other
DENSE_PRODUCT_ROWS = 4

#: up to this many entries per row (a mean or a proportion: one or two), the product runs
#: column by column on the weights where they are stored; beyond (a topline: one entry per
#: question), laying rows of weights out once serves every entry
COLUMN_PRODUCT_ENTRIES = 4

#: threads for the replicate product (scipy's kernels release the GIL)
PRODUCT_THREADS = max(1, min(4, os.cpu_count() or 1))

try:  # scipy's kernels of ``csc @ dense`` and ``csc @ vector``, accumulating in place
    from scipy.sparse._sparsetools import csc_matvec as _csc_matvec
    from scipy.sparse._sparsetools import csc_matvecs as _csc_matvecs
except ImportError:  # pragma: no cover - a scipy without them: the public products
    _csc_matvec = _csc_matvecs = None


def _chunked_product(blocks, replicate_weights, layout, size) -> np.ndarray:
    """``X.T @ W``: every block's weighted totals under every replicate, ``(size, R)``.

    ``X`` (rows x size) is never built whole: each chunk of rows gets its sparse
    coefficients (:func:`_range_coefficients`). With a row-major matrix of weights the
    chunk is multiplied where it lies; with columns (a frame's, or a column-major
    matrix) a product with few entries per row runs column by column, and one with many
    (a topline) copies small blocks of rows into a row-major buffer first.
    """
    reps = as_replicate_columns(replicate_weights)
    n = reps.n_rows
    entries = sum(1 + has_den for *_, has_den in layout)
    matrix = reps.matrix
    row_major = matrix is not None and matrix.flags.c_contiguous
    if row_major or entries > COLUMN_PRODUCT_ENTRIES:
        run = _chunk_range
    elif size <= DENSE_PRODUCT_ROWS:
        run = _dense_range
    else:
        run = _column_range
    # the dense product reads whole pieces (long dot products, and known piece totals)
    ranges = reps.row_ranges(max(n, 1) if run is _dense_range else PRODUCT_CHUNK)
    workers = min(PRODUCT_THREADS, len(ranges), max(1, n // (1 << 16)))
    if run is _dense_range:
        workers = 1
    if workers <= 1:
        return run(blocks, reps, layout, size, ranges)
    # the kernels and numpy's copies release the GIL: the rows on two cores
    cut = np.linspace(0, len(ranges), workers + 1).astype(int)
    with ThreadPoolExecutor(workers) as pool:
        parts = pool.map(
            lambda k: run(blocks, reps, layout, size, ranges[cut[k] : cut[k + 1]]),
            range(workers),
        )
        return sum(parts)


#: proportion blocks sharing their domains are summed jointly, a few questions at a time,
#: while their levels multiply to at most this: one entry a row for the group instead of
#: one per question, and each question's totals are the margins of the joint ones
JOINT_LEVELS = 64


@dataclass(frozen=True, eq=False)
class _Entry:
    """One entry a row of ``X``: a block (numerator, maybe denominator) or joint blocks."""

    off: int  # first cell in the product's layout
    members: tuple  # ((block, (off, K, B, has_den)), ...) in the caller's layout
    levels: int = 0  # joint cells per base (0: a single block)

    @property
    def width(self) -> int:
        block, (_off, K, B, has_den) = self.members[0]
        if self.levels:
            return block.n_bases * self.levels
        return K + (B if has_den else 0)

    @property
    def entries(self) -> int:
        return 1 if self.levels else 1 + self.members[0][1][3]


def _plan(blocks, layout, joint: bool) -> tuple[list[_Entry], int]:
    """The entries of ``X`` and its number of cells; with ``joint``, proportion blocks on
    one array of domain codes are grouped (see :data:`JOINT_LEVELS`)."""
    plan: list[_Entry] = []
    off = i = 0
    while i < len(blocks):
        first = blocks[i]
        group, levels = [i], first.per
        if joint and first.counts_only and first.local is not None:
            while i + len(group) < len(blocks):
                nxt = blocks[i + len(group)]
                fits = nxt.counts_only and nxt.local is not None and nxt.base is first.base
                if not fits or levels * nxt.per > JOINT_LEVELS:
                    break
                group.append(i + len(group))
                levels *= nxt.per
        members = tuple((blocks[k], layout[k]) for k in group)
        entry = _Entry(off, members, levels if len(group) > 1 else 0)
        plan.append(entry)
        off += entry.width
        i += len(group)
    return plan, off


def _unpack(plan: list[_Entry], out: np.ndarray, size: int) -> np.ndarray:
    """The product in the blocks' layout, the joint totals summed to each block's margins."""
    if all(not e.levels for e in plan):
        return out  # the same layout
    R = out.shape[1]
    product = np.empty((size, R))
    for e in plan:
        if not e.levels:
            std = e.members[0][1][0]
            product[std : std + e.width] = out[e.off : e.off + e.width]
            continue
        B = e.members[0][0].n_bases
        pers = [block.per for block, _ in e.members]
        joint = out[e.off : e.off + e.width].reshape(B, *pers, R)
        for k, (_block, (std, K, _B, _d)) in enumerate(e.members):
            others = tuple(1 + m for m in range(len(pers)) if m != k)
            product[std : std + K] = joint.sum(axis=others).reshape(K, R)
    return product


def _range_coefficients(plan, size, i0, i1, multiplier, itype):
    """Rows ``i0:i1`` of ``X`` in compressed-column form, a fixed number of entries a row.

    Every row adds to exactly one numerator cell (and one denominator cell) of each
    entry, so the entries of row ``i`` are ``index[i*E : (i+1)*E]`` (``E`` entries per
    row); rows outside a block's bases add to a spare last cell (``size``), dropped at
    the end, instead of being filtered out. ``values`` is None when every coefficient
    is 1 (proportions, counts). Built one entry at a time as rows of the transpose
    (contiguous, in place), transposed once.
    """
    m = i1 - i0
    entries = sum(e.entries for e in plan)
    constant = multiplier is None and all(b.counts_only for e in plan for b, _ in e.members)
    index_t = np.empty((entries, m), dtype=itype)
    values_t = None if constant else np.empty((entries, m))
    shared: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
    r = 0
    for e in plan:
        block, (_std, K, _B, has_den) = e.members[0]
        key = id(block.base)
        if key not in shared:
            # blocks of one call mostly share their domain codes: read them once
            b = block.base[i0:i1]
            outside = b < 0
            shared[key] = (b.astype(itype), outside if outside.any() else None)
        base, outside = shared[key]
        row = index_t[r]
        if e.levels:
            # the joint level: mixed-radix digits of the members' levels
            np.multiply(base, e.levels, out=row)
            code = block.local[i0:i1].astype(itype)
            for other, _ in e.members[1:]:
                code *= other.per
                code += other.local[i0:i1]
            row += code
        else:
            np.multiply(base, block.per, out=row)
            if block.local is not None:
                row += block.local[i0:i1]
        row += e.off
        if outside is not None:
            row[outside] = size
        if values_t is not None:
            num = block.numerator
            values_t[r] = 1.0 if num is None else num[i0:i1]
        r += 1
        if has_den and not e.levels:
            row = index_t[r]
            np.add(base, e.off + K, out=row)
            if outside is not None:
                row[outside] = size
            if values_t is not None:
                den = block.denominator
                values_t[r] = 1.0 if den is None else den[i0:i1]
            r += 1
    index = np.ascontiguousarray(index_t.T).ravel()
    if values_t is None:
        return index, None
    if multiplier is not None:
        # combined_weights=False: the sampling weight goes in the coefficients
        values_t *= multiplier[i0:i1]
    return index, np.ascontiguousarray(values_t.T).ravel()


def _chunk_range(blocks, reps, layout, size, ranges) -> np.ndarray:
    """``X.T @ W`` over the row ``ranges``, reading rows of weights (axpy over R).

    Each row of weights is read once and added to its cells, so the cost is one pass
    over the weights plus ``E x R`` additions a row, whatever the number of cells;
    joint proportion blocks (:data:`JOINT_LEVELS`) make ``E`` a half to a third of the
    number of questions.
    """
    reps = as_replicate_columns(reps)
    R = reps.n_replicates
    plan, ksize = _plan(blocks, layout, joint=True)
    entries = sum(e.entries for e in plan)
    itype = np.int32 if ksize < np.iinfo(np.int32).max else np.int64
    out = np.zeros((ksize + 1, R))
    ones = np.ones(PRODUCT_ROWS * entries)
    indptr = np.arange(0, (PRODUCT_ROWS + 1) * entries, entries, dtype=itype)
    buf = np.empty((PRODUCT_ROWS, R))
    for i0, i1 in ranges:
        index, values = _range_coefficients(plan, ksize, i0, i1, reps.multiplier, itype)
        for s0 in range(0, i1 - i0, PRODUCT_ROWS):
            s1 = min(i1 - i0, s0 + PRODUCT_ROWS)
            k = s1 - s0
            w = reps.stored_rows(i0 + s0, i0 + s1, buf)
            data = ones[: k * entries] if values is None else values[s0 * entries : s1 * entries]
            idx = index[s0 * entries : s1 * entries]
            if _csc_matvecs is not None:
                _csc_matvecs(ksize + 1, k, R, indptr[: k + 1], idx, data, w.ravel(), out.ravel())
            else:  # pragma: no cover
                out += sp.csc_matrix((data, idx, indptr[: k + 1]), shape=(ksize + 1, k)) @ w
    return _unpack(plan, out[:ksize], size)


def _dense_range(blocks, reps, layout, size, ranges) -> np.ndarray:
    """``X.T @ W`` over the row ``ranges`` for a few cells: ``X.T`` dense, column by column.

    Each cell's row of ``X.T`` meets each column slice where it is stored in a dot
    product (a plain sum for a row of ones, as a denominator mostly is). One thread:
    the dot products are BLAS's, which share long slices between cores themselves.
    """
    reps = as_replicate_columns(reps)
    R = reps.n_replicates
    out_t = np.zeros((R, size))
    mult = reps.multiplier
    for i0, i1 in ranges:
        xt = np.zeros((size, i1 - i0))
        for block, (off, K, B, has_den) in zip(blocks, layout, strict=True):
            base = block.base[i0:i1]
            code = base * block.per
            if block.local is not None:
                code = code + block.local[i0:i1]
            code = np.where(base >= 0, code, -1)
            num = 1.0 if block.numerator is None else block.numerator[i0:i1]
            for c in range(K):
                xt[off + c] = np.where(code == c, num, 0.0)
            if has_den:
                den = 1.0 if block.denominator is None else block.denominator[i0:i1]
                for b in range(B):
                    xt[off + K + b] = np.where(base == b, den, 0.0)
        if mult is not None:
            xt *= mult[i0:i1]
        ones = [mult is None and bool((row == 1.0).all()) for row in xt]
        piece = reps.whole_piece(i0, i1)
        for k in range(size):
            if ones[k] and piece is not None:
                out_t[:, k] += reps.piece_sums()[piece]  # a total of whole pieces: known
                ones[k] = None
        for j, column in enumerate(reps.column_slices(i0, i1)):
            for k in range(size):
                if ones[k] is None:
                    continue
                out_t[j, k] += np.add.reduce(column) if ones[k] else np.dot(xt[k], column)
    return out_t.T


def _column_range(blocks, reps, layout, size, ranges) -> np.ndarray:
    """``X.T @ W`` over the row ``ranges``, one column of weights at a time.

    Each column slice is read where it is stored (no copy) and its ``E`` entries a row
    are added to their cells: cheaper than laying rows out while ``E`` is small.
    """
    reps = as_replicate_columns(reps)
    R = reps.n_replicates
    plan, _ = _plan(blocks, layout, joint=False)
    entries = sum(e.entries for e in plan)
    itype = np.int32 if size < np.iinfo(np.int32).max else np.int64
    out_t = np.zeros((R, size + 1))
    ones = np.ones(PRODUCT_CHUNK * entries)
    indptr = np.arange(0, (PRODUCT_CHUNK + 1) * entries, entries, dtype=itype)
    for i0, i1 in ranges:
        m = i1 - i0
        index, values = _range_coefficients(plan, size, i0, i1, reps.multiplier, itype)
        data = ones[: m * entries] if values is None else values
        ptr = indptr[: m + 1]
        for j, column in enumerate(reps.column_slices(i0, i1)):
            if _csc_matvec is not None:
                _csc_matvec(size + 1, m, ptr, index, data, column, out_t[j])
            else:  # pragma: no cover
                out_t[j] += sp.csc_matrix((data, index, ptr), shape=(size + 1, m)) @ column
    return out_t[:, :size].T


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
    replicate_weights: ReplicateWeightColumns | np.ndarray,
    base: np.ndarray,
    n_bases: int,
    seed: int = 20240611,
) -> np.ndarray:
    """Rank of the replicate weights restricted to each base, R's ``degf`` plus one.

    R computes ``qr(weights(design, "analysis"))$rank`` on the rows of a (sub)design;
    that QR is what makes R slow on large replicate designs. The rank of a matrix is
    unchanged by a generic random mixing of its rows, so each base's rows are folded
    into a few random combinations (one sparse product for all bases) before the small
    singular value decomposition. Bases with few rows are used as they are.
    """
    reps = as_replicate_columns(replicate_weights)
    R = reps.n_replicates
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
    folded = reps.left_product(matrix).reshape(n_bases, buckets, R)
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
