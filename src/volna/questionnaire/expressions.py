"""Parse XLSForm expressions (``relevant``, ``constraint``, ``required``) and evaluate them.

The grammar is the part of XPath 1.0 that XLSForm uses: numbers, quoted strings, ``${name}``
references, ``.`` for the current question's answer, the operators ``or and = != < <= > >= + -
* div mod``, unary minus, parentheses and a fixed list of functions (see ``FUNCTIONS``). User
text is never given to ``eval``: an iterative tokenizer feeds a recursive-descent parser whose
depth is counted, so hostile text fails fast with :class:`~volna.errors.ExpressionError`.

Evaluation compiles the tree into one polars expression run over the whole response table;
:func:`evaluate_one` runs the same compiled expression on a one-row table, so a web form and a
batch check cannot disagree.

>>> import polars as pl
>>> resolver = SimpleResolver({"age": "number", "fruit": "multiple"}, {"fruit": ["apple", "pear"]})
>>> frame = pl.DataFrame(
...     {"age": [30, 12, None], "fruit/apple": [True, True, None], "fruit/pear": [0, 1, None]}
... )
>>> evaluate("${age} >= 18 or selected(${fruit}, 'pear')", frame, resolver).to_list()
[True, True, False]

Semantics, following XPath 1.0 and ODK as XLSForm authors expect:

* Values have four types: number (Float64, as every XPath number is a double), string,
  boolean and date. A reference's type comes from its question kind; ``text``, ``choice`` and
  ``multiple`` answers are strings (a multiple answer is its selected codes joined by spaces in
  option order, as XLSForm stores it).
* A reference to an unanswered question is null. In a string context null is ``''``; in a
  number context it is NaN. So ``${q} = ''`` is true exactly when ``q`` is unanswered, whatever
  its kind, and ``${age} != ''`` is true when age is answered.
* Boolean results are never null. With NaN or an empty date, ``= < <= > >=`` are false and
  ``!=`` is true.
* ``=`` and ``!=``: with a boolean on either side both sides become booleans; else with a
  number (or a date against a number) both become numbers; a date against a string literal
  parses the literal as a date (an invalid one is an error when compiling); else both sides are
  compared as strings. ``<``-style comparisons compare dates as dates and everything else as
  numbers (so ``${scale} > 2`` works on choice codes '1'..'5' and ``'b' > 'a'`` is false).
* Text becomes a number only if it is a plain decimal (``' -1.5 '``); anything else is NaN.
  A number becomes text without a trailing ``.0`` (``string(2)`` is ``'2'``).
* Dates are days since 1970-01-01 in arithmetic: ``date - date`` is a number of days and
  ``date + 1`` is a number; ``date(number)`` turns days back into a date.
* Arithmetic never raises and never returns null: null operands are NaN, ``div`` by zero gives
  ``inf`` or NaN, ``mod`` truncates like XPath (``-5 mod 2`` is -1).
* ``and``, ``or`` and ``not()`` convert operands by XPath ``boolean()``: a number is true unless
  0 or NaN, a string unless empty, a date unless empty.
* Functions: ``regex(x, p)`` searches (users anchor with ``^``/``$``) using polars' Rust regex,
  which runs in linear time; an empty answer never matches. ``round(x, n)`` rounds halves away
  from zero as ODK does. ``int(x)`` truncates toward zero. ``if()`` and ``coalesce()`` give
  the type of their branches, or text when the branches' types differ (number and boolean give
  a number). ``coalesce(a, b)`` is ``b`` when ``a`` is empty (null or ``''``).
* ``selected(x, code)`` is true when ``code`` is one of the space-separated words of ``x``;
  on a multiple question it reads the option's Boolean column ``"q/code"``, and an unknown
  code literal is an error. ``count-selected(x)`` counts those words (0 when empty).
"""

from __future__ import annotations

import datetime
import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

from volna.errors import ExpressionError

__all__ = [
    "FUNCTIONS",
    "KINDS",
    "Binary",
    "Call",
    "Current",
    "Expression",
    "Literal",
    "Node",
    "Ref",
    "Resolver",
    "SimpleResolver",
    "Unary",
    "evaluate",
    "evaluate_one",
    "parse",
    "to_polars",
]

#: limits that make hostile input fail fast instead of exhausting time, memory or the stack
MAX_LENGTH = 10_000
MAX_TOKENS = 2_000
MAX_DEPTH = 64
MAX_PATTERN_LENGTH = 1_000

#: the question kinds a :class:`Resolver` may report
KINDS = frozenset({"multiple", "number", "date", "text", "choice"})

#: function name -> (fewest, most) arguments; None = no upper bound
FUNCTIONS: Mapping[str, tuple[int, int | None]] = {
    "abs": (1, 1),
    "boolean": (1, 1),
    "coalesce": (2, 2),
    "concat": (1, None),
    "contains": (2, 2),
    "count-selected": (1, 1),
    "date": (1, 1),
    "ends-with": (2, 2),
    "false": (0, 0),
    "if": (3, 3),
    "int": (1, 1),
    "not": (1, 1),
    "number": (0, 1),
    "regex": (2, 2),
    "round": (1, 2),
    "selected": (2, 2),
    "starts-with": (2, 2),
    "string": (0, 1),
    "string-length": (0, 1),
    "today": (0, 0),
    "true": (0, 0),
}

_PRECEDENCE = {"or": 1, "and": 2, "=": 3, "!=": 3, "<": 4, "<=": 4, ">": 4, ">=": 4}
_PRECEDENCE.update({"+": 5, "-": 5, "*": 6, "div": 6, "mod": 6})
_KEYWORDS = frozenset({"and", "or", "div", "mod"})
# Chains of these operators are compiled flat (any/all/sum_horizontal): long `or` lists and
# sums of many questions are common, and deep polars trees are slow and can overflow its stack.
_CHAINS = {"or": "or", "and": "and", "+": "+", "-": "+"}
_COMPARE = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

