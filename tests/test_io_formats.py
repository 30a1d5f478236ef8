"""Round trips of the canonical table through every format, and format-specific safety."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import openpyxl
import polars as pl
import pyreadstat
import pytest

from volna import Questionnaire, ReadError, WriteError
from volna.io import canonical_schema, read, read_raw, stored_names, to_canonical, write

FIXTURES = Path(__file__).parent / "fixtures" / "io"
FORMATS = ["csv", "xlsx", "parquet", "sav", "dta"]


@pytest.fixture(scope="module")
def q() -> Questionnaire:
    return Questionnaire.load(FIXTURES / "questionnaire.yaml")


def canonical_fixture(q: Questionnaire) -> pl.DataFrame:
    """Every column type, nulls, Cyrillic, a newline, and text that looks like formulas."""
    rows = [
        {
            "sid": "r001",
            "started": dt.datetime(2022, 3, 1, 10, 5, 7, 123000),
            "duration": 754.25,
            "attempt": 1,
            "score": 0.1,
            "channel": "telegram",
            "left_2022": "yes",
            "fears/persecution": True,
            "fears/conscription": False,
            "fears/none": False,
            "fears/other": True,
            "fears_other": '=HYPERLINK("http://example.org","click")',
            "trust": "3",
            "destination": "GE",
            "age": 34,
            "income": 120.5,
            "departure": dt.date(2022, 3, 1),
            "comment": "Уехал в Тбилиси, «всё сложно»\nвторая строка",
            "occupation": "other",
            "occupation_other": "ресторанный бизнес",
        },
        {c: None for c in q.columns} | {"sid": "007"},
        {
            "sid": "r003",
            "started": dt.datetime(1999, 12, 31, 23, 59, 59),
            "duration": 0.0,
            "attempt": -2,
            "score": -1e-7,
            "channel": "+7 999 123-45-67",
            "left_2022": "no",
            "fears/persecution": False,
            "fears/conscription": False,
            "fears/none": True,
            "fears/other": False,
            "fears_other": None,
            "trust": "99",
            "destination": "TR",
            "age": 0,
            "income": 1e20,
            "departure": dt.date(1900, 1, 1),
            "comment": "-минус @собака 'одинарные' \"двойные\" ; запятая, точка.",
            "occupation": "it",
            "occupation_other": None,
        },
    ]
    return pl.DataFrame(rows, schema=canonical_schema(q))


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_is_equal(q: Questionnaire, tmp_path: Path, fmt: str) -> None:
    frame = canonical_fixture(q)
    path = tmp_path / f"responses.{fmt}"
    write(frame, path, q)
    back = read(path, q)
    assert back.columns == list(q.columns)
    assert back.schema == frame.schema
    assert back.equals(frame)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_of_an_empty_table(q: Questionnaire, tmp_path: Path, fmt: str) -> None:
    frame = canonical_fixture(q).head(0)
    path = tmp_path / f"empty.{fmt}"
    write(frame, path, q)
    assert read(path, q).equals(frame)


def test_csv_file_as_written(q: Questionnaire, tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    write(canonical_fixture(q), path, q)
    text = path.read_bytes().decode("utf-8")  # UTF-8, no byte-order mark
    assert not text.startswith("\ufeff")
    header, first = text.split("\n")[:2]
    assert header.split(",")[:3] == ["sid", "started", "duration"]
    assert "fears/persecution" in header
    # Options as 1/0, dates ISO, date-times ISO with microseconds.
    assert first.startswith("r001,2022-03-01T10:05:07.123000,754.25,1,0.1,telegram,yes,1,0,0,1,")
    assert ",2022-03-01," in first


def test_xlsx_text_is_never_a_formula(q: Questionnaire, tmp_path: Path) -> None:
    path = tmp_path / "out.xlsx"
    write(canonical_fixture(q), path, q)
    wb = openpyxl.load_workbook(path)  # not read-only: sees data types as stored
    ws = wb["responses"]
    header = [c.value for c in ws[1]]
    column = header.index("fears_other") + 1
    cell = ws.cell(row=2, column=column)
    assert cell.value == '=HYPERLINK("http://example.org","click")'
    assert cell.data_type == "s"
    formulas = [c.coordinate for row in ws.iter_rows() for c in row if c.data_type == "f"]
    assert formulas == []
    channel = ws.cell(row=4, column=header.index("channel") + 1)
    assert (channel.value, channel.data_type) == ("+7 999 123-45-67", "s")
    # ...and the raw XML holds no <f> element at all.
    with zipfile.ZipFile(path) as z:
        sheet = z.read("xl/worksheets/sheet1.xml").decode("utf-8")
    assert "<f>" not in sheet and "<f " not in sheet


def test_xlsx_header_is_bold_and_frozen(q: Questionnaire, tmp_path: Path) -> None:
    path = tmp_path / "out.xlsx"
    write(canonical_fixture(q), path, q)
    ws = openpyxl.load_workbook(path)["responses"]
    assert ws.freeze_panes == "A2"
    assert all(c.font.b for c in ws[1])
    assert ws["A1"].value == "sid"


def test_xlsx_reading_converts_cells_to_text(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["n", "f", "d", "ts", "b", "t", "err"])
    ws.append([34, 2.5, dt.datetime(2022, 3, 1), dt.datetime(2022, 3, 1, 10, 5), True, "x", None])
    ws.append([1e20, 3.0, dt.date(2022, 3, 2), None, False, " ", "#N/A"])
    ws["G3"].data_type = "e"
    ws.append([None] * 7)  # trailing empty rows are dropped
    path = tmp_path / "cells.xlsx"
    wb.save(path)
    raw = read_raw(path)
    assert raw.frame.rows() == [
        ("34", "2.5", "2022-03-01", "2022-03-01 10:05:00", "true", "x", None),
        ("1e+20", "3", "2022-03-02", None, "false", " ", "#N/A"),
    ]


def test_xlsx_formulas_are_read_as_their_saved_values(tmp_path: Path) -> None:
    # A formula with a cached value (as Excel saves it) reads as that value.
    path = tmp_path / "formula.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["age"])
    ws.append(["=30+4"])
    wb.save(path)
    # openpyxl writes no cached value: volna refuses rather than reading empty.
    with pytest.raises(ReadError) as err:
        read_raw(path)
    assert str(err.value) == (
        f"{path}: cell A2 holds a formula with no saved result; "
        "open and save the file in Excel, or paste the values"
    )
    # Add the cached value the way Excel does, by editing the sheet XML.
    patched = tmp_path / "patched.xlsx"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(patched, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b"<f>30+4</f><v></v>", b"<f>30+4</f><v>34</v>")
                data = data.replace(b"<f>30+4</f><v />", b"<f>30+4</f><v>34</v>")
                assert b"<v>34</v>" in data
            dst.writestr(item, data)
    assert read_raw(patched).frame.rows() == [("34",)]


def test_truncated_xlsx_is_one_read_error(q: Questionnaire, tmp_path: Path) -> None:
    whole = tmp_path / "whole.xlsx"
    write(canonical_fixture(q), whole, q)
    cut = tmp_path / "cut.xlsx"
    cut.write_bytes(whole.read_bytes()[:500])
    with pytest.raises(ReadError) as err:
        read(cut, q)
    message = str(err.value)
    assert message == f"{cut}: not a valid .xlsx file (truncated or damaged zip)"
    assert "\n" not in message


def test_xlsx_zip_without_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "fake.xlsx"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hello.txt", "not a workbook")
    with pytest.raises(ReadError) as err:
        read_raw(path)
    assert str(err.value).startswith(f"{path}: not a valid .xlsx file (")
    assert "\n" not in str(err.value)


def test_xlsx_zip_bomb_is_refused_before_unpacking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from volna.io import excel

    # The real limit is 2 GB; a small one keeps the test fast.
    monkeypatch.setattr(excel, "MAX_UNPACKED", 20_000_000)
    path = tmp_path / "bomb.xlsx"
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z,
        z.open("xl/worksheets/sheet1.xml", "w") as f,
    ):
        for _ in range(21):
            f.write(b"\0" * 1_000_000)
    assert path.stat().st_size < 100_000
    with pytest.raises(ReadError) as err:
        read_raw(path)
    assert str(err.value) == (
        f"{path}: unpacks to 21 MB, more than the 20 MB volna accepts from an .xlsx; save it as CSV"
    )


def test_xlsx_sheet_choice(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    wb.active.title = "notes"
    wb.active.append(["this sheet is notes"])
    data = wb.create_sheet("data")
    data.append(["age"])
    data.append([41])
    path = tmp_path / "two.xlsx"
    wb.save(path)
    assert read_raw(path, sheet="data").frame.rows() == [("41",)]
    assert read_raw(path, sheet=1).frame.rows() == [("41",)]
    with pytest.raises(ReadError, match=r"no sheet named 'answers' \(sheets: notes, data\)"):
        read_raw(path, sheet="answers")


def test_sav_and_dta_keep_labels(q: Questionnaire, tmp_path: Path) -> None:
    frame = canonical_fixture(q)
    for fmt, reader in (("sav", pyreadstat.read_sav), ("dta", pyreadstat.read_dta)):
        path = tmp_path / f"labels.{fmt}"
        write(frame, path, q, language="en")
        data, meta = reader(str(path))
        assert "fears__persecution" in data.columns  # '/' is not allowed there
        labels = meta.column_names_to_labels
        assert labels["left_2022"] == "Did you leave in 2022?"
        assert labels["fears__persecution"] == "What did you fear?: Persecution"
        values = meta.variable_value_labels
        # Codes that are not numbers are stored as positions 1..k...
        assert values["left_2022"] == {1: "Yes", 2: "No"}
        assert data["left_2022"].tolist()[0] == 1
        # ...integer codes as themselves.
        assert values["trust"] == {
            1: "No trust at all",
            2: "Little trust",
            3: "Some trust",
            4: "Full trust",
            99: "Don't know",
        }
        assert values["fears__persecution"] == {0: "not selected", 1: "selected"}
        assert read(path, q).equals(frame)


def test_sav_labels_in_russian_by_default(q: Questionnaire, tmp_path: Path) -> None:
    path = tmp_path / "ru.sav"
    write(canonical_fixture(q), path, q)
    _, meta = pyreadstat.read_sav(str(path))
    assert meta.column_names_to_labels["age"] == "Возраст"
    assert meta.variable_value_labels["left_2022"] == {1: "Да", 2: "Нет"}


def test_long_and_clashing_labels_still_read_back(tmp_path: Path) -> None:
    long = "Очень длинная формулировка варианта ответа, " * 5  # > 120 bytes
    q = Questionnaire.loads(
        f"""
