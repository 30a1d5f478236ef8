"""Replicate weights against R's survey package and against hand-derived variances.

R values marked "R:" come from R 4.2.2 with survey 4.1-1 (the versions of
tests/fixtures/reference), run on the CSVs in tests/fixtures/reference/data;
the R call is next to each. Hand values are worked out in the comments.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from reference_data import REFERENCE, REFERENCE_DATA
from volna.errors import VolnaError
from volna.replicates import (
    REPLICATE_TYPES,
    ReplicateError,
    ReplicateSet,
    brr_hadamard,
    hadamard,
    make_replicates,
    replicate_variance,
    sdr_row_assignment,
)

REF, DATA = REFERENCE, REFERENCE_DATA


def _case(case_id: str) -> dict:
    cases = json.loads((REF / "cases.json").read_text(encoding="utf-8"))["cases"]
    return next(c for c in cases if c["id"] == case_id)


def _se_mean(rs: ReplicateSet, y: np.ndarray, w: np.ndarray) -> float:
    """SE of a weighted mean (a ratio: replicate means, not a linearisation)."""
    reps = (y @ rs.weights) / rs.weights.sum(axis=0)
    full = np.array([(y * w).sum() / w.sum()])
    return float(np.sqrt(replicate_variance(reps, full, rs)[0, 0]))


def _var_total(rs: ReplicateSet, y: np.ndarray, w: np.ndarray) -> float:
    return float(replicate_variance(y @ rs.weights, np.array([(y * w).sum()]), rs)[0, 0])


# --------------------------------------------------------------------------
# R parity
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def apiclus1() -> pd.DataFrame:
    return pd.read_csv(DATA / "apiclus1.csv")


def _apiclus1_jk1(df: pd.DataFrame) -> ReplicateSet:
    # svydesign(id=~dnum, weights=~pw, data=apiclus1, fpc=~fpc): fpc holds N,
    # the number of districts; the sampling fraction is n/N = 15/757.
    n_psu = df["dnum"].nunique()
    return make_replicates(
        None,
        df["dnum"].to_numpy(),
        (n_psu / df["fpc"]).to_numpy(),
        df["pw"].to_numpy(),
        type="JK1",
    )


def test_jk1_weights_equal_r_column_by_column(apiclus1):
    rs = _apiclus1_jk1(apiclus1)
    ref = pd.read_csv(DATA / "apiclus1_jk1.csv")  # R: weights(as.svrepdesign(clus1))
    assert list(ref.columns) == [f"V{k}" for k in range(1, 16)]
    assert rs.weights.shape == ref.shape == (183, 15)
    for k, column in enumerate(ref.columns):
        np.testing.assert_allclose(rs.weights[:, k], ref[column], rtol=1e-13, atol=0)
    # each replicate drops one district: its rows are exactly 0
    assert ((ref.to_numpy() == 0) == (rs.weights == 0)).all()


def test_jk1_scale_and_se_equal_r(apiclus1):
    rs = _apiclus1_jk1(apiclus1)
    assert rs.type == "JK1" and rs.mse is False and rs.rho is None
    assert rs.scale == pytest.approx(14 / 15 * (1 - 15 / 757), rel=1e-14)
    assert rs.scale == pytest.approx(0.9148393, abs=5e-8)  # the case's note
    assert (rs.rscales == 1).all()
    w = apiclus1["pw"].to_numpy()
    mean = _case("P13a")["results"][0]  # svymean(~api00, clus1)
    assert _se_mean(rs, apiclus1["api00"].to_numpy(), w) == pytest.approx(mean["se"], rel=1e-10)
    total = _case("P13b")["results"][0]  # svytotal(~enroll, clus1)
    var = _var_total(rs, apiclus1["enroll"].to_numpy(float), w)
    assert np.sqrt(var) == pytest.approx(total["se"], rel=1e-10)


def test_jk1_two_stage_design_uses_the_first_stage_only():
    df = pd.read_csv(DATA / "apiclus2.csv")
    # R: dclus2 <- svydesign(id=~dnum+snum, fpc=~fpc1+fpc2, data=apiclus2);
    # as.svrepdesign(dclus2) is JK1 on the districts, the second-stage fpc dropped.
    n_psu = df["dnum"].nunique()
    rs = make_replicates(
        None, df["dnum"].to_numpy(), (n_psu / df["fpc1"]).to_numpy(), df["pw"].to_numpy(),
        type="JK1",
    )  # fmt: skip
    assert rs.scale == pytest.approx(0.923480845442536, rel=1e-13)  # R: $scale
    # R: svymean(~api00, as.svrepdesign(dclus2))
    se = _se_mean(rs, df["api00"].to_numpy(), df["pw"].to_numpy())
    assert se == pytest.approx(33.9924607620136, rel=1e-10)


def test_jkn_matches_r_on_apistrat():
    df = pd.read_csv(DATA / "apistrat.csv")
    # R: dstrat <- svydesign(id=~1, strata=~stype, weights=~pw, data=apistrat, fpc=~fpc)
    #    j <- as.svrepdesign(dstrat)   # JKn, one replicate per school
    n_h = df.groupby("stype")["stype"].transform("size")
    rs = make_replicates(
        df["stype"].to_numpy(), np.arange(len(df)), (n_h / df["fpc"]).to_numpy(),
        df["pw"].to_numpy(), type="JKn",
    )  # fmt: skip
    assert rs.type == "JKn" and rs.scale == 1.0 and rs.n_replicates == 200
    # R: unique(j$rscales), strata in order of first appearance (E, H, M)
    np.testing.assert_allclose(
        np.unique(rs.rscales), [0.915099337748344, 0.931866404715128, 0.967606876272337],
        rtol=1e-13,
    )  # fmt: skip
    w = df["pw"].to_numpy()
    # R: SE(svymean(~api00, j)), SE(svytotal(~enroll, j))
    assert _se_mean(rs, df["api00"].to_numpy(), w) == pytest.approx(9.4089408027845, rel=1e-10)
    var = _var_total(rs, df["enroll"].to_numpy(float), w)
    assert np.sqrt(var) == pytest.approx(114641.71610078, rel=1e-10)


def test_brr_and_fay_match_r_on_scd():
    scd = pd.read_csv(DATA / "scd.csv")
    # R: scddes <- svydesign(data=scd, prob=~1, id=~ambulance, strata=~ESA, nest=TRUE)
    #    b <- as.svrepdesign(scddes, type="BRR"); weights(b, "analysis")
    r_weights = np.array(
        [[2, 0, 2, 0], [0, 2, 0, 2], [2, 2, 0, 0], [0, 0, 2, 2], [2, 0, 0, 2], [0, 2, 2, 0]]
    )
    strata, psu = scd["ESA"].to_numpy(), scd["ambulance"].to_numpy()
    alive, arrests = scd["alive"].to_numpy(float), scd["arrests"].to_numpy(float)
    brr = make_replicates(strata, psu, None, np.ones(6), type="BRR")
    np.testing.assert_array_equal(brr.weights, r_weights)
    assert brr.scale == 0.25 and brr.type == "BRR"

    def ratio_se(rs: ReplicateSet) -> float:
        reps = (alive @ rs.weights) / (arrests @ rs.weights)
        return float(np.sqrt(replicate_variance(reps, [alive.sum() / arrests.sum()], rs)[0, 0]))

    # R: SE(svyratio(~alive, ~arrests, b)), SE(svytotal(~arrests, b))
    assert ratio_se(brr) == pytest.approx(0.00941840066991849, rel=1e-10)
    assert np.sqrt(_var_total(brr, arrests, np.ones(6))) == pytest.approx(152.35813073151)
    # R: f <- as.svrepdesign(scddes, type="Fay", fay.rho=0.3)
    fay = make_replicates(strata, psu, None, np.ones(6), type="Fay", rho=0.3)
    np.testing.assert_allclose(fay.weights, np.where(r_weights == 2, 1.7, 0.3))
    assert fay.scale == pytest.approx(0.510204081632653, rel=1e-14)  # R: f$scale
    assert fay.type == "Fay" and fay.rho == 0.3
    assert ratio_se(fay) == pytest.approx(0.00952518747770524, rel=1e-10)


@pytest.mark.parametrize(
    ("n_strata", "n_replicates", "ratio_se", "total_se"),
    [
        (11, 12, 0.1148883317561917, 919.34269997645606),  # Paley, p = 11
        (20, 24, 0.096625822215408774, 1194.6530877204477),  # Paley 12, doubled
        (27, 28, 0.080702863522762153, 1400.7690744730196),  # R's stored 28
        (35, 36, 0.06390629956087869, 1553.5964727045437),  # R's stored 36
        (40, 44, 0.066061504830438253, 1678.1954594146655),  # Paley, p = 43
    ],
)
def test_brr_replicates_equal_r_for_a_ratio(n_strata, n_replicates, ratio_se, total_se):
    # R, for K strata of 2 PSUs of 3 rows (labels 1..K, sorted by R as text):
    #   i <- 1:(6*K); d <- data.frame(st=rep(1:K, each=6), psu=rep(1:(2*K), each=3),
    #     y=((i*7919) %% 101)+1, x=((i*104729) %% 53)+10, w=1+(i %% 5))
    #   bb <- as.svrepdesign(svydesign(id=~psu, strata=~st, weights=~w, data=d), type="BRR")
    #   SE(svyratio(~y, ~x, bb)); SE(svytotal(~y, bb))
    # A ratio is not linear: its SE equals R's only with R's very replicates.
    i = np.arange(1, 6 * n_strata + 1)
    y, x, w = ((i * 7919) % 101) + 1.0, ((i * 104729) % 53) + 10.0, 1.0 + (i % 5)
    strata = np.repeat(np.arange(1, n_strata + 1), 6)
    psu = np.repeat(np.arange(1, 2 * n_strata + 1), 3)
    rs = make_replicates(strata, psu, None, w, type="BRR")
    assert rs.n_replicates == n_replicates
    reps = (y @ rs.weights) / (x @ rs.weights)
    full = [(y * w).sum() / (x * w).sum()]
    assert np.sqrt(replicate_variance(reps, full, rs)[0, 0]) == pytest.approx(ratio_se, rel=1e-10)
    assert np.sqrt(_var_total(rs, y, w)) == pytest.approx(total_se, rel=1e-10)


# Digests sum(H * outer(1:m, 1:m)) of R's survey::hadamard(n) in its 0/1 coding.
R_HADAMARD_DIGESTS = {
    3: (4, 47), 4: (8, 610), 11: (12, 2817), 15: (16, 8916), 19: (20, 21129),
    23: (24, 43686), 27: (28, 76733), 35: (36, 218926), 39: (40, 330358),
    47: (48, 681948), 51: (56, 1251262), 59: (60, 1650408), 63: (64, 2141392),
    64: (68, 2722345), 71: (72, 3424160), 79: (80, 5205116), 83: (84, 6311072),
    95: (96, 10764792), 99: (104, 14782973), 103: (104, 14782973),
    107: (108, 17197576), 111: (112, 19889292), 127: (128, 33906080),
}  # fmt: skip


@pytest.mark.parametrize("n", sorted(R_HADAMARD_DIGESTS))
def test_brr_hadamard_is_rs_matrix(n):
    order, digest = R_HADAMARD_DIGESTS[n]
    h01 = (brr_hadamard(n) + 1) // 2
    assert h01.shape == (order, order)
    k = np.arange(1, order + 1)
    assert int((h01 * np.outer(k, k)).sum()) == digest


def test_brr_hadamard_rows_are_balanced_for_every_stratum_count():
    for n in range(0, 201):
        h = brr_hadamard(n)
        m = h.shape[0]
        assert m > n and m % 4 == 0
        assert (h[0] == 1).all()  # so every other row is balanced: full orthogonal balance
        assert (h @ h.T == m * np.eye(m)).all()


# --------------------------------------------------------------------------
# Hadamard matrices
# --------------------------------------------------------------------------

UNKNOWN_ORDERS = {52, 92, 100, 116, 156, 172, 184, 188, 232, 236, 244}


@pytest.mark.parametrize("order", [1, 2, *range(4, 257, 4)])
def test_hadamard_orthogonal_for_every_order_claimed(order):
    if order in UNKNOWN_ORDERS:
        with pytest.raises(ReplicateError, match=f"order {order} .*nearest larger one is"):
            hadamard(order)
        return
    h = hadamard(order)
    assert h.shape == (order, order)
    assert set(np.unique(h)) <= {-1, 1}
    assert (h @ h.T == order * np.eye(order, dtype=int)).all()


def test_hadamard_orders_not_multiple_of_four_are_refused():
    for order in (0, 3, 6, 10):
        with pytest.raises(ReplicateError, match="Hadamard"):
            hadamard(order)


def test_hadamard_returns_a_copy():
    h = hadamard(8)
    h[0, 0] = 99
    assert hadamard(8)[0, 0] == 1


# --------------------------------------------------------------------------
# Hand-derived variances of a total
# --------------------------------------------------------------------------

# A small stratified design. PSU totals sum(w * y) per stratum:
#   stratum "A": 10, 14, 18   (PSU a1 is two rows: 2*2 + 3*2 = 10)
#   stratum "B":  5,  9
# The with-replacement variance of the total is sum_h n_h/(n_h-1) sum_i (t_hi - mean_h)^2
#   A: 3/2 * (16 + 0 + 16) = 48;   B: 2/1 * (4 + 4) = 16;   total 64.
STRATA = np.array(["A", "A", "A", "A", "B", "B"])
PSU = np.array(["a1", "a1", "a2", "a3", "b1", "b2"])
W = np.array([2.0, 2.0, 2.0, 3.0, 1.0, 1.5])
Y = np.array([2.0, 3.0, 7.0, 6.0, 5.0, 6.0])


def test_hand_design_totals():
    totals = pd.Series(W * Y).groupby(PSU).sum()
    assert totals.to_dict() == {"a1": 10, "a2": 14, "a3": 18, "b1": 5, "b2": 9}


def test_jkn_variance_of_total_is_the_linearisation_variance():
    rs = make_replicates(STRATA, PSU, None, W, type="JKn")
    assert rs.n_replicates == 5
    assert _var_total(rs, Y, W) == pytest.approx(64.0, rel=1e-12)
    # with fractions 1/4 (A) and 1/2 (B): 48 * 3/4 + 16 * 1/2 = 44
    f = np.where(STRATA == "A", 0.25, 0.5)
    rs = make_replicates(STRATA, PSU, f, W, type="JKn")
    assert _var_total(rs, Y, W) == pytest.approx(44.0, rel=1e-12)
    np.testing.assert_allclose(rs.rscales, [2 / 3 * 0.75] * 3 + [1 / 2 * 0.5] * 2)


def test_jkn_replicate_weights_by_hand():
    rs = make_replicates(STRATA, PSU, None, W, type="JKn")
    # replicate 1 drops a1 and multiplies a2, a3 by 3/2; stratum B unchanged
    np.testing.assert_allclose(rs.weights[:, 0], [0, 0, 3, 4.5, 1, 1.5])
    # replicate 5 drops b2 and doubles b1
    np.testing.assert_allclose(rs.weights[:, 4], [2, 2, 2, 3, 2, 0])
    assert rs.weights.dtype == np.float64 and rs.weights.flags.f_contiguous


def test_jkn_drops_exhaustively_sampled_strata_like_r():
    # stratum C has one PSU but was sampled completely: no variance, no replicate
    strata = np.append(STRATA, "C")
    psu = np.append(PSU, "c1")
    f = np.where(strata == "C", 1.0, 0.0)
    w, y = np.append(W, 4.0), np.append(Y, 100.0)
    rs = make_replicates(strata, psu, f, w, type="JKn")
    assert rs.n_replicates == 5
    assert _var_total(rs, y, w) == pytest.approx(64.0, rel=1e-12)


def test_jk1_variance_of_total_by_hand():
    # unstratified, PSU totals 10, 14, 18, 6 (mean 12): 4/3 * (4 + 4 + 36 + 36) = 320/3
    psu = np.array([1, 2, 3, 4])
    y = np.array([10.0, 14.0, 18.0, 6.0])
    rs = make_replicates(None, psu, None, np.ones(4), type="JK1")
    assert _var_total(rs, y, np.ones(4)) == pytest.approx(320 / 3, rel=1e-12)
    rs = make_replicates(None, psu, np.full(4, 0.25), np.ones(4), type="JK1")
    assert _var_total(rs, y, np.ones(4)) == pytest.approx(80.0, rel=1e-12)


def test_jk1_replicates_follow_the_first_appearance_of_psus():
    rs = make_replicates(None, np.array([7, 3, 7, 5]), None, np.ones(4), type="JK1")
    # PSU 7 first, then 3, then 5: replicate 1 drops rows 0 and 2
    np.testing.assert_allclose(rs.weights[:, 0], [0, 1.5, 0, 1.5])
    np.testing.assert_allclose(rs.weights[:, 2], [1.5, 1.5, 1.5, 0])


# Pairs of PSU totals (10, 14), (5, 9), (20, 11): the with-replacement variance
# of the total is sum_h (t_h1 - t_h2)^2 = 16 + 16 + 81 = 113.
PAIR_STRATA = np.array([3, 3, 1, 1, 2, 2])
PAIR_PSU = np.array([1, 2, 1, 2, 1, 2])  # the same labels in every stratum: nested
PAIR_Y = np.array([10.0, 14.0, 5.0, 9.0, 20.0, 11.0])


@pytest.mark.parametrize(("kind", "rho"), [("BRR", None), ("Fay", 0.5), ("Fay", 0.3)])
def test_brr_and_fay_variance_of_total_by_hand(kind, rho):
    rs = make_replicates(PAIR_STRATA, PAIR_PSU, None, np.ones(6), type=kind, rho=rho)
    assert rs.n_replicates == 4
    assert _var_total(rs, PAIR_Y, np.ones(6)) == pytest.approx(113.0, rel=1e-12)
    # every replicate keeps one PSU per stratum at 2 - rho, the other at rho
    r = rho or 0.0
    pairs = rs.weights.reshape(3, 2, 4)
    np.testing.assert_allclose(np.sort(pairs, axis=1)[:, 0], r)
    np.testing.assert_allclose(np.sort(pairs, axis=1)[:, 1], 2 - r)


def test_brr_more_replicates_than_needed_and_the_fpc_is_dropped():
    f = np.full(6, 0.5)
    rs = make_replicates(PAIR_STRATA, PAIR_PSU, f, np.ones(6), type="BRR", replicates=8)
    assert rs.n_replicates == 8 and rs.scale == 1 / 8
    assert _var_total(rs, PAIR_Y, np.ones(6)) == pytest.approx(113.0, rel=1e-12)


def test_brr_strata_take_hadamard_rows_in_text_order():
    # strata sorted as text: "1", "10", "2"; Hadamard rows 2, 3, 4 (R: brrweights)
    strata = np.array([2, 2, 10, 10, 1, 1])
    rs = make_replicates(strata, np.arange(6), None, np.ones(6), type="BRR")
    h = brr_hadamard(3)
    first_psu = rs.weights[[4, 2, 0]] == 2  # first PSU of strata "1", "10", "2"
    np.testing.assert_array_equal(first_psu, h[1:4] == 1)


# Five PSUs in sampling order with totals 3, 7, 4, 10, 6. The circular
# successive-difference estimator SD2 = 1/2 sum_i (t_i - t_{i+1})^2, t_6 = t_1:
#   1/2 * (16 + 9 + 36 + 16 + 9) = 43.
SDR_Y = np.array([3.0, 7.0, 4.0, 10.0, 6.0])


def test_sdr_variance_of_total_is_the_successive_difference_estimator():
    rs = make_replicates(None, np.arange(5), None, np.ones(5), type="SDR")
    assert rs.type == "SDR" and rs.mse is True
    assert rs.scale == 4 / rs.n_replicates and rs.n_replicates == 8
    assert _var_total(rs, SDR_Y, np.ones(5)) == pytest.approx(43.0, rel=1e-12)
    # a sampling fraction of 1/5 multiplies it by 4/5
    rs = make_replicates(None, np.arange(5), np.full(5, 0.2), np.ones(5), type="SDR")
    assert _var_total(rs, SDR_Y, np.ones(5)) == pytest.approx(34.4, rel=1e-12)
    # the ACS's 80 replicates give the same answer
    rs = make_replicates(None, np.arange(5), None, np.ones(5), type="SDR", replicates=80)
    assert rs.n_replicates == 80
    assert _var_total(rs, SDR_Y, np.ones(5)) == pytest.approx(43.0, rel=1e-12)


def test_sdr_factors_by_hand():
    rs = make_replicates(None, np.arange(5), None, np.full(5, 10.0), type="SDR")
    h = brr_hadamard(7)  # order 8
    c = 2**-1.5
    rows = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 0)]
    expected = np.array([10 * (1 + c * (h[a] - h[b])) for a, b in rows])
    np.testing.assert_allclose(rs.weights, expected)


def test_sdr_sequence_groups_strata_in_order_of_appearance():
    # strata A, B, A, B, A: the sequence is rows 0, 2, 4 then 1, 3, totals 3, 4, 6, 7, 10
    # SD2 = 1/2 * (1 + 4 + 1 + 9 + 49) = 32
    strata = np.array(["A", "B", "A", "B", "A"])
    rs = make_replicates(strata, np.arange(5), None, np.ones(5), type="SDR")
    assert _var_total(rs, SDR_Y, np.ones(5)) == pytest.approx(32.0, rel=1e-12)


def test_sdr_row_assignment_by_hand():
    # order 4, 6 units: steps 1 then 2 (Ash's RA1): (1,2) (2,3) (3,4) (4,1) (1,3) (3,1)
    assert sdr_row_assignment(6, 4).tolist() == [[0, 1], [1, 2], [2, 3], [3, 0], [0, 2], [2, 0]]
    # 3 units: circular within the sample
    assert sdr_row_assignment(3, 8).tolist() == [[0, 1], [1, 2], [2, 0]]
    # 5 units of order 4: the last chain (step 2) is closed on itself
    assert sdr_row_assignment(5, 4).tolist()[-1] == [0, 0]


def test_sdr_constant_has_no_variance_beyond_the_hadamard_order():
    for n in (81, 100, 163, 400):
        rs = make_replicates(None, np.arange(n), None, np.ones(n), type="SDR", replicates=80)
        assert _var_total(rs, np.full(n, 5.0), np.ones(n)) == pytest.approx(0.0, abs=1e-9)


def test_sdr_beyond_the_hadamard_order_is_close_to_the_successive_difference_estimator():
    # 400 units, 80 replicates: the replicate variance of a total is unbiased for
    # the successive-difference estimator SD1 = n/(2(n-1)) sum (t_i - t_{i+1})^2
    # but noisy (about 80 degrees of freedom, +-16%): average 40 samples.
    rng = np.random.default_rng(20240501)
    n = 400
    rs = make_replicates(None, np.arange(n), None, np.ones(n), type="SDR", replicates=80)
    ratios = []
    for _ in range(40):
        y = rng.normal(50, 5, n) + np.linspace(0, 30, n)  # a trend, as a sorted frame gives
        sd1 = n / (2 * (n - 1)) * np.sum(np.diff(y) ** 2)
        ratios.append(_var_total(rs, y, np.ones(n)) / sd1)
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.08)


def _linearisation_variance(strata, psu, f, w, y):
    t = pd.DataFrame({"h": strata, "p": psu, "t": w * y}).groupby(["h", "p"])["t"].sum()
    var = 0.0
    for h, th in t.groupby(level="h"):
        n_h = len(th)
        var += (1 - f[h]) * n_h / (n_h - 1) * ((th - th.mean()) ** 2).sum()
    return var


def test_bootstrap_variance_of_total_is_near_the_linearisation_variance():
    rng = np.random.default_rng(11)
    strata = np.repeat(np.arange(4), 60)
    psu = np.repeat(np.arange(80), 3)  # 20 PSUs of 3 rows per stratum
    w = rng.uniform(1, 3, 240)
    y = rng.gamma(2.0, 10.0, 240) + 5 * strata
    no_fpc = dict.fromkeys(range(4), 0.0)
    expected = _linearisation_variance(strata, psu, no_fpc, w, y)
    rs = make_replicates(strata, psu, None, w, type="bootstrap", seed=1, replicates=2000)
    assert rs.scale == 1 / 1999 and rs.mse is False and rs.n_replicates == 2000
    assert _var_total(rs, y, w) == pytest.approx(expected, rel=0.10)
    # with sampling fractions, Rao-Wu-Yue's rescaling brings in 1 - f_h
    fh = {0: 0.1, 1: 0.5, 2: 0.8, 3: 0.0}
    expected = _linearisation_variance(strata, psu, fh, w, y)
    f = np.vectorize(fh.get)(strata)
    rs = make_replicates(strata, psu, f, w, type="bootstrap", seed=1, replicates=2000)
    assert _var_total(rs, y, w) == pytest.approx(expected, rel=0.10)
    assert rs.weights.min() >= 0


def test_bootstrap_weights_are_rao_wu_multiples():
    strata = np.repeat([0, 1], [4, 6])
    rs = make_replicates(strata, np.arange(10), None, np.ones(10), type="bootstrap", seed=3)
    assert rs.n_replicates == 50  # R's default
    counts_a = rs.weights[:4] * 3 / 4  # n_h/(n_h-1) = 4/3: back to the times drawn
    counts_b = rs.weights[4:] * 5 / 6
    np.testing.assert_allclose(counts_a, np.round(counts_a), atol=1e-12)
    np.testing.assert_allclose(counts_a.sum(axis=0), 3)  # n_h - 1 draws per replicate
    np.testing.assert_allclose(counts_b.sum(axis=0), 5)


def test_bootstrap_with_a_census_stratum_keeps_its_weights():
    strata = np.repeat([0, 1], [4, 1])
    f = np.where(strata == 1, 1.0, 0.0)
    rs = make_replicates(strata, np.arange(5), f, np.full(5, 2.0), type="bootstrap", seed=0)
    np.testing.assert_allclose(rs.weights[4], 2.0)


def test_bootstrap_seeds():
    args = (np.repeat([0, 1], 5), np.arange(10), None, np.ones(10))
    a = make_replicates(*args, type="bootstrap", seed=42)
    b = make_replicates(*args, type="bootstrap", seed=42)
    c = make_replicates(*args, type="bootstrap", seed=43)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert not np.array_equal(a.weights, c.weights)
    # subbootstrap (R's name) draws the same resamples and ignores the fpc
    d = make_replicates(*args, type="subbootstrap", seed=42)
    np.testing.assert_array_equal(a.weights, d.weights)
    e = make_replicates(args[0], args[1], np.full(10, 0.5), args[3], type="subbootstrap", seed=42)
    np.testing.assert_array_equal(a.weights, e.weights)
    # no seed: fresh draws
    assert make_replicates(*args, type="bootstrap").n_replicates == 50


def test_weights_are_factors_times_sampling_weights():
    w = np.array([1.0, 0.0, 2.5, 4.0])
    rs = make_replicates(None, np.arange(4), None, w, type="SDR")
    base = make_replicates(None, np.arange(4), None, np.ones(4), type="SDR")
    np.testing.assert_allclose(rs.weights, base.weights * w[:, None])


def test_type_names_are_case_insensitive_and_r_aliases_work():
    args = (None, np.arange(4), None, np.ones(4))
    assert make_replicates(*args, type="jk1").type == "JK1"
    assert make_replicates(*args, type="successive-difference").type == "SDR"
    assert make_replicates(*args, type="ACS").type == "SDR"
    assert set(REPLICATE_TYPES) == {"JK1", "JKn", "BRR", "Fay", "bootstrap", "subbootstrap", "SDR"}


# --------------------------------------------------------------------------
# replicate_variance
# --------------------------------------------------------------------------


def test_replicate_variance_centres_and_rscales():
    theta = np.array([[1.0, 2.0, 6.0], [0.0, 2.0, 1.0]])
    full = np.array([2.0, 0.0])
    rs = ReplicateSet(np.ones((2, 3)), 0.5, np.array([1.0, 2.0, 1.0]), False, "JKn")
    # centres 3 and 1: d = [[-2, -1, 3], [-1, 1, 0]], rscales 1, 2, 1
    # V11 = .5 (4 + 2 + 9) = 7.5, V12 = .5 (2 - 2 + 0) = 0, V22 = .5 (1 + 2 + 0) = 1.5
    np.testing.assert_allclose(
        replicate_variance(theta, full, rs), [[7.5, 0.0], [0.0, 1.5]], atol=1e-12
    )
    mse = ReplicateSet(np.ones((2, 3)), 0.5, np.array([1.0, 2.0, 1.0]), True, "JKn")
    # d = [[-1, 0, 4], [0, 2, 1]]: V11 = .5 (1 + 0 + 16), V12 = .5 (0 + 0 + 4), V22 = .5 (0 + 8 + 1)
    np.testing.assert_allclose(replicate_variance(theta, full, mse), [[8.5, 2.0], [2.0, 4.5]])


def test_replicate_variance_shape_errors():
    rs = ReplicateSet(np.ones((2, 3)), 1.0, np.ones(3), False, "BRR")
    with pytest.raises(ReplicateError, match="2 replicate estimates for 3 replicates"):
        replicate_variance(np.ones((1, 2)), np.ones(1), rs)
    with pytest.raises(ReplicateError, match="2 full-sample estimates for 1 statistics"):
        replicate_variance(np.ones((1, 3)), np.ones(2), rs)
    with pytest.raises(ReplicateError, match="rscales"):
        ReplicateSet(np.ones((2, 3)), 1.0, np.ones(2), False, "BRR")


# --------------------------------------------------------------------------
# Errors a user can cause
# --------------------------------------------------------------------------


def test_jkn_one_psu_stratum_is_named():
    strata = np.array(["north", "north", "south"])
    with pytest.raises(VolnaError, match="JKn: stratum 'south' has only one PSU"):
        make_replicates(strata, np.arange(3), None, np.ones(3), type="JKn")


def test_unstratified_design_is_named_as_such():
    with pytest.raises(VolnaError, match=r"JKn: the design \(unstratified\) has only one PSU"):
        make_replicates(None, np.zeros(3), None, np.ones(3), type="JKn")


def test_brr_three_psus_stratum_is_named():
    strata = np.array([1, 1, 1, 2, 2])
    with pytest.raises(VolnaError, match=r"exactly 2 PSUs in every stratum: stratum 1 \(3 PSUs\)"):
        make_replicates(strata, np.arange(5), None, np.ones(5), type="BRR")
    with pytest.raises(VolnaError, match="Fay's BRR needs exactly 2 PSUs"):
        make_replicates(strata, np.arange(5), None, np.ones(5), type="Fay", rho=0.5)


def test_unknown_type_is_named():
    with pytest.raises(VolnaError, match="unknown replicate type 'JK2': use one of JK1, JKn"):
        make_replicates(None, np.arange(3), None, np.ones(3), type="JK2")


def test_jk1_on_a_stratified_design_suggests_jkn():
    with pytest.raises(VolnaError, match=r"2 strata.*use type='JKn'"):
        make_replicates(np.array([1, 1, 2, 2]), np.arange(4), None, np.ones(4), type="JK1")


def test_bootstrap_one_psu_stratum_is_named():
    strata = np.array(["a", "a", "b"])
    with pytest.raises(VolnaError, match="bootstrap: stratum 'b' has only one PSU"):
        make_replicates(strata, np.arange(3), None, np.ones(3), type="bootstrap", seed=1)


def test_lonely_stratum_under_a_rule_as_r_jknweights():
    # R's values for these rules: tests/fixtures/reference/cases_lonely_replicates.json
    strata = np.array(["a", "a", "b", "c", "c"])
    w = np.ones(5)
    removed = make_replicates(strata, np.arange(5), None, w, type="JKn", lonely_psu="remove")
    assert removed.weights.shape == (5, 4) and removed.scale == 1.0
    assert np.all(removed.weights[2] == 1.0)  # the lonely PSU: no replicate, its weight kept
    average = make_replicates(strata, np.arange(5), None, w, type="JKn", lonely_psu="average")
    assert average.scale == pytest.approx(5 / 4)
    adjust = make_replicates(strata, np.arange(5), None, w, type="JKn", lonely_psu="adjust")
    assert adjust.weights.shape == (5, 5)
    np.testing.assert_allclose(adjust.weights[:, 2], [1.5, 1.5, 0.0, 1.5, 1.5])
    assert adjust.rscales[2] == pytest.approx(2 / 3)


def test_bootstrap_keeps_a_lonely_psu_under_a_rule():
    strata = np.array(["a", "a", "a", "b"])
    rs = make_replicates(
        strata, np.arange(4), None, np.full(4, 2.0), type="bootstrap", seed=3, lonely_psu="remove"
    )
    assert np.all(rs.weights[3] == 2.0)


def test_fraction_must_be_constant_within_a_stratum():
    f = np.array([0.1, 0.1, 0.2, 0.3])
    strata = np.array(["x", "x", "y", "y"])
    with pytest.raises(VolnaError, match="stratum 'y': the first-stage sampling fraction varies"):
        make_replicates(strata, np.arange(4), f, np.ones(4), type="JKn")
    with pytest.raises(
        VolnaError, match=r"row 2, stratum 'x': sampling fraction 1\.5 is not between 0 and 1"
    ):
        make_replicates(strata, np.arange(4), [0.1, 1.5, 0.2, 0.2], np.ones(4), type="JKn")


def test_options_that_do_not_apply_are_refused():
    args = (None, np.arange(4), None, np.ones(4))
    with pytest.raises(VolnaError, match="type='Fay' needs rho"):
        make_replicates(np.array([1, 1, 2, 2]), np.arange(4), None, np.ones(4), type="Fay")
    with pytest.raises(VolnaError, match="rho applies to type='Fay' only"):
        make_replicates(*args, type="JK1", rho=0.5)
    with pytest.raises(VolnaError, match="cannot be set"):
        make_replicates(*args, type="JK1", replicates=10)
    with pytest.raises(VolnaError, match="more than 2 replicates"):
        make_replicates(PAIR_STRATA[:4], PAIR_PSU[:4], None, np.ones(4), type="BRR", replicates=2)


def test_missing_labels_and_weights_are_named():
    with pytest.raises(VolnaError, match="PSU label is missing at row 2"):
        make_replicates(
            None, np.array(["a", None, "b"], dtype=object), None, np.ones(3), type="JK1"
        )
    with pytest.raises(VolnaError, match="row 3: sampling weight nan"):
        make_replicates(None, np.arange(3), None, np.array([1.0, 1.0, np.nan]), type="JK1")


def test_too_many_cells_are_refused(monkeypatch):
    import volna.replicates as replicates

    monkeypatch.setattr(replicates, "MAX_REPLICATE_CELLS", 100)
    with pytest.raises(VolnaError, match="JK1: 20 rows x 20 replicates"):
        make_replicates(None, np.arange(20), None, np.ones(20), type="JK1")


def test_threaded_replicate_product_equals_one_pass():
    # enough rows for the product to be split across threads, enough estimates for it
    # to take the sparse path
    from volna import variance

    rng = np.random.default_rng(5)
    n, R = 140_000, 3
    weights = rng.uniform(0.5, 2.0, (n, R))
    block = variance.RatioBlock(
        base=rng.integers(-1, 20, n), n_bases=20, local=rng.integers(0, 5, n), per=5
    )
    layout = [(0, block.n_estimates, block.n_bases, False)]
    size = block.n_estimates
    threaded = variance._chunked_product([block], weights, layout, size)
    reps = variance.as_replicate_columns(weights)
    single = variance._chunk_range([block], reps, layout, size, reps.row_ranges(4096))
    if variance.PRODUCT_THREADS > 1:
        assert len(reps.row_ranges(variance.PRODUCT_CHUNK)) >= 2  # the threaded path ran
    np.testing.assert_allclose(threaded, single, rtol=1e-12)
    expected = np.zeros((size, R))
    ok = block.base >= 0
    np.add.at(expected, block.base[ok] * 5 + block.local[ok], weights[ok])
    np.testing.assert_allclose(threaded, expected, rtol=1e-12)
