"""Multi-response sets: shares among answerers, options chosen, covariance and tests.

The R values use the api data with a made-up "select all that apply" set of four
options and a set answered by schools whose ``snum`` is not a multiple of 5:

    prep <- function(df) {
      ans <- (df$snum %% 5) != 0
      df$answered <- as.numeric(ans)
      df$o1 <- ifelse(ans, as.numeric(df$awards=="Yes"), 0)
      df$o2 <- ifelse(ans, as.numeric(df$sch.wide=="Yes"), 0)
      df$o3 <- ifelse(ans, as.numeric(df$comp.imp=="Yes"), 0)
      df$o4 <- ifelse(ans, as.numeric(df$yr.rnd=="Yes"), 0)
      df$nchosen <- df$o1 + df$o2 + df$o3 + df$o4
      df
    }
    dstrat <- svydesign(id=~1, strata=~stype, weights=~pw, data=prep(apistrat), fpc=~fpc)
    dclus1 <- svydesign(id=~dnum, weights=~pw, data=prep(apiclus1), fpc=~fpc)
    a <- subset(d, answered == 1)  # d = dstrat or dclus1

R 4.2.2, survey 4.1.1; constants printed with ``%.15g``.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from reference_data import read_reference
from volna.compare import difference
from volna.design import DesignError, SurveyDesign
from volna.examples import example_path
from volna.examples.generate_okrussians import generate
from volna.multiresponse import (
    ResponseSet,
    option_difference,
    option_shares,
    options_chosen,
    profile_test,
)
from volna.questionnaire import Question, Questionnaire

REL = 1e-6
OPTIONS = ["o/o1", "o/o2", "o/o3", "o/o4"]


def prepared(name: str) -> pl.DataFrame:
    frame = read_reference(name)
    answered = (pl.col("snum") % 5) != 0
    return frame.with_columns(
        pl.when(answered).then(pl.col(source) == "Yes").alias(option)
        for option, source in zip(
            OPTIONS, ["awards", "sch.wide", "comp.imp", "yr.rnd"], strict=True
        )
    )


@pytest.fixture(scope="module")
def strat() -> SurveyDesign:
    return SurveyDesign.from_frame(
        prepared("apistrat.csv"), strata="stype", weights="pw", fpc="fpc"
    )


@pytest.fixture(scope="module")
def clus1() -> SurveyDesign:
    return SurveyDesign.from_frame(prepared("apiclus1.csv"), ids="dnum", weights="pw", fpc="fpc")


@pytest.fixture(scope="module")
def okrussians() -> tuple[SurveyDesign, Questionnaire]:
    responses, _ = generate(n=600, seed=11)
    questionnaire = Questionnaire.load(example_path("okrussians", "questionnaire.yaml"))
    return SurveyDesign.from_frame(responses, ids="channel"), questionnaire


# ---- against a hand computation --------------------------------------------------------

TINY = pl.DataFrame(
    {
        "w": [1.0, 2.0, 1.0, 3.0, 1.0, 2.0],
        "g": ["a", "a", "a", "b", "b", "b"],
        "fears/war": [True, True, False, None, True, False],
        "fears/prison": [False, True, False, None, True, None],  # a partial record
        "fears/none": [False, False, True, None, False, False],
    }
)


def test_shares_are_weighted_shares_of_answerers() -> None:
    design = SurveyDesign.from_frame(TINY, weights="w")
    est = option_shares(design, ["fears/war", "fears/prison", "fears/none"])
    # answerers: every row but the fourth, weights 1, 2, 1, 1, 2 (sum 7); a partial
    # record (prison unknown in the last row) counts as not chosen
    assert est.column("variable") == ["fears"] * 3
    assert est.column("level") == ["war", "prison", "none"]
    assert est.column("estimate") == pytest.approx([4 / 7, 3 / 7, 1 / 7])
    assert est.column("n") == [3, 2, 1]
    assert est.column("missing") == [1, 1, 1]  # the respondent who skipped the set
    assert est.where == "answered fears"
    by = option_shares(design, ["fears/war", "fears/prison"], by="g")
    assert by.column("domain") == ["g=a", "g=b", "g=a", "g=b"]  # option by option
    war_b = next(r for r in by if r["level"] == "war" and r["domain"] == "g=b")
    assert war_b["estimate"] == pytest.approx(1 / 3)
    assert war_b["missing"] == 1


def test_options_chosen_counts_substantive_options_only() -> None:
    design = SurveyDesign.from_frame(TINY, weights="w")
    columns = ["fears/war", "fears/prison", "fears/none"]
    # options ticked by the answerers (weights 1, 2, 1, 1, 2): 1, 2, 1 ("none"), 2, 0
    everything = options_chosen(design, columns)
    assert everything.value() == pytest.approx((1 + 2 * 2 + 1 + 2 + 0) / 7)
    # "none of these" is an exclusive option: ticked alone, it means zero options
    fears = ResponseSet("fears", tuple(columns), ("war", "prison", "none"), exclusive=("none",))
    assert options_chosen(design, fears).value() == pytest.approx((1 + 2 * 2 + 0 + 2 + 0) / 7)


def test_option_difference_is_the_mean_of_the_paired_indicators() -> None:
    design = SurveyDesign.from_frame(TINY, weights="w")
    est = option_difference(design, ["fears/war", "fears/prison"], "war", "prison")
    assert est.value() == pytest.approx(1 / 7)
    # the same thing as a mean of (war - prison) over the answerers
    answered = TINY["fears/war"].is_not_null()
    d = TINY["fears/war"].cast(float) - TINY["fears/prison"].fill_null(False).cast(float)
    frame = TINY.with_columns(d=pl.when(answered).then(d))
    mean = SurveyDesign.from_frame(frame, weights="w").mean("d")
    assert est.value("se") == pytest.approx(mean.value("se"), rel=1e-12)


# ---- against R -------------------------------------------------------------------------


# svyratio(~o1+o2+o3+o4, ~answered, d, covmat=TRUE): coef, SE, vcov
SVYRATIO = {
    "strat": (
        [0.645214802941614, 0.810796028794867, 0.66649603490469, 0.120537456764418],
        [0.0381060562445679, 0.0291694281706305, 0.0370355456284526, 0.0294723284563582],
        [
            [0.00145207152251417, 0.000674583637324958, 0.00132792052124481, 0.000251413918484541],
            [
                0.000674583637324958,
                0.000850855539801573,
                0.000524635131989871,
                9.87718420695776e-05,
            ],
            [0.00132792052124481, 0.000524635131989871, 0.00137163163999719, 0.000225894713373849],
            [
                0.000251413918484541,
                9.87718420695776e-05,
                0.000225894713373849,
                0.000868618144639462,
            ],
        ],
    ),
    "clus1": (
        [0.70945945945946, 0.878378378378378, 0.722972972972973, 0.0472972972972973],
        [0.0307845686000998, 0.0255163012199389, 0.0296879602478905, 0.0274510689454276],
        [
            [
                0.00094768966389425,
                0.000662034844866068,
                0.000876541909548018,
                -0.000271532086101715,
            ],
            [
                0.000662034844866068,
                0.000651081627946657,
                0.00064620477596895,
                -0.000104970517703296,
            ],
            [
                0.000876541909548018,
                0.00064620477596895,
                0.000881374983680324,
                -0.000143928422325934,
            ],
            [
                -0.000271532086101715,
                -0.000104970517703296,
                -0.000143928422325934,
                0.000753561186246619,
            ],
        ],
    ),
}


@pytest.mark.parametrize("name", ["strat", "clus1"])
def test_shares_and_their_covariance_equal_svyratio(name, request) -> None:
    design = request.getfixturevalue(name)
    coef, se, vcov = SVYRATIO[name]
    est = option_shares(design, OPTIONS)
    assert est.column("estimate") == pytest.approx(coef, rel=REL)
    assert est.column("se") == pytest.approx(se, rel=REL)
    np.testing.assert_allclose(est.vcov, np.array(vcov), rtol=REL)


def test_shares_by_group_equal_svyby(strat) -> None:
    # svyby(~o1+o2+o3+o4, ~stype, a, svymean): o1 and o4 in E, H, M
    est = option_shares(strat, OPTIONS, by="stype")
    o1 = [r for r in est if r["level"] == "o1"]
    assert [r["estimate"] for r in o1] == pytest.approx(
        [0.75, 0.325581395348837, 0.476190476190476], rel=REL
    )
    assert [r["se"] for r in o1] == pytest.approx(
        [0.0493523819427944, 0.0697538813454519, 0.0759107276559767], rel=REL
    )
    o4 = [r for r in est if r["level"] == "o4"]
    assert [r["se"] for r in o4] == pytest.approx(
        [0.0415599005834058, 0.0224352031632142, 0.0323684430306598], rel=REL
    )
    assert est.vcov.shape == (12, 12)


def test_options_chosen_equals_svymean(strat, clus1) -> None:
    # svymean(~nchosen, a)
    strat_mean = options_chosen(strat, OPTIONS)
    assert strat_mean.value() == pytest.approx(2.24304432340559, rel=REL)
    assert strat_mean.value("se") == pytest.approx(0.10368035675058, rel=REL)
    assert options_chosen(clus1, OPTIONS).value("se") == pytest.approx(0.0810086937943825, rel=REL)


def test_option_difference_equals_svycontrast(strat, clus1) -> None:
    # svycontrast(svyratio(~o1+o2+o3+o4, ~answered, d, covmat=TRUE), c(1, 0, -1, 0))
    est = option_difference(strat, OPTIONS, "o1", "o3")
    assert est.value() == pytest.approx(-0.0212812319630755, rel=REL)
    assert est.value("se") == pytest.approx(0.0129561614694223, rel=REL)
    assert est.value("level") == "o1 - o3"
    est = option_difference(clus1, OPTIONS, "o1", "o3")
    assert est.value() == pytest.approx(-0.0135135135135134, rel=REL)
    assert est.value("se") == pytest.approx(0.0087166982555632, rel=REL)
    # svyby(~I(o1-o3), ~stype, a, svymean) on dclus1
    by = option_difference(clus1, OPTIONS, "o1", "o3", by="stype")
    assert by.column("estimate") == pytest.approx(
        [-0.00869565217391304, -0.0769230769230769, 0.0], rel=REL, abs=1e-15
    )
    assert by.column("se") == pytest.approx(
        [0.00944412341268867, 0.0658703428046904, 0.0], rel=REL, abs=1e-15
    )
    assert "zero_variance" in by.column("flags")[2]


def test_replicate_weights_go_through_the_same_path(clus1) -> None:
    jk = clus1.with_replicates("JK1")
    # jk <- as.svrepdesign(dclus1, type="JK1")
    # svyratio(~o1+o3, ~answered, jk, covmat=TRUE); svycontrast(r, c(1, -1))
    est = option_shares(jk, ["o/o1", "o/o3"])
    assert est.column("se") == pytest.approx([0.0313291836756457, 0.0296866272023826], rel=REL)
    diff = option_difference(jk, OPTIONS, "o1", "o3")
    assert diff.value("se") == pytest.approx(0.00898456473574568, rel=REL)


# ---- the profile test ------------------------------------------------------------------

# b <- svyby(~o1+o2+o3+o4, ~stype, a, svymean, covmat=TRUE)
# y <- svycontrast(b, <H - E and M - E for each option>)
# X2 <- coef(y) %*% ginv(vcov(y)) %*% coef(y); q <- qr(vcov(y))$rank; nu <- degf(a)
# Wald: X2/q on F(q, nu); adjWald: X2 (nu - q + 1)/(q nu) on F(q, nu - q + 1);
# Chisq: pchisq(X2, q, lower.tail=FALSE)
PROFILE = {
    "strat": {
        "X2": 46.0558694916285,
        "q": 8,
        "nu": 158,
        "Wald": (5.75698368645357, 1.94304251895992e-06),
        "adjWald": (5.50192744718031, 4.19172779145379e-06),
        "Chisq": (46.0558694916285, 2.31956329291753e-07),
    },
    # option o4 (year-round schools) is never chosen by H and M schools: its two
    # contrasts are both -p(E), so the contrast covariance has rank 7, not 8
    "clus1": {
        "X2": 29.156834147115,
        "q": 7,
        "nu": 14,
        "Wald": (4.16526202101643, 0.0111542300484876),
        "adjWald": (2.3801497262951, 0.123777706714056),
        "Chisq": (29.156834147115, 0.000135461961065676),
    },
}


@pytest.mark.parametrize("name", ["strat", "clus1"])
def test_profile_test_equals_the_wald_test_of_svycontrasts(name, request) -> None:
    design = request.getfixturevalue(name)
    expected = PROFILE[name]
    est = profile_test(design, OPTIONS, "stype", statistic=["Wald", "adjWald", "Chisq"])
    q, nu = expected["q"], expected["nu"]
    wald, adj, chisq = list(est)
    assert (wald["ndf"], wald["ddf"]) == (q, nu)
    assert (adj["ndf"], adj["ddf"]) == (q, nu - q + 1)
    assert chisq["df"] == q
    for got, key in zip((wald, adj, chisq), ("Wald", "adjWald", "Chisq"), strict=True):
        statistic, p = expected[key]
        assert got["statistic"] == pytest.approx(statistic, rel=REL), key
        assert got["p_value"] == pytest.approx(p, rel=REL), key
    assert wald["compared"] == "stype=E, stype=H, stype=M"


def test_profile_test_equals_a_hand_written_wald_test(strat) -> None:
    shares = option_shares(strat, OPTIONS, by="stype")
    theta = np.array(shares.column("estimate"))
    V = shares.vcov
    # option-major rows: o1 E, o1 H, o1 M, o2 E, ...; contrasts against E
    C = []
    for k in range(4):
        for g in (1, 2):
            c = np.zeros(12)
            c[3 * k + g], c[3 * k] = 1.0, -1.0
            C.append(c)
    C = np.array(C)
    y = C @ theta
    x2 = y @ np.linalg.solve(C @ V @ C.T, y)
    got = profile_test(strat, OPTIONS, "stype", statistic="Chisq")
    assert got.value("statistic") == pytest.approx(x2, rel=1e-10)


def test_identical_groups_have_identical_profiles() -> None:
    frame = prepared("apistrat.csv")
    twice = pl.concat(
        [frame.with_columns(group=pl.lit("first")), frame.with_columns(group=pl.lit("second"))]
    ).with_columns(psu=pl.int_range(pl.len()))
    design = SurveyDesign.from_frame(twice, ids="psu", weights="pw")
    est = profile_test(design, OPTIONS, "group", statistic=["adjWald", "Chisq"])
    assert est.column("statistic") == pytest.approx([0.0, 0.0], abs=1e-20)
    assert est.column("p_value") == pytest.approx([1.0, 1.0])


def test_profile_test_does_not_depend_on_group_or_option_order(clus1) -> None:
    one = profile_test(clus1, OPTIONS, "stype")
    reordered = clus1.data.with_columns(
        pl.col("stype").cast(pl.Enum(["M", "H", "E"])).alias("stype_reversed")
    )
    other_design = SurveyDesign.from_frame(reordered, ids="dnum", weights="pw", fpc="fpc")
    other = profile_test(other_design, OPTIONS[::-1], "stype_reversed")
    assert other.value("statistic") == pytest.approx(one.value("statistic"), rel=1e-9)
    assert other.value("p_value") == pytest.approx(one.value("p_value"), rel=1e-9)


def test_one_option_two_groups_is_the_squared_difference_test(strat) -> None:
    where = pl.col("stype") != "M"
    est = profile_test(strat, ["o/o1"], "stype", where=where, statistic="Chisq")
    answered = pl.col("o/o1").is_not_null()
    diff = difference(strat, "o/o1", "stype", ("H", "E"), where=where & answered)
    assert est.value("statistic") == pytest.approx(diff.value("statistic") ** 2, rel=1e-9)
    assert est.value("df") == 1
    # R: svycontrast(svyby(~o1, ~stype, a, svymean, covmat=TRUE), H - E) on dstrat:
    # -0.424418604651163 with se 0.0854474198919011
    assert diff.value() == pytest.approx(-0.424418604651163, rel=REL)
    assert diff.value("se") == pytest.approx(0.0854474198919011, rel=REL)


def test_profile_test_needs_two_groups_and_a_known_statistic(strat) -> None:
    est = profile_test(strat, OPTIONS, "stype", where=pl.col("stype") == "E")
    assert math.isnan(est.value("statistic"))
    assert "single_group" in est.value("flags")
    with pytest.raises(DesignError, match="not a profile test"):
        profile_test(strat, OPTIONS, "stype", statistic="F")


# ---- questionnaires and mistakes -------------------------------------------------------


def test_a_questionnaire_question_is_a_response_set(okrussians) -> None:
    design, questionnaire = okrussians
    fears = questionnaire["fears"]
    rs = ResponseSet.of(fears)
    assert rs.columns[0] == "fears/persecution" and rs.exclusive == ("none",)
    by_question = option_shares(design, fears)
    by_columns = option_shares(design, list(fears.columns))
    assert by_question.column("estimate") == pytest.approx(by_columns.column("estimate"))
    assert by_question.column("level") == list(fears.codes)
    # "none of these" is never chosen with another option, so without it the mean
    # count is the mean count of all options minus the share choosing "none"
    with_none = options_chosen(design, list(fears.columns)).value()
    none_share = by_question.column("estimate")[-1]
    assert options_chosen(design, fears).value() == pytest.approx(with_none - none_share)
    test = profile_test(design, fears, "destination")
    assert 0 <= test.value("p_value") <= 1


def test_mistakes_are_named(strat, okrussians) -> None:
    _, questionnaire = okrussians
    single = next(q for q in questionnaire if isinstance(q, Question) and q.type == "single")
    with pytest.raises(DesignError, match=f"question {single.name}: type 'single'"):
        option_shares(strat, single)
    with pytest.raises(DesignError, match="column stype: an option of a multi-response set"):
        option_shares(strat, ["stype", "o/o1"])
    with pytest.raises(DesignError, match="set o: no option 'o9'"):
        option_difference(strat, OPTIONS, "o1", "o9")
    with pytest.raises(DesignError, match="listed twice"):
        option_shares(strat, ["o/o1", "o/o1"])


def test_lonely_psu_average_rule_reaches_the_covariance_of_shares() -> None:
    # options(survey.lonely.psu="average")
    # d <- svydesign(id=~1, strata=~dnum, weights=~pw, data=prep(apiclus1))
    # r <- svyratio(~o1+o3, ~answered, d, covmat=TRUE); SE(r); svycontrast(r, c(1, -1))
    design = SurveyDesign.from_frame(
        prepared("apiclus1.csv"), strata="dnum", weights="pw", lonely_psu="average"
    )
    shares = option_shares(design, ["o/o1", "o/o3"])
    assert shares.column("se") == pytest.approx([0.0386525341477327, 0.0378926882949581], rel=REL)
    assert np.sqrt(np.diag(shares.vcov)) == pytest.approx(shares.column("se"), rel=1e-12)
    est = option_difference(design, OPTIONS, "o1", "o3")
    assert est.value() == pytest.approx(-0.0135135135135134, rel=REL)
    assert est.value("se") == pytest.approx(0.00986924897566156, rel=REL)


def test_profile_test_with_few_psus_uses_the_estimable_contrasts(okrussians) -> None:
    design, questionnaire = okrussians
    # 5 options x (destinations - 1) contrasts, but only a dozen recruitment channels
    test = profile_test(design, questionnaire["fears"], "destination", statistic="Wald")
    assert test.value("ndf") <= design.degf
    assert "reduced_rank" in test.value("flags")
    assert 0 <= test.value("p_value") <= 1