id: long
questions:
  - name: reason
    type: single
    choices:
      - {{code: a, label: {{ru: "{long}один"}}}}
      - {{code: b, label: {{ru: "{long}два"}}}}
      - {{code: c, label: {{ru: Тот же текст}}}}
      - {{code: d, label: {{ru: Тот же текст}}}}
      - {{code: e, label: {{ru: "Короткий, но длиннее 120 байт {"я" * 60}"}}}}
"""
    )
    frame = pl.DataFrame({"reason": ["a", "b", "c", "d", "e", None]})
    path = tmp_path / "long.sav"
    write(frame, path, q)
    _, meta = pyreadstat.read_sav(str(path))
    stored = meta.variable_value_labels["reason"]
    # a and b share their first 120 bytes, c and d their label: codes instead.
    assert stored[1] == "a" and stored[2] == "b"
    assert stored[3] == "c" and stored[4] == "d"
    assert len(stored[5].encode("utf-8")) <= 120 and stored[5].startswith("Короткий")
    assert read(path, q).equals(frame)


def test_stored_names_are_reversible(tmp_path: Path) -> None:
    q = Questionnaire.loads(
        """
id: names
questions:
  - {name: _start, type: text}
  - {name: q.1-b, type: integer}
  - {name: a_very_long_question_name_over_32_chars, type: integer}
  - {name: with, type: text}
  - {name: Age, type: integer}
  - {name: age, type: integer}
  - name: fears
    type: multiple
    choices: [{code: persecution}, {code: 2022-war}]
