"""Replicate weights held as the frame's own columns: zero copies, the same numbers.

A replicate design read from a data frame keeps views of the frame's Float64 columns
(:class:`volna.variance.ReplicateWeightColumns`) instead of a second ``n x R`` matrix.
These tests check that the views really share the frame's memory, and that every
consumer (products, groups, ranks, weighting) gives what the full matrix gives.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from volna import variance
from volna.design import DesignError, SurveyDesign
from volna.variance import (
    RatioBlock,
    ReplicateWeightColumns,
    find_replicate_groups,
    replicate_rank,
)

R = 6


def _frame(n: int = 400, seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    w = rng.uniform(1.0, 3.0, n)
    factors = rng.choice([0.5, 1.0, 1.5], size=(n, R))
    cols = {
        "w": w,
        "y": rng.normal(10.0, 2.0, n),
        "g": rng.choice(["a", "b", "c"], n),
        "q": rng.choice(["x", "y", "z", "v"], n),
    }
    for k in range(R):
        cols[f"rw{k + 1}"] = w * factors[:, k]
    return pl.DataFrame(cols)


def _chunked(frame: pl.DataFrame, cut: int) -> pl.DataFrame:
    """The same rows in two chunks per column, as a multi-file or parquet read gives."""
    out = pl.concat([frame.head(cut), frame.tail(frame.height - cut)], rechunk=False)
    assert out.get_column("rw1").n_chunks() == 2
    return out


def _design(frame, **kw):
    kw = {"type": "JK1", **kw}
    return SurveyDesign.replicate(frame, weights="w", replicate_weights="rw", **kw)


def _table(est) -> np.ndarray:
    t = est.to_polars()
    return np.column_stack([t[c].to_numpy() for c in ("estimate", "se", "ci_low", "deff")])


# ---------------------------------------------------------------------------------------
# zero copy


def test_a_single_chunk_float_column_is_held_in_place():
    frame = _frame()
    cols = _design(frame).replicates.columns
    assert cols.matrix is None  # no (n, R) array
    for j in range(R):
        held = cols.column(j)
        assert np.shares_memory(held, frame.get_column(f"rw{j + 1}").to_numpy())


def test_every_chunk_of_a_multi_chunk_column_is_held_in_place():
    frame = _chunked(_frame(), 150)
    cols = _design(frame).replicates.columns
    for j in range(R):
        chunks = frame.get_column(f"rw{j + 1}").get_chunks()
        pieces = cols.stored_pieces(j)
        assert [(lo, hi) for lo, hi, _ in pieces] == [(0, 150), (150, 400)]
        for (_, _, held), chunk in zip(pieces, chunks, strict=True):
            assert np.shares_memory(held, chunk.to_numpy())


def test_multi_chunk_integer_and_rechunked_frames_give_the_same_estimates():
    frame = _frame()
    # integer weights (a converted copy, the one unavoidable) against the same as floats
    ints = frame.with_columns([pl.col(f"rw{k + 1}").round(0).cast(pl.Int64) for k in range(R)])
    floats = ints.with_columns([pl.col(f"rw{k + 1}").cast(pl.Float64) for k in range(R)])
    for a, b in ((_chunked(frame, 123), frame), (ints, floats)):
        da, db = _design(a), _design(b)
        for by in (None, "g"):
            np.testing.assert_allclose(
                _table(da.mean("y", by=by)), _table(db.mean("y", by=by)), rtol=1e-13
            )
            np.testing.assert_allclose(
                _table(da.proportion("q", by=by)), _table(db.proportion("q", by=by)), rtol=1e-13
            )
        assert da.degf == db.degf


def test_factors_are_multiplied_by_the_weight_on_the_fly():
    frame = _frame()
    w = frame.get_column("w").to_numpy()
    factors = frame.with_columns([pl.col(f"rw{k + 1}") / pl.col("w") for k in range(R)])
    by_factor = _design(factors, combined_weights=False)
    combined = _design(frame)
    cols = by_factor.replicates.columns
    assert cols.matrix is None and cols.multiplier is not None
    np.testing.assert_allclose(cols.rows(0, 400), frame.select("^rw.*$").to_numpy(), rtol=1e-14)
    np.testing.assert_allclose(cols.rows(0, 400) / w[:, None], cols.stored_rows(0, 400))
    for by in (None, "g"):
        for est in ("mean", "proportion"):
            var = "y" if est == "mean" else "q"
            np.testing.assert_allclose(
                _table(getattr(by_factor, est)(var, by=by)),
                _table(getattr(combined, est)(var, by=by)),
                rtol=1e-12,
            )


def test_missing_and_infinite_replicate_weights_name_their_row_across_chunks():
    frame = _frame(n=40)
    bad = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 33).then(None).otherwise(pl.col("rw4")).alias("rw4")
    )
    with pytest.raises(DesignError, match="row 34, column rw4: replicate weight is missing"):
        _design(_chunked(bad, 20))
    inf = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 25).then(np.inf).otherwise(pl.col("rw2")).alias("rw2")
    )
    with pytest.raises(DesignError, match="row 26, column rw2: replicate weight is missing"):
        _design(_chunked(inf, 20))
    text = frame.with_columns(pl.col("rw3").cast(pl.String))
    with pytest.raises(DesignError, match="column rw3: replicate weights must be numbers"):
        _design(text)


def test_the_weights_property_is_the_full_matrix():
    frame = _chunked(_frame(), 99)
    rep = _design(frame).replicates
    full = rep.weights
    assert full.shape == (400, R)
    np.testing.assert_array_equal(full, frame.select("^rw.*$").to_numpy())


# ---------------------------------------------------------------------------------------
# the type itself


def _pieces_matrix(seed=1, n=50):
    """A matrix and the same columns cut into pieces at different rows per column."""
    rng = np.random.default_rng(seed)
    m = rng.uniform(0.0, 2.0, (n, 4))
    cuts = [[0, 20, n], [0, 7, 31, n], [0, n], [0, 20, 45, n]]
    cols = [[m[a:b, j].copy() for a, b in itertools.pairwise(c)] for j, c in enumerate(cuts)]
    return m, ReplicateWeightColumns(cols)


def test_columns_cut_at_different_rows_read_as_the_matrix():
    m, cols = _pieces_matrix()
    assert cols.shape == m.shape
    np.testing.assert_array_equal(cols.rows(0, 50), m)
    np.testing.assert_array_equal(cols.rows(5, 33), m[5:33])
    for lo, hi in cols.row_ranges(8):
        assert hi - lo <= 8
        np.testing.assert_array_equal(cols.stored_rows(lo, hi), m[lo:hi])
        np.testing.assert_array_equal(np.column_stack(cols.column_slices(lo, hi)), m[lo:hi])
    idx = np.array([49, 0, 21, 7, 6])
    np.testing.assert_array_equal(cols.take_rows(idx), m[idx])
    np.testing.assert_array_equal(cols.to_array(), m)
    v = np.array([1.0, -2.0, 0.5, 3.0])
    np.testing.assert_allclose(cols.dot(v), m @ v, rtol=1e-14)
    index = np.arange(50) % 3
    np.testing.assert_allclose(cols.group_sum(index, 3), variance.group_sum(index, 3, m))
    left = np.random.default_rng(2).normal(size=(3, 50))
    np.testing.assert_allclose(cols.left_product(left), left @ m, rtol=1e-12)
    assert cols.first_nonfinite() is None


def test_the_first_nonfinite_value_is_found_column_by_column():
    m, _ = _pieces_matrix()
    m[31, 2] = np.nan
    m[40, 1] = np.inf
    assert ReplicateWeightColumns.from_matrix(m).first_nonfinite() == (40, 1)


def _reference_product(blocks, m, mult=None):
    """``X.T @ W`` row by row with ``np.add.at``: the definition."""
    w = m if mult is None else m * mult[:, None]
    parts = []
    for block in blocks:
        num = np.zeros((block.n_estimates, w.shape[1]))
        ok = block.base >= 0
        code = block.base[ok] * block.per + (0 if block.local is None else block.local[ok])
        val = np.ones(ok.sum()) if block.numerator is None else block.numerator[ok]
        np.add.at(num, code, w[ok] * val[:, None])
        parts.append(num)
        if not block.counts_only:
            den = np.zeros((block.n_bases, w.shape[1]))
            dval = np.ones(ok.sum()) if block.denominator is None else block.denominator[ok]
            np.add.at(den, block.base[ok], w[ok] * dval[:, None])
            parts.append(den)
    return np.vstack(parts)


@pytest.mark.parametrize("layout_kind", ["row-major", "columns", "pieces", "multiplier"])
@pytest.mark.parametrize(
    "blocks_kind", ["mean of all", "mean", "mean by", "proportions", "topline", "mixed"]
)
def test_every_product_path_computes_the_definition(layout_kind, blocks_kind, monkeypatch):
    rng = np.random.default_rng(11)
    n = 3000
    m = rng.uniform(0.0, 2.0, (n, 5))
    dom = rng.integers(-1, 3, n)
    y = rng.normal(size=n)
    y[dom < 0] = np.nan  # outside every base: must not reach any cell
    if blocks_kind == "mean of all":  # denominators from the pieces' known totals
        everyone = np.zeros(n, np.int64)
        blocks = [RatioBlock(base=everyone, n_bases=1, numerator=rng.normal(size=n))]
    elif blocks_kind == "mean":
        blocks = [RatioBlock(base=np.where(dom >= 0, 0, -1), n_bases=1, numerator=y)]
    elif blocks_kind == "mean by":
        blocks = [RatioBlock(base=dom, n_bases=3, numerator=y, denominator=np.abs(y) + 1)]
    elif blocks_kind == "proportions":
        blocks = [RatioBlock(base=dom, n_bases=3, local=rng.integers(0, 4, n), per=4)]
    elif blocks_kind == "topline":  # joint sums of questions sharing the domain codes
        blocks = [
            RatioBlock(base=dom, n_bases=3, local=rng.integers(0, k, n), per=k)
            for k in (2, 3, 5, 4, 2, 3)
        ]
    else:  # joint groups broken by a mean, by other domain codes, by too many levels
        other = np.where(dom == 2, -1, dom)
        blocks = [
            RatioBlock(base=dom, n_bases=3, local=rng.integers(0, 3, n), per=3),
            RatioBlock(base=dom, n_bases=3, local=rng.integers(0, 4, n), per=4),
            RatioBlock(base=dom, n_bases=3, numerator=y),
            RatioBlock(base=dom, n_bases=3, local=rng.integers(0, 8, n), per=8),
            RatioBlock(base=dom, n_bases=3, local=rng.integers(0, 9, n), per=9),
            RatioBlock(base=other, n_bases=3, local=rng.integers(0, 2, n), per=2),
            RatioBlock(base=other, n_bases=3, local=rng.integers(0, 5, n), per=5),
            RatioBlock(base=dom, n_bases=3, local=rng.integers(0, 2, n), per=2),
        ]
    mult = None
    if layout_kind == "row-major":
        reps = ReplicateWeightColumns.from_matrix(np.ascontiguousarray(m))
    elif layout_kind == "columns":
        reps = ReplicateWeightColumns([m[:, j].copy() for j in range(5)])
    elif layout_kind == "pieces":
        reps = ReplicateWeightColumns([[m[:1000, j].copy(), m[1000:, j].copy()] for j in range(5)])
    else:
        mult = rng.uniform(0.5, 1.5, n)
        reps = ReplicateWeightColumns([m[:, j].copy() for j in range(5)], multiplier=mult)
    # small chunks and sub-blocks, so that every path crosses chunk and piece boundaries
    monkeypatch.setattr(variance, "PRODUCT_CHUNK", 512)
    monkeypatch.setattr(variance, "PRODUCT_ROWS", 100)
    layout, off = [], 0
    for b in blocks:
        has_den = not b.counts_only
        layout.append((off, b.n_estimates, b.n_bases, has_den))
        off += b.n_estimates + (b.n_bases if has_den else 0)
    got = variance._chunked_product(blocks, reps, layout, off)
    np.testing.assert_allclose(got, _reference_product(blocks, m, mult), rtol=1e-12, atol=1e-12)


def test_groups_and_ranks_read_columns_as_they_read_the_matrix():
    rng = np.random.default_rng(4)
    psu = rng.integers(0, 30, 600)
    w = rng.uniform(1.0, 2.0, 600)
    factors = rng.choice([0.0, 1.0, 2.0], size=(30, R))
    m = w[:, None] * factors[psu]
    cols = ReplicateWeightColumns([[m[:250, j].copy(), m[250:, j].copy()] for j in range(R)])
    g_cols, g_mat = find_replicate_groups(w, cols), find_replicate_groups(w, m)
    assert g_cols is not None and g_mat is not None
    np.testing.assert_array_equal(g_cols.group, g_mat.group)
    np.testing.assert_allclose(g_cols.factors, g_mat.factors, rtol=1e-14)
    # rows with their own factors each: nothing to compress, from either
    m = w[:, None] * rng.uniform(0.5, 1.5, size=(600, R))
    cols = ReplicateWeightColumns([m[:, j].copy() for j in range(R)])
    assert find_replicate_groups(w, cols) is None and find_replicate_groups(w, m) is None
    # the PSUs as candidates, one row off its PSU's factors: refused by the column check
    m = w[:, None] * factors[psu]
    m[5, 2] *= 1.001
    cols = ReplicateWeightColumns([m[:, j].copy() for j in range(R)])
    assert find_replicate_groups(w, cols, candidate=psu) is None
    assert find_replicate_groups(w, m, candidate=psu) is None
    base = rng.integers(-1, 2, 600)
    np.testing.assert_array_equal(replicate_rank(cols, base, 2), replicate_rank(m, base, 2))


def test_weighting_a_frame_backed_design_equals_weighting_its_matrix():
    frame = _frame()
    held = _design(frame)
    rep = held.replicates
    as_matrix = replace(
        held, replicates=replace(rep, columns=ReplicateWeightColumns.from_matrix(rep.weights))
    )
    assert held.replicates.columns.matrix is None
    margins = {
        "g": {"a": 120.0, "b": 180.0, "c": 100.0},
        "q": {"x": 100.0, "y": 100.0, "z": 100.0, "v": 100.0},
    }
    for step in (
        lambda d: d.rake(margins),
        lambda d: d.rake(margins).trim(upper=1.5, relative=True),
        lambda d: d.calibrate(["y"], {"(Intercept)": 400.0, "y": 4100.0}),
    ):
        a, b = step(held), step(as_matrix)
        assert a.replicates.columns.matrix is not None  # new weights are new data
        np.testing.assert_allclose(a.replicates.weights, b.replicates.weights, rtol=1e-12)
        np.testing.assert_allclose(
            _table(a.mean("y", by="q")), _table(b.mean("y", by="q")), rtol=1e-12
        )


def test_new_sampling_weights_over_the_same_replicates_drop_their_groups():
    # replicates made from PSUs compress into groups of w_i * factors; a new sampling
    # weight with the same replicate weights changes every factor
    rng = np.random.default_rng(8)
    frame = pl.DataFrame(
        {
            "psu": rng.integers(0, 12, 300),
            "y": rng.normal(5.0, 1.0, 300),
            "g": rng.integers(0, 2, 300),
        }
    )
    jk = SurveyDesign.from_frame(frame, ids="psu").with_replicates("JK1")
    assert jk.replicates.groups is not None
    step = jk.rake({"g": {0: 140.0, 1: 160.0}}).weighting[-1]
    w2 = rng.uniform(0.5, 2.0, 300)
    moved = jk.reweighted(w2, step)
    assert moved.replicates.groups is None
    reps = pl.DataFrame(jk.replicates.weights, schema=[f"r{k}" for k in range(12)])
    fresh = SurveyDesign.replicate(
        frame.with_columns(pl.Series("w2", w2)).hstack(reps),
        weights="w2",
        replicate_weights="r",
        type="JK1",
    )
    np.testing.assert_allclose(_table(moved.mean("y")), _table(fresh.mean("y")), rtol=1e-12)
