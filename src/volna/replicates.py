"""Replicate weights: jackknife, balanced repeated replication, bootstrap and SDR.

A replicate design estimates a statistic once with the full-sample weights and
once per column of replicate weights; the spread of the replicate estimates
gives the variance, whatever the statistic (means, ratios, quantiles, model
coefficients), without a linearisation for each of them. This module builds
the replicate weights from a design's first stage (strata, PSUs, sampling
fraction, weights) and turns replicate estimates into a covariance matrix.
The conventions follow R's ``survey`` package (Lumley), ``as.svrepdesign`` and
``svrVar``, so that results can be compared with R number for number.

The variance of a vector of estimates is always (R's ``svrVar``)::

    V = scale * sum_r rscales[r] * (theta_r - c)(theta_r - c)^T

with ``c`` the full-sample estimate when ``mse`` is true, else the mean of the
replicate estimates. Every method below is a choice of replicate weights,
``scale``, ``rscales`` and ``mse``.

Methods
-------
``JK1``: delete-one-PSU jackknife for an unstratified design (Wolter 2007,
ch. 4). Replicate *j* drops PSU *j* (its weights become 0) and multiplies the
other PSUs' weights by n/(n-1). ``scale = (n-1)/n * (1-f)``: as R does, the
first-stage finite population correction ``1-f`` is folded into the scale.
Replicates come in the order in which the PSUs first appear in the data, as in
R (so ``apiclus1``'s JK1 weights match R's column by column). A stratified
design is refused (R too): use JKn. With f = 1 R keeps no replicate; volna keeps
them with ``scale = 0``.

``JKn``: stratified delete-one-PSU jackknife. Replicate (h, j) drops PSU *j* of
stratum *h* and multiplies the other PSUs of stratum *h* by n_h/(n_h-1); other
strata keep their weights. ``scale = 1`` and ``rscales = (n_h-1)/n_h * (1-f_h)``
(R folds each stratum's fpc into its replicates' rscales). Strata sampled
exhaustively (f_h = 1) contribute nothing and get no replicate, as R drops them
(option ``survey.drop.replicates``). For a total, JKn reproduces the
with-replacement (or, with fpc, the without-replacement) linearisation
variance exactly.

``BRR``: balanced repeated replication for two PSUs per stratum (McCarthy 1969;
Wolter 2007, ch. 3). Row *h* of a Hadamard matrix (the first, all-ones row is
skipped) says which PSU of stratum *h* is kept, with its weight doubled, in
each replicate (column). ``scale = 1/R``, ``rscales = 1``; the fpc is dropped
as R drops it. The matrix is the one R's ``survey::hadamard(H)`` returns for H
strata (:func:`brr_hadamard`, a port of it, checked entry by entry against R
for H = 1..600), and strata take its rows in R's order: sorted by their labels
as text, the first PSU of a stratum (in data order) being R's "first" PSU. So
the replicates are R's, which matters for non-linear statistics (ratios).

``Fay``: Fay's variant of BRR (Fay 1989; Judkins 1990): the kept PSU is
multiplied by ``2 - rho`` and the other by ``rho`` instead of 2 and 0, so that
no unit drops out of a replicate (domains stay populated).
``scale = 1/(R (1-rho)^2)``.

``bootstrap``: Rao-Wu rescaling bootstrap (Rao & Wu 1988), with m_h = n_h - 1
PSUs drawn with replacement in each stratum; PSU *i* drawn c_i times gets the
multiplier ``n_h/(n_h-1) * c_i``. With a sampling fraction the multiplier is
Rao, Wu & Yue's (1992) ``1 - lambda_h + lambda_h * n_h/(n_h-1) * c_i`` with
``lambda_h = sqrt(1-f_h)``, which shrinks the deviations so that the variance of
a total carries the factor ``1-f_h``, like JKn's rscales (it never goes
negative, and f_h = 1 gives multipliers of exactly 1). ``scale = 1/(R-1)``,
``rscales = 1``, ``mse = False``: the sample variance of the replicate
estimates, as R's ``subbootweights``. Default ``R = 50`` (R's default). Draws
come from ``numpy.random.default_rng(seed)``: the same seed gives the same
weights, and the draws do not depend on the fpc.

Note that R's own ``type="bootstrap"`` (``bootweights``) is a different
bootstrap (n_h draws, Canty & Davison's rescaled scale
``nbar/((nbar-1)(R-1))``); the Rao-Wu one above is R's ``type="subbootstrap"``
(and svrep's "Rao-Wu"), the usual survey bootstrap (Statistics Canada's
bootstrap weights, Stata's ``bsweights`` with n_h - 1 draws).

``subbootstrap``: R's ``subbootweights`` exactly: the same Rao-Wu draws, fpc
ignored (R does not use it either). With the same seed and no fpc it equals
``bootstrap``.

``SDR``: successive difference replication (Fay & Train 1995; Ash 2014), the
American Community Survey's method for systematic samples, as svrep's
``as_sdr_design`` with ``use_normal_hadamard = TRUE``. The PSUs are put in
sequence: strata in order of first appearance, and within a stratum the PSUs
in the order they first appear in the data, *which must be the sampling sort
order* (the caller sorts). PSU *i* is given two rows a_i, b_i of a Hadamard
matrix of order R (``survey::hadamard(R-1)``, as svrep) and the factor
``1 + 2^(-3/2) (H[a_i, r] - H[b_i, r])`` in replicate *r*. While there are at
most R PSUs the rows are (i, i+1) with the last PSU wrapping round to the
first, and then the replicate variance of a total equals the circular
successive-difference estimator SD2, ``1/2 sum_i (t_i - t_{i+1})^2``, exactly;
beyond R PSUs rows are reused in Ash's (2014) "RA1" cycles (svrep's
``assign_hadamard_rows``, except that the last, partial chain of rows is closed
as the first one is, see :func:`sdr_row_assignment`), and the variance of a
total approximates the successive-difference estimator with about R degrees of
freedom. With a sampling fraction the factors become
``1 + sqrt(1-f_h) (factor - 1)`` (the ACS and svrep convention).
``scale = 4/R``, ``rscales = 1``, ``mse = True`` (ACS). Default R: the smallest
available order of at least the number of PSUs while that is at most 80, else
80 (the ACS number of replicates).

Layout and cost
---------------
:attr:`ReplicateSet.weights` is a float64 (n, R) **Fortran-ordered** array of
full replicate weights (sampling weight times replicate factor): each
replicate's column is contiguous, as in R's matrices. Every method makes its
replicates one at a time and calibration works column by column, so this order
needs no transposition; ``Y.T @ W`` runs through BLAS as fast as with C order
(measured), and ``np.ascontiguousarray`` gives rows if ever needed. Replicate
*r* is built by gathering a small row of factors (one per PSU, or per distinct
factor pattern) with the rows' PSU codes and scaling by the weights in place:
1M rows x 80 replicates (640 MB) take about 0.3 s from a few thousand PSUs;
with every row its own PSU, about 0.5 s for SDR and 1-1.5 s for the bootstrap
(its 80M random draws dominate).
Building more than ``MAX_REPLICATE_CELLS`` cells (n x R) is refused.

References
----------
Ash, S. (2014). Using successive difference replication for estimating
variances. Survey Methodology 40(1), 47-59.
Canty, A.J. and Davison, A.C. (1999). Resampling-based variance estimation for
labour force surveys. The Statistician 48(3), 379-391.
Fay, R.E. (1989). Theory and application of replicate weighting for variance
calculations. Proc. Survey Research Methods Section, ASA, 212-217.
Fay, R.E. and Train, G.F. (1995). Aspects of survey and model-based postcensal
estimation of income and poverty characteristics for states and counties.
Proc. Section on Government Statistics, ASA, 154-159.
Judkins, D.R. (1990). Fay's method for variance estimation. Journal of Official
Statistics 6(3), 223-239.
McCarthy, P.J. (1969). Pseudo-replication: half samples. Review of the
International Statistical Institute 37(3), 239-264.
Lumley, T. R package ``survey``: ``as.svrepdesign``, ``jk1weights``,
``jknweights``, ``brrweights``, ``hadamard``, ``paley``, ``subbootweights``,
``svrVar``.
Plackett, R.L. and Burman, J.P. (1946). The design of optimum multifactorial
experiments. Biometrika 33(4), 305-325.
Rao, J.N.K. and Wu, C.F.J. (1988). Resampling inference with complex survey
data. JASA 83, 231-241.
Rao, J.N.K., Wu, C.F.J. and Yue, K. (1992). Some recent work on resampling
methods for complex surveys. Survey Methodology 18(2), 209-217.
Schneider, B. R package ``svrep``: ``as_sdr_design``,
``make_sdr_replicate_factors``, ``assign_hadamard_rows``.
Sloane, N.J.A. A library of Hadamard matrices.
Wolter, K.M. (2007). Introduction to Variance Estimation, 2nd ed. Springer.

>>> import numpy as np
>>> rs = make_replicates(None, np.array([1, 1, 2, 3]), None, np.full(4, 10.0), type="JK1")
>>> rs.weights
array([[ 0., 15., 15.],
       [ 0., 15., 15.],
       [15.,  0., 15.],
       [15., 15.,  0.]])
>>> round(rs.scale, 4), rs.mse
(0.6667, False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from volna.errors import VolnaError

__all__ = [
    "MAX_REPLICATE_CELLS",
    "REPLICATE_TYPES",
    "ReplicateError",
    "ReplicateSet",
    "brr_hadamard",
    "hadamard",
    "make_replicates",
    "replicate_variance",
    "sdr_row_assignment",
]

#: the canonical replicate types, as :attr:`ReplicateSet.type` spells them
REPLICATE_TYPES = ("JK1", "JKn", "BRR", "Fay", "bootstrap", "subbootstrap", "SDR")

# Spellings accepted for ``type`` (case-insensitive), R's names included.
_TYPE_ALIASES = {t.lower(): t for t in REPLICATE_TYPES} | {
    "successive-difference": "SDR",
    "acs": "SDR",
}

#: the most cells (rows x replicates) make_replicates builds: 2**30 float64 = 8 GiB
MAX_REPLICATE_CELLS = 2**30

#: the default number of bootstrap replicates (R's ``bootweights``/``subbootweights``)
DEFAULT_BOOTSTRAP_REPLICATES = 50

#: the SDR default for large samples (the American Community Survey's 80)
DEFAULT_SDR_REPLICATES = 80


class ReplicateError(VolnaError):
    """Replicate weights cannot be built for this design with these options."""


@dataclass(frozen=True, eq=False)
class ReplicateSet:
    """Replicate weights with the constants that turn them into variances.

    ``eq=False``: the fields are arrays, so instances compare by identity.

    >>> rs = ReplicateSet(np.ones((3, 2)), 0.5, np.ones(2), False, "JK1")
    >>> rs.n_replicates
    2
    """

    #: (n, R) full replicate weights (sampling weights times replicate factors);
    #: make_replicates returns float64 in Fortran order (columns contiguous)
    weights: np.ndarray
    #: overall multiplier of the variance
    scale: float
    #: (R,) per-replicate multipliers
    rscales: np.ndarray
    #: True: deviations from the full-sample estimate; False: from the replicates' mean
    mse: bool
    #: one of :data:`REPLICATE_TYPES`
    type: str
    #: Fay's rho (``type="Fay"`` only)
    rho: float | None = None

    def __post_init__(self) -> None:
        # The design module may also build a ReplicateSet from replicate weights
        # shipped with a data set: catch a mismatch here rather than in a matmul.
        if self.weights.ndim != 2:
            raise ReplicateError(
                f"replicate weights must be a 2-D array, not {self.weights.ndim}-D"
            )
        if self.rscales.shape != (self.weights.shape[1],):
            raise ReplicateError(
                f"rscales has shape {self.rscales.shape} for {self.weights.shape[1]} replicates"
            )

    @property
    def n_replicates(self) -> int:
        """The number of replicates R (columns of :attr:`weights`)."""
        return int(self.weights.shape[1])


# --------------------------------------------------------------------------
# Hadamard matrices
# --------------------------------------------------------------------------

# The two matrices R's survey package stores (sysdata.rda, hadamard.list) that
# neither Sylvester's nor Paley's construction gives: order 28 from Sloane's
# library of Hadamard matrices, order 36 from Plackett & Burman (1946). Kept
# in R's 0/1 coding, row by row, so that BRR replicates equal R's.
_STORED_28 = (
    "1111111111111111111111111111",
    "1001110001110001110001111000",
    "1000001111001101001101111000",
    "1000001110110010111001100110",
    "1001101000001111100011010110",
    "1001010100101100010110101110",
    "1000110011010010001110011110",
    "0101100010101010011111110000",
    "0100010110110101100111010100",
    "0100011011001011110010101100",
    "0101011000010111011101001010",
    "0100101101100100111010011010",
    "0101100101011001101100100110",
    "0010110100011110101011101000",
    "0011011001100110101100110100",
    "0010101100111011010100011100",
    "0011000111010111010010110010",
    "0011001011111000100111001010",
    "0010110011101101011001000110",
    "1110101001010100010111100100",
    "1111000101100011001011001100",
    "1111000010011100111000011100",
    "1110010101001010110101010010",
    "1110011000111001001010110010",
    "1110100010100111100100101010",
    "1101111111111110000000000000",
    "1011111110000001111110000000",
    "0111111110000000000001111110",
)
_STORED_36 = (
    "111111111111111111111111111111111111",
    "010111000111110111001000010101100100",
    "101110001111101110010000101011001000",
    "011100011111011100100001010110010010",
    "111000111110111001000010101100100100",
    "110001111101110010000101011001001010",
    "100011111011100100001010110010010110",
    "000111110111001000010101100100101110",
    "001111101110010000101011001001011100",
    "011111011100100001010110010010111000",
    "111110111001000010101100100101110000",
    "111101110010000101011001001011100010",
    "111011100100001010110010010111000110",
    "110111001000010101100100101110001110",
    "101110010000101011001001011100011110",
    "011100100001010110010010111000111110",
    "111001000010101100100101110001111100",
    "110010000101011001001011100011111010",
    "100100001010110010010111000111110110",
    "001000010101100100101110001111101110",
    "010000101011001001011100011111011100",
    "100001010110010010111000111110111000",
    "000010101100100101110001111101110010",
    "000101011001001011100011111011100100",
    "001010110010010111000111110111001000",
    "010101100100101110001111101110010000",
    "101011001001011100011111011100100000",
    "010110010010111000111110111001000010",
    "101100100101110001111101110010000100",
    "011001001011100011111011100100001010",
    "110010010111000111110111001000010100",
    "100100101110001111101110010000101010",
    "001001011100011111011100100001010110",
    "010010111000111110111001000010101100",
    "100101110001111101110010000101011000",
    "001011100011111011100100001010110010",
)


def _stored(rows: tuple[str, ...]) -> np.ndarray:
    return np.array([[c == "1" for c in row] for row in rows], dtype=np.int8)


def _sylvester01(order: int) -> np.ndarray:
    # Natural-order Sylvester matrix in R's 0/1 coding: entry (i, j) is 1 when
    # popcount(i & j) is even. R's stored 4 and 16 are exactly these.
    i = np.arange(order)
    bits = np.bitwise_and.outer(i, i)
    parity = np.zeros_like(bits)
    while bits.any():
        parity ^= bits & 1
        bits >>= 1
    return (1 - parity).astype(np.int8)


# R's hadamard.sizes / hadamard.list, in that order.
_R_SIZES = (4, 16, 28, 36)


@cache
def _r_stored(k: int) -> np.ndarray:
    return (_sylvester01(4), _sylvester01(16), _stored(_STORED_28), _stored(_STORED_36))[k]


def _is_prime(p: int) -> bool:
    if p < 2:
        return False
    if p % 2 == 0:
        return p == 2
    return all(p % d for d in range(3, math.isqrt(p) + 1, 2))


# R's paley() knows the primes p = 3 (mod 4) up to 7919 (all of them).
_R_PALEY_PRIMES = tuple(p for p in range(3, 7920, 4) if _is_prime(p))


def _double01(h: np.ndarray) -> np.ndarray:
    # R's hadamard.doubler: [[H, H], [H, 1-H]], Sylvester's step in 0/1 coding.
    return np.block([[h, h], [h, 1 - h]]).astype(np.int8)


def _paley01(p: int) -> np.ndarray:
    # Paley's first construction as R's paley() writes it: core entry (i, j) is
    # 0 when (i + j) mod p is 0 or a quadratic residue, else 1, bordered by 1s.
    residue = np.zeros(p, dtype=bool)
    residue[(np.arange(1, (p - 1) // 2 + 1) ** 2) % p] = True
    residue[0] = True
    core = np.where(residue[np.add.outer(np.arange(p), np.arange(p)) % p], 0, 1)
    h = np.ones((p + 1, p + 1), dtype=np.int8)
    h[1:, 1:] = core
    return h


def _r_paley(n: int, nmax: int | None = None) -> np.ndarray | None:
    """Port of R survey's ``paley(n, nmax)`` (its choices, in 0/1 coding)."""
    if nmax is None:
        nmax = 2 * n
    nceil = nn = n + 4 - n % 4
    if n % 4 + 4 == n % 8:
        # nceil is a multiple of 8: try (p+1) * 2^k with p+1 = 4 (mod 8)
        while nn % 8 == 0:
            nn //= 2
        if nn - 1 in _R_PALEY_PRIMES:
            h = _paley01(nn - 1)
            while nn < nceil:
                h = _double01(h)
                nn *= 2
            return h
    if n > _R_PALEY_PRIMES[-1]:
        return None
    p = next(q for q in _R_PALEY_PRIMES if q >= n)
    if p + 1 > nceil + 4 and nceil + 4 < nmax:
        return _r_paley(nceil + 3)
    if p > nmax:
        return None
    return _paley01(p)


