"""Exact and near-duplicate answer vectors, found by banded hashing."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import polars as pl

from volna.questionnaire.model import Question, Questionnaire
from volna.screening.rules import DuplicateRule

# -- near duplicates ----------------------------------------------------------------


def _empty_pairs() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "first": pl.Int64,
            "second": pl.Int64,
            "first_id": pl.String,
            "second_id": pl.String,
            "agreement": pl.Float64,
            "items": pl.Int64,
            "exact": pl.Boolean,
        }
    )


def _compared(frame: pl.DataFrame, q: Questionnaire, ignore: Sequence[str]) -> list[Question]:
    """The questions :func:`_answer_codes` encodes, in its order."""
    out = []
    for question in q.answerable:
        if question.is_quality_check or question.name in ignore:
            continue
        if question.type == "multiple":
            if any(
                question.option_column(c.code) in frame.columns
                and question.option_column(c.code) not in ignore
                for c in question.choices
            ):
                out.append(question)
        elif question.name in frame.columns:
            out.append(question)
    return out


def _answer_codes(frame: pl.DataFrame, q: Questionnaire, ignore: Sequence[str]) -> np.ndarray:
    """Each question's answer as a small integer code, -1 where unanswered (rows x questions).

    A multiple-choice question is one item: its ticks make one code. Attention
    checks and honeypots are left out: every attentive respondent gives the same
    answer to them, so they make strangers look alike (and crowd the bands).
    """
    exprs = []
    for question in _compared(frame, q, ignore):
        if question.type == "multiple":
            cols = [
                question.option_column(c.code)
                for c in question.choices
                if question.option_column(c.code) in frame.columns
                and question.option_column(c.code) not in ignore
            ]
            ticks = [pl.col(c).cast(pl.Boolean).cast(pl.String).fill_null("-") for c in cols]
            any_answer = pl.any_horizontal([pl.col(c).is_not_null() for c in cols])
            value = pl.when(any_answer).then(pl.concat_str(ticks)).otherwise(None)
        else:
            value = pl.col(question.name).cast(pl.String)
        exprs.append(value.rank("dense").fill_null(0).alias(f"__{len(exprs)}"))
    if not exprs:
        return np.zeros((frame.height, 0), dtype=np.int16)
    coded = frame.select(exprs)
    top = max(int(coded.max_horizontal().max() or 0), 1)
    dtype = np.int16 if top < 2**15 else np.int32
    return coded.to_numpy().astype(dtype) - 1


def allowed_differences(agreement: float, items: np.ndarray | int) -> np.ndarray:
    """How many of ``items`` answers may differ: ``1 - agreement`` of them, rounded up.

    Rounded up so that the share is a floor on what is tolerated: at the
    default 10%, 3 differences among 21 to 30 questions, 4 among 31 to 40.

    >>> allowed_differences(0.9, np.array([10, 24, 27, 30, 32])).tolist()
    [1, 3, 3, 3, 4]
    """
    return np.ceil((1 - agreement) * np.asarray(items) - 1e-9).astype(np.int64)


def _n_bands(allowed: int, most_keys: int = 64) -> int:
    """The most bands whose sets of ``bands - allowed`` number at most ``most_keys``.

    >>> [_n_bands(m) for m in (0, 1, 2, 3)]
    [1, 64, 11, 8]
    """
    if allowed == 0:
        return 1
    b = allowed + 1
    while math.comb(b + 1, allowed) <= most_keys:
        b += 1
    return b


def _bands(codes: np.ndarray, n_bands: int) -> list[np.ndarray]:
    """Split the items into ``n_bands`` bands, dealing the most varied items round-robin.

    Each band then mixes informative items (destination, age) with uninformative
    ones (rare options), so that genuine respondents rarely share a band by chance.
    """
    spread = np.array(
        [np.unique(codes[: min(len(codes), 50_000), j]).size for j in range(codes.shape[1])]
    )
    order = np.argsort(-spread, kind="stable")
    return [order[b::n_bands] for b in range(n_bands)]


def _candidate_pairs(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All pairs of rows with the same band key (i < j), without enumerating other pairs."""
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    firsts, seconds = [], []
    # Pairs k apart in the sorted order that still share their key: the loop runs
    # as many times as the largest block, each step over the rows still in a block.
    alive = np.flatnonzero(sorted_key[1:] == sorted_key[:-1])
    k = 1
    while alive.size:
        firsts.append(order[alive])
        seconds.append(order[alive + k])
        k += 1
        nxt = alive + k
        ok = nxt < len(key)
        alive = alive[ok]
        alive = alive[sorted_key[alive + k] == sorted_key[alive]]
    if not firsts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    a = np.concatenate(firsts)
    b = np.concatenate(seconds)
    return np.minimum(a, b), np.maximum(a, b)


