"""Margins: reading margins files (line numbers in every error) and mapping respondents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from volna.examples import example_path
from volna.margins import (
    Margin,
    MarginError,
    parse_collapse,
    parse_margins,
    read_margins,
    select_margins,
)

GOOD = """\
margins:
  - name: sex
    variables: [sex]
    type: counts
    targets: {f: 60, m: 40}
    total: 100
    reference_date: "2021-10"
    source: {title: Census, publisher: Rosstat}
  - name: age_sex
    variables: [age_group, sex]
    derived:
      age_group:
        from: age
        bins: {young: [18, 34], old: [35, null]}
    type: shares
    targets:
      - {age_group: young, sex: f, value: 30}
      - {age_group: young, sex: m, value: 20}
      - {age_group: old, sex: f, value: 30}
      - {age_group: old, sex: m, value: 20}
    excluded: {sex: [other]}
    population: adults
    reference_date: 2021-10-01
    source:
      title: Census
      publisher: Rosstat
      url: https://rosstat.gov.ru
      via: a report
    illustrative: true
    notes: made up
"""


def test_reads_the_bundled_example() -> None:
    margins = read_margins(example_path("okrussians", "margins.yaml"))
    assert [m.name for m in margins] == [
        "destination_bell_2024",
        "destination_zois_2024",
        "destination_first_ranepa_2024",
        "arrivals_2022_host_statistics",
        "age_gender_illustrative",
    ]
    bell = margins[0]
    assert bell.variables == ("destination",)
    assert bell.type == "counts"
    assert bell.targets[("AM",)] == 110000
    assert bell.targets[("other",)] == 148000
    assert bell.total_of_targets() == bell.total == 650000
    assert bell.other == "other"
    assert bell.reference_date == "2024-07"
    assert bell.source["publisher"] == "The Bell"
    assert bell.source["url"] is None
    assert not bell.illustrative
    ranepa = margins[2]
    assert ranepa.type == "shares" and ranepa.total is None
    assert ranepa.total_of_targets() == pytest.approx(100)
    age_gender = margins[4]
    assert age_gender.variables == ("age_group", "gender")
    assert len(age_gender.targets) == 10
    assert age_gender.targets[("25-34", "male")] == 27.0
    assert age_gender.derived["age_group"].source == "age"
    assert age_gender.derived["age_group"].bins["18-24"] == (18, 24)
    assert age_gender.derived["age_group"].bins["55+"] == (55, None)
    assert age_gender.excluded == {"gender": ("other", "refuse")}
    assert age_gender.illustrative


def test_reads_every_key(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(GOOD, encoding="utf-8")
    sex, age_sex = read_margins(path)
    assert sex.targets == {("f",): 60.0, ("m",): 40.0}
    assert sex.source == {"title": "Census", "publisher": "Rosstat", "url": None, "via": None}
    # an unquoted YAML date is kept as the ISO text
    assert age_sex.reference_date == "2021-10-01"
    assert age_sex.targets[("old", "m")] == 20.0
    assert age_sex.population == "adults" and age_sex.notes == "made up"
    assert age_sex.source["url"] == "https://rosstat.gov.ru"


def _broken(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


BROKEN = [
    # (text, line, what the message must hold after "file:line: ")
    (
        _broken("    total: 100\n", "    total: 100\n    colour: red\n"),
        7,
        "margin sex: colour: unknown key",
    ),
    (
        _broken("targets: {f: 60, m: 40}", "targets: {f: 60, m: lots}"),
        5,
        "margin sex: targets.m: expected a number",
    ),
    (
        _broken("targets: {f: 60, m: 40}", "targets: {f: 60, m: -4}"),
        5,
        "margin sex: targets.m: expected a number of at least 0",
    ),
    (
        _broken("    total: 100\n", "    total: 90\n"),
        6,
        "margin sex: total: 90 is not the sum of the targets (100)",
    ),
    (_broken('    reference_date: "2021-10"\n', ""), 2, "margin sex: reference_date: is required"),
    (
        _broken('"2021-10"', '"2021-13"'),
        7,
        "margin sex: reference_date: expected a date YYYY-MM or YYYY-MM-DD",
    ),
    (_broken('"2021-10"', '"October 2021"'), 7, "margin sex: reference_date: expected a date"),
    (
        _broken("    source: {title: Census, publisher: Rosstat}\n", ""),
        2,
        "margin sex: source: is required",
    ),
    (
        _broken("{title: Census, publisher: Rosstat}", "{publisher: Rosstat}"),
        8,
        "margin sex: source.title: is required",
    ),
    (
        _broken("{title: Census, publisher: Rosstat}", "{title: C, by: R}"),
        8,
        "margin sex: source.by: unknown key",
    ),
    (
        _broken("url: https://rosstat.gov.ru", "url: rosstat.gov.ru"),
        27,
        "margin age_sex: source.url: expected an http(s) address",
    ),
    (
        _broken("type: counts", "type: percent"),
        4,
        "margin sex: type: expected counts or shares, found 'percent'",
    ),
    (
        _broken("name: age_sex", "name: sex"),
        9,
        "margin sex: name: a margin of this name is already on line 2",
    ),
    (
        _broken("{age_group: old, sex: m, value: 20}", "{age_group: old, sex: m, value: 25}"),
        16,
        "margin age_sex: targets: shares sum to 105; expected 100",
    ),
    (
        _broken("      - {age_group: old, sex: m, value: 20}\n", ""),
        16,
        "margin age_sex: targets: cell old/m is missing",
    ),
    (
        _broken("{age_group: old, sex: m, value: 20}", "{age_group: old, sex: f, value: 20}"),
        20,
        "margin age_sex: targets[3]: cell old/f is listed twice (first on line 19)",
    ),
    (
        _broken("{age_group: old, sex: m, value: 20}", "{age_group: old, value: 20}"),
        20,
        "margin age_sex: targets[3]: lacks sex",
    ),
    (
        _broken("old: [35, null]", "old: [34, null]"),
        14,
        "margin age_sex: derived.age_group.bins.old: overlaps bin young",
    ),
    (
        _broken("old: [35, null]", "old: [40, 35]"),
        14,
        "margin age_sex: derived.age_group.bins.old: low bound 40 is above high bound 35",
    ),
    (
        _broken("      age_group:\n", "      agegroup:\n"),
        12,
        "margin age_sex: derived.agegroup: is not one of the margin's variables",
    ),
    (
        _broken("excluded: {sex: [other]}", "excluded: {sex: [f]}"),
        21,
        "margin age_sex: excluded.sex: f has a target",
    ),
    (
        _broken("    total: 100\n", "    total: 100\n    other: x\n"),
        7,
        "margin sex: other: 'x' is not one of the target levels",
    ),
    (
        _broken("illustrative: true", "illustrative: maybe"),
        29,
        "margin age_sex: illustrative: expected true or false",
    ),
    (
        _broken("type: counts", "type: counts\n    type: shares"),
        5,
        "key 'type' appears twice (first on line 4)",
    ),
    (_broken("    variables: [sex]\n", "    variables: [sex\n"), 4, "not valid YAML"),
]


@pytest.mark.parametrize(("text", "line", "message"), BROKEN)
def test_errors_name_file_line_margin_and_key(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "margins.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MarginError) as caught:
        read_margins(path)
    text_of = str(caught.value)
    assert text_of.startswith(f"{path}:{line}: "), text_of
    assert message in text_of
    assert "\n" not in text_of


def test_crossed_targets_need_a_list_of_cells() -> None:
    text = """\
