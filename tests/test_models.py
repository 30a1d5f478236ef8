"""Design-based regression against R's svyglm and regTermTest.

The expected values are in ``fixtures/reference/glm_cases.json``, written by
``fixtures/reference/make_glm_cases.R`` (its header gives the schema) with R's default
``glm.control``: volna follows ``glm.fit`` step by step and stops at the same iterate,
so even the iterative fits agree to about 1e-12 (asserted at 1e-6 and 1e-5).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from volna.design import SurveyDesign
from volna.models import ModelError, parse_formula

REFERENCE = Path(__file__).parent / "fixtures" / "reference"
FIXTURE = json.loads((REFERENCE / "glm_cases.json").read_text())
CASES = FIXTURE["cases"]
OLR_CASES = FIXTURE["olr_cases"]

#: relative tolerance: closed-form fits (gaussian) and iterative ones (IRLS)
REL_EXACT = 1e-6
REL_ITERATIVE = 1e-5
#: R's rake() stops after ten sweeps (epsilon one weight unit); volna converges fully
#: (with rake(control = list(epsilon = 1e-12, maxit = 1000)) R agrees to 1e-12)
REL_RAKE = 1e-4


def _frame(case) -> pl.DataFrame:
    frame = pl.read_csv(REFERENCE / "data" / case["data"], null_values="", infer_schema_length=None)
    for name, spec in (case.get("derive") or {}).items():
        frame = frame.with_columns(
            (pl.col(spec["variable"]) == spec["equals"]).cast(pl.Float64).alias(name)
        )
    return frame


def _design(case) -> SurveyDesign:
    spec = case["design"]
    design = SurveyDesign.from_frame(
        _frame(case),
        ids=spec["ids"] or None,
        strata=spec["strata"],
        weights=spec["weights"],
        fpc=spec["fpc"] or None,
        lonely_psu=case.get("lonely_psu") or "fail",
        nest=bool(spec.get("nest", False)),
    )
    for step in spec.get("steps", []):
        if step["op"] == "rake":
            design = design.rake(step["margins"], variance="rake")
        elif step["op"] == "poststratify":
            design = design.poststratify(step["margins"])
        else:
            design = design.calibrate(step["auxiliary"], step["totals"], calfun="linear")
    if spec.get("replicates"):
        design = design.with_replicates(spec["replicates"])
    return design


def _fit(case):
    where = case["where"]
    return _design(case).glm(
        case["formula"],
        case["family"],
        where=None if where is None else pl.col(where["variable"]) == where["equals"],
        categorical=case.get("categorical") or (),
    )


def _close(got, want, rel, scale=0.0):
    """Relative agreement; ``scale`` (a standard error) for limits that cross zero."""
    if want is None:
        assert got is None or not math.isfinite(got)
    else:
        assert got == pytest.approx(want, rel=rel, abs=max(1e-12, rel * scale))


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_glm_agrees_with_svyglm(case):
    fit = _fit(case)
    rel = REL_EXACT if case["family"] == "gaussian" else REL_ITERATIVE
    if any(step["op"] == "rake" for step in case["design"].get("steps", [])):
        rel = REL_RAKE
    table = fit.table().to_polars()
    names = [c["name"] for c in case["coefficients"]]
    for v in case.get("categorical") or ():
        names = [n.replace(f"factor({v})", v) for n in names]  # R: factor(race)2
    assert table["coefficient"].to_list() == names
    assert fit.df_residual == case["df"]
    for row, want in zip(table.iter_rows(named=True), case["coefficients"], strict=True):
        for key in ("estimate", "se", "statistic", "p_value"):
            _close(row[key], want[key], rel)
        for key in ("ci_low", "ci_high"):
            _close(row[key], want[key], rel, scale=want["se"])
        assert row["df"] == case["df"]
    if case["dispersion"] is not None:
        _close(fit.dispersion, case["dispersion"], rel)
    for test in case["tests"]:
        df = math.inf if test["df"] == "Inf" else None
        result = fit.wald_test(test["terms"], df=df, method=test["method"])
        row = result.to_polars().row(0, named=True)
        _close(row["statistic"], test["statistic"], rel)
        _close(row["p_value"], test["p_value"], rel)
        assert row["ndf"] == test["ndf"]
        if df is None:
            assert row["ddf"] == test["ddf"]
        if test.get("lambda") is not None:
            assert row["design_effects"] == pytest.approx(test["lambda"], rel=rel)


@pytest.mark.parametrize("case", OLR_CASES, ids=[c["id"] for c in OLR_CASES])
def test_olr_agrees_with_svyolr(case):
    """R's optim stops near 1e-9 of the optimum and differentiates numerically: 1e-6."""
    where = case["where"]
    fit = _design(case).olr(
        case["formula"],
        levels=case["levels"],
        where=None if where is None else pl.col(where["variable"]) == where["equals"],
    )
    table = fit.table().to_polars()
    assert table["coefficient"].to_list() == [c["name"] for c in case["coefficients"]]
    for row, want in zip(table.iter_rows(named=True), case["coefficients"], strict=True):
        for key in ("estimate", "se", "statistic"):
            _close(row[key], want[key], REL_EXACT)


