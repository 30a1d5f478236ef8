"""Global recoding: numbers into bands with top and bottom coding, rare categories into "other".

Global recoding changes a variable for everyone, so it loses less than suppression
for the same gain in k: an age of 23 becomes ``18-24`` for every respondent, a
destination chosen by three people becomes ``other``. Each recode is recorded as a
:class:`Recode` (what became what), and the question is rewritten so the released
questionnaire describes the released data (a banded number becomes a single choice).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl

from volna.questionnaire.model import Choice, Question

OTHER = "other"
OTHER_LABELS = {"ru": "Другое", "en": "Other"}


@dataclass(frozen=True)
class Recode:
    """One global recode: ``mapping`` says which old values each new code holds."""

    variable: str
    method: str  # "bands" or "merge"
    mapping: dict[str, list[str]] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for the report and codebook.

        >>> Recode("destination", "merge", {"other": ["ME", "RS"]}).describe()
        'destination: ME, RS -> other'
        """
        parts = [f"{', '.join(old)} -> {new}" for new, old in self.mapping.items()]
        return f"{self.variable}: {'; '.join(parts)}"


def default_breaks(values: pl.Series, minimum: float | None = None) -> list[float]:
    """Lower bounds of ten-unit bands, the first starting at the smallest value.

    Bounds fall on 25, 35, 45... (the usual age bands 18-24, 25-34, ...).

    >>> import polars as pl
    >>> default_breaks(pl.Series([18, 40, 90]), minimum=18)
    [18, 25, 35, 45, 55, 65, 75, 85]
    """
    present = values.drop_nulls()
    if present.len() == 0:
        return []
    low = float(present.min()) if minimum is None else min(float(minimum), float(present.min()))
    high = float(present.max())
    width = 10
    start = math.floor(low)
    bound = (math.floor((start - width / 2) / width) + 1) * width + width // 2
    out: list[float] = [start]
    while bound <= high:
        out.append(bound)
        bound += width
    return out


def band_labels(breaks: Sequence[float], integral: bool = True) -> list[str]:
    """Codes of the bands; the last is open (top coding).

    >>> band_labels([18, 25, 35, 65])
    ['18-24', '25-34', '35-64', '65+']
    """
    out = []
    for i, low in enumerate(breaks):
        if i + 1 < len(breaks):
            high = breaks[i + 1] - 1 if integral else breaks[i + 1]
            out.append(f"{_num(low)}-{_num(high)}")
        else:
            out.append(f"{_num(low)}+")
    return out


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def band(
    values: pl.Series, breaks: Sequence[float], *, min_count: int = 0
) -> tuple[pl.Series, Recode]:
    """Cut numbers into bands; merge the top (and bottom) bands while they have < min_count.

    Values below the first bound fall into the first band (bottom coding), values from
    the last bound up into the open top band (top coding).

    >>> import polars as pl
    >>> s = pl.Series("age", [19, 24, 30, 71, 88])
    >>> out, recode = band(s, [18, 25, 35, 65, 75], min_count=2)
    >>> out.to_list()
    ['18-24', '18-24', '25-34', '65+', '65+']
    >>> recode.mapping["65+"]
    ['65-74', '75+']
    """
    breaks = sorted(set(breaks))
    if not breaks:
        return values.cast(pl.String), Recode(values.name, "bands")
    integral = values.dtype.is_integer()
    original = list(breaks)
    present = values.drop_nulls()

    def counts(bounds: list[float]) -> list[int]:
        index = pl.Series(bounds[1:], dtype=pl.Float64).search_sorted(
            present.cast(pl.Float64), side="right"
        )
        return [int((index == i).sum()) for i in range(len(bounds))]

    while len(breaks) > 1 and counts(breaks)[-1] < min_count:
        breaks.pop()
    while len(breaks) > 1 and counts(breaks)[0] < min_count:
        breaks.pop(1)
    labels = band_labels(breaks, integral)
    index = pl.Series(breaks[1:], dtype=pl.Float64).search_sorted(
        values.cast(pl.Float64).fill_null(0.0), side="right"
    )
    out = pl.Series(values.name, labels).gather(index)
    out = pl.select(pl.when(values.is_null()).then(None).otherwise(out)).to_series()
    finer = band_labels(original, integral)
    mapping: dict[str, list[str]] = {label: [] for label in labels}
    fine_index = pl.Series(breaks[1:], dtype=pl.Float64).search_sorted(
        pl.Series(original, dtype=pl.Float64), side="right"
    )
    for fine, coarse in zip(finer, fine_index.to_list(), strict=True):
        mapping[labels[coarse]].append(fine)
    return out.alias(values.name), Recode(values.name, "bands", mapping)


