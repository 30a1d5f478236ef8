"""volna's own questionnaire format: a YAML file a researcher can read and diff.

A minimal file::

    volna: 1
    id: okrussians-2022
    languages: [ru, en]
    title: {ru: Опрос эмигрантов, en: Emigrant survey}
    choice_lists:
      yes_no:
        - {code: "yes", label: {ru: Да, en: "Yes"}}
        - {code: "no", label: {ru: Нет, en: "No"}}
    questions:
      - section: departure
        label: {ru: Отъезд, en: Departure}
        questions:
          - name: left_2022
            type: single
            label: {ru: Вы уехали в 2022 году?, en: Did you leave in 2022?}
            choices: yes_no
            required: true

Paradata (facts about the interview: respondent ids, durations, start and end
times) is listed under ``paradata``. A response file may lack a paradata
column, which is then read as empty (an export without the form's start and
end times); ``required: true`` says the study needs it in every file::

    paradata:
      - {name: respondent_id, type: id, required: true}
      - {name: start, type: datetime}
      - {name: t_departure, type: duration, page: departure}

``page`` names a section: that ``duration`` is the time spent on the section's
page (screening's ``page_speed`` rule reads it).

Every error names the file, the line and the key, because a researcher
editing 300 lines of YAML needs to know exactly where to look.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from volna.errors import QuestionnaireError, excerpt
from volna.questionnaire.model import (
    Check,
    Choice,
    Paradata,
    Question,
    Questionnaire,
    Section,
)

FORMAT_VERSION = 1
# A questionnaire is a few hundred kilobytes at most; a bigger file is a
# mistake or an attack (YAML alias bombs), so refuse it before parsing.
MAX_BYTES = 5_000_000

_TOP_KEYS = {
    "volna",
    "id",
    "version",
    "title",
    "languages",
    "default_language",
    "choice_lists",
    "paradata",
    "questions",
    "checks",
}
_QUESTION_KEYS = {
    "name",
    "type",
    "label",
    "hint",
    "choices",
    "required",
    "required_message",
    "relevant",
    "constraint",
    "constraint_message",
    "min",
    "max",
    "paired_with",
    "period",
    "appearance",
    "attention",
    "honeypot",
    "recruitment",
    "reverse",
}
_CHECK_KEYS = {"name", "when", "message"}
_SECTION_KEYS = {"section", "label", "relevant", "questions"}
_CHOICE_KEYS = {"code", "label", "value", "exclusive", "other", "missing"}
_PARADATA_KEYS = {"name", "type", "label", "required", "page"}


# -- reading YAML with line numbers -------------------------------------------


class _Map(dict):
    """A mapping that remembers the line of each key."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.line = 0
        self.lines: dict[str, int] = {}