@lru_cache(maxsize=64)
def _r_hadamard01(n: int) -> np.ndarray:
    """Port of R survey's ``hadamard(n)``: R's matrix of order > n, 0/1 coding."""
    m = n - n % 4
    precooked = [k for k, s in enumerate(_R_SIZES) if m < s <= m + 4]
    if precooked:
        return _r_stored(precooked[0])
    if all(m < s for s in _R_SIZES):
        return _r_stored(0)
    sizes = [s * 2 ** max(0, math.ceil(math.log2((n + 1) / s))) for s in _R_SIZES]
    best = min(range(len(sizes)), key=lambda k: (sizes[k] - n, k))
    h = None
    if sizes[best] - n > 4:
        h = _r_paley(n, sizes[best])
    if h is None:
        h = _r_stored(best)
        for _ in range(round(math.log2(sizes[best] / _R_SIZES[best]))):
            h = _double01(h)
    h.setflags(write=False)
    return h


def _pm(h01: np.ndarray) -> np.ndarray:
    return 2 * h01.astype(np.int64) - 1


def brr_hadamard(n: int) -> np.ndarray:
    """R's ``survey::hadamard(n)`` in +1/-1 coding: the matrix BRR uses for n strata.

    Its order is the smallest R knows above ``n`` (at most 4 too large below 180):
    Sylvester's matrices, R's stored 28 and 36, Paley's for p + 1 (doubled as
    needed). The first row is all ones, so each other row is balanced.

    >>> brr_hadamard(3)
    array([[ 1,  1,  1,  1],
           [ 1, -1,  1, -1],
           [ 1,  1, -1, -1],
           [ 1, -1, -1,  1]])
    >>> [brr_hadamard(n).shape[0] for n in (7, 11, 27, 51, 79)]
    [8, 12, 28, 56, 80]
    """
    if n < 0:
        raise ReplicateError(f"hadamard: n must be at least 0, not {n}")
    return _pm(_r_hadamard01(max(int(n), 1)))


