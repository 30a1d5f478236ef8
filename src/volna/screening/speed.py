"""Speed: completion time against the median and seconds per answered question."""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from volna.questionnaire.model import Questionnaire
from volna.screening.rules import ScreeningError, SpeederRule


def _speeders(
    frame: pl.DataFrame,
    q: Questionnaire,
    rule: SpeederRule,
    answered: np.ndarray,
    partial: np.ndarray | None,
) -> tuple[pl.Series, pl.Series] | None:
    column = rule.duration or next(
        (p.name for p in q.paradata if p.type == "duration" and p.name in frame.columns), None
    )
    if column is None:
        return None  # no timing paradata: the rule cannot run (the summary omits it)
    try:
        seconds = frame[column].cast(pl.Float64, strict=False).to_numpy()
    except pl.exceptions.PolarsError:
        raise ScreeningError(f"speeders: duration column {column!r} is not numeric") from None
    seconds = np.asarray(seconds, dtype=float)
    complete = np.isfinite(seconds) & (seconds > 0)
    if partial is not None:
        complete &= ~partial
    median = float(np.median(seconds[complete])) if complete.any() else math.nan
    cut = rule.fraction_of_median * median
    with np.errstate(invalid="ignore", divide="ignore"):
        fast = np.isfinite(seconds) & (seconds < cut)
        per_item = seconds / np.maximum(answered, 1)
        slow_enough = np.ones_like(fast)
        if rule.seconds_per_item is not None:
            slow_enough = ~(np.isfinite(per_item) & (per_item < rule.seconds_per_item))
    flag = fast | ~slow_enough
    why: list[str | None] = [None] * len(flag)
    for i in np.flatnonzero(flag):
        parts = []
        if fast[i]:
            parts.append(
                f"took {seconds[i]:g} s, "
                f"under {rule.fraction_of_median:g} x the median {median:g} s"
            )
        if not slow_enough[i]:
            parts.append(f"{per_item[i]:.1f} s per answered question")
        why[i] = "; ".join(parts)
    return pl.Series(flag), pl.Series(why, dtype=pl.String)
