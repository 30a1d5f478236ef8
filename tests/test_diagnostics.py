"""Weighting diagnostics against hand computations on small data."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from volna.design import SurveyDesign
from volna.diagnostics import (
    compare_proportions,
    diagnose,
    kish,
    largest_weights,
    margin_balance,
    weight_summary,
)
from volna.margins import Margin
from volna.weighting import WeightingError


def stat(table: pl.DataFrame, name: str, column: str = "after") -> float:
    return table.filter(pl.col("statistic") == name)[column][0]


def test_kish_design_effect_and_effective_sample_size() -> None:
    w = np.array([1.0, 1.0, 2.0, 4.0])
    # n sum(w^2) / sum(w)^2 = 4 * 22 / 64; sum(w)^2 / sum(w^2) = 64 / 22
    deff, ess = kish(w)
    assert deff == pytest.approx(88 / 64, rel=1e-12)
    assert ess == pytest.approx(64 / 22, rel=1e-12)
    assert kish(np.full(10, 3.7)) == pytest.approx((1.0, 10.0))


def test_weight_summary_by_hand() -> None:
    before = np.ones(100)
    after = np.arange(1.0, 101.0)  # 1, 2, ..., 100
    t = weight_summary(before, after)
    assert stat(t, "respondents") == 100
    assert stat(t, "sum") == 5050
    assert stat(t, "mean") == 50.5
    assert stat(t, "minimum") == 1 and stat(t, "maximum") == 100
    # R's type 7: x[h] with h = (n - 1) p, interpolated: 1 + 99 p
    for label, p in [("1%", 0.01), ("5%", 0.05), ("25%", 0.25), ("50%", 0.5), ("99%", 0.99)]:
        assert stat(t, label) == pytest.approx(1 + 99 * p, rel=1e-12), label
    sd = math.sqrt(sum((x - 50.5) ** 2 for x in range(1, 101)) / 100)
    assert stat(t, "coefficient of variation") == pytest.approx(sd / 50.5, rel=1e-12)
    assert stat(t, "maximum / minimum") == 100
    sum_sq = sum(x * x for x in range(1, 101))
    assert stat(t, "Kish design effect") == pytest.approx(100 * sum_sq / 5050**2, rel=1e-12)
    assert stat(t, "Kish design effect") == pytest.approx(1 + (sd / 50.5) ** 2, rel=1e-12)
    assert stat(t, "effective sample size") == pytest.approx(5050**2 / sum_sq, rel=1e-12)
    assert stat(t, "Kish design effect", "before") == 1
    assert stat(t, "coefficient of variation", "before") == 0


def test_zero_weight_gives_an_infinite_ratio() -> None:
    t = weight_summary(np.array([0.0, 1, 1]), np.array([0.0, 1, 1]))
    assert stat(t, "maximum / minimum") == math.inf


def test_share_of_the_top_respondents() -> None:
    after = np.r_[np.ones(198), 51.0, 51.0]  # total 300
    before = np.r_[np.full(100, 2.0), np.ones(100)]  # total 300
    t = largest_weights(before, after, top=(0.01, 0.05, 0.5))
    assert t["top"].to_list() == ["1%", "5%", "50%"]
    assert t["respondents"].to_list() == [2, 10, 100]
    assert t["share_after"].to_list() == pytest.approx([102 / 300, 110 / 300, 200 / 300])
    assert t["share_before"].to_list() == pytest.approx([4 / 300, 20 / 300, 200 / 300])
    # at least one respondent, however small the fraction
    assert largest_weights(np.ones(10), np.arange(1.0, 11.0), top=(0.01,))["respondents"][0] == 1
    with pytest.raises(WeightingError, match="fractions"):
        largest_weights(np.ones(3), np.ones(3), top=(5,))


def test_margin_balance_and_asmd_by_hand() -> None:
    frame = pl.DataFrame({"g": ["a", "a", "b", "b", "b", "c", None]})
    margin = Margin.of("g", {"a": 50, "b": 30, "c": 20}, type="shares", name="g")
    before = np.array([1.0, 1, 1, 1, 1, 1, 5])
    after = np.array([2.0, 3, 1, 1, 1, 2, 5])
    t = margin_balance(frame, [margin], before, after)
    assert t["cell"].to_list() == ["a", "b", "c"]
    assert t["n"].to_list() == [2, 3, 1]
    # the missing row is outside the margin: shares of 6 (before) and 10 (after)
    p = np.array([0.5, 0.3, 0.2])
    share_b = np.array([2, 3, 1]) / 6
    share_a = np.array([5, 3, 2]) / 10
    assert t["target_pct"].to_list() == pytest.approx(p * 100)
    assert t["before_pct"].to_list() == pytest.approx(share_b * 100)
    assert t["after_pct"].to_list() == pytest.approx(share_a * 100)
    assert t["diff_before_pp"].to_list() == pytest.approx((share_b - p) * 100)
    asmd_b = np.abs(share_b - p) / np.sqrt(p * (1 - p))
    assert t["asmd_before"].to_list() == pytest.approx(asmd_b)
    assert t["asmd_after"].to_list() == pytest.approx([0, 0, 0], abs=1e-12)
    # a = 1/3 against 0.5: |1/3 - 1/2| / sqrt(1/4) = 1/3
    assert t["asmd_before"][0] == pytest.approx(1 / 3)


def test_diagnose_a_raked_design() -> None:
    frame = pl.DataFrame(
        {
            "sex": ["f", "m", "m", "m", "f", "m"],
            "age": ["y", "y", "o", "o", "o", "y"],
            "w": [1.0, 1.0, 1.0, 1.0, 2.0, 2.0],
            "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        }
    )
    design = SurveyDesign.from_frame(frame, weights="w")
    weighted = design.rake({"sex": {"f": 60, "m": 40}, "age": {"y": 30, "o": 70}})
    report = diagnose(weighted, auxiliaries=["x"])
    w0, w1 = frame["w"].to_numpy(), weighted.weights
    assert report.n == 6
    assert report.design_effect["before"] == pytest.approx(kish(w0)[0])
    assert report.design_effect["after"] == pytest.approx(kish(w1)[0])
    assert report.effective_n["after"] == pytest.approx(w1.sum() ** 2 / (w1**2).sum())
    m = report.margins
    assert m["margin"].unique(maintain_order=True).to_list() == ["sex", "age"]
    assert m["after_pct"].to_list() == pytest.approx([60, 40, 30, 70], abs=1e-7)
    # before: f carries 3 of 8, y carries 4 of 8
    assert m.filter(pl.col("cell") == "f")["before_pct"][0] == pytest.approx(37.5)
    assert m.filter(pl.col("cell") == "y")["before_pct"][0] == pytest.approx(50.0)
    assert m["asmd_after"].max() < 1e-7
    assert m.filter(pl.col("cell") == "f")["asmd_before"][0] == pytest.approx(
        0.225 / math.sqrt(0.24)
    )
    # auxiliary without a target: weighted means before and after, and the shift
    aux = report.auxiliaries.row(0, named=True)
    x = frame["x"].to_numpy()
    mean_b, mean_a = np.average(x, weights=w0), np.average(x, weights=w1)
    sd_b = math.sqrt(np.average((x - mean_b) ** 2, weights=w0))
    assert aux["before"] == pytest.approx(mean_b) and aux["after"] == pytest.approx(mean_a)
    assert aux["shift"] == pytest.approx(abs(mean_a - mean_b) / sd_b)
    assert aux["target"] is None and aux["asmd_before"] is None
    steps = report.steps.row(0, named=True)
    assert steps["method"] == "rake" and steps["converged"]
    assert steps["iterations"] == weighted.weighting[0].iterations
    assert steps["max_error"] < 1e-9


def test_auxiliaries_against_known_totals() -> None:
    frame = pl.DataFrame({"g": ["a", "a", "b", "b"], "x": [1.0, 3.0, 5.0, 7.0]})
    design = SurveyDesign.from_frame(frame)
    report = diagnose(design, auxiliaries={"(Intercept)": 8, "x": 40, "g=a": 6, "g=b": 2})
    t = report.auxiliaries
    x = t.filter(pl.col("variable") == "x").row(0, named=True)
    # target mean 40 / 8 = 5; sample mean 4, sd sqrt(5)
    assert x["target"] == pytest.approx(5) and x["before"] == pytest.approx(4)
    assert x["asmd_before"] == pytest.approx(1 / math.sqrt(5))
    a = t.filter((pl.col("variable") == "g") & (pl.col("level") == "a")).row(0, named=True)
    # target 6 / 8 = 75%; sample 50%: |0.5 - 0.75| / sqrt(0.75 * 0.25)
    assert a["target"] == pytest.approx(75) and a["before"] == pytest.approx(50)
    assert a["asmd_before"] == pytest.approx(0.25 / math.sqrt(0.1875))


def test_a_design_never_weighted_is_the_same_before_and_after() -> None:
    frame = pl.DataFrame({"g": ["a", "b", "b"], "w": [1.0, 2.0, 3.0]})
    report = diagnose(SurveyDesign.from_frame(frame, weights="w"), {"g": {"a": 1, "b": 1}})
    assert report.steps.height == 0
    assert report.weights["before"].to_list() == report.weights["after"].to_list()
    assert "no weighting steps" in report.to_text()


def test_compare_proportions_unweighted_and_weighted() -> None:
    frame = pl.DataFrame({"g": ["a", "a", "a", "b"], "v": ["x", "y", "y", "x"]})
    design = SurveyDesign.from_frame(frame)
    weighted = design.rake({"g": {"a": 50, "b": 50}})
    t = compare_proportions(design, weighted, ["v=x", "g"])
    assert t["variable"].to_list() == ["v", "g", "g"]
    # v = x: unweighted 2 of 4; weighted 50/3 + 50 of 100
    row = t.row(0, named=True)
    assert row["before_pct"] == pytest.approx(50)
    assert row["after_pct"] == pytest.approx(100 * (50 / 3 + 50) / 100)
    assert row["change_pp"] == pytest.approx(row["after_pct"] - 50)
    assert row["ci_low_pct"] <= row["after_pct"] <= row["ci_high_pct"]
    with pytest.raises(WeightingError, match="v has no level z"):
        compare_proportions(design, weighted, ["v=z"])
    report = diagnose(weighted, compare=["v=x"])  # the unweighted design is rebuilt
    assert report.estimates["before_pct"][0] == pytest.approx(50)


def test_outputs_text_markdown_dict() -> None:
    frame = pl.DataFrame({"sex": ["f", "m", "m", "m"]})
    weighted = SurveyDesign.from_frame(frame).rake(
        Margin.of("sex", {"f": 50, "m": 50}, name="sex_census")
    )
    report = diagnose(weighted, compare=["sex"])
    text = report.to_text()
    for words in [
        "Weighting report: 4 respondents",
        "rake to sex_census: converged",
        "Kish design effect",
        "effective sample size",
        "top 1% (1 respondent)",
        "sex_census",
        "Estimates before and after weighting",
    ]:
        assert words in text, words
    assert repr(report) == text
    md = report.to_markdown()
    assert md.startswith("# Weighting report")
    assert "| cell | n | target |" in md
    data = report.to_dict()
    json.dumps(data)  # JSON-ready
    assert data["respondents"] == 4
    assert {r["statistic"] for r in data["weights"]} >= {"Kish design effect", "99%"}
    assert data["margins"][0]["after_pct"] == pytest.approx(50)
    assert report.to_text(["estimates"]).startswith("Estimates before and after weighting")
    with pytest.raises(WeightingError, match="no report section"):
        report.to_text(["plots"])


def test_subset_designs_use_their_rows() -> None:
    frame = pl.DataFrame({"g": ["a", "b", "b", "b"], "keep": [True, True, True, False]})
    design = SurveyDesign.from_frame(frame).subset("keep")
    report = diagnose(design, {"g": {"a": 1, "b": 1}})
    assert report.n == 3
    assert report.margins["n"].to_list() == [1, 2]


def test_before_is_named_sampling_weights_when_there_are_some() -> None:
    frame = pl.DataFrame({"g": ["a", "b", "b"], "w": [1.0, 1.0, 2.0]})
    weighted = SurveyDesign.from_frame(frame, weights="w").rake({"g": {"a": 1, "b": 1}})
    report = diagnose(weighted, compare=["g=a"])
    assert report.before == "sampling weights"
    # a: 1 of 4 with the sampling weights, 1 of 2 after
    assert report.estimates.row(0, named=True)["before_pct"] == pytest.approx(25)
    assert "sampling weights" in report.to_text(["estimates"]).splitlines()[1]
