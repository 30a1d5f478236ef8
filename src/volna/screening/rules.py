"""The screening rules: what runs, with which thresholds, and the rules file."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from volna.errors import QuestionnaireError, VolnaError
from volna.questionnaire.model import Questionnaire
from volna.questionnaire.yaml_format import _kind, _Map, _parse_yaml, _Seq, read_text


class ScreeningError(VolnaError):
    """A screening rules file is malformed, or names questions the data lack."""


ScreeningError.__module__ = "volna.screening"  # its public home, as in tracebacks


# -- the rules ----------------------------------------------------------------------


@dataclass(frozen=True)
class SpeederRule:
    """Too fast: under a fraction of the median completion time, or too few seconds per item."""

    fraction_of_median: float = 0.5
    seconds_per_item: float | None = 2.0
    duration: str | None = None  # default: the questionnaire's paradata of type duration


@dataclass(frozen=True)
class PageSpeedRule:
    """Pages answered too fast: seconds per answered item on a page of the form.

    A page is too fast under ``fraction_of_median`` of the median seconds per
    item on that page, or under ``seconds_per_item`` (off by default); a
    respondent is flagged with at least ``at_least`` such pages. Runs when the
    questionnaire times pages (``duration`` paradata with a ``page``).
    """

    fraction_of_median: float = 0.25
    seconds_per_item: float | None = None
    at_least: int = 1


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
    """Two respondents whose answers differ on at most ``1 - agreement`` of the questions.

    The default 0.9 allows 10% of the questions either answered to differ,
    rounded up (3 of 21 to 30, 4 of 31 to 40): the same person, or a bot farm,
    answering again with a few edits. Each question is one item (a
    multiple-choice question's whole set of ticks is one answer); a question
    the skip logic asked of only one of the two is not compared.
    """

    agreement: float = 0.9
    min_items: int = 10
    ignore: tuple[str, ...] = ()
    bands: int | None = None  # default: enough for the pigeonhole guarantee


def _default_indices() -> dict[str, float]:
    return {"random_answers": 0.001, "mahalanobis": 0.001}


@dataclass(frozen=True)
class CarelessRule:
    """Careless-responding indices, their cut-offs, and how many must agree to flag.

    ``indices`` maps an index of :mod:`volna.screening.careless` to its cut-off;
    a respondent is flagged when at least ``at_least`` of them pass theirs.
    ``critval`` is the item correlation that makes two items psychometric
    synonyms (antonyms: below minus it); ``min_items`` the scale items (closed
    questions for ``rare_answers``) an index needs.
    """

    indices: Mapping[str, float] = field(default_factory=_default_indices)
    at_least: int = 1
    critval: float = 0.6
    min_items: int = 4


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
    "page_speed",
    "straightliner",
    "duplicate",
    "careless",
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
    ('speeder', 'page_speed', 'straightliner', 'duplicate', 'careless', 'partial', 'form')
    """

    speeders: SpeederRule | None = field(default_factory=SpeederRule)
    page_speed: PageSpeedRule | None = field(default_factory=PageSpeedRule)
    straightlining: StraightliningRule | None = field(default_factory=StraightliningRule)
    duplicates: DuplicateRule | None = field(default_factory=DuplicateRule)
    careless: CarelessRule | None = field(default_factory=CarelessRule)
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
            "page_speed": self.page_speed,
            "straightliner": self.straightlining,
            "duplicate": self.duplicates,
            "careless": self.careless,
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


# -- the rules file -----------------------------------------------------------------

_TOP_KEYS = (
    "speeders",
    "page_speed",
    "straightlining",
    "duplicates",
    "careless",
    "partial",
    "attention",
    "form",
    "gibberish",
    "logic",
    "exclude",
)
_RULE_KEYS = {
    "speeders": ("fraction_of_median", "seconds_per_item", "duration"),
    "page_speed": ("fraction_of_median", "seconds_per_item", "at_least"),
    "straightlining": ("grids", "min_items", "longest_run"),
    "duplicates": ("agreement", "min_items", "ignore", "bands"),
    "careless": ("indices", "at_least", "critval", "min_items"),
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
    (('speeder', 'page_speed', 'straightliner', 'duplicate'), 0.9)
    """
    return parse_rules(read_text(path, ScreeningError, "rules file"), str(path))


def parse_rules(text: str, filename: str = "<screening>") -> ScreeningRules:
    """Screening rules from YAML text; see :func:`read_rules`.

    >>> parse_rules("speeders: {fraction_of_median: 0.3}\\nduplicates: off").names
    ('speeder', 'page_speed', 'straightliner', 'careless', 'partial', 'form')
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
        "page_speed": PageSpeedRule,
        "straightlining": StraightliningRule,
        "duplicates": DuplicateRule,
        "careless": CarelessRule,
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
        m = self.rule(data, "page_speed", PageSpeedRule())
        if isinstance(m, _Map):
            kw = {}
            if "fraction_of_median" in m:
                kw["fraction_of_median"] = self.number(m, "fraction_of_median", "page_speed", 0, 1)
            if "seconds_per_item" in m:
                kw["seconds_per_item"] = (
                    None
                    if m["seconds_per_item"] in (None, False)
                    else self.number(m, "seconds_per_item", "page_speed", 0, None)
                )
            if "at_least" in m:
                kw["at_least"] = int(self.number(m, "at_least", "page_speed", 1, None))
            m = PageSpeedRule(**kw)
        out = replace(out, page_speed=m)
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
        m = self.rule(data, "careless", CarelessRule())
        if isinstance(m, _Map):
            m = self.careless(m)
        out = replace(out, careless=m)
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

    def careless(self, m: _Map) -> CarelessRule:
        from volna.screening.careless import DIRECTION

        kw: dict[str, Any] = {}
        if "indices" in m:
            given = m["indices"]
            if not isinstance(given, _Map):
                raise self.fail(
                    m.lines["indices"],
                    "careless.indices",
                    f"expected a mapping of index names to cut-offs, found {_kind(given)}",
                )
            self.mapping(given, m.lines["indices"], "careless.indices", tuple(DIRECTION))
            kw["indices"] = {
                str(k): self.number(given, k, "careless.indices", -1e9, None) for k in given
            }
        if "at_least" in m:
            kw["at_least"] = int(self.number(m, "at_least", "careless", 1, None))
        if "critval" in m:
            kw["critval"] = self.number(m, "critval", "careless", 0, 1)
        if "min_items" in m:
            kw["min_items"] = int(self.number(m, "min_items", "careless", 2, None))
        return CarelessRule(**kw)

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
