"""A first look at a response table: unweighted counts and shares per question.

This is for checking that a file was read as intended, not for publishing:
the shares are unweighted and carry no confidence intervals. The estimation
layer produces the numbers to report.
"""

from __future__ import annotations

import polars as pl
from rich.console import Console
from rich.table import Table

from volna.questionnaire.countries import country_name
from volna.questionnaire.model import Question, Questionnaire

SYNTHETIC_PREFIX = "synthetic-"


def is_synthetic(frame: pl.DataFrame, questionnaire: Questionnaire) -> bool:
    """True when the respondent ids say the data were generated, not collected.

    >>> from volna import Questionnaire
    >>> q = Questionnaire.loads('''
    ... id: d
    ... paradata: [{name: rid, type: id}]
    ... questions: [{name: age, type: integer}]
    ... ''')
    >>> is_synthetic(pl.DataFrame({"rid": ["synthetic-1"], "age": [30]}), q)
    True
    """
    ids = [p.name for p in questionnaire.paradata if p.type == "id"]
    return any(
        frame.height > 0 and frame[c].cast(pl.String).str.starts_with(SYNTHETIC_PREFIX).all()
        for c in ids
    )


def question_shares(frame: pl.DataFrame, q: Question) -> list[tuple[str, int, float]]:
    """(code, count, share of those answering) for each choice, in choice order.

    For a multiple-choice question the share is of those who answered the set.

    >>> from volna import Choice, Question
    >>> q = Question("left", "single", choices=(Choice("yes"), Choice("no")))
    >>> question_shares(pl.DataFrame({"left": ["yes", "yes", "no", None]}), q)
    [('yes', 2, 0.6666666666666666), ('no', 1, 0.3333333333333333)]
    """
    if q.type == "multiple":
        options = [q.option_column(c) for c in q.codes]
        answered = frame.select(pl.any_horizontal([pl.col(c).fill_null(False) for c in options]))
        n = int(answered.to_series().sum())
        counts = frame.select([pl.col(c).fill_null(False).sum() for c in options]).row(0)
        return [
            (code, int(k), k / n if n else float("nan"))
            for code, k in zip(q.codes, counts, strict=True)
        ]
    counts = frame[q.name].drop_nulls().value_counts()
    total = int(counts["count"].sum()) if counts.height else 0
    found = dict(zip(counts[q.name].to_list(), counts["count"].to_list(), strict=True))
    codes = list(q.codes) if q.type != "country" else sorted(found, key=lambda c: -found[c])
    return [(c, found.get(c, 0), found.get(c, 0) / total if total else float("nan")) for c in codes]


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def describe(
    frame: pl.DataFrame,
    questionnaire: Questionnaire,
    console: Console,
    *,
    language: str | None = None,
    source: str | None = None,
    top: int = 6,
) -> None:
    """Print a compact unweighted summary of every question to ``console``."""
    lang = language or questionnaire.default_language
    title = questionnaire.title.get(lang) or questionnaire.id
    console.print(f"[bold]{title}[/bold]: {source or ''} {frame.height} respondents")
    if is_synthetic(frame, questionnaire):
        console.print("[bold red]SYNTHETIC DATA[/bold red]: generated, not real respondents")
    table = Table("question", "answered", "distribution (unweighted)", show_lines=False)
    for q in questionnaire.answerable:
        if q.type == "multiple":
            n = frame.select(
                pl.any_horizontal([pl.col(q.option_column(c)).fill_null(False) for c in q.codes])
            ).to_series()
            answered = int(n.sum())
        else:
            answered = frame.height - frame[q.name].null_count()
        if q.is_choice or q.type == "country":
            shares = question_shares(frame, q)[:top]
            parts = []
            for code, _, share in shares:
                name = (
                    country_name(code, lang) if q.type == "country" else q.choice(code).label(lang)
                )
                parts.append(f"{_short(name, 28)} {share:.0%}")
            text = "; ".join(parts)
        elif q.type in ("integer", "decimal"):
            col = frame[q.name].drop_nulls()
            text = f"median {col.median():g}, range {col.min():g}–{col.max():g}" if len(col) else ""
        else:
            text = ""
        table.add_row(_short(q.label(lang), 48), str(answered), text)
    console.print(table)
    console.print(
        "Unweighted shares of those answering: a first look. Estimates with confidence "
        "intervals: volna report (or volna.SurveyDesign)."
    )
