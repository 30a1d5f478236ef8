"""The `volna` command on adversarial input: one line in the command line's words.

Every error names options a user can type (never ``name='value'`` Python
arguments), exits non-zero, and never prints what a data file holds.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from volna import example_path

QUESTIONNAIRE = example_path("okrussians", "questionnaire.yaml")
MARGINS = example_path("okrussians", "margins.yaml")
# Python argument syntax: unknown_columns='drop', format=..., collapse={...}
PYTHON_ARGUMENT = re.compile(r"\b[a-z_]+=(['\"{(\[]|\.\.\.|\s|$)")
SECRET = "Zhukovskaya-7734"  # a respondent's answer that must never reach a terminal


def volna(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "volna.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def error_line(done: subprocess.CompletedProcess) -> str:
    """The one line of a user error, checked for everything every error must be."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    line = lines[0]
    assert line.startswith("volna: error: ")
    assert not PYTHON_ARGUMENT.search(line), line
    assert " pass " not in line, line
    assert SECRET not in done.stderr + done.stdout
    return line


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    target = folder / "data.csv"
    done = volna("example", "okrussians", "--n", "120", "--seed", "2", "-o", target)
    assert done.returncode == 0, done.stderr
    # one free-text answer carries the secret: no error may print it
    text = target.read_text(encoding="utf-8").splitlines()
    rows = [*text, ",".join([f"r{SECRET}", *text[1].split(",")[1:]])]
    target.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def header_only(data: Path) -> Path:
    path = data.parent / "header.csv"
    path.write_text(data.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    return path


def test_version_prints_the_package_version() -> None:
    from importlib.metadata import version

    done = volna("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"volna {version('volna')}"
    assert done.stdout.strip() == "volna 0.1.0"


def test_release_with_a_key_variable_named_twice(data: Path, tmp_path: Path) -> None:
    line = error_line(
        volna("release", QUESTIONNAIRE, data, "--quasi", "age,age,gender", "-o", tmp_path / "r")
    )
    assert "--quasi" in line and "age is named twice" in line
    assert not (tmp_path / "r").exists()


def test_commands_on_a_header_without_rows(header_only: Path, tmp_path: Path) -> None:
    for args in (
        ("release", QUESTIONNAIRE, header_only, "--quasi", "age,gender", "-o", tmp_path / "r"),
        ("screen", QUESTIONNAIRE, header_only),
        ("weight", header_only, "--margins", MARGINS),
        ("report", QUESTIONNAIRE, header_only, "-o", tmp_path / "rep", "--format", "md"),
    ):
        line = error_line(volna(*args))
        assert "header.csv" in line and "no respondents" in line, args


def test_unknown_column_names_the_option(data: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra.csv"
    lines = data.read_text(encoding="utf-8").splitlines()
    extra.write_text(
        "\n".join([lines[0] + ",shoe_size", *(r + ",44" for r in lines[1:])]) + "\n",
        encoding="utf-8",
    )
    for command in ("validate", "summary", "screen", "convert"):
        args = ["-o", tmp_path / "out.parquet"] if command == "convert" else []
        line = error_line(volna(command, QUESTIONNAIRE, extra, *args))
        assert "column 'shoe_size' is not in the questionnaire" in line
        assert line.endswith("remove it or use --unknown-columns drop"), line
    done = volna("validate", QUESTIONNAIRE, extra, "--unknown-columns", "drop")
    assert done.returncode == 0, done.stdout + done.stderr


def test_missing_column_names_the_option(data: Path, tmp_path: Path) -> None:
    import polars as pl

    lacking = tmp_path / "lacking.csv"
    pl.read_csv(data, infer_schema_length=0).drop("destination").write_csv(lacking)
    line = error_line(volna("validate", QUESTIONNAIRE, lacking))
    assert "no column for destination" in line
    assert line.endswith("add it or use --missing-columns null"), line
    done = volna("summary", QUESTIONNAIRE, lacking, "--missing-columns", "null")
    assert done.returncode == 0, done.stderr


def test_paradata_may_be_absent_unless_required(data: Path, tmp_path: Path) -> None:
    import polars as pl

    no_paradata = tmp_path / "no_paradata.csv"
    pl.read_csv(data, infer_schema_length=0).drop("duration_sec").write_csv(no_paradata)
    done = volna("validate", QUESTIONNAIRE, no_paradata)
    assert done.returncode == 0, done.stdout + done.stderr

    strict = tmp_path / "strict.yaml"
    text = QUESTIONNAIRE.read_text(encoding="utf-8")
    text = text.replace("  - name: duration_sec\n", "  - name: duration_sec\n    required: true\n")
    strict.write_text(text, encoding="utf-8")
    line = error_line(volna("validate", strict, no_paradata))
    assert "no column for duration_sec" in line


def test_unknown_extension_names_the_data_format_option(data: Path, tmp_path: Path) -> None:
    odd = tmp_path / "responses.dat"
    odd.write_bytes(data.read_bytes())
    for args in (
        ("validate", QUESTIONNAIRE, odd),
        ("summary", QUESTIONNAIRE, odd),
        ("screen", QUESTIONNAIRE, odd),
        ("convert", QUESTIONNAIRE, odd, "-o", tmp_path / "out.csv"),
        ("weight", odd, "--margins", MARGINS),
        ("release", QUESTIONNAIRE, odd, "--quasi", "age", "-o", tmp_path / "r"),
        ("report", QUESTIONNAIRE, odd, "-o", tmp_path / "rep", "--format", "md"),
    ):
        line = error_line(volna(*args))
        assert "responses.dat" in line and "cannot tell the format" in line, args
        assert line.endswith("or use --data-format csv|xlsx|parquet|sav|dta"), line
    done = volna("validate", QUESTIONNAIRE, odd, "--data-format", "csv")
    assert done.returncode in (0, 1), done.stderr
    assert "121 rows" in done.stdout


def test_every_data_command_has_the_data_options() -> None:
    import typer

    from volna.cli import app
    from volna.cli_options import DATA_OPTIONS

    group = typer.main.get_command(app)
    for name in ("validate", "summary", "screen", "convert", "weight", "report", "release"):
        options = {o for p in group.commands[name].params for o in getattr(p, "opts", [])}
        assert set(DATA_OPTIONS) <= options, name


def test_a_data_file_given_as_questionnaire_is_not_printed(data: Path, tmp_path: Path) -> None:
    for args in (
        ("questionnaire", "check", data),
        ("validate", data, data),
        ("weight", data, "--margins", data),
        ("screen", QUESTIONNAIRE, data, "--rules", data),
        ("report", QUESTIONNAIRE, data, "--config", data, "-o", tmp_path / "rep"),
    ):
        line = error_line(volna(*args))
        assert "is it the right file?" in line, args
        assert "respondent_id" not in line and len(line) < 300, line


def test_language_is_case_blind_and_checked(data: Path, tmp_path: Path) -> None:
    upper = volna("summary", QUESTIONNAIRE, data, "--lang", "EN")
    lower = volna("summary", QUESTIONNAIRE, data, "--lang", "en")
    assert upper.returncode == 0, upper.stderr
    # the same English labels (ties in the counts may be listed in either order)
    assert upper.stdout.splitlines()[0] == lower.stdout.splitlines()[0]
    assert upper.stdout.startswith("The new emigration")
    for args in (
        ("summary", QUESTIONNAIRE, data, "--lang", "de"),
        ("convert", QUESTIONNAIRE, data, "-o", tmp_path / "x.sav", "--lang", "de"),
        ("report", QUESTIONNAIRE, data, "-o", tmp_path / "rep", "--lang", "de"),
    ):
        line = error_line(volna(*args))
        assert "--lang de: the questionnaire has labels in ru, en" in line, args


def test_margin_errors_name_the_weight_options(tmp_path: Path) -> None:
    data = tmp_path / "w.csv"
    data.write_text("id,sex\n1,f\n2,m\n3,x\n4,f\n", encoding="utf-8")
    margins = tmp_path / "m.yaml"
    margins.write_text(
        "margins:\n  - name: sex\n    variables: [sex]\n    type: shares\n"
        "    targets: {f: 0.5, m: 0.5}\n    reference_date: '2021-10'\n"
        "    source: {title: Census, publisher: Statistics office}\n",
        encoding="utf-8",
    )
    line = error_line(volna("weight", data, "--margins", margins))
    assert "data level x (1 rows) of sex has no target" in line
    assert line.endswith("or merge the levels: use --collapse sex:x=<a target level>"), line

    data.write_text("id,sex\n1,f\n2,m\n3,\n4,f\n", encoding="utf-8")
    line = error_line(volna("weight", data, "--margins", margins))
    assert "rows 3 have no value for sex" in line
    assert line.endswith(
        "fill them, or use --missing exclude to leave those respondents out of this margin"
    ), line


def test_adversarial_files_give_one_line(tmp_path: Path, data: Path) -> None:
    junk = tmp_path / "junk.xlsx"
    junk.write_bytes(bytes(range(256)) * 8)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"id: x\nquestions: []\n# " + "é".encode("latin-1"))
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    cases = [
        (("questionnaire", "check", junk), "junk.xlsx"),
        (("questionnaire", "check", latin), "not UTF-8"),
        (("questionnaire", "check", tmp_path / "none.yaml"), "none.yaml"),
        (("validate", QUESTIONNAIRE, junk), "junk.xlsx"),
        (("validate", QUESTIONNAIRE, folder), "folder.csv"),
        (("questionnaire", "import", QUESTIONNAIRE, "-o", tmp_path / "q.csv"), "q.csv"),
        (("convert", QUESTIONNAIRE, data, "-o", tmp_path / "no" / "x.csv"), "does not exist"),
        (("screen", QUESTIONNAIRE, data, "--compare", "age,age"), "age is given twice"),
        (("weight", data, "--margins", MARGINS, "--weights", "nosuch"), "--weights nosuch"),
    ]
    for args, said in cases:
        assert said in error_line(volna(*args)), args


def test_unwritable_output_is_one_line(data: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x", encoding="utf-8")
    for args in (
        ("convert", QUESTIONNAIRE, data, "-o", blocker / "x.csv"),
        ("questionnaire", "export", QUESTIONNAIRE, "-o", blocker / "f.xlsx"),
        ("release", QUESTIONNAIRE, data, "--quasi", "age", "-o", blocker / "r"),
        ("report", QUESTIONNAIRE, data, "-o", blocker / "rep", "--format", "md"),
        ("example", "okrussians", "--n", "5", "-o", blocker / "sub" / "x.csv"),
    ):
        assert "a_file" in error_line(volna(*args)), args
