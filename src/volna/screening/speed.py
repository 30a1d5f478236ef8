"""Speed: completion time against the median and seconds per answered question;
and, where the questionnaire times its pages, seconds per answered item on each page.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import polars as pl

from volna.questionnaire.model import Questionnaire
from volna.screening.rules import PageSpeedRule, ScreeningError, SpeederRule


def _speeders(
    frame: pl.DataFrame,
    q: Questionnaire,
    rule: SpeederRule,
    answered: np.ndarray,
    partial: np.ndarray | None,
) -> tuple[pl.Series, pl.Series] | None:
    column = rule.duration or next(
        (
            p.name
            for p in q.paradata
            if p.type == "duration" and p.page is None and p.name in frame.columns
        ),
        None,
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


def page_seconds_per_item(
    frame: pl.DataFrame, q: Questionnaire
) -> tuple[tuple[str, ...], np.ndarray]:
    """Seconds per answered item on each timed page: (pages, an n x pages matrix).

    A page's time (``duration`` paradata with a ``page``) over the questions of
    that section the respondent answered; NaN where the data lack the time, the
    time is missing or negative, or nothing on the page was answered.

    >>> from volna import Questionnaire
    >>> q = Questionnaire.loads('''
    ... id: d
    ... paradata: [{name: t_a, type: duration, page: a}]
    ... questions:
    ...   - {section: a, questions: [{name: x, type: integer}, {name: y, type: integer}]}
    ... ''')
    >>> data = pl.DataFrame({"t_a": [20.0, 3.0, None], "x": [1, 2, 3], "y": [1, None, 3]})
    >>> pages, pace = page_seconds_per_item(data, q)
    >>> pages, pace[:, 0].tolist()
    (('a',), [10.0, 3.0, nan])
    """
    timed = [p for p in q.page_times if p.name in frame.columns]
    if not timed:
        return (), np.empty((frame.height, 0))
    answered = []
    for p in timed:
        present = []
        for x in q.page_questions(p.page):
            if x.honeypot:
                continue
            cols = [c for c in x.columns if c in frame.columns and c != x.other_column]
            if cols:
                present.append(pl.any_horizontal([pl.col(c).is_not_null() for c in cols]))
        answered.append(
            pl.sum_horizontal([e.cast(pl.Int32) for e in present]) if present else pl.lit(0)
        )
    try:
        table = frame.select(
            *[
                pl.col(p.name).cast(pl.Float64, strict=False).alias(f"s{i}")
                for i, p in enumerate(timed)
            ],
            *[e.alias(f"a{i}") for i, e in enumerate(answered)],
        )
    except pl.exceptions.PolarsError:
        raise ScreeningError("page_speed: a page time column is not numeric") from None
    k = len(timed)
    seconds = table.select([f"s{i}" for i in range(k)]).to_numpy().astype(float)
    items = table.select([f"a{i}" for i in range(k)]).to_numpy().astype(float)
    seconds[~(seconds >= 0)] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        pace = np.where(items > 0, seconds / items, np.nan)
    return tuple(p.page for p in timed), pace


def page_speed_ratio(pace: np.ndarray) -> np.ndarray:
    """Each page's seconds per item over that page's median: the same shape as ``pace``."""
    if pace.shape[1] == 0:
        return pace
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a page nobody answered
        median = np.nanmedian(pace, axis=0)
        return pace / np.where(median > 0, median, np.nan)


def _page_speed(
    frame: pl.DataFrame, q: Questionnaire, rule: PageSpeedRule
) -> tuple[pl.Series, pl.Series] | None:
    pages, pace = page_seconds_per_item(frame, q)
    if not pages:
        return None  # no page timings: the rule cannot run (the summary omits it)
    ratio = page_speed_ratio(pace)
    with np.errstate(invalid="ignore"):
        fast = np.isfinite(ratio) & (ratio < rule.fraction_of_median)
        if rule.seconds_per_item is not None:
            fast |= np.isfinite(pace) & (pace < rule.seconds_per_item)
    flag = fast.sum(axis=1) >= rule.at_least
    why: list[str | None] = [None] * len(flag)
    for i in np.flatnonzero(flag):
        why[i] = "; ".join(
            f"page {pages[j]} at {pace[i, j]:.1f} s per item ({ratio[i, j]:.2f} x its median)"
            for j in np.flatnonzero(fast[i])
        )
    return pl.Series(flag), pl.Series(why, dtype=pl.String)
