"""Report charts as self-contained SVG: bars with intervals, diverging bars, paired dots.

Every function takes the tidy rows it shows and returns a :class:`~volna.report.model.Chart`
whose ``svg`` can be written to a file or pasted inline into an HTML page:

- drawn with matplotlib's object API (``Figure`` and the SVG canvas, never pyplot), so
  the result does not depend on the interactive backend or on anyone's ``matplotlibrc``;
- text is drawn as paths in DejaVu Sans (bundled with matplotlib, with Cyrillic), so it
  looks the same everywhere and needs no font;
- nothing outside the SVG is referenced: no XML prolog, DOCTYPE or RDF metadata, ``href``
  instead of ``xlink:href``; the only URI left is the SVG namespace;
- the elements that carry data have ids a test or a renderer can find: ``bar-<level>``
  (a value bar), ``ci-<level>`` (its interval's whisker), ``suppressed-<level>`` (the hatched
  placeholder of a hidden value), spaces in levels made ``_``. Ids repeat across charts
  (glyphs, clip paths too): a page that inlines several charts prefixes them
  (``volna.report.html`` does);
- the same rows give the same bytes (fixed ``svg.hashsalt``, no date).

Charts are about 700 px wide (525 pt). The title is the SVG ``<title>`` and the alt text
its ``<desc>``; the title is not drawn, because every renderer prints it above the chart.
Notes the chart needs to be read (what the whiskers are, what ``*`` and ``n<10`` mean)
are drawn under it, in the report language.

>>> rows = pl.DataFrame({
...     "level": ["AM", "GE", "RS"], "estimate": [0.3, 0.5, None],
...     "ci_low": [0.25, 0.44, None], "ci_high": [0.36, 0.56, None],
...     "n": [120, 200, 6], "mark": ["", "", "suppressed"],
... })
>>> chart = estimate_bars(rows, key="fig1", title="Destination",
...                       labels={"AM": "Armenia", "GE": "Georgia", "RS": "Serbia"})
>>> print(chart.alt.replace("; ", ";\\n"))
Horizontal bar chart: Destination. Georgia 50.0% (95% CI 44.0–56.0%);
Armenia 30.0% (95% CI 25.0–36.0%);
Serbia: not shown (n<10).
>>> 'id="bar-GE"' in chart.svg, 'id="bar-RS"' in chart.svg
(True, False)
"""

from __future__ import annotations

import html
import io
import re
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import matplotlib as mpl
import numpy as np
import polars as pl
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.textpath import text_to_path
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator

from volna.report.model import CELL_MARKS, Chart

# world_map (volna.report.worldmap) is offered here too, see __getattr__ at the end
__all__ = ["CHART_TEXT", "diverging_bars", "estimate_bars", "paired_dots"]

#: width of every chart: 525 pt is 700 px at 96 px per inch
WIDTH = 525.0
#: base font size in points (about 12.5 px at the chart's natural size)
FONT_SIZE = 9.0
SMALL = 7.5

# Okabe & Ito's colour-blind-safe palette, and neutral inks.
BLUE = "#0072B2"
ORANGE = "#E69F00"
INK = "#222222"
MUTED = "#5f5f5f"
GRID = "#e2e2e2"
PLACEHOLDER = "#9a9a9a"
NO_DATA = "#ececec"

#: The words charts draw, by report language (other languages fall back to English).
#: ``{n}`` is the minimum number of respondents of a shown cell (``min_n``).
CHART_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "decimal": ".",
        "ci": "{level}% CI",
        "suppressed": "n<{n}",
        "not_shown": "not shown",
        "unreliable": "unreliable",
        "whiskers": "Whiskers: {level}% confidence intervals.",
        "note_suppressed": "n<{n}: fewer than {n} respondents, value not shown.",
        "note_unreliable": "* Unreliable: fails the NCHS presentation standard, read with caution.",
        "note_disclosure": "† 0% or 100% of a small group.",
        "note_items_suppressed": "n<{n}: a group with fewer than {n} respondents, not shown.",
        "note_left_out": "Not shown: {levels}.",
        "bars": "Horizontal bar chart",
        "diverging": "Diverging stacked bar chart",
        "dots": "Dot plot",
        "map": "World map",
        "left": "left of zero",
        "right": "right of zero",
        "top": "Largest shares",
        "no_data": "no respondents",
        "inset": "Detail: Europe to Central Asia",
        "map_source": "Borders: Natural Earth, visionscarto world atlas (UN view; "
        "Crimea is part of Ukraine).",
    },
    "ru": {
        "decimal": ",",
        "ci": "{level}% ДИ",
        "suppressed": "n<{n}",
        "not_shown": "не показано",
        "unreliable": "ненадёжная оценка",
        "whiskers": "Отрезки: {level}% доверительные интервалы.",
        "note_suppressed": "n<{n}: меньше {n} респондентов, значение не показано.",
        "note_unreliable": "* Ненадёжная оценка: не проходит стандарт NCHS, "
        "интерпретировать с осторожностью.",
        "note_disclosure": "† 0% или 100% небольшой группы.",
        "note_items_suppressed": "n<{n}: группа меньше {n} респондентов, не показана.",
        "note_left_out": "Не показаны: {levels}.",
        "bars": "Горизонтальная столбчатая диаграмма",
        "diverging": "Расходящаяся столбчатая диаграмма",
        "dots": "Точечная диаграмма",
        "map": "Карта мира",
        "left": "слева от нуля",
        "right": "справа от нуля",
        "top": "Наибольшие доли",
        "no_data": "нет респондентов",
        "inset": "Фрагмент: от Европы до Центральной Азии",
        "map_source": "Границы: Natural Earth, visionscarto world atlas (позиция ООН; "
        "Крым — часть Украины).",
    },
}