MARGIN_CASES = [c for c in CASES if c.get("margins")]


@pytest.mark.parametrize("case", MARGIN_CASES, ids=[c["id"] for c in MARGIN_CASES])
def test_predictive_margins_agree_with_svypredmeans(case):
    spec = case["margins"]
    table = _fit(case).margins(spec["variable"]).to_polars()
    got = {r["level"]: r for r in table.iter_rows(named=True)}
    assert set(got) == {m["level"] for m in spec["levels"]}
    for want in spec["levels"]:
        row = got[want["level"]]
        _close(row["estimate"], want["estimate"], REL_ITERATIVE)
        _close(row["se"], want["se"], REL_ITERATIVE)


def test_vcov_is_the_covariance_of_the_table():
    case = next(c for c in CASES if c["id"] == "G3")
    fit = _fit(case)
    table = fit.table()
    assert np.allclose(np.sqrt(np.diag(table.vcov)), table.to_polars()["se"].to_numpy())
    assert np.allclose(fit.vcov, fit.vcov.T)


def test_odds_ratios_exponentiate_estimates_and_limits():
    case = next(c for c in CASES if c["id"] == "K1")
    fit = _fit(case)
    plain, ratios = fit.table().to_polars(), fit.table(exp=True).to_polars()
    assert ratios["estimator"].unique().to_list() == ["odds ratio"]
    assert np.allclose(ratios["estimate"], np.exp(plain["estimate"]))
    assert np.allclose(ratios["ci_low"], np.exp(plain["ci_low"]))
    assert np.allclose(ratios["ci_high"], np.exp(plain["ci_high"]))
    assert plain.filter(pl.col("variable") == "sector")["level"].to_list()[0] == "arts"
    assert fit.missing > 0  # sector and fear have missing answers


def test_domain_keeps_the_full_design():
    """A domain fit equals a fit with zero-weight rows outside, not a smaller sample."""
    case = next(c for c in CASES if c["id"] == "D1")
    design = _design(case)
    fit = _fit(case)
    sub = design.subset(pl.col("sch.wide") == "Yes").glm(case["formula"])
    assert np.allclose(fit.coefficients, sub.coefficients)
    assert np.allclose(fit.vcov, sub.vcov)
    assert fit.where is not None and fit.table().to_polars()["domain"][0] == fit.where


def test_no_degrees_of_freedom_gives_no_p_value():
    case = next(c for c in CASES if c["id"] == "K2")
    table = _fit(case).table().to_polars()
    assert table["p_value"].is_nan().all()
    assert all("no_degrees_of_freedom" in f for f in table["flags"].to_list())


def test_summary_reads_like_r():
    case = next(c for c in CASES if c["id"] == "B1")
    text = _fit(case).summary()
    assert "quasibinomial model (logit link): sch_yes ~ ell + meals" in text
    assert "residual df 12" in text and "dispersion 0.96277" in text


def test_formula_terms_follow_r():
    f = parse_formula("y ~ a * b + c:a - 1 + offset(log(n))")
    assert f.terms == (("a",), ("b",), ("a", "b"), ("a", "c"))
    assert not f.intercept and f.offset == ("n", True)
    assert parse_formula("y ~ `fears/war` + x").terms == (("fears/war",), ("x",))


@pytest.mark.parametrize(
    "formula",
    ["y", "y ~", "y ~ log(x)", "y ~ x +", "y ~ (x", "y ~ x ; import os", "y + z ~ x"],
)
def test_bad_formulas_are_refused(formula):
    with pytest.raises(ModelError):
        parse_formula(formula)


def test_user_mistakes_are_volna_errors():
    design = _design(CASES[0])
    with pytest.raises(ModelError, match="family"):
        design.glm("api00 ~ ell", "gamma")
    with pytest.raises(ModelError, match="between 0 and 1"):
        design.glm("api00 ~ ell", "binomial")
    with pytest.raises(ModelError, match="not in the model"):
        design.glm("api00 ~ ell").wald_test("meals")


