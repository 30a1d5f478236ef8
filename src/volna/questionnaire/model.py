"""The questionnaire: questions, choices, labels, skip logic, paired items.

One questionnaire is the single source of truth for everything downstream:
which columns a response table has, what their codes mean in Russian and
English, when a question is asked, which questions form multi-response sets
and which measure the same thing before and after an event.

The model is immutable (frozen dataclasses) so that a questionnaire can be
shared between the validator, the estimator and the web form without anyone
changing it behind the others' backs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType

from volna.errors import QuestionnaireError

#: Question types volna understands, in the survey researcher's words.
QUESTION_TYPES = (
    "single",  # choose one
    "multiple",  # select all that apply; one Boolean column per option
    "scale",  # ordered (Likert) scale; a "don't know" choice may sit outside it
    "integer",
    "decimal",
    "text",
    "date",
    "country",  # ISO 3166-1 alpha-2 code, names from pycountry
    "note",  # shown, never answered: no column
)

#: Types whose answers are codes from a choice list.
CHOICE_TYPES = frozenset({"single", "multiple", "scale"})

#: Types that produce no column in the response table.
DISPLAY_TYPES = frozenset({"note"})

# XLSForm's rule for names, which we share so a questionnaire can always be
# exported: a letter or underscore, then letters, digits, '_', '-', '.'.
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
# Choice codes become column-name suffixes (fears/persecution) and XLSForm
# stores several selected codes space-separated, so codes may not contain
# spaces or slashes.
CODE_PATTERN = re.compile(r"^[^\s/]+$")
LANGUAGE_PATTERN = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]+)*$")

#: Suffix of the text column that holds "other, please specify" answers.
OTHER_SUFFIX = "_other"


def _frozen_labels(labels: Mapping[str, str] | str | None) -> Mapping[str, str]:
    if labels is None:
        return MappingProxyType({})
    if isinstance(labels, str):
        # A bare string is a label in the questionnaire's default language;
        # the loader resolves it, so here it can only come from Python code.
        return MappingProxyType({"": labels})
    return MappingProxyType(dict(labels))


def pick_label(labels: Mapping[str, str], language: str | None, fallback: str) -> str:
    """Return the label in ``language``, else the first one given, else ``fallback``.

    >>> pick_label({"ru": "Да", "en": "Yes"}, "en", "yes")
    'Yes'
    >>> pick_label({"ru": "Да"}, "en", "yes")
    'Да'
    >>> pick_label({}, "en", "yes")
    'yes'
    """
    if language and language in labels:
        return labels[language]
    for text in labels.values():
        return text
    return fallback


@dataclass(frozen=True, slots=True)
class Choice:
    """One answer option, with a stable code and labels in several languages.

    ``exclusive`` marks a "none of these" option of a multiple-choice question:
    it cannot be selected together with another option. ``other`` attaches an
    "other, please specify" text column (``<question>_other``). ``missing``
    keeps a "don't know" option of a scale out of the scale's values. ``value``
    is the number a scale option scores (1..5 for a five-point Likert scale).

    >>> Choice("tr", {"ru": "Турция", "en": "Turkey"}).label("en")
    'Turkey'
    """

    code: str
    labels: Mapping[str, str] = field(default_factory=dict)
    value: float | None = None
    exclusive: bool = False
    other: bool = False
    missing: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", _frozen_labels(self.labels))

    def label(self, language: str | None = None) -> str:
        """The label in ``language`` (falls back to any label, then the code)."""
        return pick_label(self.labels, language, self.code)


@dataclass(frozen=True, slots=True)
class Question:
    """One question and everything needed to ask, validate and analyse it.

    ``relevant``, ``constraint`` and ``required`` (when not simply true or
    false) are expressions in XLSForm syntax, kept as text here and parsed by
    :mod:`volna.questionnaire.expressions`. ``section`` names the enclosing
    section(s), outermost first. ``paired_with`` names a question measuring the
    same thing at another time; ``period`` says which time this one measures.

    Two kinds of question exist for data quality, not for analysis, and
    screening reads them from here: ``attention`` lists the answer codes an
    instructed item asks for ("to show you read this, choose 'Tend to
    disagree'"); a ``honeypot`` question is hidden from people and only bots
    answer it. Reports leave both out of their default list. ``recruitment``
    marks the question saying how the respondent was reached (which Telegram
    channel or chat): it ties a person to a small network, so a microdata
    release leaves it out unless asked. ``reverse`` marks a reverse-keyed scale
    item ("I rarely feel safe here" in a grid about feeling safe): its values
    run against the grid's, and careless-responding indices that need the
    items keyed one way (even-odd consistency, person fit) flip it.

    >>> q = Question("age", "integer", {"en": "Age"}, minimum=18, maximum=99)
    >>> q.columns
    ('age',)
    """

    name: str
    type: str
    labels: Mapping[str, str] = field(default_factory=dict)
    hints: Mapping[str, str] = field(default_factory=dict)
    choices: tuple[Choice, ...] = ()
    choice_list: str | None = None
    required: bool | str = False
    required_message: Mapping[str, str] = field(default_factory=dict)
    relevant: str | None = None
    constraint: str | None = None
    constraint_message: Mapping[str, str] = field(default_factory=dict)
    minimum: float | str | None = None
    maximum: float | str | None = None
    paired_with: str | None = None
    period: str | None = None
    section: tuple[str, ...] = ()
    appearance: str | None = None
    attention: tuple[str, ...] = ()
    honeypot: bool = False
    recruitment: bool = False
    reverse: bool = False

    def __post_init__(self) -> None:
        for name in ("labels", "hints", "required_message", "constraint_message"):
            object.__setattr__(self, name, _frozen_labels(getattr(self, name)))
        object.__setattr__(self, "choices", tuple(self.choices))
        object.__setattr__(self, "attention", tuple(self.attention))

    @property
    def is_quality_check(self) -> bool:
        """True for attention checks and honeypots: data-quality items, not findings."""
        return bool(self.attention) or self.honeypot

    def label(self, language: str | None = None) -> str:
        """The question text in ``language`` (falls back to any label, then the name)."""
        return pick_label(self.labels, language, self.name)

    @property
    def is_choice(self) -> bool:
        """True for single choice, multiple choice and scales."""
        return self.type in CHOICE_TYPES

    @property
    def codes(self) -> tuple[str, ...]:
        """The choice codes in questionnaire order."""
        return tuple(c.code for c in self.choices)

    def choice(self, code: str) -> Choice:
        """The choice with this code; a :class:`QuestionnaireError` if there is none."""
        for c in self.choices:
            if c.code == code:
                return c
        raise QuestionnaireError(
            f"question {self.name}: no choice with code {code!r} (codes: {', '.join(self.codes)})"
        )

    @property
    def other_choice(self) -> Choice | None:
        """The choice that carries an "other, please specify" text, if any."""
        return next((c for c in self.choices if c.other), None)

    @property
    def other_column(self) -> str | None:
        """Name of the "please specify" text column, if the question has one."""
        return self.name + OTHER_SUFFIX if self.other_choice is not None else None

    @property
    def columns(self) -> tuple[str, ...]:
        """Columns of the canonical response table that hold this question's answer.

        A multiple-choice question has one Boolean column per option
        (``fears/persecution``); a note has none; an "other, please specify"
        choice adds a text column.
        """
        if self.type in DISPLAY_TYPES:
            return ()
        if self.type == "multiple":
            cols = tuple(f"{self.name}/{c.code}" for c in self.choices)
        else:
            cols = (self.name,)
        if self.other_column:
            cols += (self.other_column,)
        return cols

    def option_column(self, code: str) -> str:
        """The Boolean column of one option of a multiple-choice question."""
        return f"{self.name}/{code}"

    @property
    def scale_codes(self) -> tuple[str, ...]:
        """Codes of a scale that belong to it ("don't know" and the like excluded)."""
        return tuple(c.code for c in self.choices if not c.missing)


@dataclass(frozen=True, slots=True)
class Section:
    """A titled group of questions, possibly asked only when ``relevant`` holds."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    relevant: str | None = None
    parent: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", _frozen_labels(self.labels))

    def label(self, language: str | None = None) -> str:
        """The section title in ``language``."""
        return pick_label(self.labels, language, self.name)


#: Types of paradata columns: facts about the interview, not answers.
PARADATA_TYPES = ("id", "datetime", "duration", "integer", "decimal", "text")


@dataclass(frozen=True, slots=True)
class Paradata:
    """A column describing the interview rather than the respondent's answers.

    Respondent ids, durations (for speeder screening), start times. They are
    validated for type but never asked, and a safe release removes them.

    A response file may lack a paradata column (an export without the form's
    start and end times): it is read as empty, unless ``required`` says the
    study needs it (YAML ``required: true``; in an XLSForm, ``yes`` in the
    ``required`` column of the metadata row or of the ``volna_paradata`` sheet).

    ``page`` makes a ``duration`` the time the respondent spent on one page of
    the form: the section of that name (its questions and those of the sections
    inside it). Screening turns it into seconds per answered item on that page.

    >>> Paradata("respondent_id", "id", required=True).required
    True
    >>> Paradata("t_health", "duration", page="health").page
    'health'
    """

    name: str
    type: str = "text"
    labels: Mapping[str, str] = field(default_factory=dict)
    required: bool = False
    page: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", _frozen_labels(self.labels))


@dataclass(frozen=True, slots=True)
class Check:
    """A logical rule over the answers, declared with the study: where ``when`` holds,
    screening flags the respondent (a departure before the invasion in a study of
    those who left after it; every fear and every kind of pressure ticked at once).

    ``when`` is an XLSForm expression, as in ``relevant``; ``labels`` say what a
    flag means, in each language.

    >>> c = Check("minor", "${age} < 18", {"en": "under 18 in a study of adults"})
    >>> c.message("en")
    'under 18 in a study of adults'
    """

    name: str
    when: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", _frozen_labels(self.labels))

    def message(self, language: str | None = None) -> str:
        """What a flag of this check means, in ``language`` (falls back to the rule)."""
        return pick_label(self.labels, language, self.when)


@dataclass(frozen=True, slots=True)
class Pair:
    """Questions measuring the same thing at different times (before / after)."""

    first: Question
    second: Question

    @property
    def periods(self) -> tuple[str | None, str | None]:
        return (self.first.period, self.second.period)


@dataclass(frozen=True)
class Questionnaire:
    """A whole questionnaire: ordered questions, sections, languages, paradata.

    Build one with :meth:`load` (YAML), :meth:`from_xlsform`, or directly:

    >>> from volna.questionnaire.model import Choice, Question, Questionnaire
    >>> q = Questionnaire(
    ...     id="demo",
    ...     languages=("ru", "en"),
    ...     items=(
    ...         Question("left", "single", {"en": "Did you leave?"},
    ...                  choices=(Choice("yes", {"en": "Yes"}), Choice("no", {"en": "No"}))),
    ...     ),
    ... )
    >>> q["left"].codes
    ('yes', 'no')
    >>> q.columns
    ('left',)
    """

    id: str
    title: Mapping[str, str] = field(default_factory=dict)
    version: str | None = None
    languages: tuple[str, ...] = ("ru", "en")
    default_language: str | None = None
    items: tuple[Question | Section, ...] = ()
    choice_lists: Mapping[str, tuple[Choice, ...]] = field(default_factory=dict)
    paradata: tuple[Paradata, ...] = ()
    checks: tuple[Check, ...] = ()
    # the file it was read from, for messages; not part of the questionnaire's identity
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "title", _frozen_labels(self.title))
        object.__setattr__(self, "items", tuple(self.items))
        object.__setattr__(self, "paradata", tuple(self.paradata))
        object.__setattr__(self, "checks", tuple(self.checks))
        object.__setattr__(self, "languages", tuple(self.languages))
        object.__setattr__(
            self,
            "choice_lists",
            MappingProxyType({k: tuple(v) for k, v in dict(self.choice_lists).items()}),
        )
        if self.default_language is None and self.languages:
            object.__setattr__(self, "default_language", self.languages[0])
        self._check()

    # -- files ----------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> Questionnaire:
        """Read a questionnaire: volna YAML, or an XLSForm if the file is .xlsx.

        >>> from volna import Questionnaire
        >>> from volna.examples import example_path
        >>> q = Questionnaire.load(example_path("okrussians", "questionnaire.yaml"))
        >>> "destination" in q
        True
        """
        if Path(path).suffix.lower() in (".xlsx", ".xlsm", ".xls"):
            return cls.from_xlsform(path)
        from volna.questionnaire.yaml_format import load

        return load(path)

    @classmethod
    def loads(cls, text: str, filename: str = "<questionnaire>") -> Questionnaire:
        """Read a questionnaire from YAML text."""
        from volna.questionnaire.yaml_format import loads

        return loads(text, filename)

    def save(self, path: str | Path) -> None:
        """Write the questionnaire as volna YAML, or as an XLSForm if ``path`` ends in .xlsx."""
        if Path(path).suffix.lower() == ".xlsx":
            self.to_xlsform(path)
            return
        from volna.questionnaire.yaml_format import save

        save(self, path)

    def to_yaml(self) -> str:
        """The questionnaire as volna YAML text."""
        from volna.questionnaire.yaml_format import dumps

        return dumps(self)

    @classmethod
    def from_xlsform(cls, path: str | Path) -> Questionnaire:
        """Import an XLSForm (survey / choices / settings sheets), as Kobo and ODK use."""
        from volna.questionnaire.xlsform import read_xlsform

        return read_xlsform(path)

    def to_xlsform(self, path: str | Path) -> None:
        """Export as an XLSForm that Kobo, ODK and pyxform accept."""
        from volna.questionnaire.xlsform import write_xlsform

        write_xlsform(self, path)

    # -- lookup ---------------------------------------------------------------

    @cached_property
    def _by_name(self) -> dict[str, Question]:
        return {i.name: i for i in self.items if isinstance(i, Question)}

    @property
    def questions(self) -> tuple[Question, ...]:
        """All questions in order, notes included."""
        return tuple(self._by_name.values())

    @property
    def answerable(self) -> tuple[Question, ...]:
        """Questions that have a column in the response table (notes excluded)."""
        return tuple(q for q in self._by_name.values() if q.type not in DISPLAY_TYPES)

    @property
    def sections(self) -> tuple[Section, ...]:
        """All sections in order."""
        return tuple(i for i in self.items if isinstance(i, Section))

    def section(self, name: str) -> Section:
        """The section called ``name``."""
        for s in self.sections:
            if s.name == name:
                return s
        raise QuestionnaireError(f"{self._where}no section named {name!r}")

    @property
    def page_times(self) -> tuple[Paradata, ...]:
        """The paradata that time one page each (``duration`` with a ``page``), in order.

        >>> q = Questionnaire.loads('''
        ... id: d
        ... paradata: [{name: t_a, type: duration, page: a}]
        ... questions: [{section: a, questions: [{name: x, type: integer}]}]
        ... ''')
        >>> [(p.name, p.page) for p in q.page_times], [x.name for x in q.page_questions("a")]
        ([('t_a', 'a')], ['x'])
        """
        return tuple(p for p in self.paradata if p.page is not None)

    def page_questions(self, page: str) -> tuple[Question, ...]:
        """The answerable questions shown on a page: the section's and its subsections'."""
        self.section(page)
        return tuple(q for q in self.answerable if page in q.section)

    def __getitem__(self, name: str) -> Question:
        try:
            return self._by_name[name]
        except KeyError:
            raise QuestionnaireError(f"{self._where}no question named {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Question]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def _where(self) -> str:
        return f"{self.source}: " if self.source else ""

    # -- the response table ---------------------------------------------------

    @cached_property
    def column_map(self) -> dict[str, tuple[Question | Paradata, str | None]]:
        """Each canonical column -> (its question or paradata, option code or None).

        For the "please specify" column the code is the ``other`` choice's code
        prefixed with ``"_other:"`` so callers can tell it from an option column.
        """
        out: dict[str, tuple[Question | Paradata, str | None]] = {}
        for p in self.paradata:
            out[p.name] = (p, None)
        for q in self.answerable:
            if q.type == "multiple":
                for c in q.choices:
                    out[q.option_column(c.code)] = (q, c.code)
            else:
                out[q.name] = (q, None)
            if q.other_column:
                out[q.other_column] = (q, "_other:" + q.other_choice.code)
        return out

    @property
    def columns(self) -> tuple[str, ...]:
        """The canonical response table's columns, paradata first, in order."""
        return tuple(self.column_map)

    def relevance(self, question: Question | str) -> list[str]:
        """Every expression that must hold for ``question`` to be asked.

        The enclosing sections' conditions, outermost first, then the
        question's own: a question inside a skipped section is skipped too.
        """
        q = self[question] if isinstance(question, str) else question
        sections = {s.name: s for s in self.sections}
        out = [sections[s].relevant for s in q.section if sections[s].relevant]
        if q.relevant:
            out.append(q.relevant)
        return out

    @property
    def multiple_choice(self) -> tuple[Question, ...]:
        """The multi-response sets (select-all-that-apply questions)."""
        return tuple(q for q in self.answerable if q.type == "multiple")

    @property
    def pairs(self) -> tuple[Pair, ...]:
        """Paired items (before/after), each pair once, in questionnaire order."""
        seen: set[str] = set()
        out = []
        for q in self.answerable:
            if q.paired_with and q.name not in seen:
                other = self[q.paired_with]
                seen.update((q.name, other.name))
                first, second = sorted((q, other), key=lambda x: self._order[x.name])
                out.append(Pair(first, second))
        return tuple(out)

    @cached_property
    def _order(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self._by_name)}

    # -- consistency ----------------------------------------------------------

    def _check(self) -> None:
        """Cross-item checks the dataclasses cannot make on their own."""
        w = self._where
        seen: dict[str, str] = {}
        section_names = set()
        for item in self.items:
            if not NAME_PATTERN.match(item.name):
                raise QuestionnaireError(
                    f"{w}{item.name!r} is not a valid name "
                    "(a letter or '_', then letters, digits, '_', '-' or '.')"
                )
            if item.name in seen or item.name in section_names:
                raise QuestionnaireError(f"{w}the name {item.name!r} is used twice")
            if isinstance(item, Section):
                section_names.add(item.name)
                continue
            seen[item.name] = item.type
        for p in self.paradata:
            if p.name in seen:
                raise QuestionnaireError(f"{w}paradata {p.name!r} has a question's name")
            if p.type not in PARADATA_TYPES:
                raise QuestionnaireError(
                    f"{w}paradata {p.name}: unknown type {p.type!r} "
                    f"(expected one of {', '.join(PARADATA_TYPES)})"
                )
        timed: dict[str, str] = {}
        for p in self.paradata:
            if p.page is None:
                continue
            if p.type != "duration":
                raise QuestionnaireError(
                    f"{w}paradata {p.name}: a page time must be of type duration, not {p.type!r}"
                )
            if p.page not in section_names:
                raise QuestionnaireError(
                    f"{w}paradata {p.name}: page {p.page!r} is not a section "
                    f"(the sections: {', '.join(sorted(section_names)) or 'none'})"
                )
            if p.page in timed:
                raise QuestionnaireError(
                    f"{w}paradata {p.name}: page {p.page!r} is already timed by {timed[p.page]}"
                )
            timed[p.page] = p.name
        for q in self.questions:
            self._check_question(q)
        names = set(seen) | section_names
        for c in self.checks:
            if not NAME_PATTERN.match(c.name):
                raise QuestionnaireError(f"{w}check {c.name!r} is not a valid name")
            if c.name in names:
                raise QuestionnaireError(f"{w}check {c.name}: the name is used twice")
            names.add(c.name)
        self._check_expressions()
        # Columns must be unique: 'q_other' may not collide with a question.
        columns: dict[str, str] = {}
        for p in self.paradata:
            columns[p.name] = p.name
        for q in self.answerable:
            for col in q.columns:
                if col in columns:
                    raise QuestionnaireError(
                        f"{w}question {q.name}: column {col!r} is also used by {columns[col]}"
                    )
                columns[col] = q.name

    def expressions(self) -> Iterator[tuple[Question | Section, str, str]]:
        """Every expression in the questionnaire: (item, which column, text)."""
        for item in self.items:
            if isinstance(item, Section):
                if item.relevant:
                    yield item, "relevant", item.relevant
                continue
            for what in ("relevant", "constraint", "required"):
                text = getattr(item, what)
                if isinstance(text, str) and text.strip():
                    yield item, what, text

    def _check_expressions(self) -> None:
        """Compile every expression once, so a typo fails at load time, not mid-analysis."""
        if not self.checks and not any(True for _ in self.expressions()):
            return
        # Lazy: the expression compiler needs polars, questionnaire editing does not.
        from volna.errors import ExpressionError
        from volna.validation import compile_expression

        for item, what, text in self.expressions():
            kind = "section" if isinstance(item, Section) else "question"
            try:
                compile_expression(text, self, current=item.name if kind == "question" else None)
            except ExpressionError as exc:
                raise ExpressionError(f"{self._where}{kind} {item.name}: {what}: {exc}") from None
        for check in self.checks:
            try:
                compile_expression(check.when, self)
            except ExpressionError as exc:
                raise ExpressionError(f"{self._where}check {check.name}: when: {exc}") from None

    def _check_question(self, q: Question) -> None:
        w = f"{self._where}question {q.name}: "
        if q.type not in QUESTION_TYPES:
            raise QuestionnaireError(
                f"{w}unknown type {q.type!r} (expected one of {', '.join(QUESTION_TYPES)})"
            )
        if q.is_choice:
            if not q.choices:
                raise QuestionnaireError(f"{w}a {q.type} question needs choices")
            codes = [c.code for c in q.choices]
            for c in q.choices:
                if not CODE_PATTERN.match(c.code):
                    raise QuestionnaireError(
                        f"{w}choice code {c.code!r} may not be empty or contain spaces or '/'"
                    )
            dupes = sorted({c for c in codes if codes.count(c) > 1})
            if dupes:
                raise QuestionnaireError(f"{w}choice code(s) used twice: {', '.join(dupes)}")
            if sum(c.other for c in q.choices) > 1:
                raise QuestionnaireError(f"{w}only one choice can be 'other, please specify'")
            if any(c.exclusive for c in q.choices) and q.type != "multiple":
                raise QuestionnaireError(
                    f"{w}'exclusive' (a 'none of these' option) only makes sense "
                    "in a multiple-choice question"
                )
            if q.type == "scale":
                scored = [c for c in q.choices if not c.missing]
                if any(c.value is None for c in scored):
                    raise QuestionnaireError(
                        f"{w}every scale choice needs a numeric value unless it is "
                        "marked missing (don't know)"
                    )
                if len(scored) < 2:
                    raise QuestionnaireError(f"{w}a scale needs at least two scored choices")
        elif q.choices:
            raise QuestionnaireError(f"{w}a {q.type} question cannot have choices")
        if (q.minimum is not None or q.maximum is not None) and q.type not in (
            "integer",
            "decimal",
            "date",
        ):
            raise QuestionnaireError(f"{w}minimum/maximum apply to integer, decimal or date")
        if q.paired_with is not None:
            if q.paired_with not in self._by_name:
                raise QuestionnaireError(f"{w}paired_with names no question: {q.paired_with!r}")
            other = self._by_name[q.paired_with]
            if other.type != q.type or other.codes != q.codes:
                raise QuestionnaireError(
                    f"{w}paired with {other.name}, but the two differ in type or choices; "
                    "paired items must be answerable the same way"
                )
            if other.paired_with not in (None, q.name):
                raise QuestionnaireError(
                    f"{w}paired with {other.name}, which is paired with {other.paired_with}"
                )
        sections = {s.name for s in self.sections}
        for s in q.section:
            if s not in sections:
                raise QuestionnaireError(f"{w}unknown section {s!r}")
        if q.type in DISPLAY_TYPES and (q.required is not False or q.constraint):
            raise QuestionnaireError(f"{w}a note cannot be required or constrained")
        if q.attention:
            if q.type not in ("single", "scale"):
                raise QuestionnaireError(
                    f"{w}an attention check asks for one answer: a single or scale question"
                )
            unknown = [c for c in q.attention if c not in q.codes]
            if unknown:
                raise QuestionnaireError(
                    f"{w}attention: {unknown[0]!r} is not one of its codes ({', '.join(q.codes)})"
                )
        if q.reverse and q.type != "scale":
            raise QuestionnaireError(f"{w}only a scale question can be reverse-keyed")
        if q.honeypot:
            if q.attention:
                raise QuestionnaireError(f"{w}a honeypot cannot also be an attention check")
            if q.type in DISPLAY_TYPES or q.required is not False:
                raise QuestionnaireError(
                    f"{w}a honeypot is hidden from people: it cannot be a note or required"
                )
