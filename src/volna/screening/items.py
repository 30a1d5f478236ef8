"""The questionnaire's closed items as numeric matrices, for the careless-responding indices.

Everything here follows the questionnaire's declarations: which questions are
scales, which share a choice list within a section (one scale, a "factor" of
the careless literature), which are reverse-keyed. Attention checks and
honeypots are left out: they are data-quality items, not answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from volna.questionnaire.model import Question, Questionnaire


@dataclass(frozen=True)
class ScaleItems:
    """Scale answers (rows x items, NaN where unanswered or "don't know")."""

    values: np.ndarray
    names: tuple[str, ...]
    reverse: np.ndarray  # True for a reverse-keyed item
    low: np.ndarray  # each item's lowest and highest value
    high: np.ndarray
    factor: tuple[str, ...]  # choice list and section: the scale each item belongs to

    def keyed(self) -> np.ndarray:
        """The values with reverse-keyed items flipped (``low + high - value``)."""
        return np.where(self.reverse, self.low + self.high - self.values, self.values)

    def factors(self, min_items: int = 2) -> dict[str, np.ndarray]:
        """Column indices of each factor with at least ``min_items`` items, in order."""
        out: dict[str, list[int]] = {}
        for j, f in enumerate(self.factor):
            out.setdefault(f, []).append(j)
        return {f: np.array(js) for f, js in out.items() if len(js) >= min_items}


def _scored(question: Question) -> dict[str, float]:
    values = {c.code: c.value for c in question.choices if not c.missing and c.value is not None}
    if not values:  # not valued: codes in order
        values = {c.code: float(i + 1) for i, c in enumerate(question.choices) if not c.missing}
    return values


def scale_items(frame: pl.DataFrame, q: Questionnaire) -> ScaleItems:
    """The scale questions the data hold, in questionnaire order."""
    chosen = [
        x
        for x in q.answerable
        if x.type == "scale" and not x.is_quality_check and x.name in frame.columns
    ]
    scores = [_scored(x) for x in chosen]
    if not chosen:
        values = np.zeros((frame.height, 0))
    else:
        values = frame.select(
            [
                pl.col(x.name)
                .cast(pl.String)
                .replace_strict(s, default=None, return_dtype=pl.Float64)
                for x, s in zip(chosen, scores, strict=True)
            ]
        ).to_numpy()
    return ScaleItems(
        values=np.asarray(values, dtype=float),
        names=tuple(x.name for x in chosen),
        reverse=np.array([x.reverse for x in chosen], dtype=bool),
        low=np.array([min(s.values()) for s in scores], dtype=float),
        high=np.array([max(s.values()) for s in scores], dtype=float),
        factor=tuple(f"{x.choice_list or x.name} in {'/'.join(x.section)}" for x in chosen),
    )


def closed_items(frame: pl.DataFrame, q: Questionnaire) -> tuple[np.ndarray, list[str]]:
    """The closed answers as numbers (rows x encoded items), and each encoded item's page.

    A scale gives its value, an integer its value, a multiple choice one 0/1
    column per option, a single choice (or country) one 0/1 column per option
    but the last. An unanswered item (or "don't know") takes the column's mean.
    The page is the question's innermost section.
    """
    exprs: list[pl.Expr] = []
    pages: list[str] = []
    for x in q.answerable:
        if x.is_quality_check:
            continue
        page = x.section[-1] if x.section else ""
        if x.type == "multiple":
            for c in x.choices:
                col = x.option_column(c.code)
                if col in frame.columns:
                    exprs.append(pl.col(col).cast(pl.Float64))
                    pages.append(page)
        elif x.name not in frame.columns:
            continue
        elif x.type == "scale":
            exprs.append(
                pl.col(x.name)
                .cast(pl.String)
                .replace_strict(_scored(x), default=None, return_dtype=pl.Float64)
            )
            pages.append(page)
        elif x.type in ("integer", "decimal"):
            exprs.append(pl.col(x.name).cast(pl.Float64, strict=False))
            pages.append(page)
        elif x.type in ("single", "country"):
            codes = list(x.codes)
            if not codes:
                codes = frame[x.name].drop_nulls().unique().sort().to_list()
            answered = pl.col(x.name).is_not_null()
            for code in codes[:-1]:
                exprs.append(
                    pl.when(answered).then(
                        (pl.col(x.name).cast(pl.String) == code).cast(pl.Float64)
                    )
                )
                pages.append(page)
    if not exprs:
        return np.zeros((frame.height, 0)), []
    named = [e.alias(f"__{i}") for i, e in enumerate(exprs)]
    values = frame.select(named).with_columns(pl.all().fill_nan(None).fill_null(pl.all().mean()))
    return np.nan_to_num(values.to_numpy().astype(float)), pages
