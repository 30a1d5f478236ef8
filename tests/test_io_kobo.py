"""Kobo/ODK exports: group paths, select_multiple in both shapes, platform columns, labels."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import polars as pl
import pytest

from volna import Questionnaire, ReadError
from volna.io import RawTable, read, to_canonical
from volna.io.kobo import match_columns
from volna.problems import Problem

FIXTURES = Path(__file__).parent / "fixtures" / "io"
FEARS = ["fears/persecution", "fears/conscription", "fears/none", "fears/other"]


@pytest.fixture(scope="module")
def q() -> Questionnaire:
    return Questionnaire.load(FIXTURES / "questionnaire.yaml")


def raw(columns: dict[str, list], source: str = "kobo.csv") -> RawTable:
    frame = pl.DataFrame({k: pl.Series(k, v, dtype=pl.String) for k, v in columns.items()})
    return RawTable(frame, source, "csv")


def test_kobo_export(q: Questionnaire, caplog: pytest.LogCaptureFixture) -> None:
    problems: list[Problem] = []
    with caplog.at_level(logging.INFO, logger="volna.io"):
        out = read(FIXTURES / "kobo_export.csv", q, missing_columns="null", problems=problems)
    assert problems == []
    assert out.columns == list(q.columns)
    assert out.select("left_2022", *FEARS, "fears_other", "trust").rows() == [
        ("yes", True, True, False, False, None, "3"),
        ("no", False, False, True, False, None, "99"),
        ("yes", False, False, False, True, "в розыске, уехал", "1"),
        (None, None, None, None, None, None, None),
    ]
    assert out["destination"].to_list() == ["GE", "TR", "AM", None]
    assert out["age"].to_list() == [34, 51, 28, None]
    assert out["income"].to_list() == [120.5, None, 75.0, None]
    assert out["departure"].to_list() == [
        dt.date(2022, 9, 25),
        dt.date(2022, 9, 30),
        dt.date(2022, 10, 3),
        None,
    ]
    assert out["comment"].to_list() == ["Тбилиси", None, "=1+1", None]
    # Platform columns are dropped and logged by name; their values never reach the log.
    dropped = [r.getMessage() for r in caplog.records if "platform" in r.getMessage()]
    assert len(dropped) == 1
    for name in ("start", "end", "_uuid", "_submitted_by", "meta/instanceID", "__version__"):
        assert name in dropped[0]
    for value in ("alice", "bob", "uuid:1111", "2022-10-01"):
        assert value not in caplog.text


def test_group_paths_match_by_last_segments(q: Questionnaire) -> None:
    match = match_columns(
        ["g/sid", "a/b/c/age", "g/fears/persecution", "g/fears", "fears/war", "_id", "x"], q, "k"
    )
    assert match.sources == {
        "sid": "g/sid",
        "age": "a/b/c/age",
        "fears/persecution": "g/fears/persecution",
    }
    assert match.combined == {"fears": "g/fears"}
    assert match.platform == ["_id"]
    # An option the questionnaire lacks stays unknown (not taken for a question).
    assert match.unknown == ["fears/war", "x"]


def test_two_columns_for_one_answer(q: Questionnaire) -> None:
    with pytest.raises(ReadError) as err:
        to_canonical(raw({"age": ["1"], "grp/age": ["2"]}), q, missing_columns="null")
    assert str(err.value) == (
        "kobo.csv: columns 'age' and 'grp/age' both hold 'age'; remove or rename one"
    )


def test_space_separated_multiple_choice(q: Questionnaire) -> None:
    problems: list[Problem] = []
    out = to_canonical(
        raw(
            {
                "grp/fears": [
                    "persecution conscription",
                    "  none ",
                    "",
                    None,
                    "persecution war",
                    "Мобилизации",
                    "other",
                ],
                "grp/fears_other": [None, None, None, None, None, None, "уклонист"],
            }
        ),
        q,
        missing_columns="null",
        problems=problems,
    )
    assert out.select(FEARS).rows() == [
        (True, True, False, False),
        (False, False, True, False),
        (None, None, None, None),  # not answered
        (None, None, None, None),
        (None, None, None, None),  # an unknown code: the whole answer is a problem
        (False, True, False, False),  # one option written as its label
        (False, False, False, True),
    ]
    assert out["fears_other"].to_list()[-1] == "уклонист"
    assert [(p.row, p.column, p.value, p.rule, p.question) for p in problems] == [
        (5, "grp/fears", "persecution war", "unknown_code", "fears")
    ]
    assert problems[0].message == (
        "'war' is not a code of question fears (codes: persecution, conscription, none, other)"
    )


def test_option_columns_as_yes_no(q: Questionnaire) -> None:
    cells = ["1", "0", "True", "false", "да", "Нет", "yes", "NO", "1.0", "2", "", None]
    problems: list[Problem] = []
    out = to_canonical(
        raw({"g/fears/persecution": cells}), q, missing_columns="null", problems=problems
    )
    assert out["fears/persecution"].to_list() == [
        True,
        False,
        True,
        False,
        True,
        False,
        True,
        False,
        True,
        None,
        None,
        None,
    ]
    assert [(p.row, p.column, p.value, p.rule) for p in problems] == [
        (10, "g/fears/persecution", "2", "invalid_value")
    ]
    assert problems[0].message == (
        "expected 1 or 0 (option 'persecution' of question fears chosen or not)"
    )


def test_option_columns_fill_in_from_the_combined_column(q: Questionnaire) -> None:
    # Only one option column exported; the rest come from the codes column.
    out = to_canonical(
        raw({"fears": ["persecution none", "conscription"], "fears/persecution": ["1", "0"]}),
        q,
        missing_columns="null",
    )
    assert out.select(FEARS).rows() == [(True, False, True, False), (False, True, False, False)]


def test_option_and_combined_columns_must_agree(q: Questionnaire) -> None:
    problems: list[Problem] = []
    out = to_canonical(
        raw({"g/fears": ["persecution", "conscription"], "g/fears/persecution": ["1", "1"]}),
        q,
        missing_columns="null",
        problems=problems,
    )
    assert out["fears/persecution"].to_list() == [True, None]
    assert [(p.row, p.column, p.value, p.rule) for p in problems] == [
        (2, "g/fears/persecution", "1", "invalid_value")
    ]
    assert "disagrees with column 'g/fears'" in problems[0].message


def test_xls_with_labels_export(q: Questionnaire) -> None:
    # Kobo's "XLS with labels": choice cells hold the label in the form's language.
    problems: list[Problem] = []
    out = to_canonical(
        raw(
            {
                "left_2022": ["Да", "Нет", "Did you leave?"],
                "trust": ["Скорее доверяю", "Затрудняюсь ответить", "4"],
                "destination": ["Армения", "Kazakhstan", "КАЗАХСТАН"],
            }
        ),
        q,
        missing_columns="null",
        problems=problems,
    )
    assert out["left_2022"].to_list() == ["yes", "no", None]
    assert out["trust"].to_list() == ["3", "99", "4"]
    assert out["destination"].to_list() == ["AM", "KZ", "KZ"]
    assert [(p.row, p.column, p.rule) for p in problems] == [(3, "left_2022", "unknown_code")]


def test_platform_columns_the_questionnaire_defines_are_kept() -> None:
    q = Questionnaire.loads(
        """
id: kept
paradata: [{name: start, type: datetime}, {name: _id, type: id}]
questions: [{name: age, type: integer}]
"""
    )
    out = to_canonical(
        raw(
            {
                "start": ["2022-10-01T10:00:00.000+03:00"],
                "_id": ["101"],
                "_uuid": ["u"],
                "age": ["34"],
            }
        ),
        q,
    )
    assert out.rows() == [(dt.datetime(2022, 10, 1, 7, 0), "101", 34)]


def test_kobo_semicolon_export(q: Questionnaire, tmp_path: Path) -> None:
    text = (FIXTURES / "kobo_export.csv").read_text("utf-8")
    import csv
    import io

    rows = list(csv.reader(io.StringIO(text)))
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=";", lineterminator="\n").writerows(rows)
    path = tmp_path / "kobo_semicolon.csv"
    path.write_text(buffer.getvalue(), "utf-8")
    out = read(path, q, missing_columns="null")
    expected = read(FIXTURES / "kobo_export.csv", q, missing_columns="null")
    assert out.equals(expected)
