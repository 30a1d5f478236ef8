"""Properties every design-based estimate must have, on random stratified cluster samples.

* a domain estimate is the estimate on the domain's rows, and its variance is the one of
  the full design with no influence outside the domain (checked against a plain,
  loop-by-loop implementation of the textbook formula);
* ``by=`` domains are the same as one ``where=`` per domain;
* the proportions of a variable sum to one in every domain;
* replicate weights and linearization agree: exactly for totals under the stratified
  jackknife, roughly for means.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from volna import variance
from volna.design import SurveyDesign

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def samples(draw, min_psus: int = 2, max_psus: int = 5):
    """A stratified cluster sample: strata, PSUs, weights, a number, a category, a domain."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_strata = draw(st.integers(1, 3))
    rows = []
    for h in range(n_strata):
        for p in range(draw(st.integers(min_psus, max_psus))):
            for _ in range(draw(st.integers(1, 4))):
                rows.append((h, h * 100 + p))
    n = len(rows)
    strata = np.array([r[0] for r in rows])
    psu = np.array([r[1] for r in rows])
    w = rng.uniform(0.5, 5.0, n)
    y = np.round(rng.normal(10, 3, n), 2)
    cat = rng.choice(np.array(["a", "b", "c"]), n)
    dom = rng.random(n) < draw(st.floats(0.3, 0.9))
    dom[rng.integers(n)] = True
    with_fpc = draw(st.booleans())
    n_psu = {h: len(set(psu[strata == h])) for h in range(n_strata)}
    pop = np.array([n_psu[h] * 3 for h in strata], dtype=float)
    frame = pl.DataFrame(
        {"h": strata, "psu": psu, "w": w, "y": y, "cat": cat, "dom": dom, "N": pop}
    )
    design = SurveyDesign.from_frame(
        frame, ids="psu", strata="h", weights="w", fpc="N" if with_fpc else None
    )
    return design, frame, with_fpc


def brute_force_domain_mean_variance(frame: pl.DataFrame, with_fpc: bool) -> float:
    """Textbook stratified cluster variance of a domain mean, loop by loop."""
    y, w = frame["y"].to_numpy(), frame["w"].to_numpy()
    dom, h, psu = frame["dom"].to_numpy(), frame["h"].to_numpy(), frame["psu"].to_numpy()
    weight = w[dom].sum()
    mean = (w * y)[dom].sum() / weight
    z = np.where(dom, w * (y - mean) / weight, 0.0)
    var = 0.0
    for stratum in np.unique(h):
        units = np.unique(psu[h == stratum])
        totals = np.array([z[psu == u].sum() for u in units])
        nh = len(units)
        f = nh / (3 * nh) if with_fpc else 0.0
        var += (1 - f) * nh / (nh - 1) * ((totals - totals.mean()) ** 2).sum()
    return var


@SETTINGS
@given(samples())
def test_domain_estimate_is_the_subset_estimate_with_the_full_design_variance(sample) -> None:
    design, frame, with_fpc = sample
    domain = design.mean("y", where="dom")
    rows = frame.filter(pl.col("dom"))
    point = (rows["w"] * rows["y"]).sum() / rows["w"].sum()
    assert domain.value() == pytest.approx(point, rel=1e-12)
    expected = brute_force_domain_mean_variance(frame, with_fpc)
    assert domain.value("se") ** 2 == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert design.subset("dom").mean("y").value("se") == pytest.approx(
        domain.value("se"), rel=1e-12
    )


@SETTINGS
@given(samples())
def test_by_domains_equal_one_where_per_domain(sample) -> None:
    design, _, _ = sample
    table = design.mean("y", by="cat").to_polars()
    for row in table.iter_rows(named=True):
        single = design.mean("y", where=pl.col("cat") == row["cat"])
        assert row["estimate"] == pytest.approx(single.value(), rel=1e-12)
        assert row["se"] == pytest.approx(single.value("se"), rel=1e-9, abs=1e-15)


