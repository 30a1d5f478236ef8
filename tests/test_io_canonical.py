"""From raw cells to the canonical table: types, codes, labels, problems, column policies."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import polars as pl
import pytest

from volna import Questionnaire, ReadError
from volna.io import RawTable, canonical_schema, read, to_canonical
from volna.problems import Problem

FIXTURES = Path(__file__).parent / "fixtures" / "io"


@pytest.fixture(scope="module")
def q() -> Questionnaire:
    return Questionnaire.load(FIXTURES / "questionnaire.yaml")


def raw(columns: dict[str, list], source: str = "data.csv", **options: object) -> RawTable:
    frame = pl.DataFrame({k: pl.Series(k, v, dtype=pl.String) for k, v in columns.items()})
    return RawTable(frame, source, "csv", **options)  # type: ignore[arg-type]


def convert(q: Questionnaire, columns: dict[str, list], **options: object) -> tuple:
    problems: list[Problem] = []
    out = to_canonical(raw(columns, **options), q, missing_columns="null", problems=problems)
    return out, [(p.row, p.column, p.value, p.rule) for p in problems], problems


# -- the canonical shape ---------------------------------------------------------------


def test_canonical_columns_types_and_order(q: Questionnaire) -> None:
    out, found, _ = convert(q, {"age": ["34"], "sid": ["r1"]})
    assert out.columns == list(q.columns)
    assert out.schema == canonical_schema(q)
    assert dict(out.schema)["fears/persecution"] == pl.Boolean
    assert dict(out.schema)["started"] == pl.Datetime("us")
    assert out.row(0, named=True)["age"] == 34
    assert found == []


def test_blank_cells_are_null_and_text_is_kept_as_written(q: Questionnaire) -> None:
    out, found, _ = convert(
        q,
        {
            "comment": ["  padded  ", "   ", "\t", "", None, "=1+1", "строка\nвторая"],
            "age": [" 34 ", " ", "", None, "\u00a0", "35", "36"],
        },
    )
    assert out["comment"].to_list() == [
        "  padded  ",
        None,
        None,
        None,
        None,
        "=1+1",
        "строка\nвторая",
    ]
    assert out["age"].to_list() == [34, None, None, None, None, 35, 36]
    assert found == []


# -- numbers ------------------------------------------------------------------------------


def test_integers(q: Questionnaire) -> None:
    cells = [
        "34",
        "+34",
        "-3",
        "034",
        "34.0",
        "34.",
        "3.4e1",
        "34.5",
        "abc",
        "1 000",
        "nan",
        "9223372036854775807",
        "9223372036854775808",
        "1e20",
    ]
    out, found, problems = convert(q, {"age": cells})
    assert out["age"].to_list() == [
        34,
        34,
        -3,
        34,
        34,
        34,
        34,
        None,
        None,
        None,
        None,
        9223372036854775807,
        None,
        None,
    ]
    assert found == [
        (8, "age", "34.5", "invalid_value"),
        (9, "age", "abc", "invalid_value"),
        (10, "age", "1 000", "invalid_value"),
        (11, "age", "nan", "invalid_value"),
        (13, "age", "9223372036854775808", "invalid_value"),
        (14, "age", "1e20", "invalid_value"),
    ]
    assert problems[0].message == "expected a whole number (like 34)"
    assert problems[0].question == "age"


def test_decimals(q: Questionnaire) -> None:
    cells = ["3.5", "-.5", "1e-3", "2", " 7.25 ", "inf", "NaN", "3,5", "1.2.3"]
    out, found, _ = convert(q, {"income": cells})
    assert out["income"].to_list() == [3.5, -0.5, 0.001, 2.0, 7.25, None, None, None, None]
    assert [f[0] for f in found] == [6, 7, 8, 9]


def test_decimal_comma_in_semicolon_files(q: Questionnaire) -> None:
    out, found, _ = convert(
        q, {"income": ["3,5", "-0,25", "7"], "age": ["34,0", "28", None]}, delimiter=";"
    )
    assert out["income"].to_list() == [3.5, -0.25, 7.0]
    assert out["age"].to_list() == [34, 28, None]
    assert found == []


def test_paradata_types(q: Questionnaire) -> None:
    out, found, problems = convert(
        q,
        {
            "sid": [" 007 ", "r2", "r3", "r4", "r5", "r6"],
            "started": [
                "2022-03-01T10:05:07.123456",
                "2022-03-01 10:05",
                "2022-03-01T10:05:07+03:00",
                "2022-03-01T10:05:07Z",
                "01.03.2022 10:05:07",
                "yesterday",
            ],
            "duration": ["754.2", "1:02:03", "0:00:01.5", "-5", "12:75:00", ""],
            "attempt": ["1", "2", "3", "x", None, None],
        },
    )
    assert out["sid"].to_list() == [" 007 ", "r2", "r3", "r4", "r5", "r6"]
    assert out["started"].to_list() == [
        dt.datetime(2022, 3, 1, 10, 5, 7, 123456),
        dt.datetime(2022, 3, 1, 10, 5),
        dt.datetime(2022, 3, 1, 7, 5, 7),  # +03:00 -> UTC
        dt.datetime(2022, 3, 1, 10, 5, 7),
        dt.datetime(2022, 3, 1, 10, 5, 7),
        None,
    ]
    assert out["duration"].to_list() == [754.2, 3723.0, 1.5, -5.0, None, None]
    assert out["attempt"].to_list() == [1, 2, 3, None, None, None]
    assert found == [
        (4, "attempt", "x", "invalid_value"),
        (5, "duration", "12:75:00", "invalid_value"),
        (6, "started", "yesterday", "invalid_value"),
    ]
    assert problems[2].message.startswith("expected a date and time as YYYY-MM-DD HH:MM[:SS]")


# -- dates --------------------------------------------------------------------------------


def test_dates(q: Questionnaire) -> None:
    cells = [
        "2022-03-01",
        "2022-3-1",
        "01.03.2022",
        "1.3.2022",
        " 2022-03-01 ",
        "02/03/2022",
        "2022-02-30",
        "22-03-01",
        "01.03.22",
        "2022-03-01T00:00",
    ]
    out, found, problems = convert(q, {"departure": cells})
    march = dt.date(2022, 3, 1)
    assert out["departure"].to_list() == [march] * 5 + [None] * 5
    assert [(f[0], f[2]) for f in found] == [
        (6, "02/03/2022"),
        (7, "2022-02-30"),
        (8, "22-03-01"),
        (9, "01.03.22"),
        (10, "2022-03-01T00:00"),
    ]
    assert "ambiguous (day or month first?)" in problems[0].message
    assert problems[1].message == "expected a date as YYYY-MM-DD or DD.MM.YYYY"


# -- choices, labels, countries -----------------------------------------------------------


def test_choice_codes_and_labels_in_any_language(q: Questionnaire) -> None:
    cells = ["yes", "no", "Да", " нет ", "YES", "No", "maybe", "", None]
    out, found, problems = convert(q, {"left_2022": cells})
    assert out["left_2022"].to_list() == ["yes", "no", "yes", "no", "yes", "no", None, None, None]
    assert found == [(7, "left_2022", "maybe", "unknown_code")]
    assert problems[0].message == "not a code or label of question left_2022 (codes: yes, no)"
    assert problems[0].describe("d.csv") == (
        "d.csv: row 7, column left_2022: 'maybe': not a code or label of question left_2022 "
        "(codes: yes, no) [unknown_code]"
    )


def test_scale_labels_numbers_and_spreadsheet_floats(q: Questionnaire) -> None:
    cells = ["3", "3.0", "Полностью   доверяю", "don't know", "5", "Full trust"]
    out, found, _ = convert(q, {"trust": cells})
    assert out["trust"].to_list() == ["3", "3", "4", "99", None, "4"]
    assert found == [(5, "trust", "5", "unknown_code")]


def test_ambiguous_label_is_not_guessed() -> None:
    q = Questionnaire.loads(
        """
