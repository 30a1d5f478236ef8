"""Propensity weighting towards a reference sample, and the balance diagnostics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import polars as pl
import pytest
from scipy.optimize import minimize
from scipy.special import expit

from volna.design import SurveyDesign
from volna.propensity import asmd_summary, balance_table, propensity_weights
from volna.weighting import WeightingError

# ---------------------------------------------------------------------------------------
# simulated data where membership is logistic in the covariates


TRUE = {"(Intercept)": -0.4, "sex=m": -0.8, "edu=mid": 0.5, "edu=high": 1.2, "age": -0.05}


def pooled(n: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Units whose membership (1: sample, 0: reference) is logistic with TRUE coefficients."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(["f", "m"], n)
    edu = rng.choice(["low", "mid", "high"], n, p=[0.4, 0.35, 0.25])
    age = rng.normal(40, 12, n)
    eta = (
        TRUE["(Intercept)"]
        + TRUE["sex=m"] * (sex == "m")
        + TRUE["edu=mid"] * (edu == "mid")
        + TRUE["edu=high"] * (edu == "high")
        + TRUE["age"] * (age - 40)
    )
    member = rng.random(n) < expit(eta)
    frame = pl.DataFrame(
        {
            "sex": sex,
            "edu": pl.Series(edu).cast(pl.Enum(["low", "mid", "high"])),
            "age": age - 40,
        }
    )
    return frame.filter(pl.Series(member)), frame.filter(pl.Series(~member))


@pytest.fixture(scope="module")
def simulated():
    sample, reference = pooled(300_000, seed=11)
    design = SurveyDesign.from_frame(sample)
    weighted = propensity_weights(design, reference, ["sex", "edu", "age"])
    return sample, reference, weighted


def test_coefficients_recover_the_true_selection_model(simulated):
    sample, reference, weighted = simulated
    coef = weighted.weighting[-1].options["coefficients"]
    # the groups are weighted to the same total: the intercept moves by log(n_r / n_s)
    shift = math.log(reference.height / sample.height)
    assert coef["(Intercept)"] == pytest.approx(TRUE["(Intercept)"] + shift, abs=0.03)
    for name in ("sex=m", "edu=mid", "edu=high"):
        assert coef[name] == pytest.approx(TRUE[name], abs=0.03), name
    assert coef["age"] == pytest.approx(TRUE["age"], abs=0.002)
    assert set(coef) == set(TRUE)


def test_weighted_means_reach_the_reference(simulated):
    sample, reference, weighted = simulated
    table = balance_table(weighted, reference, ["sex", "edu", "age"])
    assert table.height == 2 + 3 + 1
    assert table["asmd_before"].max() > 0.2
    assert table["asmd_after"].max() < 0.05
    step = weighted.weighting[-1]
    assert step.max_error == pytest.approx(table["asmd_after"].max(), rel=1e-9)
    assert step.max_error < 0.05
    row = table.filter(pl.col("variable") == "age").row(0, named=True)
    assert row["level"] is None
    assert row["sample_before"] == pytest.approx(sample["age"].mean(), rel=1e-9)
    assert row["reference"] == pytest.approx(reference["age"].mean(), rel=1e-9)
    summary = asmd_summary(table)
    assert summary["variable"].to_list() == ["sex", "edu", "age", "(all)"]
    overall = summary.row(3, named=True)
    assert overall["asmd_before"] > 0.2 > 0.02 > overall["asmd_after"]


def test_weights_total_the_reference_and_are_inverse_odds(simulated):
    sample, reference, weighted = simulated
    w = weighted.weights
    assert w.sum() == pytest.approx(reference.height, rel=1e-12)
    coef = weighted.weighting[-1].options["coefficients"]
    eta = (
        coef["(Intercept)"]
        + coef["sex=m"] * (sample["sex"] == "m").to_numpy()
        + coef["edu=mid"] * (sample["edu"] == "mid").to_numpy()
        + coef["edu=high"] * (sample["edu"] == "high").to_numpy()
        + coef["age"] * sample["age"].to_numpy()
    )
    p = expit(eta)
    odds = (1 - p) / p
    np.testing.assert_allclose(w, odds * reference.height / odds.sum(), rtol=1e-8)


def test_step_is_recorded_with_the_weights_before(simulated):
    sample, _, weighted = simulated
    step = weighted.weighting[-1]
    assert step.method == "propensity" and step.converged
    assert 1 <= step.iterations < 20
    np.testing.assert_array_equal(step.weights_before, np.ones(sample.height))
    assert any("fixed" in note and "propensity model" in note for note in step.notes)
    assert set(step.errors) == {"sex=f", "sex=m", "edu=low", "edu=mid", "edu=high", "age"}
    assert step.options["covariates"] == {
        "sex": "categorical",
        "edu": "categorical",
        "age": "numeric",
    }


# ---------------------------------------------------------------------------------------
# the fit against a direct maximization of the weighted log-likelihood


def small_case(seed: int = 3):
    rng = np.random.default_rng(seed)
    n_s, n_r = 240, 160
    sample = pl.DataFrame(
        {
            "g": rng.choice(["a", "b", "c"], n_s, p=[0.5, 0.3, 0.2]),
            "x": rng.normal(1.0, 2.0, n_s),
            "d": rng.uniform(0.5, 3.0, n_s),
        }
    )
    reference = pd.DataFrame(
        {
            "g": rng.choice(["a", "b", "c"], n_r, p=[0.3, 0.3, 0.4]),
            "x": rng.normal(0.0, 1.5, n_r),
            "rw": rng.uniform(10, 50, n_r),
        }
    )
    return sample, reference


def design_matrix(frame_g, frame_x):
    g = np.asarray(frame_g)
    return np.column_stack([np.ones(len(g)), g == "b", g == "c", np.asarray(frame_x)]).astype(float)


@pytest.mark.parametrize("penalty", [0.0, 0.7])
def test_fit_matches_scipy_minimize(penalty):
    sample, reference = small_case()
    design = SurveyDesign.from_frame(sample, weights="d")
    out = propensity_weights(design, reference, ["g", "x"], reference_weights="rw", penalty=penalty)
    coef = out.weighting[-1].options["coefficients"]
    got = np.array([coef["(Intercept)"], coef["g=b"], coef["g=c"], coef["x"]])

    x = np.vstack(
        [design_matrix(sample["g"], sample["x"]), design_matrix(reference["g"], reference["x"])]
    )
    y = np.r_[np.ones(sample.height), np.zeros(len(reference))]
    total = (sample.height + len(reference)) / 2
    d, r = sample["d"].to_numpy(), reference["rw"].to_numpy()
    v = np.r_[d * total / d.sum(), r * total / r.sum()]
    # the penalty is on the standardized numeric covariate: x = centre + sd * z
    centre = np.average(x[:, 3], weights=v)
    sd = math.sqrt(np.average((x[:, 3] - centre) ** 2, weights=v))
    z = x.copy()
    z[:, 3] = (x[:, 3] - centre) / sd

    def loss(b):
        eta = z @ b
        return np.sum(v * (np.logaddexp(0, eta) - y * eta)) + 0.5 * penalty * (b[1:] @ b[1:])

    def grad(b):
        g = z.T @ (v * (expit(z @ b) - y))
        g[1:] += penalty * b[1:]
        return g

    res = minimize(
        loss, np.zeros(4), jac=grad, method="BFGS", options={"gtol": 1e-11, "maxiter": 10_000}
    )
    b = res.x
    want = np.array([b[0] - b[3] * centre / sd, b[1], b[2], b[3] / sd])
    np.testing.assert_allclose(got, want, atol=1e-6)
    if penalty:
        unpenalized = propensity_weights(design, reference, ["g", "x"], reference_weights="rw")
        free = unpenalized.weighting[-1].options["coefficients"]
        assert abs(coef["g=c"]) < abs(free["g=c"])

    # and the weights are d * exp(-eta) scaled to the reference's weighted total
    eta_s = design_matrix(sample["g"], sample["x"]) @ got
    w = d * np.exp(-eta_s)
    np.testing.assert_allclose(out.weights, w * r.sum() / w.sum(), rtol=1e-8)
    assert out.weights.sum() == pytest.approx(r.sum(), rel=1e-12)


def test_saturated_categorical_model_reproduces_reference_shares_exactly():
    sample = SurveyDesign.from_frame(
        pl.DataFrame({"g": ["a"] * 6 + ["b"] * 3 + ["c"], "d": [1.0, 2.0] * 5}), weights="d"
    )
    reference = pl.DataFrame({"g": ["a", "b", "b", "c", "c", "c"], "w": [1, 2, 3, 4, 5, 6]})
    out = propensity_weights(sample, reference, "g", reference_weights="w")
    table = balance_table(out, reference, "g", reference_weights="w")
    np.testing.assert_allclose(table["sample_after"], table["reference"], atol=1e-12)
    np.testing.assert_allclose(table["reference"], [1 / 21, 5 / 21, 15 / 21])
    assert out.weighting[-1].max_error < 1e-10
    assert out.weights.sum() == pytest.approx(21.0)


# ---------------------------------------------------------------------------------------
# trimming


def test_trim_caps_hold_and_total_holds():
    sample, reference = pooled(40_000, seed=5)
    design = SurveyDesign.from_frame(sample)
    free = propensity_weights(design, reference, ["sex", "edu", "age"])
    ratio = free.weights.max() / free.weights.mean()
    assert ratio > 4  # the cap below binds
    out = propensity_weights(design, reference, ["sex", "edu", "age"], trim_upper=3)
    w = out.weights
    total = reference.height
    cap = 3 * total / len(w)
    assert w.sum() == pytest.approx(total, rel=1e-12)
    assert w.max() <= cap * (1 + 1e-9)
    at_cap = np.isclose(w, cap, rtol=1e-9)
    capped = int(at_cap.sum())
    assert capped >= int(np.sum(free.weights > cap))
    # the capped respondents are exactly those with the largest untrimmed weights
    assert free.weights[at_cap].min() >= free.weights[~at_cap].max()
    note = next(n for n in out.weighting[-1].notes if "capped" in n)
    assert note.startswith(f"{capped} weight(s) capped at")
    # uncapped weights keep their ratios: only a common factor changed
    free_rows = w < cap * (1 - 1e-9)
    k = w[free_rows] / free.weights[free_rows]
    np.testing.assert_allclose(k, k[0], rtol=1e-9)
    assert out.weighting[-1].options["trim_upper"] == 3


def test_trim_upper_must_exceed_one():
    sample, reference = small_case()
    design = SurveyDesign.from_frame(sample)
    with pytest.raises(WeightingError, match="trim_upper=1 must be above 1"):
        propensity_weights(design, reference, ["g"], trim_upper=1)


# ---------------------------------------------------------------------------------------
# errors a user can cause


def test_missing_covariate_value_names_the_rows():
    sample, reference = small_case()
    sample = sample.with_columns(
        x=pl.when(pl.int_range(pl.len()).is_in([3, 9])).then(None).otherwise(pl.col("x"))
    )
    design = SurveyDesign.from_frame(sample)
    with pytest.raises(WeightingError, match=r"covariate x: sample rows 4, 10 have no value"):
        propensity_weights(design, reference, ["g", "x"])
    ref = reference.copy()
    ref.loc[5, "g"] = None
    with pytest.raises(WeightingError, match=r"covariate g: reference row 6 has no value"):
        propensity_weights(SurveyDesign.from_frame(small_case()[0]), ref, ["g"])


def test_missing_indicator_makes_missing_a_level():
    sample, reference = small_case()
    sample = sample.with_columns(
        x=pl.when(pl.int_range(pl.len()) % 7 == 0).then(None).otherwise(pl.col("x")),
        g=pl.when(pl.int_range(pl.len()) % 5 == 0).then(None).otherwise(pl.col("g")),
    )
    reference = reference.copy()
    reference.loc[reference.index % 4 == 0, "x"] = np.nan
    reference.loc[reference.index % 6 == 0, "g"] = None
    design = SurveyDesign.from_frame(sample)
    out = propensity_weights(design, reference, ["g", "x"], missing="indicator")
    coef = out.weighting[-1].options["coefficients"]
    assert "g=(missing)" in coef and "x=(missing)" in coef
    table = balance_table(out, reference, ["g", "x"])
    assert table.filter(pl.col("level") == "(missing)").height == 2
    miss = table.filter((pl.col("variable") == "g") & (pl.col("level") == "(missing)"))
    # saturated in g's missingness? no, but the share moves to the reference's
    assert abs(miss["sample_after"][0] - miss["reference"][0]) < abs(
        miss["sample_before"][0] - miss["reference"][0]
    )
    # missing only in the sample: no reference row can stand for them
    with pytest.raises(WeightingError, match="covariate x: a missing value occurs in"):
        propensity_weights(design, small_case()[1], ["x"], missing="indicator")
    with pytest.raises(WeightingError, match="missing='maybe'"):
        propensity_weights(design, reference, ["x"], missing="maybe")


def test_sample_level_absent_from_reference_is_named():
    sample, reference = small_case()
    sample = sample.with_columns(
        g=pl.when(pl.int_range(pl.len()) == 7).then(pl.lit("Georgia")).otherwise(pl.col("g"))
    )
    with pytest.raises(
        WeightingError,
        match=r"covariate g: level Georgia occurs in 1 sample row\(s\) \(first: row 8\) "
        "but in no reference row",
    ):
        propensity_weights(SurveyDesign.from_frame(sample), reference, ["g"])


def test_reference_level_absent_from_sample_is_named():
    sample, reference = small_case()
    sample = sample.filter(pl.col("g") != "c")
    with pytest.raises(WeightingError, match=r"covariate g: level c occurs in the reference"):
        propensity_weights(SurveyDesign.from_frame(sample), reference, ["g"])


def test_perfect_separation_names_the_covariate():
    rng = np.random.default_rng(2)
    sample = pl.DataFrame({"age": rng.uniform(18, 40, 300), "g": rng.choice(["a", "b"], 300)})
    reference = pl.DataFrame({"age": rng.uniform(40, 80, 200), "g": rng.choice(["a", "b"], 200)})
    design = SurveyDesign.from_frame(sample)
    with pytest.raises(WeightingError, match=r"coefficient of age \(covariate age\) runs off"):
        propensity_weights(design, reference, ["g", "age"])
    # a ridge penalty keeps the coefficients finite
    out = propensity_weights(design, reference, ["g", "age"], penalty=1.0)
    assert out.weighting[-1].converged and np.all(np.isfinite(out.weights))


def test_non_convergence_is_an_error():
    sample, reference = small_case()
    design = SurveyDesign.from_frame(sample)
    with pytest.raises(WeightingError, match="did not converge in 1 iterations"):
        propensity_weights(design, reference, ["g", "x"], max_iter=1)


def test_bad_inputs_are_named():
    sample, reference = small_case()
    design = SurveyDesign.from_frame(sample)
    with pytest.raises(WeightingError, match="covariate nope is not a column of the sample"):
        propensity_weights(design, reference, ["nope"])
    with pytest.raises(WeightingError, match="covariate d is not a column of the reference"):
        propensity_weights(design, reference, ["d"])
    with pytest.raises(WeightingError, match="reference_weights='w' is not a column"):
        propensity_weights(design, reference, ["g"], reference_weights="w")
    ref = reference.copy()
    ref.loc[2, "rw"] = np.nan
    with pytest.raises(WeightingError, match="reference row 3: weight nan is missing"):
        propensity_weights(design, ref, ["g"], reference_weights="rw")
    with pytest.raises(WeightingError, match="kind 'ordinal'"):
        propensity_weights(design, reference, {"g": "ordinal"})
    with pytest.raises(WeightingError, match="type String is not numeric"):
        propensity_weights(design, reference, {"g": "numeric"})
    with pytest.raises(WeightingError, match="penalty"):
        propensity_weights(design, reference, ["g"], penalty=-1)
    constant = design.data.with_columns(k=pl.lit(1.5))
    with pytest.raises(WeightingError, match="covariate k has the same value"):
        propensity_weights(SurveyDesign.from_frame(constant), reference.assign(k=1.5), ["g", "k"])


def test_refuses_to_undo_an_earlier_calibration():
    sample, reference = small_case()
    raked = SurveyDesign.from_frame(sample).rake({"g": {"a": 10, "b": 10, "c": 10}})
    with pytest.raises(WeightingError, match="already calibrated \\(rake\\)"):
        propensity_weights(raked, reference, ["g"])


# ---------------------------------------------------------------------------------------
# inputs: pandas, designs, types, collinearity, replicates


def test_reference_as_a_design_uses_its_weights():
    sample, reference = small_case()
    design = SurveyDesign.from_frame(sample, weights="d")
    by_column = propensity_weights(design, reference, ["g", "x"], reference_weights="rw")
    ref_design = SurveyDesign.from_frame(reference, weights="rw")
    by_design = propensity_weights(design, ref_design, ["g", "x"])
    np.testing.assert_allclose(by_design.weights, by_column.weights, rtol=1e-10)
    with pytest.raises(WeightingError, match="drop reference_weights"):
        propensity_weights(design, ref_design, ["g"], reference_weights="rw")


def test_integer_levels_align_with_float_reference_columns():
    # pandas turns an integer column with a gap into floats: 2019 and 2019.0 are one level
    sample = pl.DataFrame({"year": [2019, 2019, 2020, 2021, 2021, 2021]})
    reference = pd.DataFrame({"year": [2019.0, 2020.0, 2020.0, 2021.0, np.nan]})
    design = SurveyDesign.from_frame(sample)
    out = propensity_weights(design, reference.dropna(), ["year"])
    assert list(out.weighting[-1].errors) == ["year=2019", "year=2020", "year=2021"]
    table = balance_table(out, reference.dropna(), ["year"])
    np.testing.assert_allclose(table["sample_after"], [0.25, 0.5, 0.25])
    # the same column as numbers, on request
    numeric = propensity_weights(design, reference.dropna(), {"year": "numeric"})
    assert list(numeric.weighting[-1].errors) == ["year"]


def test_boolean_and_enum_covariates():
    sample = pl.DataFrame(
        {
            "remote": [True, True, True, False],
            "size": pl.Series(["small", "big", "big", "small"]).cast(pl.Enum(["small", "big"])),
        }
    )
    reference = pl.DataFrame(
        {
            "remote": [True, False, False, False, True, False],
            "size": ["big", "small", "big", "small", "small", "big"],
        }
    )
    out = propensity_weights(SurveyDesign.from_frame(sample), reference, ["remote", "size"])
    coef = out.weighting[-1].options["coefficients"]
    assert list(coef) == ["(Intercept)", "remote=True", "size=big"]  # Enum order kept


def test_collinear_covariates_are_noted_and_do_not_change_the_weights():
    sample, reference = small_case()
    design = SurveyDesign.from_frame(sample.with_columns(g2=pl.col("g")))
    single = propensity_weights(design, reference, ["g"])
    double = propensity_weights(design, reference.assign(g2=reference["g"]), ["g", "g2"])
    np.testing.assert_allclose(double.weights, single.weights, rtol=1e-8)
    assert any("not identified" in note for note in double.weighting[-1].notes)


def test_replicate_weights_get_the_same_adjustment():
    sample, reference = small_case()
    design = SurveyDesign.from_frame(sample.with_row_index("id"), ids="id", weights="d")
    rep = design.with_replicates("JK1")
    out = propensity_weights(rep, reference, ["g", "x"])
    factor = out.weights / rep.weights
    np.testing.assert_allclose(
        out.replicates.weights, rep.replicates.weights * factor[:, None], rtol=1e-12
    )
    assert any("replicate" in note for note in out.weighting[-1].notes)


def test_zero_weight_rows_stay_at_zero():
    sample, reference = small_case()
    sample = sample.with_columns(d=pl.when(pl.int_range(pl.len()) < 3).then(0.0).otherwise(1.0))
    out = propensity_weights(SurveyDesign.from_frame(sample, weights="d"), reference, ["g"])
    assert np.all(out.weights[:3] == 0) and np.all(out.weights[3:] > 0)


# ---------------------------------------------------------------------------------------
# the balance table


def test_balance_table_before_is_the_weights_before_propensity():
    sample, reference = small_case()
    design = SurveyDesign.from_frame(sample, weights="d")
    before = balance_table(design, reference, ["g", "x"], reference_weights="rw")
    # without a propensity step, before and after are both the design's weights
    np.testing.assert_allclose(before["sample_before"], before["sample_after"])
    out = propensity_weights(design, reference, ["g", "x"], reference_weights="rw")
    table = balance_table(out, reference, ["g", "x"], reference_weights="rw")
    np.testing.assert_allclose(table["sample_before"], before["sample_before"])
    np.testing.assert_allclose(table["asmd_before"], before["asmd_before"])

    # by hand: shares and means with the design weights, reference SD as the scale
    d, r = sample["d"].to_numpy(), reference["rw"].to_numpy()
    share_s = np.array([d[sample["g"].to_numpy() == k].sum() for k in "abc"]) / d.sum()
    share_r = np.array([r[reference["g"].to_numpy() == k].sum() for k in "abc"]) / r.sum()
    asmd = np.abs(share_s - share_r) / np.sqrt(share_r * (1 - share_r))
    np.testing.assert_allclose(table["asmd_before"][:3], asmd, rtol=1e-12)
    xs, xr = sample["x"].to_numpy(), reference["x"].to_numpy()
    mr = np.average(xr, weights=r)
    sdr = math.sqrt(np.average((xr - mr) ** 2, weights=r))
    assert table["asmd_before"][3] == pytest.approx(abs(np.average(xs, weights=d) - mr) / sdr)
    w = out.weights
    assert table["asmd_after"][3] == pytest.approx(abs(np.average(xs, weights=w) - mr) / sdr)
    assert table.columns == [
        "variable",
        "level",
        "sample_before",
        "sample_after",
        "reference",
        "asmd_before",
        "asmd_after",
    ]


def test_balance_table_shows_levels_only_one_side_has():
    sample = SurveyDesign.from_frame(pl.DataFrame({"g": ["a", "a", "z"]}))
    reference = pl.DataFrame({"g": ["a", "b", "b", None]})
    table = balance_table(sample, reference, ["g"])
    assert table["level"].to_list() == ["a", "b", "z", "(missing)"]
    z = table.row(2, named=True)
    assert z["reference"] == 0 and z["asmd_before"] == math.inf