@SETTINGS
@given(samples())
def test_proportions_of_a_variable_sum_to_one_in_every_domain(sample) -> None:
    design, _, _ = sample
    table = design.proportion("cat", by="dom", ci="beta").to_polars()
    sums = table.group_by("domain").agg(pl.col("estimate").sum())
    assert sums["estimate"].to_list() == pytest.approx([1.0] * sums.height)
    # and their standard errors: proportions and counts come from one variance path
    counts = design.total("cat", by="dom").to_polars()
    assert (counts["n"] == table["n"]).all()


@SETTINGS
@given(samples(min_psus=15, max_psus=25))
def test_stratified_jackknife_agrees_with_linearization(sample) -> None:
    design, _, _ = sample
    jkn = design.with_replicates("JKn")
    lin_total, rep_total = design.total("y"), jkn.total("y")
    assert rep_total.value() == pytest.approx(lin_total.value(), rel=1e-12)
    assert rep_total.value("se") == pytest.approx(lin_total.value("se"), rel=1e-8)
    lin_mean, rep_mean = design.mean("y"), jkn.mean("y")
    # a ratio: the jackknife differs from linearization by a few percent at most here
    assert rep_mean.value("se") == pytest.approx(lin_mean.value("se"), rel=0.15)


@SETTINGS
@given(samples())
def test_covariance_diagonal_is_the_squared_standard_error(sample) -> None:
    design, _, _ = sample
    est = design.proportion("cat", by="dom", vcov=True)
    se = np.array(est.column("se"))
    assert np.sqrt(np.clip(np.diag(est.vcov), 0, None)) == pytest.approx(se, rel=1e-8, abs=1e-12)


@pytest.mark.parametrize("rule", ["remove", "adjust", "average"])
@pytest.mark.parametrize("layout", ["sorted", "rows", "rows_without_moments"])
def test_every_cell_layout_gives_the_same_answers(monkeypatch, layout: str, rule: str) -> None:
    """Dense grids (small data), sorted cells and row cells (large data) must agree."""
    rng = np.random.default_rng(11)
    n = 300
    frame = pl.DataFrame(
        {
            "h": np.r_[rng.integers(0, 6, n - 1), 6],  # stratum 6 has a single PSU
            "w": rng.uniform(0.5, 3, n),
            "y": rng.normal(0, 1, n),
            "x": rng.uniform(1, 2, n),
            "cat": rng.choice(np.array(["a", "b", "c", "d"]), n),
            "g": rng.choice(np.array(["u", "v", "z"]), n),
        }
    ).with_columns(pl.when(pl.col("y") > 1.5).then(None).otherwise(pl.col("y")).alias("y"))
    kinds = [("elements", {}), ("clusters", {"ids": "psu"})]
    frame = frame.with_columns((pl.col("h") * 1000 + pl.arange(0, n) % 9).alias("psu"))

    def answers():
        out = []
        for _, extra in kinds:
            d = SurveyDesign.from_frame(frame, strata="h", weights="w", lonely_psu=rule, **extra)
            for est in (
                d.proportion("cat", by="g"),
                d.mean("y", by="g"),
                d.total("cat", by="g"),
                d.ratio("y", "x", by="g"),
            ):
                t = est.to_polars()
                out.append(t.select("estimate", "se", "df", "deff", "flags"))
        return out

    expected = answers()
    if layout == "sorted":
        monkeypatch.setattr(variance, "DENSE_LIMIT", 1)
    else:
        monkeypatch.setattr(variance, "DENSE_LIMIT", 1)
        if layout == "rows_without_moments":
            monkeypatch.setattr(variance, "MOMENT_LIMIT", 0)
    got = answers()
    for a, b in zip(expected, got, strict=True):
        assert b["estimate"].to_list() == pytest.approx(a["estimate"].to_list(), rel=1e-12)
        assert b["se"].to_list() == pytest.approx(a["se"].to_list(), rel=1e-9, abs=1e-15)
        assert b["df"].to_list() == a["df"].to_list()
        assert b["flags"].to_list() == a["flags"].to_list()