class _Seq(list):
    """A list that remembers the line of each item."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.line = 0
        self.lines: list[int] = [0] * len(self)


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records line numbers and refuses duplicate keys."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    out = _Map()
    out.line = node.start_mark.line + 1
    out.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) or key is None:
            raise QuestionnaireError(
                f"{loader.name}:{key_node.start_mark.line + 1}: a key must be a plain name"
            )
        key = str(key)
        if key in out:
            raise QuestionnaireError(
                f"{loader.name}:{key_node.start_mark.line + 1}: key {excerpt(key)} appears twice "
                f"(first on line {out.lines[key]})"
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> _Seq:
    out = _Seq(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.lines = [child.start_mark.line + 1 for child in node.value]
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _parse_yaml(text: str, filename: str) -> Any:
    if len(text.encode("utf-8", "replace")) > MAX_BYTES:
        raise QuestionnaireError(f"{filename}: larger than {MAX_BYTES // 1_000_000} MB")
    loader = _LineLoader(text)
    loader.name = filename
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise QuestionnaireError(f"{filename}{line}: not valid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise QuestionnaireError(f"{filename}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    if data is not None and not isinstance(data, dict | list):
        # Every volna YAML file is a mapping of settings. A whole file that reads as
        # one plain value is some other file (responses as CSV, say): say so without
        # quoting it, since it may hold respondents' answers.
        raise QuestionnaireError(
            f"{filename}: not a YAML file of settings: it reads as one plain value "
            f"({_size(text)}), not 'name: value' lines; is it the right file?"
        )
    return data


def _size(text: str) -> str:
    lines = text.count("\n") + (not text.endswith("\n"))
    return f"{lines} line{'s' if lines != 1 else ''}, {len(text)} characters"


# -- turning YAML into the model ------------------------------------------------


class _Reader:
    """Turns the parsed YAML into model objects, naming file:line:key on errors."""

    def __init__(self, filename: str):
        self.filename = filename
        self.languages: tuple[str, ...] = ()
        self.default_language: str | None = None

    def fail(self, line: int, key: str, message: str) -> QuestionnaireError:
        return QuestionnaireError(f"{self.filename}:{line}: {key or 'top level'}: {message}")

    def mapping(self, value: Any, line: int, key: str, allowed: set[str]) -> _Map:
        if not isinstance(value, _Map):
            raise self.fail(line, key, f"expected a mapping, found {_kind(value)}")
        unknown = sorted(set(value) - allowed)
        if unknown:
            k = unknown[0]
            raise self.fail(
                value.lines[k],
                f"{key}.{k}" if key else k,
                f"unknown key (expected one of: {', '.join(sorted(allowed))})",
            )
        return value

    def text(self, m: _Map, k: str, key: str, *, required: bool = False) -> str | None:
        if k not in m or m[k] is None:
            if required:
                raise self.fail(m.line, f"{key}.{k}" if key else k, "is required")
            return None
        v = m[k]
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise self.fail(m.lines[k], f"{key}.{k}", f"expected text, found {_kind(v)}")
        return str(v)

    def flag(self, m: _Map, k: str, key: str) -> bool:
        v = m.get(k, False)
        if not isinstance(v, bool):
            raise self.fail(m.lines[k], f"{key}.{k}", f"expected true or false, found {excerpt(v)}")
        return v

    def labels(self, m: _Map, k: str, key: str) -> dict[str, str]:
        """A label: a mapping language -> text, or text in the default language."""
        if k not in m or m[k] is None:
            return {}
        v = m[k]
        path = f"{key}.{k}" if key else k
        if isinstance(v, str):
            return {self.default_language or "": v}
        if not isinstance(v, _Map):
            raise self.fail(
                m.lines[k], path, f"expected text or a mapping language: text, found {_kind(v)}"
            )
        out = {}
        for lang, text in v.items():
            if self.languages and lang not in self.languages:
                raise self.fail(
                    v.lines[lang],
                    f"{path}.{lang}",
                    f"language not declared in 'languages' ({', '.join(self.languages)})",
                )
            if not isinstance(text, str | int | float) or isinstance(text, bool):
                raise self.fail(v.lines[lang], f"{path}.{lang}", "expected text")
            out[lang] = str(text)
        return out

    def choice(self, value: Any, line: int, key: str) -> Choice:
        m = self.mapping(value, line, key, _CHOICE_KEYS)
        code = self.text(m, "code", key, required=True)
        number = m.get("value")
        if number is not None and (isinstance(number, bool) or not isinstance(number, int | float)):
            raise self.fail(
                m.lines["value"], f"{key}.value", f"expected a number, found {excerpt(number)}"
            )
        return Choice(
            code=code,
            labels=self.labels(m, "label", key),
            value=float(number) if number is not None else None,
            exclusive=self.flag(m, "exclusive", key),
            other=self.flag(m, "other", key),
            missing=self.flag(m, "missing", key),
        )

    def choices(self, value: Any, line: int, key: str) -> tuple[Choice, ...]:
        if not isinstance(value, _Seq):
            raise self.fail(line, key, f"expected a list of choices, found {_kind(value)}")
        return tuple(
            self.choice(v, ln, f"{key}[{i}]")
            for i, (v, ln) in enumerate(zip(value, value.lines, strict=True))
        )

    def bound(self, m: _Map, k: str, key: str) -> float | str | None:
        v = m.get(k)
        if v is None:
            return None
        if isinstance(v, bool):
            raise self.fail(
                m.lines[k], f"{key}.{k}", f"expected a number or a date, found {excerpt(v)}"
            )
        if isinstance(v, int | float):
            return v
        if isinstance(v, dt.date):
            return v.isoformat()
        if isinstance(v, str):
            try:
                return dt.date.fromisoformat(v).isoformat()
            except ValueError:
                pass
        raise self.fail(
            m.lines[k], f"{key}.{k}", f"expected a number or a date, found {excerpt(v)}"
        )

    def question(
        self, value: Any, line: int, key: str, lists: Mapping, section: tuple[str, ...]
    ) -> Question:
        m = self.mapping(value, line, key, _QUESTION_KEYS)
        name = self.text(m, "name", key, required=True)
        qtype = self.text(m, "type", key, required=True)
        choices: tuple[Choice, ...] = ()
        list_name = None
        if "choices" in m:
            spec = m["choices"]
            if isinstance(spec, str):
                if spec not in lists:
                    raise self.fail(
                        m.lines["choices"],
                        f"{key}.choices",
                        f"no choice list named {excerpt(spec)} in choice_lists",
                    )
                list_name, choices = spec, lists[spec]
            else:
                choices = self.choices(spec, m.lines["choices"], f"{key}.choices")
        required = m.get("required", False)
        if not isinstance(required, bool | str):
            raise self.fail(
                m.lines["required"], f"{key}.required", "expected true, false or an expression"
            )
        paired = self.text(m, "paired_with", key)
        attention = m.get("attention", [])
        if isinstance(attention, str | int):
            attention = [attention]
        if not isinstance(attention, list) or not all(
            isinstance(a, str | int) and not isinstance(a, bool) for a in attention
        ):
            raise self.fail(
                m.lines["attention"],
                f"{key}.attention",
                "expected the answer code(s) an attentive respondent gives, e.g. ['2']",
            )
        try:
            return Question(
                name=name,
                type=qtype,
                labels=self.labels(m, "label", key),
                hints=self.labels(m, "hint", key),
                choices=choices,
                choice_list=list_name,
                required=required,
                required_message=self.labels(m, "required_message", key),
                relevant=self.text(m, "relevant", key),
                constraint=self.text(m, "constraint", key),
                constraint_message=self.labels(m, "constraint_message", key),
                minimum=self.bound(m, "min", key),
                maximum=self.bound(m, "max", key),
                paired_with=paired,
                period=self.text(m, "period", key),
                section=section,
                appearance=self.text(m, "appearance", key),
                attention=tuple(str(a) for a in attention),
                honeypot=self.flag(m, "honeypot", key),
                recruitment=self.flag(m, "recruitment", key),
                reverse=self.flag(m, "reverse", key),
            )
        except QuestionnaireError as exc:
            raise self.fail(line, key, str(exc)) from None

    def checks(self, value: Any, line: int) -> list[Check]:
        if value is None:
            return []
        if not isinstance(value, _Seq):
            raise self.fail(line, "checks", f"expected a list of checks, found {_kind(value)}")
        out = []
        for i, (item, ln) in enumerate(zip(value, value.lines, strict=True)):
            key = f"checks[{i}]"
            m = self.mapping(item, ln, key, _CHECK_KEYS)
            out.append(
                Check(
                    self.text(m, "name", key, required=True),
                    self.text(m, "when", key, required=True),
                    self.labels(m, "message", key),
                )
            )
        return out

    def items(
        self, value: Any, line: int, key: str, lists: Mapping, section: tuple[str, ...]
    ) -> list[Question | Section]:
        if not isinstance(value, _Seq):
            raise self.fail(line, key, f"expected a list of questions, found {_kind(value)}")
        out: list[Question | Section] = []
        for i, (item, ln) in enumerate(zip(value, value.lines, strict=True)):
            path = f"{key}[{i}]"
            if isinstance(item, _Map) and "section" in item:
                m = self.mapping(item, ln, path, _SECTION_KEYS)
                name = self.text(m, "section", path, required=True)
                out.append(
                    Section(
                        name,
                        self.labels(m, "label", path),
                        self.text(m, "relevant", path),
                        parent=section,
                    )
                )
                out.extend(
                    self.items(
                        m.get("questions", _Seq()),
                        m.lines.get("questions", ln),
                        f"{path}.questions",
                        lists,
                        (*section, name),
                    )
                )
            else:
                out.append(self.question(item, ln, path, lists, section))
        return out

    def questionnaire(self, data: Any) -> Questionnaire:
        if data is None:
            raise QuestionnaireError(f"{self.filename}: the file is empty")
        m = self.mapping(data, 1, "", _TOP_KEYS)
        version = m.get("volna", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise self.fail(
                m.lines.get("volna", 1),
                "volna",
                f"unknown format version {excerpt(version)} (expected 1)",
            )
        langs = m.get("languages", ["ru", "en"])
        if not isinstance(langs, list) or not all(isinstance(x, str) for x in langs) or not langs:
            raise self.fail(
                m.lines.get("languages", 1), "languages", "expected a list such as [ru, en]"
            )
        self.languages = tuple(langs)
        self.default_language = self.text(m, "default_language", "") or langs[0]
        if self.default_language not in self.languages:
            raise self.fail(
                m.lines["default_language"],
                "default_language",
                f"{excerpt(self.default_language)} is not in languages ({', '.join(langs)})",
            )
        lists: dict[str, tuple[Choice, ...]] = {}
        raw_lists = m.get("choice_lists") or _Map()
        if not isinstance(raw_lists, _Map):
            raise self.fail(m.lines["choice_lists"], "choice_lists", "expected a mapping")
        for name, spec in raw_lists.items():
            lists[name] = self.choices(spec, raw_lists.lines[name], f"choice_lists.{name}")
        paradata = []
        raw_para = m.get("paradata") or _Seq()
        if not isinstance(raw_para, _Seq):
            raise self.fail(m.lines["paradata"], "paradata", "expected a list")
        for i, (p, ln) in enumerate(zip(raw_para, raw_para.lines, strict=True)):
            pm = self.mapping(p, ln, f"paradata[{i}]", _PARADATA_KEYS)
            paradata.append(
                Paradata(
                    self.text(pm, "name", f"paradata[{i}]", required=True),
                    self.text(pm, "type", f"paradata[{i}]") or "text",
                    self.labels(pm, "label", f"paradata[{i}]"),
                    required=self.flag(pm, "required", f"paradata[{i}]"),
                    page=self.text(pm, "page", f"paradata[{i}]") or None,
                )
            )
        if "questions" not in m:
            raise self.fail(1, "questions", "is required")
        items = self.items(m["questions"], m.lines["questions"], "questions", lists, ())
        try:
            return Questionnaire(
                id=self.text(m, "id", "", required=True),
                title=self.labels(m, "title", ""),
                version=self.text(m, "version", ""),
                languages=self.languages,
                default_language=self.default_language,
                items=tuple(items),
                choice_lists=lists,
                paradata=tuple(paradata),
                checks=tuple(self.checks(m.get("checks"), m.lines.get("checks", 1))),
                source=self.filename,
            )
        except QuestionnaireError as exc:
            # The model's cross-item checks name the question; add the line.
            raise type(exc)(_with_line(str(exc), data, self.filename)) from None


def _with_line(message: str, data: _Map, filename: str) -> str:
    """Insert the line of the question a cross-item error names, if we can find it."""
    prefix = f"{filename}: "
    body = message[len(prefix) :] if message.startswith(prefix) else message
    if body.startswith("question "):
        name = body.split()[1].rstrip(":")
        line = _find_question_line(data.get("questions"), name)
        if line:
            return f"{filename}:{line}: {body}"
    return f"{filename}: {body}"


def _find_question_line(items: Any, name: str) -> int | None:
    if not isinstance(items, _Seq):
        return None
    for item, line in zip(items, items.lines, strict=True):
        if isinstance(item, _Map):
            if item.get("name") == name:
                return line
            found = _find_question_line(item.get("questions"), name)
            if found:
                return found
    return None


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {excerpt(value)}"


def loads(text: str, filename: str = "<questionnaire>") -> Questionnaire:
    """Read a questionnaire from YAML text.

    >>> q = loads('''
    ... id: demo
    ... questions:
    ...   - {name: age, type: integer, label: {ru: Возраст, en: Age}, min: 18}
    ... ''')
    >>> q["age"].label("en"), q["age"].minimum
    ('Age', 18)
    """
    return _Reader(filename).questionnaire(_parse_yaml(text, filename))


def level_problem(value: Any) -> str | None:
    """Why a YAML value cannot be a level (a code of a category), or None if it can.

    >>> level_problem(True).split(" (")[0]
    'expected a level, found true'
    >>> level_problem("TR") is None
    True
    """
    if isinstance(value, bool):
        return (
            f"expected a level, found {str(value).lower()} (YAML reads yes/no/on/off "
            'without quotes as true/false: write "yes")'
        )
    if not isinstance(value, str | int | float) or value == "":
        return f"expected a level, found {_kind(value)}"
    return None


def read_text(path: str | Path, error: type[Exception], what: str = "file") -> str:
    """The UTF-8 text of a YAML file (a BOM allowed), or one-line ``error`` naming it.

    Shared by every YAML file volna reads: questionnaires, margins, report settings.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise error(f"{path}: larger than {MAX_BYTES // 1_000_000} MB")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(
            f"{path}: not UTF-8 text (byte {exc.start}); save the {what} as UTF-8"
        ) from None