# Everything that decides how a chart looks; applied over matplotlib's defaults, so a
# user's matplotlibrc or an earlier pyplot session changes nothing.
_RC = {
    "svg.fonttype": "path",
    "svg.hashsalt": "volna",
    "svg.id": None,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": FONT_SIZE,
    "text.color": INK,
    "axes.labelcolor": INK,
    "axes.edgecolor": MUTED,
    "axes.linewidth": 0.6,
    "xtick.color": MUTED,
    "ytick.color": INK,
    "xtick.labelsize": SMALL + 0.5,
    "ytick.labelsize": FONT_SIZE,
    "xtick.major.size": 0,
    "ytick.major.size": 0,
    "xtick.major.pad": 3,
    "ytick.major.pad": 6,
    "hatch.linewidth": 0.6,
    "path.simplify": True,
    "axes.unicode_minus": True,
}


def _texts(lang: str) -> dict[str, str]:
    return CHART_TEXT.get(lang, CHART_TEXT["en"])


@contextmanager
def _style() -> Iterator[None]:
    with mpl.rc_context():
        mpl.rcdefaults()
        mpl.rcParams.update(_RC)
        yield


def _figure(height: float) -> Figure:
    """A figure ``WIDTH`` by ``height`` points, bound to the SVG canvas."""
    fig = Figure(figsize=(WIDTH / 72, height / 72), dpi=72)
    FigureCanvasSVG(fig)
    return fig


def _axes(fig: Figure, left: float, bottom: float, width: float, height: float):
    """Axes placed in points from the figure's lower-left corner."""
    w, h = fig.get_size_inches() * 72
    return fig.add_axes((left / w, bottom / h, width / w, height / h))


def _clean(ax) -> None:
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_axisbelow(True)


# -- numbers and words ------------------------------------------------------------------


def _pct(value: float, lang: str, digits: int = 1) -> str:
    """A share as a percentage in the report language: 0.173 -> '17.3%' / '17,3%'."""
    text = f"{100 * value:.{digits}f}"
    if text.startswith("-") and float(text) == 0:
        text = text[1:]
    return text.replace(".", _texts(lang)["decimal"]) + "%"


def _pct_range(low: float, high: float, lang: str, digits: int = 1) -> str:
    return f"{_pct(low, lang, digits)[:-1]}–{_pct(high, lang, digits)}"


_FONT = FontProperties(family="DejaVu Sans")


def _text_width(text: str, size: float = FONT_SIZE) -> float:
    """Width in points of ``text`` drawn at ``size`` (the widest of its lines)."""
    widths = [
        text_to_path.get_text_width_height_descent(line, _FONT, ismath=False)[0]
        for line in text.split("\n")
    ]
    return max(widths, default=0.0) * size / _FONT.get_size_in_points()


def _wrap(text: str, width: int = 34) -> str:
    return "\n".join(textwrap.wrap(text, width, break_long_words=False)) or text


def _gid(kind: str, *names: object) -> str:
    return "-".join([kind, *(re.sub(r"\s+", "_", str(n)) for n in names)])


def _lighter(colour: str, amount: float = 0.55) -> tuple[float, float, float]:
    """``colour`` mixed with white (``amount`` of white)."""
    r, g, b = to_rgb(colour)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


def _ink_on(colour) -> str:
    """Dark or white text, whichever reads on ``colour``."""
    r, g, b = to_rgb(colour)
    return INK if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.55 else "white"


