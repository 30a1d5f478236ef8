"""Cross-tabulations, tests of association, differences, paired items and benchmarks.

Expected values come from R 4.2.2 with survey 4.1.1 on the data in
``tests/fixtures/reference/data``, read with ``read.csv`` and designed as

    dclus1 <- svydesign(id=~dnum, weights=~pw, data=apiclus1, fpc=~fpc)
    dstrat <- svydesign(id=~1, strata=~stype, weights=~pw, data=apistrat, fpc=~fpc)
    dnh <- svydesign(id=~SDMVPSU, strata=~SDMVSTRA, weights=~WTMEC2YR, nest=TRUE,
                     data=nhanes)
    jk <- as.svrepdesign(dclus1, type="JK1")

Each constant sits next to the R call that produced it (printed with ``%.15g``).
"""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from reference_data import REFERENCE, read_reference
from volna.compare import (
    ASSOCIATION_TESTS,
    UNRELIABLE_TEST_FLAGS,
    CrossTab,
    _design_effects,
    against_benchmark,
    crosstab,
    difference,
    paired_difference,
)
from volna.design import DesignError, SurveyDesign
from volna.examples import example_path
from volna.examples.generate_okrussians import generate
from volna.questionnaire import Questionnaire

REL = 1e-6


@pytest.fixture(scope="module")
def jk1(clus1: SurveyDesign) -> SurveyDesign:
    return clus1.with_replicates("JK1")


def row(est, **match) -> dict:
    rows = [r for r in est if all(r[k] == v for k, v in match.items())]
    assert len(rows) == 1, rows
    return rows[0]


# ---- tests of association: R's svychisq ----------------------------------------------

# for S in F, Chisq, Wald, adjWald, saddlepoint: svychisq(formula, design, statistic=S)
# -> statistic, parameter (ndf, ddf or df), p.value
SVYCHISQ = {
    # svychisq(~stype+awards, dstrat, statistic=S)
    "strat stype x awards": {
        "F": (14.1694081180078, [1.88513588503461, 371.371769351819], 2.08210867642843e-06),
        "Chisq": (19.4796564209589, 2, 7.01946871079347e-07),
        "Wald": (14.9443701737184, [2, 197], 9.06459269589552e-07),
        "adjWald": (14.8685104266437, [2, 196], 9.72795724989517e-07),
        "saddlepoint": (19.4796564209589, None, 4.85473291356355e-06),
    },
    # svychisq(~sch.wide+stype, dclus1, statistic=S)
    "clus1 sch.wide x stype": {
        "F": (5.19336954147488, [1.49463977770746, 20.9249568879044], 0.0217474623707969),
        "Chisq": (11.9408920807453, 2, 0.00555326330311322),
        "Wald": (2.40105860060268, [2, 14], 0.126896300602351),
        "adjWald": (2.22955441484534, [2, 13], 0.147057886901249),
        "saddlepoint": (11.9408920807453, None, 0.0264411277096376),
    },
    # svychisq(~HI_CHOL+race, dnh, statistic=S): HI_CHOL has missing values, and R's
    # Pearson X2 scales the table to all rows of the design, missing ones included
    "nhanes HI_CHOL x race": {
        "F": (3.15133862171228, [1.92297667944367, 30.7676268710987], 0.0586747436854519),
        "Chisq": (18.5844690790532, 3, 0.0238256199287605),
        "Wald": (5.86018579824913, [3, 16], 0.00672737712681041),
        "adjWald": (5.12766257346799, [3, 14], 0.013362672843579),
        "saddlepoint": (18.5844690790532, None, 0.0610324825063418),
    },
    # svychisq(~agecat+race, dnh, statistic=S): a 4 x 4 table
    "nhanes agecat x race": {
        "F": (21.1313087784302, [4.67302466001073, 74.7683945601717], 1.14521300477828e-12),
        "Chisq": (277.211614881496, 9, 3.77140164562779e-36),
        "Wald": (40.5176649400459, [9, 16], 2.48820623991192e-09),
        "adjWald": (20.258832470023, [9, 8], 0.000139244761394927),
        "saddlepoint": (277.211614881496, None, 2.18274348381715e-10),
    },
    # svychisq(~sch.wide+awards, subset(dclus1, stype=="E"), statistic=S): a domain,
    # with an empty cell (no award without meeting the school-wide target)
    "clus1 E sch.wide x awards": {
        "F": (71.1975036372617, [1, 14], 7.32512392236037e-07),
        "Chisq": (44.0330578512397, 1, 3.23196772845081e-17),
        "Wald": (5.24734719574285, [1, 14], 0.0380137713940837),
        "adjWald": (5.24734719574285, [1, 14], 0.0380137713940837),
        "saddlepoint": (44.0330578512397, None, 8.14334842381166e-07),
    },
    # svychisq(~sch.wide+stype, jk, statistic=S): replicate weights, df = degf(jk) = 14
    "JK1 sch.wide x stype": {
        "F": (4.46390538192959, [1.4197254796946, 19.8761567157244], 0.0357733990135964),
        "Chisq": (11.9408920807453, 2, 0.0115172959027779),
        "Wald": (2.40105860060269, [2, 14], 0.12689630060235),
        "adjWald": (2.22955441484535, [2, 13], 0.147057886901248),
        "saddlepoint": (11.9408920807453, None, 0.0236525648397439),
    },
}


