"""Skip logic for the web form: conditions as readable text and as a tree for form.js.

Without JavaScript a respondent reads "answer if «Did you work?» is «Yes»"
under a question: the relevance expression rendered with the question and
choice labels of the respondent's language instead of names and codes. With
JavaScript, form.js evaluates the same expression live; it gets the parsed
tree as JSON (:func:`to_tree`) and evaluates it with the semantics of
:mod:`volna.questionnaire.expressions`, which the server uses to validate.

>>> from volna import Questionnaire
>>> q = Questionnaire.loads('''
... id: d
... questions:
...   - {name: worked, type: single, label: {en: "Did you work?", ru: "Вы работали?"},
...      choices: [{code: "yes", label: {en: "Yes", ru: "Да"}}, {code: "no", label: {en: "No"}}]}
...   - {name: field, type: text, relevant: "${worked} = 'yes'"}
... ''')
>>> readable("${worked} = 'yes'", q, "en")
'“Did you work?” is “Yes”'
>>> readable("${worked} = 'yes'", q, "ru")
'«Вы работали?» — «Да»'
>>> to_tree("${worked} = 'yes'", q)
['=', ['ref', 'worked', 'choice'], ['lit', 'yes']]
"""

from __future__ import annotations

import math

from volna.questionnaire.expressions import (
    Binary,
    Call,
    Current,
    Literal,
    Node,
    Ref,
    Unary,
    parse,
)
from volna.questionnaire.model import Question, Questionnaire
from volna.validation import QuestionnaireResolver

_WORDS = {
    "en": {
        "and": "and",
        "or": "or",
        "not": "not",
        "is": "{q} is {c}",
        "is not": "{q} is not {c}",
        "answered": "{q} is answered",
        "unanswered": "{q} is not answered",
        "selected": "{c} is chosen in {q}",
        "count": "the number of options chosen in {q}",
        "this": "this answer",
        "quote": "“{}”",
    },
    "ru": {
        "and": "и",
        "or": "или",
        "not": "не",
        "is": "{q} — {c}",
        "is not": "{q} — не {c}",
        "answered": "на {q} есть ответ",
        "unanswered": "на {q} нет ответа",
        "selected": "в {q} выбрано {c}",
        "count": "число выбранных вариантов в {q}",
        "this": "этот ответ",
        "quote": "«{}»",
    },
}
_SYMBOLS = {"=": "=", "!=": "≠", "<": "<", "<=": "≤", ">": ">", ">=": "≥", "div": "÷"}
_SYMBOLS.update({"+": "+", "-": "−", "*": "×", "mod": "mod"})
_PRECEDENCE = {"or": 1, "and": 2, "=": 3, "!=": 3, "<": 4, "<=": 4, ">": 4, ">=": 4}
_PRECEDENCE.update({"+": 5, "-": 5, "*": 6, "div": 6, "mod": 6})


def _number_text(x: float) -> str:
    return str(int(x)) if math.isfinite(x) and x == int(x) and abs(x) < 1e15 else repr(x)


