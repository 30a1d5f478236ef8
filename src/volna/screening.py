"""Response screening: speeders, straightliners, duplicates, partial completes, failed checks.

Web surveys recruited through open links attract bots and careless answers.
:func:`screen` marks them, one rule at a time, and never removes a row: every
rule adds a Boolean ``flag_<rule>`` column and a ``why_<rule>`` text saying what
was found, and ``excluded`` applies the exclusion policy declared in advance
in a rules file (schema at the top of ``examples/okrussians/screening.yaml``).
The summary says how many rows each rule flagged and how many it excluded.

The rules, each vectorised over all rows:

``speeder``
    completion time under ``fraction_of_median`` (0.5) of the median time of
    complete interviews, or under ``seconds_per_item`` (2) seconds per answered
    question; only when the questionnaire declares a ``duration`` paradata column.
``straightliner``
    a grid of scale questions (those sharing a choice list, or declared in the
    rules) answered with one value throughout (zero variance), or with a run of
    ``longest_run`` identical consecutive answers, among at least ``min_items``
    answered items ("don't know" does not count as an answer here).
``duplicate``
    a later respondent whose answers agree with an earlier one's on at least
    ``agreement`` (95%) of the items both answered. Candidates come from
    banding (split the items into bands, hash each band, compare only rows
    sharing a band), so the search is not quadratic; the pairs are reported.
``partial``
    under ``min_share`` (50%) of the questions that were relevant to the
    respondent (the questionnaire's ``relevant`` expressions) answered.
``attention``
    an attention check (an instructed item: "to show you read this, choose
    'Tend to disagree'") not answered as expected: declared in the
    questionnaire (``attention: [codes]`` on the question) or in the rules.
``honeypot``
    a question the questionnaire marks ``honeypot: true`` (hidden from people
    by the web form) that holds an answer: only a bot fills it in.
``form``
    the web form's own flags (``volna export`` writes them in the
    ``screening_flags`` column: ``honeypot``, ``too_fast`` — submitted sooner
    after the form was issued than a person can read it —, ``no_proof_of_work``);
    ``flags`` chooses which of them count. Runs when the data have the column.
``gibberish``
    open text that is keyboard mashing, one character repeated, no vowels, or
    the same words pasted over and over.
logical rules
    any XLSForm expression over the answers, declared in the questionnaire's
    ``checks`` or named in the rules file; a row is flagged where it holds.

Attention checks, honeypots and checks declared in the questionnaire always
run: they are part of the study's design. The rules file's ``exclude`` decides
whether their flags exclude or are only reported.

>>> import polars as pl
>>> from volna import Questionnaire
>>> q = Questionnaire.loads('''
... id: demo
... paradata: [{name: duration_sec, type: duration}]
... choice_lists:
...   agree: [{code: "1", value: 1}, {code: "2", value: 2}, {code: "3", value: 3}]
... questions:
...   - {name: a, type: scale, choices: agree}
...   - {name: b, type: scale, choices: agree}
...   - {name: c, type: scale, choices: agree}
... ''')
>>> data = pl.DataFrame({"duration_sec": [100.0, 90.0, 20.0, 110.0],
...                      "a": ["1", "3", "2", "2"], "b": ["2", "3", "1", "1"],
...                      "c": ["3", "3", "1", "3"]})
>>> result = screen(data, q, ScreeningRules(straightlining=StraightliningRule(min_items=3),
...                                         duplicates=None))
>>> result.data["flag_speeder"].to_list(), result.data["flag_straightliner"].to_list()
([False, False, True, False], [False, True, False, False])
>>> result.data["excluded"].to_list()
[False, True, True, False]
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl

from volna.errors import ExpressionError, QuestionnaireError, VolnaError
from volna.questionnaire.model import Question, Questionnaire
from volna.questionnaire.yaml_format import _kind, _Map, _parse_yaml, _Seq, read_text


class ScreeningError(VolnaError):
    """A screening rules file is malformed, or names questions the data lack."""


# -- the rules ----------------------------------------------------------------------


@dataclass(frozen=True)
class SpeederRule:
    """Too fast: under a fraction of the median completion time, or too few seconds per item."""

    fraction_of_median: float = 0.5
    seconds_per_item: float | None = 2.0
    duration: str | None = None  # default: the questionnaire's paradata of type duration


@dataclass(frozen=True)
class StraightliningRule:
    """One answer down a grid of scale questions.

    ``grids`` maps a grid's name to its questions; by default every set of at
    least ``min_items`` scale questions sharing a choice list is a grid.
    ``longest_run`` (if given) also flags that many identical consecutive answers.
    """

    grids: Mapping[str, tuple[str, ...]] | None = None
    min_items: int = 4
    longest_run: int | None = None


@dataclass(frozen=True)
class DuplicateRule:
    """Answer vectors agreeing on at least ``agreement`` of the items both answered."""

    agreement: float = 0.95
    min_items: int = 10
    ignore: tuple[str, ...] = ()
    bands: int | None = None  # default: enough for the pigeonhole guarantee


@dataclass(frozen=True)
class PartialRule:
    """Under ``min_share`` of the relevant questions answered."""

    min_share: float = 0.5


@dataclass(frozen=True)
class AttentionCheck:
    """A question whose answer must be one of ``expected`` (a honeypot or instructed item)."""

    question: str
    expected: tuple[str, ...]


@dataclass(frozen=True)
class FormFlagsRule:
    """The flags ``volna serve`` gave a submission (``volna export``'s ``screening_flags``).

    ``flags`` lists the ones that count (``None``: all of them).
    """

    column: str = "screening_flags"
    flags: tuple[str, ...] | None = None


@dataclass(frozen=True)
class GibberishRule:
    """Open text that is not an answer; ``columns`` default to every text column."""

    columns: tuple[str, ...] | None = None
    min_length: int = 5


@dataclass(frozen=True)
class LogicRule:
    """A named XLSForm expression; respondents for whom it holds are flagged."""

    name: str
    when: str
    message: str | None = None


#: Names of the built-in rules, in the order they are reported.
BUILT_IN = (
    "speeder",
    "straightliner",
    "duplicate",
    "partial",
    "attention",
    "honeypot",
    "form",
    "gibberish",
)


@dataclass(frozen=True)
class ScreeningRules:
    """Which rules run, with what thresholds, and which of them exclude.

    A rule set to ``None`` does not run. ``exclude`` names the rules whose
    flags exclude a respondent; ``None`` means every rule that runs.

    >>> ScreeningRules().names
    ('speeder', 'straightliner', 'duplicate', 'partial', 'form')
    """

    speeders: SpeederRule | None = field(default_factory=SpeederRule)
    straightlining: StraightliningRule | None = field(default_factory=StraightliningRule)
    duplicates: DuplicateRule | None = field(default_factory=DuplicateRule)
    partial: PartialRule | None = field(default_factory=PartialRule)
    attention: tuple[AttentionCheck, ...] = ()
    honeypots: tuple[str, ...] = ()
    form: FormFlagsRule | None = field(default_factory=FormFlagsRule)
    gibberish: GibberishRule | None = None
    logic: tuple[LogicRule, ...] = ()
    exclude: tuple[str, ...] | None = None
    source: str | None = field(default=None, compare=False)

    @property
    def names(self) -> tuple[str, ...]:
        """The rules that run, in report order."""
        on = {
            "speeder": self.speeders,
            "straightliner": self.straightlining,
            "duplicate": self.duplicates,
            "partial": self.partial,
            "attention": self.attention or None,
            "honeypot": self.honeypots or None,
            "form": self.form,
            "gibberish": self.gibberish,
        }
        return tuple(k for k, v in on.items() if v is not None) + tuple(r.name for r in self.logic)

    @property
    def excluding(self) -> tuple[str, ...]:
        """The rules whose flags exclude."""
        return self.names if self.exclude is None else tuple(self.exclude)

    @classmethod
    def load(cls, path: str | Path) -> ScreeningRules:
        """Read a rules file; see :func:`read_rules`."""
        return read_rules(path)

    def with_declared(self, questionnaire: Questionnaire) -> ScreeningRules:
        """These rules plus the attention checks, honeypots and checks of the questionnaire.

        >>> from volna import Questionnaire
        >>> q = Questionnaire.loads('''
        ... id: d
        ... checks: [{name: minor, when: "${age} < 18", message: under 18}]
        ... questions:
        ...   - {name: age, type: integer}
        ...   - {name: read, type: single, choices: [{code: a}, {code: b}], attention: b}
        ...   - {name: website, type: text, honeypot: true}
        ... ''')
        >>> ScreeningRules().with_declared(q).names[-4:]
        ('attention', 'honeypot', 'form', 'minor')
        """
        where = f"{self.source}: " if self.source else ""
        listed = {c.question for c in self.attention}
        attention = self.attention + tuple(
            AttentionCheck(x.name, x.attention)
            for x in questionnaire.questions
            if x.attention and x.name not in listed
        )
        honeypots = tuple(
            dict.fromkeys(
                (*self.honeypots, *(x.name for x in questionnaire.questions if x.honeypot))
            )
        )
        own = {r.name for r in self.logic}
        for check in questionnaire.checks:
            if check.name in own:
                raise ScreeningError(
                    f"{where}logic rule {check.name!r} has the name of a check the "
                    "questionnaire declares"
                )
        declared = tuple(LogicRule(c.name, c.when, c.message("en")) for c in questionnaire.checks)
        out = replace(self, attention=attention, honeypots=honeypots, logic=declared + self.logic)
        for name in out.exclude or ():
            if name not in out.names:
                raise ScreeningError(
                    f"{where}exclude: {name!r} is not a rule that runs "
                    f"(the rules: {', '.join(out.names)})"
                )
        return out


# -- the result ---------------------------------------------------------------------


@dataclass(frozen=True)
class ScreeningResult:
    """The data with ``flag_<rule>``, ``why_<rule>`` and ``excluded``, and what was found.

    ``summary`` has one row per rule: ``rule``, ``flagged`` (rows the rule
    flags), ``excluded`` (rows it excludes: flagged by it, and the rule is in
    the exclusion policy) and ``only`` (rows no other rule flags).
    ``duplicate_pairs`` lists each near-duplicate pair found
    (``first``, ``second`` as 0-based rows, their ids, ``agreement``, ``items``).
    """

    data: pl.DataFrame
    summary: pl.DataFrame
    duplicate_pairs: pl.DataFrame
    rules: ScreeningRules
    candidates: int = 0  # pairs compared by the duplicate search

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
            lines.append(f"duplicate pairs: {self.duplicate_pairs.height}")
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
    if rules.straightlining is not None:
        flags["straightliner"] = _straightliners(frame, questionnaire, rules.straightlining)
    if rules.duplicates is not None:
        flag, why, pairs, candidates = _duplicates(frame, questionnaire, rules.duplicates, ids)
        flags["duplicate"] = (flag, why)
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
    return ScreeningResult(out, summary, pairs, rules, candidates)


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


# -- the rules file -----------------------------------------------------------------

_TOP_KEYS = (
    "speeders",
    "straightlining",
    "duplicates",
    "partial",
    "attention",
    "form",
    "gibberish",
    "logic",
    "exclude",
)
_RULE_KEYS = {
    "speeders": ("fraction_of_median", "seconds_per_item", "duration"),
    "straightlining": ("grids", "min_items", "longest_run"),
    "duplicates": ("agreement", "min_items", "ignore", "bands"),
    "partial": ("min_share",),
    "gibberish": ("columns", "min_length"),
    "form": ("column", "flags"),
}


def read_rules(path: str | Path) -> ScreeningRules:
    """Read a screening rules file (schema: ``examples/okrussians/screening.yaml``).

    Every mistake is one line naming the file, the line and the key.

    >>> from volna.examples import example_path
    >>> rules = read_rules(example_path("okrussians", "screening.yaml"))
    >>> rules.names[:4], rules.duplicates.agreement
    (('speeder', 'straightliner', 'duplicate', 'partial'), 0.95)
    """
    return parse_rules(read_text(path, ScreeningError, "rules file"), str(path))


def parse_rules(text: str, filename: str = "<screening>") -> ScreeningRules:
    """Screening rules from YAML text; see :func:`read_rules`.

    >>> parse_rules("speeders: {fraction_of_median: 0.3}\\nduplicates: off").names
    ('speeder', 'straightliner', 'partial', 'form')
    >>> parse_rules("partial: {min_share: lots}", "s.yaml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    volna.screening.ScreeningError: s.yaml:1: partial.min_share: expected a number ...
    """
    try:
        data = _parse_yaml(text, filename)
    except QuestionnaireError as exc:
        raise ScreeningError(str(exc)) from None
    return _RulesReader(filename).read(data)


class _RulesReader:
    def __init__(self, filename: str) -> None:
        self.filename = filename

    def fail(self, line: int, key: str, message: str) -> ScreeningError:
        return ScreeningError(f"{self.filename}:{line}: {key}: {message}")

    def mapping(self, value: Any, line: int, key: str, allowed: Sequence[str]) -> _Map:
        if not isinstance(value, _Map):
            raise self.fail(line, key, f"expected a mapping, found {_kind(value)}")
        for k in value:
            if k not in allowed:
                raise self.fail(
                    value.lines[k],
                    f"{key}.{k}" if key else str(k),
                    f"unknown key (expected one of: {', '.join(allowed)})",
                )
        return value

    def number(self, m: _Map, k: str, key: str, low: float, high: float | None) -> float:
        v = m[k]
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float)
            or not math.isfinite(v)
            or v < low
            or (high is not None and v > high)
        ):
            span = f"between {low:g} and {high:g}" if high is not None else f"of at least {low:g}"
            raise self.fail(m.lines[k], f"{key}.{k}", f"expected a number {span}, found {v!r}")
        return float(v)

    def names(self, value: Any, line: int, key: str) -> tuple[str, ...]:
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list) or not all(
            isinstance(x, str | int) and not isinstance(x, bool) for x in value
        ):
            raise self.fail(line, key, f"expected a list of names, found {_kind(value)}")
        return tuple(str(x) for x in value)

    def rule(self, data: _Map, name: str, default: Any) -> Any:
        """The rule's settings: absent -> defaults; off/false -> not run; a mapping."""
        if name not in data:
            return default
        value = data[name]
        line = data.lines[name]
        if value is False or value is None:
            return None
        if value is True:
            return default if default is not None else type(self).DEFAULTS[name]()
        return self.mapping(value, line, name, _RULE_KEYS[name])

    DEFAULTS: ClassVar[dict[str, type]] = {
        "speeders": SpeederRule,
        "straightlining": StraightliningRule,
        "duplicates": DuplicateRule,
        "partial": PartialRule,
        "gibberish": GibberishRule,
        "form": FormFlagsRule,
    }

    def read(self, data: Any) -> ScreeningRules:
        if data is None:
            return ScreeningRules(source=self.filename)
        data = self.mapping(data, 1, "", _TOP_KEYS)
        out = ScreeningRules(source=self.filename)
        m = self.rule(data, "speeders", SpeederRule())
        if isinstance(m, _Map):
            kw: dict[str, Any] = {}
            if "fraction_of_median" in m:
                kw["fraction_of_median"] = self.number(m, "fraction_of_median", "speeders", 0, 1)
            if "seconds_per_item" in m:
                kw["seconds_per_item"] = (
                    None
                    if m["seconds_per_item"] in (None, False)
                    else self.number(m, "seconds_per_item", "speeders", 0, None)
                )
            if "duration" in m:
                kw["duration"] = self.names(
                    m["duration"], m.lines["duration"], "speeders.duration"
                )[0]
            m = SpeederRule(**kw)
        out = replace(out, speeders=m)
        m = self.rule(data, "straightlining", StraightliningRule())
        if isinstance(m, _Map):
            kw = {}
            if "min_items" in m:
                kw["min_items"] = int(self.number(m, "min_items", "straightlining", 2, None))
            if m.get("longest_run") is not None:
                kw["longest_run"] = int(self.number(m, "longest_run", "straightlining", 2, None))
            if "grids" in m:
                grids = m["grids"]
                if not isinstance(grids, _Map):
                    raise self.fail(
                        m.lines["grids"],
                        "straightlining.grids",
                        f"expected a mapping of grid names to question lists, found {_kind(grids)}",
                    )
                kw["grids"] = {
                    str(g): self.names(v, grids.lines[g], f"straightlining.grids.{g}")
                    for g, v in grids.items()
                }
            m = StraightliningRule(**kw)
        out = replace(out, straightlining=m)
        m = self.rule(data, "duplicates", DuplicateRule())
        if isinstance(m, _Map):
            kw = {}
            if "agreement" in m:
                kw["agreement"] = self.number(m, "agreement", "duplicates", 0.5, 1)
            if "min_items" in m:
                kw["min_items"] = int(self.number(m, "min_items", "duplicates", 1, None))
            if "bands" in m:
                kw["bands"] = int(self.number(m, "bands", "duplicates", 1, None))
            if "ignore" in m:
                kw["ignore"] = self.names(m["ignore"], m.lines["ignore"], "duplicates.ignore")
            m = DuplicateRule(**kw)
        out = replace(out, duplicates=m)
        m = self.rule(data, "partial", PartialRule())
        if isinstance(m, _Map):
            m = PartialRule(
                **(
                    {"min_share": self.number(m, "min_share", "partial", 0, 1)}
                    if "min_share" in m
                    else {}
                )
            )
        out = replace(out, partial=m)
        m = self.rule(data, "gibberish", None)
        if isinstance(m, _Map):
            kw = {}
            if "columns" in m:
                kw["columns"] = self.names(m["columns"], m.lines["columns"], "gibberish.columns")
            if "min_length" in m:
                kw["min_length"] = int(self.number(m, "min_length", "gibberish", 1, None))
            m = GibberishRule(**kw)
        out = replace(out, gibberish=m)
        m = self.rule(data, "form", FormFlagsRule())
        if isinstance(m, _Map):
            kw = {}
            if "column" in m:
                kw["column"] = self.names(m["column"], m.lines["column"], "form.column")[0]
            if "flags" in m:
                kw["flags"] = self.names(m["flags"], m.lines["flags"], "form.flags")
            m = FormFlagsRule(**kw)
        out = replace(out, form=m)
        out = replace(out, attention=self.attention(data), logic=self.logic(data))
        if "exclude" in data:
            out = replace(out, exclude=self.exclude(data, out))
        return out

    def entries(self, data: _Map, key: str) -> list[tuple[int, _Map]]:
        value = data.get(key)
        if value is None:
            return []
        if not isinstance(value, _Seq):
            raise self.fail(data.lines[key], key, f"expected a list, found {_kind(value)}")
        return list(zip(value.lines, value, strict=True))

    def attention(self, data: _Map) -> tuple[AttentionCheck, ...]:
        out = []
        for i, (line, item) in enumerate(self.entries(data, "attention")):
            key = f"attention[{i}]"
            m = self.mapping(item, line, key, ("question", "expected"))
            for k in ("question", "expected"):
                if m.get(k) is None:
                    raise self.fail(m.line or line, f"{key}.{k}", "is required")
            question = self.names(m["question"], m.lines["question"], f"{key}.question")[0]
            expected = m["expected"]
            expected = expected if isinstance(expected, list) else [expected]
            out.append(
                AttentionCheck(
                    question,
                    self.names([str(x) for x in expected], m.lines["expected"], f"{key}.expected"),
                )
            )
        return tuple(out)

    def logic(self, data: _Map) -> tuple[LogicRule, ...]:
        out: list[LogicRule] = []
        for i, (line, item) in enumerate(self.entries(data, "logic")):
            key = f"logic[{i}]"
            m = self.mapping(item, line, key, ("name", "when", "message"))
            for k in ("name", "when"):
                if not isinstance(m.get(k), str) or not m[k].strip():
                    raise self.fail(
                        m.lines.get(k, m.line or line), f"{key}.{k}", "is required (text)"
                    )
            name = m["name"]
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise self.fail(m.lines["name"], f"{key}.name", f"not a valid rule name: {name!r}")
            if name in BUILT_IN or any(r.name == name for r in out):
                raise self.fail(m.lines["name"], f"{key}.name", f"the name {name!r} is taken")
            message = m.get("message")
            out.append(LogicRule(name, m["when"], str(message) if message is not None else None))
        return tuple(out)

    def exclude(self, data: _Map, rules: ScreeningRules) -> tuple[str, ...]:
        value = data["exclude"]
        line = data.lines["exclude"]
        if value == "all":
            return None
        if value in ("none", None, False):
            return ()
        names = self.names(value, line, "exclude")
        for name in names:
            # What the questionnaire declares (attention checks, honeypots, checks) is
            # known only when screening runs: ScreeningRules.with_declared checks it.
            declarable = name in ("attention", "honeypot") or name not in BUILT_IN
            if name not in rules.names and not declarable:
                raise self.fail(
                    line,
                    "exclude",
                    f"{name!r} is not a rule that runs (the rules: {', '.join(rules.names)})",
                )
        return names


# -- sensitivity: what excluding the flagged respondents changes ----------------------


def sensitivity(
    result: ScreeningResult,
    variables: str | Sequence[str],
    *,
    design=None,
    conf_level: float = 0.95,
) -> pl.DataFrame:
    """Estimates with every respondent and without those the policy excludes, side by side.

    For each level of a categorical variable (its share) or a numeric one (its mean):
    ``all``, ``kept``, ``difference`` (all minus kept), its standard error, confidence
    interval and p-value, and the respondents behind each. The difference is a
    function of four totals -- ``Y`` and ``N`` over everyone who answered, ``Y_k`` and
    ``N_k`` over those kept -- whose covariance the design gives, so its standard
    error is the exact linearization ``g' V g`` (not two independent samples: the kept
    respondents are part of all of them).

    ``design`` is a :class:`~volna.design.SurveyDesign` built on ``result.data`` (same
    rows; weights, strata, clusters); without it every respondent counts once.

    >>> import polars as pl
    >>> from volna.questionnaire import Questionnaire
    >>> frame = pl.DataFrame({"a": ["x", "y", "x", "x"], "excluded": [False, False, False, True]})
    >>> res = ScreeningResult(frame, pl.DataFrame(), _empty_pairs(), ScreeningRules())
    >>> table = sensitivity(res, "a")
    >>> table.select("level", "all", "kept", "difference").to_dicts()[0]
    {'level': 'x', 'all': 0.75, 'kept': 0.6666666666666666, 'difference': 0.08333333333333337}
    """
    from scipy import stats

    from volna.design import SurveyDesign, level_labels

    data = result.data
    if design is None:
        design = SurveyDesign.from_frame(data)
    elif design.data.height != data.height:
        raise VolnaError(
            f"the design has {design.data.height} rows, the screened data {data.height}; "
            "build the design on result.data"
        )
    kept = (~data["excluded"].fill_null(False)).cast(pl.Float64)
    z = stats.norm.ppf(0.5 + conf_level / 2)
    rows = []
    for name in [variables] if isinstance(variables, str) else list(variables):
        if name not in data.columns:
            raise VolnaError(f"sensitivity: {name} is not a column of the data")
        series = data.get_column(name)
        answered = series.is_not_null()
        if series.dtype.is_float():
            answered = answered & series.is_not_nan()
        if series.dtype.is_numeric() and series.dtype != pl.Boolean:
            items = [(None, series.cast(pl.Float64).fill_nan(None).fill_null(0.0))]
        else:
            text = level_labels(series)
            levels = sorted(set(text.drop_nulls().to_list()))
            items = [(lv, (text == lv).fill_null(False).cast(pl.Float64)) for lv in levels]
        a = answered.cast(pl.Float64)
        series_list = []
        for k, (_, y) in enumerate(items):
            series_list += [
                (y * a).alias(f"Y{k}"),
                a.alias(f"N{k}"),
                (y * a * kept).alias(f"Yk{k}"),
                (a * kept).alias(f"Nk{k}"),
            ]
        est = design.total(series_list, vcov=True, deff=False)
        t = est.to_polars()["estimate"].to_numpy()
        v = est.vcov
        for k, (level, _) in enumerate(items):
            Y, N, Yk, Nk = t[4 * k : 4 * k + 4]
            with np.errstate(divide="ignore", invalid="ignore"):
                all_, kept_ = Y / N, Yk / Nk
                g = np.array([1 / N, -Y / N**2, -1 / Nk, Yk / Nk**2])
            block = v[4 * k : 4 * k + 4, 4 * k : 4 * k + 4]
            var = float(g @ block @ g) if np.all(np.isfinite(g)) else math.nan
            se = math.sqrt(max(var, 0.0)) if math.isfinite(var) else math.nan
            diff = all_ - kept_
            p = 2 * stats.norm.sf(abs(diff) / se) if se > 0 else math.nan
            rows.append(
                {
                    "variable": name,
                    "level": level,
                    "all": float(all_),
                    "kept": float(kept_),
                    "difference": float(diff),
                    "se": se,
                    "ci_low": diff - z * se,
                    "ci_high": diff + z * se,
                    "p_value": p,
                    "n_all": int(answered.sum()),
                    "n_kept": int((answered & (kept > 0)).sum()),
                }
            )
    return pl.DataFrame(rows, schema_overrides={"level": pl.String})