def _table(case: str, request: pytest.FixtureRequest) -> CrossTab:
    if case.startswith("strat"):
        return crosstab(request.getfixturevalue("strat"), "stype", "awards")
    if case.startswith("nhanes HI_CHOL"):
        return crosstab(request.getfixturevalue("nhanes"), "HI_CHOL", "race")
    if case.startswith("nhanes agecat"):
        return crosstab(request.getfixturevalue("nhanes"), "agecat", "race")
    if case.startswith("clus1 E"):
        design = request.getfixturevalue("clus1")
        return crosstab(design, "sch.wide", "awards", where=pl.col("stype") == "E")
    if case.startswith("JK1"):
        return crosstab(request.getfixturevalue("jk1"), "sch.wide", "stype")
    return crosstab(request.getfixturevalue("clus1"), "sch.wide", "stype")


@pytest.mark.parametrize("case", list(SVYCHISQ))
def test_association_tests_equal_svychisq(case: str, request: pytest.FixtureRequest) -> None:
    expected = SVYCHISQ[case]
    result = _table(case, request).test(list(expected))
    assert result.column("test") == list(expected)
    for got, (name, (statistic, df, p)) in zip(result, expected.items(), strict=True):
        assert got["statistic"] == pytest.approx(statistic, rel=REL), name
        assert got["p_value"] == pytest.approx(p, rel=REL), name
        if isinstance(df, list):
            assert [got["ndf"], got["ddf"]] == pytest.approx(df, rel=REL), name
        elif df is not None:
            assert got["df"] == df, name


def test_association_tests_do_not_depend_on_which_variable_is_rows(strat) -> None:
    one = crosstab(strat, "stype", "awards").test(["F", "Chisq", "Wald", "adjWald"])
    other = crosstab(strat, "awards", "stype").test(["F", "Chisq", "Wald", "adjWald"])
    assert one.column("statistic") == pytest.approx(other.column("statistic"), rel=1e-10)
    assert one.column("p_value") == pytest.approx(other.column("p_value"), rel=1e-9)


def test_mean_generalized_design_effect_links_the_two_rao_scott_tests(clus1) -> None:
    test = crosstab(clus1, "sch.wide", "stype").test(["F", "Chisq"])
    f, chisq = list(test)
    # F = X2 / trace(Delta) and trace(Delta) = q * mean deff, with q = 2
    assert f["statistic"] == pytest.approx(chisq["statistic"] / (2 * f["deff"]), rel=1e-12)
    assert f["deff"] == chisq["deff"] > 1  # a cluster sample: a design effect above 1


def test_a_table_of_proportional_cells_has_no_association() -> None:
    frame = pl.DataFrame(
        {
            "a": ["x", "x", "y", "y"] * 3,
            "b": ["u", "v", "u", "v"] * 3,
            "psu": list(range(12)),
        }
    )
    test = crosstab(SurveyDesign.from_frame(frame, ids="psu"), "a", "b").test(["Chisq", "Wald"])
    assert test.column("statistic") == pytest.approx([0.0, 0.0], abs=1e-12)
    assert test.column("p_value") == pytest.approx([1.0, 1.0])


def test_unknown_statistic_is_an_error_naming_the_choices(clus1) -> None:
    with pytest.raises(DesignError, match=r"statistic='lincom'.*adjWald"):
        crosstab(clus1, "sch.wide", "stype").test("lincom")


def test_a_single_level_gives_no_test_and_says_why(clus1) -> None:
    test = crosstab(clus1, "sch.wide", "stype", where=pl.col("stype") == "E").test("F")
    assert math.isnan(test.value("statistic"))
    assert test.value("flags") == ["single_level"]


# ---- the tables of a cross-tabulation ------------------------------------------------


