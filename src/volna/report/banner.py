"""Significance letters for banner tables: which columns a cell is higher than.

A banner table shows one question's column percentages in the columns of several
banner variables (spans: sector, destination, age group...). Each banner column gets a
letter (A, B, C... across the whole table, so a letter names one column); within each
span and each row, every pair of columns is compared with a two-sided design-based
test, and a cell lists the letters of the columns of its span it is significantly
higher than -- the convention of SPSS Custom Tables, Q and WinCross.

The test of columns ``a`` and ``b`` is ``(p_a - p_b) / sqrt(V_aa + V_bb - 2 V_ab)``: the
domain estimates come from one design, so they are correlated through shared PSUs,
strata and weighting (the calibration residuals), and ``V`` is their covariance from the
design's one variance path (``SurveyDesign.proportion(..., by=..., vcov=True)``). The
p-value is from a t distribution on the design's degrees of freedom (normal when
infinite), and is corrected for the ``P`` pairs of the row (Holm by default, Bonferroni,
or none) before it is compared with ``alpha``. Cells not shown (``shown`` false, or
``mark == "suppressed"``) are left out of the tests and of ``P``, and so are cells
without a design variance (0%, 100%, or a share the weighting fixes): a test would take
their variance as nil and find differences that are not there. Everything is done at
once for all the rows and pairs of a span (arrays rows x pairs).

>>> import numpy as np, polars as pl
>>> table = pl.DataFrame({"level": ["yes", "yes", "yes"], "domain": ["g=a", "g=b", "g=c"],
...                       "banner": ["g"] * 3, "estimate": [0.6, 0.4, 0.5]})
>>> vcov = np.diag([0.05, 0.05, 0.05]) ** 2
>>> out, pairs = compare_columns(table, vcov, letters={"g=a": "A", "g=b": "B", "g=c": "C"})
>>> out["letters"].to_list()
['B', '', '']
>>> pairs.select("column_a", "column_b", "p_value").with_columns(pl.col("p_value").round(4)).rows()
[('g=a', 'g=b', 0.0047), ('g=a', 'g=c', 0.1573), ('g=b', 'g=c', 0.1573)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from volna.compare import _two_sided
from volna.disclosure import CORRECTIONS, EXACT_SE, DisclosureError

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def column_letters(count: int) -> list[str]:
    """Letters for ``count`` columns: A..Z, then AA, AB... (as spreadsheet columns).

    >>> column_letters(3), column_letters(28)[-2:]
    (['A', 'B', 'C'], ['AA', 'AB'])
    """
    out = []
    for i in range(count):
        name = ""
        k = i + 1
        while k:
            k, r = divmod(k - 1, 26)
            name = _ALPHABET[r] + name
        out.append(name)
    return out


def adjust_p(p: np.ndarray, correction: str = "holm") -> np.ndarray:
    """p-values corrected for multiple comparisons along the last axis (NaN: no test).

    Each row (all axes but the last) is one family; its size is the number of finite
    p-values in it. Holm's adjusted p-values are the running maximum of
    ``(m - i) p_(i)`` over the sorted p-values (``i`` from 0), capped at 1.

    >>> adjust_p(np.array([[0.01, 0.04, 0.03, np.nan]]), "holm").round(4).tolist()
    [[0.03, 0.06, 0.06, nan]]
    >>> adjust_p(np.array([0.01, 0.04]), "bonferroni").tolist()
    [0.02, 0.08]
    """
    if correction not in CORRECTIONS:
        raise DisclosureError(
            f"correction: expected holm, bonferroni or none, found {correction!r}"
        )
    p = np.asarray(p, dtype=float)
    if correction == "none" or p.size == 0:
        return p.copy()
    finite = np.isfinite(p)
    m = finite.sum(axis=-1, keepdims=True)
    if correction == "bonferroni":
        return np.where(finite, np.minimum(1.0, p * m), np.nan)
    order = np.argsort(np.where(finite, p, np.inf), axis=-1, kind="stable")
    sorted_p = np.take_along_axis(p, order, axis=-1)
    rank = np.arange(p.shape[-1])
    scaled = np.where(np.isfinite(sorted_p), (m - rank) * sorted_p, np.nan)
    running = np.fmax.accumulate(np.where(np.isfinite(scaled), scaled, -np.inf), axis=-1)
    running = np.minimum(1.0, running)
    out = np.empty_like(p)
    np.put_along_axis(out, order, running, axis=-1)
    return np.where(finite, out, np.nan)


def compare_columns(
    table: pl.DataFrame,
    vcov: np.ndarray,
    *,
    letters: Mapping[str, str],
    span: str = "banner",
    column: str = "domain",
    row: str = "level",
    alpha: float = 0.05,
    correction: str = "holm",
    df: float = math.inf,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Significance letters of every cell, and the pairwise tests behind them.

    Parameters
    ----------
    table:
        tidy estimates whose rows are the rows of ``vcov``, in the same order, with the
        columns ``estimate``, ``row`` (the table row: a level), ``column`` (the banner
        column: a domain) and ``span`` (the banner variable; columns are compared only
        within a span). ``shown`` or ``mark`` leave suppressed cells out.
    vcov:
        the covariance matrix of the estimates (``Estimates.vcov``).
    letters:
        the letter of each banner column, by its ``column`` value.
    alpha, correction, df:
        level of the two-sided tests, the correction over the pairs of a row (``holm``,
        ``bonferroni``, ``none``) and the degrees of freedom (``inf``: normal).

    Returns the table with ``letters`` added (the letters of the columns a cell is
    significantly higher than, in letter order) and one row per pair tested: ``span``,
    ``row``, ``column_a``, ``column_b``, ``letter_a``, ``letter_b``, ``difference``
    (a - b), ``se``, ``statistic``, ``p_value``, ``p_adjusted``, ``significant``.
    """
    n = table.height
    vcov = np.asarray(vcov, dtype=float)
    if vcov.shape != (n, n):
        raise DisclosureError(
            f"the covariance matrix is {vcov.shape[0]}x{vcov.shape[1]} for {n} estimates; "
            "pass the vcov of exactly these rows, in their order"
        )
    for col in ("estimate", row, column, span):
        if col not in table.columns:
            raise DisclosureError(f"banner tests need a column {col!r}; the table has none")
    est = table.get_column("estimate").cast(pl.Float64).fill_null(np.nan).to_numpy()
    included = np.isfinite(est)
    if "shown" in table.columns:
        included &= table.get_column("shown").fill_null(False).to_numpy().astype(bool)
    elif "mark" in table.columns:
        included &= (table.get_column("mark").fill_null("") != "suppressed").to_numpy()
    variance = np.diag(vcov)
    included &= np.isfinite(variance) & (variance > EXACT_SE**2)
    spans = table.get_column(span).cast(pl.String).to_list()
    rows = table.get_column(row).cast(pl.String).to_list()
    cols = table.get_column(column).cast(pl.String).to_list()
    cell_letters = [""] * n
    pair_frames: list[dict[str, list]] = []
    for s in dict.fromkeys(spans):
        at = [i for i in range(n) if spans[i] == s]
        col_keys = list(dict.fromkeys(cols[i] for i in at))
        row_keys = list(dict.fromkeys(rows[i] for i in at))
        unknown = [c for c in col_keys if c not in letters]
        if unknown:
            raise DisclosureError(f"column {unknown[0]!r} of span {s!r} has no letter")
        # sort the columns by letter so that pairs and letters read in order
        col_keys.sort(key=lambda c: (len(letters[c]), letters[c]))
        ci = {c: j for j, c in enumerate(col_keys)}
        ri = {r: j for j, r in enumerate(row_keys)}
        idx = np.full((len(row_keys), len(col_keys)), -1, dtype=np.int64)
        for i in at:
            idx[ri[rows[i]], ci[cols[i]]] = i
        a, b = np.triu_indices(len(col_keys), k=1)
        if len(a) == 0:
            continue
        ia, ib = idx[:, a], idx[:, b]  # (rows, pairs)
        ok = (ia >= 0) & (ib >= 0)
        ia0, ib0 = np.where(ok, ia, 0), np.where(ok, ib, 0)
        ok &= included[ia0] & included[ib0]
        diff = est[ia0] - est[ib0]
        var = variance[ia0] + variance[ib0] - 2 * vcov[ia0, ib0]
        se = np.sqrt(np.maximum(var, 0.0))
        ok &= se > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            stat = np.where(ok, diff / se, np.nan)
        p = np.where(ok, _two_sided(stat, np.full(stat.shape, float(df))), np.nan)
        p_adj = adjust_p(p, correction)
        sig = np.isfinite(p_adj) & (p_adj <= alpha)
        # each significant pair gives the higher cell the letter of the lower one
        for r, k in zip(*np.nonzero(sig), strict=True):
            hi, lo = (ia[r, k], b[k]) if diff[r, k] > 0 else (ib[r, k], a[k])
            cell_letters[hi] += letters[col_keys[lo]] + "\x1f"
        rr, kk = np.nonzero(ok)
        pair_frames.append(
            {
                "span": [s] * len(rr),
                "row": [row_keys[r] for r in rr],
                "column_a": [col_keys[a[k]] for k in kk],
                "column_b": [col_keys[b[k]] for k in kk],
                "letter_a": [letters[col_keys[a[k]]] for k in kk],
                "letter_b": [letters[col_keys[b[k]]] for k in kk],
                "difference": diff[rr, kk].tolist(),
                "se": se[rr, kk].tolist(),
                "statistic": stat[rr, kk].tolist(),
                "p_value": p[rr, kk].tolist(),
                "p_adjusted": p_adj[rr, kk].tolist(),
                "significant": sig[rr, kk].tolist(),
            }
        )
    out_letters = [_sorted_letters(x) for x in cell_letters]
    pairs = pl.DataFrame(
        {k: [x for f in pair_frames for x in f[k]] for k in _PAIR_SCHEMA},
        schema=_PAIR_SCHEMA,
    )
    return table.with_columns(pl.Series("letters", out_letters, dtype=pl.String)), pairs


_PAIR_SCHEMA = {
    "span": pl.String,
    "row": pl.String,
    "column_a": pl.String,
    "column_b": pl.String,
    "letter_a": pl.String,
    "letter_b": pl.String,
    "difference": pl.Float64,
    "se": pl.Float64,
    "statistic": pl.Float64,
    "p_value": pl.Float64,
    "p_adjusted": pl.Float64,
    "significant": pl.Boolean,
}


def _sorted_letters(joined: str) -> str:
    parts = [x for x in joined.split("\x1f") if x]
    return "".join(sorted(parts, key=lambda x: (len(x), x)))


def banner_letters(columns: Sequence[str]) -> dict[str, str]:
    """A letter for each banner column key, in order.

    >>> banner_letters(["sector=it", "sector=arts"])
    {'sector=it': 'A', 'sector=arts': 'B'}
    """
    return dict(zip(columns, column_letters(len(columns)), strict=True))