margins:
  - name: ag
    variables: [age, sex]
    type: counts
    targets: {young: 1, old: 2}
    reference_date: "2020-01"
    source: {title: T}
"""
    with pytest.raises(MarginError, match=r"^m.yaml:5: margin ag: targets: a crossed margin"):
        parse_margins(text, "m.yaml")


def test_unquoted_yes_is_refused_as_a_level() -> None:
    text = """\
margins:
  - name: ok
    variables: [ok]
    type: counts
    targets:
      - {ok: yes, value: 1}
      - {ok: "no", value: 1}
    reference_date: "2020-01"
    source: {title: T}
"""
    with pytest.raises(MarginError, match=r"^m.yaml:6: margin ok: targets\[0\].ok: .*quotes"):
        parse_margins(text, "m.yaml")


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(MarginError, match="the file is empty"):
        parse_margins("", "m.yaml")
    with pytest.raises(MarginError, match=r"^m.yaml:1: margin: unknown key"):
        parse_margins("margin: []\n", "m.yaml")
    with pytest.raises(MarginError, match=r"^m.yaml:1: margins: expected a list of margins"):
        parse_margins("margins: {}\n", "m.yaml")
    with pytest.raises(MarginError, match=r"^m.yaml:2: margins\[0\].name: is required"):
        parse_margins("margins:\n  - variables: [x]\n", "m.yaml")
    with pytest.raises(MarginError, match=r"cannot read"):
        read_margins(tmp_path / "absent.yaml")
    (tmp_path / "latin1.yaml").write_bytes("margins: [é]".encode("latin-1"))
    with pytest.raises(MarginError, match="not UTF-8"):
        read_margins(tmp_path / "latin1.yaml")


def test_select_margins_names_the_available_ones() -> None:
    margins = parse_margins(GOOD)
    assert [m.name for m in select_margins(margins, "age_sex, sex")] == ["age_sex", "sex"]
    assert select_margins(margins, None) == margins
    with pytest.raises(MarginError) as caught:
        select_margins(margins, ["sex", "region"])
    assert str(caught.value) == "no margin named 'region'; the margins are: sex, age_sex"
    with pytest.raises(MarginError, match="named twice"):
        select_margins(margins, "sex,sex")


def test_parse_collapse() -> None:
    assert parse_collapse(["destination:KG=other", " gender : refuse = other "]) == {
        "destination": {"KG": "other"},
        "gender": {"refuse": "other"},
    }
    with pytest.raises(MarginError, match="expected variable:level=into_level"):
        parse_collapse(["destination=KG"])
    with pytest.raises(MarginError, match="already merged into other"):
        parse_collapse(["d:KG=other", "d:KG=KZ"])


# ---- mapping respondents onto cells ---------------------------------------------------


def test_other_collects_the_levels_not_listed() -> None:
    m = Margin.of("country", {"GE": 10, "TR": 5, "other": 3}, other="other")
    frame = pl.DataFrame({"country": ["GE", "KG", "TR", "UZ", "GE"]})
    cells = m.cells(frame)
    assert cells.labels == [("GE",), ("TR",), ("other",)]
    assert cells.codes.tolist() == [0, 2, 1, 2, 0]


def test_crossed_margin_with_derived_bins_and_excluded_codes() -> None:
    margins = parse_margins(GOOD)
    frame = pl.DataFrame({"age": [20, 40, 50, 30, 60], "sex": ["f", "m", "other", "m", "f"]})
    cells = margins[1].cells(frame)
    assert cells.labels == [("young", "f"), ("young", "m"), ("old", "f"), ("old", "m")]
    assert cells.codes.tolist() == [0, 3, -1, 1, 2]
    assert cells.outside.tolist() == [False, False, True, False, False]
    assert np.allclose(cells.targets, [30, 20, 30, 20])


def test_example_margins_map_the_generated_data() -> None:
    from volna.examples.generate_okrussians import generate

    responses, _ = generate(n=400, seed=3)
    margins = select_margins(
        read_margins(example_path("okrussians", "margins.yaml")),
        "destination_bell_2024,age_gender_illustrative",
    )
    bell = margins[0].cells(responses)
    assert (bell.codes >= 0).all()  # every country is named or "other"
    ag = margins[1].cells(responses)
    outside = responses["gender"].is_in(["other", "refuse"]).to_numpy()
    assert (ag.outside == outside).all()
