"""Safe microdata release: risk, protection, refusal, the command end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from volna import Questionnaire
from volna.examples import example_path
from volna.release.protect import ReleaseError, ReleaseRefused, release
from volna.release.risk import individual_risk, measure, wildcard_frequencies

QUESTIONNAIRE = """
id: demo
languages: [ru, en]
paradata:
  - {name: rid, type: id}
  - {name: took, type: duration}
questions:
  - {name: age, type: integer, label: {ru: Возраст, en: Age}, min: 18, max: 90}
  - name: gender
    type: single
    choices: [{code: f}, {code: m}, {code: other}]
  - {name: country, type: country}
  - name: vote
    type: single
    choices: [{code: a}, {code: b}, {code: c}]
  - {name: note, type: text}
"""


def _demo(n: int = 400, seed: int = 0) -> tuple[pl.DataFrame, Questionnaire]:
    rng = np.random.default_rng(seed)
    q = Questionnaire.loads(QUESTIONNAIRE)
    frame = pl.DataFrame(
        {
            "rid": [f"r{i}" for i in range(n)],
            "took": rng.uniform(100, 900, n),
            "age": rng.integers(18, 70, n),
            "gender": rng.choice(["f", "m"], n),
            "country": rng.choice(["GE", "AM", "TR", "RS"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "vote": rng.choice(["a", "b", "c"], n),
            "note": [None] * n,
        }
    )
    return frame, q


def _min_group(frame: pl.DataFrame, keys: list[str]) -> int:
    # the independent check: a plain group-by, a blank cell being a category of its own
    return int(frame.group_by(keys).len().get_column("len").min())


def test_planted_unique_respondents_are_caught_and_protected():
    frame, q = _demo()
    planted = pl.DataFrame(
        {
            "rid": ["p1", "p2"],
            "took": [300.0, 400.0],
            "age": [89, 19],
            "gender": ["other", "other"],
            "country": ["ME", "IL"],
            "vote": ["a", "b"],
            "note": [None, None],
        }
    )
    frame = pl.concat([frame, planted])
    keys = ["age", "gender", "country"]
    before = measure(frame, keys, k=5)
    # both planted respondents are sample uniques, each an expected re-identification
    f = frame.group_by(keys).len()
    for age, country in ((89, "ME"), (19, "IL")):
        row = f.filter((pl.col("age") == age) & (pl.col("country") == country))
        assert row.get_column("len").to_list() == [1]
    assert before.violations[2] >= 2
    out = release(frame, q, quasi=keys, k=5, seed=1, redact=False)
    assert _min_group(out.data, keys) >= 5
    # their rare values are gone: no released row shows them
    assert not out.data.get_column("country").is_in(["ME", "IL"]).any()
    assert "89" not in out.data.get_column("age").cast(pl.String).to_list()
    assert out.report["risk_after"]["violations"]["5"] == 0
    assert out.report["risk_before"]["violations"]["5"] > 0


def test_paradata_removed_rows_shuffled_and_questionnaire_describes_release(tmp_path):
    frame, q = _demo()
    out = release(frame, q, quasi=["age", "gender", "country"], k=5, seed=7)
    assert "rid" not in out.data.columns and "took" not in out.data.columns
    assert out.report["removed"]["paradata"] == ["rid", "took"]
    # the same seed gives the same file, another seed another order
    again = release(frame, q, quasi=["age", "gender", "country"], k=5, seed=7)
    other = release(frame, q, quasi=["age", "gender", "country"], k=5, seed=8)
    assert again.data.equals(out.data)
    assert not other.data.equals(out.data)
    assert sorted(other.data.rows(), key=str) == sorted(out.data.rows(), key=str)
    # banded age is a single choice in the released questionnaire, and the file reads back
    assert out.questionnaire["age"].type == "single"
    assert not out.questionnaire.paradata
    written = out.write(tmp_path / "rel")
    names = {p.name for p in written}
    assert names == {
        "data.parquet",
        "questionnaire.yaml",
        "codebook.md",
        "codebook.csv",
        "report.html",
        "report.json",
    }
    from volna.io import read

    released_q = Questionnaire.load(tmp_path / "rel" / "questionnaire.yaml")
    back = read(tmp_path / "rel" / "data.parquet", released_q)
    assert back.height == frame.height
    codebook = pl.read_csv(tmp_path / "rel" / "codebook.csv")
    age = codebook.filter(pl.col("variable") == "age").row(0, named=True)
    assert age["label_en"] == "Age" and "18-24" in age["recode"]


def test_keep_names_a_paradata_column_and_the_report_says_so():
    frame, q = _demo()
    out = release(frame, q, quasi=["age", "gender"], k=5, keep=["took"], seed=1)
    assert "took" in out.data.columns and "rid" not in out.data.columns
    assert out.report["removed"]["kept_paradata"] == ["took"]
    rule = next(r for r in out.report["rules"] if r["rule"].startswith("paradata"))
    assert rule["held"] is False


def test_the_recruitment_channel_leaves_unless_kept():
    frame, q = _demo()
    q = Questionnaire.loads(
        QUESTIONNAIRE
        + "  - {name: heard, type: single, recruitment: true,\n"
        + "     choices: [{code: tg}, {code: chat}]}\n"
    )
    frame = frame.with_columns(heard=pl.Series(["tg", "chat"] * (frame.height // 2)))
    out = release(frame, q, quasi=["age", "gender"], k=5, seed=1, redact=False)
    assert "heard" not in out.data.columns and "heard" in out.report["removed"]["dropped"]
    kept = release(frame, q, quasi=["age", "gender"], k=5, keep=["heard"], seed=1, redact=False)
    assert "heard" in kept.data.columns


def test_l_diversity_enforced_checked_independently():
    frame, q = _demo(300)
    # a small group that answers all alike: 30-year-old women in Serbia all vote "c"
    frame = frame.with_columns(
        pl.when((pl.col("country") == "RS") & (pl.col("gender") == "f"))
        .then(pl.lit("c"))
        .otherwise(pl.col("vote"))
        .alias("vote")
    )
    keys = ["age", "gender", "country"]
    out = release(frame, q, quasi=keys, sensitive=["vote"], k=3, l=2, seed=2, redact=False)
    groups = out.data.group_by(keys).agg(
        n=pl.len(), distinct=pl.col("vote").drop_nulls().n_unique()
    )
    assert groups.get_column("n").min() >= 3
    assert groups.get_column("distinct").min() >= 2


def test_refuses_when_k_is_not_reached_and_names_the_combinations(tmp_path):
    frame, q = _demo(60)
    with pytest.raises(ReleaseRefused) as caught:
        release(frame, q, quasi=["age", "gender", "country"], k=5, suppress=False, rare=1)
    message = str(caught.value)
    assert "refusing" in message and "k=5" in message
    assert "key combination(s) fail" in message and "age=" in message
    assert "\n" not in message


def test_unknown_quasi_is_one_line_naming_it():
    frame, q = _demo(20)
    with pytest.raises(ReleaseError, match=r"--quasi: no column 'gendr'.*did you mean gender"):
        release(frame, q, quasi=["age", "gendr"])
    with pytest.raises(ReleaseError, match="free text"):
        release(frame, q, quasi=["note"])
    with pytest.raises(ReleaseError, match="paradata"):
        release(frame, q, quasi=["took"])
    with pytest.raises(ReleaseError, match="k of at least 2"):
        release(frame, q, quasi=["age"], k=1)


def test_weighted_individual_risk_matches_sdcmicro_formula():
    # sdcMicro measure_risk: p = f/F - 1e-4; f=1: p/(1-p) log(1/p); f=2: p/(1-p) -
    # (p/(1-p))^2 log(1/p); f>2: p/(f - (1-p)). Values worked out by hand:
    # f=1, F=10 -> p=0.0999: 0.0999/0.9001 * ln(1/0.0999) = 0.25567
    # f=2, F=20 -> p=0.0999: 0.110990 - 0.012319 * 2.30359 = 0.08261
    # f=4, F=40 -> p=0.0999: 0.0999 / 3.0999 = 0.032227
    risk = individual_risk(np.array([1, 2, 4]), np.array([10.0, 20.0, 40.0]))
    assert risk == pytest.approx([0.25567, 0.08261, 0.032227], abs=2e-5)
    assert individual_risk(np.array([1, 2, 5])) == pytest.approx([1.0, 0.5, 0.2])


def test_wildcard_frequencies_against_brute_force():
    rng = np.random.default_rng(3)
    n = 200
    frame = pl.DataFrame(
        {
            "a": rng.choice(["x", "y", "z"], n).tolist(),
            "b": rng.choice(["u", "v", None], n).tolist(),
            "c": rng.choice(["1", "2", "3", "4"], n).tolist(),
        }
    )
    mask = pl.DataFrame({v: rng.random(n) < 0.15 for v in ["a", "b", "c"]})
    f, _ = wildcard_frequencies(frame, ["a", "b", "c"], mask)
    rows = frame.rows()
    blank = mask.rows()
    expected = []
    for i in range(n):
        count = 0
        for j in range(n):
            # suppressed cells match anything; a survey's own blank is a category
            if all(blank[i][v] or blank[j][v] or rows[i][v] == rows[j][v] for v in range(3)):
                count += 1
        expected.append(count)
    assert f.tolist() == expected


def test_free_text_is_redacted_in_release_and_ghost_text_blanked():
    frame, q = _demo(100)
    frame = frame.with_columns(
        pl.Series("note", ["пишите на ivan@mail.ru"] + [None] * 98 + ["Работал в IT с 2019 года"])
    )
    out = release(frame, q, quasi=["age", "gender"], k=5, seed=1)
    notes = [t for t in out.data.get_column("note").to_list() if t]
    assert sorted(notes) == ["Работал в IT с 2019 года", "пишите на [EMAIL]"]
    assert out.report["redaction"]["counts"] == {"EMAIL": 1}


def _volna(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "volna.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def example_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("release_example")
    done = _volna("example", "okrussians", "--n", "1500", "-o", "data.parquet", cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder


QUASI = "age,gender,destination,origin,sector"


def test_cli_example_release_reaches_k5_checked_independently(example_data):
    questionnaire = str(example_path("okrussians", "questionnaire.yaml"))
    done = _volna(
        "release",
        questionnaire,
        "data.parquet",
        "--quasi",
        QUASI,
        "--sensitive",
        "vote_2021",
        "--k",
        "5",
        "--seed",
        "11",
        "-o",
        "rel",
        cwd=example_data,
    )
    assert done.returncode == 0, done.stderr
    released = pl.read_parquet(example_data / "rel" / "data.parquet")
    keys = QUASI.split(",")
    assert _min_group(released, keys) >= 5
    original = pl.read_parquet(example_data / "data.parquet")
    assert released.height == original.height
    # paradata and the recruitment channel (marked in the questionnaire) leave by default
    for gone in ("respondent_id", "duration_sec", "channel"):
        assert gone not in released.columns
    report = json.loads((example_data / "rel" / "report.json").read_text(encoding="utf-8"))
    assert report["risk_after"]["violations"]["5"] == 0
    assert report["risk_after"]["global_risk"] < report["risk_before"]["global_risk"]
    assert all(rule["held"] for rule in report["rules"])
    html = (example_data / "rel" / "report.html").read_text(encoding="utf-8")
    assert "Risk before and after" in html
    # the released files validate against the released questionnaire
    valid = _volna("validate", "rel/questionnaire.yaml", "rel/data.parquet", cwd=example_data)
    assert valid.returncode == 0, valid.stdout + valid.stderr


def test_cli_refusal_writes_nothing(example_data):
    questionnaire = str(example_path("okrussians", "questionnaire.yaml"))
    done = _volna(
        "release",
        questionnaire,
        "data.parquet",
        "--quasi",
        QUASI,
        "--k",
        "5",
        "--no-suppress",
        "-o",
        "refused",
        cwd=example_data,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to write a release" in lines[0]
    assert not (example_data / "refused").exists()


def test_cli_unknown_quasi_one_line(example_data):
    questionnaire = str(example_path("okrussians", "questionnaire.yaml"))
    done = _volna(
        "release",
        questionnaire,
        "data.parquet",
        "--quasi",
        "age,regoin",
        "-o",
        "x",
        cwd=example_data,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "regoin" in done.stderr and "Traceback" not in done.stderr


def test_sdcmicro_convention_is_weaker_than_the_strict_one():
    # a strict k-anonymous file is k-anonymous under sdcMicro's wildcard convention too
    frame, q = _demo(300)
    out = release(frame, q, quasi=["age", "gender", "country"], k=4, seed=3, redact=False)
    f, _ = wildcard_frequencies(out.data, ["age", "gender", "country"])
    assert f.min() >= 4
    assert math.isfinite(out.report["risk_after"]["global_risk"])


def test_weights_drive_the_risk_and_are_released_rounded():
    frame, q = _demo(200)
    frame = frame.with_columns(w=pl.Series(np.linspace(50.0, 150.0, 200) + 0.123456))
    out = release(frame, q, quasi=["age", "gender", "country"], k=5, weights="w", seed=1)
    assert out.report["risk_before"]["weighted"] is True
    # with weights near 100, a sample unique has risk well below 1 (1/f without weights)
    assert out.report["risk_before"]["max_risk"] < 0.1
    assert sorted(out.data.get_column("w").to_list()) == sorted(
        round(x, 2) for x in frame.get_column("w").to_list()
    )
    bad = frame.with_columns(pl.lit(-1.0).alias("w"))
    with pytest.raises(ReleaseError, match=r"row 1, column w: .* not a positive weight"):
        release(bad, q, quasi=["age"], weights="w")