def test_cells_counts_and_column_proportions_equal_r(clus1) -> None:
    table = crosstab(clus1, "sch.wide", "stype")
    # svymean(~interaction(sch.wide, stype), dclus1)
    cells = table.cells
    assert cells.column("sch.wide") == ["No", "No", "No", "Yes", "Yes", "Yes"]
    assert cells.column("stype") == ["E", "H", "M", "E", "H", "M"]
    yes_e = row(cells, **{"sch.wide": "Yes", "stype": "E"})
    assert yes_e["estimate"] == pytest.approx(0.721311475409836, rel=REL)
    assert yes_e["se"] == pytest.approx(0.0436636662621524, rel=REL)
    no_m = row(cells, **{"sch.wide": "No", "stype": "M"})
    assert no_m["estimate"] == pytest.approx(0.0437158469945355, rel=REL)
    assert no_m["se"] == pytest.approx(0.0196531779805931, rel=REL)
    assert sum(cells.column("estimate")) == pytest.approx(1.0)
    # svytotal(~interaction(sch.wide, stype), dclus1)
    yes_h = row(table.counts, **{"sch.wide": "Yes", "stype": "H"})
    assert yes_h["estimate"] == pytest.approx(372.316959381103, rel=REL)
    assert yes_h["se"] == pytest.approx(134.039913297112, rel=REL)
    # svyby(~sch.wide, ~stype, dclus1, svymean); svyciprop(~I(sch.wide=="Yes"),
    # subset(dclus1, stype=="H")) = 0.785714285714142, CI 0.503687967865637 0.929812572364626
    h_yes = row(table.column_proportions, **{"sch.wide": "Yes", "stype": "H"})
    assert h_yes["domain"] == "stype=H"
    assert h_yes["estimate"] == pytest.approx(0.785714285714286, rel=REL)
    assert h_yes["se"] == pytest.approx(0.0914619099888493, rel=REL)
    assert [h_yes["ci_low"], h_yes["ci_high"]] == pytest.approx(
        [0.503687967865637, 0.929812572364626], rel=REL
    )


def test_row_proportions_sum_to_one_within_each_row(strat) -> None:
    rows = crosstab(strat, "stype", "awards").row_proportions.to_polars()
    sums = rows.group_by("stype").agg(pl.col("estimate").sum())
    assert sums["estimate"].to_list() == pytest.approx([1.0, 1.0, 1.0])
    assert set(rows["awards"]) == {"No", "Yes"}


def test_crosstab_leaves_out_respondents_missing_either_variable(nhanes) -> None:
    table = crosstab(nhanes, "HI_CHOL", "race")
    complete = nhanes.data.filter(pl.col("HI_CHOL").is_not_null() & pl.col("race").is_not_null())
    assert table.test("F").value("n") == complete.height
    assert sum(table.cells.column("estimate")) == pytest.approx(1.0)
    assert repr(table).startswith("CrossTab: HI_CHOL (2 levels) by race (4 levels)")


# ---- differences between domains: svyby(covmat=TRUE) + svycontrast -------------------


def test_difference_of_domain_means_equals_svycontrast(clus1, strat) -> None:
    # b <- svyby(~api00, ~stype, dclus1, svymean, covmat=TRUE)
    # svycontrast(b, c(E=1, H=-1)); confint(...)
    est = difference(clus1, "api00", "stype", ("E", "H"))
    assert est.value() == pytest.approx(30.296626984127, rel=REL)
    assert est.value("se") == pytest.approx(30.0276061918454, rel=REL)
    assert [est.value("ci_low"), est.value("ci_high")] == pytest.approx(
        [-28.556399693842, 89.149653662096], rel=REL
    )
    assert est.value("domain") == "stype=E - stype=H"
    assert est.value("p_value") == pytest.approx(
        2 * (1 - _norm_cdf(30.296626984127 / 30.0276061918454))
    )
    # svycontrast(svyby(~api00, ~stype, dstrat, svymean, covmat=TRUE), c(E=1, M=-1))
    est = difference(strat, "api00", "stype", ("E", "M"))
    assert est.value() == pytest.approx(37.8299999999999, rel=REL)
    assert est.value("se") == pytest.approx(20.4020229128539, rel=REL)
    assert est.value("first_estimate") - est.value("second_estimate") == pytest.approx(37.83)


def _norm_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def test_difference_uses_the_covariance_of_the_two_domains(clus1) -> None:
    # in a cluster sample E and H schools share PSUs: ignoring their covariance is wrong
    est = difference(clus1, "api00", "stype", ("E", "H"))
    means = clus1.mean("api00", by="stype")
    se_e, se_h = (row(means, domain=f"stype={s}")["se"] for s in ("E", "H"))
    assert est.value("se") != pytest.approx(math.hypot(se_e, se_h), rel=1e-3)


