"""Careless respondents of every kind planted into two studies: recall per kind and
precision overall, from screen()'s own exclusions and from the volna screen CLI.

The example study is screened with its rules file, the Ukrainian test
questionnaire (fixtures/screening/ukr_wellbeing.yaml) with the defaults, each on
three seeds. The bar is the issue's: recall 0.9 for every kind, precision 0.9
overall. Partial bots (a genuine respondent answering half the pages at random)
do not reach it: their recall is asserted at the issue's bar as an expected
failure, and separately at what the indices reach, so that it cannot fall unseen.
With page times (fixtures/screening/ukr_wellbeing_timed.yaml: the same questionnaire
timing its six pages) a partial bot fills its random pages fast, and the page_speed
rule brings every kind, partial bots included, to the bar.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))

from planted import KINDS, UKRAINIAN, UKRAINIAN_TIMED, genuine_ukrainian, plant
from volna import Questionnaire
from volna.cli import app
from volna.examples import example_path
from volna.examples.generate_okrussians import generate
from volna.screening import screen

EXAMPLE = Questionnaire.load(example_path("okrussians", "questionnaire.yaml"))
RULES = example_path("okrussians", "screening.yaml")

# The bar, for every kind but partial bots; theirs below.
BAR = 0.9
SOLVED = [k for k in KINDS if k != "partial_bot"]
# What partial bots reach (seeds 1-8: 0.50-0.80 on the example, 0.30-0.50 on the
# Ukrainian study): a random page of four scale items is, under the true model of
# the Ukrainian data, no more unlikely than a genuine page at its 99th percentile.
PARTIAL_FLOOR = {"example": 0.45, "ukrainian": 0.25}
SEEDS = (1, 2, 3)


@pytest.fixture(scope="module", params=SEEDS)
def example_planted(request):
    data, key = generate(n=2400, seed=request.param)
    clean = data.join(key, on="respondent_id", how="anti")
    return plant(clean[:2000], clean[2000:], EXAMPLE, seed=request.param + 10)


@pytest.fixture(scope="module", params=SEEDS)
def ukrainian_planted(request):
    q, genuine = genuine_ukrainian(2400, seed=request.param)
    data, key = plant(genuine[:2000], genuine[2000:], q, seed=request.param + 10)
    return q, data, key


@pytest.fixture(scope="module", params=SEEDS)
def timed_planted(request):
    q, genuine = genuine_ukrainian(2400, seed=request.param, path=UKRAINIAN_TIMED)
    data, key = plant(genuine[:2000], genuine[2000:], q, seed=request.param + 10)
    return q, data, key


def rates(excluded: pl.DataFrame, key: pl.DataFrame, ident: str) -> tuple[dict, float]:
    joined = excluded.join(key, on=ident, how="left").with_columns(
        pl.col("planted").fill_null("genuine")
    )
    recall = dict(
        joined.filter(pl.col("planted") != "genuine")
        .group_by("planted")
        .agg(pl.col("excluded").mean())
        .rows()
    )
    flagged = joined.filter("excluded")
    precision = flagged.filter(pl.col("planted") != "genuine").height / max(flagged.height, 1)
    return recall, precision


def test_every_kind_on_the_example(example_planted):
    data, key = example_planted
    result = screen(data, EXAMPLE, RULES)
    recall, precision = rates(result.data, key, "respondent_id")
    for kind in SOLVED:
        assert recall[kind] >= BAR, (kind, recall)
    assert recall["partial_bot"] >= PARTIAL_FLOOR["example"], recall
    assert precision >= BAR
    # reasons name the index and its cut-off
    why = result.data.filter("flag_careless")["why_careless"].to_list()
    assert why and all(w.startswith("random_answers p = ") and "(< 0.001)" in w for w in why)


def test_every_kind_on_another_questionnaire(ukrainian_planted):
    q, data, key = ukrainian_planted
    result = screen(data, q)
    recall, precision = rates(result.data, key, "rid")
    for kind in SOLVED:
        assert recall[kind] >= BAR, (kind, recall)
    assert recall["partial_bot"] >= PARTIAL_FLOOR["ukrainian"], recall
    assert precision >= BAR
    # every index the structure allows: three scales with reverse-keyed items (antonyms
    # need item pairs correlated below -0.6 in the data, which the seed decides)
    assert set(result.indices.columns) - {"antonyms"} == {
        "longstring", "irv", "even_odd", "synonyms",
        "mahalanobis", "person_fit", "rare_answers", "random_answers",
    }  # fmt: skip
    # duplicates of one respondent form one group, with submission times
    clusters = result.duplicate_clusters
    assert clusters.height and clusters["first_seen"].is_not_null().all()


def test_the_cli_flags_the_same(tmp_path, ukrainian_planted):
    q, data, key = ukrainian_planted
    from volna.io import write

    path = tmp_path / "data.csv"
    write(data, path, q)
    out = tmp_path / "screened.csv"
    res = CliRunner().invoke(app, ["screen", str(UKRAINIAN), str(path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    written = pl.read_csv(out, infer_schema_length=0).with_columns(pl.col("excluded") == "true")
    recall, precision = rates(written.select("rid", "excluded"), key, "rid")
    for kind in SOLVED:
        assert recall[kind] >= BAR, (kind, recall)
    assert precision >= BAR


PARTIAL_BELOW_BAR = pytest.mark.xfail(
    strict=True,
    reason="partial bots answering half the pages at random: recall 0.3-0.8, under the bar",
)


@PARTIAL_BELOW_BAR
def test_partial_bots_reach_the_bar_on_the_example(example_planted):
    data, key = example_planted
    recall, _ = rates(screen(data, EXAMPLE, RULES).data, key, "respondent_id")
    assert recall["partial_bot"] >= BAR, recall


@PARTIAL_BELOW_BAR
def test_partial_bots_reach_the_bar_on_another_questionnaire(ukrainian_planted):
    q, data, key = ukrainian_planted
    recall, _ = rates(screen(data, q).data, key, "rid")
    assert recall["partial_bot"] >= BAR, recall


# -- with page times: partial bots fill their random pages fast ----------------------


def test_every_kind_with_page_times(timed_planted):
    q, data, key = timed_planted
    result = screen(data, q)
    recall, precision = rates(result.data, key, "rid")
    for kind in KINDS:
        assert recall[kind] >= BAR, (kind, recall)
    assert precision >= BAR
    # the pages a bot filled at random are the ones its reasons name
    bots = result.data.join(key, on="rid").filter(
        (pl.col("planted") == "partial_bot") & pl.col("flag_page_speed")
    )
    pages = {p.page for p in q.page_times}
    for why in bots["why_page_speed"]:
        named = {part.split()[1] for part in why.split("; ")}
        assert named and named <= pages, why


def test_the_cli_flags_the_same_with_page_times(tmp_path, timed_planted):
    q, data, key = timed_planted
    from volna.io import write

    path = tmp_path / "data.csv"
    write(data, path, q)
    out = tmp_path / "screened.csv"
    res = CliRunner().invoke(app, ["screen", str(UKRAINIAN_TIMED), str(path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "page_speed" in res.output
    written = pl.read_csv(out, infer_schema_length=0).with_columns(pl.col("excluded") == "true")
    recall, precision = rates(written.select("rid", "excluded"), key, "rid")
    for kind in KINDS:
        assert recall[kind] >= BAR, (kind, recall)
    assert precision >= BAR


def test_page_times_without_their_columns_change_nothing(ukrainian_planted):
    """The timed questionnaire on data without page times screens as the untimed one."""
    q, data, _ = ukrainian_planted
    timed = Questionnaire.load(UKRAINIAN_TIMED)
    plain = screen(data, q).data["excluded"]
    assert screen(data, timed).data["excluded"].equals(plain)
