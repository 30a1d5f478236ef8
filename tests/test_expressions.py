"""Tests of the XLSForm expression parser and its vectorised polars evaluator.

Expected values are worked out by hand (or with the standard library's date arithmetic),
never by the code under test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import os
import re
import subprocess
import sys
import time
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from volna.errors import ExpressionError, VolnaError
from volna.questionnaire.expressions import (
    FUNCTIONS,
    Binary,
    Call,
    Current,
    Expression,
    Literal,
    Ref,
    SimpleResolver,
    Unary,
    evaluate,
    evaluate_one,
    parse,
    to_polars,
)

NAN = float("nan")
TODAY = date(2024, 1, 1)
R = SimpleResolver(
    {
        "age": "number",
        "income": "number",
        "name": "text",
        "note": "text",
        "region": "choice",
        "dob": "date",
        "fruit": "multiple",
    },
    {"fruit": ["apple", "pear", "kiwi"]},
)
# Row 1 is a respondent who answered nothing; row 2 answered with empty-ish values.
FRAME = pl.DataFrame(
    {
        "age": pl.Series([30, None, 5, 18], dtype=pl.Int64),
        "income": pl.Series([1000.5, 0.0, None, -20.0], dtype=pl.Float64),
        "name": ["Ann", None, "", "bob"],
        "note": ["18", None, "abc", " 5 "],
        "region": ["north", None, "south", "north"],
        "dob": [date(1994, 1, 1), None, date(2019, 6, 30), date(2006, 1, 1)],
        "fruit/apple": [True, None, False, True],
        "fruit/pear": [False, None, False, True],
        "fruit/kiwi": [True, None, False, False],
    }
)
# Every answer missing: the hardest case for "boolean results are never null".
EMPTY = pl.DataFrame(
    {
        "age": pl.Series([None, None], dtype=pl.Int64),
        "income": pl.Series([None, NAN], dtype=pl.Float64),
        "name": pl.Series([None, None], dtype=pl.String),
        "note": pl.Series([None, None], dtype=pl.String),
        "region": pl.Series([None, None], dtype=pl.String),
        "dob": pl.Series([None, None], dtype=pl.Date),
        "fruit/apple": pl.Series([None, None], dtype=pl.Boolean),
        "fruit/pear": pl.Series([None, None], dtype=pl.Boolean),
        "fruit/kiwi": pl.Series([None, None], dtype=pl.Boolean),
    }
)


def ev(text: str, frame: pl.DataFrame = FRAME, **kwargs: object) -> list[object]:
    return evaluate(text, frame, R, today=TODAY, **kwargs).to_list()  # type: ignore[arg-type]


def same(actual: list[object], expected: list[object]) -> bool:
    """Equality where NaN equals NaN and floats compare with a tolerance."""
    if len(actual) != len(expected):
        return False
    for a, b in zip(actual, expected, strict=True):
        if isinstance(a, float) and isinstance(b, float | int) and not isinstance(b, bool):
            if not (math.isnan(a) and math.isnan(b)) and not math.isclose(a, b, abs_tol=1e-9):
                return False
        elif a != b or type(a) is not type(b):
            return False
    return True


def check(text: str, expected: list[object], **kwargs: object) -> None:
    actual = ev(text, **kwargs)
    assert same(actual, expected), f"{text}: got {actual}, expected {expected}"


def error(text: str, frame: pl.DataFrame = FRAME, **kwargs: object) -> str:
    with pytest.raises(ExpressionError) as info:
        evaluate(text, frame, R, today=TODAY, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- parsing


def test_precedence_builds_the_expected_tree() -> None:
    one, two, three = Literal(1.0), Literal(2.0), Literal(3.0)
    assert parse("1 + 2 * 3").node == Binary("+", one, Binary("*", two, three))
    assert parse("(1 + 2) * 3").node == Binary("*", Binary("+", one, two), three)
    assert parse("1 - 2 - 3").node == Binary("-", Binary("-", one, two), three)
    assert parse("-2 * 3").node == Binary("*", Unary("-", two), three)
    assert parse("1 div 2 mod 3").node == Binary("mod", Binary("div", one, two), three)
    a, b, c = Ref("a"), Ref("b"), Ref("c")
    assert parse("${a} or ${b} and ${c}").node == Binary("or", a, Binary("and", b, c))
    assert parse("${a} = 1 and ${b} < 2").node == Binary(
        "and", Binary("=", a, one), Binary("<", b, two)
    )
    assert parse("${a} + 1 >= 2 != ${b}").node == Binary(
        "!=", Binary(">=", Binary("+", a, one), two), b
    )
    assert parse("not(${a}) or ${b}").node == Binary("or", Call("not", (a,)), b)


def test_literals_references_and_current() -> None:
    assert parse("'x'").node == Literal("x")
    assert parse('"it\'s"').node == Literal("it's")
    assert parse(".5").node == Literal(0.5)
    assert parse("3.").node == Literal(3.0)
    assert parse("2.25").node == Literal(2.25)
    assert parse(".").node == Current()
    assert parse("${_a-b.c1}").node == Ref("_a-b.c1")
    assert parse("count-selected(.)").node == Call("count-selected", (Current(),))
    assert parse("today()").node == Call("today", ())
    # the zero-argument XPath forms read the current answer
    assert parse("string-length()").node == Call("string-length", (Current(),))
    # an even run of minus signs keeps two nodes, an odd run one
    assert parse("- - - 1").node == Unary("-", Literal(1.0))
    assert parse("- - - - 1").node == Unary("-", Unary("-", Literal(1.0)))


def test_expression_metadata() -> None:
    e = parse("selected(${fruit}, 'x') and ${age} > . or ${age} = 1")
    assert e.references == frozenset({"fruit", "age"})
    assert e.uses_current is True
    assert str(e) == e.source == "selected(${fruit}, 'x') and ${age} > . or ${age} = 1"
    assert parse("1").references == frozenset() and parse("1").uses_current is False
    assert parse("string()").uses_current is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.source = "x"  # type: ignore[misc]
    for node in (e, e.node, Literal(1.0), Ref("a"), Current(), Unary("-", Literal(1.0))):
        assert not hasattr(node, "__dict__")  # slots
    # positions are kept but do not affect equality
    assert parse("  ${a}").node == Ref("a") and parse("  ${a}").node.pos == 2


def test_the_documented_error_message() -> None:
    with pytest.raises(ExpressionError) as info:
        parse("${age} >> 3")
    assert str(info.value) == "expression \"${age} >> 3\": unexpected '>' at position 8"
    assert isinstance(info.value, VolnaError)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("'abc", "unterminated string at position 0"),
        ('1 = "abc', "unterminated string at position 4"),
        ("${age", "unterminated reference '${' at position 0"),
        ("${1a} = 1", "invalid question name '1a' at position 2"),
        ("${} = 1", "invalid question name '' at position 2"),
        ("${a b}", "invalid question name 'a b' at position 2"),
        ("$age", "unexpected '$' at position 0"),
        ("${age} # 2", "unexpected character '#' at position 7"),
        ("${a} && ${b}", "unexpected character '&' at position 5"),
        ("${a} | ${b}", "unexpected character '|' at position 5"),
        ("/data/age", "unexpected character '/' at position 0"),
        ("..", "'..' (parent) is not supported at position 0"),
        ("", "empty expression at position 0"),
        ("   ", "empty expression at position 0"),
        ("age > 1", "unexpected name 'age' at position 0; a question is referenced as ${age}"),
        ("1 +", "unexpected end of expression at position 3"),
        ("(1", "expected ')' but found end of expression at position 2"),
        ("1)", "unexpected ')' at position 1"),
        ("1 2", "unexpected '2' at position 2"),
        ("and 1", "unexpected 'and' at position 0"),
        ("1 = = 2", "unexpected '=' at position 4"),
        ("concat(1,)", "unexpected ')' at position 9"),
        ("not(1 2)", "expected ')' but found '2' at position 6"),
        ("1 + ${a} 'x'", "unexpected string 'x' at position 9"),
    ],
)
def test_syntax_errors_say_what_and_where(text: str, fragment: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse(text)
    message = str(info.value)
    assert message.startswith(f'expression "{text}": ')
    assert message.endswith(fragment) or fragment + ";" in message, message


def test_unknown_function_names_it_and_lists_the_known_ones() -> None:
    with pytest.raises(ExpressionError) as info:
        parse("${a} = foo-bar(1)")
    message = str(info.value)
    assert "unknown function 'foo-bar' at position 7" in message
    for name in FUNCTIONS:
        assert name in message
    with pytest.raises(ExpressionError, match="unknown function 'jr:choice-name'"):
        parse("jr:choice-name(${a}, 'a')")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not(1, 2)", "not() takes 1 argument but was given 2 at position 0"),
        ("1 and true(1)", "true() takes 0 arguments but was given 1 at position 6"),
        ("selected(${a})", "selected() takes 2 arguments but was given 1"),
        ("if(1, 2)", "if() takes 3 arguments but was given 2"),
        ("round()", "round() takes 1 to 2 arguments but was given 0"),
        ("concat()", "concat() takes at least 1 argument but was given 0"),
        ("regex(.)", "regex() takes 2 arguments but was given 1"),
        ("today(1)", "today() takes 0 arguments but was given 1"),
        ("count-selected(., 1)", "count-selected() takes 1 argument but was given 2"),
    ],
)
def test_wrong_arity(text: str, fragment: str) -> None:
    with pytest.raises(ExpressionError, match=re.escape(fragment)):
        parse(text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("regex(., ${a})", "the pattern of regex() must be a quoted string at position 9"),
        ("regex(., 3)", "the pattern of regex() must be a quoted string at position 9"),
        ("regex(., '(a')", "invalid regex pattern '(a' (missing ), unterminated subpattern"),
        ("regex(., '[a-')", "invalid regex pattern '[a-'"),
        ("regex(., '(?=a)b')", "is not supported"),  # look-ahead: not in Rust's regex
        ("regex(., '(a)\\1')", "is not supported"),  # back-reference
        ("regex(., '" + "a" * 1001 + "')", "regex pattern longer than 1000 characters"),
        ("date('2022-02-30')", "'2022-02-30' is not a date (YYYY-MM-DD) at position 5"),
        ("date('24.02.2022')", "'24.02.2022' is not a date (YYYY-MM-DD) at position 5"),
    ],
)
def test_literal_arguments_are_checked_when_parsing(text: str, fragment: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse(text)
    assert fragment in str(info.value)


def test_messages_stay_on_one_line() -> None:
    with pytest.raises(ExpressionError) as info:
        parse("${a} = 1 and\n\t${b} #")
    assert "\n" not in str(info.value) and "\t" not in str(info.value)
    assert str(info.value).endswith("unexpected character '#' at position 19")


# --------------------------------------------------------------------------- hostile input


def fails_fast(text: str, fragment: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ExpressionError) as info:
        evaluate(text, FRAME, R)
    assert time.perf_counter() - start < 1.0
    assert fragment in str(info.value)
    assert len(str(info.value)) < 400  # the offending text is cut short


def test_hostile_deep_parentheses() -> None:
    fails_fast("(" * 10_000 + "1" + ")" * 10_000, "longer than 10000 characters (20001)")
    fails_fast("(" * 65 + "1" + ")" * 65, "nested deeper than 64 at position 64")
    fails_fast("not(" * 65 + "1" + ")" * 65, "nested deeper than 64 at position 259")
    assert ev("(" * 64 + "1" + ")" * 64) == [1.0] * 4
    assert ev("not(" * 64 + "1" + ")" * 64) == [True] * 4  # an even number of not()


def test_hostile_size() -> None:
    fails_fast("'" + "a" * 1_000_000 + "'", "longer than 10000 characters")
    fails_fast("1+" * 50_000 + "1", "longer than 10000 characters")  # 100k tokens
    fails_fast("1+" * 1_000 + "1", "more than 2000 tokens at position 2000")  # 1 char each
    assert ev("1+" * 999 + "1") == [1000.0] * 4  # 1,999 tokens: a flat sum, accepted


def test_hostile_operator_nesting() -> None:
    # `*` chains are not flattened: each operator adds a level
    assert ev("*".join(["1"] * 65)) == [1.0] * 4
    fails_fast("*".join(["1"] * 66), "operations nested deeper than 64")
    # a full precedence ladder inside every pair of parentheses
    ladder = "".join("(1 or 1 and 1 = 1 < 1 * -" for _ in range(40)) + "1" + ")" * 40
    fails_fast(ladder, "operations nested deeper than 64")
    assert ev("-" * 1999 + "1") == [-1.0] * 4
    # long or/and/+ chains are flat, so they are not limited by nesting
    assert ev(" or ".join(["selected(${fruit}, 'kiwi')"] * 200)) == [True, False, False, False]


def test_hostile_regex_runs_in_linear_time() -> None:
    frame = FRAME.head(1).with_columns(name=pl.lit("a" * 100_000 + "!"))
    start = time.perf_counter()
    assert ev("regex(${name}, '(a+)+$')", frame) == [False]
    assert ev("regex(${name}, '^(a|aa)+$')", frame) == [False]
    assert time.perf_counter() - start < 1.0


DEEP_TEMPLATES = [
    "{} mod 3",
    "round({}, ${{age}})",
    "selected({}, ${{name}})",
    "if({}, 1, ${{age}})",
    "coalesce({}, ${{name}})",
    "not({})",
    "{} = ${{name}}",
    "contains({}, ${{name}})",
    "int({})",
    "boolean({}) * 2",
    "number(string({}))",
    "{} > 1",
]
DEEP_SCRIPT = """
import sys, time
import polars as pl
from volna.errors import ExpressionError
from volna.questionnaire.expressions import SimpleResolver, evaluate
resolver = SimpleResolver({"age": "number", "name": "text"})
frame = pl.DataFrame({"age": [30.0, None], "name": ["a", None]})
for template in sys.argv[1:]:
    text = "${name}"
    for _ in range(64):
        text = template.format(text)
    start = time.perf_counter()
    try:
        evaluate(text, frame, resolver)
    except ExpressionError as exc:
        assert "nested deeper than 64" in str(exc), exc
    print(f"{time.perf_counter() - start:.3f} {template}", flush=True)
