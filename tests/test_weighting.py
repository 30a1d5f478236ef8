"""Weighting: margins met exactly, errors that name what is wrong, variance that knows.

Agreement with R's survey package is in test_reference.py; here the weights are checked
against independent computations (closed-form GREG, row-wise IPF) and the traps of
other tools (silently missed margins, lumped levels, trimming that breaks margins).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from volna.design import DesignError, SurveyDesign
from volna.margins import Bins, Margin, MarginError
from volna.weighting import WeightingError


def skewed_sample(n: int = 3000, seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal(n)
    sex = np.where(latent + rng.standard_normal(n) > 0.3, "m", "f")
    age = np.digitize(latent + rng.standard_normal(n), [-0.5, 0.4, 1.2])
    region = rng.choice(["n", "s", "e", "w"], size=n, p=[0.4, 0.3, 0.2, 0.1])
    return pl.DataFrame(
        {
            "sex": sex,
            "age": [f"a{a}" for a in age],
            "region": region,
            "years": np.round(18 + 50 * rng.beta(2, 4, n)),
            "income": np.exp(rng.normal(7, 0.6, n)),
            "w": rng.uniform(0.5, 2.0, n),
            "psu": rng.integers(0, 60, n),
        }
    )


MARGINS = {
    "sex": {"f": 520.0, "m": 480.0},
    "age": {"a0": 300.0, "a1": 300.0, "a2": 250.0, "a3": 150.0},
    "region": {"n": 250.0, "s": 250.0, "e": 250.0, "w": 250.0},
}


def weighted_totals(frame: pl.DataFrame, var: str, w: np.ndarray) -> dict[str, float]:
    out = {}
    values = frame[var].to_numpy()
    for level in np.unique(values):
        out[str(level)] = float(w[values == level].sum())
    return out


def rowwise_ipf(frame: pl.DataFrame, d: np.ndarray, margins, sweeps: int = 500) -> np.ndarray:
    """A deliberately plain raking on the rows, independent of volna's cell algorithm."""
    w = d.copy()
    for _ in range(sweeps):
        for var, targets in margins.items():
            values = frame[var].to_numpy()
            for level, target in targets.items():
                hit = values == level
                w[hit] *= target / w[hit].sum()
    return w


@pytest.fixture(scope="module")
def sample() -> pl.DataFrame:
    return skewed_sample()


@pytest.fixture(scope="module")
def design(sample) -> SurveyDesign:
    return SurveyDesign.from_frame(sample, weights="w", ids="psu")


# ---- raking -----------------------------------------------------------------------------


def test_rake_meets_every_margin_and_reports_it(design, sample):
    raked = design.rake(MARGINS)
    for var, targets in MARGINS.items():
        got = weighted_totals(sample, var, raked.weights)
        for level, target in targets.items():
            assert got[level] == pytest.approx(target, rel=1e-9)
    step = raked.weighting[-1]
    assert step.method == "rake" and step.converged
    assert 0 <= step.max_error < 1e-9
    assert set(step.errors) == set(MARGINS)
    assert np.array_equal(step.weights_before, design.weights)


def test_rake_agrees_with_a_rowwise_ipf(design, sample):
    raked = design.rake(MARGINS, tol=1e-13)
    reference = rowwise_ipf(sample, design.weights, MARGINS)
    np.testing.assert_allclose(raked.weights, reference, rtol=1e-9)


def test_rake_equals_calibration_with_the_raking_distance(design):
    raked = design.rake(MARGINS, tol=1e-13)
    totals = {var: targets for var, targets in MARGINS.items()}
    calibrated = design.calibrate(list(MARGINS), totals, calfun="raking", tol=1e-13)
    np.testing.assert_allclose(raked.weights, calibrated.weights, rtol=1e-8)


def test_base_weights_are_respected(design, sample):
    # within a cell of every margin, raking multiplies all base weights by one factor
    raked = design.rake(MARGINS)
    ratio = raked.weights / design.weights
    cells = sample.with_columns(ratio=pl.Series(ratio)).group_by("sex", "age", "region")
    spread = cells.agg((pl.col("ratio").max() - pl.col("ratio").min()).alias("spread"))
    assert spread["spread"].max() < 1e-12