def _percent_axis(axis, high: float, lang: str, low: float = 0.0, absolute: bool = False):
    """Percent ticks between ``low`` and ``high`` (shares), at round steps."""
    ticks = MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]).tick_values(low, high)
    ticks = [t for t in ticks if low - 1e-9 <= t <= high + 1e-9]
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    digits = 0 if round(step * 100, 9) == round(step * 100) else 1
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(
        FuncFormatter(lambda x, _: _pct(abs(x) if absolute else x, lang, digits))
    )


def _notes(fig: Figure, lines: Sequence[str], bottom: float = 6.0) -> None:
    """Footnotes under the chart, the last line ``bottom`` points above the edge."""
    height = fig.get_size_inches()[1] * 72
    for i, line in enumerate(reversed(lines)):
        y = bottom + i * (SMALL + 3.5)
        fig.text(6 / WIDTH, y / height, line, fontsize=SMALL, color=MUTED, va="bottom")


def _notes_height(lines: Sequence[str]) -> float:
    return 6.0 + len(lines) * (SMALL + 3.5) if lines else 0.0


# -- input ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    level: str
    estimate: float | None
    low: float | None
    high: float | None
    mark: str


def _require(rows: pl.DataFrame, columns: Sequence[str], function: str) -> None:
    missing = [c for c in columns if c not in rows.columns]
    if missing:
        raise ValueError(
            f"{function}: rows lack the column(s) {', '.join(missing)} "
            f"(they have {', '.join(rows.columns) or 'none'})"
        )


def _mark(value: object, function: str) -> str:
    mark = "" if value is None else str(value)
    if mark not in CELL_MARKS:
        raise ValueError(f"{function}: unknown mark {mark!r} (expected one of {CELL_MARKS})")
    return mark


def _number(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if np.isnan(number) else number


# -- SVG --------------------------------------------------------------------------------

_PROLOG = re.compile(r"<\?xml[^>]*\?>\s*|<!DOCTYPE[^>]*>\s*")
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.DOTALL)
_STYLE = re.compile(r"\s*<style type=\"text/css\">\*\{[^}]*\}</style>")
_ROOT = re.compile(r"<svg\b[^>]*>")
_PATH_DATA = re.compile(r' d="([^"]*)"')
_DECIMAL = re.compile(r"-?\d+\.\d+")