def banded_question(question: Question, codes: Sequence[str]) -> Question:
    """The question rewritten as a single choice of its bands."""
    return Question(
        name=question.name,
        type="single",
        labels=question.labels,
        hints=question.hints,
        choices=tuple(Choice(c, {"ru": c, "en": c}) for c in codes),
        relevant=question.relevant,
        section=question.section,
    )


def merge_rare(
    values: pl.Series, min_count: int, *, other: str = OTHER
) -> tuple[pl.Series, Recode | None]:
    """Merge categories chosen by fewer than ``min_count`` respondents into ``other``.

    Nothing is merged when only one category is rare and no "other" exists yet: that
    would rename it, not hide it.

    >>> import polars as pl
    >>> s = pl.Series("country", ["GE"] * 5 + ["AM"] * 4 + ["ME", "RS", None])
    >>> out, recode = merge_rare(s, 3)
    >>> out.to_list()[-3:], recode.mapping
    (['other', 'other', None], {'other': ['ME', 'RS']})
    """
    text = values.cast(pl.String)
    counts = text.drop_nulls().value_counts()
    rare = sorted(
        counts.filter((pl.col("count") < min_count) & (pl.col(text.name) != other))
        .get_column(text.name)
        .to_list()
    )
    has_other = (text == other).any()
    if not rare or (len(rare) == 1 and not has_other):
        return text, None
    out = pl.select(
        pl.when(text.is_in(rare)).then(pl.lit(other)).otherwise(text).alias(text.name)
    ).to_series()
    return out, Recode(text.name, "merge", {other: rare})


def merged_question(
    question: Question,
    kept: Sequence[str],
    languages: Sequence[str],
    *,
    country_name=None,
) -> Question:
    """The question with its rare choices merged into "other" (a country becomes a choice)."""
    if question.type == "country":
        choices = [
            Choice(code, {lang: country_name(code, lang) for lang in languages}) for code in kept
        ]
        choices.append(Choice(OTHER, {lang: OTHER_LABELS.get(lang, "Other") for lang in languages}))
    else:
        by_code = {c.code: c for c in question.choices}
        choices = [by_code[c] for c in question.codes if c in kept and c != OTHER]
        choices.append(
            by_code.get(OTHER)
            or Choice(OTHER, {lang: OTHER_LABELS.get(lang, "Other") for lang in languages})
        )
    return Question(
        name=question.name,
        type="single",
        labels=question.labels,
        hints=question.hints,
        choices=tuple(choices),
        relevant=question.relevant,
        section=question.section,
    )


def parse_bands(text: str | None, where: str = "--bands") -> Mapping[str, list[float]]:
    """Read ``age=18,25,35,45,55,65;other=...`` into lower bounds per variable.

    >>> parse_bands("age=18,25,35,65")
    {'age': [18.0, 25.0, 35.0, 65.0]}
    """
    from volna.errors import VolnaError

    out: dict[str, list[float]] = {}
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        name, sep, bounds = part.partition("=")
        try:
            values = [float(b) for b in bounds.split(",") if b.strip()]
        except ValueError:
            values = []
        if not sep or not name.strip() or not values:
            raise VolnaError(
                f"{where} {part.strip()!r}: expected variable=lower,bounds,... "
                "such as age=18,25,35,45,55,65"
            )
        out[name.strip()] = values
    return out
