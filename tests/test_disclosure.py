"""Table rules: minimum cell size, the NCHS standard for proportions, group disclosure.

Every NCHS case is built by hand so that exactly one step of the standard (Parker et al.
2017, as NCHS's own ``surveytable`` applies it) decides it; the effective sample size is
``p(1-p)/se^2`` capped at the base.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from volna.design import SurveyDesign
from volna.disclosure import (
    DisclosureError,
    TableRules,
    apply_table_rules,
    flag_text,
    flags_fired,
    rules_text,
)


def rows(*cells: dict) -> pl.DataFrame:
    """Proportion rows; each cell gives what differs from a clean, reliable estimate."""
    base = {
        "variable": "q",
        "level": "a",
        "domain": None,
        "estimator": "proportion",
        "estimate": 0.5,
        "se": 0.01,
        "ci_low": 0.48,
        "ci_high": 0.52,
        "df": 100.0,
        "n": 500,
        "base": 1000,
        "flags": [],
    }
    data = [{**base, "level": f"l{i}", **c} for i, c in enumerate(cells)]
    return pl.DataFrame(data, schema_overrides={"domain": pl.String, "flags": pl.List(pl.String)})


def fired(out: pl.DataFrame) -> list[list[str]]:
    return out.get_column("flags").to_list()


# ---- minimum cell size ------------------------------------------------------------------


def test_small_base_hides_every_cell_of_the_column():
    t = rows({"n": 5, "base": 8}, {"n": 3, "base": 8}, {"n": 0, "base": 8})
    out = apply_table_rules(t, TableRules(nchs="off"))
    assert out["mark"].to_list() == ["suppressed"] * 3
    assert out["shown"].to_list() == [False] * 3
    assert all("min_n_base" in f for f in fired(out))


def test_small_count_hidden_but_zero_is_not_a_small_count():
    t = rows({"n": 9}, {"n": 10}, {"n": 1}, {"n": 0, "estimate": 0.0, "se": 0.0})
    out = apply_table_rules(t, TableRules(nchs="off", group_disclosure="off"))
    assert out["mark"].to_list() == ["suppressed", "", "suppressed", ""]
    assert fired(out)[0] == ["min_n_cell"]
    assert fired(out)[1] == []
    assert fired(out)[3] == []


def test_min_n_is_configurable():
    t = rows({"n": 12}, {"n": 30})
    out = apply_table_rules(t, TableRules(min_n=20, nchs="off"))
    assert out["mark"].to_list() == ["suppressed", ""]


def test_base_is_the_sum_of_counts_when_not_given():
    t = rows({"n": 4}, {"n": 4}).drop("base")
    out = apply_table_rules(t, TableRules(nchs="off"))
    assert out["base"].to_list() == [8, 8]
    assert out["mark"].to_list() == ["suppressed", "suppressed"]
    assert fired(out)[0] == ["min_n_base", "min_n_cell"]


def test_means_get_the_base_rule_only():
    t = pl.DataFrame(
        {
            "estimator": ["mean", "mean"],
            "estimate": [41.5, 3.2],
            "se": [25.0, 0.1],
            "ci_low": [0.0, 3.0],
            "ci_high": [90.0, 3.4],
            "n": [9, 40],
        }
    )
    out = apply_table_rules(t)
    assert out["mark"].to_list() == ["suppressed", ""]
    assert fired(out) == [["min_n_base"], []]
    assert out["n_effective"].to_list() == [None, None]


def test_existing_flags_are_kept():
    t = rows({"n": 5, "flags": ["zero_variance"]})
    out = apply_table_rules(t, TableRules(nchs="off"))
    assert fired(out)[0] == ["zero_variance", "min_n_cell"]


# ---- NCHS --------------------------------------------------------------------------------


def test_nchs_effective_sample_size_below_30_fails():
    # p(1-p)/se^2 = 0.25 / 0.01 = 25
    t = rows({"estimate": 0.5, "se": 0.1, "ci_low": 0.45, "ci_high": 0.55, "n": 50, "base": 100})
    out = apply_table_rules(t)
    assert out["n_effective"][0] == pytest.approx(25.0)
    assert fired(out)[0] == ["nchs_effective_n"]
    assert out["mark"][0] == "unreliable"
    assert out["shown"][0]


def test_nchs_effective_size_is_capped_at_the_base():
    # a tiny se would give 2500 effective respondents; only 25 answered
    t = rows({"estimate": 0.5, "se": 0.01, "n": 12, "base": 25, "ci_low": 0.49, "ci_high": 0.51})
    out = apply_table_rules(t, TableRules(min_n=10))
    assert out["n_effective"][0] == 25
    assert "nchs_effective_n" in fired(out)[0]


def test_nchs_narrow_interval_passes_before_the_relative_width_is_looked_at():
    # width 0.03 <= 0.05 passes, although 0.03 / 0.02 = 150% relative width
    t = rows({"estimate": 0.02, "se": 0.005, "ci_low": 0.01, "ci_high": 0.04, "n": 20})
    out = apply_table_rules(t)
    assert fired(out)[0] == []
    assert out["mark"][0] == ""


def test_nchs_wide_interval_fails():
    t = rows({"estimate": 0.5, "se": 0.05, "ci_low": 0.34, "ci_high": 0.66, "n": 50, "base": 100})
    out = apply_table_rules(t)
    assert out["ci_width"][0] == pytest.approx(0.32)
    assert fired(out)[0] == ["nchs_ci_width"]
    assert out["mark"][0] == "unreliable"


def test_nchs_width_of_exactly_030_fails():
    t = rows({"estimate": 0.5, "se": 0.05, "ci_low": 0.35, "ci_high": 0.65})
    assert fired(apply_table_rules(t))[0] == ["nchs_ci_width"]


def test_nchs_relative_width_above_130_percent_fails():
    # n_eff = 0.0475 / 0.0004 = 118.75; width 0.11 / 0.05 = 220%
    t = rows({"estimate": 0.05, "se": 0.02, "ci_low": 0.01, "ci_high": 0.12, "n": 25})
    out = apply_table_rules(t)
    assert fired(out)[0] == ["nchs_relative_width"]
    assert out["mark"][0] == "unreliable"


def test_nchs_complement_and_degrees_of_freedom_are_for_review_only():
    t = rows(
        # width 0.14: 0.14 / 0.05 (complement) = 280%
        {"estimate": 0.95, "se": 0.03, "ci_low": 0.85, "ci_high": 0.99, "n": 950},
        {"df": 5.0},
    )
    out = apply_table_rules(t)
    assert fired(out) == [["nchs_complement"], ["nchs_df"]]
    assert out["mark"].to_list() == ["", ""]


def test_nchs_zero_is_for_review_and_group_disclosure_in_a_small_group():
    t = rows(
        {"estimate": 0.0, "se": 0.0, "ci_low": 0.0, "ci_high": 0.09, "n": 0, "base": 40},
        {"estimate": 1.0, "se": 0.0, "ci_low": 0.91, "ci_high": 1.0, "n": 40, "base": 40},
        {"estimate": 0.0, "se": 0.0, "ci_low": 0.0, "ci_high": 0.05, "n": 0, "base": 80},
    )
    out = apply_table_rules(t)
    assert fired(out) == [
        ["nchs_zero_or_full", "group_disclosure"],
        ["nchs_zero_or_full", "group_disclosure"],
        ["nchs_zero_or_full"],
    ]
    assert out["mark"].to_list() == ["disclosure", "disclosure", ""]
    assert out["ci_width"].to_list() == [0.0, 0.0, 0.0]


def test_a_share_fixed_by_weighting_is_known_exactly():
    # raking to a margin leaves no sampling variance (and no interval) on its cells
    t = rows({"estimate": 0.17, "se": 0.0, "ci_low": float("nan"), "ci_high": float("nan")})
    out = apply_table_rules(t)
    assert fired(out)[0] == []
    assert out["mark"][0] == ""


def test_nchs_suppress_hides_and_off_skips():
    t = rows({"estimate": 0.5, "se": 0.1, "ci_low": 0.45, "ci_high": 0.55, "n": 50, "base": 100})
    hidden = apply_table_rules(t, TableRules(nchs="suppress"))
    assert hidden["mark"][0] == "suppressed"
    assert not hidden["shown"][0]
    assert fired(hidden)[0] == ["nchs_effective_n"]
    off = apply_table_rules(t, TableRules(nchs="off"))
    assert off["mark"][0] == ""
    assert fired(off)[0] == []


def test_missing_estimate_is_hidden():
    t = rows({"estimate": float("nan"), "se": float("nan")})
    out = apply_table_rules(t)
    assert out["mark"][0] == "suppressed"


# ---- group disclosure --------------------------------------------------------------------


def test_group_disclosure_threshold_and_actions():
    t = rows(
        {"estimate": 1.0, "se": 0.0, "n": 30, "base": 30},
        {"estimate": 1.0, "se": 0.0, "n": 30, "base": 30},
    )
    assert apply_table_rules(t, TableRules(group_k=30))["mark"].to_list() == ["", ""]
    assert apply_table_rules(t, TableRules(group_k=31))["mark"][0] == "disclosure"
    hidden = apply_table_rules(t, TableRules(group_disclosure="suppress"))
    assert hidden["mark"][0] == "suppressed"
    assert "group_disclosure" in fired(hidden)[0]
    off = apply_table_rules(t, TableRules(group_disclosure="off"))
    assert "group_disclosure" not in fired(off)[0]


def test_disclosure_outranks_unreliable():
    # 0% in a group of 20: NCHS fails it (n_eff = base = 20) and it discloses
    t = rows({"estimate": 0.0, "se": 0.0, "n": 0, "base": 20, "ci_low": 0.0, "ci_high": 0.17})
    out = apply_table_rules(t)
    assert fired(out)[0] == ["nchs_effective_n", "group_disclosure"]
    assert out["mark"][0] == "disclosure"


# ---- on a real design --------------------------------------------------------------------


def test_rules_on_small_domains_of_a_design():
    rng = np.random.default_rng(3)
    n = 400
    group = np.where(np.arange(n) < 8, "tiny", np.where(np.arange(n) < 48, "small", "big"))
    answer = np.where(rng.random(n) < 0.3, "yes", "no")
    answer[8:48] = "no"  # nobody in the small group says yes
    frame = pl.DataFrame({"g": group, "a": answer, "w": rng.uniform(0.5, 2.0, n)})
    design = SurveyDesign.from_frame(frame, weights="w")
    est = design.proportion("a", by="g", ci="beta").to_polars()
    out = apply_table_rules(est, TableRules())
    by = {(r["g"], r["level"]): r for r in out.iter_rows(named=True)}
    assert by[("tiny", "yes")]["mark"] == "suppressed"
    assert by[("tiny", "no")]["mark"] == "suppressed"
    assert "min_n_base" in by[("tiny", "no")]["flags"]
    assert by[("small", "yes")]["n"] == 0
    assert by[("small", "yes")]["mark"] == "disclosure"
    assert by[("small", "no")]["mark"] == "disclosure"  # 100% of the group
    assert by[("big", "yes")]["mark"] == ""
    assert by[("big", "yes")]["base"] == 352
    # the NCHS effective size is p(1-p)/se^2 (capped at the base)
    row = by[("big", "yes")]
    expected = min(row["estimate"] * (1 - row["estimate"]) / row["se"] ** 2, 352)
    assert row["n_effective"] == pytest.approx(expected)


# ---- options and words ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_n": -1}, "min_n: expected a whole number"),
        ({"min_n": 2.5}, "min_n: expected a whole number"),
        ({"alpha": 1.5}, "alpha: expected a number between 0 and 1"),
        ({"correction": "fdr"}, "correction: expected holm, bonferroni or none"),
        ({"ci": "exact"}, "ci: expected one of"),
        ({"group_disclosure": True}, "group_disclosure: expected flag, suppress or off"),
    ],
)
def test_bad_rules_are_named(kwargs, message):
    with pytest.raises(DisclosureError, match=message):
        TableRules(**kwargs)


def test_a_table_without_counts_is_refused():
    with pytest.raises(DisclosureError, match="column 'n'"):
        apply_table_rules(pl.DataFrame({"estimate": [0.5]}))


def test_rules_in_words():
    en = rules_text(TableRules(min_n=15, group_k=40, alpha=0.01), "en")
    ru = rules_text(TableRules(min_n=15, group_k=40, alpha=0.01), "ru")
    assert len(en) == len(ru) == 5
    assert "fewer than 15 respondents" in en[0]
    assert "меньше 15 респондентов" in ru[0]
    assert "NCHS" in en[1] and "marked" in en[1]
    assert "fewer than 40 respondents" in en[2]
    assert "Korn-Graubard" in en[3]
    assert "0.01" in en[4] and "Holm" in en[4]
    assert "0,01" in ru[4] and "Холма" in ru[4]
    suppress = rules_text(TableRules(nchs="suppress"), "en")[1]
    assert "are not shown" in suppress
    assert flag_text("group_disclosure", TableRules(group_k=40), "ru").startswith("0% или 100%")


def test_flags_fired_in_rule_order():
    out = apply_table_rules(
        rows({"n": 3}, {"estimate": 0.5, "se": 0.1, "ci_low": 0.4, "ci_high": 0.6}),
    )
    assert flags_fired(out) == ["min_n_cell", "nchs_effective_n"]