def test_difference_of_proportions_equals_svycontrast(clus1, strat) -> None:
    # b <- svyby(~I(sch.wide=="Yes"), ~stype, dclus1, svymean, covmat=TRUE)
    # svycontrast(b, c("E:I(sch.wide == \"Yes\")TRUE"=1, "M:I(sch.wide == \"Yes\")TRUE"=-1))
    est = difference(clus1, pl.col("sch.wide") == "Yes", "stype", ("E", "M"))
    assert est.value() == pytest.approx(0.236666666666667, rel=REL)
    assert est.value("se") == pytest.approx(0.119972484594939, rel=REL)
    # a categorical variable: one row per level
    # svycontrast(svyby(~awards, ~stype, dstrat, svymean, covmat=TRUE),
    #             list(No=c("E:awardsNo"=1, "H:awardsNo"=-1), Yes=...))
    est = difference(strat, "awards", "stype", ("E", "H"))
    assert est.column("level") == ["No", "Yes"]
    assert est.column("estimate") == pytest.approx([-0.41, 0.41], rel=REL)
    assert est.column("se") == pytest.approx([0.0780550998804118] * 2, rel=REL)


def test_difference_with_design_df_equals_svyttest(clus1) -> None:
    # svyttest(api00 ~ sch.wide, dclus1): t = 2.10898984779292, df = 13,
    # p = 0.0549088170890467, difference 41.3190217391304,
    # CI -1.00660613164295 83.6446496099038 (svyttest's df is degf - 1)
    est = difference(clus1, "api00", "sch.wide", ("Yes", "No"), df=clus1.degf - 1)
    assert est.value() == pytest.approx(41.3190217391304, rel=REL)
    assert est.value("statistic") == pytest.approx(2.10898984779292, rel=REL)
    assert est.value("p_value") == pytest.approx(0.0549088170890467, rel=REL)
    assert [est.value("ci_low"), est.value("ci_high")] == pytest.approx(
        [-1.00660613164295, 83.6446496099038], rel=REL
    )
    assert est.value("ci_method") == "t"


def test_difference_within_a_domain_with_its_design_df(clus1) -> None:
    # b <- svyby(~api00, ~stype, subset(dclus1, sch.wide=="Yes"), svymean, covmat=TRUE)
    # svycontrast(b, c(E=1, H=-1)); degf(subset(dclus1, sch.wide=="Yes")) = 14
    est = difference(
        clus1, "api00", "stype", ("E", "H"), where=pl.col("sch.wide") == "Yes", df="design"
    )
    assert est.value() == pytest.approx(46.1893939393939, rel=REL)
    assert est.value("se") == pytest.approx(34.937890303343, rel=REL)
    assert est.value("df") == 14


def test_difference_on_replicate_weights_equals_r(jk1) -> None:
    # svycontrast(svyby(~api00, ~stype, jk, svymean, covmat=TRUE), c(E=1, H=-1))
    est = difference(jk1, "api00", "stype", ("E", "H"))
    assert est.value() == pytest.approx(30.296626984127, rel=REL)
    assert est.value("se") == pytest.approx(37.6075156699006, rel=REL)


def test_difference_needs_two_known_domains(clus1) -> None:
    with pytest.raises(DesignError, match="level 'X' does not occur; levels are E, H, M"):
        difference(clus1, "api00", "stype", ("E", "X"))
    with pytest.raises(DesignError, match="3 domains"):
        difference(clus1, "api00", "stype")
    two = difference(clus1, "api00", "sch.wide")  # two domains: compared in order
    assert two.value("domain") == "sch.wide=No - sch.wide=Yes"


# ---- paired differences: svymean(~I(first - second)) ---------------------------------


def test_paired_difference_equals_svymean_of_the_difference(clus1, strat, jk1) -> None:
    # svymean(~I(api00-api99), dclus1); confint(...)
    est = paired_difference(clus1, "api00", "api99")
    assert est.value() == pytest.approx(37.1912568306011, rel=REL)
    assert est.value("se") == pytest.approx(3.08519696689945, rel=REL)
    assert [est.value("ci_low"), est.value("ci_high")] == pytest.approx(
        [31.144381890266, 43.2381317709362], rel=REL
    )
    assert est.value("first_estimate") - est.value("second_estimate") == pytest.approx(est.value())
    # svyby(~I(api00-api99), ~stype, dstrat, svymean)
    by = paired_difference(strat, "api00", "api99", by="stype")
    assert by.column("estimate") == pytest.approx([38.56, 8.46, 26.4], rel=REL)
    assert by.column("se") == pytest.approx(
        [2.73349417752238, 3.29153990567774, 2.97773354702901], rel=REL
    )
    # svymean(~I(api00-api99), subset(dstrat, stype=="E"))
    sub = paired_difference(strat, "api00", "api99", where=pl.col("stype") == "E")
    assert sub.value("se") == pytest.approx(2.73349417752238, rel=REL)
    # svymean(~I(api00-api99), jk)
    assert paired_difference(jk1, "api00", "api99").value("se") == pytest.approx(
        3.12507318619767, rel=REL
    )


