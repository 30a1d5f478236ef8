"""The `volna` command: exit statuses, one-line errors, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEADER = (
    "rid,left,country,left_on,age,income,sector,sector_other,"
    "fears/persecution,fears/conscription,fears/none,living"
)
CLEAN_ROWS = [
    "r1,yes,GE,2022-03-01,30,1000,it,,1,1,0,1",
    "r2,yes,TR,,70,,,,0,0,1,dk",
    "r3,no,,,45,0,other,логистика,,,,",
    "r4,yes,AM,2022-09-25,25,2.5,it,,0,0,0,2",
]
# One broken rule per row, each in a different way, plus one unreadable value.
BROKEN_ROWS = [
    "b1,yes,GE,2022-03-01,30,1000,it,,1,1,0,7",  # unknown_code (living)
    "b2,yes,TR,,17,,it,,0,0,1,dk",  # out_of_range (age)
    "b3,yes,,,45,0,it,,0,0,0,1",  # required_missing (country)
    "b4,no,DE,,45,0,it,,0,0,0,1",  # not_relevant (country)
    "b5,yes,AM,,25,2.5,it,,1,0,1,2",  # exclusive_conflict (fears/none)
    "b6,yes,AM,,50,2.5,it,,0,0,0,2",  # constraint_failed (age)
    "b7,yes,AM,,25,2.5,it,science,0,0,0,2",  # other_without_choice
    "b8,yes,AM,,abc,2.5,,,0,0,0,2",  # invalid_value (age)
]
EXPECTED = {
    (5, "living", "unknown_code"),
    (6, "age", "out_of_range"),
    (7, "country", "required_missing"),
    (8, "country", "not_relevant"),
    (9, "fears/none", "exclusive_conflict"),
    (10, "age", "constraint_failed"),
    (11, "sector_other", "other_without_choice"),
    (12, "age", "invalid_value"),
}


def volna(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "volna.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def questionnaire() -> Path:
    return Path(__file__).parent / "fixtures" / "rules.yaml"


def write_csv(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_validate_clean_file_exits_zero(tmp_path: Path, questionnaire: Path) -> None:
    data = write_csv(tmp_path / "clean.csv", CLEAN_ROWS)
    done = volna("validate", questionnaire, data)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 rows, no problems" in done.stdout


def test_validate_reports_exactly_the_injected_errors(tmp_path: Path, questionnaire: Path) -> None:
    data = write_csv(tmp_path / "broken.csv", CLEAN_ROWS + BROKEN_ROWS)
    done = volna("validate", questionnaire, data, "--format", "json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert {(p["row"], p["column"], p["rule"]) for p in report["problems"]} == EXPECTED
    assert report["counts"] == {rule: 1 for _, _, rule in EXPECTED}
    assert report["rows"] == 12
    text = volna("validate", questionnaire, data)
    assert text.returncode == 1
    assert "row 6, column age: '17': below the minimum 18 [out_of_range]" in text.stdout
    assert "row 12, column age: 'abc'" in text.stdout


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode not in (0, 1), done.stdout
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("volna: error: ")
    return lines[0]


def test_bad_files_give_one_clear_line(tmp_path: Path, questionnaire: Path) -> None:
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(bytes(range(256)) * 40)
    assert "garbage.csv" in one_line_error(volna("validate", questionnaire, garbage))

    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert "empty.csv" in one_line_error(volna("validate", questionnaire, empty))

    dupes = write_csv(tmp_path / "dupes.csv", CLEAN_ROWS[:1], header=HEADER + ",age")
    dupes.write_text(
        HEADER + ",age\n" + CLEAN_ROWS[0] + ",31\n", encoding="utf-8"
    )  # two 'age' columns
    line = one_line_error(volna("validate", questionnaire, dupes))
    assert "dupes.csv" in line and "age" in line

    unknown = tmp_path / "unknown.csv"
    unknown.write_text(HEADER + ",shoe_size\n" + CLEAN_ROWS[0] + ",44\n", encoding="utf-8")
    line = one_line_error(volna("validate", questionnaire, unknown))
    assert "unknown.csv" in line and "shoe_size" in line

    real_xlsx = tmp_path / "real.xlsx"
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(HEADER.split(","))
    book.save(real_xlsx)
    truncated = tmp_path / "truncated.xlsx"
    truncated.write_bytes(real_xlsx.read_bytes()[:500])
    assert "truncated.xlsx" in one_line_error(volna("validate", questionnaire, truncated))

    assert "missing.csv" in one_line_error(
        volna("validate", questionnaire, tmp_path / "missing.csv")
    )


def test_bad_questionnaire_gives_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nquestions:\n  - {name: a, type: singel}\n", encoding="utf-8")
    line = one_line_error(volna("questionnaire", "check", bad))
    assert "bad.yaml:3" in line and "singel" in line


def test_questionnaire_check_prints_outline(questionnaire: Path) -> None:
    done = volna("questionnaire", "check", questionnaire)
    assert done.returncode == 0, done.stderr
    assert "multi-response sets" in done.stdout


def test_questionnaire_import_export_round_trip(tmp_path: Path, questionnaire: Path) -> None:
    form = tmp_path / "form.xlsx"
    done = volna("questionnaire", "export", questionnaire, "-o", form)
    assert done.returncode == 0, done.stderr
    back = tmp_path / "back.yaml"
    done = volna("questionnaire", "import", form, "-o", back)
    assert done.returncode == 0, done.stderr
    from volna import Questionnaire

    assert Questionnaire.load(back) == Questionnaire.load(questionnaire)


def test_unsupported_xlsform_is_refused_in_one_line(tmp_path: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    survey = book.active
    survey.title = "survey"
    survey.append(["type", "name", "label"])
    survey.append(["text", "name_q", "Your town"])
    survey.append(["geopoint", "where", "Where are you?"])
    form = tmp_path / "geo.xlsx"
    book.save(form)
    line = one_line_error(volna("questionnaire", "import", form, "-o", tmp_path / "q.yaml"))
    assert "geo.xlsx" in line and "row 3" in line and "geopoint" in line
    assert not (tmp_path / "q.yaml").exists()


def test_convert_writes_every_format_and_reads_back(tmp_path: Path, questionnaire: Path) -> None:
    from volna import Questionnaire, read

    data = write_csv(tmp_path / "clean.csv", CLEAN_ROWS)
    q = Questionnaire.load(questionnaire)
    original = read(data, q)
    for suffix in ("parquet", "xlsx", "sav", "dta", "csv"):
        target = tmp_path / f"converted.{suffix}"
        done = volna("convert", questionnaire, data, "-o", target)
        assert done.returncode == 0, done.stderr
        assert read(target, q).equals(original), suffix


def test_example_writes_data_that_validates(tmp_path: Path) -> None:
    target = tmp_path / "ex" / "data.csv"
    done = volna("example", "okrussians", "--n", "300", "--seed", "3", "-o", target)
    assert done.returncode == 0, done.stderr
    assert "synthetic" in done.stdout
    assert (tmp_path / "ex" / "data.answer_key.csv").exists()
    from volna import example_path

    done = volna("validate", example_path("okrussians", "questionnaire.yaml"), target)
    assert done.returncode == 0, done.stdout
    assert "300 rows, no problems" in done.stdout
