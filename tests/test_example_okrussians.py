"""The bundled OK Russians example: questionnaire, published figures, synthetic data.

Shares are recomputed here with polars from the generated frame, independently
of the generator, and compared with the figures in ``published.yaml``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import polars as pl
import pytest
import yaml

import volna
from volna import Questionnaire
from volna.examples import example_path
from volna.examples.generate_okrussians import PLANTED, generate, load_targets, write_example
from volna.questionnaire.countries import country_codes

N = 20_000
SEED = 1
#: Allowed gap, in percentage points, between a generated share and its target.
TOLERANCE = 2.0
#: Tighter gap once the planted bad respondents are removed.
CLEAN_TOLERANCE = 1.5


@pytest.fixture(scope="module")
def q() -> Questionnaire:
    return Questionnaire.load(example_path("okrussians", "questionnaire.yaml"))


@pytest.fixture(scope="module")
def figures() -> dict:
    text = example_path("okrussians", "published.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)["figures"]


@pytest.fixture(scope="module")
def generated() -> tuple[pl.DataFrame, pl.DataFrame]:
    return generate(n=N, seed=SEED)


@pytest.fixture(scope="module")
def responses(generated) -> pl.DataFrame:
    return generated[0]


@pytest.fixture(scope="module")
def key(generated) -> pl.DataFrame:
    return generated[1]


@pytest.fixture(scope="module")
def clean(responses, key) -> pl.DataFrame:
    return responses.filter(~pl.col("respondent_id").is_in(key["respondent_id"].implode()))


def planted(key: pl.DataFrame, kind: str) -> list[str]:
    return key.filter(pl.col("planted") == kind)["respondent_id"].to_list()


# -- the questionnaire -------------------------------------------------------------

TOPICS = {
    "destination": "country",
    "tickets_rules": "single",
    "plans": "single",
    "employed": "single",
    "sector": "single",
    "vote_2021": "single",
    "smart_voting": "single",
    "activity_before": "multiple",
    "activity_after": "multiple",
    "pressure": "multiple",
    "fears": "multiple",
    "prosecution_risk": "single",
    "exp_living": "scale",
    "exp_politics": "scale",
    "exp_discrim": "scale",
    "exp_work": "scale",
    "exp_family": "scale",
    "discrim_faced": "single",
    "english": "scale",
    "age": "integer",
    "gender": "single",
    "education": "single",
    "left_month": "single",
    "origin": "single",
    "finances": "scale",
    "channel": "single",
}


def test_questionnaire_covers_the_essays_topics(q):
    assert {name: q[name].type for name in TOPICS} == TOPICS
    assert q["plans"].codes == ("stay", "move_on", "undecided", "return")
    assert q["sector"].codes == (
        "it",
        "arts",
        "management",
        "accounting",
        "teaching",
        "journalism",
        "healthcare",
        "other",
    )
    assert q["vote_2021"].codes == (
        "ur",
        "kprf",
        "ldpr",
        "sr",
        "new_people",
        "yabloko",
        "other",
        "no_vote",
        "refuse",
    )
    assert q["fears"].codes == ("persecution", "conscription", "medicines", "prosecution", "none")
    assert q["origin"].codes == ("moscow", "spb", "million", "other_city", "rural")
    assert 12 <= len(q["channel"].codes) <= 14
    assert q["left_month"].codes[0] == "2022-02" and q["left_month"].codes[-1] == "2022-12"


def test_skip_logic_and_please_specify_are_declared(q):
    assert q["sector"].relevant == "${employed} = 'yes'"
    assert "${vote_2021}" in q["smart_voting"].relevant
    assert q["sector"].other_column == "sector_other"
    assert q["sector"].other_choice.code == "other"
    for name in ("activity_before", "activity_after", "pressure", "fears"):
        exclusive = [c.code for c in q[name].choices if c.exclusive]
        assert exclusive == ["none"], name
    assert any(question.constraint for question in q)
    assert any(question.type == "note" for question in q)


def test_before_and_after_are_a_declared_pair(q):
    (pair,) = q.pairs
    assert (pair.first.name, pair.second.name) == ("activity_before", "activity_after")
    assert pair.periods == ("before", "after")
    assert pair.first.choice_list == pair.second.choice_list == "activities"


def test_expectations_share_one_five_point_scale_with_dont_know(q):
    for name in ("exp_living", "exp_politics", "exp_discrim", "exp_work", "exp_family"):
        question = q[name]
        assert question.choice_list == "agree5"
        assert [c.value for c in question.choices if not c.missing] == [1, 2, 3, 4, 5]
        assert [c.code for c in question.choices if c.missing] == ["dk"]


def test_age_range_and_paradata(q):
    assert (q["age"].minimum, q["age"].maximum, q["age"].required) == (18, 90, True)
    assert {p.name: p.type for p in q.paradata} == {
        "respondent_id": "id",
        "duration_sec": "duration",
    }


def test_every_label_is_in_russian_and_english(q):
    assert q.default_language == "ru"
    for question in q:
        assert set(question.labels) == {"ru", "en"}, question.name
        for c in question.choices:
            assert set(c.labels) == {"ru", "en"}, (question.name, c.code)


# -- published.yaml ------------------------------------------------------------------


def test_published_figures_name_their_question_and_denominator(q, figures):
    source = yaml.safe_load(example_path("okrussians", "published.yaml").read_text("utf-8"))
    assert "essay" in source["source"]["title"]
    for name, fig in figures.items():
        assert fig["question"] in q, name
        assert fig["statistic"] in ("distribution", "selected", "summary"), name
        assert fig["denominator"], name
        assert fig.get("published") or fig.get("assumed"), name
        if fig.get("assumed") and fig.get("published"):
            assert fig.get("assumption"), f"{name}: assumed numbers need a reason"


def test_assumptions_stay_close_to_the_published_figures(figures):
    for name, fig in figures.items():
        published, assumed = fig.get("published"), fig.get("assumed")
        if not (published and assumed) or fig["statistic"] == "summary":
            continue
        for combined, value in published.items():
            implied = sum(assumed[c] for c in str(combined).split("+"))
            assert abs(implied - value) <= 2.0, (name, combined, implied, value)


def test_essay_figures_are_recorded(figures):
    assert figures["destination"]["published"]["TR"] == 24.9
    assert figures["sector"]["published"]["accounting+teaching"] == 14
    assert figures["vote_2021"]["published"] == {"ur": 1.5}
    assert figures["smart_voting"]["published"] == {"yes": 86.4}
    assert figures["activity_before"]["published"]["rallies"] == 48.9
    assert figures["activity_after"]["published"]["ngos"] == 40
    assert figures["fears"]["published"] == {
        "persecution": 50,
        "conscription": 20,
        "medicines": 19,
        "prosecution": 9,
    }


def test_load_targets_rejects_a_distribution_that_does_not_sum(tmp_path):
    path = tmp_path / "published.yaml"
    path.write_text(
        "figures:\n  plans:\n    question: plans\n    statistic: distribution\n"
        "    denominator: all\n    published: {stay: 43, move_on: 18, undecided: 35}\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="sums to 96%"):
        load_targets(path)


# -- margins.yaml and benchmarks.yaml ----------------------------------------------------


def test_margins_have_sources_dates_and_consistent_targets(q):
    text = example_path("okrussians", "margins.yaml").read_text(encoding="utf-8")
    margins = yaml.safe_load(text)["margins"]
    names = [m["name"] for m in margins]
    assert len(names) == len(set(names))
    assert "destination_bell_2024" in names and "age_gender_illustrative" in names
    for m in margins:
        assert m["source"]["title"] and m["reference_date"] and m["population"], m["name"]
        derived = m.get("derived") or {}
        for variable in m["variables"]:
            assert variable in q or derived[variable]["from"] in q, (m["name"], variable)
        targets = m["targets"]
        values = targets.values() if isinstance(targets, dict) else [c["value"] for c in targets]
        if m["type"] == "shares":
            assert sum(values) == pytest.approx(100), m["name"]
        else:
            assert sum(values) == m["total"], m["name"]
        if m["variables"] == ["destination"]:
            listed = [c for c in targets if c != m.get("other")]
            assert set(listed) <= country_codes(), m["name"]


def test_benchmarks_name_the_statistic_they_compare_to(q):
    text = example_path("okrussians", "benchmarks.yaml").read_text(encoding="utf-8")
    benchmarks = {b["name"]: b for b in yaml.safe_load(text)["benchmarks"]}
    assert benchmarks["ur_share_official_2021"]["value"] == 49.82
    assert benchmarks["ur_share_levada_post_2021"]["value"] == 38
    assert benchmarks["smart_voting_levada_2021"]["value"] == 8
    for name, b in benchmarks.items():
        target = b["compares_to"]
        codes = q[target["question"]].codes
        assert set(target["levels"]) <= set(codes), name
        assert set(target.get("among", codes)) <= set(codes), name
        assert b["source"]["title"] and b["date"] and b["population"], name


# -- the canonical table ---------------------------------------------------------------


def test_columns_and_types_are_canonical(q, responses):
    assert responses.columns == list(q.columns)
    expected = {"respondent_id": pl.String, "duration_sec": pl.Float64}
    for question in q.answerable:
        if question.type == "multiple":
            expected |= {question.option_column(c): pl.Boolean for c in question.codes}
        elif question.type == "integer":
            expected[question.name] = pl.Int64
        else:
            expected[question.name] = pl.String
        if question.other_column:
            expected[question.other_column] = pl.String
    assert dict(responses.schema) == expected


def test_codes_are_the_questionnaires(q, responses):
    for question in q.answerable:
        if question.type in ("single", "scale"):
            found = set(responses[question.name].drop_nulls().unique())
            assert found <= set(question.codes), question.name
    destinations = set(responses["destination"].unique())
    assert destinations <= country_codes()
    assert all(c == c.upper() and len(c) == 2 for c in destinations)
    assert responses["age"].min() >= 18 and responses["age"].max() <= 90


def test_ids_say_synthetic(responses):
    ids = responses["respondent_id"]
    assert ids.str.starts_with("synthetic-").all()
    assert ids.n_unique() == responses.height
    assert ids[0] == "synthetic-000001"


# -- published shares --------------------------------------------------------------------


def shares(frame: pl.DataFrame, fig: dict, target: dict) -> dict[str, float]:
    """Percent for each key of ``target``, computed from the frame."""
    out = {}
    for combined in target:
        codes = str(combined).split("+")
        if fig["statistic"] == "selected":
            answered = frame[f"{fig['question']}/{combined}"].drop_nulls()
            out[combined] = 100 * answered.mean()
        else:
            answered = frame[fig["question"]].drop_nulls()
            out[combined] = 100 * answered.is_in(codes).mean()
    return out


def compare(frame: pl.DataFrame, figures: dict, tolerance: float) -> list:
    misses = []
    for name, fig in figures.items():
        if fig["statistic"] == "summary":
            continue
        for numbers in (fig.get("assumed"), fig.get("published")):
            if not numbers:
                continue
            # A published "over 70" is a floor, not a point: check the target only.
            if numbers is fig.get("published") and fig.get("assumed"):
                numbers = {k: v for k, v in numbers.items() if "+" in str(k) or k in fig["assumed"]}
                numbers = {k: v for k, v in numbers.items() if k not in ("petitions", "posts")}
            found = shares(frame, fig, numbers)
            misses += [
                (name, k, v, round(found[k], 2))
                for k, v in numbers.items()
                if abs(found[k] - v) > tolerance
            ]
    return misses


def test_shares_match_the_published_figures(responses, figures):
    assert compare(responses, figures, TOLERANCE) == []


def test_clean_rows_match_more_closely(clean, figures):
    assert compare(clean, figures, CLEAN_TOLERANCE) == []


def test_main_figures_directly(responses):
    def share(column: str, *codes: str) -> float:
        answered = responses[column].drop_nulls()
        if answered.dtype == pl.Boolean:
            return 100 * answered.mean()
        return 100 * answered.is_in(codes).mean()

    assert share("destination", "TR") == pytest.approx(24.9, abs=TOLERANCE)
    assert share("destination", "GE") == pytest.approx(23.4, abs=TOLERANCE)
    assert share("destination", "AM") == pytest.approx(15.1, abs=TOLERANCE)
    assert share("tickets_rules", "yes") == pytest.approx(58, abs=TOLERANCE)
    assert share("plans", "stay") == pytest.approx(43, abs=TOLERANCE)
    assert share("sector", "it") == pytest.approx(45, abs=TOLERANCE)
    assert share("sector", "accounting", "teaching") == pytest.approx(14, abs=TOLERANCE)
    assert share("vote_2021", "ur") == pytest.approx(1.5, abs=0.5)
    assert share("smart_voting", "yes") == pytest.approx(86.4, abs=TOLERANCE)
    assert share("activity_before/rallies") == pytest.approx(48.9, abs=TOLERANCE)
    assert share("activity_after/rallies") == pytest.approx(26, abs=TOLERANCE)
    assert share("activity_before/petitions") > 70
    assert share("fears/persecution") == pytest.approx(50, abs=TOLERANCE)
    assert share("exp_living", "4", "5") == pytest.approx(72, abs=TOLERANCE)
    assert share("exp_politics", "1", "2") == pytest.approx(70, abs=TOLERANCE)
    assert share("exp_family", "1", "2") == pytest.approx(30, abs=TOLERANCE)
    assert share("discrim_faced", "yes") == pytest.approx(25, abs=TOLERANCE)
    assert share("prosecution_risk", "yes") == pytest.approx(25, abs=TOLERANCE)


def test_age_matches_its_assumption(responses, figures):
    assumed = figures["age"]["assumed"]
    assert abs(responses["age"].median() - assumed["median"]) <= 1
    assert 100 * (responses["age"] < 35).mean() == pytest.approx(assumed["under_35"], abs=3)


# -- dependence between answers ------------------------------------------------------------


def test_it_workers_are_younger_better_off_and_more_confident(clean):
    by_it = (
        clean.filter(pl.col("employed") == "yes")
        .group_by(pl.col("sector") == "it")
        .agg(
            pl.col("age").mean().alias("age"),
            pl.col("finances").cast(pl.Int64, strict=False).mean().alias("finances"),
            pl.col("exp_living").is_in(["4", "5"]).mean().alias("gloomy"),
        )
        .sort("sector")
    )
    others, it = by_it.rows()
    assert it[1] < others[1] - 2  # at least two years younger
    assert it[2] > others[2] + 0.2  # higher on the material-status ladder
    assert it[3] < others[3] - 0.1  # fewer expect living conditions to worsen


def test_healthcare_workers_are_the_most_vulnerable(clean):
    by_sector = clean.group_by("sector").agg(
        pl.col("fears/medicines").mean().alias("medicines"),
        pl.col("exp_living").is_in(["4", "5"]).mean().alias("gloomy"),
    )
    healthcare = by_sector.filter(pl.col("sector") == "healthcare").row(0, named=True)
    assert healthcare["medicines"] > 2 * clean["fears/medicines"].mean()
    assert healthcare["gloomy"] == by_sector["gloomy"].max()


def test_fear_of_persecution_rises_with_participation(clean):
    activities = [c for c in clean.columns if c.startswith("activity_") and not c.endswith("/none")]
    count = pl.sum_horizontal(activities)
    level = pl.when(count <= 3).then(pl.lit("low")).when(count <= 7).then(pl.lit("mid"))
    by_level = (
        clean.with_columns(level=level.otherwise(pl.lit("high")))
        .group_by("level")
        .agg(pl.col("fears/persecution").mean())
    )
    fear = dict(by_level.iter_rows())
    assert fear["low"] + 0.15 < fear["mid"] < fear["high"] - 0.15


def test_rallies_after_come_mostly_from_those_who_rallied_before(clean):
    rallied_after = clean.filter(pl.col("activity_after/rallies"))
    assert rallied_after["activity_before/rallies"].mean() > 0.8


def test_conscription_is_feared_mostly_by_men(clean):
    by_gender = dict(clean.group_by("gender").agg(pl.col("fears/conscription").mean()).iter_rows())
    assert by_gender["male"] > 2 * by_gender["female"]


def test_channels_form_clusters(clean):
    # Between-channel spread of the share who rallied, against binomial noise.
    p = clean["activity_before/rallies"].mean()
    by_channel = clean.group_by("channel").agg(
        pl.len().alias("n"), pl.col("activity_before/rallies").mean().alias("p")
    )
    chi2 = (by_channel["n"] * (by_channel["p"] - p) ** 2).sum() / (p * (1 - p))
    assert chi2 / (by_channel.height - 1) > 5
    georgia_chat = clean.filter(pl.col("channel") == "chat_ge")["destination"]
    assert (georgia_chat == "GE").mean() > 0.5


# -- skip logic, requirement, exclusivity ------------------------------------------------------


def test_sector_only_for_the_employed(responses):
    employed = responses["employed"] == "yes"
    assert responses.filter(~employed)["sector"].null_count() == (~employed).sum()
    assert responses.filter(employed)["sector"].null_count() == 0


def test_please_specify_only_with_other(responses):
    specified = responses.filter(pl.col("sector_other").is_not_null())
    assert specified.height > 0
    assert (specified["sector"] == "other").all()


def test_smart_voting_only_for_voters(responses):
    non_voters = responses["vote_2021"].is_in(["no_vote", "refuse"])
    assert responses.filter(non_voters)["smart_voting"].null_count() == non_voters.sum()
    asked = responses.filter(~non_voters)["smart_voting"]
    assert 0 < asked.null_count() < 0.06 * asked.len()  # some item non-response


def test_required_questions_are_always_answered(q, responses):
    for question in q.answerable:
        if question.required is True and not question.relevant:
            columns = [c for c in question.columns if c != question.other_column]
            assert responses.select(columns).null_count().sum_horizontal().item() == 0, (
                question.name
            )


def test_some_item_nonresponse_on_optional_questions(q, responses):
    for question in q.answerable:
        # every attentive respondent answers the attention check (planted ones too)
        if question.required or question.relevant or question.is_quality_check:
            continue
        missing = responses[question.columns[0]].null_count() / responses.height
        assert 0.005 <= missing <= 0.06, (question.name, missing)


def test_multiple_choice_options_are_answered_together(q, responses):
    for question in q.multiple_choice:
        nulls = responses.select(pl.col(c).is_null() for c in question.columns)
        assert (
            nulls.select(pl.all_horizontal(pl.all()) == pl.any_horizontal(pl.all()))
            .to_series()
            .all()
        )


def test_none_of_these_is_never_combined(q, responses):
    for question in q.multiple_choice:
        others = [question.option_column(c.code) for c in question.choices if not c.exclusive]
        none = question.option_column("none")
        answered = responses.filter(pl.col(none).is_not_null())
        any_other = answered.select(pl.any_horizontal(others)).to_series()
        assert not (answered[none] & any_other).any(), question.name
        assert (answered[none] | any_other).all(), question.name  # no empty answer


def test_postgraduates_are_at_least_22(responses):
    postgrad = responses.filter(pl.col("education") == "postgrad")
    assert postgrad.height > 0 and postgrad["age"].min() >= 22


def test_the_validator_finds_no_rule_broken(q, responses):
    if importlib.util.find_spec("volna.questionnaire.expressions") is None:
        pytest.skip("volna.questionnaire.expressions (needed by the validator) is not there yet")
    from volna import validate

    report = validate(responses, q)
    assert report.counts == {}


# -- seeds -----------------------------------------------------------------------------------


def test_same_seed_same_data_other_seed_other_data(generated):
    again = generate(n=N, seed=SEED)
    assert again[0].equals(generated[0]) and again[1].equals(generated[1])
    other = generate(n=N, seed=SEED + 1)
    assert not other[0].equals(generated[0])


def test_small_samples_work():
    responses, key = generate(n=1, seed=5)
    assert responses.height == 1 and key.height == 0
    with pytest.raises(ValueError):
        generate(n=0)


# -- planted bad respondents -------------------------------------------------------------------


def test_answer_key_lists_each_kind_in_its_share(responses, key):
    assert key.columns == ["respondent_id", "planted", "duplicate_of"]
    counts = dict(key.group_by("planted").len().iter_rows())
    assert counts == {kind: round(rate * N) for kind, rate in PLANTED.items()}
    assert key["respondent_id"].is_in(responses["respondent_id"].implode()).all()
    assert key["respondent_id"].n_unique() == key.height
    assert (key["duplicate_of"].is_null() == (key["planted"] != "duplicate")).all()


def test_speeders_take_under_a_third_of_the_median_and_only_they_do(responses, key):
    third = responses["duration_sec"].median() / 3
    fast = responses.filter(pl.col("duration_sec") < third)["respondent_id"]
    assert sorted(fast) == sorted(planted(key, "speeder"))


def test_straightliners_give_one_answer_throughout(q, responses, key):
    expectations = ["exp_living", "exp_politics", "exp_discrim", "exp_work", "exp_family"]
    options = [
        question.option_column(c.code)
        for question in q.multiple_choice
        for c in question.choices
        if not c.exclusive
    ]
    pattern = (pl.concat_list(expectations).list.n_unique() == 1) & pl.all_horizontal(
        pl.col(options).fill_null(False)
    )
    flagged = responses.filter(pattern)["respondent_id"]
    assert sorted(flagged) == sorted(planted(key, "straightliner"))


def test_duplicates_equal_their_originals_except_the_id(responses, key):
    copies = key.filter(pl.col("planted") == "duplicate")
    rows = responses.drop("respondent_id")
    position = {rid: i for i, rid in enumerate(responses["respondent_id"])}
    for copy, original in copies.select("respondent_id", "duplicate_of").iter_rows():
        assert rows.row(position[copy]) == rows.row(position[original])
        assert position[original] < position[copy]
    # and no other two respondents are alike
    assert rows.is_duplicated().sum() == 2 * copies.height


def test_planted_rows_keep_the_rules(q, responses, key):
    bad = responses.filter(pl.col("respondent_id").is_in(key["respondent_id"].implode()))
    for question in q.multiple_choice:
        none = question.option_column("none")
        others = [question.option_column(c) for c in question.codes if c != "none"]
        answered = bad.filter(pl.col(none).is_not_null())
        assert not (answered[none] & answered.select(pl.any_horizontal(others)).to_series()).any()


# -- files ------------------------------------------------------------------------------------


def test_write_example_writes_the_data_and_the_key_only(tmp_path, q):
    written = write_example(tmp_path / "data.csv", n=500, seed=2)
    assert written == [tmp_path / "data.csv", tmp_path / "data.answer_key.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.answer_key.csv", "data.csv"]
    data = pl.read_csv(written[0], infer_schema=False)
    assert data.columns == list(q.columns)
    option_values = set(data["activity_before/none"].unique()) | set(data["pressure/none"].unique())
    assert option_values <= {"0", "1", None}
    assert data["pressure/none"].null_count() > 0  # unanswered sets are empty cells
    key = pl.read_csv(written[1], infer_schema=False)
    assert key.columns == ["respondent_id", "planted", "duplicate_of"]
    responses, _ = generate(n=500, seed=2)
    assert data["destination"].to_list() == responses["destination"].to_list()
    assert volna.read(written[0], q).equals(responses)  # reading it back loses nothing


def test_write_example_into_a_folder(tmp_path: Path):
    written = write_example(tmp_path / "okrussians", n=50)
    assert [p.relative_to(tmp_path).as_posix() for p in written] == [
        "okrussians/data.csv",
        "okrussians/data.answer_key.csv",
    ]
