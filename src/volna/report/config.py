"""What a report shows and how: the report configuration file (``report.yaml``).

:func:`load_config` reads the YAML described at the top of
``examples/okrussians/report.yaml`` into a frozen :class:`ReportConfig`; every mistake is
one line naming the file, the line and the key (``report.yaml:12: rules.alpha: expected
a number between 0 and 1, found 5``), as :func:`volna.margins.read_margins` does. Names
that need the questionnaire (questions, banner sources) are checked when the report is
built, still with the line they were written on (:meth:`ReportConfig.where`).

:func:`read_benchmarks` reads a benchmarks file (the schema is at the top of
``examples/okrussians/benchmarks.yaml``) the same way.

>>> config = parse_config('''
... title: {ru: Отчёт, en: Report}
... banners: [sector, {name: age_group, from: age, bins: {young: [18, 34], old: [35, null]}}]
... rules: {min_n: 20, correction: bonferroni}
... ''', "report.yaml")
>>> config.title["en"], [b.name for b in config.banners], config.rules.min_n
('Report', ['sector', 'age_group'], 20)
>>> config.banners[1].bins["old"]
(35.0, None)
>>> parse_config("rules: {alpha: 5}", "r.yaml")
Traceback (most recent call last):
...
volna.report.config.ConfigError: r.yaml:1: rules.alpha: expected a number between 0 and 1, found 5
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from volna.design import label
from volna.disclosure import CI_METHODS, CORRECTIONS, RULE_ACTIONS, TableRules
from volna.errors import QuestionnaireError, VolnaError
from volna.questionnaire.model import pick_label
from volna.questionnaire.yaml_format import (
    _kind,
    _Map,
    _parse_yaml,
    _Seq,
    level_problem,
    read_text,
)

#: how weighting may be done
WEIGHTING_METHODS = ("rake", "poststratify")
MISSING_POLICIES = ("error", "exclude")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_DATE = re.compile(r"^\d{4}-\d{2}(-\d{2})?$")

Text = Mapping[str, str]  # language -> text ("" for text in no particular language)


class ConfigError(VolnaError):
    """A report configuration (or benchmarks) file that cannot be used as written."""


def text_in(text: Text | None, lang: str, fallback: str = "") -> str:
    """A configured text in ``lang`` (else any language given, else ``fallback``).

    >>> text_in({"ru": "Да", "en": "Yes"}, "en"), text_in({"": "OK"}, "ru"), text_in({}, "ru", "-")
    ('Yes', 'OK', '-')
    """
    if not text:
        return fallback
    return pick_label(text, lang, fallback)


def _frozen(mapping: Mapping | None) -> Mapping:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Banner:
    """A banner variable: a question, or a variable made from one (bins or groups).

    ``bins`` cut a numeric question into levels with inclusive bounds (``None``: no
    bound), as margins' ``derived`` variables; ``groups`` gather the codes of a choice or
    country question into levels (``other`` collects every code not listed). ``label``
    is the span's title and ``labels`` the levels' titles, per language; by default the
    question's label and its choices' (or countries') names.
    """

    name: str
    source: str
    label: Text = field(default_factory=dict)
    bins: Mapping[str, tuple[float | None, float | None]] | None = None
    groups: Mapping[str, tuple[str, ...]] | None = None
    other: str | None = None
    labels: Mapping[str, Text] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", _frozen(self.label))
        object.__setattr__(self, "labels", _frozen(self.labels))
        if self.bins is not None:
            object.__setattr__(self, "bins", _frozen(self.bins))
        if self.groups is not None:
            object.__setattr__(self, "groups", _frozen(self.groups))

    @property
    def derived(self) -> bool:
        """True when the banner is made from its source (bins or groups)."""
        return self.bins is not None or self.groups is not None


@dataclass(frozen=True)
class WeightingConfig:
    """How to weight the responses: margins from a file, by name, and the options.

    ``use``: the margins' names (``None``: all of the file); ``collapse`` merges levels,
    ``{variable: {level: into}}``; ``missing``: ``"error"`` or ``"exclude"`` (respondents
    without a value are outside that margin); ``trim_upper`` caps the weights at so many
    times their mean, keeping the margins.
    """

    margins: Path
    use: tuple[str, ...] | None = None
    method: str = "rake"
    collapse: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    missing: str = "error"
    trim_upper: float | None = None


@dataclass(frozen=True)
class ReplicateConfig:
    """Replicate weight columns (a prefix or a regular expression) and how to use them.

    As :meth:`volna.design.SurveyDesign.replicate`: ``type`` (JK1, BRR, bootstrap, SDR,
    ACS or other; JKn and Fay need per-replicate factors a report file does not take),
    ``scale`` when it differs from the type's, ``mse`` to centre the replicates on the
    full-sample estimate. The full-sample weight is ``weights``.
    """

    columns: str
    type: str
    scale: float | None = None
    mse: bool | None = None


@dataclass(frozen=True)
class Wave:
    """Another wave of the same questionnaire: its responses and how to call it."""

    label: Text
    data: Path


@dataclass(frozen=True)
class Study:
    """What AAPOR's disclosure standard asks a report to say about the study.

    Sponsor, who conducted it, the population, how the sample was recruited (for a
    non-probability sample: say so, and how), the mode, the fieldwork dates and the
    limitations -- each in the report languages. Sample sizes, weighting, precision and
    the questionnaire's wording come from the data and the other settings.
    """

    sponsor: Text = field(default_factory=dict)
    conducted_by: Text = field(default_factory=dict)
    population: Text = field(default_factory=dict)
    sample: Text = field(default_factory=dict)
    mode: Text = field(default_factory=dict)
    fieldwork_start: str | None = None
    fieldwork_end: str | None = None
    limitations: Text = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("sponsor", "conducted_by", "population", "sample", "mode", "limitations"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))


MODEL_FAMILIES = ("binomial", "quasibinomial", "gaussian", "poisson", "quasipoisson")
_MODEL_KEYS = ("formula", "family", "success", "where", "label")


@dataclass(frozen=True)
class ModelSpec:
    """A regression table of the report (``models:``): formula, family, domain, label.

    ``success`` are the codes of a choice question response counted as 1 (the others
    0, an unanswered question missing); ``where`` keeps the respondents whose answer
    to each question is one of its codes, as a domain of the full design.
    """

    formula: str
    family: str
    success: tuple[str, ...] = ()
    where: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    label: Text = field(default_factory=dict)
    key: str = "models[0]"


@dataclass(frozen=True)
class ReportConfig:
    """Everything a report needs besides the questionnaire and the responses.

    See the annotated example ``examples/okrussians/report.yaml`` for every key.
    ``ReportConfig.default()`` is a report of every answerable question, unweighted,
    with the default rules (:class:`~volna.disclosure.TableRules`).
    """

    title: Text = field(default_factory=dict)
    study: Study = field(default_factory=Study)
    clusters: str | None = None
    strata: str | None = None
    #: replicate weights instead of clusters and strata
    replicates: ReplicateConfig | None = None
    weights: str | None = None
    weighting: WeightingConfig | None = None
    questions: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    banners: tuple[Banner, ...] = ()
    paired: bool = True
    benchmarks: Path | None = None
    #: screen the responses first (``volna.screening``): the rules file, and the
    #: variables whose estimates are shown with and without the excluded respondents
    screening: ScreeningConfig | None = None
    #: names for the benchmarks in the report, by benchmark name, per language
    benchmark_labels: Mapping[str, Text] = field(default_factory=dict)
    #: regression tables (``models:``)
    models: tuple[ModelSpec, ...] = ()
    wave: Text = field(default_factory=dict)
    waves: tuple[Wave, ...] = ()
    rules: TableRules = field(default_factory=TableRules)
    charts: bool = True
    #: the file it was read from, and the line of each key, for messages
    source: str | None = None
    lines: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "title", _frozen(self.title))
        object.__setattr__(self, "wave", _frozen(self.wave))
        object.__setattr__(self, "lines", _frozen(self.lines))
        object.__setattr__(self, "benchmark_labels", _frozen(self.benchmark_labels))

    @classmethod
    def default(cls) -> ReportConfig:
        """Every answerable question, unweighted, default rules, no banners.

        >>> ReportConfig.default().rules.min_n
        10
        """
        return cls()

    def where(self, key: str) -> str:
        """``file:line: key`` for a message about ``key`` (as far as it is known).

        >>> ReportConfig(source="r.yaml", lines={"banners[0]": 7}).where("banners[0]")
        'r.yaml:7: banners[0]'
        """
        head = self.source or "<report configuration>"
        line = self.lines.get(key)
        if line is None:
            # the closest enclosing key that has a line
            parts = key
            while line is None and ("." in parts or "[" in parts):
                cut = max(parts.rfind("."), parts.rfind("["))
                parts = parts[:cut]
                line = self.lines.get(parts)
        return f"{head}:{line}: {key}" if line else f"{head}: {key}"


# ---------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class ScreeningConfig:
    """Screen before anything else: exclude as the rules file says, show what it changes."""

    rules: Path | None = None
    compare: tuple[str, ...] = ()


_TOP_KEYS = (
    "title",
    "study",
    "design",
    "weights",
    "weighting",
    "questions",
    "exclude",
    "banners",
    "paired",
    "benchmarks",
    "models",
    "screening",
    "wave",
    "waves",
    "rules",
    "charts",
)
_STUDY_KEYS = (
    "sponsor",
    "conducted_by",
    "population",
    "sample",
    "mode",
    "fieldwork",
    "limitations",
)
_DESIGN_KEYS = ("clusters", "strata", "replicate_weights", "type", "scale", "mse")
REPLICATE_TYPES = ("JK1", "BRR", "bootstrap", "SDR", "ACS", "other")
_WEIGHTING_KEYS = ("margins", "use", "method", "collapse", "missing", "trim_upper")
_BANNER_KEYS = ("name", "from", "label", "bins", "groups", "other", "labels")
_WAVE_KEYS = ("label", "data")
_RULE_KEYS = (
    "min_n",
    "nchs",
    "group_disclosure",
    "group_k",
    "alpha",
    "correction",
    "ci",
    "conf_level",
)


def load_config(path: str | Path) -> ReportConfig:
    """Read a report configuration file; relative file names are from its folder.

    >>> from volna.examples import example_path
    >>> config = load_config(example_path("okrussians", "report.yaml"))
    >>> config.clusters, config.weighting.use, config.rules.ci
    ('channel', ('destination_bell_2024', 'age_gender_illustrative'), 'beta')
    """
    path = Path(path)
    text = read_text(path, ConfigError, "report settings")
    return parse_config(text, str(path), base=path.parent)


def parse_config(
    text: str, filename: str = "<report configuration>", *, base: Path | None = None
) -> ReportConfig:
    """A report configuration from YAML text; see :func:`load_config`.

    ``base`` is the folder relative file names are read from (the current one if not
    given); files named must exist.
    """
    try:
        data = _parse_yaml(text, filename)
    except QuestionnaireError as exc:
        raise ConfigError(str(exc)) from None
    return _ConfigReader(filename, base or Path(".")).read(data)


class _Reader:
    """Shared pieces: typed values with ``file:line: key: expected ...`` errors."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.lines: dict[str, int] = {}

    def fail(self, line: int, key: str, message: str) -> ConfigError:
        head = f"{self.filename}:{line}: " if line else f"{self.filename}: "
        return ConfigError(f"{head}{key}: {message}")

    def mapping(self, value: Any, line: int, key: str, allowed: tuple[str, ...]) -> _Map:
        if not isinstance(value, _Map):
            raise self.fail(line, key, f"expected a mapping, found {_kind(value)}")
        for k in value:
            if k not in allowed:
                raise self.fail(
                    value.lines[k],
                    f"{key}.{k}" if key else k,
                    f"unknown key (expected one of: {', '.join(allowed)})",
                )
        return value

    def name(self, value: Any, line: int, key: str) -> str:
        if not isinstance(value, str) or not _NAME.match(value):
            raise self.fail(line, key, f"expected a name (letters, digits, _ . -), found {value!r}")
        return value

    def names(self, value: Any, line: int, key: str) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise self.fail(line, key, f"expected a list of names, found {_kind(value)}")
        out: list[str] = []
        lines = getattr(items, "lines", [line] * len(items))
        for v, ln in zip(items, lines, strict=True):
            n = self.name(v, ln or line, key)
            if n in out:
                raise self.fail(ln or line, key, f"{n} is listed twice")
            out.append(n)
        return tuple(out)

    def text(self, value: Any, line: int, key: str) -> dict[str, str]:
        """Text in one language for all, or a mapping language: text."""
        if value is None:
            return {}
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return {"": str(value)}
        if isinstance(value, _Map):
            out = {}
            for lang, t in value.items():
                if not isinstance(t, str | int | float) or isinstance(t, bool):
                    raise self.fail(
                        value.lines[lang], f"{key}.{lang}", f"expected text, found {_kind(t)}"
                    )
                out[lang] = str(t)
            return out
        raise self.fail(
            line, key, f"expected text or a mapping language: text, found {_kind(value)}"
        )

    def flag(self, value: Any, line: int, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(line, key, f"expected true or false, found {value!r}")
        return value

    def number(
        self,
        value: Any,
        line: int,
        key: str,
        *,
        low: float = -math.inf,
        high: float = math.inf,
        open_: bool = False,
        what: str = "",
    ) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if ok:
            ok = (low < value < high) if open_ else (low <= value <= high)
        if not ok:
            raise self.fail(line, key, f"expected {what or 'a number'}, found {value!r}")
        return float(value)

    def whole(self, value: Any, line: int, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(line, key, f"expected a whole number of 0 or more, found {value!r}")
        return int(value)

    def date(self, value: Any, line: int, key: str) -> str:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value.isoformat()
        if isinstance(value, str) and _DATE.match(value):
            try:
                dt.date.fromisoformat(value if len(value) == 10 else f"{value}-01")
                return value
            except ValueError:
                pass
        raise self.fail(line, key, f"expected a date YYYY-MM-DD or YYYY-MM, found {value!r}")

    def level(self, value: Any, line: int, key: str) -> str:
        problem = level_problem(value)
        if problem is not None:
            raise self.fail(line, key, problem)
        return label(value)


class _ConfigReader(_Reader):
    def __init__(self, filename: str, base: Path) -> None:
        super().__init__(filename)
        self.base = base

    def model(self, value: Any, line: int, i: int) -> ModelSpec:
        """One entry of ``models:``; the formula is read now, its names at build time."""
        from volna.models import ModelError, parse_formula

        key = f"models[{i}]"
        m = self.mapping(value, line, key, _MODEL_KEYS)
        self.lines[key] = line
        for k in m:
            self.lines[f"{key}.{k}"] = m.lines[k]
        if m.get("formula") is None:
            raise self.fail(line, f"{key}.formula", "is required, e.g. 'plans ~ age + sector'")
        formula, fl = m["formula"], m.lines["formula"]
        if not isinstance(formula, str):
            raise self.fail(fl, f"{key}.formula", f"expected a formula, found {_kind(formula)}")
        try:
            parse_formula(formula)
        except ModelError as exc:
            raise self.fail(fl, f"{key}.formula", str(exc)) from None
        family = m.get("family")
        if family not in MODEL_FAMILIES:
            raise self.fail(
                m.lines.get("family", line),
                f"{key}.family",
                f"expected one of {', '.join(MODEL_FAMILIES)}, found {family!r}",
            )
        success: tuple[str, ...] = ()
        if m.get("success") is not None:
            raw = m["success"]
            items = raw if isinstance(raw, list) else [raw]
            success = tuple(self.level(v, m.lines["success"], f"{key}.success") for v in items)
        where: dict[str, tuple[str, ...]] = {}
        if m.get("where") is not None:
            w, wl = m["where"], m.lines["where"]
            if not isinstance(w, _Map) or not w:
                raise self.fail(
                    wl, f"{key}.where", f"expected {{question: [codes]}}, found {_kind(w)}"
                )
            for q, codes in w.items():
                q = self.name(q, w.lines[q], f"{key}.where")
                items = codes if isinstance(codes, list) else [codes]
                where[q] = tuple(self.level(v, w.lines[q], f"{key}.where.{q}") for v in items)
        label = self.text(m.get("label"), m.lines.get("label", line), f"{key}.label")
        return ModelSpec(formula, family, success, where, label, key)

    def file(self, value: Any, line: int, key: str) -> Path:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(line, key, f"expected a file name, found {_kind(value)}")
        path = Path(value)
        if not path.is_absolute():
            path = self.base / path
        if not path.is_file():
            raise self.fail(line, key, f"no such file: {path}")
        return path

    def action(self, value: Any, line: int, key: str) -> str:
        if value is True:
            return "flag"
        if value is False:
            return "off"
        if value not in RULE_ACTIONS:
            raise self.fail(
                line, key, f"expected true, false, flag, suppress or off, found {value!r}"
            )
        return value

    # ---- parts -------------------------------------------------------------------------

    def study(self, value: Any, line: int) -> Study:
        m = self.mapping(value, line, "study", _STUDY_KEYS)
        self.lines["study"] = line
        out: dict[str, Any] = {}
        for k in ("sponsor", "conducted_by", "population", "sample", "mode", "limitations"):
            if k in m:
                out[k] = self.text(m[k], m.lines[k], f"study.{k}")
        if m.get("fieldwork") is not None:
            ln = m.lines["fieldwork"]
            fw = self.mapping(m["fieldwork"], ln, "study.fieldwork", ("start", "end"))
            start = fw.get("start")
            end = fw.get("end")
            if start is not None:
                out["fieldwork_start"] = self.date(
                    start, fw.lines["start"], "study.fieldwork.start"
                )
            if end is not None:
                out["fieldwork_end"] = self.date(end, fw.lines["end"], "study.fieldwork.end")
            if (
                start is not None
                and end is not None
                and out["fieldwork_end"] < out["fieldwork_start"]
            ):
                raise self.fail(fw.lines["end"], "study.fieldwork.end", "is before the start")
        return Study(**out)

    def design(self, value: Any, line: int) -> dict[str, Any]:
        m = self.mapping(value, line, "design", _DESIGN_KEYS)
        self.lines["design"] = line
        for k, ln in m.lines.items():
            self.lines[f"design.{k}"] = ln
        out: dict[str, Any] = {}
        for k in ("clusters", "strata"):
            if m.get(k) is not None:
                out[k] = self.name(m[k], m.lines[k], f"design.{k}")
        if m.get("replicate_weights") is None:
            for k in ("type", "scale", "mse"):
                if k in m:
                    raise self.fail(m.lines[k], f"design.{k}", "applies to replicate_weights only")
            return out
        if out:
            k = next(iter(out))
            raise self.fail(
                m.lines[k],
                f"design.{k}",
                "give clusters and strata, or replicate weights, not both (replicate weights "
                "already carry the design)",
            )
        spec = m["replicate_weights"]
        if not isinstance(spec, str) or not spec.strip():
            raise self.fail(
                m.lines["replicate_weights"],
                "design.replicate_weights",
                f"expected a prefix or a regular expression of columns, found {_kind(spec)}",
            )
        kind = m.get("type")
        if kind is None:
            raise self.fail(line, "design.type", "is required with replicate_weights")
        if kind not in REPLICATE_TYPES:
            raise self.fail(
                m.lines["type"],
                "design.type",
                f"expected one of {', '.join(REPLICATE_TYPES)}, found {kind!r}",
            )
        scale = None
        if m.get("scale") is not None:
            scale = self.number(
                m["scale"],
                m.lines["scale"],
                "design.scale",
                low=0,
                open_=True,
                what="a positive number",
            )
        mse = None
        if m.get("mse") is not None:
            mse = self.flag(m["mse"], m.lines["mse"], "design.mse")
        out["replicates"] = ReplicateConfig(columns=spec, type=kind, scale=scale, mse=mse)
        return out

    def weighting(self, value: Any, line: int) -> WeightingConfig:
        m = self.mapping(value, line, "weighting", _WEIGHTING_KEYS)
        self.lines["weighting"] = line
        if m.get("margins") is None:
            raise self.fail(line, "weighting.margins", "is required: the margins file")
        margins = self.file(m["margins"], m.lines["margins"], "weighting.margins")
        use = None
        if m.get("use") is not None:
            self.lines["weighting.use"] = m.lines["use"]
            use = self.names(m["use"], m.lines["use"], "weighting.use")
            if not use:
                raise self.fail(m.lines["use"], "weighting.use", "expected at least one margin")
        method = m.get("method", "rake")
        if method not in WEIGHTING_METHODS:
            raise self.fail(
                m.lines.get("method", line),
                "weighting.method",
                f"expected rake or poststratify, found {method!r}",
            )
        missing = m.get("missing", "error")
        if missing not in MISSING_POLICIES:
            raise self.fail(
                m.lines.get("missing", line),
                "weighting.missing",
                f"expected error or exclude, found {missing!r}",
            )
        collapse: dict[str, dict[str, str]] = {}
        if m.get("collapse") is not None:
            ln = m.lines["collapse"]
            spec = m["collapse"]
            if not isinstance(spec, _Map):
                raise self.fail(
                    ln,
                    "weighting.collapse",
                    f"expected {{variable: {{level: into_level}}}}, found {_kind(spec)}",
                )
            for var, merges in spec.items():
                key = f"weighting.collapse.{var}"
                if not isinstance(merges, _Map):
                    raise self.fail(
                        spec.lines[var],
                        key,
                        f"expected {{level: into_level}}, found {_kind(merges)}",
                    )
                collapse[var] = {
                    self.level(k, merges.lines[k], f"{key}.{k}"): self.level(
                        v, merges.lines[k], f"{key}.{k}"
                    )
                    for k, v in merges.items()
                }
        trim = None
        if m.get("trim_upper") is not None:
            trim = self.number(
                m["trim_upper"],
                m.lines["trim_upper"],
                "weighting.trim_upper",
                low=1.0,
                open_=True,
                what="a number above 1 (times the mean weight)",
            )
        return WeightingConfig(
            margins=margins,
            use=use,
            method=method,
            collapse=collapse,
            missing=missing,
            trim_upper=trim,
        )

    def banner(self, value: Any, line: int, index: int) -> Banner:
        key = f"banners[{index}]"
        self.lines[key] = line
        if isinstance(value, str):
            return Banner(name=self.name(value, line, key), source=value)
        m = self.mapping(value, line, key, _BANNER_KEYS)
        for k, ln in m.lines.items():
            self.lines[f"{key}.{k}"] = ln
        if m.get("name") is None:
            raise self.fail(line, f"{key}.name", "is required")
        name = self.name(m["name"], m.lines["name"], f"{key}.name")
        source = name
        if m.get("from") is not None:
            source = self.name(m["from"], m.lines["from"], f"{key}.from")
        label = self.text(m.get("label"), m.lines.get("label", line), f"{key}.label")
        if "bins" in m and "groups" in m:
            raise self.fail(m.lines["groups"], f"{key}.groups", "give bins or groups, not both")
        bins = groups = None
        if m.get("bins") is not None:
            bins = self.bins(m["bins"], m.lines["bins"], f"{key}.bins")
        if m.get("groups") is not None:
            groups = self.groups(m["groups"], m.lines["groups"], f"{key}.groups")
        if (bins is not None or groups is not None) and "from" not in m:
            raise self.fail(
                line,
                f"{key}.from",
                "is required with bins or groups: the question they are made from",
            )
        if (bins is None and groups is None) and "from" in m and source != name:
            raise self.fail(
                m.lines["from"],
                f"{key}.from",
                "needs bins or groups (a banner of the question itself is written: - name",
            )
        other = None
        if m.get("other") is not None:
            if groups is None:
                raise self.fail(m.lines["other"], f"{key}.other", "applies to groups only")
            other = self.level(m["other"], m.lines["other"], f"{key}.other")
            if groups.get(other):
                raise self.fail(
                    m.lines["other"],
                    f"{key}.other",
                    f"{other!r} is a group with codes; 'other' names the group of every "
                    "code not listed",
                )
        labels: dict[str, dict[str, str]] = {}
        if m.get("labels") is not None:
            spec = m["labels"]
            if not isinstance(spec, _Map):
                raise self.fail(
                    m.lines["labels"],
                    f"{key}.labels",
                    f"expected {{level: text}}, found {_kind(spec)}",
                )
            for level, t in spec.items():
                labels[str(level)] = self.text(t, spec.lines[level], f"{key}.labels.{level}")
        return Banner(
            name=name,
            source=source,
            label=label,
            bins=bins,
            groups=groups,
            other=other,
            labels=labels,
        )

    def bins(self, spec: Any, line: int, key: str) -> dict[str, tuple[float | None, float | None]]:
        if not isinstance(spec, _Map) or not spec:
            raise self.fail(line, key, f"expected {{level: [low, high]}}, found {_kind(spec)}")
        out: dict[str, tuple[float | None, float | None]] = {}
        for level, bounds in spec.items():
            ln, where = spec.lines[level], f"{key}.{level}"
            if not isinstance(bounds, list) or len(bounds) != 2:
                raise self.fail(
                    ln, where, f"expected [low, high] (null: no bound), found {bounds!r}"
                )
            lo, hi = (None if v is None else self.number(v, ln, where) for v in bounds)
            if lo is not None and hi is not None and lo > hi:
                raise self.fail(ln, where, f"low bound {lo:g} is above high bound {hi:g}")
            for other, (olo, ohi) in out.items():
                a = max(-math.inf if lo is None else lo, -math.inf if olo is None else olo)
                b = min(math.inf if hi is None else hi, math.inf if ohi is None else ohi)
                if a <= b:
                    raise self.fail(ln, where, f"overlaps bin {other} (a value would fall in both)")
            out[str(level)] = (lo, hi)
        return out

    def groups(self, spec: Any, line: int, key: str) -> dict[str, tuple[str, ...]]:
        if not isinstance(spec, _Map) or not spec:
            raise self.fail(line, key, f"expected {{group: [codes]}}, found {_kind(spec)}")
        out: dict[str, tuple[str, ...]] = {}
        seen: dict[str, str] = {}
        for group, codes in spec.items():
            ln, where = spec.lines[group], f"{key}.{group}"
            items = codes if isinstance(codes, list) else [codes]
            levels = []
            for c in items:
                code = self.level(c, ln, where)
                if code in seen:
                    raise self.fail(ln, where, f"code {code} is already in group {seen[code]}")
                seen[code] = str(group)
                levels.append(code)
            out[str(group)] = tuple(levels)
        return out

    def rules(self, value: Any, line: int) -> TableRules:
        m = self.mapping(value, line, "rules", _RULE_KEYS)
        self.lines["rules"] = line
        kw: dict[str, Any] = {}
        for k in ("min_n", "group_k"):
            if k in m:
                kw[k] = self.whole(m[k], m.lines[k], f"rules.{k}")
        for k in ("nchs", "group_disclosure"):
            if k in m:
                kw[k] = self.action(m[k], m.lines[k], f"rules.{k}")
        for k in ("alpha", "conf_level"):
            if k in m:
                kw[k] = self.number(
                    m[k],
                    m.lines[k],
                    f"rules.{k}",
                    low=0,
                    high=1,
                    open_=True,
                    what="a number between 0 and 1",
                )
        if "correction" in m and m["correction"] not in CORRECTIONS:
            raise self.fail(
                m.lines["correction"],
                "rules.correction",
                f"expected holm, bonferroni or none, found {m['correction']!r}",
            )
        if "correction" in m:
            kw["correction"] = m["correction"]
        if "ci" in m:
            ci = {"korn-graubard": "beta", "kg": "beta"}.get(str(m["ci"]).lower(), m["ci"])
            if ci not in CI_METHODS:
                raise self.fail(
                    m.lines["ci"],
                    "rules.ci",
                    f"expected one of {', '.join(CI_METHODS)} (beta is Korn-Graubard), "
                    f"found {m['ci']!r}",
                )
            kw["ci"] = ci
        return TableRules(**kw)

    def waves(self, value: Any, line: int) -> tuple[Wave, ...]:
        if not isinstance(value, _Seq):
            raise self.fail(
                line, "waves", f"expected a list of {{label, data}}, found {_kind(value)}"
            )
        out = []
        for i, (item, ln) in enumerate(zip(value, value.lines, strict=True)):
            key = f"waves[{i}]"
            m = self.mapping(item, ln, key, _WAVE_KEYS)
            for k in _WAVE_KEYS:
                if m.get(k) is None:
                    raise self.fail(ln, f"{key}.{k}", "is required")
            out.append(
                Wave(
                    label=self.text(m["label"], m.lines["label"], f"{key}.label"),
                    data=self.file(m["data"], m.lines["data"], f"{key}.data"),
                )
            )
        return tuple(out)

    # ---- the file ----------------------------------------------------------------------

    def read(self, data: Any) -> ReportConfig:
        if data is None:
            return ReportConfig(source=self.filename)
        top = self.mapping(data, 1, "", _TOP_KEYS)
        self.lines.update(top.lines)
        kw: dict[str, Any] = {}
        get = top.get
        if get("title") is not None:
            kw["title"] = self.text(top["title"], top.lines["title"], "title")
        if get("study") is not None:
            kw["study"] = self.study(top["study"], top.lines["study"])
        if get("design") is not None:
            kw.update(self.design(top["design"], top.lines["design"]))
        if get("weights") is not None:
            kw["weights"] = self.name(top["weights"], top.lines["weights"], "weights")
        if get("weighting") is not None:
            kw["weighting"] = self.weighting(top["weighting"], top.lines["weighting"])
        for k in ("questions", "exclude"):
            if get(k) is not None:
                kw[k] = self.names(top[k], top.lines[k], k)
        if get("banners") is not None:
            value, ln = top["banners"], top.lines["banners"]
            if not isinstance(value, _Seq):
                raise self.fail(
                    ln, "banners", f"expected a list of banner variables, found {_kind(value)}"
                )
            banners = [
                self.banner(v, vl, i)
                for i, (v, vl) in enumerate(zip(value, value.lines, strict=True))
            ]
            names = [b.name for b in banners]
            for i, b in enumerate(banners):
                if b.name in names[:i]:
                    raise self.fail(
                        value.lines[i], f"banners[{i}].name", f"{b.name} is listed twice"
                    )
            kw["banners"] = tuple(banners)
        for k in ("paired", "charts"):
            if k in top:
                kw[k] = self.flag(top[k], top.lines[k], k)
        if get("benchmarks") is not None:
            value, ln = top["benchmarks"], top.lines["benchmarks"]
            if isinstance(value, _Map):
                m = self.mapping(value, ln, "benchmarks", ("file", "labels"))
                if m.get("file") is None:
                    raise self.fail(ln, "benchmarks.file", "is required: the benchmarks file")
                kw["benchmarks"] = self.file(m["file"], m.lines["file"], "benchmarks.file")
                if m.get("labels") is not None:
                    labels = m["labels"]
                    self.lines["benchmarks.labels"] = m.lines["labels"]
                    if not isinstance(labels, _Map):
                        raise self.fail(
                            m.lines["labels"],
                            "benchmarks.labels",
                            f"expected {{benchmark: text}}, found {_kind(labels)}",
                        )
                    kw["benchmark_labels"] = {
                        str(k): self.text(v, labels.lines[k], f"benchmarks.labels.{k}")
                        for k, v in labels.items()
                    }
            else:
                kw["benchmarks"] = self.file(value, ln, "benchmarks")
        if get("models") is not None:
            value, ln = top["models"], top.lines["models"]
            if not isinstance(value, _Seq):
                raise self.fail(ln, "models", f"expected a list of models, found {_kind(value)}")
            kw["models"] = tuple(
                self.model(v, vl or ln, i)
                for i, (v, vl) in enumerate(zip(value, value.lines, strict=True))
            )
        if get("screening") is not None:
            value, ln = top["screening"], top.lines["screening"]
            if isinstance(value, _Map):
                m = self.mapping(value, ln, "screening", ("rules", "compare"))
                rules = None
                if m.get("rules") is not None:
                    rules = self.file(m["rules"], m.lines["rules"], "screening.rules")
                compare = ()
                if m.get("compare") is not None:
                    compare = self.names(m["compare"], m.lines["compare"], "screening.compare")
                kw["screening"] = ScreeningConfig(rules, tuple(compare))
            else:
                kw["screening"] = ScreeningConfig(self.file(value, ln, "screening"))
        if get("wave") is not None:
            kw["wave"] = self.text(top["wave"], top.lines["wave"], "wave")
        if get("waves") is not None:
            kw["waves"] = self.waves(top["waves"], top.lines["waves"])
        if get("rules") is not None:
            kw["rules"] = self.rules(top["rules"], top.lines["rules"])
        return ReportConfig(**kw, source=self.filename, lines=dict(self.lines))


# ---------------------------------------------------------------------------------------
# benchmarks


@dataclass(frozen=True)
class Benchmark:
    """An external figure to set a survey estimate against (``benchmarks.yaml``).

    ``value`` is in percent. The survey statistic is the share choosing ``levels`` of
    ``question`` among those choosing ``among`` (everyone who answered when empty).
    ``line`` is where the benchmark is written, for messages.
    """

    name: str
    value: float
    question: str
    levels: tuple[str, ...]
    among: tuple[str, ...] = ()
    population: str | None = None
    denominator: str | None = None
    definition: str | None = None
    source: Mapping[str, str | None] = field(default_factory=dict)
    date: str | None = None
    notes: str | None = None
    label: Text = field(default_factory=dict)
    file: str = ""
    line: int = 0

    def where(self, key: str = "") -> str:
        head = f"{self.file}:{self.line}: benchmark {self.name}"
        return f"{head}: {key}" if key else head


_BENCH_KEYS = (
    "name",
    "value",
    "population",
    "denominator",
    "compares_to",
    "definition",
    "source",
    "date",
    "notes",
    "label",
)
_COMPARES_KEYS = ("question", "levels", "among")
_SOURCE_KEYS = ("title", "publisher", "url", "via")


def read_benchmarks(path: str | Path) -> list[Benchmark]:
    """Read a benchmarks file (schema at the top of ``examples/okrussians/benchmarks.yaml``).

    An optional ``label`` (text, or ``{language: text}``) names the benchmark in reports.

    >>> from volna.examples import example_path
    >>> b = read_benchmarks(example_path("okrussians", "benchmarks.yaml"))[0]
    >>> b.name, b.value, b.question, b.levels
    ('ur_share_official_2021', 49.82, 'vote_2021', ('ur',))
    """
    return parse_benchmarks(read_text(path, ConfigError, "benchmarks file"), str(path))


def parse_benchmarks(text: str, filename: str = "<benchmarks>") -> list[Benchmark]:
    """Benchmarks from YAML text; see :func:`read_benchmarks`.

    >>> try:
    ...     parse_benchmarks('''
    ... benchmarks:
    ...   - name: ur
    ...     value: 150
    ...     compares_to: {question: vote, levels: [ur]}
    ... ''', "b.yaml")
    ... except ConfigError as exc:
    ...     print(exc)
    b.yaml:4: benchmark ur: value: expected a percentage from 0 to 100, found 150
    """
    try:
        data = _parse_yaml(text, filename)
    except QuestionnaireError as exc:
        raise ConfigError(str(exc)) from None
    r = _Reader(filename)
    if data is None:
        raise ConfigError(f"{filename}: the file is empty; expected a `benchmarks` list")
    top = r.mapping(data, 1, "", ("benchmarks",))
    items = top.get("benchmarks")
    if not isinstance(items, _Seq) or not items:
        raise r.fail(top.lines.get("benchmarks", 1), "benchmarks", "expected a list of benchmarks")
    out: list[Benchmark] = []
    seen: dict[str, int] = {}
    for i, (item, line) in enumerate(zip(items, items.lines, strict=True)):
        benchmark = _one_benchmark(item, line, f"benchmarks[{i}]", filename)
        if benchmark.name in seen:
            raise ConfigError(
                f"{filename}:{item.lines['name']}: benchmark {benchmark.name}: name: already "
                f"used on line {seen[benchmark.name]}"
            )
        seen[benchmark.name] = item.lines["name"]
        out.append(benchmark)
    return out


def _one_benchmark(item: Any, line: int, key: str, filename: str) -> Benchmark:
    """One entry of a benchmarks file, with ``file:line: benchmark name: key`` errors."""
    b = _Reader(filename)
    if not isinstance(item, _Map):
        raise b.fail(line, key, f"expected a mapping (name, value, ...), found {_kind(item)}")
    name = item.get("name")
    label = f"benchmark {name}" if isinstance(name, str) else key

    def fail(ln: int, k: str, message: str) -> ConfigError:
        return b.fail(ln, f"{label}: {k}", message)

    for k in item:
        if k not in _BENCH_KEYS:
            raise fail(item.lines[k], k, f"unknown key (expected one of: {', '.join(_BENCH_KEYS)})")
    if not isinstance(name, str) or not _NAME.match(name):
        raise fail(item.lines.get("name", line), "name", f"expected a name, found {name!r}")
    if "value" not in item:
        raise fail(line, "value", "is required (percent)")
    value = item["value"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise fail(
            item.lines["value"],
            "value",
            f"expected a percentage from 0 to 100, found {value!r}",
        )
    if item.get("compares_to") is None:
        raise fail(line, "compares_to", "is required: {question, levels, among}")
    ct = item["compares_to"]
    if not isinstance(ct, _Map):
        raise fail(
            item.lines["compares_to"], "compares_to", f"expected a mapping, found {_kind(ct)}"
        )
    for k in ct:
        if k not in _COMPARES_KEYS:
            raise fail(
                ct.lines[k],
                f"compares_to.{k}",
                "unknown key (expected one of: question, levels, among)",
            )
    question = ct.get("question")
    if not isinstance(question, str) or not _NAME.match(question):
        raise fail(
            ct.lines.get("question", ct.line),
            "compares_to.question",
            f"expected a question name, found {question!r}",
        )

    def codes(k: str, *, required: bool) -> tuple[str, ...]:
        if ct.get(k) is None:
            if required:
                raise fail(ct.line, f"compares_to.{k}", "is required: a list of codes")
            return ()
        v = ct[k]
        vals = v if isinstance(v, list) else [v]
        if not vals:
            raise fail(ct.lines[k], f"compares_to.{k}", "expected at least one code")
        return tuple(b.level(x, ct.lines[k], f"{label}: compares_to.{k}") for x in vals)

    levels = codes("levels", required=True)
    among = codes("among", required=False)
    if among:
        outside = [c for c in levels if c not in among]
        if outside:
            raise fail(
                ct.lines["among"],
                "compares_to.among",
                f"does not include level {outside[0]}; the levels counted must be in the base",
            )
    source: dict[str, str | None] = {}
    if item.get("source") is not None:
        s = item["source"]
        if not isinstance(s, _Map):
            raise fail(
                item.lines["source"],
                "source",
                f"expected {{title, publisher, url, via}}, found {_kind(s)}",
            )
        for k in s:
            if k not in _SOURCE_KEYS:
                raise fail(
                    s.lines[k],
                    f"source.{k}",
                    "unknown key (expected one of: title, publisher, url, via)",
                )
            source[k] = None if s[k] is None else str(s[k])
    date = None
    if item.get("date") is not None:
        date = b.date(item["date"], item.lines["date"], f"{label}: date")
    texts = {}
    for k in ("population", "denominator", "definition", "notes"):
        v = item.get(k)
        if v is not None and (not isinstance(v, str | int | float) or isinstance(v, bool)):
            raise fail(item.lines[k], k, f"expected text, found {_kind(v)}")
        texts[k] = None if v is None else str(v)
    return Benchmark(
        name=name,
        value=float(value),
        question=question,
        levels=levels,
        among=among,
        source=source,
        date=date,
        label=b.text(item.get("label"), item.lines.get("label", line), f"{label}: label"),
        file=filename,
        line=line,
        **texts,
    )
