"""Significance letters of banner tables, against tests computed by hand.

On an unclustered, equally weighted sample the linearization variance of a domain
proportion is ``n/(n-1) p(1-p)/n_d`` and disjoint domains are uncorrelated, so the test
of two columns is ``(p_a - p_b) / sqrt(n/(n-1) (p_a q_a / n_a + p_b q_b / n_b))`` on
``n - 1`` degrees of freedom. On a cluster sample the columns are correlated; there the
tests must agree with :func:`volna.compare.difference`, which contrasts two domains
through the full covariance.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from volna.compare import difference
from volna.design import SurveyDesign
from volna.disclosure import DisclosureError, TableRules, apply_table_rules
from volna.report.banner import adjust_p, banner_letters, column_letters, compare_columns


def test_letters_run_on_past_z():
    letters = column_letters(55)
    assert letters[:3] == ["A", "B", "C"]
    assert letters[25:28] == ["Z", "AA", "AB"]
    assert letters[52:] == ["BA", "BB", "BC"]
    assert len(set(letters)) == 55


def test_holm_by_hand():
    p = np.array([[0.01, 0.04, 0.03, 0.005], [0.2, np.nan, 0.01, 0.5]])
    out = adjust_p(p, "holm")
    # row 1, sorted 0.005 0.01 0.03 0.04: 4*0.005, 3*0.01, 2*0.03, 1*0.04 -> running max
    assert out[0].tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # row 2 has three tests: 0.01*3, 0.2*2, 0.5*1 -> 0.03, 0.4, 0.5
    assert out[1, [0, 2, 3]].tolist() == pytest.approx([0.4, 0.03, 0.5])
    assert math.isnan(out[1, 1])
    assert adjust_p(np.array([0.3, 0.6]), "bonferroni").tolist() == [0.6, 1.0]
    assert adjust_p(np.array([0.3, 0.6]), "none").tolist() == [0.3, 0.6]
    with pytest.raises(DisclosureError):
        adjust_p(np.array([0.1]), "fdr")


@pytest.fixture(scope="module")
def srs():
    """1,200 respondents in 3 groups answering yes/no/maybe with different profiles."""
    rng = np.random.default_rng(11)
    sizes = {"a": 500, "b": 400, "c": 300}
    probs = {"a": [0.50, 0.30, 0.20], "b": [0.40, 0.40, 0.20], "c": [0.44, 0.30, 0.26]}
    g, y = [], []
    for name, size in sizes.items():
        g += [name] * size
        y += list(rng.choice(["yes", "no", "maybe"], size=size, p=probs[name]))
    frame = pl.DataFrame({"g": g, "y": y})
    return SurveyDesign.from_frame(frame), frame


def _table(design: SurveyDesign, by: str = "g"):
    est = design.proportion("y", by=by, vcov=True)
    table = est.to_polars().with_columns(pl.lit(by).alias("banner"))
    letters = banner_letters(sorted(set(table["domain"].to_list())))
    return table, est.vcov, letters


def test_letters_match_a_z_test_by_hand(srs):
    design, frame = srs
    table, vcov, letters = _table(design)
    out, pairs = compare_columns(table, vcov, letters=letters, df=design.degf)
    n = frame.height
    counts = frame.group_by("g", "y").len()
    sizes = dict(frame.group_by("g").len().iter_rows())
    cells = {(g, y): c for g, y, c in counts.iter_rows()}
    expected_letters = {}
    for level in ("yes", "no", "maybe"):
        p = {g: cells.get((g, level), 0) / sizes[g] for g in sizes}
        raw = {}
        for a, b in itertools.combinations(sorted(sizes), 2):
            var = n / (n - 1) * (p[a] * (1 - p[a]) / sizes[a] + p[b] * (1 - p[b]) / sizes[b])
            z = (p[a] - p[b]) / math.sqrt(var)
            raw[(a, b)] = (p[a] - p[b], z, 2 * stats.t.sf(abs(z), n - 1))
            got = pairs.filter(
                (pl.col("row") == level)
                & (pl.col("column_a") == f"g={a}")
                & (pl.col("column_b") == f"g={b}")
            ).row(0, named=True)
            assert got["difference"] == pytest.approx(p[a] - p[b], rel=1e-9)
            assert got["statistic"] == pytest.approx(z, rel=1e-9)
            assert got["p_value"] == pytest.approx(raw[(a, b)][2], rel=1e-9)
        # Holm over the three pairs of the row, by hand
        order = sorted(raw, key=lambda k: raw[k][2])
        running, adjusted = 0.0, {}
        for i, key in enumerate(order):
            running = max(running, min(1.0, (3 - i) * raw[key][2]))
            adjusted[key] = running
        for (a, b), (diff, _z, _p) in raw.items():
            got = pairs.filter(
                (pl.col("row") == level)
                & (pl.col("column_a") == f"g={a}")
                & (pl.col("column_b") == f"g={b}")
            ).row(0, named=True)
            assert got["p_adjusted"] == pytest.approx(adjusted[(a, b)], rel=1e-9)
            if adjusted[(a, b)] <= 0.05:
                hi, lo = (a, b) if diff > 0 else (b, a)
                expected_letters.setdefault((level, hi), "")
                expected_letters[(level, hi)] += letters[f"g={lo}"]
    got_letters = {
        (r["level"], r["domain"].split("=")[1]): r["letters"]
        for r in out.iter_rows(named=True)
        if r["letters"]
    }
    assert got_letters == {k: "".join(sorted(v)) for k, v in expected_letters.items()}
    assert got_letters  # the data were made to differ


def test_no_correction_gives_more_letters_than_bonferroni(srs):
    design, _ = srs
    table, vcov, letters = _table(design)
    _, pairs = compare_columns(table, vcov, letters=letters, correction="none")
    # a level that half the raw p-values reach: Bonferroni (x3) must lose some of them
    alpha = float(np.median(pairs["p_value"].to_numpy())) * 1.0001
    none, p_none = compare_columns(table, vcov, letters=letters, correction="none", alpha=alpha)
    bonf, p_bonf = compare_columns(
        table, vcov, letters=letters, correction="bonferroni", alpha=alpha
    )

    def count(t: pl.DataFrame) -> int:
        return sum(len(x) for x in t["letters"].to_list())

    assert count(none) == int(p_none["significant"].sum()) >= 5
    assert count(bonf) == int((p_bonf["p_value"] * 3 <= alpha).sum())
    assert count(none) > count(bonf)


def test_suppressed_and_constant_cells_are_not_tested(srs):
    design, _ = srs
    table, vcov, letters = _table(design)
    hidden = (pl.col("domain") == "g=a") & (pl.col("level") == "yes")
    table = table.with_columns((~hidden).alias("shown"))
    out, pairs = compare_columns(table, vcov, letters=letters)
    tested = pairs.filter(pl.col("row") == "yes")
    assert tested.height == 1  # only b - c is left of the three pairs
    assert out.filter(hidden)["letters"][0] == ""
    # a cell without variance (0%) is not tested either
    zero = np.array(vcov)
    zero[0, :] = zero[:, 0] = 0.0
    _, pairs0 = compare_columns(table.drop("shown"), zero, letters=letters)
    first = table.row(0, named=True)
    assert (
        pairs0.filter(
            (pl.col("row") == first["level"])
            & ((pl.col("column_a") == first["domain"]) | (pl.col("column_b") == first["domain"]))
        ).height
        == 0
    )


@pytest.fixture(scope="module")
def clustered():
    rng = np.random.default_rng(5)
    n = 900
    psu = rng.integers(0, 30, n)
    shift = rng.normal(0, 0.15, 30)[psu]
    g = rng.choice(["x", "y", "z", "w"], size=n, p=[0.3, 0.3, 0.2, 0.2])
    base = {"x": 0.35, "y": 0.5, "z": 0.45, "w": 0.6}
    p = np.clip(np.array([base[k] for k in g]) + shift, 0.02, 0.98)
    ans = np.where(rng.random(n) < p, "agree", "disagree")
    frame = pl.DataFrame({"psu": psu, "g": g, "a": ans, "wt": rng.uniform(0.5, 3, n)})
    return SurveyDesign.from_frame(frame, ids="psu", weights="wt")


def test_cluster_sample_tests_use_the_covariance_of_the_columns(clustered):
    design = clustered
    est = design.proportion("a", by="g", vcov=True)
    table = est.to_polars().with_columns(pl.lit("g").alias("banner"))
    letters = banner_letters(["g=w", "g=x", "g=y", "g=z"])
    _, pairs = compare_columns(table, est.vcov, letters=letters, df=design.degf)
    indicator = (pl.col("a") == "agree").alias("agree")
    flag = design.data.select(indicator).to_series()
    for row in pairs.filter(pl.col("row") == "agree").iter_rows(named=True):
        a = row["column_a"].split("=")[1]
        b = row["column_b"].split("=")[1]
        ref = difference(design, flag, "g", (a, b), df="design").to_polars().row(0, named=True)
        assert row["difference"] == pytest.approx(ref["estimate"], rel=1e-9)
        assert row["se"] == pytest.approx(ref["se"], rel=1e-9)
        assert row["p_value"] == pytest.approx(ref["p_value"], rel=1e-9)
    # and the covariance matters: without it the standard errors differ
    diag = np.diag(np.diag(est.vcov))
    _, independent = compare_columns(table, diag, letters=letters, df=design.degf)
    assert not np.allclose(independent["se"].to_numpy(), pairs["se"].to_numpy(), rtol=1e-3)


def test_spans_are_compared_separately(srs):
    design, _ = srs
    table, vcov, _ = _table(design)
    # split the three columns into two spans: a alone, then b and c
    table = table.with_columns(
        pl.when(pl.col("domain") == "g=a")
        .then(pl.lit("s1"))
        .otherwise(pl.lit("s2"))
        .alias("banner")
    )
    letters = {"g=a": "A", "g=b": "B", "g=c": "C"}
    out, pairs = compare_columns(table, vcov, letters=letters)
    assert set(pairs["span"].to_list()) == {"s2"}
    assert set(zip(pairs["column_a"], pairs["column_b"], strict=True)) == {("g=b", "g=c")}
    assert "A" not in "".join(out["letters"].to_list())


def test_with_table_rules_and_errors(srs):
    design, _ = srs
    table, vcov, letters = _table(design)
    ruled = apply_table_rules(table, TableRules())
    out, _ = compare_columns(ruled, vcov, letters=letters)
    assert out.height == table.height
    with pytest.raises(DisclosureError, match="covariance matrix is 2x2 for 9 estimates"):
        compare_columns(table, np.eye(2), letters=letters)
    with pytest.raises(DisclosureError, match="has no letter"):
        compare_columns(table, vcov, letters={"g=a": "A"})