def test_paired_test_equals_svyttest(clus1) -> None:
    # svyttest(I(api00-api99)~0, dclus1): t = 12.0547430940779, df = 13,
    # p = 1.97869275506949e-08
    est = paired_difference(clus1, "api00", "api99", df=13)
    assert est.value("statistic") == pytest.approx(12.0547430940779, rel=REL)
    assert est.value("p_value") == pytest.approx(1.97869275506949e-08, rel=REL)


def test_paired_difference_uses_only_respondents_with_both_answers() -> None:
    frame = pl.DataFrame(
        {"before": [1.0, None, 3.0, 4.0], "after": [2.0, 5.0, None, 8.0], "w": [1.0, 1, 1, 3]}
    )
    est = paired_difference(SurveyDesign.from_frame(frame, weights="w"), "after", "before")
    # rows 1 and 4: (1 * 1 + 3 * 4) / 4
    assert est.value() == pytest.approx(13 / 4)
    assert est.value("n") == 2
    assert est.value("first_estimate") == pytest.approx((2 + 24) / 4)


def test_paired_multi_response_questions_compare_each_option() -> None:
    questionnaire = Questionnaire.load(example_path("okrussians", "questionnaire.yaml"))
    pair = next(p for p in questionnaire.pairs if p.first.name == "activity_before")
    responses, _ = generate(n=400, seed=3)
    design = SurveyDesign.from_frame(responses, ids="channel")
    est = paired_difference(design, pair)
    codes = pair.first.codes
    assert est.column("variable") == [f"activity_before/{c} - activity_after/{c}" for c in codes]
    rallies = responses["activity_before/rallies"].cast(float) - responses[
        "activity_after/rallies"
    ].cast(float)
    assert row(est, variable="activity_before/rallies - activity_after/rallies")[
        "estimate"
    ] == pytest.approx(rallies.mean())


def test_paired_difference_refuses_categories(clus1) -> None:
    with pytest.raises(DesignError, match="column stype: a paired difference needs numbers"):
        paired_difference(clus1, "stype", "api00")
    with pytest.raises(DesignError, match="first has 2 variables but second has 1"):
        paired_difference(clus1, ["api00", "api99"], ["api99"])


# ---- benchmarks -----------------------------------------------------------------------


def test_benchmark_without_and_with_its_own_error(clus1) -> None:
    # m <- svymean(~api00, dclus1); z <- (coef(m) - 650)/SE(m); 2*pnorm(-abs(z))
    est = against_benchmark(clus1, "api00", 650)
    assert est.value() == pytest.approx(644.169398907104 - 650, rel=REL)
    assert est.value("statistic") == pytest.approx(-0.247665511908404, rel=REL)
    assert est.value("p_value") == pytest.approx(0.804393218143612, rel=REL)
    assert est.value("survey_estimate") == pytest.approx(644.169398907104, rel=REL)
    # z <- (coef(m) - 650)/sqrt(SE(m)^2 + 10^2): an independent benchmark with se 10
    est = against_benchmark(clus1, "api00", 650, se=10)
    assert est.value("se") == pytest.approx(25.578058895935, rel=REL)
    assert est.value("statistic") == pytest.approx(-0.227953228062305, rel=REL)
    assert est.value("p_value") == pytest.approx(0.819682601834947, rel=REL)
    # svyttest(I(api00-650)~0, dclus1): t = -0.247665511908405, df = 13, p = 0.808261949855163
    est = against_benchmark(clus1, "api00", 650, df=13)
    assert est.value("p_value") == pytest.approx(0.808261949855163, rel=REL)


