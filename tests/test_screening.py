"""Screening: each rule on small tables, the rules file, the CLI, and the planted example."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from volna import Questionnaire
from volna.cli import app
from volna.examples import example_path
from volna.examples.generate_okrussians import generate
from volna.io import read
from volna.screening import (
    AttentionCheck,
    DuplicateRule,
    GibberishRule,
    LogicRule,
    ScreeningError,
    ScreeningRules,
    SpeederRule,
    StraightliningRule,
    parse_rules,
    read_rules,
    screen,
    sensitivity,
)

SMALL = Questionnaire.loads(
    """
id: small
paradata: [{name: rid, type: id}, {name: duration_sec, type: duration}]
choice_lists:
  agree: [{code: "1", value: 1}, {code: "2", value: 2}, {code: "3", value: 3},
          {code: dk, missing: true}]
questions:
  - {name: a, type: scale, choices: agree}
  - {name: b, type: scale, choices: agree}
  - {name: c, type: scale, choices: agree}
  - {name: d, type: scale, choices: agree}
  - {name: work, type: single, choices: [{code: "yes"}, {code: "no"}]}
  - {name: job, type: text, relevant: "${work} = 'yes'"}
"""
)
ONLY = dict(speeders=None, straightlining=None, duplicates=None, careless=None, partial=None)


def small(**columns) -> pl.DataFrame:
    n = len(next(iter(columns.values())))
    base = {
        "rid": [f"r{i}" for i in range(n)],
        "duration_sec": [100.0] * n,
        "a": ["1"] * n,
        "b": ["2"] * n,
        "c": ["3"] * n,
        "d": ["1"] * n,
        "work": ["no"] * n,
        "job": [None] * n,
    }
    base.update(columns)
    return pl.DataFrame(base, schema_overrides={"job": pl.String})


def flags(result, rule: str) -> list[bool]:
    return result.data[f"flag_{rule}"].to_list()


def test_speeders_fraction_of_median_and_seconds_per_item():
    data = small(duration_sec=[100.0, 120.0, 110.0, 40.0, 60.0, 9.0])
    rules = ScreeningRules(**{**ONLY, "speeders": SpeederRule(fraction_of_median=0.5)})
    r = screen(data, SMALL, rules)
    # median of 100, 120, 110, 40, 60, 9 is 80: under 40 flags only 9 (40 is not under 40)
    assert flags(r, "speeder") == [False, False, False, False, False, True]
    # 9 s for 5 answered questions is 1.8 s each, also under 2
    assert "1.8 s per answered question" in r.data["why_speeder"][5]
    rules = ScreeningRules(
        **{**ONLY, "speeders": SpeederRule(fraction_of_median=0.01, seconds_per_item=10)}
    )
    # 40 s over 5 answered questions is 8 s each, under 10
    assert flags(screen(data, SMALL, rules), "speeder") == [False] * 3 + [True, False, True]


def test_speeders_skipped_without_timing_paradata():
    q = Questionnaire.loads("id: t\nquestions:\n  - {name: x, type: integer}")
    r = screen(
        pl.DataFrame({"x": [1, 2]}), q, ScreeningRules(**{**ONLY, "speeders": SpeederRule()})
    )
    assert "flag_speeder" not in r.data.columns
    assert r.summary.height == 0


def test_straightlining_zero_variance_min_items_and_runs():
    data = small(
        a=["2", "2", "2", "1", "3"],
        b=["2", "2", "dk", "1", "3"],
        c=["2", "3", "2", "1", "3"],
        d=["2", "1", "2", "2", None],
    )
    rule = StraightliningRule(min_items=4)
    r = screen(data, SMALL, ScreeningRules(**{**ONLY, "straightlining": rule}))
    # row 2 has a "don't know" (3 scored items), row 4 a missing one: too few to judge
    assert flags(r, "straightliner") == [True, False, False, False, False]
    assert r.data["why_straightliner"][0] == "grid agree: the same answer (2) on all 4 items"
    runs = StraightliningRule(min_items=3, longest_run=3)
    r = screen(data, SMALL, ScreeningRules(**{**ONLY, "straightlining": runs}))
    assert flags(r, "straightliner") == [True, False, True, True, True]
    assert "3 identical answers in a row" in r.data["why_straightliner"][3]


def test_duplicates_exact_near_and_pairs():
    rng = np.random.default_rng(5)
    n, d = 300, 40
    cols = {f"x{j}": rng.integers(0, 5, n) for j in range(d)}
    q = Questionnaire.loads(
        "id: dup\nquestions:\n" + "".join(f"  - {{name: x{j}, type: integer}}\n" for j in range(d))
    )
    frame = pl.DataFrame(cols)
    copy = frame[10].with_columns(pl.lit(4, dtype=pl.Int64).alias("x0"))  # 39 of 40 agree
    exact = frame[20]
    far = frame[30].with_columns([pl.lit(9, dtype=pl.Int64).alias(f"x{j}") for j in range(3)])
    frame = pl.concat([frame, copy, exact, far])
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 300).then(4).otherwise(pl.col("x0")).alias("x0")
    )
    strict = ScreeningRules(**{**ONLY, "duplicates": DuplicateRule(agreement=0.95)})
    r = screen(frame, q, strict)
    assert np.flatnonzero(flags(r, "duplicate")).tolist() == [300, 301]
    pairs = r.duplicate_pairs.select("first", "second", "exact").rows()
    assert (20, 301, True) in pairs
    assert any(p[:2] == (10, 300) for p in pairs)
    assert "on 40 of 40 items (exact)" in r.data["why_duplicate"][301]
    # 3 of 40 differ: more than the 2 that 95% allows, within the default 10% (4)
    assert not flags(r, "duplicate")[302]
    loose = screen(frame, q, ScreeningRules(**{**ONLY, "duplicates": DuplicateRule()}))
    assert flags(loose, "duplicate")[302]
    assert "on 37 of 40 items (3 different)" in loose.data["why_duplicate"][302]
    # the search compares far fewer pairs than all of them
    assert r.candidates < 303 * 302 / 2 / 10


def test_partial_uses_relevance():
    data = small(
        a=["1", None, None, None],
        b=["1", None, None, None],
        c=["1", None, None, "1"],
        d=["1", None, None, "1"],
        work=["yes", "yes", "no", None],
        job=["x", "x", None, None],
    )
    r = screen(data, SMALL, ScreeningRules(**{**ONLY, "partial": ScreeningRules().partial}))
    # row 1: 2 of 6 relevant; row 2: 1 of 5 (job not asked); row 3: 2 of 5
    assert flags(r, "partial") == [False, True, True, True]
    assert r.data["why_partial"][2] == "answered 1 of 5 relevant questions (under 50%)"


def test_attention_gibberish_and_logic():
    data = small(
        a=["1", "2", None, "1"],
        job=["инженер-строитель", "asdfgh", "ааааааа", "good good good good good good"],
    )
    rules = ScreeningRules(
        **ONLY,
        attention=(AttentionCheck("a", ("1",)),),
        gibberish=GibberishRule(),
        logic=(LogicRule("odd", "${b} = '2' and ${a} = '2'", "a and b both 2"),),
    )
    r = screen(data, SMALL, rules)
    assert flags(r, "attention") == [False, True, True, False]
    assert r.data["why_attention"][2] == "a: no answer (expected 1)"
    assert flags(r, "gibberish") == [False, True, True, True]
    assert r.data["why_gibberish"][1] == "job: keyboard mashing"
    assert flags(r, "odd") == [False, True, False, False]
    assert r.summary["rule"].to_list() == ["attention", "gibberish", "odd"]


def test_exclusion_policy_and_summary():
    data = small(duration_sec=[100.0, 100.0, 100.0, 1.0], a=["2", "1", "1", "1"])
    rules = ScreeningRules(
        **{**ONLY, "speeders": SpeederRule()},
        attention=(AttentionCheck("a", ("1",)),),
        exclude=("speeder",),
    )
    r = screen(data, SMALL, rules)
    assert r.data["excluded"].to_list() == [False, False, False, True]
    summary = {row["rule"]: row for row in r.summary.iter_rows(named=True)}
    assert summary["attention"]["flagged"] == 1 and summary["attention"]["excluded"] == 0
    assert summary["speeder"]["excluded"] == 1
    assert r.kept.height == 3 and "flag_speeder" not in r.kept.columns
    assert "4 respondents, 1 excluded" in r.text()


def test_rules_file_errors_name_line_and_key():
    with pytest.raises(ScreeningError, match=r"s\.yaml:3: duplicates\.agreemnt: unknown key"):
        parse_rules("speeders: off\nduplicates:\n  agreemnt: 0.9\n", "s.yaml")
    with pytest.raises(ScreeningError, match=r"s\.yaml:1: exclude: 'speeder' is not a rule"):
        parse_rules("exclude: [speeder]\nspeeders: off\n", "s.yaml")
    with pytest.raises(ScreeningError, match=r"s\.yaml:2: attention\[0\]\.expected: is required"):
        parse_rules("attention:\n  - {question: a}\n", "s.yaml")
    with pytest.raises(ScreeningError, match="no question named 'zz'"):
        screen(small(a=["1"]), SMALL, parse_rules("attention: [{question: zz, expected: 1}]"))
    rules = read_rules(example_path("okrussians", "screening.yaml"))
    assert rules.speeders.fraction_of_median == 0.35
    # The example's questionnaire declares every_pressure and the attention check.
    assert "every_pressure" not in rules.names
    declared = rules.with_declared(
        Questionnaire.load(example_path("okrussians", "questionnaire.yaml"))
    )
    assert "every_pressure" in declared.names and "every_pressure" not in declared.excluding
    assert "attention" in declared.excluding


DECLARED = Questionnaire.loads(
    """
