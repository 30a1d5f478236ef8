"""Time on each page: declared with the questionnaire (YAML, XLSForm), optional in
response files, and screened as seconds per answered item (the page_speed rule)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import openpyxl
import polars as pl
import pytest

from volna import Questionnaire
from volna.errors import QuestionnaireError
from volna.io import read
from volna.questionnaire.xlsform import read_xlsform, write_xlsform
from volna.screening import (
    PageSpeedRule,
    ScreeningError,
    ScreeningRules,
    careless_indices,
    page_seconds_per_item,
    parse_rules,
    screen,
)

TIMED = """
id: timed
languages: [en]
paradata:
  - {name: rid, type: id}
  - {name: seconds, type: duration}
  - {name: t_one, type: duration, page: one, label: {en: Time on page one}}
  - {name: t_two, type: duration, page: two, required: true}
questions:
  - section: one
    questions:
      - {name: a, type: integer}
      - {name: b, type: integer}
      - section: inner
        questions: [{name: c, type: integer}]
  - section: two
    questions:
      - {name: d, type: multiple, choices: [{code: x}, {code: y}]}
      - {name: e, type: text}
"""


@pytest.fixture
def q() -> Questionnaire:
    return Questionnaire.loads(TIMED)


def test_pages_are_sections_with_their_subsections(q: Questionnaire) -> None:
    assert [(p.name, p.page) for p in q.page_times] == [("t_one", "one"), ("t_two", "two")]
    assert [x.name for x in q.page_questions("one")] == ["a", "b", "c"]
    assert [x.name for x in q.page_questions("two")] == ["d", "e"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{name: t, type: duration, page: nowhere}", "page 'nowhere' is not a section"),
        ("{name: t, type: integer, page: one}", "a page time must be of type duration"),
        ("{name: t, type: duration, page: [one]}", r"paradata\[0\].page: expected text"),
    ],
)
def test_a_page_time_names_a_section(entry: str, message: str) -> None:
    text = f"id: x\nparadata: [{entry}]\nquestions: [{{section: one, questions: []}}]"
    with pytest.raises(QuestionnaireError, match=message):
        Questionnaire.loads(text)


def test_a_page_is_timed_once() -> None:
    text = (
        "id: x\nparadata: [{name: t, type: duration, page: one}, "
        "{name: u, type: duration, page: one}]\nquestions: [{section: one, questions: []}]"
    )
    with pytest.raises(QuestionnaireError, match="page 'one' is already timed by t"):
        Questionnaire.loads(text)


def test_yaml_round_trip(tmp_path: Path, q: Questionnaire) -> None:
    q.save(tmp_path / "q.yaml")
    assert "page: one" in (tmp_path / "q.yaml").read_text()
    assert Questionnaire.load(tmp_path / "q.yaml").paradata == q.paradata


def test_xlsform_round_trip(tmp_path: Path, q: Questionnaire) -> None:
    write_xlsform(q, tmp_path / "q.xlsx")
    sheet = openpyxl.load_workbook(tmp_path / "q.xlsx")["volna_paradata"]
    header = [c.value for c in sheet[1]]
    assert "page" in header
    assert [r[header.index("page")] for r in sheet.iter_rows(min_row=2, values_only=True)] == [
        None,
        None,
        "one",
        "two",
    ]
    back = read_xlsform(tmp_path / "q.xlsx")
    assert back.paradata == q.paradata
    assert back.page_times == q.page_times


def test_xlsform_page_column_names_a_group(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    survey = book.active
    survey.title = "survey"
    for row in (
        ["type", "name", "label"],
        ["begin_group", "health", "Health"],
        ["integer", "a", "A"],
        ["end_group", "", ""],
    ):
        survey.append(row)
    para = book.create_sheet("volna_paradata")
    para.append(["name", "type", "page"])
    para.append(["t_health", "duration", "health"])
    book.save(tmp_path / "f.xlsx")
    form = read_xlsform(tmp_path / "f.xlsx")
    assert [(p.name, p.page) for p in form.page_times] == [("t_health", "health")]
    para.append(["t_other", "duration", "nowhere"])
    book.save(tmp_path / "g.xlsx")
    with pytest.raises(QuestionnaireError, match="page 'nowhere' is not a section"):
        read_xlsform(tmp_path / "g.xlsx")


def test_page_times_are_optional_in_response_files(tmp_path: Path, q: Questionnaire) -> None:
    path = tmp_path / "r.csv"
    path.write_text("rid,seconds,t_two,a,b,c,d/x,d/y,e\nr1,100,20,1,2,3,true,false,hi\n")
    data = read(path, q)
    assert data["t_one"].to_list() == [None]
    assert data["t_two"].to_list() == [20.0]
    path.write_text("rid,seconds,t_one,a,b,c,d/x,d/y,e\nr1,100,20,1,2,3,true,false,hi\n")
    with pytest.raises(Exception, match="t_two"):
        read(path, q)  # required: true


# -- screening --------------------------------------------------------------------------


def _data(n: int = 40, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "rid": [f"r{i}" for i in range(n)],
            "seconds": rng.uniform(200, 300, n),
            "t_one": rng.uniform(25, 35, n),  # three items: about 10 s each
            "t_two": rng.uniform(18, 22, n),  # two items: about 10 s each
            "a": rng.integers(1, 5, n),
            "b": rng.integers(1, 5, n),
            "c": rng.integers(1, 5, n),
            "d/x": rng.random(n) < 0.5,
            "d/y": rng.random(n) < 0.5,
            "e": ["fine"] * n,
        }
    )


def test_seconds_per_answered_item_on_each_page(q: Questionnaire) -> None:
    data = _data(3).with_columns(
        t_one=pl.Series([30.0, 30.0, None]),
        b=pl.Series([1, None, 2]),
    )
    pages, pace = page_seconds_per_item(data, q)
    assert pages == ("one", "two")
    np.testing.assert_allclose(pace[:, 0], [10.0, 15.0, np.nan])
    assert np.isfinite(pace[:, 1]).all()


def test_page_speed_flags_a_fast_page_and_names_it(q: Questionnaire) -> None:
    data = _data().with_columns(
        pl.when(pl.col("rid") == "r3").then(2.0).otherwise(pl.col("t_two")).alias("t_two")
    )
    rules = ScreeningRules(duplicates=None, careless=None, straightlining=None)
    result = screen(data, q, rules)
    flagged = result.data.filter("flag_page_speed")
    assert flagged["rid"].to_list() == ["r3"]
    assert flagged["why_page_speed"][0] == "page two at 1.0 s per item (0.10 x its median)"
    assert flagged["excluded"].to_list() == [True]
    assert "page_speed" in result.summary["rule"].to_list()


def test_page_speed_floor_and_how_many_pages(q: Questionnaire) -> None:
    data = _data().with_columns(
        pl.when(pl.col("rid") == "r5").then(3.0).otherwise(pl.col("t_one")).alias("t_one")
    )
    base = dict(duplicates=None, careless=None, straightlining=None)
    # 1 s per item on page one: under a 2 s floor, above 0.05 of the median
    rule = PageSpeedRule(fraction_of_median=0.05, seconds_per_item=2.0)
    flagged = screen(data, q, ScreeningRules(page_speed=rule, **base)).data["flag_page_speed"]
    assert flagged.arg_true().to_list() == [5]
    two_pages = PageSpeedRule(at_least=2)
    flagged = screen(data, q, ScreeningRules(page_speed=two_pages, **base)).data
    assert not flagged["flag_page_speed"].any()


def test_page_speed_does_not_run_without_page_times(q: Questionnaire) -> None:
    data = _data().drop("t_one", "t_two")
    result = screen(data, q.__class__.loads(TIMED.replace("required: true", "")), None)
    assert "flag_page_speed" not in result.data.columns
    assert "page_speed" not in result.summary["rule"].to_list()


def test_page_speed_is_an_index_of_the_combined_flag(q: Questionnaire) -> None:
    data = _data().with_columns(
        pl.when(pl.col("rid") == "r7").then(3.0).otherwise(pl.col("t_one")).alias("t_one")
    )
    assert careless_indices(data, q)["page_speed"][7] == pytest.approx(0.1, rel=0.2)
    rules = parse_rules("careless: {indices: {page_speed: 0.25}}\npage_speed: off")
    result = screen(data, q, rules)
    assert result.data["flag_careless"].arg_true().to_list() == [7]
    assert re.fullmatch(r"page_speed 0\.\d+ \(< 0\.25\)", result.data["why_careless"][7])


def test_the_rules_file() -> None:
    rules = parse_rules("page_speed: {fraction_of_median: 0.2, seconds_per_item: 1, at_least: 2}")
    assert rules.page_speed == PageSpeedRule(0.2, 1.0, 2)
    assert parse_rules("page_speed: off").page_speed is None
    assert "page_speed" in parse_rules("exclude: [page_speed]").excluding
    with pytest.raises(ScreeningError, match=r"s.yaml:1: page_speed.fraction_of_median"):
        parse_rules("page_speed: {fraction_of_median: 2}", "s.yaml")
    with pytest.raises(ScreeningError, match=r"page_speed.pages: unknown key"):
        parse_rules("page_speed: {pages: 2}")
