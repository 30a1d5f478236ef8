"""Declared checks: attention checks, honeypots, the web form's flags, gibberish, logic."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from volna.errors import ExpressionError
from volna.questionnaire.model import Question, Questionnaire
from volna.screening.rules import (
    AttentionCheck,
    FormFlagsRule,
    GibberishRule,
    LogicRule,
    ScreeningError,
)


def _attention(
    frame: pl.DataFrame, q: Questionnaire, checks: Sequence[AttentionCheck]
) -> tuple[pl.Series, pl.Series]:
    failures = []
    for check in checks:
        col = pl.col(check.question).cast(pl.String)
        failed = col.is_null() | ~col.is_in(list(check.expected))
        failures.append(
            pl.when(failed)
            .then(
                pl.format(
                    "{}: {} (expected {})",
                    pl.lit(check.question),
                    col.fill_null("no answer"),
                    pl.lit(" or ".join(check.expected)),
                )
            )
            .otherwise(None)
        )
    return _flagged_where(frame, failures)


def _flagged_where(frame: pl.DataFrame, reasons: list[pl.Expr]) -> tuple[pl.Series, pl.Series]:
    """Flag the rows where any reason (null where none) holds; why: the reasons, joined."""
    if not reasons:
        return pl.Series([False] * frame.height), pl.Series([None] * frame.height, dtype=pl.String)
    why = frame.select(pl.concat_str(reasons, separator="; ", ignore_nulls=True).alias("w"))["w"]
    why = why.replace("", None)
    return why.is_not_null(), why


def _honeypot(frame: pl.DataFrame, names: Sequence[str]) -> tuple[pl.Series, pl.Series]:
    found = []
    for name in names:
        value = pl.col(name).cast(pl.String).str.strip_chars()
        found.append(
            pl.when(value.is_not_null() & (value != ""))
            .then(pl.format("{} answered (hidden from people): {}", pl.lit(name), value))
            .otherwise(None)
        )
    return _flagged_where(frame, found)


def _form_flags(frame: pl.DataFrame, rule: FormFlagsRule) -> tuple[pl.Series, pl.Series]:
    given = frame[rule.column].cast(pl.String).fill_null("").str.split(" ")
    kept = given.list.eval(pl.element().filter(pl.element() != ""))
    if rule.flags is not None:
        kept = kept.list.set_intersection(list(rule.flags))
    why = kept.list.join(" ")
    why = pl.select(
        pl.when(why != "").then(pl.format("the web form flagged: {}", why)).otherwise(None)
    ).to_series()
    return why.is_not_null(), why


# Keyboard rows (Latin and Cyrillic) typed in a line: "asdfgh", "фывапр".
_MASHING = "qwert|werty|asdf|sdfg|zxcv|йцук|цуке|фыва|ывап|ячсм"
_VOWELS = "[aeiouyаеёиоуыэюя]"


def _gibberish(
    frame: pl.DataFrame, q: Questionnaire, rule: GibberishRule
) -> tuple[pl.Series, pl.Series]:
    if rule.columns is not None:
        columns = [c for c in rule.columns if c in frame.columns]
    else:
        columns = [
            c
            for c, (item, code) in q.column_map.items()
            if isinstance(item, Question)
            and c in frame.columns
            and (item.type == "text" or (code or "").startswith("_other:"))
        ]
    reasons = []
    for c in columns:
        text = pl.col(c).cast(pl.String).str.to_lowercase().str.strip_chars()
        letters = text.str.replace_all(r"[^\p{L}]", "")
        long_enough = text.str.len_chars() >= rule.min_length
        words = text.str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
        reason = (
            pl.when(~long_enough | text.is_null())
            .then(None)
            .when(text.str.contains(_MASHING))
            .then(pl.lit("keyboard mashing"))
            .when(letters.str.split("").list.n_unique() <= 2)
            .then(pl.lit("one or two characters repeated"))
            .when((letters.str.len_chars() >= rule.min_length) & ~letters.str.contains(_VOWELS))
            .then(pl.lit("no vowels"))
            .when((words.list.len() >= 6) & (words.list.n_unique() * 3 <= words.list.len()))
            .then(pl.lit("the same words pasted over and over"))
            .otherwise(None)
        )
        reasons.append(pl.when(reason.is_not_null()).then(pl.format("{}: {}", pl.lit(c), reason)))
    return _flagged_where(frame, reasons)


def _logic(
    frame: pl.DataFrame, q: Questionnaire, rule: LogicRule, today: dt.date
) -> tuple[pl.Series, pl.Series]:
    from volna.validation import compile_expression

    try:
        expr = compile_expression(rule.when, q, today=today)
    except ExpressionError as exc:
        raise ScreeningError(f"logic rule {rule.name}: when: {exc}") from None
    flag = frame.select(expr.fill_null(False).alias("f"))["f"]
    message = rule.message or rule.when
    why = pl.Series([message if f else None for f in flag], dtype=pl.String)
    return flag, why