def test_categories_keep_their_order_and_the_first_is_the_reference():
    import pandas as pd

    frame = pd.DataFrame(
        {
            "y": [1.0, 2.0, 4.0, 3.0, 5.0, 7.0, 6.0, 8.0],
            "sector": pd.Categorical(
                ["it", "arts", "it", "law", "arts", "law", "it", "law"],
                categories=["law", "it", "arts"],
            ),
        }
    )
    fit = SurveyDesign.from_frame(frame).glm("y ~ sector")
    assert fit.names == ["(Intercept)", "sectorit", "sectorarts"]
    assert fit.coefficients[0] == pytest.approx(6.0)  # the mean of law, the reference


def test_separation_is_flagged_or_a_volna_error():
    frame = pl.DataFrame({"y": [0, 0, 0, 1, 1, 1], "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    design = SurveyDesign.from_frame(frame)
    # R warns "fitted probabilities numerically 0 or 1 occurred": a flag on every row
    fit = design.glm("y ~ x", "binomial")
    assert "fitted_probabilities_0_or_1" in fit.table().to_polars()["flags"][0].to_list()
    # where R warns "algorithm did not converge", volna stops with a reason
    with pytest.raises(ModelError, match="separate"):
        design.glm("y ~ x", "binomial", maxit=5)


def test_unused_levels_are_dropped_as_r_drops_aliased_columns():
    frame = pl.DataFrame(
        {"y": [1.0, 2.0, 4.0, 3.0, 5.0, 7.0], "g": ["a", "b", "a", "b", "a", "b"]}
    ).with_columns(pl.col("g").cast(pl.Enum(["a", "b", "c"])))
    fit = SurveyDesign.from_frame(frame).glm("y ~ g")
    assert fit.names == ["(Intercept)", "gb"]
    assert "aliased_coefficients" in fit.table().to_polars()["flags"][0].to_list()


def test_replicates_whose_refit_fails_are_dropped_as_r_drops_them():
    frame = pl.DataFrame(
        {
            "psu": [1, 1, 2, 2, 3, 3, 4, 4, 5, 5],
            "y": [1.0, 2.0, 2.5, 3.0, 4.0, 3.5, 5.0, 6.0, 5.5, 7.0],
            "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
            "g": ["rare", "a", "a", "a", "a", "a", "a", "a", "a", "a"],
        }
    )
    design = SurveyDesign.from_frame(frame, ids="psu").with_replicates("JK1")
    fit = design.glm("y ~ x + g")
    assert np.isfinite(fit.vcov).all()
    assert "replicates_dropped" in fit.table().to_polars()["flags"][0].to_list()


AME_CASES = json.loads((REFERENCE / "ame_cases.json").read_text())["cases"]


@pytest.mark.parametrize("case", AME_CASES, ids=[c["id"] for c in AME_CASES])
def test_marginal_effects_agree_with_r(case):
    """Average marginal effects and margin contrasts against R by hand (make_ame_cases.R)."""
    fit = _fit(case)
    table = fit.marginal_effects([e["variable"] for e in case["effects"]]).to_polars()
    for want, row in zip(case["effects"], table.iter_rows(named=True), strict=True):
        assert row["variable"] == want["variable"]
        _close(row["estimate"], want["estimate"], REL_EXACT)
        _close(row["se"], want["se"], REL_EXACT)
    spec = case["contrasts"]
    if spec:
        reference = spec["rows"][0]["level"].split(" - ")[1]
        got = fit.margin_contrasts(spec["variable"], reference=reference).to_polars()
        rows = {r["level"]: r for r in got.iter_rows(named=True)}
        assert set(rows) == {r["level"] for r in spec["rows"]}
        for want in spec["rows"]:
            _close(rows[want["level"]]["estimate"], want["estimate"], REL_EXACT)
            _close(rows[want["level"]]["se"], want["se"], REL_EXACT)


def test_marginal_effect_of_a_category_is_its_margin_contrast():
    case = next(c for c in AME_CASES if c["id"] == "A2")
    fit = _fit(case)
    effects = fit.marginal_effects().to_polars().filter(pl.col("variable") == "stype")
    contrasts = fit.margin_contrasts("stype").to_polars()
    assert effects["level"].to_list() == contrasts["level"].to_list()
    assert np.allclose(effects["estimate"].to_numpy(), contrasts["estimate"].to_numpy())
    with pytest.raises(ModelError, match="reference 'X' is not a level of stype"):
        fit.margin_contrasts("stype", reference="X")
    with pytest.raises(ModelError, match="not a term"):
        fit.marginal_effects("api99")