def test_crossed_margin_with_derived_bins(sample):
    d = SurveyDesign.from_frame(sample)
    bins = Bins("years", {"young": (18, 34), "old": (35, None)})
    margin = Margin.of(
        ["agegroup", "sex"],
        [
            {"agegroup": "young", "sex": "f", "value": 30},
            {"agegroup": "young", "sex": "m", "value": 25},
            {"agegroup": "old", "sex": "f", "value": 20},
            {"agegroup": "old", "sex": "m", "value": 25},
        ],
        type="shares",
        derived={"agegroup": bins},
    )
    raked = d.rake([margin])
    young = sample["years"].to_numpy() <= 34
    female = sample["sex"].to_numpy() == "f"
    total = raked.weights.sum()
    assert total == pytest.approx(sample.height)  # shares keep the population size
    assert raked.weights[young & female].sum() / total == pytest.approx(0.30, rel=1e-9)
    assert raked.weights[~young & ~female].sum() / total == pytest.approx(0.25, rel=1e-9)


def test_shares_take_the_population_size_of_a_counts_margin(design, sample):
    shares = Margin.of("region", {"n": 10, "s": 20, "e": 30, "w": 40}, type="shares")
    counts = Margin.of("sex", {"f": 600, "m": 400})
    raked = design.rake([counts, shares])
    got = weighted_totals(sample, "region", raked.weights)
    assert got["w"] == pytest.approx(400.0, rel=1e-9)
    assert raked.weights.sum() == pytest.approx(1000.0, rel=1e-9)


def test_many_variables_do_not_build_the_full_table():
    # 10 variables of 10 levels: 10^10 possible cells, a dense table would not fit
    rng = np.random.default_rng(0)
    n = 5000
    frame = pl.DataFrame({f"v{j}": rng.integers(0, 10, n) for j in range(10)})
    margins = {
        f"v{j}": {str(k): float(t) for k, t in enumerate(rng.dirichlet(np.ones(10) * 5) * n)}
        for j in range(10)
    }
    raked = SurveyDesign.from_frame(frame).rake(margins, tol=1e-8)
    assert raked.weighting[-1].max_error < 1e-8


def test_replicate_designs_rake_every_replicate(design, sample):
    rep = SurveyDesign.from_frame(sample, weights="w", ids="psu").with_replicates("JK1")
    raked = rep.rake(MARGINS)
    values = sample["sex"].to_numpy()
    reps = raked.replicates.weights
    np.testing.assert_allclose(reps[values == "f"].sum(axis=0), 520.0, rtol=1e-9)
    np.testing.assert_allclose(reps[values == "m"].sum(axis=0), 480.0, rtol=1e-9)
    # the replicates vary, so the variance is not zero for a variable not calibrated
    assert raked.mean("income").to_polars()["se"][0] > 0


# ---- errors -----------------------------------------------------------------------------


def test_a_data_level_without_target_is_named(design):
    with pytest.raises(MarginError, match=r"region.*w .*has no target"):
        design.rake({"region": {"n": 1, "s": 1, "e": 1}})


def test_a_target_without_respondents_is_named_and_collapse_merges_it(design, sample):
    margin = {"region": {"n": 200, "s": 200, "e": 200, "w": 200, "x": 200}}
    with pytest.raises(MarginError, match=r"target level x .*no respondent.*collapse"):
        design.rake(margin)
    merged = design.rake(margin, collapse={"region": {"x": "w"}})
    assert weighted_totals(sample, "region", merged.weights)["w"] == pytest.approx(400.0)


def test_missing_values_are_an_error_naming_rows_or_an_explicit_policy():
    frame = pl.DataFrame({"g": ["a", None, "b", "a"], "w": [1.0, 1.0, 1.0, 1.0]})
    d = SurveyDesign.from_frame(frame, weights="w")
    with pytest.raises(MarginError, match=r"rows 2 have no value"):
        d.rake({"g": {"a": 10, "b": 10}})
    kept = d.rake({"g": {"a": 10, "b": 10}}, missing="exclude")
    assert kept.weights.tolist() == [5.0, 1.0, 10.0, 5.0]
    assert "outside margin g" in kept.weighting[-1].notes[0]


def test_margins_that_disagree_on_the_population_are_refused(design):
    with pytest.raises(WeightingError, match=r"disagree on the population size"):
        design.rake({"sex": {"f": 500, "m": 500}, "region": {"n": 1, "s": 1, "e": 1, "w": 1}})


def test_raking_that_cannot_converge_names_the_margin():
    # a crossed margin puts all of group a in x, a second margin wants some of a in y
    frame = pl.DataFrame({"g": ["a", "a", "b", "b"], "h": ["x", "x", "y", "x"]})
    d = SurveyDesign.from_frame(frame)
    with pytest.raises(WeightingError, match=r"did not converge.*margin (g|h) is still"):
        d.rake({"g": {"a": 50, "b": 50}, "h": {"x": 10, "y": 90}}, max_iter=50)


