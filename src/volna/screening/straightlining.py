"""Straightlining: one answer (or long runs of one answer) down a grid."""

from __future__ import annotations

import numpy as np
import polars as pl

from volna.questionnaire.model import Question, Questionnaire
from volna.screening.rules import StraightliningRule


def _grids(q: Questionnaire, rule: StraightliningRule) -> dict[str, tuple[str, ...]]:
    if rule.grids:
        return dict(rule.grids)
    by_list: dict[str, list[str]] = {}
    for question in q.answerable:
        if question.type == "scale" and question.choice_list and not question.is_quality_check:
            by_list.setdefault(question.choice_list, []).append(question.name)
    return {k: tuple(v) for k, v in by_list.items() if len(v) >= max(rule.min_items, 2)}


def _scores(frame: pl.DataFrame, question: Question) -> pl.Expr:
    """A scale question's numeric values; "don't know" and unknown codes null."""
    values = {c.code: c.value for c in question.choices if not c.missing and c.value is not None}
    if not values:  # not a scale: codes in order
        values = {c.code: float(i) for i, c in enumerate(question.choices)}
    return (
        pl.col(question.name)
        .cast(pl.String)
        .replace_strict(values, default=None, return_dtype=pl.Float64)
    )


def _straightliners(
    frame: pl.DataFrame, q: Questionnaire, rule: StraightliningRule
) -> tuple[pl.Series, pl.Series]:
    n = frame.height
    flag = np.zeros(n, dtype=bool)
    why: list[str | None] = [None] * n
    for grid, names in _grids(q, rule).items():
        names = tuple(x for x in names if x in frame.columns)
        if len(names) < 2:
            continue
        values = frame.select([_scores(frame, q[x]).alias(x) for x in names]).to_numpy()
        values = np.asarray(values, dtype=float)
        seen = ~np.isnan(values)
        n_items = seen.sum(axis=1)
        with np.errstate(invalid="ignore"):
            high = np.nanmax(np.where(seen, values, -np.inf), axis=1)
            low = np.nanmin(np.where(seen, values, np.inf), axis=1)
        flat = (n_items >= rule.min_items) & (high == low)
        run = np.ones(n, dtype=np.int64)
        longest = np.where(n_items > 0, 1, 0)
        for j in range(1, values.shape[1]):
            same = seen[:, j] & seen[:, j - 1] & (values[:, j] == values[:, j - 1])
            run = np.where(same, run + 1, 1)
            longest = np.maximum(longest, np.where(seen[:, j], run, 0))
        hit = flat.copy()
        if rule.longest_run is not None:
            hit |= (n_items >= rule.min_items) & (longest >= rule.longest_run)
        for i in np.flatnonzero(hit & ~flag):
            if flat[i]:
                why[i] = f"grid {grid}: the same answer ({high[i]:g}) on all {n_items[i]} items"
            else:
                why[i] = f"grid {grid}: {longest[i]} identical answers in a row"
        flag |= hit
    return pl.Series(flag), pl.Series(why, dtype=pl.String)