def _short(number: re.Match) -> str:
    text = f"{float(number.group()):.1f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _svg(fig: Figure, title: str, alt: str) -> str:
    """The figure as a self-contained SVG string, ready to be inlined in HTML."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    svg = buffer.getvalue()
    svg = _PROLOG.sub("", svg)
    svg = _METADATA.sub("", svg)
    svg = _STYLE.sub("", svg)  # a global `*{...}` rule would style the whole HTML page
    svg = svg.replace(' xmlns:xlink="http://www.w3.org/1999/xlink"', "")
    svg = svg.replace("xlink:href=", "href=")
    # Six decimals of a point are a millionth of a pixel: one (a tenth of a pixel) is
    # plenty, and the map is a third smaller.
    svg = _PATH_DATA.sub(lambda m: ' d="' + _DECIMAL.sub(_short, m.group(1)) + '"', svg)
    root = _ROOT.search(svg)
    assert root is not None
    head = root.group()[:-1] + (
        ' role="img" stroke-linejoin="round" stroke-linecap="butt">'
        f"\n <title>{html.escape(title)}</title>\n <desc>{html.escape(alt)}</desc>"
    )
    return svg[: root.start()] + head + svg[root.end() :].rstrip() + "\n"


def _chart(fig: Figure, key: str, title: str, alt: str, caption: str) -> Chart:
    return Chart(key=key, title=title, svg=_svg(fig, title, alt), alt=alt, caption=caption)


# -- 1. bars with intervals -------------------------------------------------------------

_ROW = 22.0  # points per bar
_BAR = 0.62  # bar thickness, share of a row


def estimate_bars(
    rows: pl.DataFrame,
    *,
    key: str,
    title: str,
    labels: Mapping[str, str] | None = None,
    lang: str = "en",
    caption: str = "",
    min_n: int = 10,
    conf_level: float = 0.95,
) -> Chart:
    """Horizontal bars of the proportions of one variable, with confidence-interval whiskers.

    ``rows`` are tidy estimate rows of one variable: ``level``, ``estimate``, ``ci_low``,
    ``ci_high`` (shares, 0..1), ``n`` and ``mark`` (one of
    :data:`~volna.report.model.CELL_MARKS`). Bars are sorted by estimate, largest first,
    and labelled with the percentage at their end. A ``suppressed`` level (or one without
    an estimate) gets no bar: a hatched placeholder labelled ``n<{min_n}`` at the bottom.
    An ``unreliable`` one is drawn lighter and marked ``*``, a ``disclosure`` one ``†``;
    a note under the chart says what the marks mean. ``labels`` maps levels to the words
    shown (levels are shown as they are otherwise). ``min_n`` is the report's minimum
    cell size and ``conf_level`` the intervals' level, both only for the words shown.

    The SVG marks each bar ``bar-<level>``, each whisker ``ci-<level>`` and each
    placeholder ``suppressed-<level>``.

    >>> rows = pl.DataFrame({"level": ["no", "yes"], "estimate": [0.35, 0.65],
    ...     "ci_low": [0.3, 0.6], "ci_high": [0.4, 0.7], "n": [500, 500],
    ...     "mark": ["", "unreliable"]})
    >>> chart = estimate_bars(rows, key="q1", title="Вы участвовали?", lang="ru",
    ...                       labels={"yes": "Да", "no": "Нет"})
    >>> print(chart.alt.replace(". ", ".\\n").replace("; ", ";\\n"))
    Горизонтальная столбчатая диаграмма: Вы участвовали?.
    Да 65,0% (95% ДИ 60,0–70,0%), ненадёжная оценка;
    Нет 35,0% (95% ДИ 30,0–40,0%).
    >>> chart.svg.count('id="ci-')
    2
    """
    name = "estimate_bars"
    _require(rows, ("level", "estimate", "ci_low", "ci_high", "mark"), name)
    text = _texts(lang)
    ci = text["ci"].format(level=f"{100 * conf_level:g}")
    labels = labels or {}
    data = [
        _Row(
            str(r["level"]),
            _number(r["estimate"]),
            _number(r["ci_low"]),
            _number(r["ci_high"]),
            _mark(r["mark"], name),
        )
        for r in rows.iter_rows(named=True)
    ]
    shown = sorted(
        (r for r in data if r.mark != "suppressed" and r.estimate is not None),
        key=lambda r: -(r.estimate or 0.0),
    )
    hidden = [r for r in data if r.mark == "suppressed" or r.estimate is None]
    order = shown + hidden
    suppressed_label = text["suppressed"].format(n=min_n)

    names = [_wrap(labels.get(r.level, r.level)) for r in order]
    label_width = max((_text_width(s) for s in names), default=0.0)
    left = min(max(label_width + 14, 60.0), 230.0)
    marks = {r.mark for r in shown} | ({"suppressed"} if hidden else set())
    notes = [text["whiskers"].format(level=f"{100 * conf_level:g}")]
    if "unreliable" in marks:
        notes.append(text["note_unreliable"])
    if "disclosure" in marks:
        notes.append(text["note_disclosure"])
    if "suppressed" in marks:
        notes.append(text["note_suppressed"].format(n=min_n))
    bottom = _notes_height(notes) + 20
    plot_height = _ROW * max(len(order), 1)
    with _style():
        fig = _figure(bottom + plot_height + 6)
        plot_width = WIDTH - left - 12
        ax = _axes(fig, left, bottom, plot_width, plot_height)
        _clean(ax)
        top = max([max(r.high or 0.0, r.estimate or 0.0) for r in shown], default=0.0)
        top = max(top, 0.01)
        room = _text_width("100.0%*", FONT_SIZE) + 10  # the value labels' column
        xmax = top * plot_width / (plot_width - room)
        ax.set_xlim(0, xmax)
        ax.set_ylim(max(len(order), 1) - 0.5, -0.5)
        _percent_axis(ax.xaxis, top, lang)
        ax.grid(axis="x", color=GRID, linewidth=0.6)
        ax.set_yticks(range(len(order)), names)
        pad = xmax * 4 / plot_width
        for y, r in enumerate(order):
            if r.mark == "suppressed" or r.estimate is None:
                width = min(top * 0.12, xmax * 0.1)
                ax.add_patch(
                    Rectangle(
                        (0, y - _BAR / 2),
                        width,
                        _BAR,
                        facecolor="none",
                        edgecolor=PLACEHOLDER,
                        hatch="////",
                        linewidth=0.6,
                        gid=_gid("suppressed", r.level),
                    )
                )
                ax.text(width + pad, y, suppressed_label, va="center", color=MUTED)
                continue
            colour = _lighter(BLUE) if r.mark == "unreliable" else BLUE
            (bar,) = ax.barh(y, r.estimate, height=_BAR, color=colour, linewidth=0)
            bar.set_gid(_gid("bar", r.level))
            end = r.estimate
            if r.low is not None and r.high is not None:
                cap = _BAR / 4
                ax.plot(
                    [r.low, r.high, np.nan, r.low, r.low, np.nan, r.high, r.high],
                    [y, y, np.nan, y - cap, y + cap, np.nan, y - cap, y + cap],
                    color=INK,
                    linewidth=0.8,
                    solid_capstyle="butt",
                    gid=_gid("ci", r.level),
                )
                end = max(end, r.high)
            sign = {"unreliable": "*", "disclosure": "†"}.get(r.mark, "")
            ax.text(end + pad, y, _pct(r.estimate, lang) + sign, va="center", color=INK)
        _notes(fig, notes)
        alt_parts = []
        for r in order:
            label = labels.get(r.level, r.level)
            if r.mark == "suppressed" or r.estimate is None:
                alt_parts.append(f"{label}: {text['not_shown']} ({suppressed_label})")
                continue
            part = f"{label} {_pct(r.estimate, lang)}"
            if r.low is not None and r.high is not None:
                part += f" ({ci} {_pct_range(r.low, r.high, lang)})"
            if r.mark == "unreliable":
                part += f", {text['unreliable']}"
            alt_parts.append(part)
        alt = f"{text['bars']}: {title}. " + "; ".join(alt_parts) + "."
        return _chart(fig, key, title, alt, caption)


# -- 2. diverging bars ------------------------------------------------------------------


def _diverging_colours(negative: int, positive: int) -> tuple[list, list]:
    """ColorBrewer RdBu (colour-blind safe): strongest at the ends, lightest at zero."""
    cmap = mpl.colormaps["RdBu"]

    def side(count: int, sign: int) -> list:
        strengths = np.linspace(1.0, 0.35, count) if count > 1 else np.array([0.7])
        return [cmap(0.5 + sign * 0.45 * s) for s in strengths]

    return side(negative, -1), side(positive, 1)[::-1]


def _diverging_segments(
    shares: Mapping[str, float | None],
    negative: Sequence[str],
    neutral: str | None,
    positive: Sequence[str],
) -> list[tuple[str, float, float]]:
    """(level, start, width) of each segment of a diverging bar: neutral centred on zero,
    negative levels stacked leftwards from it (the mildest nearest), positive rightwards.

    >>> _diverging_segments({"no": 0.2, "maybe": 0.3, "yes": 0.5}, ["no"], "maybe", ["yes"])
    [('maybe', -0.15, 0.3), ('no', -0.35, 0.2), ('yes', 0.15, 0.5)]
    """
    mid = (shares.get(neutral) or 0.0) / 2 if neutral is not None else 0.0
    segments = [(neutral, -mid, 2 * mid)] if neutral is not None else []
    start = -mid
    for level in reversed(negative):
        width = shares.get(level) or 0.0
        segments.append((level, start - width, width))
        start -= width
    start = mid
    for level in positive:
        width = shares.get(level) or 0.0
        segments.append((level, start, width))
        start += width
    return segments


def diverging_bars(
    rows: pl.DataFrame,
    *,
    key: str,
    title: str,
    order: Sequence[str],
    neutral: str | None = None,
    labels: Mapping[str, str] | None = None,
    lang: str = "en",
    caption: str = "",
    min_n: int = 10,
) -> Chart:
    """Diverging stacked bars for scale (Likert) items, one bar per item.

    ``rows`` hold ``item``, ``level``, ``estimate`` (the share of the item's answers) and
    optionally ``mark``. ``order`` lists the levels from the most negative to the most
    positive: negative levels stack left of zero, positive ones right, the ``neutral``
    level is split across zero (Heiberger & Robbins 2014). Without ``neutral`` an odd
    ``order`` has its middle level as the neutral one. Levels not in ``order`` ("don't
    know") are left out and named in a note. The totals of each side are printed at the
    bar ends. An item with a ``suppressed`` level is not drawn (its other shares would
    give the hidden one away): a hatched placeholder says ``n<{min_n}``. Items with an
    ``unreliable`` level are marked ``*``. ``labels`` maps items and levels to words.

    >>> rows = pl.DataFrame({"item": ["trust"] * 3, "level": ["bad", "so-so", "good"],
    ...                      "estimate": [0.2, 0.3, 0.5]})
    >>> chart = diverging_bars(rows, key="q5", title="Trust", order=["bad", "so-so", "good"])
    >>> print(chart.alt.replace(" (", "\\n("))
    Diverging stacked bar chart: Trust. trust: bad 20.0%, so-so 30.0%, good 50.0%
    (left of zero 20.0%, right of zero 50.0%).
    >>> 'id="bar-trust-good"' in chart.svg
    True
    """
    name = "diverging_bars"
    _require(rows, ("item", "level", "estimate"), name)
    text = _texts(lang)
    labels = labels or {}
    order = [str(level) for level in order]
    if len(set(order)) != len(order) or not order:
        raise ValueError(f"{name}: order must list distinct levels, got {order!r}")
    if neutral is None and len(order) % 2 == 1:
        neutral = order[len(order) // 2]
    neutral = None if neutral is None else str(neutral)
    if neutral is not None and neutral not in order:
        raise ValueError(f"{name}: neutral level {neutral!r} is not in order {order!r}")
    if neutral is not None:
        middle = order.index(neutral)
        negative, positive = order[:middle], order[middle + 1 :]
    else:
        negative, positive = order[: len(order) // 2], order[len(order) // 2 :]
    neg_colours, pos_colours = _diverging_colours(len(negative), len(positive))
    colours = dict(zip(negative, neg_colours, strict=True))
    colours.update(zip(positive, pos_colours, strict=True))
    if neutral is not None:
        colours[neutral] = "#cfcfcf"

    has_mark = "mark" in rows.columns
    items: dict[str, dict[str, float | None]] = {}
    item_marks: dict[str, set[str]] = {}
    left_out: list[str] = []
    for r in rows.iter_rows(named=True):
        item, level = str(r["item"]), str(r["level"])
        shares = items.setdefault(item, {})
        marks = item_marks.setdefault(item, set())
        mark = _mark(r["mark"], name) if has_mark else ""
        if level not in order:
            if level not in left_out:
                left_out.append(level)
            continue
        shares[level] = _number(r["estimate"])
        marks.add(mark if shares[level] is not None else "suppressed")

    hidden = {item for item, marks in item_marks.items() if "suppressed" in marks}
    unreliable = {
        item for item, marks in item_marks.items() if "unreliable" in marks and item not in hidden
    }
    suppressed_label = text["suppressed"].format(n=min_n)
    names = [_wrap(labels.get(item, item)) + ("*" if item in unreliable else "") for item in items]
    notes = []
    if unreliable:
        notes.append(text["note_unreliable"])
    if hidden:
        notes.append(text["note_items_suppressed"].format(n=min_n))
    if left_out:
        words = ", ".join(labels.get(level, level) for level in left_out)
        notes.append(text["note_left_out"].format(levels=words))

    def half(item: str) -> float:
        return (items[item].get(neutral) or 0.0) / 2 if neutral is not None else 0.0

    extent = 0.05
    for item, shares in items.items():
        if item not in hidden:
            for _, x0, width in _diverging_segments(shares, negative, neutral, positive):
                extent = max(extent, -x0, x0 + width)

    legend_labels = [labels.get(level, level) for level in order]
    legend_width = sum(_text_width(s, SMALL + 0.5) + 26 for s in legend_labels)
    legend_rows = 1 if legend_width < WIDTH - 20 else 2
    label_width = max((_text_width(s) for s in names), default=0.0)
    left = min(max(label_width + 14, 60.0), 230.0)
    bottom = _notes_height(notes) + 20
    plot_height = _ROW * max(len(items), 1)
    top_margin = 10 + legend_rows * 14
    with _style():
        fig = _figure(bottom + plot_height + top_margin)
        plot_width = WIDTH - left - 12
        ax = _axes(fig, left, bottom, plot_width, plot_height)
        _clean(ax)
        room = (_text_width("100%", SMALL + 0.5) + 8) / plot_width * 2
        limit = extent / (1 - room)
        ax.set_xlim(-limit, limit)
        ax.set_ylim(max(len(items), 1) - 0.5, -0.5)
        _percent_axis(ax.xaxis, extent, lang, low=-extent, absolute=True)
        ax.grid(axis="x", color=GRID, linewidth=0.6)
        ax.axvline(0, color=INK, linewidth=0.8, zorder=1)
        ax.set_yticks(range(len(items)), names)
        pad = limit * 2 * 4 / plot_width
        alt_parts = []
        for y, (item, shares) in enumerate(items.items()):
            label = labels.get(item, item)
            if item in hidden:
                width = limit * 0.2
                ax.add_patch(
                    Rectangle(
                        (-width / 2, y - _BAR / 2),
                        width,
                        _BAR,
                        facecolor="white",
                        edgecolor=PLACEHOLDER,
                        hatch="////",
                        linewidth=0.6,
                        gid=_gid("suppressed", item),
                        zorder=4,
                    )
                )
                ax.text(width / 2 + pad, y, suppressed_label, va="center", color=MUTED)
                alt_parts.append(f"{label}: {text['not_shown']} ({suppressed_label})")
                continue
            segments = _diverging_segments(shares, negative, neutral, positive)
            mid = half(item)
            left_total = sum(w for level, _, w in segments if level in negative)
            right_total = sum(w for level, _, w in segments if level in positive)
            for level, x0, width in segments:
                if width <= 0:
                    continue
                (bar,) = ax.barh(
                    y,
                    width,
                    left=x0,
                    height=_BAR,
                    color=colours[level],
                    edgecolor="white",
                    linewidth=0.5,
                    zorder=2,
                )
                bar.set_gid(_gid("bar", item, level))
                if width >= 0.06:
                    ax.text(
                        x0 + width / 2,
                        y,
                        _pct(width, lang, 0),
                        ha="center",
                        va="center",
                        fontsize=SMALL,
                        color=_ink_on(colours[level]),
                        zorder=3,
                    )
            ax.text(
                -mid - left_total - pad,
                y,
                _pct(left_total, lang, 0),
                ha="right",
                va="center",
                fontsize=SMALL + 0.5,
                color=MUTED,
            )
            ax.text(
                mid + right_total + pad,
                y,
                _pct(right_total, lang, 0),
                ha="left",
                va="center",
                fontsize=SMALL + 0.5,
                color=MUTED,
            )
            values = ", ".join(
                f"{labels.get(level, level)} {_pct(shares.get(level) or 0.0, lang)}"
                for level in order
                if level in shares
            )
            totals = (
                f"{text['left']} {_pct(left_total, lang)}, "
                f"{text['right']} {_pct(right_total, lang)}"
            )
            unsure = f", {text['unreliable']}" if item in unreliable else ""
            alt_parts.append(f"{label}: {values} ({totals}){unsure}")
        handles = [Patch(facecolor=colours[level], edgecolor="none") for level in order]
        columns = len(order) if legend_rows == 1 else (len(order) + 1) // 2
        # matplotlib fills a legend column by column; read it row by row, negative first
        places = [
            i
            for pair in zip(range(columns), range(columns, 2 * columns), strict=True)
            for i in pair
        ]
        places = [i for i in places if i < len(order)]
        height = fig.get_size_inches()[1] * 72
        fig.legend(
            [handles[i] for i in places],
            [legend_labels[i] for i in places],
            loc="upper left",
            bbox_to_anchor=(left / WIDTH - 0.01, 1 - 2 / height),
            ncol=columns,
            frameon=False,
            fontsize=SMALL + 0.5,
            handlelength=1.2,
            handleheight=1.0,
            handletextpad=0.4,
            columnspacing=1.1,
            borderaxespad=0,
            borderpad=0,
        )
        _notes(fig, notes)
        alt = f"{text['diverging']}: {title}. " + "; ".join(alt_parts) + "."
        return _chart(fig, key, title, alt, caption)


# -- 3. paired dots ---------------------------------------------------------------------


def paired_dots(
    rows: pl.DataFrame,
    *,
    key: str,
    title: str,
    before: str,
    after: str,
    lang: str = "en",
    caption: str = "",
    min_n: int = 10,
    conf_level: float = 0.95,
) -> Chart:
    """A dumbbell plot: for each item, the share before and after, with their intervals.

    ``rows`` hold ``item`` (the words shown), ``before``, ``before_low``, ``before_high``,
    ``after``, ``after_low``, ``after_high`` (shares). ``before`` and ``after`` name the
    two moments in the legend. Items keep their order; the values are printed on the
    right (``12% → 34%``). A missing value (suppressed) is drawn as nothing and printed
    ``n<{min_n}``. ``conf_level`` names the intervals' level (0.95: "95% CI").

    The SVG marks the dots ``before-<item>``, ``after-<item>`` and their whiskers
    ``ci-before-<item>``, ``ci-after-<item>``.

    >>> rows = pl.DataFrame({"item": ["rallies"], "before": [0.1], "before_low": [0.08],
    ...     "before_high": [0.12], "after": [0.3], "after_low": [0.27], "after_high": [0.33]})
    >>> print(paired_dots(rows, key="p", title="Protest", before="2021", after="2023").alt)
    Dot plot: Protest. rallies: 2021 10.0% (95% CI 8.0–12.0%), 2023 30.0% (95% CI 27.0–33.0%).
    """
    name = "paired_dots"
    columns = ("item", "before", "before_low", "before_high", "after", "after_low", "after_high")
    _require(rows, columns, name)
    text = _texts(lang)
    ci = text["ci"].format(level=f"{100 * conf_level:g}")
    records = [
        (str(r["item"]), *(_number(r[c]) for c in columns[1:])) for r in rows.iter_rows(named=True)
    ]
    names = [_wrap(item) for item, *_ in records]
    suppressed_label = text["suppressed"].format(n=min_n)

    def value(x: float | None) -> str:
        return _pct(x, lang, 0) if x is not None else suppressed_label

    right_texts = [f"{value(r[1])} → {value(r[4])}" for r in records]
    right = max((_text_width(s, SMALL + 0.5) for s in right_texts), default=0.0) + 14
    label_width = max((_text_width(s) for s in names), default=0.0)
    left = min(max(label_width + 14, 60.0), 230.0)
    notes = [text["whiskers"].format(level=f"{100 * conf_level:g}")]
    if any(x is None for r in records for x in (r[1], r[4])):
        notes.append(text["note_suppressed"].format(n=min_n))
    bottom = _notes_height(notes) + 20
    plot_height = 26.0 * max(len(records), 1)
    high = max([0.05] + [x for r in records for x in r[1:] if x is not None])
    with _style():
        fig = _figure(bottom + plot_height + 26)
        plot_width = WIDTH - left - right
        ax = _axes(fig, left, bottom, plot_width, plot_height)
        _clean(ax)
        ax.set_xlim(0, high * 1.04)
        ax.set_ylim(max(len(records), 1) - 0.5, -0.5)
        _percent_axis(ax.xaxis, high, lang)
        ax.grid(axis="x", color=GRID, linewidth=0.6)
        ax.grid(axis="y", color=GRID, linewidth=0.4, linestyle=(0, (1, 2)))
        ax.set_yticks(range(len(records)), names)
        alt_parts = []
        for y, (item, b, b_lo, b_hi, a, a_lo, a_hi) in enumerate(records):
            if b is not None and a is not None:
                ax.plot(
                    [b, a], [y, y], color="#c8c8c8", linewidth=3, zorder=2, gid=_gid("change", item)
                )
            parts = []
            for kind, x, lo, hi, offset, colour, face, moment in (
                ("before", b, b_lo, b_hi, -0.2, ORANGE, "white", before),
                ("after", a, a_lo, a_hi, 0.2, BLUE, BLUE, after),
            ):
                if x is None:
                    parts.append(f"{moment}: {text['not_shown']} ({suppressed_label})")
                    continue
                if lo is not None and hi is not None:
                    cap = 0.07
                    ax.plot(
                        [lo, hi, np.nan, lo, lo, np.nan, hi, hi],
                        [
                            y + offset,
                            y + offset,
                            np.nan,
                            y + offset - cap,
                            y + offset + cap,
                            np.nan,
                            y + offset - cap,
                            y + offset + cap,
                        ],
                        color=colour,
                        linewidth=0.9,
                        zorder=3,
                        gid=_gid("ci", kind, item),
                    )
                    parts.append(f"{moment} {_pct(x, lang)} ({ci} {_pct_range(lo, hi, lang)})")
                else:
                    parts.append(f"{moment} {_pct(x, lang)}")
                ax.plot(
                    [x],
                    [y],
                    marker="o",
                    markersize=7,
                    markerfacecolor=face,
                    markeredgecolor=colour,
                    markeredgewidth=1.6,
                    linestyle="none",
                    zorder=4,
                    gid=_gid(kind, item),
                )
            ax.annotate(
                right_texts[y],
                xy=(1, y),
                xycoords=("axes fraction", "data"),
                xytext=(8, 0),
                textcoords="offset points",
                va="center",
                fontsize=SMALL + 0.5,
                color=INK,
            )
            alt_parts.append(f"{item}: " + ", ".join(parts))
        handles = [
            Line2D(
                [],
                [],
                marker="o",
                markersize=7,
                markerfacecolor="white",
                markeredgecolor=ORANGE,
                markeredgewidth=1.6,
                linestyle="none",
            ),
            Line2D(
                [],
                [],
                marker="o",
                markersize=7,
                markerfacecolor=BLUE,
                markeredgecolor=BLUE,
                markeredgewidth=1.6,
                linestyle="none",
            ),
        ]
        height = fig.get_size_inches()[1] * 72
        fig.legend(
            handles,
            [before, after],
            loc="upper left",
            bbox_to_anchor=(left / WIDTH - 0.01, 1 - 4 / height),
            ncol=2,
            frameon=False,
            fontsize=SMALL + 0.5,
            handletextpad=0.3,
            columnspacing=1.5,
            borderaxespad=0,
            borderpad=0,
        )
        _notes(fig, notes)
        alt = f"{text['dots']}: {title}. " + "; ".join(alt_parts) + "."
        return _chart(fig, key, title, alt, caption)


def __getattr__(name: str):
    # world_map lives with its geometry; it is offered here too, imported on first use
    # (the atlas module imports this one).
    if name == "world_map":
        from volna.report.worldmap import world_map

        return world_map
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