class _Reader:
    """Renders one expression tree in one language."""

    def __init__(self, questionnaire: Questionnaire, language: str, current: str | None):
        self.q = questionnaire
        self.words = _WORDS.get(language, _WORDS["en"])
        self.language = language
        self.current = current

    def quote(self, text: str) -> str:
        return self.words["quote"].format(text)

    def question(self, node: Node) -> Question | None:
        name = node.name if isinstance(node, Ref) else self.current
        if isinstance(node, Ref | Current) and name in self.q:
            return self.q[name]
        return None

    def subject(self, node: Node) -> str:
        if isinstance(node, Current):
            return self.words["this"]
        question = self.question(node)
        if question is not None:
            return self.quote(question.label(self.language))
        if isinstance(node, Ref):  # paradata
            return self.quote(node.name)
        return self.text(node, 3)

    def choice(self, question: Question | None, code: str) -> str:
        if question is not None and question.type == "country":
            from volna.questionnaire.countries import country_name

            try:
                return self.quote(country_name(code, self.language))
            except KeyError:
                return self.quote(code)
        if question is not None and code in question.codes:
            return self.quote(question.choice(code).label(self.language))
        return self.quote(code)

    def text(self, node: Node, outer: int = 0) -> str:
        if isinstance(node, Literal):
            if isinstance(node.value, str):
                return self.quote(node.value)
            return _number_text(node.value)
        if isinstance(node, Ref | Current):
            return self.subject(node)
        if isinstance(node, Unary):
            return "−" + self.text(node.operand, 7)
        if isinstance(node, Binary):
            return self.binary(node, outer)
        return self.call(node)

    def binary(self, node: Binary, outer: int) -> str:
        op, left, right = node.op, node.left, node.right
        own = _PRECEDENCE[op]
        if op in ("=", "!="):
            # "«Q» is «label»" when one side is a question and the other a literal
            for a, b in ((left, right), (right, left)):
                if isinstance(a, Ref | Current) and isinstance(b, Literal):
                    if b.value == "":
                        key = "unanswered" if op == "=" else "answered"
                        return self.words[key].format(q=self.subject(a))
                    if isinstance(b.value, str):
                        value = self.choice(self.question(a), b.value)
                        key = "is" if op == "=" else "is not"
                        return self.words[key].format(q=self.subject(a), c=value)
        if op in ("and", "or"):
            joined = f" {self.words[op]} ".join((self.text(left, own), self.text(right, own + 1)))
        else:
            joined = f"{self.text(left, own)} {_SYMBOLS[op]} {self.text(right, own + 1)}"
        return f"({joined})" if own < outer else joined

    def call(self, node: Call) -> str:
        args = node.args
        if node.name == "selected" and isinstance(args[1], Literal):
            question = self.question(args[0])
            code = str(args[1].value)
            return self.words["selected"].format(
                q=self.subject(args[0]), c=self.choice(question, code)
            )
        if node.name == "count-selected":
            return self.words["count"].format(q=self.subject(args[0]))
        if node.name == "not":
            return f"{self.words['not']} ({self.text(args[0])})"
        return f"{node.name}({', '.join(self.text(a) for a in args)})"


def readable(
    expression: str, questionnaire: Questionnaire, language: str, *, current: str | None = None
) -> str:
    """A condition in words of ``language``: question and choice labels instead of codes.

    >>> from volna import Questionnaire
    >>> q = Questionnaire.loads('''
    ... id: d
    ... questions:
    ...   - {name: age, type: integer, label: {en: Age}}
    ...   - {name: kids, type: multiple, label: {en: Children},
    ...      choices: [{code: none, label: {en: None}}, {code: some, label: {en: Some}}]}
    ... ''')
    >>> readable("${age} >= 18 and not(selected(${kids}, 'none'))", q, "en")
    '“Age” ≥ 18 and not (“None” is chosen in “Children”)'
    """
    return _Reader(questionnaire, language, current).text(parse(expression).node)


def to_tree(expression: str, questionnaire: Questionnaire, *, current: str | None = None) -> list:
    """The parsed expression as nested JSON lists, the form form.js evaluates.

    Nodes: ``['lit', value]``, ``['ref', name, kind]`` (``.`` becomes a reference to
    ``current``), ``['neg', x]``, ``[op, left, right]`` and ``['call', name, [args]]``;
    kinds are those of the expression language (number, date, text, choice, multiple).

    >>> from volna import Questionnaire
    >>> q = Questionnaire.loads("id: d\\nquestions:\\n  - {name: age, type: integer}")
    >>> to_tree(". >= 18", q, current="age")
    ['>=', ['ref', 'age', 'number'], ['lit', 18.0]]
    """
    resolver = QuestionnaireResolver(questionnaire)

    def walk(node: Node) -> list:
        if isinstance(node, Literal):
            return ["lit", node.value]
        if isinstance(node, Ref | Current):
            name = node.name if isinstance(node, Ref) else current
            return ["ref", name, resolver.kind(name)]
        if isinstance(node, Unary):
            return ["neg", walk(node.operand)]
        if isinstance(node, Binary):
            return [node.op, walk(node.left), walk(node.right)]
        return ["call", node.name, [walk(a) for a in node.args]]

    return walk(parse(expression).node)
