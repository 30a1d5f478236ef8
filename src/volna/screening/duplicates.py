"""Exact and near-duplicate answer vectors, found by banded hashing."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl

from volna.questionnaire.model import Questionnaire
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


def _answer_codes(frame: pl.DataFrame, q: Questionnaire, ignore: Sequence[str]) -> np.ndarray:
    """Each answer column as small integer codes, -1 where unanswered (rows x items).

    Attention checks and honeypots are left out: every attentive respondent gives the
    same answer to them, so they make strangers look alike (and crowd the bands).
    """
    columns = [
        c
        for question in q.answerable
        if not question.is_quality_check
        for c in question.columns
        if c in frame.columns and c not in ignore and question.name not in ignore
    ]
    if not columns:
        return np.zeros((frame.height, 0), dtype=np.int16)
    coded = frame.select(
        [pl.col(c).cast(pl.String).rank("dense").fill_null(0).alias(c) for c in columns]
    )
    top = max(int(coded.max_horizontal().max() or 0), 1)
    dtype = np.int16 if top < 2**15 else np.int32
    return coded.to_numpy().astype(dtype) - 1


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


def _duplicates(
    frame: pl.DataFrame, q: Questionnaire, rule: DuplicateRule, ids: str | None
) -> tuple[pl.Series, pl.Series, pl.DataFrame, int]:
    n = frame.height
    codes = _answer_codes(frame, q, rule.ignore)
    d = codes.shape[1]
    nothing = (
        pl.Series([False] * n),
        pl.Series([None] * n, dtype=pl.String),
        _empty_pairs(),
        0,
    )
    if d == 0 or n < 2:
        return nothing
    # Two rows differing in at most m items share at least one of m + 1 bands
    # (pigeonhole), so every pair above the agreement threshold is a candidate,
    # as long as the two answered the same items.
    allowed = math.floor((1 - rule.agreement) * d + 1e-9)
    n_bands = min(rule.bands or allowed + 1, d)
    first_parts, second_parts = [], []
    for band in _bands(codes, n_bands):
        a, b = _candidate_pairs(_row_hash(codes, band))
        first_parts.append(a)
        second_parts.append(b)
    a = np.concatenate(first_parts)
    b = np.concatenate(second_parts)
    pair_key = np.unique(a.astype(np.int64) * n + b)
    candidates = len(pair_key)
    if candidates == 0:
        return nothing
    a, b = pair_key // n, pair_key % n
    keep_a, keep_b, agree_parts, items_parts, exact_parts = [], [], [], [], []
    for start in range(0, len(a), 1_000_000):
        i, j = a[start : start + 1_000_000], b[start : start + 1_000_000]
        x, y = codes[i], codes[j]
        both = (x >= 0) & (y >= 0)
        items = both.sum(axis=1)
        agree = (both & (x == y)).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = agree / np.maximum(items, 1)
        hit = (items >= rule.min_items) & (share >= rule.agreement - 1e-12)
        keep_a.append(i[hit])
        keep_b.append(j[hit])
        agree_parts.append(share[hit])
        items_parts.append(items[hit])
        exact_parts.append((x[hit] == y[hit]).all(axis=1))
    first = np.concatenate(keep_a)
    second = np.concatenate(keep_b)
    agreement = np.concatenate(agree_parts)
    items = np.concatenate(items_parts)
    exact = np.concatenate(exact_parts)
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
            "agreement": agreement.astype(float),
            "items": items.astype(np.int64),
            "exact": exact,
        },
        schema=_empty_pairs().schema,
    ).sort("second", "first")
    # A later respondent is flagged, pointing at its earliest match.
    earliest = pairs.group_by("second", maintain_order=True).first()
    flag = np.zeros(n, dtype=bool)
    flag[earliest["second"].to_numpy()] = True
    why: list[str | None] = [None] * n
    who = "respondent" if ids else "row"
    for row in earliest.iter_rows(named=True):
        agree = round(row["agreement"] * row["items"])
        kind = "exact" if row["exact"] else f"{row['agreement']:.0%} agreement"
        why[row["second"]] = (
            f"same answers as {who} {row['first_id']} on {agree} of {row['items']} items ({kind})"
        )
    return pl.Series(flag), pl.Series(why, dtype=pl.String), pairs, candidates