def load(path: str | Path) -> Questionnaire:
    """Read a questionnaire from a YAML file; errors name the file, line and key."""
    return loads(read_text(path, QuestionnaireError, "questionnaire"), str(path))


# -- writing --------------------------------------------------------------------


def _labels_out(labels: Mapping[str, str]) -> dict[str, str] | None:
    return dict(labels) or None


def _choice_out(c: Choice) -> dict[str, Any]:
    out: dict[str, Any] = {"code": c.code}
    if c.labels:
        out["label"] = dict(c.labels)
    if c.value is not None:
        out["value"] = int(c.value) if float(c.value).is_integer() else c.value
    for flag in ("exclusive", "other", "missing"):
        if getattr(c, flag):
            out[flag] = True
    return out


def _question_out(q: Question, lists: Mapping) -> dict[str, Any]:
    out: dict[str, Any] = {"name": q.name, "type": q.type}
    if q.labels:
        out["label"] = dict(q.labels)
    if q.hints:
        out["hint"] = dict(q.hints)
    if q.choices:
        if q.choice_list and lists.get(q.choice_list) == q.choices:
            out["choices"] = q.choice_list
        else:
            out["choices"] = [_choice_out(c) for c in q.choices]
    if q.required is not False:
        out["required"] = q.required
    optional = {
        "required_message": _labels_out(q.required_message),
        "relevant": q.relevant,
        "constraint": q.constraint,
        "constraint_message": _labels_out(q.constraint_message),
        "min": q.minimum,
        "max": q.maximum,
        "paired_with": q.paired_with,
        "period": q.period,
        "appearance": q.appearance,
        "attention": list(q.attention) or None,
        "honeypot": q.honeypot or None,
        "recruitment": q.recruitment or None,
        "reverse": q.reverse or None,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    return out


def to_dict(q: Questionnaire) -> dict[str, Any]:
    """The questionnaire as plain Python data in the YAML format's shape."""
    out: dict[str, Any] = {"volna": FORMAT_VERSION, "id": q.id}
    if q.version:
        out["version"] = q.version
    if q.title:
        out["title"] = dict(q.title)
    out["languages"] = list(q.languages)
    out["default_language"] = q.default_language
    if q.choice_lists:
        out["choice_lists"] = {
            name: [_choice_out(c) for c in choices] for name, choices in q.choice_lists.items()
        }
    if q.paradata:
        out["paradata"] = [
            {
                "name": p.name,
                "type": p.type,
                **({"label": dict(p.labels)} if p.labels else {}),
                **({"required": True} if p.required else {}),
                **({"page": p.page} if p.page is not None else {}),
            }
            for p in q.paradata
        ]
    # Rebuild the section tree from each item's section path.
    root: list[dict[str, Any]] = []
    containers: dict[tuple[str, ...], list[dict[str, Any]]] = {(): root}
    for item in q.items:
        if isinstance(item, Section):
            node: dict[str, Any] = {"section": item.name}
            if item.labels:
                node["label"] = dict(item.labels)
            if item.relevant:
                node["relevant"] = item.relevant
            node["questions"] = []
            containers[item.parent].append(node)
            containers[(*item.parent, item.name)] = node["questions"]
        else:
            containers[item.section].append(_question_out(item, q.choice_lists))
    out["questions"] = root
    if q.checks:
        out["checks"] = [
            {"name": c.name, "when": c.when, **({"message": dict(c.labels)} if c.labels else {})}
            for c in q.checks
        ]
    return out


class _Dumper(yaml.SafeDumper):
    """Dumps short label mappings inline so the file stays readable."""


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
    flow = len(data) <= 6 and all(
        isinstance(v, str | int | float | bool) and len(str(v)) < 60 for v in data.values()
    )
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


_Dumper.add_representer(dict, _represent_dict)


def dumps(q: Questionnaire) -> str:
    """The questionnaire as YAML text; ``loads(dumps(q)) == q`` up to ``source``.

    >>> q = loads("id: demo\\nquestions:\\n  - {name: age, type: integer}")
    >>> loads(dumps(q)).questions == q.questions
    True
    """
    return yaml.dump(
        to_dict(q), Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=100, indent=2
    )


def save(q: Questionnaire, path: str | Path) -> None:
    """Write the questionnaire to a YAML file (UTF-8)."""
    try:
        Path(path).write_text(dumps(q), encoding="utf-8")
    except OSError as exc:
        raise QuestionnaireError(f"{path}: cannot write: {exc.strerror or exc}") from None
