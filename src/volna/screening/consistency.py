"""Consistency indices: does a respondent answer alike what people answer alike?

All take a matrix of numeric answers (rows x items, NaN for no answer) and are
vectorised over respondents. Formulas as in R's ``careless`` 1.2 (Yentes &
Wilhelm), which follows Meade & Craig (2012), Johnson (2005) and Dunn et al. (2018).
"""

from __future__ import annotations

import warnings

import numpy as np


def longstring(values: np.ndarray) -> np.ndarray:
    """The longest run of identical consecutive answers (``careless::longstring``).

    Johnson (2005). A missing answer breaks a run.

    >>> longstring(np.array([[1, 1, 2, 2, 2], [3, 3, 3, 3, 3], [1, np.nan, 1, 2, 1.0]])).tolist()
    [3, 5, 1]
    """
    values = np.asarray(values, dtype=float)
    n, m = values.shape
    if m == 0:
        return np.zeros(n, dtype=np.int64)
    seen = ~np.isnan(values)
    run = seen[:, 0].astype(np.int64)
    longest = run.copy()
    for j in range(1, m):
        same = seen[:, j] & seen[:, j - 1] & (values[:, j] == values[:, j - 1])
        run = np.where(same, run + 1, seen[:, j].astype(np.int64))
        longest = np.maximum(longest, run)
    return longest


def irv(values: np.ndarray) -> np.ndarray:
    """Intra-individual response variability: the standard deviation of a row's answers.

    Dunn, Heggestad, Shanock & Theilgard (2018); ``careless::irv`` (denominator
    ``k - 1`` over the ``k`` answered items, as R's ``sd``). Low: straightlining;
    high: answers all over the scale.

    >>> irv(np.array([[1, 2, 3, 4, 5], [3, 3, 3, 3, 3.0]])).round(4).tolist()
    [1.5811, 0.0]
    """
    values = np.asarray(values, dtype=float)
    k = (~np.isnan(values)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(values, axis=1) / k
        ss = np.nansum((values - mean[:, None]) ** 2, axis=1)
        return np.where(k >= 2, np.sqrt(ss / (k - 1)), np.nan)


def _row_correlation(x: np.ndarray, y: np.ndarray, min_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of x[i] with y[i] for each row, over pairs both present."""
    ok = ~np.isnan(x) & ~np.isnan(y)
    k = ok.sum(axis=1)
    x = np.where(ok, x, 0.0)
    y = np.where(ok, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = x.sum(axis=1) / k
        my = y.sum(axis=1) / k
        dx = np.where(ok, x - mx[:, None], 0.0)
        dy = np.where(ok, y - my[:, None], 0.0)
        r = (dx * dy).sum(axis=1) / np.sqrt((dx**2).sum(axis=1) * (dy**2).sum(axis=1))
    return np.where(k >= min_pairs, r, np.nan), k


def even_odd(values: np.ndarray, factors: list[np.ndarray]) -> np.ndarray:
    """Even-odd consistency, signed so that higher is more careless (``careless::evenodd``).

    Johnson (2005): for each factor (a scale's items, keyed one way), the mean
    of its odd-numbered and of its even-numbered items; the within-person
    correlation ``r`` of odd and even means across factors, Spearman-Brown
    corrected ``2r / (1 + r)`` (floored at -1), and negated. NaN with fewer
    than three factors both halves answered, or no variance.

    >>> x = np.array([[1, 2, 4, 5, 2, 2], [1, 5, 5, 1, 3, 4.0]])
    >>> even_odd(x, [np.array([0, 1]), np.array([2, 3]), np.array([4, 5])]).round(4).tolist()
    [-0.9717, 1.0]
    """
    values = np.asarray(values, dtype=float)
    odd, even = [], []
    for items in factors:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a factor left unanswered
            odd.append(np.nanmean(values[:, items[0::2]], axis=1))
            even.append(np.nanmean(values[:, items[1::2]], axis=1))
    if len(factors) < 3:
        return np.full(len(values), np.nan)
    r, _ = _row_correlation(np.column_stack(even), np.column_stack(odd), 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        corrected = np.maximum(2 * r / (1 + r), -1.0)
    return -corrected


def synonym_pairs(values: np.ndarray, critval: float = 0.6, antonyms: bool = False) -> np.ndarray:
    """Item pairs correlated above ``critval`` (below ``-critval`` for antonyms) in the data.

    Meade & Craig (2012) used ``|r| > .60``; ``careless::psychsyn`` defaults to it.
    Pairwise-complete Pearson correlations. Returns an array of (i, j) pairs, i > j.

    >>> x = np.array([[1, 1, 5], [2, 2, 4], [3, 4, 3], [4, 4, 1], [5, 5, 2.0]])
    >>> synonym_pairs(x).tolist(), synonym_pairs(x, antonyms=True).tolist()
    ([[1, 0]], [[2, 0], [2, 1]])
    """
    values = np.asarray(values, dtype=float)
    m = values.shape[1]
    out = []
    for i in range(m):
        for j in range(i):
            ok = ~np.isnan(values[:, i]) & ~np.isnan(values[:, j])
            if ok.sum() < 3:
                continue
            a, b = values[ok, i], values[ok, j]
            if a.std() == 0 or b.std() == 0:
                continue
            r = np.corrcoef(a, b)[0, 1]
            if (r < -critval) if antonyms else (r > critval):
                out.append((i, j))
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def psychometric_synonyms(values: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Within-person correlation across the item pairs (``careless::psychsyn``).

    For each respondent, the Pearson correlation between the first and the
    second items of every pair both answered; NaN with fewer than three such
    pairs (as ``careless``), or no variance. Synonyms: low is careless;
    antonyms (pairs found with ``antonyms=True``): high is careless.

    >>> x = np.array([[1, 1, 5, 5, 3, 3], [1, 5, 5, 1, 3, 3.0]])
    >>> pairs = np.array([[1, 0], [3, 2], [5, 4]])
    >>> psychometric_synonyms(x, pairs).round(4).tolist()
    [1.0, -1.0]
    """
    values = np.asarray(values, dtype=float)
    if len(pairs) == 0:
        return np.full(len(values), np.nan)
    r, _ = _row_correlation(values[:, pairs[:, 0]], values[:, pairs[:, 1]], 3)
    return r