def test_unknown_auxiliary_total_is_an_error(design):
    with pytest.raises(WeightingError, match=r"matches no auxiliary"):
        design.calibrate(["income"], {"(Intercept)": 1000, "income": 5e6, "incme": 1})


def test_missing_auxiliary_is_an_error_naming_rows():
    frame = pl.DataFrame({"x": [1.0, None, 3.0]})
    with pytest.raises(WeightingError, match=r"auxiliary x: rows 2 have no value"):
        SurveyDesign.from_frame(frame).calibrate(["x"], {"(Intercept)": 3, "x": 6})


# ---- calibration ------------------------------------------------------------------------


def test_linear_calibration_is_the_closed_form_greg(design, sample):
    totals = {"(Intercept)": 1000.0, "sex=m": 480.0, "income": 1000.0 * 1300}
    cal = design.calibrate(["sex", "income"], totals)
    x = np.column_stack(
        [np.ones(sample.height), (sample["sex"] == "m").to_numpy(), sample["income"].to_numpy()]
    )
    d = design.weights
    t = np.array(list(totals.values()))
    lam = np.linalg.solve(x.T @ (x * d[:, None]), t - x.T @ d)
    np.testing.assert_allclose(cal.weights, d * (1 + x @ lam), rtol=1e-9)


@pytest.mark.parametrize("calfun", ["logit", "linear"])
def test_bounded_calibration_keeps_g_within_bounds(design, calfun):
    n = design.weights.sum()
    totals = {"(Intercept)": n, "sex=m": 0.43 * n, "income": n * 1250}
    cal = design.calibrate(["sex", "income"], totals, calfun=calfun, bounds=(0.5, 1.6))
    g = cal.weights / design.weights
    assert g.min() >= 0.5 - 1e-9 and g.max() <= 1.6 + 1e-9
    assert cal.weighting[-1].max_error < 1e-9


def test_infeasible_bounds_say_how_far_off(design):
    n = design.weights.sum()
    totals = {"(Intercept)": n, "sex=m": 0.9 * n}
    with pytest.raises(WeightingError, match=r"sex=m is still .* off within bounds"):
        design.calibrate(["sex"], totals, calfun="logit", bounds=(0.9, 1.1))


# ---- trimming ---------------------------------------------------------------------------


def test_trimming_keeps_every_margin_and_the_cap(design, sample):
    raked = design.rake(MARGINS)
    assert raked.weights.max() > 3.0 * raked.weights.mean()
    trimmed = raked.trim(upper=3.0)
    assert trimmed.weights.max() <= 3.0 * raked.weights.mean() * (1 + 1e-9)
    for var, targets in MARGINS.items():
        got = weighted_totals(sample, var, trimmed.weights)
        for level, target in targets.items():
            assert got[level] == pytest.approx(target, rel=1e-8)
    assert [s.method for s in trimmed.weighting] == ["rake", "trim"]


def test_trimming_that_cannot_keep_the_margins_says_so(design):
    raked = design.rake(MARGINS)
    with pytest.raises(WeightingError, match=r"cannot keep the margins"):
        raked.trim(upper=1.01)


# ---- variance ---------------------------------------------------------------------------


def test_a_calibrated_total_has_no_variance(design, sample):
    raked = design.rake(MARGINS)
    female = pl.Series((sample["sex"] == "f").cast(pl.Float64))
    table = raked.total(female).to_polars()
    assert table["estimate"][0] == pytest.approx(520.0)
    assert table["se"][0] < 1e-6 * 520.0
    # the uncalibrated total of the same indicator does vary
    assert design.total(female).to_polars()["se"][0] > 1.0


def test_calibration_lowers_the_variance_of_a_correlated_mean(design, sample):
    totals = {"(Intercept)": 1000.0, "income": 1000.0 * 1300}
    cal = design.calibrate(["income"], totals)
    log_income = pl.Series(np.log(sample["income"].to_numpy()))
    before = design.mean(log_income).to_polars()["se"][0]
    after = cal.mean(log_income).to_polars()["se"][0]
    assert after < 0.5 * before


