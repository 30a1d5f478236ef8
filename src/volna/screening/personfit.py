"""Person fit: does a respondent's pattern of answers fit the sample's?

Two nonparametric indices, vectorised over respondents:

``guttman_errors``
    the normed number of polytomous Guttman errors over a scale's item steps
    (Molenaar 1991; Emons 2008; R ``PerFit::Gnormed.poly``): an item step
    "answered at least h on item j" is harder the fewer respondents take it; a
    Guttman error is a harder step taken while an easier one is not. Normed by
    ``t (S - t)`` for ``t`` steps taken of ``S`` (the dichotomous bound; PerFit
    norms by the tighter polytomous maximum, so values here are a little lower).
``rare_answers``
    the standardized log-likelihood of a respondent's closed answers under the
    sample's own answer shares, item by item (the ``lz`` statistic of Drasgow,
    Levine & Williams 1985, with the independence model in place of an IRT
    model): ``(L - E[L]) / sqrt(Var L)``, ``L = Σ log p_j(answer)``. Random and
    patterned responders choose rare answers as often as common ones and score
    far below zero; the cut-off is stated as a normal p-value (``p < 0.001``:
    ``z < -3.09``).
"""

from __future__ import annotations

import numpy as np


def guttman_errors(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Normed polytomous Guttman errors of each row (NaN with an unanswered item or no variance).

    ``values`` are scale answers keyed one way (reverse-keyed items flipped),
    ``low``/``high`` each item's range (integer steps).

    >>> x = np.array([[1, 1], [2, 1], [2, 2], [1, 2], [2, 1], [2, 2.0]])
    >>> guttman_errors(x, np.array([1, 1.0]), np.array([2, 2.0])).tolist()
    [nan, 0.0, nan, 1.0, 0.0, nan]
    """
    values = np.asarray(values, dtype=float)
    n, m = values.shape
    steps = []
    for j in range(m):
        for h in range(int(low[j]) + 1, int(high[j]) + 1):
            steps.append(values[:, j] >= h)
    if not steps:
        return np.full(n, np.nan)
    taken = np.column_stack(steps)
    complete = ~np.isnan(values).any(axis=1)
    popularity = taken[complete].mean(axis=0) if complete.any() else taken.mean(axis=0)
    order = np.argsort(-popularity, kind="stable")
    s = taken[:, order].astype(np.int64)
    zeros_before = np.cumsum(1 - s, axis=1) - (1 - s)
    g = (s * zeros_before).sum(axis=1)
    t = s.sum(axis=1)
    bound = t * (s.shape[1] - t)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = g / bound
    return np.where(complete & (bound > 0), out, np.nan)


def rare_answers(codes: np.ndarray) -> np.ndarray:
    """Standardized log-likelihood of each row's answers under the sample's answer shares.

    ``codes``: small integers per item, -1 for no answer. Shares are smoothed
    (half a respondent added to every answer seen). Unanswered items add nothing.

    >>> codes = np.array([[0, 0], [0, 0], [0, 0], [0, 1], [1, 0], [1, 1]])
    >>> rare_answers(codes).round(3).tolist()
    [1.054, 1.054, 1.054, -0.422, -0.422, -1.897]
    """
    n, m = codes.shape
    ll = np.zeros(n)
    mean = np.zeros(n)
    var = np.zeros(n)
    for j in range(m):
        c = codes[:, j]
        answered = c >= 0
        if not answered.any():
            continue
        counts = np.bincount(c[answered])
        seen = counts > 0
        p = np.where(seen, counts + 0.5, 0) / (counts.sum() + 0.5 * seen.sum())
        logp = np.log(np.where(seen, p, 1.0))
        e = (p * logp).sum()
        v = (p * logp**2).sum() - e**2
        ll[answered] += logp[c[answered]]
        mean[answered] += e
        var[answered] += v
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, (ll - mean) / np.sqrt(var), np.nan)