def _row_hash(codes: np.ndarray, columns: np.ndarray) -> np.ndarray:
    h = np.full(len(codes), 1469598103934665603, dtype=np.uint64)
    prime = np.uint64(1099511628211)
    with np.errstate(over="ignore"):
        for j in columns:
            h = (h ^ (codes[:, j].astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15))) * prime
    return h


def _arrival(frame: pl.DataFrame, q: Questionnaire) -> np.ndarray:
    """Each row's place in the order of arrival: by submission time if declared, else row."""
    when = next(
        (p.name for p in q.paradata if p.type == "datetime" and p.name in frame.columns), None
    )
    if when is None:
        return np.arange(frame.height)
    order = frame.select(
        pl.struct(
            pl.col(when).is_null().alias("n"), pl.col(when).alias("t"), pl.int_range(pl.len())
        ).rank("ordinal")
    ).to_series()
    return order.to_numpy().astype(np.int64) - 1


def near_duplicate_pairs(
    codes: np.ndarray,
    agreement: float = 0.9,
    *,
    min_items: int = 1,
    bands: int | None = None,
    conditional: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Every pair of rows of ``codes`` differing on at most ``1 - agreement`` of their items.

    ``codes`` holds small integers, -1 for no answer. Items either row answered
    count; a pair qualifies when it differs on at most
    :func:`allowed_differences` of them and has ``min_items``. Pigeonhole: two
    rows differing on at most ``m`` of ``d`` items agree exactly on at least one
    of ``m + 1`` disjoint bands of items; more generally, with ``b`` bands it
    agrees on at least ``b - m`` of them, so hashing every set of ``b - m`` bands
    and comparing only rows sharing such a hash finds every pair exactly. ``b``
    is the most bands with at most 64 such sets (8 for m = 3), so each hash spans
    most items and strangers rarely share one: sub-quadratic, candidates verified.

    ``conditional`` marks the items the skip logic may leave unasked: one
    answered by only one of the two rows is not compared (a changed answer
    upstream decided whether it was asked; the change counts once). They stay
    out of the bands, so that the guarantee holds for the items compared.

    Returns ``first``, ``second`` (first < second), the number of items either
    answered, the number that differ, and the number of candidate pairs compared.

    >>> codes = np.array([[1, 2, 3, 4, 5, 6, 7, 8, 9, 0],
    ...                   [1, 2, 3, 4, 5, 6, 7, 8, 0, 9],
    ...                   [4, 4, 4, 4, 4, 4, 4, 4, 4, 4]])
    >>> first, second, items, differ, _ = near_duplicate_pairs(codes, 0.8)
    >>> first.tolist(), second.tolist(), items.tolist(), differ.tolist()
    ([0], [1], [10], [2])
    """
    n, d = codes.shape
    empty = np.zeros(0, dtype=np.int64)
    if d == 0 or n < 2:
        return empty, empty, empty, empty, 0
    allowed = int(allowed_differences(agreement, d))
    conditional = np.zeros(d, dtype=bool) if conditional is None else np.asarray(conditional)
    banded = np.flatnonzero(~conditional) if (~conditional).sum() > allowed else np.arange(d)
    n_bands = min(bands or _n_bands(allowed), len(banded))
    # A pair differing on at most `allowed` items leaves at least n_bands - allowed
    # bands untouched: hashing every set of that many bands finds it (with
    # allowed + 1 bands this is the plain pigeonhole; more bands make each key
    # span more items, so fewer strangers share one).
    hashes = [_row_hash(codes, banded[band]) for band in _bands(codes[:, banded], n_bands)]
    width = max(n_bands - allowed, 1)
    first_parts, second_parts = [], []
    prime = np.uint64(1099511628211)
    for subset in itertools.combinations(range(n_bands), width):
        key = np.full(n, 14695981039346656037, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for b in subset:
                key = (key ^ hashes[b]) * prime
        a, b = _candidate_pairs(key)
        first_parts.append(a)
        second_parts.append(b)
    firsts = np.concatenate(first_parts).astype(np.int64)
    pair_key = np.unique(firsts * n + np.concatenate(second_parts))
    candidates = len(pair_key)
    keep_a, keep_b, items_parts, differ_parts = [], [], [], []
    step = 1_000_000
    for start in range(0, candidates, step):
        chunk = pair_key[start : start + step]
        i, j = chunk // n, chunk % n
        x, y = codes[i], codes[j]
        unasked = conditional & ((x >= 0) != (y >= 0))
        either = (((x >= 0) | (y >= 0)) & ~unasked).sum(axis=1)
        differ = ((x != y) & ~unasked).sum(axis=1)
        hit = (either >= min_items) & (differ <= allowed_differences(agreement, either))
        keep_a.append(i[hit])
        keep_b.append(j[hit])
        items_parts.append(either[hit])
        differ_parts.append(differ[hit])
    if not keep_a:
        return empty, empty, empty, empty, candidates
    return (
        np.concatenate(keep_a),
        np.concatenate(keep_b),
        np.concatenate(items_parts).astype(np.int64),
        np.concatenate(differ_parts).astype(np.int64),
        candidates,
    )


def _clusters(n: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Connected groups of rows linked by near-duplicate pairs (-1: in no pair)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not len(first):
        return np.full(n, -1, dtype=np.int64)
    nodes = np.unique(np.concatenate([first, second]))
    index = np.searchsorted(nodes, first), np.searchsorted(nodes, second)
    graph = coo_matrix((np.ones(len(first)), index), shape=(len(nodes), len(nodes)))
    _, labels = connected_components(graph, directed=False)
    out = np.full(n, -1, dtype=np.int64)
    out[nodes] = labels
    return out


def _empty_clusters() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "cluster": pl.Int64,
            "size": pl.Int64,
            "rows": pl.List(pl.Int64),
            "ids": pl.List(pl.String),
            "first_seen": pl.String,
            "last_seen": pl.String,
        }
    )


def _duplicates(
    frame: pl.DataFrame, q: Questionnaire, rule: DuplicateRule, ids: str | None
) -> tuple[pl.Series, pl.Series, pl.DataFrame, int, pl.DataFrame]:
    n = frame.height
    codes = _answer_codes(frame, q, rule.ignore)
    conditional = np.array(
        [bool(q.relevance(x)) for x in _compared(frame, q, rule.ignore)], dtype=bool
    )
    first, second, items, differ, candidates = near_duplicate_pairs(
        codes, rule.agreement, min_items=rule.min_items, bands=rule.bands, conditional=conditional
    )
    if not len(first):
        return (
            pl.Series([False] * n),
            pl.Series([None] * n, dtype=pl.String),
            _empty_pairs(),
            candidates,
            _empty_clusters(),
        )
    # The one that arrived later is the duplicate (by submission time if declared).
    arrival = _arrival(frame, q)
    swap = arrival[first] > arrival[second]
    first, second = np.where(swap, second, first), np.where(swap, first, second)
    label = (
        frame[ids].cast(pl.String)
        if ids
        else pl.Series([str(i + 1) for i in range(n)], dtype=pl.String)
    )
    pairs = pl.DataFrame(
        {
            "first": first.astype(np.int64),
            "second": second.astype(np.int64),
            "first_id": label.gather(first),
            "second_id": label.gather(second),
            "agreement": 1 - differ / np.maximum(items, 1),
            "items": items,
            "exact": differ == 0,
        },
        schema=_empty_pairs().schema,
    )
    pairs = (
        pairs.with_columns(
            pl.Series("_arrival", arrival[pairs["second"].to_numpy()]),
            pl.Series("_first_arrival", arrival[pairs["first"].to_numpy()]),
        )
        .sort("_arrival", "_first_arrival")
        .drop("_arrival", "_first_arrival")
    )
    # Every member of a group but the first to arrive is flagged, pointing at its
    # earliest match.
    cluster = _clusters(n, first, second)
    earliest = pairs.group_by("second", maintain_order=True).first()
    flag = np.zeros(n, dtype=bool)
    flag[earliest["second"].to_numpy()] = True
    why: list[str | None] = [None] * n
    who = "respondent" if ids else "row"
    for row in earliest.iter_rows(named=True):
        agree = round(row["agreement"] * row["items"])
        kind = "exact" if row["exact"] else f"{row['items'] - agree} different"
        why[row["second"]] = (
            f"same answers as {who} {row['first_id']} on {agree} of {row['items']} items ({kind})"
        )
    clusters = _cluster_table(frame, q, cluster, arrival, label)
    return pl.Series(flag), pl.Series(why, dtype=pl.String), pairs, candidates, clusters


def _cluster_table(
    frame: pl.DataFrame, q: Questionnaire, cluster: np.ndarray, arrival: np.ndarray, label
) -> pl.DataFrame:
    rows = np.flatnonzero(cluster >= 0)
    rows = rows[np.lexsort((arrival[rows], cluster[rows]))]
    when = next(
        (p.name for p in q.paradata if p.type == "datetime" and p.name in frame.columns), None
    )
    members = pl.DataFrame(
        {
            "cluster": cluster[rows],
            "row": rows.astype(np.int64),
            "id": label.gather(rows),
            "time": frame[when].gather(rows).cast(pl.String)
            if when
            else pl.Series([None] * len(rows), dtype=pl.String),
        }
    )
    table = (
        members.group_by("cluster", maintain_order=True)
        .agg(
            pl.len().cast(pl.Int64).alias("size"),
            pl.col("row").alias("rows"),
            pl.col("id").alias("ids"),
            pl.col("time").drop_nulls().min().alias("first_seen"),
            pl.col("time").drop_nulls().max().alias("last_seen"),
        )
        .sort("size", "cluster", descending=[True, False])
    )
    # clusters renumbered 1, 2, ... biggest first
    return table.with_columns(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("cluster")
    ).select(_empty_clusters().columns)