def test_domain_by_equals_subset_after_calibration(design):
    raked = design.rake(MARGINS)
    by = raked.mean("income", by="region").to_polars().sort("domain")
    sub = raked.subset(pl.col("region") == "e").mean("income").to_polars()
    row = by.filter(pl.col("domain") == "region=e")
    assert row["estimate"][0] == pytest.approx(sub["estimate"][0], rel=1e-12)
    assert row["se"][0] == pytest.approx(sub["se"][0], rel=1e-9)


def test_replicates_must_come_before_weighting(design):
    with pytest.raises(DesignError, match=r"make the replicate weights first"):
        design.rake(MARGINS).with_replicates("JK1")


def test_a_subset_is_not_weighted_on_its_own(design):
    with pytest.raises(DesignError, match=r"weight the full sample, then take the subset"):
        design.subset(pl.col("sex") == "f").rake({"age": MARGINS["age"]})


def test_enum_columns_use_their_declared_levels():
    frame = pl.DataFrame(
        {"g": pl.Series(["b", "a", None, "b"], dtype=pl.Enum(["a", "b", "unused"]))}
    )
    d = SurveyDesign.from_frame(frame)
    raked = d.rake({"g": {"a": 10, "b": 30}}, missing="exclude")
    assert raked.weights.tolist() == [15.0, 10.0, 1.0, 15.0]
    with pytest.raises(MarginError, match=r"rows 3 have no value"):
        d.rake({"g": {"a": 10, "b": 30}})


def test_replicates_start_from_the_full_sample_raking(sample):
    # a bootstrap of single respondents: every replicate is raked to the margins
    d = SurveyDesign.from_frame(sample, weights="w").with_replicates(
        "bootstrap", replicates=20, seed=4
    )
    raked = d.rake(MARGINS)
    reps = raked.replicates.weights
    for var, targets in MARGINS.items():
        values = sample[var].to_numpy()
        for level, target in targets.items():
            np.testing.assert_allclose(reps[values == level].sum(axis=0), target, rtol=1e-8)


def test_shares_of_a_margin_that_leaves_people_out_are_of_the_covered_weight(sample):
    # gender "x" is outside the age margin: it shares out only the others' weight
    frame = sample.with_columns(
        sex=pl.when(pl.int_range(pl.len()) % 37 == 0).then(pl.lit("x")).otherwise("sex")
    )
    d = SurveyDesign.from_frame(frame)
    ages = Margin.of(
        ["age", "sex"],
        [
            {"age": a, "sex": g, "value": v}
            for a, v1 in zip(["a0", "a1", "a2", "a3"], [10, 15, 12, 13], strict=True)
            for g, v in (("f", v1), ("m", v1))
        ],
        type="shares",
        excluded={"sex": ("x",)},
    )
    counts = Margin.of("region", {"n": 400, "s": 300, "e": 200, "w": 100})
    raked = d.rake([counts, ages])
    step = raked.weighting[-1]
    assert step.iterations < 50 and step.max_error < 1e-9
    w = raked.weights
    covered = frame["sex"].to_numpy() != "x"
    share = w[covered & (frame["age"] == "a0").to_numpy() & (frame["sex"] == "f").to_numpy()]
    assert share.sum() / w[covered].sum() == pytest.approx(0.10, rel=1e-9)
    assert w.sum() == pytest.approx(1000.0, rel=1e-9)
    # a share the weighting fixed has (almost) no sampling variance
    is_a0f = pl.Series(((frame["age"] == "a0") & (frame["sex"] == "f")).cast(pl.Float64))
    est = raked.mean(is_a0f, where=pl.Series(covered)).to_polars()
    assert est["estimate"][0] == pytest.approx(0.10, rel=1e-9)
    assert est["se"][0] < 1e-7
    assert "its shares are of the weight" in step.notes[0]


def test_trim_equal_is_r_trimweights_and_refuses_what_r_cannot(design):
    # R's rule (checked against R in tests/fixtures/reference/cases_trim.json)
    raked = design.rake(MARGINS)
    w0 = raked.weights
    cap = float(np.quantile(w0, 0.9))
    trimmed = raked.trim(upper=cap, relative=False, redistribute="equal", strict=True)
    assert trimmed.weights.max() <= cap * (1 + 1e-12)
    assert trimmed.weights.sum() == pytest.approx(w0.sum(), rel=1e-12)
    with pytest.raises(WeightingError, match="redistribute"):
        raked.trim(upper=cap, relative=False, redistribute="proportional")
    with pytest.raises(WeightingError, match="strict"):
        raked.trim(upper=cap, relative=False, strict=True)