_NAME = re.compile(r"[^\W\d][\w.\-]*")  # a question name: letter or _, then word chars . -
_WORD = re.compile(r"[^\W\d][\w:\-]*")  # a function name or keyword (':' so jr:x reads as one)
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_NUMERIC_TEXT = r"^\s*(-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))\s*$"
_DATE_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_NAN = float("nan")
_RESULT = "result"


# --------------------------------------------------------------------------- syntax tree


@dataclass(frozen=True, slots=True)
class Literal:
    """A number (a float, as every XPath number) or a string; ``pos`` is ignored by ``==``."""

    value: float | str
    pos: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Ref:
    """``${name}``: another question's answer."""

    name: str
    pos: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Current:
    """``.``: the answer of the question the expression belongs to."""

    pos: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Unary:
    """Unary minus (the only unary operator)."""

    op: str
    operand: Node
    pos: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Binary:
    """``left op right``; chains are left-associative: ``1 - 2 - 3`` is ``(1 - 2) - 3``."""

    op: str
    left: Node
    right: Node
    pos: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Call:
    """A function call; ``name`` is one of ``FUNCTIONS``."""

    name: str
    args: tuple[Node, ...]
    pos: int = field(default=0, compare=False, repr=False)


Node = Literal | Ref | Current | Unary | Binary | Call


@dataclass(frozen=True, slots=True)
class Expression:
    """A parsed expression: its text, tree, referenced question names and use of ``.``.

    >>> e = parse("${a} + 1 > .")
    >>> sorted(e.references), e.uses_current, str(e)
    (['a'], True, '${a} + 1 > .')
    """

    source: str
    node: Node
    references: frozenset[str]
    uses_current: bool

    def __str__(self) -> str:
        return self.source


# --------------------------------------------------------------------------- errors


def _show(source: str) -> str:
    # Whitespace and control characters become spaces so the message stays on one line and
    # positions still line up; long sources are cut (the position still locates the fault).
    head = "".join(c if c.isprintable() else " " for c in source[:200])
    return f'"{head}..."' if len(source) > 200 else f'"{head}"'


def _error(source: str, message: str, pos: int, hint: str = "") -> ExpressionError:
    tail = f"; {hint}" if hint else ""
    return ExpressionError(f"expression {_show(source)}: {message} at position {pos}{tail}")


# --------------------------------------------------------------------------- tokenizer


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # number, string, ref, dot, name, op, end
    text: str
    pos: int


def _describe(token: _Token) -> str:
    if token.kind == "end":
        return "end of expression"
    if token.kind == "string":
        return f"string {token.text!r}"
    if token.kind == "ref":
        return f"'${{{token.text}}}'"
    return f"'{token.text}'"


def _tokenize(source: str) -> list[_Token]:
    """Split ``source`` into tokens with a plain loop (no regex backtracking over the text)."""
    tokens: list[_Token] = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c.isspace():
            i += 1
            continue
        if len(tokens) >= MAX_TOKENS:
            raise _error(source, f"more than {MAX_TOKENS} tokens", i)
        if c == "$":
            if not source.startswith("${", i):
                raise _error(source, "unexpected '$'", i, "references are written ${name}")
            end = source.find("}", i + 2)
            if end < 0:
                raise _error(source, "unterminated reference '${'", i)
            name = source[i + 2 : end]
            if not _NAME.fullmatch(name):
                raise _error(source, f"invalid question name {name!r}", i + 2)
            tokens.append(_Token("ref", name, i))
            i = end + 1
        elif c in "'\"":
            end = source.find(c, i + 1)  # XPath strings have no escapes
            if end < 0:
                raise _error(source, "unterminated string", i)
            tokens.append(_Token("string", source[i + 1 : end], i))
            i = end + 1
        elif c in "0123456789" or (c == "." and source[i + 1 : i + 2].isdecimal()):
            match = _NUMBER.match(source, i)
            if match is None:  # a non-ASCII digit after '.'
                raise _error(source, f"unexpected character {c!r}", i)
            tokens.append(_Token("number", match.group(), i))
            i = match.end()
        elif c == ".":
            if source.startswith("..", i):
                raise _error(source, "'..' (parent) is not supported", i)
            tokens.append(_Token("dot", ".", i))
            i += 1
        elif c.isalpha() or c == "_":
            match = _WORD.match(source, i)
            assert match is not None  # c is a letter or '_'
            tokens.append(_Token("name", match.group(), i))
            i = match.end()
        elif source.startswith(("!=", "<=", ">="), i):
            tokens.append(_Token("op", source[i : i + 2], i))
            i += 2
        elif c in "=<>+-*(),":
            tokens.append(_Token("op", c, i))
            i += 1
        else:
            raise _error(source, f"unexpected character {c!r}", i)
    tokens.append(_Token("end", "", n))
    return tokens


# --------------------------------------------------------------------------- parser