"""
    )
    names = stored_names(q.columns)
    assert names["fears/persecution"] == "fears__persecution"
    assert names["Age"] == "Age"  # kept; its SPSS-twin 'age' is renamed
    assert names["age"] != "age"
    for name in names.values():
        assert len(name) <= 32 and name[0].isalpha()
        assert name.replace("_", "").isalnum()
    assert len({n.lower() for n in names.values()}) == len(names)
    frame = pl.DataFrame(
        {
            "_start": ["x", None],
            "q.1-b": [1, 2],
            "a_very_long_question_name_over_32_chars": [3, None],
            "with": ["w", "v"],
            "Age": [30, 31],
            "age": [40, 41],
            "fears/persecution": [True, None],
            "fears/2022-war": [False, None],
        },
        schema=canonical_schema(q),
    )
    for fmt in ("sav", "dta"):
        path = tmp_path / f"names.{fmt}"
        write(frame, path, q)
        assert set(read_raw(path).frame.columns) == set(names.values())
        assert read(path, q).equals(frame)


def test_foreign_sav_value_labels_map_to_codes(q: Questionnaire, tmp_path: Path) -> None:
    # An SPSS file made elsewhere: its own numbering, labels in the questionnaire's words.
    data = pl.DataFrame(
        {
            "left_2022": [2.0, 1.0, 7.0, None],
            "trust": [4.0, 99.0, 2.0, 3.0],
            "age": [34.0, 28.0, 40.5, None],
        }
    )
    path = tmp_path / "foreign.sav"
    pyreadstat.write_sav(
        data,
        str(path),
        variable_value_labels={
            "left_2022": {1: "  НЕТ ", 2: "yes", 7: "Не знаю"},
            "trust": {4: "полностью доверяю"},  # 99, 2, 3 unlabelled: numbers are codes
        },
        missing_ranges={"trust": [99]},  # user-missing: kept, not silently emptied
    )
    problems: list = []
    out = to_canonical(read_raw(path), q, missing_columns="null", problems=problems)
    assert out["left_2022"].to_list() == ["yes", "no", None, None]
    assert out["trust"].to_list() == ["4", "99", "2", "3"]
    assert out["age"].to_list() == [34, 28, None, None]
    assert [(p.row, p.column, p.value, p.rule) for p in problems] == [
        (3, "left_2022", "7", "unknown_code"),
        (3, "age", "40.5", "invalid_value"),
    ]
    assert "labelled 'Не знаю'" in problems[0].message


def test_stata_extended_missing_values_are_not_lost(q: Questionnaire, tmp_path: Path) -> None:
    import pandas as pd

    path = tmp_path / "missing.dta"
    frame = pd.DataFrame({"age": [34.0, "a", None]}, dtype=object)
    pyreadstat.write_dta(frame, str(path), missing_user_values={"age": ["a"]})
    raw = read_raw(path)
    assert raw.frame["age"].to_list() == ["34", ".a", None]
    problems: list = []
    out = to_canonical(raw, q, missing_columns="null", problems=problems)
    assert out["age"].to_list() == [34, None, None]
    assert [(p.row, p.value, p.rule) for p in problems] == [(2, ".a", "invalid_value")]


@pytest.mark.parametrize("fmt", ["sav", "dta"])
def test_garbage_stats_file_is_one_read_error(q: Questionnaire, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"garbage.{fmt}"
    path.write_bytes(b"$FL2" + bytes(range(256)) * 20)
    with pytest.raises(ReadError) as err:
        read(path, q)
    kind = "SPSS .sav" if fmt == "sav" else "Stata .dta"
    assert str(err.value) == f"{path}: not a valid {kind} file (damaged or truncated)"


def test_truncated_sav_is_one_read_error(q: Questionnaire, tmp_path: Path) -> None:
    whole = tmp_path / "whole.sav"
    write(canonical_fixture(q), whole, q)
    cut = tmp_path / "cut.sav"
    cut.write_bytes(whole.read_bytes()[:700])
    with pytest.raises(ReadError, match=r"^.*cut\.sav: not a valid SPSS \.sav file"):
        read(cut, q)


def test_garbage_parquet_is_one_read_error(q: Questionnaire, tmp_path: Path) -> None:
    path = tmp_path / "garbage.parquet"
    path.write_bytes(b"PAR1" + b"\x15\x00" * 100 + b"PAR1")
    with pytest.raises(ReadError) as err:
        read(path, q)
    assert str(err.value).startswith(f"{path}: not a valid parquet file (")
    assert "\n" not in str(err.value)
    path.write_bytes(b"id,age\n")
    with pytest.raises(ReadError, match="does not start with PAR1"):
        read(path, q)


def test_pandas_parquet_with_nan_for_missing(q: Questionnaire, tmp_path: Path) -> None:
    import pandas as pd

    path = tmp_path / "pandas.parquet"
    pd.DataFrame({"age": [34.0, float("nan")], "income": [1.5, float("nan")]}).to_parquet(path)
    out = read(path, q, missing_columns="null")
    assert out["age"].to_list() == [34, None]
    assert out["income"].to_list() == [1.5, None]


# -- writing refuses what it cannot keep ----------------------------------------------


def test_write_checks_the_table(q: Questionnaire, tmp_path: Path) -> None:
    frame = canonical_fixture(q)
    path = tmp_path / "out.csv"
    with pytest.raises(WriteError, match=r"lacks the questionnaire's column.*age"):
        write(frame.drop("age"), path, q)
    with pytest.raises(WriteError, match=r"column age is String, expected Int64"):
        write(frame.with_columns(pl.col("age").cast(pl.String)), path, q)
    nan = frame.with_columns(pl.Series("income", [1.0, float("nan"), 2.0]))
    with pytest.raises(WriteError, match=r"row 2, column income: nan is not a number"):
        write(nan, path, q)
    with pytest.raises(WriteError, match="language 'de' is not one of"):
        write(frame, tmp_path / "x.sav", q, language="de")
    assert not path.exists()


def test_write_accepts_lossless_widening(q: Questionnaire, tmp_path: Path) -> None:
    frame = canonical_fixture(q)
    narrow = frame.with_columns(pl.col("age").cast(pl.Int16), pl.lit(None).alias("comment"))
    path = tmp_path / "narrow.parquet"
    write(narrow, path, q)
    assert read(path, q).equals(frame.with_columns(pl.lit(None, pl.String).alias("comment")))


def test_stats_refuse_what_they_would_round(q: Questionnaire, tmp_path: Path) -> None:
    frame = canonical_fixture(q)
    big = frame.with_columns(pl.Series("attempt", [1, 2**60, None]))
    with pytest.raises(
        WriteError, match=r"row 2, column attempt: 1152921504606846976 is too large"
    ):
        write(big, tmp_path / "big.dta", q)
    fine = frame.with_columns(
        pl.Series("started", [dt.datetime(2022, 3, 1, 10, 0, 0, 123456), None, None])
    )
    with pytest.raises(WriteError, match="row 1, column started: SPSS keeps date-times"):
        write(fine, tmp_path / "fine.sav", q)
    # parquet, CSV and .xlsx keep every digit
    for fmt in ("parquet", "csv", "xlsx"):
        path = tmp_path / f"exact.{fmt}"
        write(big, path, q)
        assert read(path, q).equals(big)
        write(fine, path, q)
        assert read(path, q).equals(fine)


def test_stats_refuse_codes_the_questionnaire_lacks(q: Questionnaire, tmp_path: Path) -> None:
    frame = canonical_fixture(q).with_columns(pl.Series("left_2022", ["yes", None, "maybe"]))
    with pytest.raises(WriteError, match=r"row 3, column left_2022: 'maybe' is not a code"):
        write(frame, tmp_path / "codes.sav", q)


def test_failed_write_leaves_no_file(q: Questionnaire, tmp_path: Path) -> None:
    frame = canonical_fixture(q).with_columns(
        pl.Series("comment", ["ok", "bell \x07 in text", None])
    )
    path = tmp_path / "control.xlsx"
    with pytest.raises(WriteError, match=r"row 2, column comment: contains a control character"):
        write(frame, path, q)
    assert list(tmp_path.iterdir()) == []


def test_unknown_extension(q: Questionnaire, tmp_path: Path) -> None:
    with pytest.raises(ReadError, match=r"cannot tell the format from the extension '\.bin'"):
        read(tmp_path / "data.bin", q)
    with pytest.raises(ReadError, match=r"old Excel \.xls file"):
        read(tmp_path / "data.xls", q)
    with pytest.raises(WriteError, match="cannot tell the format"):
        write(canonical_fixture(q), tmp_path / "out.bin", q)
    with pytest.raises(ReadError, match="no such file"):
        read(tmp_path / "absent.csv", q)


def test_volna_read_and_write_are_these(q: Questionnaire, tmp_path: Path) -> None:
    import volna
    import volna.io

    assert volna.read is volna.io.read
    assert volna.write is volna.io.write
    path = tmp_path / "out.parquet"
    volna.write(canonical_fixture(q), path, q)
    assert volna.read(path, q).equals(canonical_fixture(q))


@pytest.mark.parametrize(("name", "delimiter"), [("out.tsv", "\t"), ("out.txt", ",")])
def test_tsv_is_written_with_tabs(
    q: Questionnaire, tmp_path: Path, name: str, delimiter: str
) -> None:
    path = tmp_path / name
    write(canonical_fixture(q), path, q)
    assert path.read_text("utf-8").startswith(f"sid{delimiter}started{delimiter}")
    assert read(path, q).equals(canonical_fixture(q))


def test_zsav_is_compressed_spss(q: Questionnaire, tmp_path: Path) -> None:
    path = tmp_path / "out.zsav"
    write(canonical_fixture(q), path, q)
    assert path.read_bytes()[:4] == b"$FL3"
    assert read(path, q).equals(canonical_fixture(q))


def test_write_into_a_missing_folder(q: Questionnaire, tmp_path: Path) -> None:
    with pytest.raises(WriteError, match="does not exist"):
        write(canonical_fixture(q), tmp_path / "nowhere" / "out.csv", q)
