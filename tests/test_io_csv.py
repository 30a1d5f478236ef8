"""Reading delimited text: encodings, delimiters, structure, and refusing what is not a CSV."""

from __future__ import annotations

from pathlib import Path

import pytest

from volna import Questionnaire, ReadError
from volna.io import read, read_raw

FIXTURES = Path(__file__).parent / "fixtures" / "io"


@pytest.fixture(scope="module")
def q() -> Questionnaire:
    return Questionnaire.load(FIXTURES / "questionnaire.yaml")


def write_bytes(tmp_path: Path, data: bytes, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def error_of(path: Path, **options: object) -> str:
    with pytest.raises(ReadError) as err:
        read_raw(path, **options)  # type: ignore[arg-type]
    message = str(err.value)
    assert "\n" not in message, "errors are one line"
    assert message.startswith(f"{path}: ")
    return message


# -- encodings ------------------------------------------------------------------------

TEXT = "sid,comment\nr1,Привет — «ёлка»\nr2,\n"
ROWS = [("r1", "Привет — «ёлка»"), ("r2", None)]


def test_utf8(tmp_path: Path) -> None:
    raw = read_raw(write_bytes(tmp_path, TEXT.encode("utf-8")))
    assert (raw.encoding, raw.delimiter, raw.format) == ("utf-8", ",", "csv")
    assert raw.frame.columns == ["sid", "comment"]
    assert raw.frame.rows() == ROWS


def test_utf8_with_bom(tmp_path: Path) -> None:
    raw = read_raw(write_bytes(tmp_path, b"\xef\xbb\xbf" + TEXT.encode("utf-8")))
    assert raw.encoding == "utf-8-sig"
    assert raw.frame.columns == ["sid", "comment"]  # no BOM glued to 'sid'
    assert raw.frame.rows() == ROWS


def test_windows_1251(tmp_path: Path) -> None:
    raw = read_raw(write_bytes(tmp_path, TEXT.encode("cp1251")))
    assert raw.encoding == "cp1251"
    assert raw.frame.rows() == ROWS


def test_utf16_excel_unicode_text(tmp_path: Path) -> None:
    data = TEXT.replace(",", "\t").encode("utf-16")  # with BOM, as Excel saves it
    raw = read_raw(write_bytes(tmp_path, data, "data.txt"))
    assert (raw.encoding, raw.delimiter) == ("utf-16", "\t")
    assert raw.frame.rows() == ROWS


def test_latin1_is_not_taken_for_windows_1251(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, "sid,city\nr1,Café München\n".encode("latin-1"))
    assert error_of(path) == (
        f"{path}: not text in UTF-8 or Windows-1251 (byte 0xe9 at offset 15); save it as UTF-8 CSV"
    )


def test_garbage_binary_named_csv(tmp_path: Path) -> None:
    import random

    rng = random.Random(7)
    noise = bytes(rng.randrange(1, 256) for _ in range(5000))  # no NUL: not caught as binary
    path = write_bytes(tmp_path, noise)
    message = error_of(path)
    assert message.startswith(f"{path}: not text in UTF-8 or Windows-1251 (byte 0x")
    assert message.endswith("; save it as UTF-8 CSV")


def test_nul_bytes_are_binary(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, b"sid,age\nr1,3\x004\n")
    assert error_of(path) == (
        f"{path}: binary data, not text (NUL byte at offset 12); expected a CSV file"
    )


def test_xlsx_renamed_to_csv_gets_a_hint(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\x00" * 20)
    assert error_of(path).endswith("expected a CSV file; it looks like an .xlsx (zip) file")


def test_truncated_utf8_at_end_of_file(tmp_path: Path) -> None:
    data = "sid,comment\nr1,Привет".encode()[:-1]  # cut inside the last letter
    path = write_bytes(tmp_path, data)
    assert error_of(path).startswith(f"{path}: not text in UTF-8 or Windows-1251 (byte 0xd1 ")


def test_empty_file(tmp_path: Path) -> None:
    for data in (b"", b"\xef\xbb\xbf", b"\n\n  \n"):
        path = write_bytes(tmp_path, data)
        assert error_of(path) == (
            f"{path}: the file is empty (expected a header line with column names)"
        )


def test_header_only_gives_zero_rows(tmp_path: Path, q: Questionnaire) -> None:
    path = write_bytes(tmp_path, ",".join(q.columns).encode() + b"\n")
    out = read(path, q)
    assert out.height == 0
    assert out.columns == list(q.columns)


# -- delimiters and structure -------------------------------------------------------------


@pytest.mark.parametrize(("delimiter", "shown"), [(",", ","), (";", ";"), ("\t", "\t")])
def test_delimiter_from_header(tmp_path: Path, delimiter: str, shown: str) -> None:
    text = f'sid{delimiter}comment\nr1{delimiter}"a, b; c"\n'
    raw = read_raw(write_bytes(tmp_path, text.encode()))
    assert raw.delimiter == shown
    assert raw.frame.rows() == [("r1", "a, b; c")]


def test_excel_european_csv(tmp_path: Path, q: Questionnaire) -> None:
    # What Russian Excel writes: Windows-1251, ';' delimiter, decimal commas.
    text = "sid;age;income;departure;comment\r\nr1;34;120,5;01.03.2022;Тбилиси\r\nr2;28,0;7;;\r\n"
    path = write_bytes(tmp_path, text.encode("cp1251"))
    out = read(path, q, missing_columns="null")
    assert out.select("sid", "age", "income", "comment").rows() == [
        ("r1", 34, 120.5, "Тбилиси"),
        ("r2", 28, 7.0, None),
    ]
    assert str(out["departure"][0]) == "2022-03-01"


def test_comma_and_point_do_not_mix_in_a_semicolon_file(tmp_path: Path, q: Questionnaire) -> None:
    text = "sid;income\nr1;1,5\nr2;1.234\nr3;2\n"
    problems: list = []
    out = read(write_bytes(tmp_path, text.encode()), q, missing_columns="null", problems=problems)
    assert out["income"].to_list() == [1.5, None, 2.0]
    assert [(p.row, p.column, p.value) for p in problems] == [(2, "income", "1.234")]
    assert "writes decimals with a comma" in problems[0].message


def test_decimal_comma_only_with_semicolons(tmp_path: Path, q: Questionnaire) -> None:
    text = 'sid,income\nr1,"1,5"\n'
    problems: list = []
    read(write_bytes(tmp_path, text.encode()), q, missing_columns="null", problems=problems)
    assert [(p.row, p.column, p.value, p.rule) for p in problems] == [
        (1, "income", "1,5", "invalid_value")
    ]


def test_ambiguous_delimiter(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, b"a,b;c\n1,2;3\n")
    assert error_of(path) == (
        f"{path}: line 1: cannot tell the delimiter, the header has as many ',' and ';'; "
        "use one delimiter"
    )


def test_line_with_too_few_fields(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, b"sid,age,comment\nr1,34,ok\nr2,28\nr3,40,\n")
    assert error_of(path) == (
        f"{path}: line 3 has 2 fields, the header has 3; every line needs one field per "
        "column (look for a missing or unquoted ',')"
    )


def test_line_with_too_many_fields(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, b"sid,age,comment\nr1,34,ok\nr2,28,Moscow, Russia\n")
    assert error_of(path).startswith(f"{path}: line 3 has 4 fields, the header has 3;")


def test_ragged_line_after_a_multiline_field(tmp_path: Path) -> None:
    data = b'sid,age,comment\nr1,34,"two\nlines"\nr2,28\n'
    path = write_bytes(tmp_path, data)
    assert error_of(path).startswith(f"{path}: line 4 has 2 fields, the header has 3;")


def test_unclosed_quote(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, b'sid,comment\nr1,"never closed\nr2,x\n')
    assert error_of(path) == f"{path}: line 2: a quoted field is never closed (missing '\"')"


def test_quoted_fields_with_newlines_quotes_and_delimiters(tmp_path: Path) -> None:
    data = b'sid,comment\r\nr1,"He said ""no"",\r\nthen left"\r\nr2,plain\r\n'
    raw = read_raw(write_bytes(tmp_path, data))
    assert raw.frame.rows() == [("r1", 'He said "no",\r\nthen left'), ("r2", "plain")]


def test_blank_lines_are_skipped_in_multicolumn_files(tmp_path: Path) -> None:
    raw = read_raw(write_bytes(tmp_path, b"sid,age\n\nr1,34\n\r\nr2,28\n\n\n"))
    assert raw.frame.rows() == [("r1", "34"), ("r2", "28")]


def test_blank_lines_are_empty_answers_in_one_column_files(tmp_path: Path) -> None:
    raw = read_raw(write_bytes(tmp_path, b"sid\nr1\n\nr3\n"))
    assert raw.frame.rows() == [("r1",), (None,), ("r3",)]


def test_old_mac_line_endings(tmp_path: Path) -> None:
    raw = read_raw(write_bytes(tmp_path, b"sid,age\rr1,34\rr2,28\r"))
    assert raw.frame.rows() == [("r1", "34"), ("r2", "28")]


def test_duplicate_column_names(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, b"sid,age,comment, age\nr1,1,x,2\n")
    assert error_of(path) == (
        f"{path}: column name 'age' appears 2 times (columns 2, 4); rename or remove the copies"
    )


def test_unnamed_columns(tmp_path: Path) -> None:
    # An unnamed, empty trailing column (Excel leaves them) is dropped...
    raw = read_raw(write_bytes(tmp_path, b"sid,age,\nr1,34,\nr2,28,\n"))
    assert raw.frame.columns == ["sid", "age"]
    # ...but an unnamed column with data is refused: nobody knows what it means.
    path = write_bytes(tmp_path, b"sid,,age\nr1,x,34\n")
    assert error_of(path) == (
        f"{path}: column 2 has no name in the header but holds data (first in row 1); "
        "give it a name or delete it"
    )


def test_header_names_are_stripped(tmp_path: Path) -> None:
    raw = read_raw(write_bytes(tmp_path, b" sid , age \nr1,34\n"))
    assert raw.frame.columns == ["sid", "age"]


def test_cells_are_text_and_na_is_not_missing(tmp_path: Path) -> None:
    raw = read_raw(write_bytes(tmp_path, b'sid,comment\nNA,NULL\n007,""\n'))
    assert raw.frame.rows() == [("NA", "NULL"), ("007", "")]


def test_format_override_and_tsv(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, b"sid\tage\nr1\t34\n", "export.dat")
    assert read_raw(path, format="csv").frame.rows() == [("r1", "34")]
    tsv = write_bytes(tmp_path, b"sid\tage\nr1\t34\n", "export.tsv")
    assert read_raw(tsv).delimiter == "\t"


def test_large_file_reads_every_row(tmp_path: Path, q: Questionnaire) -> None:
    rows = [f'r{i},{18 + i % 70},{i % 3}.5,"line {i}, with comma"' for i in range(50_000)]
    text = "sid,age,income,comment\n" + "\n".join(rows) + "\n"
    out = read(write_bytes(tmp_path, text.encode()), q, missing_columns="null")
    assert out.height == 50_000
    assert out["age"].sum() == sum(18 + i % 70 for i in range(50_000))
    assert out["comment"][49_999] == "line 49999, with comma"