def _check_pattern(pattern: str) -> str | None:
    """Return why a regex pattern is refused, or None if both engines accept it."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"regex pattern longer than {MAX_PATTERN_LENGTH} characters"
    try:
        re.compile(pattern)
    except re.error as exc:  # Python's message is the clearest one for plain syntax errors
        return f"invalid regex pattern {pattern!r} ({exc.msg} at pattern character {exc.pos})"
    try:  # polars' Rust engine lacks look-around and back-references and caps pattern size
        pl.select(pl.lit("", dtype=pl.String).str.contains(pattern))
    except pl.exceptions.PolarsError:
        return (
            f"regex pattern {pattern!r} is not supported"
            " (no look-around, back-references or huge repetitions)"
        )
    return None


def _parse_date(text: str) -> datetime.date | None:
    if not _DATE_TEXT.fullmatch(text):
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        return None


class _Parser:
    """Precedence-climbing recursive descent with two explicit counters.

    ``depth`` counts open parentheses and calls (at most MAX_DEPTH, as documented).
    ``pending`` counts operators, calls and minus signs whose operand is being parsed: a lower
    bound on the height of the finished tree, so a too-tall tree fails on the way down. Each
    frame of recursion raises one of the two, so the stack stays near 4 * MAX_DEPTH frames.
    The height of every finished node (or/and/+ chains counted flat, as they are compiled) is
    capped too, which bounds the compiler's recursion and the size of the polars plan.
    """

    def __init__(self, source: str, tokens: list[_Token]) -> None:
        self.source = source
        self.tokens = tokens
        self.index = 0
        self.depth = 0
        self.pending = 0

    def fail(self, message: str, pos: int, hint: str = "") -> ExpressionError:
        return _error(self.source, message, pos, hint)

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def at(self, text: str) -> bool:
        token = self.tokens[self.index]
        return token.kind == "op" and token.text == text

    def expect_close(self) -> None:
        token = self.advance()
        if not (token.kind == "op" and token.text == ")"):
            raise self.fail(f"expected ')' but found {_describe(token)}", token.pos)

    def enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"parentheses and function calls nested deeper than {MAX_DEPTH}", pos)

    def push(self, count: int, pos: int) -> None:
        self.pending += count
        if self.pending > MAX_DEPTH:
            raise self.fail(f"operations nested deeper than {MAX_DEPTH}", pos)

    def checked(self, node: Node, height: int) -> tuple[Node, int]:
        if height > MAX_DEPTH:
            raise self.fail(f"operations nested deeper than {MAX_DEPTH}", node.pos)
        return node, height

    def expression(self, min_precedence: int) -> tuple[Node, int]:
        left, height = self.unary()
        while True:
            token = self.peek()
            op = token.text if token.kind in ("op", "name") else None
            if op not in _PRECEDENCE or (token.kind == "name" and op not in _KEYWORDS):
                return left, height
            if _PRECEDENCE[op] < min_precedence:
                return left, height
            self.index += 1
            self.push(1, token.pos)
            right, right_height = self.expression(_PRECEDENCE[op] + 1)
            self.pending -= 1
            chain = _CHAINS.get(op)
            if chain and isinstance(left, Binary) and _CHAINS.get(left.op) == chain:
                height = max(height, right_height + 1)
            else:
                height = max(height, right_height) + 1
            left, height = self.checked(Binary(op, left, right, token.pos), height)

    def unary(self) -> tuple[Node, int]:
        signs: list[int] = []
        while self.at("-"):  # a loop, not recursion: '- - - - 1' must not grow the stack
            signs.append(self.advance().pos)
        levels = min(len(signs), 2 - len(signs) % 2)  # the tree keeps one or two minus nodes
        if signs:
            self.push(levels, signs[0])
        node, height = self.primary()
        self.pending -= levels
        if len(signs) % 2 == 0 and signs:  # an even number of minus signs is number(x)
            node, height = Unary("-", Unary("-", node, signs[-1]), signs[-2]), height + 2
        elif signs:
            node, height = Unary("-", node, signs[0]), height + 1
        return self.checked(node, height)

    def primary(self) -> tuple[Node, int]:
        token = self.advance()
        if token.kind == "number":
            return Literal(float(token.text), token.pos), 0
        if token.kind == "string":
            return Literal(token.text, token.pos), 0
        if token.kind == "ref":
            return Ref(token.text, token.pos), 0
        if token.kind == "dot":
            return Current(token.pos), 0
        if token.kind == "op" and token.text == "(":
            self.enter(token.pos)
            inner = self.expression(1)
            self.expect_close()
            self.depth -= 1
            return inner
        if token.kind == "name" and self.at("("):
            return self.call(token)
        if token.kind == "name" and token.text not in _KEYWORDS:
            hint = f"a question is referenced as ${{{token.text}}}"
            raise self.fail(f"unexpected name {token.text!r}", token.pos, hint)
        if token.kind == "end":
            raise self.fail("unexpected end of expression", token.pos)
        raise self.fail(f"unexpected {_describe(token)}", token.pos)

    def call(self, token: _Token) -> tuple[Node, int]:
        name = token.text
        if name not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS))
            raise self.fail(f"unknown function {name!r}", token.pos, f"known functions: {known}")
        self.enter(self.advance().pos)
        self.push(1, token.pos)
        args: list[Node] = []
        height = 0
        if not self.at(")"):
            while True:
                arg, arg_height = self.expression(1)
                args.append(arg)
                height = max(height, arg_height)
                if not self.at(","):
                    break
                self.advance()
        self.expect_close()
        self.depth -= 1
        self.pending -= 1
        fewest, most = FUNCTIONS[name]
        if len(args) < fewest or (most is not None and len(args) > most):
            if most is None:
                wanted = f"at least {fewest}"
            elif fewest == most:
                wanted = str(fewest)
            else:
                wanted = f"{fewest} to {most}"
            plural = "" if wanted in ("1", "at least 1") else "s"
            message = f"{name}() takes {wanted} argument{plural} but was given {len(args)}"
            raise self.fail(message, token.pos)
        if not args and fewest == 0 and most == 1:  # string(), number(), string-length() use '.'
            args.append(Current(token.pos))
        self.check_arguments(name, args)
        return self.checked(Call(name, tuple(args), token.pos), height + 1)

    def check_arguments(self, name: str, args: list[Node]) -> None:
        # Literal arguments are checked here so that a broken form fails when it is loaded.
        if name == "regex":
            pattern = args[1]
            if not (isinstance(pattern, Literal) and isinstance(pattern.value, str)):
                raise self.fail("the pattern of regex() must be a quoted string", pattern.pos)
            problem = _check_pattern(pattern.value)
            if problem:
                raise self.fail(problem, pattern.pos)
        elif name == "date":
            arg = args[0]
            literal = isinstance(arg, Literal) and isinstance(arg.value, str)
            if literal and _parse_date(arg.value) is None:
                raise self.fail(f"{arg.value!r} is not a date (YYYY-MM-DD)", arg.pos)


def _scan(node: Node) -> tuple[frozenset[str], bool]:
    names: set[str] = set()
    uses_current = False
    stack = [node]
    while stack:  # iterative: the tree may be MAX_DEPTH deep
        item = stack.pop()
        if isinstance(item, Ref):
            names.add(item.name)
        elif isinstance(item, Current):
            uses_current = True
        elif isinstance(item, Unary):
            stack.append(item.operand)
        elif isinstance(item, Binary):
            stack.extend((item.left, item.right))
        elif isinstance(item, Call):
            stack.extend(item.args)
    return frozenset(names), uses_current


def parse(text: str) -> Expression:
    """Parse an XLSForm expression; raise ExpressionError naming the fault and its position.

    >>> parse("1 + 2").node
    Binary(op='+', left=Literal(value=1.0), right=Literal(value=2.0))
    >>> parse("${age} >> 3")
    Traceback (most recent call last):
    ...
    volna.errors.ExpressionError: expression "${age} >> 3": unexpected '>' at position 8
    """
    if len(text) > MAX_LENGTH:
        raise _error(text, f"longer than {MAX_LENGTH} characters ({len(text)})", MAX_LENGTH)
    tokens = _tokenize(text)
    if tokens[0].kind == "end":
        raise _error(text, "empty expression", 0)
    parser = _Parser(text, tokens)
    node, _ = parser.expression(1)
    token = parser.peek()
    if token.kind != "end":
        raise parser.fail(f"unexpected {_describe(token)}", token.pos)
    references, uses_current = _scan(node)
    return Expression(text, node, references, uses_current)


# --------------------------------------------------------------------------- resolvers


class Resolver(Protocol):
    """What the evaluator needs to know about the questionnaire's questions."""

    def kind(self, name: str) -> str:
        """One of KINDS; raise ExpressionError for an unknown question."""
        ...

    def options(self, name: str) -> Sequence[str]:
        """Option codes of a "multiple" question (Boolean columns ``f"{name}/{code}"``)."""
        ...