def test_benchmark_of_a_proportion_and_per_domain(strat) -> None:
    # m <- svymean(~I(awards=="Yes"), dstrat): 0.638936064050578 (se 0.0344059179972689);
    # z against 0.5 = 4.03814436986122, p = 5.38756936601028e-05
    est = against_benchmark(strat, "awards", 0.5, level="Yes")
    assert est.value("survey_estimate") == pytest.approx(0.638936064050578, rel=REL)
    assert est.value("se") == pytest.approx(0.0344059179972689, rel=REL)
    assert est.value("statistic") == pytest.approx(4.03814436986122, rel=REL)
    assert est.value("p_value") == pytest.approx(5.38756936601028e-05, rel=REL)
    # one benchmark per domain; svyby(~I(awards=="Yes"), ~stype, dstrat, svymean) gives
    # 0.73, 0.32, 0.48 with se 0.04411209, 0.06439505, 0.06959660
    by = against_benchmark(strat, "awards", [0.7, 0.3, 0.5], level="Yes", by="stype")
    assert by.column("estimate") == pytest.approx([0.03, 0.02, -0.02], rel=REL)
    assert by.column("se") == pytest.approx([0.04411209, 0.06439505, 0.06959660], rel=1e-6)
    assert by.column("stype") == ["E", "H", "M"]
    with pytest.raises(DesignError, match="name the level"):
        against_benchmark(strat, "awards", 0.5)


def test_benchmark_of_an_existing_table(strat) -> None:
    means = strat.mean("api00", by="stype")
    est = against_benchmark(None, means, 650, df="design")
    assert est.column("survey_estimate") == pytest.approx(means.column("estimate"))
    assert est.column("ci_method") == ["normal"] * 3  # means carry normal intervals
    ours = against_benchmark(strat, "api00", 650, by="stype")
    assert est.column("p_value") == pytest.approx(ours.column("p_value"))


def test_difference_tables_have_the_contract_columns(clus1) -> None:
    from volna.results import COLUMNS

    for est in (
        difference(clus1, "api00", "stype", ("E", "H")),
        paired_difference(clus1, "api00", "api99"),
        against_benchmark(clus1, "api00", 650),
        crosstab(clus1, "sch.wide", "stype").test("F"),
    ):
        frame = est.to_polars()
        assert list(frame.columns[: len(COLUMNS)]) == list(COLUMNS)
        assert {"statistic", "p_value"} <= set(frame.columns)
        assert np.isfinite(frame["p_value"].to_numpy()).all()


# ---- R's "average" rule for lonely PSUs ------------------------------------------------


def test_lonely_psu_average_rule_scales_the_covariance_as_r() -> None:
    # options(survey.lonely.psu="average")
    # d <- svydesign(id=~1, strata=~dnum, weights=~pw, data=apiclus1)  # stratum 413: 1 PSU
    design = SurveyDesign.from_frame(
        read_reference("apiclus1.csv"), strata="dnum", weights="pw", lonely_psu="average"
    )
    # svycontrast(svyby(~api00, ~stype, d, svymean, covmat=TRUE), c(E=1, H=-1))
    est = difference(design, "api00", "stype", ("E", "H"))
    assert est.value("se") == pytest.approx(26.8514614662653, rel=REL)
    # svychisq(~sch.wide+stype, d, statistic="F")
    f = crosstab(design, "sch.wide", "stype").test("F")
    assert f.value("statistic") == pytest.approx(5.50235225966434, rel=REL)
    assert [f.value("ndf"), f.value("ddf")] == pytest.approx(
        [1.99218926699614, 334.687796855351], rel=REL
    )
    assert f.value("p_value") == pytest.approx(0.00450562119433889, rel=REL)
    # s <- subset(d, sch.wide=="Yes"); svychisq(~awards+stype, s, statistic="F");
    # svycontrast(svyby(~api00, ~stype, s, svymean, covmat=TRUE), c(E=1, H=-1))
    yes = pl.col("sch.wide") == "Yes"
    f = crosstab(design, "awards", "stype", where=yes).test("F")
    assert f.value("statistic") == pytest.approx(2.86514592028607, rel=REL)
    assert f.value("p_value") == pytest.approx(0.0585988744178547, rel=REL)
    est = difference(design, "api00", "stype", ("E", "H"), where=yes)
    assert est.value("se") == pytest.approx(32.1308721054799, rel=REL)


def test_a_crosstab_needs_two_variables(clus1) -> None:
    with pytest.raises(DesignError, match="column stype: a cross-tabulation needs two"):
        crosstab(clus1, "stype", "stype")


# ---- tables too large for their design -----------------------------------------------
#
# The okrussians sample is clustered by recruitment channel: 13 channels, design df 12.
# destination x sector is 37 x 8 (q = 252 free cells, 71 of 296 cells empty); R's
# svychisq algebra, Delta = solve(denom, numer), is then noise (denom is singular):
# on one machine p = 0.59, on another (another OpenBLAS kernel) statistic -0.52, deff
# -2.11 and p = 1. volna's design effects are the eigenvalues of a symmetric positive
# semi-definite matrix, so these tests hold whatever the BLAS (run under
# OPENBLAS_CORETYPE=Prescott, Sandybridge and OPENBLAS_NUM_THREADS=1).