"""


def test_deep_nesting_of_every_kind_stays_fast() -> None:
    # Several operations need their operand twice, and polars expands some (fill_nan) into
    # forms that repeat their input: done naively, the plan doubles at every level (2**64
    # nodes here). A subprocess with a timeout turns such a regression into a failure, not a
    # hang.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", DEEP_SCRIPT, *DEEP_TEMPLATES],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    timings = [line.split(" ", 1) for line in done.stdout.splitlines()]
    assert [template for _, template in timings] == DEEP_TEMPLATES
    slow = [(seconds, template) for seconds, template in timings if float(seconds) > 3.0]
    assert not slow, slow


def test_parsing_and_evaluating_use_little_stack() -> None:
    # The limit counters, not Python's recursion limit, stop deep input: the worst accepted
    # shapes need well under 400 frames, leaving the caller most of the default 1000.
    worst = [
        "(" * 64 + "1" + ")" * 64,
        "not(" * 64 + "1" + ")" * 64,
        "1 + (" * 63 + "1" + ")" * 63,
        "-(" * 64 + "1" + ")" * 64,
        "".join("(1 or 1 and 1 = 1 < 1 * -" for _ in range(10)) + "1" + ")" * 10,
        "".join("(1 or 1 and 1 = 1 < 1 * -" for _ in range(64)) + "1" + ")" * 64,
    ]
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 400)
    try:
        for text in worst:
            with contextlib.suppress(ExpressionError):  # a RecursionError would fail the test
                evaluate(text, FRAME, R)
    finally:
        sys.setrecursionlimit(old)


# --------------------------------------------------------------------------- operators


def test_arithmetic() -> None:
    check("1 + 2 * 3", [7.0] * 4)  # a constant fills every row
    check("7 div 2", [3.5] * 4)
    check("7 mod 3", [1.0] * 4)
    check("-7 mod 3", [-1.0] * 4)  # XPath mod keeps the dividend's sign
    check("7 mod -3", [1.0] * 4)
    check("5.5 mod 2", [1.5] * 4)
    check("10 - 4 - 3", [3.0] * 4)
    check("2 * 3 mod 4", [2.0] * 4)
    check("-2 * -3", [6.0] * 4)
    check("${age} + 1", [31.0, NAN, 6.0, 19.0])
    check("-${age}", [-30.0, NAN, -5.0, -18.0])
    check("${age} * 2 - ${income}", [60 - 1000.5, NAN, NAN, 36 + 20.0])
    check("${age} + ${age} + 1", [61.0, NAN, 11.0, 37.0])
    check("${age} - 1 - 1 - 1", [27.0, NAN, 2.0, 15.0])
    check("--${note}", [18.0, NAN, NAN, 5.0])  # double minus is number()


def test_division_and_mod_by_zero_never_raise() -> None:
    check("1 div 0", [math.inf] * 4)
    check("-1 div 0", [-math.inf] * 4)
    check("0 div 0", [NAN] * 4)
    check("5 mod 0", [NAN] * 4)
    check("${income} div 0", [math.inf, NAN, NAN, -math.inf])
    check("${income} mod 0", [NAN] * 4)


def test_comparisons_of_numbers() -> None:
    check("${age} > 17", [True, False, False, True])
    check("${age} >= 18", [True, False, False, True])
    check("${age} < 18", [False, False, True, False])
    check("${age} <= 5", [False, False, True, False])
    check("${age} = 5", [False, False, True, False])
    check("${age} != 5", [True, True, False, True])  # empty: NaN != 5 is true
    check("${age} > '17'", [True, False, False, True])  # the literal becomes a number
    check("${age} = '18'", [False, False, False, True])
    check("${age} = 'abc'", [False, False, False, False])
    check("${age} != 'abc'", [True, True, True, True])
    check("${age} > ${note}", [True, False, False, True])  # 30>18, NaN, 5>NaN, 18>5
    check("${note} > 10", [True, False, False, False])


def test_nan_comparisons_are_false_except_not_equal() -> None:
    # polars itself orders NaN above every number and makes NaN = NaN true
    check("0 div 0 = 0 div 0", [False] * 4)
    check("0 div 0 != 0 div 0", [True] * 4)
    check("0 div 0 > 1", [False] * 4)
    check("1 < 0 div 0", [False] * 4)
    check("0 div 0 >= 0 div 0", [False] * 4)
    check("${income} div 0 > 5", [True, False, False, False])
    check("${income} div 0 != 5", [True, True, True, True])


def test_comparisons_of_strings_and_booleans() -> None:
    check("'abc' = \"abc\"", [True] * 4)
    check("${name} = 'Ann'", [True, False, False, False])
    check("${region} != 'north'", [False, True, True, False])
    check("${name} = ${note}", [False, True, False, False])  # both empty: '' = ''
    check("'b' > 'a'", [False] * 4)  # XPath: < > compare numbers, NaN here
    check("'10' > '9'", [True] * 4)
    check("true() = 1", [True] * 4)
    check("false() = ''", [True] * 4)
    check("true() = 'x'", [True] * 4)
    check("${age} = true()", [True, False, True, True])
    check("1 < 2 = 1", [True] * 4)  # (1 < 2) = 1: boolean comparison


def test_number_question_compared_with_text() -> None:
    # an empty number answer compares as '' with text, an answered one as a number
    check("${age} = ${note}", [False, True, False, False])
    check("${age} != ${note}", [True, False, True, True])
    check("${age} = concat('3', '0')", [True, False, False, False])


def test_empty_answers_equal_the_empty_string() -> None:
    check("${age} = ''", [False, True, False, False])
    check("${age} != ''", [True, False, True, True])
    check("${name} = ''", [False, True, True, False])
    check("${region} = ''", [False, True, False, False])
    check("${dob} = ''", [False, True, False, False])
    check("${dob} != ''", [True, False, True, True])
    check("${fruit} = ''", [False, True, True, False])  # nothing ticked, or not answered
    check("'' = ${age}", [False, True, False, False])
    check("${age} + 0 = ''", [False, False, False, False])  # a computed NaN is not empty


def test_dates() -> None:
    check("${dob} < '2000-01-01'", [True, False, False, False])
    check("${dob} >= date('2006-01-01')", [False, False, True, True])
    check("${dob} = '2006-01-01'", [False, False, False, True])
    check("${dob} != '2006-01-01'", [True, True, True, False])
    check("'2006-01-01' = ${dob}", [False, False, False, True])
    check("${dob} = concat('2006-01-0', '1')", [False, False, False, True])
    days = [(TODAY - d).days for d in (date(1994, 1, 1), date(2019, 6, 30), date(2006, 1, 1))]
    check("today() - ${dob}", [float(days[0]), NAN, float(days[1]), float(days[2])])
    # 1994-01-01 to 2024-01-01 is 30 * 365 + 7 leap days = 10957 days; / 365.25 = 29.998;
    # 2006-01-01 to 2024-01-01 is 18 * 365 + 4 = 6574 days; / 365.25 = 17.998
    check("int((today() - ${dob}) div 365.25)", [29.0, NAN, 4.0, 17.0])
    check("date(${dob} + 1)", [date(1994, 1, 2), None, date(2019, 7, 1), date(2006, 1, 2)])
    check("${dob} - date('1970-01-01') = ${dob} + 0", [True, False, True, True])
    check("date(19047)", [date(1970, 1, 1) + timedelta(days=19047)] * 4)
    check("today()", [TODAY] * 4)
    check("today() = '2024-01-01'", [True] * 4)
    check("date('2022-02-24') < today()", [True] * 4)
    check("date(${note})", [None] * 4)  # text that is not a date
    message = error("${dob} > 'soon'")
    assert message.endswith("'soon' is not a date (YYYY-MM-DD) at position 9")


def test_and_or_not_convert_operands_to_booleans() -> None:
    check("true() or false() and false()", [True] * 4)
    check("(true() or false()) and false()", [False] * 4)
    check("not(${age} > 10) or ${name} = 'bob'", [False, True, True, True])
    check("${age} and ${name}", [True, False, False, True])
    check("not(${income})", [False, True, True, False])  # 0 and empty are false
    check("${age} > 1 and ${age} < 20 or ${region} = 'north'", [True, False, True, True])
    check("boolean(0)", [False] * 4)
    check("boolean(0 div 0)", [False] * 4)
    check("boolean('')", [False] * 4)
    check("boolean('0')", [True] * 4)  # a non-empty string
    check("boolean(${dob})", [True, False, True, True])
    check("boolean(${fruit})", [True, False, False, True])


# --------------------------------------------------------------------------- functions


def test_selected_and_count_selected_on_a_multiple_question() -> None:
    check("selected(${fruit}, 'kiwi')", [True, False, False, False])
    check('selected(${fruit}, "pear")', [False, False, False, True])
    check("not(selected(${fruit}, 'apple'))", [False, True, True, False])
    check("count-selected(${fruit})", [2.0, 0.0, 0.0, 2.0])
    check("count-selected(${fruit}) >= 2", [True, False, False, True])
    check("${fruit}", ["apple kiwi", None, "", "apple pear"])  # option order, as stored
    check("string-length(${fruit})", [10.0, 0.0, 0.0, 10.0])
    check("${fruit} = 'apple pear'", [False, False, False, True])
    check("selected(${fruit}, ${region})", [False, False, False, False])
    check("selected(${fruit}, concat('ki', 'wi'))", [True, False, False, False])
    check("selected(., 'pear')", [False, False, False, True], current="fruit")
    check("count-selected(.)", [2.0, 0.0, 0.0, 2.0], current="fruit")


def test_selected_and_count_selected_on_other_questions() -> None:
    check("selected(${region}, 'north')", [True, False, False, True])
    check("count-selected(${region})", [1.0, 0.0, 1.0, 1.0])
    check("selected(${note}, '5')", [False, False, False, True])  # words of ' 5 '
    check("count-selected(${note})", [1.0, 0.0, 1.0, 1.0])
    check("selected('a b c', 'b')", [True] * 4)
    check("selected('a b c', 'a b')", [False] * 4)
    check("selected('a b c', '')", [False] * 4)
    check("selected(concat(${name}, ' x'), 'x')", [True] * 4)
    check("selected(concat(${name}, ' x'), ${name})", [True, False, False, True])
    check("count-selected('  a  b ')", [2.0] * 4)


def test_string_functions() -> None:
    check("string-length(${name})", [3.0, 0.0, 0.0, 3.0])
    check("string-length('жаба')", [4.0] * 4)  # characters, not bytes
    check("string-length()", [2.0, 0.0, 3.0, 3.0], current="note")
    check("concat(${name}, '-', ${age})", ["Ann-30", "-", "-5", "bob-18"])
    check("concat('x')", ["x"] * 4)
    check("contains(${name}, 'n')", [True, False, False, False])
    check("contains(${name}, '')", [True] * 4)
    check("starts-with(${region}, 'no')", [True, False, False, True])
    check("ends-with(${region}, 'th')", [True, False, True, True])
    check("starts-with('northern', ${region})", [True, True, False, True])
    check("contains('a.c', '.')", [True] * 4)  # literal, not a regex
    check("string(2)", ["2"] * 4)
    check("string(2.5)", ["2.5"] * 4)
    check("string(${age})", ["30", "", "5", "18"])
    check("string(${income})", ["1000.5", "0", "", "-20"])
    check("string(${dob})", ["1994-01-01", "", "2019-06-30", "2006-01-01"])
    check("string(true())", ["true"] * 4)
    check("string(1 div 0)", ["Infinity"] * 4)
    check("string(${income} div 0)", ["Infinity", "NaN", "NaN", "-Infinity"])
    check("string(0 * -1)", ["0"] * 4)


def test_regex() -> None:
    check("regex(${name}, '^[a-z]+$')", [False, False, False, True])
    check("regex(${name}, 'n')", [True, False, False, False])  # searches, like ODK
    check("regex(${name}, '^$')", [False, False, True, False])  # unanswered never matches
    check("regex(${age}, '^[0-9]{2}$')", [True, False, False, True])
    check("regex(., '^\\s*[0-9]+\\s*$')", [True, False, False, True], current="note")


def test_number_functions() -> None:
    check("number('  -1.5 ')", [-1.5] * 4)
    check("number('1e3')", [NAN] * 4)  # not an XPath number
    check("number('')", [NAN] * 4)
    check("number(true())", [1.0] * 4)
    check("number(${note})", [18.0, NAN, NAN, 5.0])
    check("number(${dob})", [8766.0, NAN, 18077.0, 13149.0])  # days since 1970-01-01
    check("round(2.5)", [3.0] * 4)
    check("round(-2.5)", [-3.0] * 4)  # halves away from zero, as in ODK
    check("round(1.2345, 2)", [1.23] * 4)
    check("round(1250, -2)", [1300.0] * 4)
    check("round(${income}, 0)", [1001.0, 0.0, NAN, -20.0])
    check("round(3.14159, ${age} div 10)", [3.142, NAN, 3.0, 3.1])  # digits 3, NaN, 0, 1
    check("int(-2.7)", [-2.0] * 4)
    check("int(2.7)", [2.0] * 4)
    check("int(${income} div 3)", [333.0, 0.0, NAN, -6.0])
    check("abs(${income})", [1000.5, 0.0, NAN, 20.0])
    check("abs(-3)", [3.0] * 4)


def test_if_coalesce_true_false() -> None:
    check("if(${age} >= 18, 'adult', 'minor')", ["adult", "minor", "minor", "adult"])
    check("if(${age} > 10, ${age}, 0)", [30.0, 0.0, 0.0, 18.0])
    check("if(true(), 1, 'x')", ["1"] * 4)  # mixed types give text
    check("if(${age} > 10, ${age}, '')", ["30", "", "", "18"])
    check("if(${name}, 1, 2)", [1.0, 2.0, 2.0, 1.0])
    check("coalesce(${name}, 'anon')", ["Ann", "anon", "anon", "bob"])  # '' is empty too
    check("coalesce(${age}, -1)", [30.0, -1.0, 5.0, 18.0])
    check(
        "coalesce(${dob}, date('2000-01-01'))",
        [date(1994, 1, 1), date(2000, 1, 1), date(2019, 6, 30), date(2006, 1, 1)],
    )
    check("true()", [True] * 4)
    check("false()", [False] * 4)


def test_current_answer() -> None:
    check(". > 10", [True, False, False, True], current="age")
    check(". = ''", [False, True, True, False], current="name")
    assert error(". > 1").endswith("'.' used but there is no current question at position 0")


# --------------------------------------------------------------------------- names


def test_unknown_question() -> None:
    message = error("${age} > 1 and ${agee} > 1")
    assert message == (
        "expression \"${age} > 1 and ${agee} > 1\": unknown question 'agee' at position 15"
    )
    with pytest.raises(ExpressionError, match="unknown question 'x'"):
        to_polars("selected(${x}, 'a')", R)


def test_unknown_option() -> None:
    message = error("selected(${fruit}, 'plum')")
    assert "question 'fruit' has no option 'plum' at position 19" in message
    assert message.endswith("its options are: apple, pear, kiwi")


def test_missing_column_in_the_table() -> None:
    message = error("${name} = 1 or ${age} > 1", pl.DataFrame({"name": ["a"]}))
    assert "the response table has no column 'age' at position 15" in message
    message = error("selected(${fruit}, 'pear')", FRAME.drop("fruit/pear"))
    assert "no column 'fruit/pear' at position 9" in message
    # only the option column that is used must exist
    assert ev("selected(${fruit}, 'pear')", FRAME.drop("fruit/kiwi")) == [False, False, False, True]
    assert "no column 'fruit/kiwi'" in error("count-selected(${fruit})", FRAME.drop("fruit/kiwi"))


def test_simple_resolver() -> None:
    with pytest.raises(ValueError, match="kind 'integer'"):
        SimpleResolver({"a": "integer"})
    with pytest.raises(ExpressionError, match="unknown question 'b'"):
        SimpleResolver({"a": "text"}).options("b")
    assert list(R.options("fruit")) == ["apple", "pear", "kiwi"]


# --------------------------------------------------------------------------- guarantees

BOOLEAN_EXPRESSIONS = [
    "${age} = ''",
    "${age} != 3",
    "${age} < 3",
    "${age} >= ${income}",
    "${income} > 0",
    "${income} = ${income}",
    "${name} = ${note}",
    "${note} > 3",
    "${dob} < today()",
    "${dob} != '2000-01-01'",
    "${dob} = ${note}",
    "${age} = ${note}",
    "selected(${fruit}, 'apple')",
    "selected(${region}, 'north')",
    "selected(${note}, 'x')",
    "selected(${fruit}, ${note})",
    "count-selected(${fruit}) > 0",
    "not(${age})",
    "not(${name}) and ${region}",
    "${fruit} or ${dob}",
    "boolean(${income})",
    "regex(${name}, '^a')",
    "contains(${note}, 'a')",
    "starts-with(${name}, ${note})",
    "ends-with(${region}, 'h')",
    "if(${age} > 1, ${name} = '', ${income} > 1)",
    "coalesce(${age} > 1, false())",
    "${age} mod 2 = 1",
    "(${age} + ${income}) div 2 > 1",
]


@pytest.mark.parametrize("text", BOOLEAN_EXPRESSIONS)
@pytest.mark.parametrize("frame", [FRAME, EMPTY], ids=["answers", "empty"])
def test_boolean_results_are_never_null(text: str, frame: pl.DataFrame) -> None:
    result = evaluate(text, frame, R, today=TODAY)
    assert result.dtype == pl.Boolean
    assert result.null_count() == 0
    assert result.len() == frame.height


def row_answers(frame: pl.DataFrame, i: int) -> dict[str, object]:
    """One row of a response table as a web form would send it."""
    row = frame.row(i, named=True)
    answers = {k: v for k, v in row.items() if "/" not in k}
    ticks = {code: row[f"fruit/{code}"] for code in ("apple", "pear", "kiwi")}
    if all(v is None for v in ticks.values()):
        answers["fruit"] = None
    else:
        answers["fruit"] = [code for code, ticked in ticks.items() if ticked]
    return answers


@pytest.mark.parametrize(
    "text",
    [
        *BOOLEAN_EXPRESSIONS,
        "${age} * 2 - ${income}",
        "${fruit}",
        "string(${income})",
        "today() - ${dob}",
        "date(${dob} + 1)",
        "concat(${name}, '/', ${region})",
        "count-selected(${fruit})",
        "1 + 2",
    ],
)
def test_evaluate_one_agrees_with_evaluate(text: str) -> None:
    table = evaluate(text, FRAME, R, today=TODAY).to_list()
    for i in range(FRAME.height):
        one = evaluate_one(text, row_answers(FRAME, i), R, today=TODAY)
        assert same([one], [table[i]]), f"{text}, row {i}: {one!r} != {table[i]!r}"


def test_evaluate_one_answer_formats() -> None:
    assert evaluate_one("${age} + 1", {"age": "41"}, R) == 42.0
    assert evaluate_one("${age} = ''", {"age": ""}, R) is True
    assert evaluate_one("${age} = ''", {}, R) is True
    assert evaluate_one("${age}", {}, R) is None
    assert evaluate_one("${fruit}", {"fruit": "kiwi apple"}, R) == "apple kiwi"
    assert evaluate_one("${fruit}", {"fruit": []}, R) == ""
    assert evaluate_one("count-selected(${fruit})", {"fruit": {"pear"}}, R) == 1.0
    ticks = {"fruit/apple": False, "fruit/pear": True, "fruit/kiwi": None}
    assert evaluate_one("selected(${fruit}, 'pear')", ticks, R) is True
    assert evaluate_one("${dob} < '2020-03-01'", {"dob": "2020-02-29"}, R) is True
    assert evaluate_one("${dob}", {"dob": date(2020, 2, 29)}, R) == date(2020, 2, 29)
    assert evaluate_one("1 + 1", {}, R) == 2.0
    assert evaluate_one(". > 3", {"age": 4}, R, current="age") is True
    assert evaluate_one("today()", {}, R, today=TODAY) == TODAY
    with pytest.raises(ExpressionError, match="unknown option 'plum'"):
        evaluate_one("${fruit}", {"fruit": ["plum"]}, R)
    with pytest.raises(ExpressionError, match="'age' is not a number"):
        evaluate_one("${age}", {"age": "forty"}, R)
    with pytest.raises(ExpressionError, match="'dob' is not a date"):
        evaluate_one("${dob}", {"dob": "29.02.2020"}, R)


def test_to_polars_gives_a_reusable_expression() -> None:
    expr = to_polars(parse("${age} >= 18 and selected(${fruit}, 'apple')"), R)
    assert isinstance(expr, pl.Expr)
    assert FRAME.filter(expr).get_column("name").to_list() == ["Ann", "bob"]
    assert isinstance(parse("1"), Expression)


def test_a_million_rows_in_well_under_a_second() -> None:
    n = 1_000_000
    rng = np.random.default_rng(7)
    ages = rng.integers(0, 90, n)
    frame = pl.DataFrame(
        {
            "age": pl.Series(ages).cast(pl.Int64),
            "name": rng.choice(["", "ann", "bob"], n),
            "dob": pl.Series(rng.integers(0, 20_000, n)).cast(pl.Int32).cast(pl.Date),
            "fruit/apple": rng.random(n) < 0.5,
            "fruit/pear": rng.random(n) < 0.5,
            "fruit/kiwi": rng.random(n) < 0.5,
        }
    ).with_columns(age=pl.when(pl.col("age") > 80).then(None).otherwise(pl.col("age")))
    text = (
        "${age} >= 18 and selected(${fruit}, 'apple') or ${name} != ''"
        " and count-selected(${fruit}) > 1 and ${dob} < today()"
    )
    start = time.perf_counter()
    result = evaluate(text, frame, R)
    elapsed = time.perf_counter() - start
    assert result.len() == n and result.null_count() == 0
    assert elapsed < 1.0, elapsed
    # spot-check the vectorised answer against plain numpy for the same rows
    age = frame.get_column("age").fill_null(-1).to_numpy()
    apple = frame.get_column("fruit/apple").to_numpy()
    named = frame.get_column("name").to_numpy() != ""
    count = sum(frame.get_column(f"fruit/{c}").to_numpy().astype(int) for c in R.options("fruit"))
    dob = frame.get_column("dob").cast(pl.Int32).to_numpy()
    today = (date.today() - date(1970, 1, 1)).days
    expected = ((age >= 18) & apple) | (named & (count > 1) & (dob < today))
    assert np.array_equal(result.to_numpy(), expected)
