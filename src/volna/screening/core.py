"""screen(): run the rules, join their flags, apply the exclusion policy."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from volna.errors import ExpressionError
from volna.questionnaire.model import Question, Questionnaire
from volna.screening.careless import _careless
from volna.screening.checks import _attention, _form_flags, _gibberish, _honeypot, _logic
from volna.screening.duplicates import _duplicates, _empty_clusters, _empty_pairs
from volna.screening.rules import BUILT_IN, ScreeningError, ScreeningRules, read_rules
from volna.screening.speed import _page_speed, _speeders
from volna.screening.straightlining import _straightliners

# -- the result ---------------------------------------------------------------------


@dataclass(frozen=True)
class ScreeningResult:
    """The data with ``flag_<rule>``, ``why_<rule>`` and ``excluded``, and what was found.

    ``summary`` has one row per rule: ``rule``, ``flagged`` (rows the rule
    flags), ``excluded`` (rows it excludes: flagged by it, and the rule is in
    the exclusion policy) and ``only`` (rows no other rule flags).
    ``indices`` holds the careless-responding indices (one row per respondent;
    :func:`volna.screening.careless.careless_indices`), ``duplicate_clusters``
    the groups of respondents linked by near-duplicate pairs (``cluster``,
    ``size``, ``rows``, ``ids``, and the first and last submission time when the
    questionnaire declares a datetime paradata).
    ``duplicate_pairs`` lists each near-duplicate pair found
    (``first``, ``second`` as 0-based rows, their ids, ``agreement``, ``items``).
    """

    data: pl.DataFrame
    summary: pl.DataFrame
    duplicate_pairs: pl.DataFrame
    rules: ScreeningRules
    candidates: int = 0  # pairs compared by the duplicate search
    duplicate_clusters: pl.DataFrame = field(default_factory=_empty_clusters)
    indices: pl.DataFrame = field(default_factory=pl.DataFrame)

    @property
    def n_excluded(self) -> int:
        return int(self.data["excluded"].sum())

    @property
    def kept(self) -> pl.DataFrame:
        """The respondents the policy keeps, without the screening columns."""
        extra = [c for c in self.data.columns if c.startswith(("flag_", "why_")) or c == "excluded"]
        return self.data.filter(~pl.col("excluded")).drop(extra)

    def text(self) -> str:
        """A plain-text account: per rule, how many flagged and how many excluded.

        >>> import polars as pl
        >>> from volna import Questionnaire
        >>> q = Questionnaire.loads("id: d\\nquestions:\\n  - {name: a, type: integer}")
        >>> print(screen(pl.DataFrame({"a": [1, None]}), q).text())
        screening: 2 respondents, 1 excluded (50.0%), 1 kept
          rule               flagged  excluded
          straightliner            0         0
          duplicate                0         0
          partial                  1         1
        excluded by: straightliner, duplicate, partial
        """
        n = self.data.height
        k = self.n_excluded
        share = f" ({100 * k / n:.1f}%)" if n else ""
        lines = [f"screening: {n} respondents, {k} excluded{share}, {n - k} kept"]
        lines.append(f"  {'rule':<16} {'flagged':>9} {'excluded':>9}")
        for row in self.summary.iter_rows(named=True):
            lines.append(f"  {row['rule']:<16} {row['flagged']:>9} {row['excluded']:>9}")
        ran = set(self.summary["rule"])
        policy = [r for r in self.rules.excluding if r in ran]
        lines.append(f"excluded by: {', '.join(policy) or 'no rule'}")
        if self.duplicate_pairs.height:
            clusters = self.duplicate_clusters
            big = int((clusters["size"] > 2).sum()) if clusters.height else 0
            lines.append(
                f"duplicate pairs: {self.duplicate_pairs.height} in {clusters.height} groups"
                + (f" ({big} of more than two respondents)" if big else "")
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()


# -- screening ------------------------------------------------------------------------


def screen(
    data: pl.DataFrame,
    questionnaire: Questionnaire,
    rules: ScreeningRules | str | Path | None = None,
    *,
    today: dt.date | None = None,
) -> ScreeningResult:
    """Flag suspect respondents, rule by rule; see the module's documentation.

    ``data`` is a canonical response table (:func:`volna.read`); ``rules`` a
    :class:`ScreeningRules`, a rules file, or ``None`` for the defaults.
    Nothing is removed: ``result.kept`` is the data the policy keeps.

    >>> import polars as pl
    >>> from volna import Questionnaire
    >>> q = Questionnaire.loads('''
    ... id: d
    ... questions: [{name: x, type: integer}, {name: y, type: integer}]
    ... ''')
    >>> from volna.screening import DuplicateRule
    >>> rules = ScreeningRules(duplicates=DuplicateRule(min_items=2, agreement=1.0))
    >>> r = screen(pl.DataFrame({"x": [1, 2, 1], "y": [5, 6, 5]}), q, rules)
    >>> r.data["flag_duplicate"].to_list(), r.data["why_duplicate"][2]
    ([False, False, True], 'same answers as row 1 on 2 of 2 items (exact)')
    """
    if rules is None:
        rules = ScreeningRules()
    elif isinstance(rules, str | Path):
        rules = read_rules(rules)
    if not isinstance(data, pl.DataFrame):
        from volna.validation import _as_polars

        data = _as_polars(data)
    today = today or dt.date.today()
    rules = rules.with_declared(questionnaire)
    _check_names(rules, questionnaire, data)
    frame = data.drop([c for c in data.columns if c.startswith(("flag_", "why_"))])
    if "excluded" in frame.columns:
        frame = frame.drop("excluded")
    ids = _id_column(questionnaire, frame)
    flags: dict[str, tuple[pl.Series, pl.Series]] = {}
    pairs = _empty_pairs()
    clusters = _empty_clusters()
    indices = pl.DataFrame()
    candidates = 0

    answered, relevant = _answered_counts(frame, questionnaire, today)
    partial = None
    if rules.partial is not None:
        share = answered / np.maximum(relevant, 1)
        partial = (share < rules.partial.min_share) & (relevant > 0)
        why = [
            f"answered {a} of {r} relevant questions (under {rules.partial.min_share:.0%})"
            if f
            else None
            for a, r, f in zip(answered, relevant, partial, strict=True)
        ]
        flags["partial"] = (pl.Series(partial), pl.Series(why, dtype=pl.String))
    if rules.speeders is not None:
        found = _speeders(frame, questionnaire, rules.speeders, answered, partial)
        if found is not None:
            flags["speeder"] = found
    if rules.page_speed is not None:
        found = _page_speed(frame, questionnaire, rules.page_speed)
        if found is not None:
            flags["page_speed"] = found
    if rules.straightlining is not None:
        flags["straightliner"] = _straightliners(frame, questionnaire, rules.straightlining)
    if rules.duplicates is not None:
        flag, why, pairs, candidates, clusters = _duplicates(
            frame, questionnaire, rules.duplicates, ids
        )
        flags["duplicate"] = (flag, why)
    if rules.careless is not None:
        flag, why, indices = _careless(frame, questionnaire, rules.careless)
        if indices.width:
            flags["careless"] = (flag, why)
    if rules.attention:
        flags["attention"] = _attention(frame, questionnaire, rules.attention)
    if rules.honeypots:
        flags["honeypot"] = _honeypot(frame, rules.honeypots)
    if rules.form is not None and rules.form.column in frame.columns:
        flags["form"] = _form_flags(frame, rules.form)
    if rules.gibberish is not None:
        flags["gibberish"] = _gibberish(frame, questionnaire, rules.gibberish)
    for rule in rules.logic:
        flags[rule.name] = _logic(frame, questionnaire, rule, today)

    order = [n for n in rules.names if n in flags]
    columns = []
    for name in order:
        flag, why = flags[name]
        columns += [flag.fill_null(False).alias(f"flag_{name}"), why.alias(f"why_{name}")]
    out = frame.with_columns(columns) if columns else frame
    excluding = [n for n in rules.excluding if n in flags]
    out = out.with_columns(
        pl.any_horizontal([pl.col(f"flag_{n}") for n in excluding]).alias("excluded")
        if excluding
        else pl.lit(False).alias("excluded")
    )
    summary = _summary(out, order, excluding)
    return ScreeningResult(out, summary, pairs, rules, candidates, clusters, indices)


def _summary(out: pl.DataFrame, order: list[str], excluding: list[str]) -> pl.DataFrame:
    if not order:
        return pl.DataFrame(
            schema={"rule": pl.String, "flagged": pl.Int64, "excluded": pl.Int64, "only": pl.Int64}
        )
    n_flags = pl.sum_horizontal([pl.col(f"flag_{n}").cast(pl.Int64) for n in order])
    row = out.select(
        [pl.col(f"flag_{n}").sum().cast(pl.Int64).alias(f"f_{n}") for n in order]
        + [
            (pl.col(f"flag_{n}") & pl.lit(n in excluding)).sum().cast(pl.Int64).alias(f"x_{n}")
            for n in order
        ]
        + [
            (pl.col(f"flag_{n}") & (n_flags == 1)).sum().cast(pl.Int64).alias(f"o_{n}")
            for n in order
        ]
    ).row(0, named=True)
    return pl.DataFrame(
        {
            "rule": order,
            "flagged": [row[f"f_{n}"] for n in order],
            "excluded": [row[f"x_{n}"] for n in order],
            "only": [row[f"o_{n}"] for n in order],
        },
        schema={"rule": pl.String, "flagged": pl.Int64, "excluded": pl.Int64, "only": pl.Int64},
    )


def _id_column(q: Questionnaire, frame: pl.DataFrame) -> str | None:
    return next((p.name for p in q.paradata if p.type == "id" and p.name in frame.columns), None)


def _check_names(rules: ScreeningRules, q: Questionnaire, frame: pl.DataFrame) -> None:
    where = f"{rules.source}: " if rules.source else ""

    def known(name: str, what: str) -> None:
        if name not in q:
            raise ScreeningError(f"{where}{what}: no question named {name!r} in the questionnaire")
        missing = [c for c in q[name].columns if c not in frame.columns]
        if missing:
            raise ScreeningError(f"{where}{what}: the data have no column {missing[0]!r}")

    if rules.straightlining is not None and rules.straightlining.grids:
        for grid, names in rules.straightlining.grids.items():
            for name in names:
                known(name, f"straightlining grid {grid}")
    for check in rules.attention:
        known(check.question, "attention check")
    for name in rules.honeypots:
        known(name, "honeypot")
    speeders = rules.speeders
    if speeders is not None and speeders.duration not in (None, *frame.columns):
        raise ScreeningError(
            f"{where}speeders: the data have no duration column {speeders.duration!r}"
        )
    clash = set(BUILT_IN) & {r.name for r in rules.logic}
    if clash:
        raise ScreeningError(f"{where}logic rule {sorted(clash)[0]!r} has a built-in rule's name")


def _present(frame: pl.DataFrame, q: Question) -> pl.Expr | None:
    """True where a question holds an answer; None if the data lack it."""
    if q.type == "multiple":
        cols = [q.option_column(c.code) for c in q.choices if q.option_column(c.code) in frame]
        if not cols:
            return None
        return pl.any_horizontal([pl.col(c).is_not_null() for c in cols])
    if q.name not in frame.columns:
        return None
    return pl.col(q.name).is_not_null()


def _answered_counts(
    frame: pl.DataFrame, q: Questionnaire, today: dt.date
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: questions answered, and questions relevant (asked) by the skip logic."""
    from volna.validation import compile_expression

    answered_exprs, relevant_exprs = [], []
    for question in q.answerable:
        if question.honeypot:
            continue  # hidden from people: never "relevant" to them
        present = _present(frame, question)
        if present is None:
            continue
        relevant = pl.lit(True)
        for text in q.relevance(question):
            try:
                expr = compile_expression(text, q, current=question.name, today=today)
            except ExpressionError as exc:
                raise ScreeningError(f"question {question.name}: relevant: {exc}") from None
            relevant = relevant & expr.fill_null(False)
        i = len(answered_exprs)
        answered_exprs.append(present.cast(pl.Int32).alias(f"__a{i}"))
        relevant_exprs.append((relevant | present).cast(pl.Int32).alias(f"__r{i}"))
    if not answered_exprs:
        zero = np.zeros(frame.height, dtype=np.int64)
        return zero, zero
    counts = frame.select(
        pl.sum_horizontal(answered_exprs).alias("answered"),
        pl.sum_horizontal(relevant_exprs).alias("relevant"),
    )
    return (
        counts["answered"].to_numpy().astype(np.int64),
        counts["relevant"].to_numpy().astype(np.int64),
    )