@pytest.fixture(scope="module")
def okrussians() -> SurveyDesign:
    responses, _ = generate(n=3000, seed=4)
    return SurveyDesign.from_frame(responses, ids="channel")  # a dozen channels


def test_wald_tests_need_more_psus_than_free_cells(okrussians) -> None:
    test = crosstab(okrussians, "destination", "sector").test(["F", "Wald", "adjWald"])
    f, wald, adj = list(test)
    assert okrussians.degf == 12 < wald["ndf"] == 252
    assert math.isnan(wald["statistic"]) and math.isnan(adj["p_value"])
    assert wald["flags"] == adj["flags"] == ["too_few_psus", "singular_covariance"]
    # what a reader relies on: the Rao-Scott test says it is unreliable, and its numbers
    # are numbers (a design effect is never negative, a p-value is a probability)
    assert f["flags"] == ["too_few_psus", "singular_design_effects"]
    assert f["deff"] > 0 and f["statistic"] > 0 and 0 <= f["p_value"] <= 1
    assert set(f["flags"]) <= UNRELIABLE_TEST_FLAGS


def test_design_effects_of_a_singular_table_are_not_rounding_noise(okrussians) -> None:
    table = crosstab(okrussians, "destination", "sector")
    deffs = table._association().deffs
    # 252 free cells, 219 of them with a cell not empty to estimate a design effect; the
    # covariance of the table comes from 13 channels, so at most 12 are not zero
    assert len(deffs) == 219
    assert deffs.min() >= 0
    assert np.sum(deffs > 1e-8 * deffs.max()) <= okrussians.degf
    # the same design effects whichever variable is the rows (another basis of the free
    # cells: solve() on the singular matrix gave another trace)
    one = table.test(["F", "Chisq", "saddlepoint"])
    other = crosstab(okrussians, "sector", "destination").test(["F", "Chisq", "saddlepoint"])
    for name in ("statistic", "ndf", "ddf", "p_value", "deff"):
        assert one.column(name) == pytest.approx(other.column(name), rel=1e-8, nan_ok=True)


def test_chisq_keeps_q_degrees_of_freedom_and_the_mean_of_the_estimable_deffs(okrussians):
    table = crosstab(okrussians, "destination", "sector")
    deffs = table._association().deffs
    f, chisq = list(table.test(["F", "Chisq"]))
    # X2 sums over all 252 free cells: the 33 whose design effect cannot be estimated
    # are given the mean of the 219 that can
    assert chisq["df"] == 252
    assert chisq["deff"] == f["deff"] == pytest.approx(deffs.mean(), rel=1e-12)
    assert f["statistic"] == pytest.approx(chisq["statistic"] / (252 * f["deff"]), rel=1e-12)
    weights = np.concatenate([deffs, np.full(252 - 219, deffs.mean())])
    assert f["ndf"] == pytest.approx(weights.sum() ** 2 / np.sum(weights**2), rel=1e-10)
    assert f["ddf"] == pytest.approx(12 * f["ndf"], rel=1e-12)


def test_covariance_not_positive_semidefinite_is_flagged_not_negative() -> None:
    # a 2 x 2 table (one free cell) whose "covariance" has a negative variance
    contrasts = np.array([[0.25], [-0.25], [-0.25], [0.25]])
    p = np.full(4, 0.25)
    v_p = -np.eye(4) * 1e-4
    deffs, negative = _design_effects(contrasts, p, v_p, 100.0)
    assert negative and deffs.tolist() == [0.0]
    deffs, negative = _design_effects(contrasts, p, -v_p, 100.0)
    assert not negative and deffs[0] > 0


# ---- what R's svychisq returns on these tables -----------------------------------------

SINGULAR_CASES = json.loads((REFERENCE / "svychisq_singular.json").read_text())


def _r_results(rows: str, columns: str) -> dict[str, dict]:
    case = next(c for c in SINGULAR_CASES["cases"] if (c["rows"], c["columns"]) == (rows, columns))
    return {r["test"]: r for r in case["results"]}


@pytest.fixture(scope="module")
def okrussians_csv() -> SurveyDesign:
    # the rows R read (make_svychisq_singular_cases.R): generate(n=3000, seed=4)
    data = read_reference(SINGULAR_CASES["data"])
    return SurveyDesign.from_frame(data, ids="channel")


def test_the_r_data_are_the_generated_sample() -> None:
    responses, _ = generate(n=3000, seed=4)
    data = read_reference(SINGULAR_CASES["data"])
    assert data.equals(responses.select(data.columns))


