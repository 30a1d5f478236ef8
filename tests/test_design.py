"""SurveyDesign: construction, validation, lonely PSUs, stages, replicate weights.

Expected values come from R's survey package (4.1.1) on the package's own data, as
recorded in the project's estimation notes (section 4) and the reference fixtures.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import polars as pl
import pytest

from reference_data import read_reference
from volna.design import DesignError, SurveyDesign, factorize, interaction, to_polars
from volna.errors import VolnaError
from volna.variance import find_replicate_groups, replicate_estimates

REL = 1e-6


@pytest.fixture(scope="module")
def apiclus1() -> pl.DataFrame:
    return read_reference("apiclus1.csv")


@pytest.fixture(scope="module")
def scd() -> pl.DataFrame:
    # R: svydesign(data=scd, prob=~1, id=~ambulance, strata=~ESA, nest=TRUE, fpc=rep(5,6))
    return read_reference("scd.csv").with_columns(pl.lit(1.0).alias("one"))


def one(est, column: str = "estimate") -> float:
    return est.value(column)


# ---- construction -------------------------------------------------------------------


def test_simple_random_sample_with_and_without_fpc() -> None:
    srs = read_reference("apisrs.csv")
    with_fpc = SurveyDesign.from_frame(srs, weights="pw", fpc="fpc")
    without = SurveyDesign.from_frame(srs, weights="pw")
    assert one(with_fpc.mean("api00"), "se") == pytest.approx(9.249722039, rel=REL)
    assert one(without.mean("api00"), "se") == pytest.approx(9.402772171, rel=REL)
    assert with_fpc.degf == 199


def test_fpc_as_fractions_equals_population_sizes(apiclus1: pl.DataFrame) -> None:
    frac = apiclus1.with_columns((15 / pl.col("fpc")).alias("f"))
    a = SurveyDesign.from_frame(apiclus1, ids="dnum", weights="pw", fpc="fpc")
    b = SurveyDesign.from_frame(frac, ids="dnum", weights="pw", fpc="f")
    c = SurveyDesign.from_frame(apiclus1, ids="dnum", weights="pw", fpc=757)
    ses = [one(d.mean("api00"), "se") for d in (a, b, c)]
    assert ses == pytest.approx([23.54224069] * 3, rel=REL)


def test_two_stage_design_with_fpc_at_both_stages(clus2: SurveyDesign) -> None:
    mean = clus2.mean("api00")
    assert one(mean) == pytest.approx(670.8118081, rel=REL)
    assert one(mean, "se") == pytest.approx(30.09902738, rel=REL)
    assert one(mean, "deff") == pytest.approx(6.250513756, rel=REL)
    total = clus2.total("enroll", na_rm=True)
    assert one(total) == pytest.approx(2639272.93, rel=REL)
    assert one(total, "se") == pytest.approx(799637.7736, rel=REL)
    assert clus2.degf == 39
    # the weights implied by the two fpc columns are the sampling weights of the file
    assert clus2.weights == pytest.approx(read_reference("apiclus2.csv")["pw"].to_numpy(), rel=1e-6)


def test_two_stage_design_without_fpc_is_an_ultimate_cluster_design() -> None:
    d = SurveyDesign.from_frame(read_reference("apiclus2.csv"), ids=["dnum", "snum"], weights="pw")
    assert one(d.mean("api00"), "se") == pytest.approx(30.71157631, rel=REL)
    assert len(d.stages) == 1


def test_ultimate_cluster_option_uses_first_stage_only() -> None:
    d = SurveyDesign.from_frame(
        read_reference("apiclus2.csv"),
        ids=["dnum", "snum"],
        fpc=["fpc1", "fpc2"],
        ultimate_cluster=True,
    )
    assert len(d.stages) == 1
    assert one(d.mean("api00"), "se") < 30.09902738


def test_nested_psu_ids_need_nest() -> None:
    nhanes = read_reference("nhanes.csv")
    with pytest.raises(DesignError, match=r"PSU 1 appears in more than one stratum.*nest=True"):
        SurveyDesign.from_frame(nhanes, ids="SDMVPSU", strata="SDMVSTRA", weights="WTMEC2YR")
    d = SurveyDesign.from_frame(
        nhanes, ids="SDMVPSU", strata="SDMVSTRA", weights="WTMEC2YR", nest=True
    )
    assert d.degf == 16
    assert d.stages[0].n_unit_total == 31


def test_pandas_and_polars_frames_give_the_same_design(apiclus1: pl.DataFrame) -> None:
    pdf = apiclus1.to_pandas()
    pdf["stype"] = pd.Categorical(pdf["stype"], categories=["M", "H", "E"])
    d_pd = SurveyDesign.from_frame(pdf, ids="dnum", weights="pw", fpc="fpc")
    d_pl = SurveyDesign.from_frame(apiclus1, ids="dnum", weights="pw", fpc="fpc")
    a = d_pd.proportion("stype", ci="wald", df=np.inf).to_polars()
    b = d_pl.proportion("stype", ci="wald", df=np.inf).to_polars()
    # pandas categories keep their order; the numbers do not depend on it
    assert a["level"].to_list() == ["M", "H", "E"]
    assert b["level"].to_list() == ["E", "H", "M"]
    assert a.sort("level")["se"].to_list() == pytest.approx(b["se"].to_list(), rel=1e-12)


def test_to_polars_rejects_other_objects() -> None:
    with pytest.raises(DesignError, match="expected a pandas or polars DataFrame"):
        to_polars([1, 2, 3])


def test_factorize_and_interaction_helpers() -> None:
    codes, levels = factorize(pl.Series([3.0, None, 1.0, float("nan"), 3.0]))
    assert codes.tolist() == [1, -1, 0, -1, 1]
    assert levels == [1.0, 3.0]
    enum = pl.Series(["b", None], dtype=pl.Enum(["c", "b", "a"]))
    assert factorize(enum) == (pytest.approx([1, -1]), ["c", "b", "a"])
    combined = interaction(np.array([0, 0, 1, 1, -1]), np.array([2, 0, 2, 2, 0]))
    assert combined.tolist() == [1, 0, 2, 2, -1]


# ---- validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        (pl.lit(None).cast(pl.Float64).alias("pw"), {}, r"row 1, column pw: weight is missing"),
        ((-pl.col("pw")).alias("pw"), {}, r"row 1, column pw: weight -33.847 is negative"),
        (pl.lit("x").alias("pw"), {}, r"column pw: weights must be numbers"),
        (pl.lit(None).cast(pl.Int64).alias("dnum"), {}, r"row 1, column dnum: cluster id is miss"),
        (pl.lit(10).alias("fpc"), {}, r"population size 10 is smaller than the 15 units"),
        (
            pl.when(pl.col("snum") == 237).then(700).otherwise(pl.col("fpc")).alias("fpc"),
            {},
            r"row 2, column fpc: fpc 700 differs from 757",
        ),
    ],
)
def test_bad_design_columns_raise_clear_errors(
    apiclus1: pl.DataFrame, change: pl.Expr, kwargs: dict, message: str
) -> None:
    frame = apiclus1.with_columns(change)
    with pytest.raises(DesignError, match=message):
        SurveyDesign.from_frame(frame, ids="dnum", weights="pw", fpc="fpc", **kwargs)


def test_unknown_columns_and_options(apiclus1: pl.DataFrame) -> None:
    with pytest.raises(
        DesignError, match=r"column PW: not in the response table \(did you mean pw"
    ):
        SurveyDesign.from_frame(apiclus1, weights="PW")
    with pytest.raises(DesignError, match="lonely_psu='skip' is not a rule"):
        SurveyDesign.from_frame(apiclus1, weights="pw", lonely_psu="skip")
    with pytest.raises(DesignError, match="fpc has 2 entries but the design has 1 stage"):
        SurveyDesign.from_frame(apiclus1, ids="dnum", weights="pw", fpc=["fpc", "fpc"])
    with pytest.raises(DesignError, match="every weight is 0"):
        SurveyDesign.from_frame(apiclus1.with_columns(pl.lit(0.0).alias("pw")), weights="pw")
    with pytest.raises(DesignError, match="no rows"):
        SurveyDesign.from_frame(apiclus1.head(0), weights="pw")
    assert issubclass(DesignError, VolnaError)


def test_design_is_immutable(clus1: SurveyDesign) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        clus1.lonely_psu = "remove"  # type: ignore[misc]
    sub = clus1.subset(pl.col("stype") == "H")
    assert sub is not clus1
    assert clus1.restriction is None
    assert sub.n_rows == 14 and clus1.n_rows == 183


def test_repr_describes_the_design(clus1: SurveyDesign, clus2: SurveyDesign) -> None:
    text = repr(clus1)
    assert "cluster sample, 183 rows" in text
    assert "PSUs     dnum (15)" in text
    assert "degrees of freedom 14" in text
    assert "2-stage cluster sample" in repr(clus2)
    sub = clus1.subset(pl.col("sch.wide") == "Yes")
    assert "subset" not in repr(clus1)
    assert 'subset   [(col("sch.wide")) == ("Yes")] (160 rows)' in repr(sub)
    with pytest.raises(DesignError, match=r"subset 'sch\.wide': expected true/false values"):
        clus1.subset("sch.wide")


# ---- lonely PSUs --------------------------------------------------------------------


def test_lonely_psu_fail_names_the_stratum(apiclus1: pl.DataFrame) -> None:
    with pytest.raises(DesignError, match=r"stratum 413 has only one PSU.*lonely_psu="):
        SurveyDesign.from_frame(apiclus1, strata="dnum", weights="pw")


@pytest.mark.parametrize(
    ("rule", "se"),
    [
        ("remove", 5.805777578),
        ("certainty", 5.805777578),
        ("adjust", 5.828057902),
        ("average", 6.009550728),
    ],
)
def test_lonely_psu_rules_match_r(apiclus1: pl.DataFrame, rule: str, se: float) -> None:
    d = SurveyDesign.from_frame(apiclus1, strata="dnum", weights="pw", lonely_psu=rule)
    est = d.mean("api00")
    assert one(est) == pytest.approx(644.1693989, rel=REL)
    assert one(est, "se") == pytest.approx(se, rel=REL)
    assert "lonely_psu" in one(est, "flags")


def test_certainty_stratum_from_fpc_is_not_lonely(apiclus1: pl.DataFrame) -> None:
    # a stratum whose only school is its whole population contributes no variance
    frame = apiclus1.with_columns(pl.when(pl.col("dnum") == 413).then(1).otherwise(100).alias("N"))
    d = SurveyDesign.from_frame(frame, strata="dnum", weights="pw", fpc="N")
    assert np.isfinite(one(d.mean("api00"), "se"))


# ---- replicate designs --------------------------------------------------------------


@pytest.fixture(scope="module")
def jk1_frame(apiclus1: pl.DataFrame) -> pl.DataFrame:
    return pl.concat([apiclus1, read_reference("apiclus1_jk1.csv")], how="horizontal")


def test_replicate_design_from_r_jk1_weights(jk1_frame: pl.DataFrame) -> None:
    scale = 14 / 15 * (1 - 15 / 757)
    d = SurveyDesign.replicate(
        jk1_frame, weights="pw", replicate_weights="V", type="JK1", scale=scale
    )
    assert d.replicates.n_replicates == 15
    assert d.spec["replicate_weights"][:3] == ["V1", "V2", "V3"]
    est = d.mean("api00")
    assert one(est) == pytest.approx(644.1693989, rel=REL)
    assert one(est, "se") == pytest.approx(26.32936059, rel=REL)
    assert d.degf == 14
    unscaled = SurveyDesign.replicate(jk1_frame, weights="pw", replicate_weights="V", type="JK1")
    assert one(unscaled.mean("api00"), "se") == pytest.approx(26.59416136, rel=REL)


def test_replicate_columns_by_list_regex_and_errors(jk1_frame: pl.DataFrame) -> None:
    cols = [f"V{i}" for i in range(1, 16)]
    a = SurveyDesign.replicate(jk1_frame, weights="pw", replicate_weights=cols, type="JK1")
    b = SurveyDesign.replicate(jk1_frame, weights="pw", replicate_weights=r"V\d+", type="jk1")
    assert one(a.mean("api00"), "se") == pytest.approx(one(b.mean("api00"), "se"), rel=1e-12)
    with pytest.raises(DesignError, match="no column matches"):
        SurveyDesign.replicate(jk1_frame, weights="pw", replicate_weights="rep", type="JK1")
    with pytest.raises(DesignError, match="not a replicate type"):
        SurveyDesign.replicate(jk1_frame, weights="pw", replicate_weights=cols, type="JK3")
    with pytest.raises(DesignError, match="needs rho="):
        SurveyDesign.replicate(jk1_frame, weights="pw", replicate_weights=cols, type="Fay")
    with pytest.raises(DesignError, match="needs rscales="):
        SurveyDesign.replicate(jk1_frame, weights="pw", replicate_weights=cols, type="JKn")
    with pytest.raises(DesignError, match="needs scale="):
        SurveyDesign.replicate(jk1_frame, weights="pw", replicate_weights=cols, type="other")
    with pytest.raises(DesignError, match="rscales has 2 values but there are 15"):
        SurveyDesign.replicate(
            jk1_frame, weights="pw", replicate_weights=cols, type="JKn", rscales=[1, 1]
        )


@pytest.mark.parametrize(
    ("kind", "kwargs", "scale", "mse"),
    [
        ("BRR", {}, 1 / 15, False),
        ("Fay", {"rho": 0.5}, 1 / (15 * 0.25), False),
        ("bootstrap", {}, 1 / 14, False),
        ("SDR", {}, 4 / 15, True),
        ("ACS", {"mse": False}, 4 / 15, False),
        ("other", {"scale": 2.0}, 2.0, False),
    ],
)
def test_replicate_type_defaults(
    jk1_frame: pl.DataFrame, kind: str, kwargs: dict, scale: float, mse: bool
) -> None:
    d = SurveyDesign.replicate(jk1_frame, weights="pw", replicate_weights="V", type=kind, **kwargs)
    assert d.replicates.scale == pytest.approx(scale)
    assert d.replicates.mse is mse


def test_adjustment_factors_are_multiplied_by_the_weights(jk1_frame: pl.DataFrame) -> None:
    factors = jk1_frame.with_columns(
        [(pl.col(f"V{i}") / pl.col("pw")).alias(f"V{i}") for i in range(1, 16)]
    )
    a = SurveyDesign.replicate(jk1_frame, weights="pw", replicate_weights="V", type="JK1")
    b = SurveyDesign.replicate(
        factors, weights="pw", replicate_weights="V", type="JK1", combined_weights=False
    )
    assert one(a.mean("api00"), "se") == pytest.approx(one(b.mean("api00"), "se"), rel=1e-9)


def test_with_replicates_jackknives_match_r(clus1: SurveyDesign, clus2: SurveyDesign) -> None:
    jk1 = clus1.with_replicates()
    assert jk1.replicates.type == "JK1"
    assert one(jk1.mean("api00"), "se") == pytest.approx(26.32936059, rel=REL)
    assert one(jk1.total("enroll"), "se") == pytest.approx(932235.027, rel=REL)
    assert one(jk1.ratio("api.stu", "enroll"), "se") == pytest.approx(0.009517085176, rel=REL)
    mse = clus1.with_replicates("JK1", mse=True)
    assert one(mse.mean("api00"), "se") == pytest.approx(26.33485767, rel=REL)
    strat = SurveyDesign.from_frame(
        read_reference("apistrat.csv"), strata="stype", weights="pw", fpc="fpc"
    )
    jkn = strat.with_replicates()
    assert jkn.replicates.type == "JKn"
    assert one(jkn.mean("api00"), "se") == pytest.approx(9.408940803, rel=REL)
    assert one(clus2.with_replicates("JK1").mean("api00"), "se") == pytest.approx(
        33.99246076, rel=REL
    )


def test_brr_and_fay_replicates_match_r(scd: pl.DataFrame) -> None:
    design = SurveyDesign.from_frame(
        scd, ids="ambulance", strata="ESA", weights="one", fpc=5, nest=True
    )
    ratio = design.ratio("alive", "arrests")
    assert one(ratio) == pytest.approx(0.1535063501, rel=REL)
    assert one(ratio, "se") == pytest.approx(0.007596704703, rel=REL)
    no_fpc = SurveyDesign.from_frame(scd, ids="ambulance", strata="ESA", weights="one", nest=True)
    assert one(no_fpc.ratio("alive", "arrests"), "se") == pytest.approx(0.0098073036, rel=REL)
    brr = design.with_replicates("BRR")
    assert one(brr.ratio("alive", "arrests"), "se") == pytest.approx(0.00941840067, rel=REL)
    assert one(brr.mean("alive")) == pytest.approx(46.33333333, rel=REL)
    assert one(brr.mean("alive"), "se") == pytest.approx(3.58236421, rel=REL)
    assert one(brr.total("arrests")) == pytest.approx(1811, rel=REL)
    assert one(brr.total("arrests"), "se") == pytest.approx(152.3581307, rel=REL)
    fay = design.with_replicates("Fay", rho=0.3)
    assert one(fay.ratio("alive", "arrests"), "se") == pytest.approx(0.009525187478, rel=REL)


def test_with_replicates_refuses_a_replicate_design(jk1_frame: pl.DataFrame) -> None:
    d = SurveyDesign.replicate(jk1_frame, weights="pw", replicate_weights="V", type="JK1")
    with pytest.raises(DesignError, match="already has replicate weights"):
        d.with_replicates("JK1")


def test_replicate_groups_are_found_and_give_the_same_answer(clus1: SurveyDesign) -> None:
    jk1 = clus1.with_replicates("JK1")
    groups = jk1.replicates.groups
    assert groups is not None and groups.n_groups == 15
    found = find_replicate_groups(jk1.weights, jk1.replicates.weights)
    assert found is not None and found.n_groups == 15
    # the row-by-row path (weights that do not compress) agrees with the grouped one
    block = jk1.evaluate([])  # nothing to do, nothing to fail
    assert block == []
    from volna.variance import RatioBlock, cell_sums

    base = np.zeros(jk1.data.height, dtype=np.int64)
    y = jk1.column("api00").values
    blk = RatioBlock(base=base, n_bases=1, numerator=y)
    pos = np.ones(len(base))
    grouped = replicate_estimates(
        [blk],
        [cell_sums(blk, jk1.weights, pos, groups.group, groups.n_groups)],
        jk1.replicates.weights,
        groups,
    )[0]
    rows = replicate_estimates([blk], None, jk1.replicates.weights, None)[0]
    assert grouped.ravel() == pytest.approx(rows.ravel(), rel=1e-12)


def test_replicate_weights_that_vary_within_psus_do_not_compress() -> None:
    rng = np.random.default_rng(3)
    w = rng.uniform(1, 2, 50)
    reps = w[:, None] * rng.uniform(0.5, 1.5, (50, 8))
    assert find_replicate_groups(w, reps) is None


def test_degrees_of_freedom_of_replicate_domains_with_and_without_groups(
    jk1_frame: pl.DataFrame,
) -> None:
    # per-row noise keeps the rank of the weights but stops them compressing by PSU
    noise = np.random.default_rng(1).uniform(1, 1.001, jk1_frame.height)
    noisy = jk1_frame.with_columns([pl.col(f"V{i}") * noise for i in range(1, 16)])
    dfs = []
    for frame in (jk1_frame, noisy):
        d = SurveyDesign.replicate(frame, weights="pw", replicate_weights="V", type="JK1")
        dfs.append(d.proportion("sch.wide", by="stype").column("df"))
        assert d.degf == 14
    assert dfs[0] == dfs[1] == [14, 14, 7, 7, 11, 11]


def test_a_missing_replicate_weight_is_named_by_row_and_column():
    frame = pl.DataFrame(
        {
            "y": [1.0, 2.0, 3.0],
            "w": [1.0, 1.0, 1.0],
            "r1": [0.0, 1.5, 1.5],
            "r2": [1.5, None, 1.5],
            "r3": [1.5, 1.5, 0.0],
        }
    )
    with pytest.raises(DesignError, match=r"row 2, column r2: replicate weight is missing"):
        SurveyDesign.replicate(frame, weights="w", replicate_weights="r", type="JK1")