id: declared
checks:
  - {name: minor, when: "${age} < 18", message: {en: under 18, ru: младше 18}}
questions:
  - {name: age, type: integer}
  - {name: read, type: single, choices: [{code: a}, {code: b}], attention: b}
  - {name: website, type: text, honeypot: true}
"""
)


def test_checks_declared_in_the_questionnaire_run_without_a_rules_file():
    data = pl.DataFrame(
        {
            "age": [30, 16, 40, 50],
            "read": ["b", "b", "a", None],
            "website": [None, "  ", "http://spam.example", None],
        }
    )
    r = screen(data, DECLARED, ScreeningRules(**ONLY))
    assert flags(r, "attention") == [False, False, True, True]
    assert r.data["why_attention"][2] == "read: a (expected b)"
    # whitespace is no answer; anything else in a field people never see is a bot's
    assert flags(r, "honeypot") == [False, False, True, False]
    assert "website answered" in r.data["why_honeypot"][2]
    assert flags(r, "minor") == [False, True, False, False]
    assert r.data["why_minor"][1] == "under 18"
    # every rule that runs excludes unless the policy says otherwise
    assert r.data["excluded"].to_list() == [False, True, True, True]
    policy = parse_rules(
        "speeders: off\nstraightlining: off\nduplicates: off\npartial: off\n"
        "exclude: [honeypot, minor]\n"
    )
    r = screen(data, DECLARED, policy)
    assert r.data["excluded"].to_list() == [False, True, True, False]
    assert dict(r.summary.select("rule", "excluded").rows())["attention"] == 0


def test_the_web_forms_flags_from_an_export(tmp_path):
    # volna export writes submitted_day and screening_flags after the questionnaire's
    # columns; reading the file keeps them, and the form rule reads the flags.
    path = tmp_path / "export.csv"
    small(a=["1", "2", "3", "1"]).with_columns(
        submitted_day=pl.lit("2024-05-01"),
        screening_flags=pl.Series(["", "too_fast honeypot", "no_proof_of_work", None]),
    ).write_csv(path)
    data = read(path, SMALL)
    assert data.columns[-2:] == ["submitted_day", "screening_flags"]
    r = screen(data, SMALL, ScreeningRules(**ONLY))
    assert flags(r, "form") == [False, True, True, False]
    assert r.data["why_form"][1] == "the web form flagged: too_fast honeypot"
    policy = parse_rules("form: {flags: [honeypot]}\nexclude: [form]\n")
    r = screen(data, SMALL, policy)
    assert flags(r, "form") == [False, True, False, False]
    assert r.data["why_form"][1] == "the web form flagged: honeypot"
    assert r.data["excluded"].to_list() == [False, True, False, False]
    # without the column the rule does not run (and is not in the summary)
    r = screen(small(a=["1"]), SMALL, ScreeningRules(**ONLY))
    assert "flag_form" not in r.data.columns and "form" not in r.summary["rule"].to_list()
    with pytest.raises(ScreeningError, match=r"s\.yaml:1: form\.flag: unknown key"):
        parse_rules("form: {flag: [honeypot]}", "s.yaml")


def test_declared_checks_clash_and_unknown_exclusions_are_errors():
    clash = parse_rules('logic: [{name: minor, when: "${age} > 99"}]', "s.yaml")
    with pytest.raises(
        ScreeningError, match=r"s\.yaml: logic rule 'minor' has the name of a check"
    ):
        screen(pl.DataFrame({"age": [1], "read": ["a"], "website": [None]}), DECLARED, clash)
    unknown = parse_rules("exclude: [minr]", "s.yaml")
    with pytest.raises(ScreeningError, match=r"s\.yaml: exclude: 'minr' is not a rule that runs"):
        screen(pl.DataFrame({"age": [1], "read": ["a"], "website": [None]}), DECLARED, unknown)
    # the honeypot is never relevant to a person, so it does not make anyone partial
    r = screen(
        pl.DataFrame({"age": [30], "read": ["b"], "website": [None]}),
        DECLARED,
        ScreeningRules(speeders=None, straightlining=None, duplicates=None),
    )
    assert flags(r, "partial") == [False]


# -- the planted example -------------------------------------------------------------

QUESTIONNAIRE = Questionnaire.load(example_path("okrussians", "questionnaire.yaml"))
RULES = example_path("okrussians", "screening.yaml")


@pytest.fixture(scope="module")
def example():
    data, key = generate(n=2000, seed=1)
    return data, key, screen(data, QUESTIONNAIRE, RULES)


def recall_precision(result, key, rule: str, planted: str) -> tuple[float, float]:
    joined = result.data.join(key, on="respondent_id", how="left")
    flag = joined[f"flag_{rule}"]
    truth = joined["planted"] == planted
    hits = int((flag & truth).sum())
    return hits / int(truth.sum()), hits / max(int(flag.sum()), 1)


@pytest.mark.parametrize(
    ("rule", "planted", "min_recall", "min_precision"),
    [
        ("speeder", "speeder", 1.0, 1.0),
        ("straightliner", "straightliner", 1.0, 0.85),
        ("duplicate", "duplicate", 1.0, 1.0),
    ],
)
def test_planted_respondents_are_caught(example, rule, planted, min_recall, min_precision):
    _, key, result = example
    recall, precision = recall_precision(result, key, rule, planted)
    assert recall >= min_recall
    assert precision >= min_precision


def test_the_attention_check_flags_only_planted_careless_respondents(example):
    _, key, result = example
    joined = result.data.join(key, on="respondent_id", how="left")
    flagged = joined.filter("flag_attention")
    # every failure is a planted speeder or straightliner (genuine respondents read it)
    assert flagged["planted"].is_in(["speeder", "straightliner"]).all()
    # and every planted one who did not choose "2" is caught
    careless = joined.filter(pl.col("planted").is_in(["speeder", "straightliner"]))
    assert flagged.height == careless.filter(pl.col("exp_check") != "2").height > 20


def test_default_speeder_cut_of_half_the_median(example):
    data, key, _ = example
    result = screen(data, QUESTIONNAIRE)
    recall, precision = recall_precision(result, key, "speeder", "speeder")
    # genuine times reach down to 0.45 x the median, so the 0.5 default also flags some
    assert recall == 1.0 and 0.5 <= precision < 1.0


def test_planted_duplicate_pairs_are_found(example):
    _, key, result = example
    planted = set(
        key.filter(pl.col("planted") == "duplicate").select("duplicate_of", "respondent_id").rows()
    )
    found = set(result.duplicate_pairs.select("first_id", "second_id").rows())
    assert planted <= found
    assert result.duplicate_pairs["exact"].all()


def test_no_false_flags_on_clean_data(example):
    data, key, _ = example
    clean = data.join(key, on="respondent_id", how="anti")
    result = screen(clean, QUESTIONNAIRE, RULES)
    counts = dict(result.summary.select("rule", "flagged").rows())
    assert counts["speeder"] == 0
    assert counts["duplicate"] == 0
    assert counts["partial"] == 0
    assert counts["gibberish"] == 0
    assert counts["every_pressure"] == 0
    assert counts["attention"] == 0
    # A genuine respondent may give one answer to all five statements by chance
    # (the rule cannot tell): few, and each truly constant.
    flat = result.data.filter("flag_straightliner")
    assert flat.height <= 0.002 * clean.height
    items = ["exp_living", "exp_politics", "exp_discrim", "exp_work", "exp_family"]
    assert all(len(set(row)) == 1 and "dk" not in row for row in flat.select(items).rows())


def test_cli_screen(tmp_path, example):
    data, _, _ = example
    path = tmp_path / "data.csv"
    from volna.io import write

    write(data, path, QUESTIONNAIRE)
    runner = CliRunner()
    q = str(example_path("okrussians", "questionnaire.yaml"))
    out = tmp_path / "flagged.csv"
    res = runner.invoke(app, ["screen", q, str(path), "--rules", str(RULES), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "62 excluded" in res.output
    written = pl.read_csv(out, infer_schema_length=0)
    assert {"flag_speeder", "why_duplicate", "excluded"} <= set(written.columns)
    assert (written["excluded"] == "true").sum() == 62
    res = runner.invoke(app, ["screen", q, str(path), "--rules", str(RULES), "--compare", "plans"])
    assert res.exit_code == 0, res.output
    assert "What excluding them changes" in res.output and "undecided" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("partial: {min_share: 2}\n", encoding="utf-8")
    res = runner.invoke(app, ["screen", q, str(path), "--rules", str(bad)])
    assert res.exit_code != 0


def test_sensitivity_matches_the_linearized_difference_by_hand():
    # simple random sample, weights 1: the variance of all-minus-kept is that of the
    # influence values u_i = (y_i - p_all)/N - kept_i (y_i - p_kept)/N_kept
    rng = np.random.default_rng(2)
    n = 400
    answer = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2]).astype(object)
    answer[rng.random(n) < 0.05] = None
    excluded = rng.random(n) < 0.15
    excluded[np.asarray([a == "a" for a in answer]) & (rng.random(n) < 0.2)] = True
    frame = pl.DataFrame({"q": pl.Series(list(answer), dtype=pl.String), "excluded": excluded})
    result = screen_result(frame)
    table = sensitivity(result, "q").filter(pl.col("level") == "a")
    ok = np.array([a is not None for a in answer])
    y = np.array([a == "a" for a in answer], dtype=float)
    kept = ~excluded & ok
    p_all, p_kept = y[ok].mean(), y[kept].mean()
    u = np.where(ok, (y - p_all) / ok.sum(), 0.0) - np.where(kept, (y - p_kept) / kept.sum(), 0.0)
    se = np.sqrt(n / (n - 1) * np.sum((u - u.mean()) ** 2))
    row = table.row(0, named=True)
    assert row["all"] == pytest.approx(p_all) and row["kept"] == pytest.approx(p_kept)
    assert row["difference"] == pytest.approx(p_all - p_kept, rel=1e-12)
    assert row["se"] == pytest.approx(se, rel=1e-9)
    assert row["n_all"] == ok.sum() and row["n_kept"] == kept.sum()


def test_sensitivity_on_the_example(example):
    _data, _key, result = example
    table = sensitivity(result, ["destination", "sector"])
    assert set(table["variable"]) == {"destination", "sector"}
    assert (table["n_kept"] < table["n_all"]).all()
    assert (table["se"] > 0).all()
    shares = table.group_by("variable").agg(pl.col("all").sum(), pl.col("kept").sum())
    for row in shares.iter_rows(named=True):
        assert row["all"] == pytest.approx(1.0) and row["kept"] == pytest.approx(1.0)


def screen_result(frame: pl.DataFrame):
    from volna.screening import ScreeningResult, _empty_pairs

    return ScreeningResult(frame, pl.DataFrame(), _empty_pairs(), ScreeningRules())