def _paley2(q: int) -> np.ndarray:
    # Paley's second construction, order 2(q+1) for a prime q = 1 (mod 4): the
    # symmetric conference matrix C (order q+1) gives C x [[1,1],[1,-1]] +
    # I x [[1,-1],[-1,-1]]. Only used for orders R's hadamard() never returns.
    chi = -np.ones(q, dtype=np.int64)
    chi[(np.arange(1, (q - 1) // 2 + 1) ** 2) % q] = 1
    chi[0] = 0
    c = np.zeros((q + 1, q + 1), dtype=np.int64)
    c[0, 1:] = c[1:, 0] = 1
    c[1:, 1:] = chi[np.subtract.outer(np.arange(q), np.arange(q)) % q]
    return np.kron(c, [[1, 1], [1, -1]]) + np.kron(
        np.eye(q + 1, dtype=np.int64), [[1, -1], [-1, -1]]
    )


def _normalise(h: np.ndarray) -> np.ndarray:
    # Make the first row and column all +1 (multiply rows, then columns, by -1),
    # which keeps H H^T = m I and gives BRR full orthogonal balance.
    h = h * h[:, :1]
    return h * h[:1, :]


@lru_cache(maxsize=64)
def _hadamard_pm(order: int) -> np.ndarray | None:
    if order in (1, 2):
        return np.array([[1]] if order == 1 else [[1, 1], [1, -1]], dtype=np.int64)
    if order % 4:
        return None
    r = _r_hadamard01(order - 1)
    if r.shape[0] == order:
        # the order R would choose for order - 1 strata: R's own matrix
        return _pm(r)
    if _is_prime(order - 1):  # order - 1 = 3 (mod 4): Paley I
        return _pm(_paley01(order - 1))
    q = order // 2 - 1
    if q % 4 == 1 and _is_prime(q):
        return _normalise(_paley2(q))
    half = _hadamard_pm(order // 2) if order % 8 == 0 else None
    if half is not None:
        return np.block([[half, half], [half, -half]])
    return None


def hadamard(order: int) -> np.ndarray:
    """A Hadamard matrix of exactly ``order`` (entries +1/-1, ``H @ H.T == order * I``).

    Where R's ``survey::hadamard(order - 1)`` has this order, it is R's matrix;
    otherwise Paley's first construction (order - 1 a prime), his second
    (order/2 - 1 a prime = 1 mod 4) or Sylvester's doubling. Every multiple of
    4 up to 256 is available except 52, 92, 100, 116, 156, 172, 184, 188, 232,
    236 and 244; an unknown order raises :class:`ReplicateError` naming the
    nearest larger one.

    >>> hadamard(4)
    array([[ 1,  1,  1,  1],
           [ 1, -1,  1, -1],
           [ 1,  1, -1, -1],
           [ 1, -1, -1,  1]])
    >>> h = hadamard(76)
    >>> bool((h @ h.T == 76 * np.eye(76)).all())
    True
    """
    order = int(order)
    if order < 1:
        raise ReplicateError(f"a Hadamard matrix needs an order of at least 1, not {order}")
    h = _hadamard_pm(order)
    if h is None:
        above = next(m for m in range(order + 1, 2 * order + 8) if _hadamard_pm(m) is not None)
        raise ReplicateError(
            f"no Hadamard matrix of order {order} is available: orders are 1, 2 or multiples"
            f" of 4, and volna does not know {order}; the nearest larger one is {above}"
        )
    return h.copy()


# --------------------------------------------------------------------------
# Successive difference replication
# --------------------------------------------------------------------------


def sdr_row_assignment(n: int, order: int) -> np.ndarray:
    """Rows of an order-``order`` Hadamard matrix for each of ``n`` units in sequence (0-based).

    Ash's (2014) assignment "RA1" as svrep's ``assign_hadamard_rows`` (first
    row used, circular): with ``n <= order`` unit *i* gets rows (i, i+1) and the
    last unit (n-1, 0). Beyond that the rows are chained again with steps 2, 3,
    ... (i, i+step mod order), chain after chain, repeating as needed.

    One deviation from svrep, for ``n > order`` only: the chain the last unit
    falls in is closed (its second row becomes the chain's first row), as the
    ``n <= order`` case is. An open chain leaves "end effects" (Ash 2014), the
    squared totals of its first and last units, in the variance of a total;
    with closed chains the variance of a constant is 0, and a total's variance
    stays near the successive-difference estimator.

    >>> sdr_row_assignment(4, 4).tolist()
    [[0, 1], [1, 2], [2, 3], [3, 0]]
    >>> sdr_row_assignment(7, 4).tolist()
    [[0, 1], [1, 2], [2, 3], [3, 0], [0, 2], [2, 0], [1, 1]]
    """
    k = int(order)
    if k % 4 or k < 4:
        raise ReplicateError(f"SDR needs a Hadamard order that is a multiple of 4, not {k}")
    cycles = -(-n // k)
    # svrep's rule for the largest step: with an odd number of row visits in
    # total one more step is needed to pair every row.
    if ((k - 1) * cycles) % 2:
        max_step = cycles + 1
        if max_step >= k - 1:
            max_step = cycles - 1
        max_step = min(max_step, k - 1)
    else:
        max_step = min(cycles, k - 1)
    pairs: list[tuple[int, int]] = []
    chain_start: list[int] = []  # for each pair, the index of its chain's first pair
    for step in range(1, max_step + 1):
        # follow i -> i + step (mod k) from the lowest unused row until all used
        unused = [True] * (k + 1)
        left = k
        i = 1
        start = len(pairs)
        while left:
            j = i + step
            if j > k:
                j -= k
            if unused[i]:
                pairs.append((i, j))
                chain_start.append(start)
                unused[i] = False
                left -= 1
                i = j
            else:
                i += 1
                start = len(pairs)  # the chain closed: the next pair starts one
    a = np.array(pairs, dtype=np.intp)
    first = np.array(chain_start, dtype=np.intp)
    if len(a) < n:
        reps = -(-n // len(a))
        a = np.tile(a, (reps, 1))
        first = (first[None, :] + len(pairs) * np.arange(reps)[:, None]).ravel()
    a = a[:n].copy()
    # close the last chain: for n <= k this is svrep's circular assignment
    a[n - 1, 1] = a[first[n - 1], 0]
    return a - 1


# --------------------------------------------------------------------------
# The first stage: strata, PSUs, fractions
# --------------------------------------------------------------------------


def _show(label: object) -> str:
    if isinstance(label, np.generic):
        label = label.item()
    return repr(label) if isinstance(label, str) else str(label)


def _factorize(values: np.ndarray, what: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes in order of first appearance, and the labels."""
    import pandas as pd  # hash-based factorize: first-appearance order, fast on strings

    arr = np.asarray(values)
    if arr.shape != (n,):
        raise ReplicateError(f"{what} labels have shape {arr.shape}, expected ({n},)")
    codes, uniques = pd.factorize(arr, use_na_sentinel=True)
    if n and codes.min() < 0:
        row = int(np.flatnonzero(codes < 0)[0])
        raise ReplicateError(f"{what} label is missing at row {row + 1}")
    return codes.astype(np.intp, copy=False), np.asarray(uniques)


@dataclass(frozen=True, eq=False)
class _Stage:
    """The first stage, reduced to codes: what every method needs."""

    n: int
    unit: np.ndarray  # (n,) PSU code of each row, 0..P-1 in order of first appearance
    unit_stratum: np.ndarray  # (P,) stratum code of each PSU
    stratum_labels: np.ndarray  # (H,) in order of first appearance
    n_h: np.ndarray  # (H,) PSUs per stratum
    f_h: np.ndarray  # (H,) first-stage sampling fraction (0 without fpc)
    has_fpc: bool

    @property
    def n_units(self) -> int:
        return len(self.unit_stratum)

    @property
    def n_strata(self) -> int:
        return len(self.n_h)

    def stratum(self, h: int) -> str:
        label = self.stratum_labels[h]
        return "the design (unstratified)" if label is None else f"stratum {_show(label)}"


def _stage(
    strata: np.ndarray | None,
    psu: np.ndarray,
    fpc_fraction: np.ndarray | None,
    n: int,
) -> _Stage:
    if strata is None:
        s = np.zeros(n, dtype=np.intp)
        s_labels = np.array([None], dtype=object)
    else:
        s, s_labels = _factorize(strata, "stratum", n)
    p, p_labels = _factorize(psu, "PSU", n)
    # A PSU is a (stratum, PSU) pair: the same PSU label in two strata is two
    # PSUs, as R's nest=TRUE; with labels already unique it changes nothing.
    unit, _ = _factorize(s.astype(np.int64) * max(len(p_labels), 1) + p, "PSU", n)
    first_row = np.unique(unit, return_index=True)[1]
    unit_stratum = s[first_row]
    n_h = np.bincount(unit_stratum, minlength=len(s_labels))
    f_h = np.zeros(len(s_labels))
    if fpc_fraction is not None:
        f = np.asarray(fpc_fraction, dtype=np.float64)
        if f.shape != (n,):
            raise ReplicateError(f"fpc fractions have shape {f.shape}, expected ({n},)")
        bad = ~np.isfinite(f) | (f < 0) | (f > 1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ReplicateError(
                f"row {row + 1}, stratum {_show(s_labels[s[row]])}: sampling fraction"
                f" {float(f[row])!r} is not between 0 and 1"
            )
        first_of_stratum = np.unique(s, return_index=True)[1]
        f_h = f[first_of_stratum]
        varies = np.abs(f - f_h[s]) > 1e-9
        if varies.any():
            row = int(np.flatnonzero(varies)[0])
            h = s[row]
            raise ReplicateError(
                f"stratum {_show(s_labels[h])}: the first-stage sampling fraction varies within"
                f" the stratum ({float(f_h[h])!r} at row {first_of_stratum[h] + 1},"
                f" {float(f[row])!r} at row {row + 1}); it must be one number per stratum"
            )
    return _Stage(n, unit, unit_stratum, s_labels, n_h, f_h, fpc_fraction is not None)


def _check_size(n: int, r: int, kind: str) -> None:
    if n * r > MAX_REPLICATE_CELLS:
        raise ReplicateError(
            f"{kind}: {n} rows x {r} replicates would need {n * r * 8 / 2**30:.1f} GiB of"
            f" replicate weights (limit {MAX_REPLICATE_CELLS * 8 / 2**30:.0f} GiB); use fewer"
            " replicates, a bootstrap or SDR, or Taylor linearisation"
        )


@dataclass(frozen=True, eq=False)
class _Factors:
    """Replicate factors, one row per replicate: ``table[r, code[psu]]``.

    Rows rather than columns because every method makes one replicate at a
    time, and distinct factor patterns (``code``) because several PSUs often
    share one (SDR's row pairs), which keeps the table small.
    """

    table: np.ndarray  # (R, T) C-contiguous
    code: np.ndarray | None  # (P,) column of the table for each PSU; None: the identity
    scale: float
    rscales: np.ndarray
    # (P,) or None: the factor is 1 + shrink * (table - 1), how a sampling
    # fraction enters SDR (sqrt(1-f)) and the bootstrap (Rao-Wu-Yue lambda)
    shrink: np.ndarray | None = None


def _expand(factors: _Factors, stage: _Stage, weights: np.ndarray) -> np.ndarray:
    """Full replicate weights (n, R), Fortran order: factors gathered to rows x weights."""
    n = stage.n
    rows = stage.unit if factors.code is None else factors.code[stage.unit]
    r, t = factors.table.shape
    if factors.shrink is None:
        slope, intercept = weights, None
    else:
        # w * (1 + s (x - 1)) = (w s) x + w (1 - s)
        s = factors.shrink[stage.unit]
        slope, intercept = weights * s, weights * (1.0 - s)
    if t == n and np.array_equal(rows, np.arange(n)):
        out = factors.table  # one pattern per row, in row order: scale it in place
        out *= slope[None, :]
        if intercept is not None:
            out += intercept[None, :]
        return out.T
    out = np.empty((r, n), dtype=np.float64)
    for k in range(r):
        # mode="clip": the codes are valid, and "raise" would buffer the output
        np.take(factors.table[k], rows, out=out[k], mode="clip")
        out[k] *= slope
        if intercept is not None:
            out[k] += intercept
    return out.T


# --------------------------------------------------------------------------
# The methods
# --------------------------------------------------------------------------


def _jk1(stage: _Stage) -> _Factors:
    if stage.n_strata > 1:
        raise ReplicateError(
            f"JK1 is for unstratified designs and this one has {stage.n_strata} strata"
            " (R: \"Can't use JK1 for a stratified design\"); use type='JKn'"
        )
    p = stage.n_units
    if p < 2:
        raise ReplicateError(f"JK1 needs at least 2 PSUs, the design has {p}")
    _check_size(stage.n, p, "JK1")
    table = np.full((p, p), p / (p - 1))
    np.fill_diagonal(table, 0.0)  # replicate j drops PSU j
    # R folds the fpc into the scale: (n-1)/n * (1-f). With f = 1 the variance
    # is 0; R drops every replicate then, volna keeps them with scale 0.
    scale = (p - 1) / p * (1.0 - float(stage.f_h[0]))
    return _Factors(table, None, scale, np.ones(p))


def _jkn(stage: _Stage, lonely_psu: str = "fail") -> _Factors:
    certain = stage.f_h >= 1.0
    lonely = np.flatnonzero((stage.n_h < 2) & ~certain)
    if len(lonely) and lonely_psu not in ("remove", "certainty", "average", "adjust"):
        raise ReplicateError(
            f"JKn: {_strata_list(stage, lonely)} only one PSU; a delete-one jackknife needs"
            " at least 2 per stratum (collapse strata first, or choose a lonely_psu rule)"
        )
    # Replicates in R's order (jknweights): strata by first appearance, PSUs by first
    # appearance within the stratum; exhaustively sampled strata (f_h = 1) have no
    # sampling variance and no replicates (R drops them). A lonely stratum, as R: no
    # replicate under remove/certainty/average; under adjust one replicate that drops
    # it and weights every other PSU by H/(H-1), with rscale (H-1)/H.
    is_lonely = np.zeros(stage.n_strata, dtype=bool)
    is_lonely[lonely] = True
    n_strata = stage.n_strata
    rows, rscales = [], []
    for h in range(n_strata):
        if certain[h]:
            continue
        members = np.flatnonzero(stage.unit_stratum == h)
        if is_lonely[h]:
            if lonely_psu == "adjust":
                if n_strata < 2:
                    raise ReplicateError(
                        "JKn: the design's only stratum has one PSU; lonely_psu='adjust'"
                        " needs other strata"
                    )
                row = np.full(stage.n_units, n_strata / (n_strata - 1))
                row[members] = 0.0
                rows.append(row)
                rscales.append((n_strata - 1) / n_strata)
            continue
        nh = float(len(members))
        for j in members:
            row = np.ones(stage.n_units)
            row[members] = nh / (nh - 1)
            row[j] = 0.0
            rows.append(row)
            rscales.append((nh - 1) / nh * (1.0 - stage.f_h[h]))
    if not rows:
        raise ReplicateError(
            "JKn: every stratum was sampled exhaustively (sampling fraction 1) or left"
            " out by the lonely PSU rule, so the first stage has no sampling variance to"
            " replicate"
        )
    r = len(rows)
    _check_size(stage.n, r, "JKn")
    scale = 1.0
    if lonely_psu == "average" and r < stage.n_units:
        # R's jknweights: replicates short of one per PSU are made up by the scale
        scale = stage.n_units / r
    return _Factors(np.array(rows), None, scale, np.array(rscales))


def _strata_list(stage: _Stage, which: np.ndarray, detail: bool = False) -> str:
    shown = [stage.stratum(h) + (f" ({stage.n_h[h]} PSUs)" if detail else "") for h in which[:5]]
    more = f" and {len(which) - 5} more" if len(which) > 5 else ""
    verb = "" if detail else (" has" if len(which) == 1 else " have")
    return ", ".join(shown) + more + verb


def _brr(stage: _Stage, replicates: int | None, rho: float) -> _Factors:
    wrong = np.flatnonzero(stage.n_h != 2)
    if len(wrong):
        kind = "Fay's BRR" if rho else "BRR"
        raise ReplicateError(
            f"{kind} needs exactly 2 PSUs in every stratum: {_strata_list(stage, wrong, True)}"
            " (pair the PSUs into pseudo-strata, or use type='JKn' or a bootstrap)"
        )
    n_strata = stage.n_strata
    if replicates is None:
        h = brr_hadamard(n_strata)
    else:
        if replicates <= n_strata:
            raise ReplicateError(
                f"BRR with {n_strata} strata needs more than {n_strata} replicates,"
                f" not {replicates}"
            )
        h = _normalise(hadamard(replicates))
    r = h.shape[0]
    _check_size(stage.n, r, "BRR")
    # R's brrweights: strata take rows 2, 3, ... of H in the order of their
    # labels sorted as text; +1 keeps the stratum's first PSU (data order).
    order = sorted(range(n_strata), key=lambda k: _sort_key(stage.stratum_labels[k]))
    row_of_stratum = np.empty(n_strata, dtype=np.intp)
    row_of_stratum[order] = np.arange(1, n_strata + 1)
    # PSUs are numbered in order of first appearance, so the lowest number in a
    # stratum is its first PSU
    first = np.zeros(stage.n_units, dtype=bool)
    first[np.unique(stage.unit_stratum, return_index=True)[1]] = True
    signs = h[row_of_stratum[stage.unit_stratum]].T  # (R, P)
    kept = np.where(first[None, :], signs == 1, signs == -1)
    table = np.where(kept, 2.0 - rho, rho)
    return _Factors(table, None, 1.0 / (r * (1.0 - rho) ** 2), np.ones(r))


def _sort_key(label: object) -> str:
    # R sorts stratum labels as character strings (as.character); integral
    # floats print without ".0" there. Code-point order = R under LC_COLLATE=C.
    if isinstance(label, np.generic):
        label = label.item()
    if isinstance(label, float) and label.is_integer():
        label = int(label)
    return str(label)


def _bootstrap(
    stage: _Stage,
    replicates: int | None,
    seed: int | None,
    use_fpc: bool,
    kind: str,
    lonely_psu: str = "fail",
) -> _Factors:
    r = DEFAULT_BOOTSTRAP_REPLICATES if replicates is None else int(replicates)
    if r < 2:
        raise ReplicateError(f"{kind} needs at least 2 replicates, not {r}")
    _check_size(stage.n, r, kind)
    lam = np.sqrt(1.0 - stage.f_h) if use_fpc else np.ones(stage.n_strata)
    lonely = np.flatnonzero((stage.n_h < 2) & (lam > 0))
    if len(lonely) and lonely_psu == "fail":
        raise ReplicateError(
            f"{kind}: {_strata_list(stage, lonely)} only one PSU; the Rao-Wu bootstrap draws"
            " n_h - 1 PSUs per stratum and needs at least 2 (collapse strata first, or"
            " choose a lonely_psu rule)"
        )
    p, nh = stage.n_units, stage.n_h
    by_stratum = np.argsort(stage.unit_stratum, kind="stable")  # PSUs grouped by stratum
    grouped = bool(np.array_equal(by_stratum, np.arange(p)))
    start = np.concatenate(([0], np.cumsum(nh)[:-1]))
    # Draw slots, n_h - 1 per stratum of 2 PSUs or more, grouped by n_h so that
    # each group draws with one bound (numpy's bounded integers are fastest
    # so). The draws ignore the fpc: bootstrap and subbootstrap share them.
    groups = []
    for size in np.unique(nh[nh >= 2]):
        strata = np.flatnonzero(nh == size)
        groups.append((int(size), np.repeat(start[strata], size - 1)))
    n_slots = int(sum(len(base) for _, base in groups))
    rng = np.random.default_rng(seed)
    counts = np.empty((r, p), dtype=np.float64)
    block = max(1, min(r, 2**22 // max(n_slots, 1)))
    units = np.empty((block, n_slots), dtype=np.intp)
    for r0 in range(0, r, block):
        b = min(block, r - r0)
        at = 0
        for size, base in groups:
            k = rng.integers(0, size, size=(b, len(base)))
            k += base
            # PSUs already grouped by stratum (sorted data): no gather needed
            units[:b, at : at + len(base)] = k if grouped else by_stratum[k]
            at += len(base)
        units[:b] += (np.arange(b) * p)[:, None]
        counts[r0 : r0 + b] = np.bincount(units[:b].ravel(), minlength=b * p).reshape(b, p)
    # multiplier n_h/(n_h-1) * count, shrunk by Rao, Wu & Yue's lambda
    unit_nh = nh[stage.unit_stratum].astype(np.float64)
    counts *= (unit_nh / np.maximum(unit_nh - 1, 1))[None, :]
    if len(lonely):
        # under a lonely-PSU rule the lonely PSU keeps its weight in every replicate
        # and adds no variance, as in R's bootweights (one PSU resampled from itself)
        counts[:, np.isin(stage.unit_stratum, lonely)] = 1.0
    shrink = lam[stage.unit_stratum] if use_fpc and stage.has_fpc else None
    return _Factors(counts, None, 1.0 / (r - 1), np.ones(r), shrink)


def _sdr(stage: _Stage, replicates: int | None) -> _Factors:
    p = stage.n_units
    if p < 2:
        raise ReplicateError(f"SDR needs at least 2 PSUs, the design has {p}")
    if replicates is None:
        target = p if p <= DEFAULT_SDR_REPLICATES else DEFAULT_SDR_REPLICATES
    else:
        target = int(replicates)
        if target < 2:
            raise ReplicateError(f"SDR needs at least 2 replicates, not {target}")
    # svrep (use_normal_hadamard = TRUE) takes survey::hadamard(target - 1)
    h = brr_hadamard(max(target, 4) - 1).astype(np.float64)
    r = h.shape[0]
    _check_size(stage.n, r, "SDR")
    # The sequence: strata in order of first appearance, PSUs in data order
    # within them (equal to data order when strata are contiguous, as they are
    # in a sample sorted for systematic selection).
    sequence = np.argsort(stage.unit_stratum, kind="stable")
    rows = np.empty((p, 2), dtype=np.intp)
    rows[sequence] = sdr_row_assignment(p, r)
    # Many PSUs share a row pair: one table column per distinct pair.
    pair, code = np.unique(rows[:, 0] * r + rows[:, 1], return_inverse=True)
    a, b = pair // r, pair % r
    ht = h.T  # replicate r is column r of H: table[r, t] = 1 + c (H[a_t, r] - H[b_t, r])
    table = np.ascontiguousarray(1.0 + 2.0**-1.5 * (ht[:, a] - ht[:, b]))
    shrink = np.sqrt(1.0 - stage.f_h[stage.unit_stratum]) if stage.has_fpc else None
    return _Factors(table, code.reshape(-1), 4.0 / r, np.ones(r), shrink)


def make_replicates(
    strata: np.ndarray | None,
    psu: np.ndarray,
    fpc_fraction: np.ndarray | None,
    weights: np.ndarray,
    *,
    type: str,
    seed: int | None = None,
    replicates: int | None = None,
    rho: float | None = None,
    lonely_psu: str = "fail",
) -> ReplicateSet:
    """Build replicate weights for a design's first stage.

    ``strata``: (n,) stratum labels, or None for one stratum. ``psu``: (n,)
    first-stage PSU labels (a PSU is a (stratum, PSU) pair). ``fpc_fraction``:
    (n,) first-stage sampling fraction n_h/N_h, constant within a stratum, or
    None. ``weights``: (n,) sampling weights. ``type``: one of
    :data:`REPLICATE_TYPES` (any case; "successive-difference" and "ACS" mean
    SDR). ``replicates``: the number of replicates for the bootstrap (default
    50), SDR (the order of the Hadamard matrix is the smallest available at
    least this) and BRR/Fay (an order of Hadamard matrix above the number of
    strata; default R's). ``seed``: for the bootstrap. ``rho``: Fay's rho,
    0 < rho < 1, for ``type="Fay"`` only. ``lonely_psu``: the design's rule for a
    stratum with one PSU; ``"fail"`` refuses, as before. JKn applies it as R's
    ``jknweights`` (remove/certainty/average: no replicate for the stratum, average
    scaling by PSUs/replicates; adjust: one replicate dropping the stratum, the other
    PSUs weighted H/(H-1), rscale (H-1)/H); the bootstraps keep the lonely PSU's weight
    in every replicate. The module docstring gives each method's weights, scale,
    rscales and mse.

    Raises :class:`ReplicateError` (a :class:`~volna.errors.VolnaError`) for an
    unknown type, an option that does not apply, and a design the method cannot
    handle, naming the stratum.

    >>> strata = np.array(["a", "a", "b", "b"])
    >>> rs = make_replicates(strata, np.arange(4), None, np.ones(4), type="BRR")
    >>> rs.weights
    array([[2., 0., 2., 0.],
           [0., 2., 0., 2.],
           [2., 2., 0., 0.],
           [0., 0., 2., 2.]])
    >>> rs.scale, rs.type
    (0.25, 'BRR')
    >>> make_replicates(None, np.arange(4), None, np.ones(4), type="JK2")
    Traceback (most recent call last):
    ...
    volna.replicates.ReplicateError: unknown replicate type 'JK2': use one of JK1, JKn, BRR, Fay, bootstrap, subbootstrap, SDR
    """  # noqa: E501
    canonical = _TYPE_ALIASES.get(str(type).lower()) if isinstance(type, str) else None
    if canonical is None:
        raise ReplicateError(
            f"unknown replicate type {type!r}: use one of {', '.join(REPLICATE_TYPES)}"
        )
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or len(w) == 0:
        raise ReplicateError(f"weights must be a non-empty 1-D array, not shape {w.shape}")
    if not np.isfinite(w).all():
        row = int(np.flatnonzero(~np.isfinite(w))[0])
        raise ReplicateError(
            f"row {row + 1}: sampling weight {float(w[row])!r} is not a finite number"
        )
    if canonical == "Fay":
        if rho is None or not 0.0 < float(rho) < 1.0:
            raise ReplicateError(
                f"type='Fay' needs rho with 0 < rho < 1 (0.5 is usual), not {rho!r};"
                " rho = 0 is plain BRR"
            )
    elif rho is not None:
        raise ReplicateError(f"rho applies to type='Fay' only, not to {canonical!r}")
    if replicates is not None and canonical in ("JK1", "JKn"):
        raise ReplicateError(
            f"{canonical} has one replicate per PSU: the number of replicates cannot be set"
        )
    stage = _stage(strata, psu, fpc_fraction, len(w))

    if canonical == "JK1":
        factors = _jk1(stage)
    elif canonical == "JKn":
        factors = _jkn(stage, lonely_psu)
    elif canonical in ("BRR", "Fay"):
        factors = _brr(stage, replicates, float(rho or 0.0))
    elif canonical == "SDR":
        factors = _sdr(stage, replicates)
    else:
        use_fpc = canonical == "bootstrap"
        factors = _bootstrap(stage, replicates, seed, use_fpc, canonical, lonely_psu)
    return ReplicateSet(
        weights=_expand(factors, stage, w),
        scale=float(factors.scale),
        rscales=np.asarray(factors.rscales, dtype=np.float64),
        mse=canonical == "SDR",
        type=canonical,
        rho=float(rho) if canonical == "Fay" else None,
    )


def replicate_variance(estimates: np.ndarray, full: np.ndarray, rs: ReplicateSet) -> np.ndarray:
    """The (k, k) covariance of k estimates from their (k, R) replicate values.

    As R's ``svrVar``: ``scale * sum_r rscales[r] * d_r d_r^T`` with
    ``d_r = theta_r - centre``, the centre being ``full`` when ``rs.mse`` and the
    mean of the replicates otherwise. A 1-D ``estimates`` (one statistic) is
    taken as (1, R). No replicate gives a zero matrix.

    >>> rs = ReplicateSet(np.ones((2, 4)), 0.25, np.ones(4), False, "BRR")
    >>> replicate_variance(np.array([[1.0, 3.0, 1.0, 3.0]]), np.array([2.0]), rs)
    array([[1.]])
    """
    theta = np.atleast_2d(np.asarray(estimates, dtype=np.float64))
    centre_full = np.atleast_1d(np.asarray(full, dtype=np.float64))
    k, r = theta.shape
    if r != rs.n_replicates:
        raise ReplicateError(f"{r} replicate estimates for {rs.n_replicates} replicates")
    if centre_full.shape != (k,):
        raise ReplicateError(f"{centre_full.shape[0]} full-sample estimates for {k} statistics")
    if r == 0:
        return np.zeros((k, k))
    centre = centre_full if rs.mse else theta.mean(axis=1)
    d = (theta - centre[:, None]) * np.sqrt(rs.rscales)[None, :]
    return rs.scale * (d @ d.T)
