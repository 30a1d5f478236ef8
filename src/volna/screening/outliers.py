"""Multivariate outliers: Mahalanobis D² of each respondent's closed answers.

Random responders pick rare answers as often as common ones and break the
answers' correlations, so their answer vectors lie far from the bulk of the
sample (Meade & Craig 2012; R ``careless::mahad``). D² is computed over the
closed questions, encoded as numbers: a scale's values, a multiple choice's
ticks (0/1 per option), a single choice's options (0/1 per option but the
last), an integer as is; an unanswered item takes the item's mean, so it adds
nothing.

The centre and scatter are robust, so that the careless respondents do not
hide themselves by inflating the covariance: a minimum covariance determinant
estimate (Rousseeuw & Van Driessen 1999), by concentration steps from the
classical estimate, corrected for consistency (median D² matched to the
chi-square median) and reweighted once (rows under the chi-square 0.975
quantile). A small ridge (1% of each item's variance) keeps rare options from
making the scatter singular. The cut-off is stated: D² above the chi-square
quantile with ``p < 0.001`` and as many degrees of freedom as encoded items
(Tabachnick & Fidell's rule for multivariate outliers).
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def mahalanobis(x: np.ndarray, center: np.ndarray, scatter: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of each row of ``x`` from ``center``.

    ``(x - c)ᵀ S⁻¹ (x - c)``, as R's ``stats::mahalanobis`` (which
    ``careless::mahad`` calls with the column means and ``cov(x)``).

    >>> x = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 4.0], [4.0, 3.0]])
    >>> mahalanobis(x, x.mean(axis=0), np.cov(x, rowvar=False)).round(4).tolist()
    [1.5, 1.5, 1.5, 1.5]
    """
    chol = np.linalg.cholesky(scatter)
    z = np.linalg.solve(chol, (x - center).T)
    return np.einsum("ij,ij->j", z, z)


def _moments(x: np.ndarray, ridge: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    center = x.mean(axis=0)
    scatter = np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])
    return center, scatter + np.diag(ridge)


def robust_distances(
    x: np.ndarray,
    *,
    support: float = 0.75,
    steps: int = 10,
    sample: int = 200_000,
    seed: int = 0,
) -> tuple[np.ndarray, int]:
    """Robust squared Mahalanobis distances of the rows of ``x``, and their degrees of freedom.

    Minimum covariance determinant by concentration steps (keep the ``support``
    share of rows closest to the current estimate, re-estimate, repeat), then a
    consistency correction and one reweighting step; estimated on at most
    ``sample`` rows (a seeded random subset), applied to all. Items without
    variance are dropped (the degrees of freedom count the rest).

    >>> rng = np.random.default_rng(1)
    >>> x = rng.multivariate_normal([0, 0, 0], [[1, .8, .5], [.8, 1, .5], [.5, .5, 1]], 2000)
    >>> x[:10] = rng.uniform(-3, 3, (10, 3))  # break the correlations
    >>> d2, df = robust_distances(x)
    >>> df, bool(np.median(d2[10:]) < 3), int((d2[:10] > stats.chi2.ppf(0.999, df)).sum()) >= 5
    (3, True, True)
    """
    x = np.asarray(x, dtype=float)
    spread = x.std(axis=0)
    x = x[:, spread > 1e-9]
    n, p = x.shape
    if p == 0 or n <= p + 1:
        return np.zeros(n), 0
    rng = np.random.default_rng(seed)
    fit = x if n <= sample else x[rng.choice(n, sample, replace=False)]
    ridge = 0.01 * fit.var(axis=0)
    center, scatter = _moments(fit, ridge)
    h = max(int(support * len(fit)), p + 2)
    kept = None
    for _ in range(steps):
        d2 = mahalanobis(fit, center, scatter)
        closest = np.argpartition(d2, h - 1)[:h]
        closest.sort()
        if kept is not None and np.array_equal(closest, kept):
            break
        kept = closest
        center, scatter = _moments(fit[kept], ridge)
    d2 = mahalanobis(fit, center, scatter)
    scatter = scatter * np.median(d2) / stats.chi2.ppf(0.5, p)
    d2 = mahalanobis(fit, center, scatter)
    inliers = d2 <= stats.chi2.ppf(0.975, p)
    center, scatter = _moments(fit[inliers], ridge)
    d2 = mahalanobis(fit, center, scatter)
    scatter = scatter * np.median(d2) / stats.chi2.ppf(0.5, p)
    out = np.empty(n)
    for start in range(0, n, 250_000):
        out[start : start + 250_000] = mahalanobis(x[start : start + 250_000], center, scatter)
    return out, p
