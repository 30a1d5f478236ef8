"""Validation: one injected error of each rule is reported exactly, nothing else."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from volna import ExpressionError, Questionnaire
from volna.problems import RULES
from volna.validation import validate

FIXTURES = Path(__file__).parent / "fixtures"
RULES_YAML = FIXTURES / "rules.yaml"


@pytest.fixture(scope="module")
def questionnaire() -> Questionnaire:
    return Questionnaire.load(RULES_YAML)


def clean() -> pl.DataFrame:
    """Four respondents who break no rule (written out by hand)."""
    return pl.DataFrame(
        {
            "rid": ["r1", "r2", "r3", "r4"],
            "left": ["yes", "yes", "no", "yes"],
            "country": ["GE", "TR", None, "AM"],
            "left_on": [dt.date(2022, 3, 1), None, None, dt.date(2022, 9, 25)],
            "age": [30, 70, 45, 25],
            "income": [1000.0, None, 0.0, 2.5],
            "sector": ["it", None, "other", "it"],
            "sector_other": [None, None, "логистика", None],
            "fears/persecution": [True, False, None, False],
            "fears/conscription": [True, False, None, False],
            "fears/none": [False, True, None, False],
            "living": ["1", "dk", None, "2"],
        },
        schema_overrides={"age": pl.Int64, "left_on": pl.Date},
    )


def test_clean_table_has_no_problems(questionnaire: Questionnaire) -> None:
    report = validate(clean(), questionnaire)
    assert report.ok, report.lines()
    assert report.counts == {}
    assert report.n_rows == 4


INJECTIONS = [
    # (column, row index, new value, rule, reported column)
    ("living", 0, "7", "unknown_code", "living"),
    ("country", 1, "SU", "unknown_code", "country"),
    ("age", 3, 17, "out_of_range", "age"),
    ("income", 0, -1.0, "out_of_range", "income"),
    ("left_on", 0, dt.date(2021, 12, 31), "out_of_range", "left_on"),
    ("country", 3, None, "required_missing", "country"),
    ("left", 2, None, "required_missing", "left"),
    ("sector", 0, None, "required_missing", "sector"),
    ("country", 2, "DE", "not_relevant", "country"),
    ("fears/persecution", 1, True, "exclusive_conflict", "fears/none"),
    ("age", 0, 50, "constraint_failed", "age"),
    ("sector_other", 0, "science", "other_without_choice", "sector_other"),
]


@pytest.mark.parametrize(("column", "row", "value", "rule", "reported"), INJECTIONS)
def test_each_injected_error_is_reported_exactly(
    questionnaire: Questionnaire, column, row, value, rule, reported
) -> None:
    frame = clean()
    values = frame[column].to_list()
    values[row] = value
    frame = frame.with_columns(pl.Series(column, values, dtype=frame[column].dtype))
    report = validate(frame, questionnaire)
    assert [(p.row, p.column, p.rule) for p in report.problems] == [(row + 1, reported, rule)]
    assert report.counts == {rule: 1}


def test_all_injections_at_once_are_all_found(questionnaire: Questionnaire) -> None:
    frame = clean()
    for column, row, value, _, _ in INJECTIONS:
        values = frame[column].to_list()
        values[row] = value
        frame = frame.with_columns(pl.Series(column, values, dtype=frame[column].dtype))
    report = validate(frame, questionnaire)
    found = {(p.row, p.column, p.rule) for p in report.problems}
    expected = {(row + 1, reported, rule) for _, row, _, rule, reported in INJECTIONS}
    assert found == expected
    assert set(report.counts) <= set(RULES)


def test_emptied_filter_question_makes_dependent_answers_not_relevant(
    questionnaire: Questionnaire,
) -> None:
    frame = clean().with_columns(pl.Series("left", ["yes", None, "no", "yes"]))
    found = {(p.row, p.column, p.rule) for p in validate(frame, questionnaire).problems}
    assert found == {(2, "left", "required_missing"), (2, "country", "not_relevant")}


def test_problem_lines_name_row_column_value_and_rule(questionnaire: Questionnaire) -> None:
    frame = clean().with_columns(pl.Series("age", [30, 70, 45, 17], dtype=pl.Int64))
    (line,) = validate(frame, questionnaire).lines()
    assert line == "row 4, column age: '17': below the minimum 18 [out_of_range]"


def test_json_report(questionnaire: Questionnaire) -> None:
    frame = clean().with_columns(pl.Series("living", ["1", "dk", None, "9"]))
    data = json.loads(validate(frame, questionnaire).to_json())
    assert data["ok"] is False
    assert data["counts"] == {"unknown_code": 1}
    assert data["problems"][0]["row"] == 4
    assert data["problems"][0]["value"] == "9"


def test_validation_never_changes_the_table(questionnaire: Questionnaire) -> None:
    frame = clean().with_columns(pl.Series("age", [30, 70, 45, 17], dtype=pl.Int64))
    before = frame.clone()
    validate(frame, questionnaire)
    assert frame.equals(before)


def test_pandas_input_is_accepted(questionnaire: Questionnaire) -> None:
    report = validate(clean().to_pandas(), questionnaire)
    assert report.ok


@pytest.mark.parametrize(
    ("expression", "complaint"),
    [
        ("${nope} = 'x'", "nope"),
        ("selected(${b}, 'z')", "'z'"),
        ("${b} >> 3", "position"),
        ("frobnicate(${b})", "frobnicate"),
    ],
)
def test_bad_expression_fails_at_load_naming_file_line_question(expression, complaint) -> None:
    text = (
        "id: x\nquestions:\n  - {name: b, type: multiple, choices: [{code: y}]}\n"
        f'  - name: a\n    type: text\n    relevant: "{expression}"\n'
    )
    with pytest.raises(ExpressionError) as caught:
        Questionnaire.loads(text, "x.yaml")
    message = str(caught.value)
    assert message.startswith("x.yaml:4: question a: relevant: ")
    assert complaint in message
