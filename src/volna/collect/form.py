"""The questionnaire as a web form: what to show, what was sent, and what is wrong with it.

Both submission paths share this module. The page (:func:`form_view`) lists
every question with its labels in the respondent's language, its choices, help
text and "answer if ..." condition, plus the condition as a tree for form.js.
A submitted form (:func:`read_form`) becomes one row of volna's canonical
table, as text: single choices by code, one "1"/"0" column per option of a
multiple choice (all "" when none is ticked), numbers as typed, "" for no
answer. :func:`apply_skip_logic` blanks the answers to questions the skip logic
does not ask, and :func:`check_answers` runs volna's own validation on the row,
so the server and ``volna validate`` cannot disagree.

>>> from volna import Questionnaire
>>> q = Questionnaire.loads('''
... id: d
... questions:
...   - {name: age, type: integer, min: 18, required: true, label: {en: Age}}
...   - {name: job, type: text, relevant: "${age} >= 25"}
... ''')
>>> sent = read_form(q, {"age": ["19"], "job": ["teacher"]})
>>> row = apply_skip_logic(q, sent.answers)
>>> row
{'age': '19', 'job': ''}
>>> check_answers(q, row, "en")
{}
>>> check_answers(q, {"age": "12", "job": ""}, "en")
{'age': ['Please enter a value of at least 18.']}
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

from volna.collect.conditions import readable, to_tree
from volna.errors import ExpressionError, VolnaError
from volna.questionnaire.model import Question, Questionnaire, Section

#: the longest answer a text field takes (characters); longer is a validation error
MAX_TEXT = 4000
#: more options than this are shown as a drop-down list rather than radio buttons
SELECT_THRESHOLD = 30
# Markup in an answer is refused: no legitimate answer needs a tag, and refusing it
# means no researcher's spreadsheet or report can ever be made to run it.
_MARKUP = re.compile(r"<\s*[A-Za-z/!?]")
_INTEGER = re.compile(r"^-?[0-9]{1,15}$")
_DECIMAL = re.compile(r"^-?(?:[0-9]{1,15}(?:[.][0-9]{0,10})?|[.][0-9]{1,10})$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "language_name": "English",
        "answer_if": "Answer if",
        "section_if": "This section is for those where",
        "required": "required",
        "submit": "Send my answers",
        "choose": "— choose —",
        "no_answer": "No answer",
        "other_specify": "Please specify",
        "honeypot": "Leave this field empty",
        "errors_above": "Some answers need attention: see the messages next to the questions.",
        "e_required": "Please answer this question.",
        "e_code": "Please choose one of the options offered.",
        "e_integer": "Please enter a whole number, like 34.",
        "e_decimal": "Please enter a number, like 2.5.",
        "e_date": "Please enter a date as YYYY-MM-DD.",
        "e_range": "Please enter a number from {minimum} to {maximum}.",
        "e_min": "Please enter a value of at least {minimum}.",
        "e_max": "Please enter a value of at most {maximum}.",
        "e_exclusive": "“{label}” cannot be chosen together with other options.",
        "e_constraint": "This answer does not fit the others; please check it.",
        "e_other": "Please choose “{label}” to specify another answer.",
        "e_markup": "Please write without markup (no < followed by a letter).",
        "e_long": "Please keep this answer under {limit} characters.",
        "thanks_title": "Thank you",
        "thanks": "Your answers have been received and stored encrypted.",
        "thanks_more": "You can close this page. Nothing on it identifies you.",
        "expired": "This form was open too long and has expired. Your answers are kept below: "
        "please send them again.",
        "bad_token": "This form could not be checked. Your answers are kept below: please "
        "send them again.",
        "busy_title": "Too many answers right now",
        "busy": "The server is receiving many answers at once. Please wait a minute and send "
        "again; your answers are kept.",
        "js_notice": "Your answers are encrypted in this browser before they are sent.",
        "nojs_notice": "JavaScript is off: the server encrypts your answers on arrival and "
        "never stores them unencrypted.",
        "sending": "Encrypting and sending…",
        "send_failed": "Sending failed. Please try again.",
        "error_title": "Something went wrong",
        "too_large": "The form sent was too large.",
        "not_found": "There is no such page.",
        "bad_request": "The form sent could not be read.",
        "back": "Back to the questionnaire",
    },
    "ru": {
        "language_name": "Русский",
        "answer_if": "Ответьте, если",
        "section_if": "Этот раздел — для тех, у кого",
        "required": "обязательный вопрос",
        "submit": "Отправить ответы",
        "choose": "— выберите —",
        "no_answer": "Нет ответа",
        "other_specify": "Уточните",
        "honeypot": "Оставьте это поле пустым",
        "errors_above": "Некоторые ответы нужно исправить: см. сообщения рядом с вопросами.",
        "e_required": "Пожалуйста, ответьте на этот вопрос.",
        "e_code": "Пожалуйста, выберите один из предложенных вариантов.",
        "e_integer": "Введите целое число, например 34.",
        "e_decimal": "Введите число, например 2,5.",
        "e_date": "Введите дату в виде ГГГГ-ММ-ДД.",
        "e_range": "Введите число от {minimum} до {maximum}.",
        "e_min": "Введите значение не меньше {minimum}.",
        "e_max": "Введите значение не больше {maximum}.",
        "e_exclusive": "«{label}» нельзя выбрать вместе с другими вариантами.",
        "e_constraint": "Этот ответ не согласуется с другими; проверьте его.",
        "e_other": "Выберите «{label}», чтобы уточнить ответ.",
        "e_markup": "Пожалуйста, пишите без разметки (без < перед буквой).",
        "e_long": "Пожалуйста, уложитесь в {limit} знаков.",
        "thanks_title": "Спасибо",
        "thanks": "Ваши ответы получены и сохранены в зашифрованном виде.",
        "thanks_more": "Эту страницу можно закрыть. Ничто на ней вас не идентифицирует.",
        "expired": "Форма была открыта слишком долго, и срок её действия истёк. Ваши ответы "
        "сохранены ниже: отправьте их ещё раз.",
        "bad_token": "Не удалось проверить форму. Ваши ответы сохранены ниже: отправьте их "
        "ещё раз.",
        "busy_title": "Сейчас слишком много ответов",
        "busy": "Сервер получает много ответов одновременно. Подождите минуту и отправьте "
        "ещё раз; ваши ответы сохранены.",
        "js_notice": "Ваши ответы шифруются в этом браузере до отправки.",
        "nojs_notice": "JavaScript выключен: сервер шифрует ответы сразу при получении и "
        "никогда не хранит их в открытом виде.",
        "sending": "Шифруем и отправляем…",
        "send_failed": "Не удалось отправить. Попробуйте ещё раз.",
        "error_title": "Что-то пошло не так",
        "too_large": "Отправленная форма слишком велика.",
        "not_found": "Такой страницы нет.",
        "bad_request": "Не удалось прочитать отправленную форму.",
        "back": "Вернуться к анкете",
    },
}


def texts(language: str) -> dict[str, str]:
    """The interface wording in ``language`` (English for a language without its own).

    >>> texts("ru")["submit"], texts("de")["submit"]
    ('Отправить ответы', 'Send my answers')
    """
    return TEXTS.get(language, TEXTS["en"])


class FormError(VolnaError):
    """A submitted form that is not a form this server issued (unknown fields, bad shape)."""


# --------------------------------------------------------------------------- the page


@dataclass(frozen=True)
class Field:
    """One question as the page shows it."""

    name: str
    type: str
    widget: str  # radio, checkbox, select, text, number, date, note
    label: str
    hint: str
    required: bool
    choices: tuple[tuple[str, str], ...]
    other_column: str | None
    other_code: str | None
    condition: str  # "answer if ..." in words, "" when always asked
    tree: str  # the JSON condition form.js evaluates ("" when always asked)
    rules: str  # JSON of what form.js checks: required, range, codes, constraint
    minimum: object = None
    maximum: object = None
    honeypot: bool = False  # the questionnaire's own honeypot: hidden like the form's


@dataclass(frozen=True)
class Group:
    """A section (fieldset) and its questions; ``name`` is "" for questions outside any."""

    name: str
    title: str
    condition: str
    tree: str
    fields: list[Field] = field(default_factory=list)


def _combined_tree(q: Questionnaire, expressions: Sequence[str], current: str | None) -> list:
    trees = [to_tree(text, q, current=current) for text in expressions]
    if not trees:
        return []
    combined = trees[0]
    for tree in trees[1:]:
        combined = ["and", combined, tree]
    return combined


def _choices(question: Question, language: str) -> tuple[tuple[str, str], ...]:
    if question.type == "country":
        return country_choices(language)
    return tuple((c.code, c.label(language)) for c in question.choices)


@cache
def country_choices(language: str) -> tuple[tuple[str, str], ...]:
    """Every country as (ISO code, name in ``language``), sorted by name.

    >>> dict(country_choices("ru"))["GE"]
    'Грузия'
    """
    from volna.questionnaire.countries import country_codes, country_name

    pairs = [(code, country_name(code, language)) for code in country_codes()]
    return tuple(sorted(pairs, key=lambda pair: pair[1].casefold()))


def _widget(question: Question) -> str:
    if question.type == "note":
        return "note"
    if question.type == "multiple":
        return "checkbox"
    if question.type == "country" or len(question.choices) > SELECT_THRESHOLD:
        return "select"
    if question.is_choice:
        return "radio"
    return {"integer": "number", "decimal": "number", "date": "date"}.get(question.type, "text")


def _bounds(question: Question) -> tuple[object, object]:
    return question.minimum, question.maximum


def _rules(q: Questionnaire, question: Question, language: str) -> dict:
    rules: dict = {"type": question.type}
    if question.required_message:
        rules["required_message"] = question.required_message.get(language) or next(
            iter(question.required_message.values())
        )
    if question.constraint_message:
        rules["constraint_message"] = question.constraint_message.get(language) or next(
            iter(question.constraint_message.values())
        )
    if question.required is True:
        rules["required"] = True
    elif isinstance(question.required, str):
        rules["required"] = to_tree(question.required, q, current=question.name)
    if question.constraint:
        rules["constraint"] = to_tree(question.constraint, q, current=question.name)
    if question.is_choice:
        rules["codes"] = list(question.codes)
        rules["exclusive"] = [c.code for c in question.choices if c.exclusive]
    if question.minimum is not None:
        rules["min"] = question.minimum
    if question.maximum is not None:
        rules["max"] = question.maximum
    if question.other_column:
        rules["other"] = [question.other_column, question.other_choice.code]
    return rules


def _form_view(q: Questionnaire, language: str) -> tuple[Group, ...]:
    sections = {s.name: s for s in q.sections}
    groups: list[Group] = []
    current: Group | None = None
    for item in q.items:
        if isinstance(item, Section):
            conditions = [
                sections[parent].relevant
                for parent in (*item.parent, item.name)
                if parent in sections and sections[parent].relevant
            ]
            tree = _combined_tree(q, conditions, None)
            current = Group(
                item.name,
                item.label(language),
                " ".join(readable(text, q, language) for text in conditions[-1:]),
                json.dumps(tree, ensure_ascii=False) if tree else "",
            )
            groups.append(current)
            continue
        innermost = item.section[-1] if item.section else ""
        if current is None or current.name != innermost:
            current = Group(innermost, "", "", "")
            groups.append(current)
        own = [item.relevant] if item.relevant else []
        tree = _combined_tree(q, q.relevance(item), item.name)
        current.fields.append(
            Field(
                name=item.name,
                type=item.type,
                widget=_widget(item),
                label=item.label(language),
                hint=item.hints.get(language) or next(iter(item.hints.values()), ""),
                required=item.required is True,
                choices=_choices(item, language),
                other_column=item.other_column,
                other_code=item.other_choice.code if item.other_choice else None,
                condition=" ".join(readable(text, q, language, current=item.name) for text in own),
                tree=json.dumps(tree, ensure_ascii=False) if tree else "",
                rules=json.dumps(_rules(q, item, language), ensure_ascii=False),
                minimum=item.minimum,
                maximum=item.maximum,
                honeypot=item.honeypot,
            )
        )
    return tuple(groups)


def form_view(q: Questionnaire, language: str) -> tuple[Group, ...]:
    """The page's sections and questions in ``language`` (the app keeps one per language).

    >>> from volna import Questionnaire
    >>> from volna.examples import example_path
    >>> q = Questionnaire.load(example_path("okrussians", "questionnaire.yaml"))
    >>> sector = [f for g in form_view(q, "en") for f in g.fields if f.name == "sector"][0]
    >>> sector.condition
    '“Were you working before you left (employed, self-employed or running a business)?” is “Yes”'
    """
    return _form_view(q, language)


# --------------------------------------------------------------------------- the answers


@dataclass
class Submitted:
    """A submitted form: the canonical row (column -> text) and the errors already seen."""

    answers: dict[str, str]
    errors: dict[str, list[str]]


def _first(values: Sequence[str] | str | None) -> str:
    if values is None:
        return ""
    if isinstance(values, str):
        return values
    return values[0] if values else ""


def read_form(
    q: Questionnaire, form: Mapping[str, Sequence[str]], language: str = "en"
) -> Submitted:
    """The canonical row of a submitted form; shape errors (bad codes, numbers, markup) listed.

    ``form`` maps a field name to the list of values sent (a multi-dict's ``getlist``).
    Unknown codes are kept in the row, so the re-rendered form can show what was sent,
    and reported against their question.

    >>> from volna import Questionnaire
    >>> q = Questionnaire.loads('''
    ... id: d
    ... questions:
    ...   - {name: fruit, type: multiple, choices: [{code: apple}, {code: pear}]}
    ...   - {name: n, type: integer}
    ... ''')
    >>> read_form(q, {"fruit": ["pear"], "n": [" 7 "]}).answers
    {'fruit/apple': '0', 'fruit/pear': '1', 'n': '7'}
    >>> errors = read_form(q, {"fruit": ["plum"], "n": ["seven"]}).errors
    >>> errors["fruit"], errors["n"]
    (['Please choose one of the options offered.'], ['Please enter a whole number, like 34.'])
    """
    words = texts(language)
    answers: dict[str, str] = {}
    errors: dict[str, list[str]] = {}

    def fail(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    for question in q.answerable:
        name = question.name
        sent = form.get(name)
        if question.type == "multiple":
            chosen = [v for v in (sent or []) if v != ""]
            if any(code not in question.codes for code in chosen):
                fail(name, words["e_code"])
            for code in question.codes:
                answers[question.option_column(code)] = (
                    ("1" if code in chosen else "0") if chosen else ""
                )
        else:
            value = _first(sent).strip()
            if question.type == "decimal":
                value = value.replace(",", ".")  # 2,5 is how many respondents write 2.5
            if question.type in ("integer", "decimal"):
                value = value.removeprefix("+")
            answers[name] = value
            if value:
                problem = _shape_problem(question, value, words)
                if problem:
                    fail(name, problem)
        if question.other_column:
            text = _first(form.get(question.other_column)).strip()
            answers[question.other_column] = text
            if text:
                problem = _text_problem(text, words)
                if problem:
                    fail(name, problem)
    return Submitted(answers, errors)


def _text_problem(value: str, words: dict[str, str]) -> str | None:
    if len(value) > MAX_TEXT:
        return words["e_long"].format(limit=MAX_TEXT)
    if _MARKUP.search(value):
        return words["e_markup"]
    if any(ord(c) < 32 and c not in "\t\n\r" for c in value):
        return words["e_markup"]
    return None


def _shape_problem(question: Question, value: str, words: dict[str, str]) -> str | None:
    """Why ``value`` cannot be an answer to ``question`` at all (None if it can)."""
    if question.type == "country":
        from volna.questionnaire.countries import country_codes

        return None if value in country_codes() else words["e_code"]
    if question.is_choice:
        return None if value in question.codes else words["e_code"]
    if question.type == "integer":
        return None if _INTEGER.match(value) else words["e_integer"]
    if question.type == "decimal":
        return None if _DECIMAL.match(value) else words["e_decimal"]
    if question.type == "date":
        import datetime

        try:
            datetime.date.fromisoformat(value)
        except ValueError:
            return words["e_date"]
        return None if _DATE.match(value) else words["e_date"]
    return _text_problem(value, words)


def _for_expressions(q: Questionnaire, answers: Mapping[str, str], broken: set[str]) -> dict:
    """Answers as :func:`evaluate_one` takes them; malformed ones count as unanswered."""
    out: dict[str, object] = {}
    for question in q.answerable:
        if question.name in broken:
            continue
        if question.type == "multiple":
            for code in question.codes:
                tick = answers.get(question.option_column(code), "")
                out[question.option_column(code)] = None if tick == "" else tick == "1"
        else:
            value = answers.get(question.name, "")
            out[question.name] = value
    return out


def relevant_questions(
    q: Questionnaire, answers: Mapping[str, str], broken: set[str] = frozenset()
) -> set[str]:
    """Names of the questions the skip logic asks, given these answers.

    An answer to a question that is not asked does not count: the conditions are
    evaluated again without it until nothing changes (chains of skips settle).
    """
    from volna.questionnaire.expressions import evaluate_one
    from volna.validation import QuestionnaireResolver

    resolver = QuestionnaireResolver(q)
    values = _for_expressions(q, answers, set(broken))
    asked = {question.name for question in q.answerable}
    for _ in range(len(q.answerable) + 1):
        now = set()
        for question in q.answerable:
            ok = True
            for text in q.relevance(question):
                try:
                    result = evaluate_one(text, values, resolver, current=question.name)
                except ExpressionError:
                    result = False
                if not result:
                    ok = False
                    break
            if ok:
                now.add(question.name)
        if now == asked:
            break
        asked = now
        values = _for_expressions(q, _blank(q, answers, asked), set(broken) | (set(values) - asked))
    return asked


def _blank(q: Questionnaire, answers: Mapping[str, str], asked: set[str]) -> dict[str, str]:
    out = dict(answers)
    for question in q.answerable:
        if question.name not in asked:
            for column in question.columns:
                out[column] = ""
    return out


def apply_skip_logic(
    q: Questionnaire, answers: Mapping[str, str], broken: set[str] = frozenset()
) -> dict[str, str]:
    """The row with answers to questions the skip logic does not ask made empty."""
    return _blank(q, answers, relevant_questions(q, answers, broken))


def check_answers(
    q: Questionnaire, answers: Mapping[str, str], language: str
) -> dict[str, list[str]]:
    """Run volna's validation on one row; question name -> messages in ``language``.

    The rules are those of ``volna validate``: required, codes, ranges, constraints,
    exclusive options, "please specify" text, skip logic.

    >>> from volna import Questionnaire
    >>> q = Questionnaire.loads("{id: d, questions: [{name: age, type: integer, min: 18}]}")
    >>> check_answers(q, {"age": "12"}, "en")
    {'age': ['Please enter a value of at least 18.']}
    """
    return check_answers_many(q, [answers], [language])[0]


def check_answers_many(
    q: Questionnaire, rows: Sequence[Mapping[str, str]], languages: Sequence[str]
) -> list[dict[str, list[str]]]:
    """:func:`check_answers` for many rows at once, each in its own language.

    The validation costs about as much for one row as for a hundred (its work is per
    column), so the server checks the submissions that arrive together in one call.

    >>> from volna import Questionnaire
    >>> q = Questionnaire.loads("{id: d, questions: [{name: age, type: integer, min: 18}]}")
    >>> check_answers_many(q, [{"age": "40"}, {"age": "x"}], ["en", "ru"])
    [{}, {'age': ['Введите целое число, например 34.']}]
    """
    import polars as pl

    from volna.io.canonical import to_canonical
    from volna.io.raw import RawTable
    from volna.problems import Problem
    from volna.validation import validate

    columns = {c: [row.get(c) or None for row in rows] for c in q.columns}
    raw = RawTable(pl.DataFrame(columns, schema={c: pl.String for c in columns}), "form", "csv")
    problems: list[Problem] = []
    frame = to_canonical(raw, q, missing_columns="null", problems=problems)
    report = validate(frame, q)
    out: list[dict[str, list[str]]] = [{} for _ in rows]
    for problem in [*problems, *report.problems]:
        name = problem.question or problem.column.split("/")[0]
        if name not in q or problem.row is None:
            continue
        index = problem.row - 1  # problems count data rows from 1
        language = languages[index]
        message = _message(q[name], problem.rule, language, texts(language))
        errors = out[index]
        if message not in errors.get(name, []):
            errors.setdefault(name, []).append(message)
    return out


def _message(question: Question, rule: str, language: str, words: dict[str, str]) -> str:
    if rule == "required_missing":
        return question.required_message.get(language) or words["e_required"]
    if rule == "out_of_range":
        low, high = question.minimum, question.maximum
        if low is not None and high is not None:
            return words["e_range"].format(minimum=low, maximum=high)
        if low is not None:
            return words["e_min"].format(minimum=low)
        return words["e_max"].format(maximum=high)
    if rule == "constraint_failed":
        return question.constraint_message.get(language) or words["e_constraint"]
    if rule == "exclusive_conflict":
        exclusive = next(c for c in question.choices if c.exclusive)
        return words["e_exclusive"].format(label=exclusive.label(language))
    if rule == "other_without_choice":
        return words["e_other"].format(label=question.other_choice.label(language))
    if rule == "invalid_value":
        return words["e_integer"] if question.type == "integer" else words["e_decimal"]
    return words["e_code"]