id: amb
languages: [ru, en]
questions:
  - name: q
    type: single
    choices:
      - {code: a, label: {ru: Другое, en: Other}}
      - {code: b, label: {ru: Прочее, en: other}}
"""
    )
    problems: list[Problem] = []
    out = to_canonical(raw({"q": ["OTHER", "Прочее"]}), q, problems=problems)
    assert out["q"].to_list() == [None, "b"]
    assert problems[0].rule == "unknown_code"
    assert problems[0].message == "matches several choices of question q (a, b); write the code"


def test_countries(q: Questionnaire) -> None:
    cells = ["GE", "ge", "GEO", "Georgia", "Грузия", " турция ", "Türkiye", "Narnia", "SU"]
    out, found, problems = convert(q, {"destination": cells})
    assert out["destination"].to_list() == ["GE"] * 5 + ["TR", "TR", None, None]
    assert [(f[0], f[2], f[3]) for f in found] == [
        (8, "Narnia", "unknown_code"),
        (9, "SU", "unknown_code"),
    ]
    assert "not a country" in problems[0].message


# -- problems -----------------------------------------------------------------------------


def test_problems_are_ordered_by_row_then_column(q: Questionnaire) -> None:
    _, found, _ = convert(
        q,
        {
            "income": ["x", "1", "y"],
            "age": ["1", "z", "w"],
            "left_2022": ["q", "yes", "no"],
        },
    )
    assert found == [
        (1, "income", "x", "invalid_value"),
        (1, "left_2022", "q", "unknown_code"),
        (2, "age", "z", "invalid_value"),
        (3, "income", "y", "invalid_value"),
        (3, "age", "w", "invalid_value"),
    ]


def test_without_a_problems_list_the_first_problem_is_raised(
    q: Questionnaire, tmp_path: Path
) -> None:
    path = tmp_path / "answers.csv"
    path.write_text("sid,age,left_2022\nr1,34,yes\nr2,тридцать,нет\nr3,x,maybe\n", "utf-8")
    with pytest.raises(ReadError) as err:
        read(path, q, missing_columns="null")
    assert str(err.value) == (
        f"{path}: row 2, column age: 'тридцать': expected a whole number (like 34) [invalid_value]"
    )


def test_first_problem_is_by_row_not_by_column(q: Questionnaire) -> None:
    with pytest.raises(ReadError) as err:
        to_canonical(
            raw({"age": ["1", "2", "x"], "left_2022": ["yes", "maybe", "no"]}),
            q,
            missing_columns="null",
        )
    assert "row 2, column left_2022: 'maybe'" in str(err.value)


def test_problem_value_is_the_raw_text(q: Questionnaire) -> None:
    _, found, _ = convert(q, {"age": ["  4 5  "]})
    assert found == [(1, "age", "  4 5  ", "invalid_value")]


# -- unknown and missing columns -------------------------------------------------------------


def test_unknown_column_is_an_error_by_default(q: Questionnaire, tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("sid,age,foo,bar\nr1,34,1,2\n", "utf-8")
    with pytest.raises(ReadError) as err:
        read(path, q, missing_columns="null")
    assert str(err.value) == (
        f"{path}: column 'foo' is not in the questionnaire (known: sid, started, duration, "
        "attempt, score, channel, left_2022, fears/persecution, ...); also unknown: 'bar'; "
        "remove it or pass unknown_columns='drop'"
    )


def test_unknown_column_drop_and_keep(
    q: Questionnaire, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "data.csv"
    path.write_text("sid,foo,age\nr1,secret-value,34\n", "utf-8")
    with caplog.at_level(logging.INFO, logger="volna.io"):
        dropped = read(path, q, unknown_columns="drop", missing_columns="null")
    assert dropped.columns == list(q.columns)
    assert "foo" in caplog.text and "secret-value" not in caplog.text
    kept = read(path, q, unknown_columns="keep", missing_columns="null")
    assert kept.columns == [*q.columns, "foo"]
    assert kept["foo"].to_list() == ["secret-value"]
    assert kept["age"].to_list() == [34]


def test_missing_columns(q: Questionnaire, tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("sid,age\nr1,34\n", "utf-8")
    with pytest.raises(ReadError) as err:
        read(path, q)
    # the paradata columns (started, duration, attempt, score, channel) may be absent
    assert str(err.value) == (
        f"{path}: the file has no column for left_2022, fears/persecution, fears/conscription, "
        "fears/none, fears/other, fears_other, trust, destination, income, departure "
        "and 3 more, which the questionnaire defines; add it or pass missing_columns='null'"
    )
    out = read(path, q, missing_columns="null")
    assert out.schema == canonical_schema(q)
    assert out.row(0) == ("r1", *[None] * 13, 34, *[None] * 5)


def test_policies_are_checked(q: Questionnaire) -> None:
    with pytest.raises(ValueError, match="unknown_columns must be one of"):
        to_canonical(raw({"age": ["1"]}), q, unknown_columns="ignore")  # type: ignore[arg-type]


def test_unsupported_column_type(q: Questionnaire) -> None:
    frame = pl.DataFrame({"age": [[1, 2]]})
    with pytest.raises(ReadError, match="column 'age' holds List"):
        to_canonical(RawTable(frame, "data.parquet", "parquet"), q, missing_columns="null")


# -- native types (parquet) -------------------------------------------------------------------


def test_native_types_convert_directly(q: Questionnaire, tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "age": pl.Series([34.0, 35.5, None]),
            "income": pl.Series([1, 2, 3], dtype=pl.Int32),
            "departure": pl.Series([dt.datetime(2022, 3, 1), dt.datetime(2022, 3, 1, 12), None]),
            "started": pl.Series([dt.date(2022, 3, 1), None, None]),
            "duration": pl.Series([dt.timedelta(seconds=90), None, dt.timedelta(0)]),
            "trust": pl.Series([4, 99, 7], dtype=pl.Int64),
            "fears/persecution": pl.Series([1, 0, 2], dtype=pl.Int8),
            "comment": pl.Series([1.0, 2.5, None]),
        }
    )
    path = tmp_path / "native.parquet"
    frame.write_parquet(path)
    problems: list[Problem] = []
    out = read(path, q, missing_columns="null", problems=problems)
    assert out["age"].to_list() == [34, None, None]
    assert out["income"].to_list() == [1.0, 2.0, 3.0]
    assert out["departure"].to_list() == [dt.date(2022, 3, 1), None, None]
    assert out["started"].to_list() == [dt.datetime(2022, 3, 1), None, None]
    assert out["duration"].to_list() == [90.0, None, 0.0]
    assert out["trust"].to_list() == ["4", "99", None]
    assert out["fears/persecution"].to_list() == [True, False, None]
    assert out["comment"].to_list() == ["1", "2.5", None]
    assert [(p.row, p.column, p.value, p.rule) for p in problems] == [
        (2, "age", "35.5", "invalid_value"),
        (2, "departure", "2022-03-01 12:00:00", "invalid_value"),
        (3, "trust", "7", "unknown_code"),
        (3, "fears/persecution", "2", "invalid_value"),
    ]