class SimpleResolver:
    """A Resolver backed by two dictionaries.

    >>> r = SimpleResolver({"fruit": "multiple"}, {"fruit": ["apple"]})
    >>> r.kind("fruit"), list(r.options("fruit"))
    ('multiple', ['apple'])
    >>> r.kind("fruits")
    Traceback (most recent call last):
    ...
    volna.errors.ExpressionError: unknown question 'fruits'
    """

    def __init__(
        self, kinds: Mapping[str, str], options: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        for name, kind in kinds.items():
            if kind not in KINDS:
                raise ValueError(f"question {name!r}: kind {kind!r} is not one of {sorted(KINDS)}")
        self._kinds = dict(kinds)
        self._options = {name: list(codes) for name, codes in (options or {}).items()}

    def kind(self, name: str) -> str:
        try:
            return self._kinds[name]
        except KeyError:
            raise ExpressionError(f"unknown question {name!r}") from None

    def options(self, name: str) -> Sequence[str]:
        self.kind(name)
        return self._options.get(name, [])


# --------------------------------------------------------------------------- compiler


@dataclass(frozen=True, slots=True)
class _Value:
    expr: pl.Expr
    type: str  # number, string, boolean, date
    nullable: bool = False  # may be null, i.e. an empty answer; only references and branches
    const: object = None  # the Python value when known while compiling (a literal)
    pos: int = 0
    # A column or literal with constant-size conversions: cheap to use twice (see _apply).
    simple: bool = False


def _constant(value: float | str | bool | datetime.date, pos: int = 0) -> _Value:
    if isinstance(value, bool):
        type_, dtype = "boolean", pl.Boolean
    elif isinstance(value, float):
        type_, dtype = "number", pl.Float64
    elif isinstance(value, str):
        type_, dtype = "string", pl.String
    else:
        type_, dtype = "date", pl.Date
    return _Value(pl.lit(value, dtype=dtype), type_, const=value, pos=pos, simple=True)


def _let(body: Callable[..., pl.Expr], *values: pl.Expr) -> pl.Expr:
    # A polars expression is a tree: using a sub-expression twice copies it, and nesting such
    # uses grows the tree exponentially. A struct computes each field once and pl.field()
    # inside struct.with_fields reads it back cheaply, which works as a `let`.
    names = [f"v{i}" for i in range(len(values))]
    packed = pl.struct([value.alias(name) for value, name in zip(values, names, strict=True)])
    fields = [pl.field(name) for name in names]
    return packed.struct.with_fields(body(*fields).alias(_RESULT)).struct.field(_RESULT)


def _apply(body: Callable[..., pl.Expr], *values: _Value) -> pl.Expr:
    """``body`` of the values' expressions, through _let unless each is cheap to repeat.

    Polars rewrites some operations (notably fill_nan) into forms that use their input more
    than once, so applied at every nesting level they grow the plan exponentially.
    """
    if all(value.simple for value in values):
        return body(*(value.expr for value in values))
    return _let(body, *(value.expr for value in values))


def _text_to_number(text: str) -> float:
    match = re.match(_NUMERIC_TEXT, text)
    return float(match.group(1)) if match else _NAN


def _format_number(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return str(int(x)) if x == int(x) and abs(x) < 1e15 else repr(x)


def _number(v: _Value) -> _Value:
    """XPath number(): never null; empty answers and non-numeric text are NaN."""
    if v.type == "number":
        return v if not v.nullable else _Value(v.expr.fill_null(_NAN), "number", simple=v.simple)
    if v.const is not None:
        if isinstance(v.const, str):
            return _constant(_text_to_number(v.const))
        if isinstance(v.const, bool):
            return _constant(float(v.const))
    if v.type == "string":
        number = v.expr.str.extract(_NUMERIC_TEXT, 1).cast(pl.Float64)
        return _Value(number.fill_null(_NAN), "number", simple=v.simple)
    if v.type == "boolean":
        return _Value(v.expr.cast(pl.Float64), "number", simple=v.simple)
    days = v.expr.cast(pl.Int32).cast(pl.Float64)  # a date is days since 1970-01-01
    return _Value(days.fill_null(_NAN), "number", simple=v.simple)


def _string(v: _Value, keep_null: bool = False) -> _Value:
    """XPath string(): null (an empty answer) is '' unless ``keep_null``."""
    if v.type == "string":
        expr = v.expr if keep_null or not v.nullable else v.expr.fill_null("")
        nullable = keep_null and v.nullable
        return _Value(expr, "string", nullable=nullable, const=v.const, simple=v.simple)
    if v.const is not None:
        if isinstance(v.const, bool):
            return _constant("true" if v.const else "false")
        if isinstance(v.const, float):
            return _constant(_format_number(v.const))
    if v.type == "number":
        # polars writes 2.0 as '2.0' and inf as 'inf'; XPath writes '2' and 'Infinity'
        text = v.expr.cast(pl.String).str.replace(r"\.0$", "").str.replace(r"^-0$", "0")
        expr = text.str.replace(r"^(-?)inf$", "${1}Infinity")
    elif v.type == "boolean":
        expr = pl.when(v.expr).then(pl.lit("true")).otherwise(pl.lit("false"))
    else:
        expr = v.expr.dt.to_string("%Y-%m-%d")
    if v.nullable and not keep_null:
        expr = expr.fill_null("")
    return _Value(expr, "string", nullable=keep_null and v.nullable, simple=v.simple)


def _boolean(v: _Value) -> _Value:
    """XPath boolean(): never null; false for 0, NaN, '' and empty answers."""
    if v.type == "boolean":
        return v
    if v.const is not None:
        const = v.const
        if isinstance(const, float):
            return _constant(not math.isnan(const) and const != 0)
        return _constant(bool(const))
    if v.type == "number":
        expr = _apply(lambda x: x.fill_nan(None).ne(0.0).fill_null(False), v)
    elif v.type == "string":
        expr = v.expr.str.len_bytes().gt(0).fill_null(False)
    else:
        expr = v.expr.is_not_null()
    return _Value(expr, "boolean", simple=v.simple)


def _unify(a: str, b: str) -> str:
    if a == b:
        return a
    return "number" if {a, b} == {"number", "boolean"} else "string"


def _compare_numbers(op: str, a: _Value, b: _Value) -> pl.Expr:
    # Polars orders NaN above every number and makes NaN == NaN true; XPath makes every
    # comparison with NaN false (and != true). Turning NaN into null, then null into the
    # XPath answer, gets that without using either operand twice.
    for side in (a, b):
        if isinstance(side.const, float) and math.isnan(side.const):
            return pl.lit(op == "!=")

    def body(x: pl.Expr, y: pl.Expr) -> pl.Expr:
        x = x if a.const is not None else x.fill_nan(None)
        y = y if b.const is not None else y.fill_nan(None)
        return _COMPARE[op](x, y).fill_null(op == "!=")

    return _apply(body, a, b)


class _Compiler:
    """Turns a syntax tree into a typed polars expression, recording the columns it reads."""

    def __init__(
        self,
        source: str,
        resolver: Resolver,
        current: str | None,
        today: datetime.date | None,
    ) -> None:
        self.source = source
        self.resolver = resolver
        self.current = current
        self.today = today if today is not None else datetime.date.today()
        self.questions: dict[str, str] = {}  # referenced question -> kind
        self.columns: dict[str, int] = {}  # needed column -> position of its first use

    def fail(self, message: str, pos: int, hint: str = "") -> ExpressionError:
        return _error(self.source, message, pos, hint)

    def kind(self, name: str, pos: int) -> str:
        try:
            kind = self.resolver.kind(name)
        except ExpressionError as exc:
            raise self.fail(str(exc), pos) from None
        if kind not in KINDS:
            raise self.fail(f"question {name!r} has kind {kind!r}, not one of {sorted(KINDS)}", pos)
        self.questions[name] = kind
        return kind

    def options(self, name: str, pos: int, use: bool = True) -> list[str]:
        """Option codes of a multiple question; ``use`` marks all its columns as needed."""
        try:
            codes = [str(code) for code in self.resolver.options(name)]
        except ExpressionError as exc:
            raise self.fail(str(exc), pos) from None
        for code in codes if use else ():
            self.columns.setdefault(f"{name}/{code}", pos)
        return codes

    def target(self, node: Node) -> str | None:
        """The question name of a ``${name}`` or ``.`` node, else None."""
        if isinstance(node, Ref):
            return node.name
        if isinstance(node, Current):
            if self.current is None:
                raise self.fail("'.' used but there is no current question", node.pos)
            return self.current
        return None

    def compile(self, node: Node) -> _Value:
        if isinstance(node, Literal):
            return _constant(node.value, node.pos)
        if isinstance(node, Ref | Current):
            name = self.target(node)
            assert name is not None
            return self.reference(name, node.pos)
        if isinstance(node, Unary):
            number = _number(self.compile(node.operand))
            const = -number.const if isinstance(number.const, float) else None
            return _Value(-number.expr, "number", const=const, pos=node.pos, simple=number.simple)
        if isinstance(node, Binary):
            return self.binary(node)
        return self.call(node)

    def reference(self, name: str, pos: int) -> _Value:
        kind = self.kind(name, pos)
        if kind == "multiple":
            codes = self.options(name, pos)
            if not codes:
                return _Value(pl.lit(None, dtype=pl.String), "string", nullable=True)
            columns = [pl.col(f"{name}/{code}").cast(pl.Boolean) for code in codes]
            chosen = [pl.when(c).then(pl.lit(code)) for c, code in zip(columns, codes, strict=True)]
            joined = pl.concat_str(chosen, separator=" ", ignore_nulls=True)
            answered = pl.any_horizontal([c.is_not_null() for c in columns])
            return _Value(pl.when(answered).then(joined), "string", nullable=True, simple=True)
        self.columns.setdefault(name, pos)
        column = pl.col(name)
        if kind == "number":
            expr = column.cast(pl.Float64, strict=False)
        elif kind == "date":
            expr = column.cast(pl.Date, strict=False)
        else:
            expr = column.cast(pl.String)
        type_ = {"number": "number", "date": "date"}.get(kind, "string")
        return _Value(expr, type_, nullable=True, simple=True)

    def date(self, v: _Value) -> _Value:
        if v.type == "date":
            return v
        if isinstance(v.const, str):
            parsed = _parse_date(v.const)
            if parsed is None:
                raise self.fail(f"{v.const!r} is not a date (YYYY-MM-DD)", v.pos)
            return _constant(parsed, v.pos)
        if v.type == "string":
            expr = v.expr.str.to_date("%Y-%m-%d", strict=False)
        else:
            expr = _number(v).expr.floor().cast(pl.Int32, strict=False).cast(pl.Date)
        return _Value(expr, "date", nullable=True, simple=v.simple)

    def convert(self, v: _Value, type_: str) -> _Value:
        if v.type == type_:
            return v
        if type_ == "number":
            return _number(v)
        if type_ == "date":
            return self.date(v)
        return _string(v, keep_null=True)

    def binary(self, node: Binary) -> _Value:
        chain = _CHAINS.get(node.op)
        if chain is None:
            left, right = self.compile(node.left), self.compile(node.right)
            if node.op in _COMPARE:
                return _Value(self.compare(node.op, left, right), "boolean")
            a, b = _number(left).expr, _number(right).expr
            if node.op == "*":
                return _Value(a * b, "number")
            if node.op == "div":
                return _Value(a / b, "number")  # floats: x/0 is inf or NaN, never an error
            # XPath mod keeps the dividend's sign (polars % is floored like Python's)
            return _Value(_let(lambda x, y: x - y * (x / y).truncate(), a, b), "number")
        # Walk the left spine iteratively: a chain of n terms is one flat polars call.
        terms: list[tuple[str, Node]] = []
        item: Node = node
        while isinstance(item, Binary) and _CHAINS.get(item.op) == chain:
            terms.append((item.op, item.right))
            item = item.left
        terms.append((chain, item))
        terms.reverse()
        if chain in ("or", "and"):
            parts = [_boolean(self.compile(term)).expr for _, term in terms]
            combine = pl.any_horizontal if chain == "or" else pl.all_horizontal
            return _Value(combine(parts), "boolean")
        numbers = [(op, _number(self.compile(term)).expr) for op, term in terms]
        if len(numbers) == 2:
            (_, a), (op, b) = numbers
            return _Value(a + b if op == "+" else a - b, "number")
        return _Value(pl.sum_horizontal([-x if op == "-" else x for op, x in numbers]), "number")

    def compare(self, op: str, left: _Value, right: _Value) -> pl.Expr:
        types = {left.type, right.type}
        if op in ("=", "!=") and "boolean" in types:
            return _COMPARE[op](_boolean(left).expr, _boolean(right).expr)
        if types == {"date", "string"}:
            d, s = (left, right) if left.type == "date" else (right, left)
            if s.const == "" and op in ("=", "!="):
                return d.expr.is_null() if op == "=" else d.expr.is_not_null()
            if s.const is None and op in ("=", "!="):  # compare the date's text form
                return _COMPARE[op](_string(left).expr, _string(right).expr)
            left, right = self.date(left), self.date(right)
        if left.type == right.type == "date":
            return _COMPARE[op](left.expr, right.expr).fill_null(op == "!=")
        if op in ("=", "!=") and types == {"string"}:
            return _COMPARE[op](_string(left).expr, _string(right).expr)
        if op in ("=", "!=") and types == {"number", "string"}:
            n, s = (left, right) if left.type == "number" else (right, left)
            if s.const == "":  # the idiom for "not answered"
                return n.expr.is_null() if op == "=" else n.expr.is_not_null()
            if s.const is None and n.nullable:
                # An empty number answer compares as '' with text, an answered one as a number.
                def body(x: pl.Expr, y: pl.Expr) -> pl.Expr:
                    number = _Value(x, "number", nullable=True, simple=True)  # fields: leaves
                    text = _Value(y, "string", simple=True)
                    as_number = _compare_numbers(op, number, _number(text))
                    as_text = _COMPARE[op](pl.lit(""), y)
                    return pl.when(x.is_null()).then(as_text).otherwise(as_number)

                return _let(body, n.expr, _string(s).expr)
        return _compare_numbers(op, _number(left), _number(right))

    def call(self, node: Call) -> _Value:
        name, args = node.name, node.args
        if name == "selected":
            return self.selected(node)
        if name == "count-selected":
            return self.count_selected(node)
        if name in ("true", "false"):
            return _constant(name == "true")
        if name == "today":
            return _constant(self.today)
        values = [self.compile(arg) for arg in args]
        first = values[0] if values else None
        if name == "regex":
            pattern = args[1]
            assert first is not None and isinstance(pattern, Literal)
            text = _string(first, keep_null=True).expr  # an empty answer never matches
            return _Value(text.str.contains(str(pattern.value)).fill_null(False), "boolean")
        if name == "if":
            condition = _boolean(values[0]).expr
            type_ = _unify(values[1].type, values[2].type)
            a, b = self.convert(values[1], type_), self.convert(values[2], type_)
            expr = pl.when(condition).then(a.expr).otherwise(b.expr)
            return _Value(expr, type_, nullable=a.nullable or b.nullable)
        if name == "coalesce":
            type_ = _unify(values[0].type, values[1].type)
            a, b = self.convert(values[0], type_), self.convert(values[1], type_)
            head = a.expr.replace("", None) if type_ == "string" else a.expr  # '' is empty too
            return _Value(pl.coalesce(head, b.expr), type_, nullable=b.nullable)
        if name == "concat":
            return _Value(pl.concat_str([_string(v).expr for v in values]), "string")
        assert first is not None
        if name == "date":
            return self.date(first)
        if name == "not":
            return _Value(~_boolean(first).expr, "boolean")
        if name == "boolean":
            return _boolean(first)
        if name == "number":
            return _number(first)
        if name == "string":
            return _string(first)
        if name == "string-length":
            return _Value(_string(first).expr.str.len_chars().cast(pl.Float64), "number")
        if name == "int":
            return _Value(_number(first).expr.truncate(), "number")
        if name == "abs":
            return _Value(_number(first).expr.abs(), "number")
        if name == "round":
            return self.round(_number(first).expr, values[1] if len(values) > 1 else None)
        text, other = _string(first).expr, _string(values[1])
        pattern = other.const if isinstance(other.const, str) else other.expr
        if name == "contains":
            return _Value(text.str.contains(pattern, literal=True), "boolean")
        if name == "starts-with":
            return _Value(text.str.starts_with(pattern), "boolean")
        assert name == "ends-with", name
        return _Value(text.str.ends_with(pattern), "boolean")

    def round(self, x: pl.Expr, digits: _Value | None) -> _Value:
        # ODK rounds halves away from zero (XPath 1.0's round() rounds them up).
        mode = "half_away_from_zero"
        places = 0.0 if digits is None else _number(digits).const
        if isinstance(places, float):
            if math.isnan(places):
                return _constant(_NAN)
            k = max(-400, min(400, math.trunc(places) if math.isfinite(places) else 0))
            if k >= 0:
                return _Value(x.round(k, mode=mode), "number")
            scale = 10.0 ** min(-k, 308)
            return _Value((x / scale).round(0, mode=mode) * scale, "number")
        assert digits is not None

        def body(value: pl.Expr, n: pl.Expr) -> pl.Expr:
            scale = pl.lit(10.0).pow(n.truncate())
            return (value * scale).round(0, mode=mode) / scale

        return _Value(_let(body, x, _number(digits).expr), "number")

    def selected(self, node: Call) -> _Value:
        target, code_node = node.args
        code = _string(self.compile(code_node))
        text = code.const if isinstance(code.const, str) else None
        name = self.target(target)
        if name is not None and text is not None:
            kind = self.kind(name, target.pos)
            if kind == "multiple":
                codes = self.options(name, target.pos, use=False)
                if text not in codes:
                    message = f"question {name!r} has no option {text!r}"
                    raise self.fail(message, code_node.pos, f"its options are: {', '.join(codes)}")
                self.columns.setdefault(f"{name}/{text}", target.pos)
                column = pl.col(f"{name}/{text}").cast(pl.Boolean)
                return _Value(column.fill_null(False), "boolean")
            if kind == "choice":
                self.columns.setdefault(name, target.pos)
                return _Value(pl.col(name).cast(pl.String).eq(text).fill_null(False), "boolean")
        # General case: is the code one of the space-separated words of the value?
        words = pl.concat_str([pl.lit(" "), _string(self.compile(target)).expr, pl.lit(" ")])
        if text is not None:
            if not text or any(c.isspace() for c in text):
                return _constant(False)
            return _Value(words.str.contains(f" {text} ", literal=True), "boolean")

        def body(haystack: pl.Expr, needle: pl.Expr) -> pl.Expr:
            padded = pl.concat_str([pl.lit(" "), needle, pl.lit(" ")])
            return needle.ne("") & haystack.str.contains(padded, literal=True)

        return _Value(_let(body, words, code.expr), "boolean")

    def count_selected(self, node: Call) -> _Value:
        target = node.args[0]
        name = self.target(target)
        if name is not None and self.kind(name, target.pos) == "multiple":
            codes = self.options(name, target.pos)
            if not codes:
                return _constant(0.0)
            ticks = [
                pl.col(f"{name}/{code}").cast(pl.Boolean).fill_null(False).cast(pl.Float64)
                for code in codes
            ]
            return _Value(pl.sum_horizontal(ticks), "number")
        words = _string(self.compile(target)).expr.str.count_matches(r"\S+")
        return _Value(words.cast(pl.Float64), "number")


# --------------------------------------------------------------------------- evaluation


def _prepare(
    expression: Expression | str,
    resolver: Resolver,
    current: str | None,
    today: datetime.date | None,
) -> tuple[_Compiler, pl.Expr]:
    parsed = expression if isinstance(expression, Expression) else parse(expression)
    compiler = _Compiler(parsed.source, resolver, current, today)
    return compiler, compiler.compile(parsed.node).expr


def to_polars(
    expression: Expression | str,
    resolver: Resolver,
    *,
    current: str | None = None,
    today: datetime.date | None = None,
) -> pl.Expr:
    """Compile an expression (text or parsed) into a polars expression over response columns.

    ``current`` names the question ``.`` refers to; ``today`` fixes ``today()`` (default: the
    system date). Boolean results are never null.

    >>> import polars as pl
    >>> r = SimpleResolver({"q": "choice"})
    >>> pl.DataFrame({"q": ["a", None]}).select(to_polars("${q} = ''", r)).to_series().to_list()
    [False, True]
    """
    return _prepare(expression, resolver, current, today)[1]


def _run(compiler: _Compiler, expr: pl.Expr, frame: pl.DataFrame) -> pl.Series:
    for column, pos in compiler.columns.items():
        if column not in frame.schema:
            raise compiler.fail(f"the response table has no column {column!r}", pos)
    try:
        # with_columns (not select) so that a constant expression fills every row
        return frame.with_columns(expr.alias(_RESULT)).get_column(_RESULT)
    except pl.exceptions.PolarsError as exc:
        lines = str(exc).strip().splitlines()
        detail = lines[0] if lines else type(exc).__name__
        message = f"expression {_show(compiler.source)}: cannot be evaluated: {detail}"
        raise ExpressionError(message) from None


def evaluate(
    expression: Expression | str,
    frame: pl.DataFrame,
    resolver: Resolver,
    *,
    current: str | None = None,
    today: datetime.date | None = None,
) -> pl.Series:
    """Evaluate an expression on every row of ``frame``; a Series of the frame's height.

    >>> import polars as pl
    >>> r = SimpleResolver({"age": "number"})
    >>> evaluate("${age} div 2", pl.DataFrame({"age": [3, None]}), r).to_list()
    [1.5, nan]
    """
    compiler, expr = _prepare(expression, resolver, current, today)
    return _run(compiler, expr, frame)


def _answer_columns(
    name: str, kind: str, answers: Mapping[str, object], codes: list[str]
) -> Iterator[pl.Series]:
    value = answers.get(name)
    if kind == "multiple":
        if value is None:
            chosen: set[str] | None = None
        elif isinstance(value, str):
            chosen = set(value.split())
        elif isinstance(value, list | tuple | set | frozenset):
            chosen = {str(code) for code in value}
        else:
            raise ExpressionError(f"answer to {name!r} must be a list of option codes")
        unknown = sorted((chosen or set()) - set(codes))
        if unknown:
            raise ExpressionError(f"answer to {name!r} has unknown option {unknown[0]!r}")
        for code in codes:
            column = f"{name}/{code}"
            if column in answers:
                tick = answers[column]
            else:
                tick = None if chosen is None else code in chosen
            yield pl.Series(column, [tick], dtype=pl.Boolean)
        return
    if isinstance(value, str) and not value.strip():
        value = None  # a web form sends '' for an empty field
    if kind == "number" and value is not None:
        try:
            value = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ExpressionError(f"answer to {name!r} is not a number: {value!r}") from None
        yield pl.Series(name, [value], dtype=pl.Float64)
    elif kind == "date" and value is not None:
        if isinstance(value, datetime.datetime):
            value = value.date()
        elif isinstance(value, str):
            value = _parse_date(value.strip())
            if value is None:
                raise ExpressionError(f"answer to {name!r} is not a date (YYYY-MM-DD)")
        yield pl.Series(name, [value], dtype=pl.Date)
    else:
        dtype = {"number": pl.Float64, "date": pl.Date}.get(kind, pl.String)
        yield pl.Series(name, [None if value is None else str(value)], dtype=dtype)


def evaluate_one(
    expression: Expression | str,
    answers: Mapping[str, object],
    resolver: Resolver,
    *,
    current: str | None = None,
    today: datetime.date | None = None,
) -> object:
    """Evaluate an expression for one respondent, e.g. while a web form is being filled.

    ``answers`` maps question names to answers (a missing or '' answer is empty). A multiple
    question's answer is a list of codes or a space-separated string (or give the Boolean
    ``"q/code"`` entries directly). Returns a Python bool, float, str, date or None, exactly
    what :func:`evaluate` gives for the same row.

    >>> r = SimpleResolver({"age": "number", "fruit": "multiple"}, {"fruit": ["apple", "pear"]})
    >>> evaluate_one("${age} >= 18 and count-selected(${fruit}) = 2", {"age": 40,
    ...     "fruit": ["pear", "apple"]}, r)
    True
    """
    compiler, expr = _prepare(expression, resolver, current, today)
    series: list[pl.Series] = []
    for name, kind in compiler.questions.items():
        codes = compiler.options(name, 0) if kind == "multiple" else []
        series.extend(_answer_columns(name, kind, answers, codes))
    # a frame needs a column to have one row, even when nothing is referenced
    frame = pl.DataFrame(series) if series else pl.DataFrame({"_row": [0]})
    return _run(compiler, expr, frame)[0]
