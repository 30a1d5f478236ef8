"""`volna weight`: margins met in the written file, diagnostics, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

MARGINS = """\
margins:
  - name: sex_census
    variables: [sex]
    type: counts
    targets: {f: 600, m: 400}
    total: 1000
    reference_date: "2021-10"
    source: {title: Census, publisher: Statistics office}
  - name: age_shares
    variables: [age_group]
    derived:
      age_group:
        from: age
        bins: {young: [18, 34], old: [35, null]}
    type: shares
    targets: {young: 30, old: 70}
    reference_date: "2021-10"
    source: {title: Census, publisher: Statistics office}
  - name: region
    variables: [region]
    type: counts
    targets: {north: 500, south: 300, east: 200}
    reference_date: "2021-10"
    source: {title: Register, publisher: Statistics office}
"""

QUESTIONNAIRE = """\
id: small
questions:
  - {name: sex, type: single, choices: [{code: f}, {code: m}]}
  - {name: age, type: integer}
  - {name: region, type: single, choices: [{code: north}, {code: south}, {code: east}]}
  - {name: vote, type: single, choices: [{code: a}, {code: b}]}
"""

ROWS = [
    ("f", 20, "north", "a", 1.0),
    ("f", 45, "south", "b", 2.0),
    ("m", 30, "north", "a", 1.0),
    ("m", 50, "north", "b", 1.5),
    ("m", 25, "south", "a", 1.0),
    ("f", 60, "north", "b", 1.0),
    ("m", 41, "south", "a", 3.0),
    ("f", 33, "north", "b", 1.0),
]


def volna(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "volna.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    data = tmp_path / "data.csv"
    lines = ["sex,age,region,vote,pw"] + [",".join(map(str, r)) for r in ROWS]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    margins = tmp_path / "margins.yaml"
    margins.write_text(MARGINS, encoding="utf-8")
    questionnaire = tmp_path / "q.yaml"
    questionnaire.write_text(QUESTIONNAIRE, encoding="utf-8")
    return {"data": data, "margins": margins, "q": questionnaire, "dir": tmp_path}


def totals(frame: pl.DataFrame, by: pl.Expr, weight: str = "weight") -> dict[str, float]:
    return dict(frame.group_by(by.alias("k")).agg(pl.col(weight).sum()).rows())


def test_weight_writes_weights_that_meet_the_margins(files: dict[str, Path]) -> None:
    out = files["dir"] / "weighted.csv"
    done = volna(
        "weight",
        files["data"],
        "--margins",
        files["margins"],
        "--use",
        "sex_census,age_shares",
        "--weights",
        "pw",
        "--out",
        out,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rake: converged" in done.stdout
    assert "largest margin error" in done.stdout
    frame = pl.read_csv(out)
    assert frame.columns == ["sex", "age", "region", "vote", "pw", "weight"]
    assert frame.height == len(ROWS)
    by_sex = totals(frame, pl.col("sex"))
    assert by_sex["f"] == pytest.approx(600, rel=1e-8)
    assert by_sex["m"] == pytest.approx(400, rel=1e-8)
    by_age = totals(
        frame, pl.when(pl.col("age") <= 34).then(pl.lit("young")).otherwise(pl.lit("old"))
    )
    assert by_age["young"] == pytest.approx(300, rel=1e-8)
    assert by_age["old"] == pytest.approx(700, rel=1e-8)
    # the sampling weights were the starting point: rows alike but for pw differ
    assert frame["weight"].min() > 0


def test_weight_with_a_questionnaire_report_and_compare(files: dict[str, Path]) -> None:
    out = files["dir"] / "weighted.parquet"
    done = volna(
        "weight",
        files["data"],
        "--questionnaire",
        files["q"],
        "--margins",
        files["margins"],
        "--use",
        "sex_census,region",
        "--weight-column",
        "w_final",
        "--report",
        "--compare",
        "vote=a,sex",
        "--collapse",
        "region:east=south",  # nobody lives in the east
        "--out",
        out,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for words in [
        "Weighting report: 8 respondents",
        "Kish design effect",
        "effective sample size",
        "top 5% (1 respondent)",
        "sex_census",
        "region",
        "Estimates before and after weighting",
    ]:
        assert words in done.stdout, words
    frame = pl.read_parquet(out)
    assert frame.schema["age"] == pl.Int64  # typed by the questionnaire
    assert totals(frame, pl.col("region"), "w_final") == pytest.approx(
        {"north": 500, "south": 500}, rel=1e-8
    )


def test_poststratify_and_trim(files: dict[str, Path]) -> None:
    out = files["dir"] / "weighted.csv"
    done = volna(
        "weight",
        files["data"],
        "--margins",
        files["margins"],
        "--use",
        "sex_census",
        "--method",
        "poststratify",
        "--trim-upper",
        "1.5",
        "--out",
        out,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "poststratify: converged" in done.stdout and "trim: converged" in done.stdout
    frame = pl.read_csv(out)
    assert frame["weight"].max() <= 1.5 * frame["weight"].mean() + 1e-9
    assert totals(frame, pl.col("sex"))["f"] == pytest.approx(600, rel=1e-8)


def test_collapse_merges_a_level_without_respondents(files: dict[str, Path]) -> None:
    args = ["weight", files["data"], "--margins", files["margins"], "--use", "region"]
    done = volna(*args)
    assert done.returncode == 2
    assert "target level east of region has no respondent" in done.stderr
    out = files["dir"] / "w.csv"
    done = volna(*args, "--collapse", "region:east=south", "--out", out)
    assert done.returncode == 0, done.stderr
    assert totals(pl.read_csv(out), pl.col("region")) == pytest.approx(
        {"north": 500, "south": 500}, rel=1e-8
    )


@pytest.mark.parametrize(
    ("extra", "rows", "message"),
    [
        ([], [("x", 30, "north", "a", 1.0)], "data level x (1 rows) of sex has no target"),
        ([], [("f", 30, "north", "a", "heavy")], "row 9, column pw: 'heavy' is not a number"),
        (["--use", "sex"], [], "no margin named 'sex'; the margins are: sex_census"),
        (["--weight-column", "pw"], [], "column pw already exists"),
        (["--collapse", "region-east"], [], "expected variable:level=into_level"),
    ],
)
def test_errors_are_one_line_exit_2(
    files: dict[str, Path], extra: list[str], rows: list[tuple], message: str
) -> None:
    if rows:
        with files["data"].open("a", encoding="utf-8") as f:
            f.writelines(",".join(map(str, r)) + "\n" for r in rows)
    done = volna(
        "weight",
        files["data"],
        "--margins",
        files["margins"],
        "--weights",
        "pw",
        *(extra or ["--use", "sex_census,age_shares"]),
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("volna: error: ")
    assert message in lines[0]
    assert "Traceback" not in done.stderr


def test_broken_margins_file_names_the_line(files: dict[str, Path]) -> None:
    files["margins"].write_text(MARGINS.replace("m: 400}", "m: many}"), encoding="utf-8")
    done = volna("weight", files["data"], "--margins", files["margins"])
    assert done.returncode == 2
    assert f"{files['margins']}:5: margin sex_census: targets.m: expected a number" in done.stderr


def test_screening_first_weights_only_the_kept(tmp_path: Path) -> None:
    from volna.examples import example_path

    data = tmp_path / "ok.csv"
    assert volna("example", "okrussians", "--n", "2000", "--seed", "1", "-o", data).returncode == 0
    q = example_path("okrussians", "questionnaire.yaml")
    out = tmp_path / "weighted.csv"
    res = volna(
        "weight", data, "-q", q,
        "--margins", example_path("okrussians", "margins.yaml"),
        "--use", "destination_bell_2024",
        "--screening", example_path("okrussians", "screening.yaml"),
        "--out", out,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "excluded 62 of 2000" in res.stdout
    written = pl.read_csv(out, infer_schema_length=0)
    assert written.height == 1938
    assert sum(float(w) for w in written["weight"]) == pytest.approx(650_000, rel=1e-9)
    res = volna(
        "weight", data, "--margins", example_path("okrussians", "margins.yaml"),
        "--use", "destination_bell_2024",
        "--screening", example_path("okrussians", "screening.yaml"),
    )  # fmt: skip
    assert res.returncode == 2 and "needs --questionnaire" in res.stderr