def test_svychisq_on_too_few_psus_stops_where_volna_flags(okrussians_csv) -> None:
    """destination x sector: 252 free cells, 12 design df, 71 empty cells.

    R stops on every statistic ("system is computationally singular": solve() on a
    denominator matrix made singular by the empty cells, and on the covariance of the
    free cells, whose rank is at most 12). volna answers the Rao-Scott tests with
    design effects that are never negative -- 219 estimable free cells, at most 12 of
    them not zero -- and flags the rows so that a report shows the test as unreliable
    rather than a p-value; the Wald tests are NaN, as R's are errors. A user gets an
    answer that says what is wrong with it instead of a stop (or, via solve() without
    R's condition check, rounding noise).
    """
    r = _r_results("destination", "sector")
    assert SINGULAR_CASES["degf"] == okrussians_csv.degf == 12
    for name in ("F", "Chisq", "Wald", "adjWald", "saddlepoint", "lincom"):
        assert r[name]["error"].startswith("system is computationally singular"), name
    test = crosstab(okrussians_csv, "destination", "sector")
    got = {row["test"]: row for row in test.test(list(ASSOCIATION_TESTS.values()))}
    for name in ("F", "Chisq", "saddlepoint"):
        assert got[name]["flags"] == ["too_few_psus", "singular_design_effects"], name
        assert got[name]["deff"] > 0 and 0 <= got[name]["p_value"] <= 1, name
    for name in ("Wald", "adjWald"):
        assert got[name]["flags"] == ["too_few_psus", "singular_covariance"], name
        assert math.isnan(got[name]["p_value"]), name


def test_svychisq_with_fewer_psus_than_free_cells_agrees_but_is_flagged(okrussians_csv):
    """sector x plans: 21 free cells, 12 design df, no empty cell.

    The denominator matrix is of full rank, so R's F and Chisq are sound arithmetic and
    volna equals them; only 12 of the 21 design effects can be non-zero, which R does
    not say and volna flags (``too_few_psus``). R's Wald tests stop (singular
    covariance), volna's are NaN and flagged. R's saddlepoint stops ("Non-numeric
    argument to mathematical function": eigen() of its non-symmetric Delta returns
    complex values when nine eigenvalues are zero up to rounding); volna's eigenvalues
    are real and non-negative, so it returns one, flagged as the others.
    """
    r = _r_results("sector", "plans")
    test = crosstab(okrussians_csv, "sector", "plans")
    got = {row["test"]: row for row in test.test(list(ASSOCIATION_TESTS.values()))}
    for name in ("F", "Chisq"):
        assert got[name]["statistic"] == pytest.approx(r[name]["statistic"], rel=REL), name
        assert got[name]["p_value"] == pytest.approx(r[name]["p_value"], rel=REL), name
        assert got[name]["flags"] == ["too_few_psus"], name
    assert [got["F"]["ndf"], got["F"]["ddf"]] == pytest.approx(r["F"]["parameter"], rel=REL)
    assert got["Chisq"]["df"] == r["Chisq"]["parameter"] == 21
    for name in ("Wald", "adjWald"):
        assert r[name]["error"].startswith("system is computationally singular"), name
        assert math.isnan(got[name]["statistic"]), name
        assert "singular_covariance" in got[name]["flags"], name
    assert r["saddlepoint"]["error"] == "Non-numeric argument to mathematical function"
    assert 0 <= got["saddlepoint"]["p_value"] <= 1
    assert got["saddlepoint"]["flags"] == ["too_few_psus"]


def test_svychisq_on_a_table_the_design_can_carry_equals_r(okrussians_csv) -> None:
    # sector x tickets_rules: 7 free cells, 12 design df, no empty cell: every test as R
    r = _r_results("sector", "tickets_rules")
    test = crosstab(okrussians_csv, "sector", "tickets_rules")
    names = ["F", "Chisq", "Wald", "adjWald", "saddlepoint"]
    for got in test.test(names):
        expected = r[got["test"]]
        assert got["statistic"] == pytest.approx(expected["statistic"], rel=REL)
        assert got["p_value"] == pytest.approx(expected["p_value"], rel=REL)
        assert got["flags"] == []
        df = [got["ndf"], got["ddf"]] if got["test"] in ("F", "Wald", "adjWald") else got["df"]
        if expected.get("parameter") is not None:  # none for the saddlepoint
            assert df == pytest.approx(expected["parameter"], rel=REL)
    # without CompQuadForm R's "lincom" is the saddlepoint approximation
    assert r["lincom"]["p_value"] == r["saddlepoint"]["p_value"]
