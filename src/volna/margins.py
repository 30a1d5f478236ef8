"""Known population margins: what weighting aims at, with where the figures come from.

A :class:`Margin` is one table of population figures -- a simple margin (one variable)
or a crossed one (age group x gender) -- as counts or as shares, with its source and
reference date. :meth:`Margin.cells` maps the respondents onto its cells, saying by
name which data level has no target and which target has no respondent, instead of
guessing (the trap of lumping or dropping levels silently). :func:`read_margins` reads
margins files (the schema is at the top of ``examples/okrussians/margins.yaml``), naming
the file, line, margin and key of every mistake; :func:`select_margins` picks some by name.

>>> import polars as pl
>>> m = Margin.of("sex", {"f": 52, "m": 48}, type="shares")
>>> cells = m.cells(pl.DataFrame({"sex": ["m", "f", "f", None]}), missing="exclude")
>>> cells.codes.tolist(), cells.labels
([1, 0, 0, -1], [('f',), ('m',)])
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from volna.design import label
from volna.errors import QuestionnaireError, Remedy, VolnaError
from volna.questionnaire.yaml_format import (
    _kind,
    _Map,
    _parse_yaml,
    _Seq,
    level_problem,
    read_text,
)

MARGIN_TYPES = ("counts", "shares")
MISSING_POLICIES = ("error", "exclude")
_SEP = "\x1f"  # joins the levels of a crossed cell; never typed in a level


class MarginError(VolnaError):
    """Margins that cannot be used: unknown levels, empty targets, totals that disagree."""


@dataclass(frozen=True)
class Bins:
    """A variable made by cutting a numeric one into levels with inclusive bounds."""

    source: str  # the questionnaire variable it is cut from
    bins: Mapping[str, tuple[float | None, float | None]]  # level -> (low, high)


@dataclass(frozen=True)
class MarginCells:
    """The respondents mapped onto a margin's cells."""

    margin: Margin
    codes: np.ndarray  # (n,) cell of each row, -1 outside the margin
    labels: list[tuple[str, ...]]  # one per cell, in code order
    targets: np.ndarray  # (cells,) population figure of each cell (counts or shares)
    outside: np.ndarray  # (n,) bool: excluded codes or (policy "exclude") missing values

    @property
    def n_cells(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Margin:
    """One table of known population figures for one variable or a cross of several.

    ``targets`` maps a cell -- a tuple of levels, one per variable -- to a population
    count (``type="counts"``) or a percentage (``type="shares"``, summing to 100).
    ``other`` names the target level that collects every data level not listed;
    ``excluded`` lists codes the margin does not cover (those respondents are outside
    it: the margin does not adjust them). ``derived`` defines variables cut from
    numeric ones. The remaining fields document the figures.

    >>> m = Margin.of("stype", {"E": 4421, "H": 755, "M": 1018})
    >>> m.variables, m.total_of_targets()
    (('stype',), 6194.0)
    """

    variables: tuple[str, ...]
    targets: Mapping[tuple[str, ...], float]
    type: str = "counts"
    name: str | None = None
    total: float | None = None
    other: str | None = None
    excluded: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    derived: Mapping[str, Bins] = field(default_factory=dict)
    population: str | None = None
    reference_date: str | None = None
    source: Mapping[str, Any] | None = None
    illustrative: bool = False
    notes: str | None = None

    def __post_init__(self) -> None:
        if self.type not in MARGIN_TYPES:
            raise MarginError(
                f"margin {self.title}: type {self.type!r} is not one of counts, shares"
            )
        if not self.targets:
            raise MarginError(f"margin {self.title}: no targets")
        for cell, value in self.targets.items():
            if len(cell) != len(self.variables):
                raise MarginError(
                    f"margin {self.title}: cell {cell} has {len(cell)} levels for "
                    f"{len(self.variables)} variables"
                )
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise MarginError(
                    f"margin {self.title}: target of {'/'.join(cell)} is {value!r}; "
                    "expected a number of at least 0"
                )
        if self.type == "shares":
            s = self.total_of_targets()
            if not math.isclose(s, 100.0, rel_tol=0, abs_tol=0.05) and not math.isclose(
                s, 1.0, rel_tol=0, abs_tol=5e-4
            ):
                raise MarginError(
                    f"margin {self.title}: shares sum to {s:g}; expected 100 (percent)"
                )

    # ---- construction -------------------------------------------------------------

    @classmethod
    def of(
        cls,
        variables: str | Sequence[str],
        targets: Mapping[Any, float] | Sequence[Mapping[str, Any]],
        **fields: Any,
    ) -> Margin:
        """A margin from plain Python: ``{level: value}`` or, crossed, a list of cells.

        >>> Margin.of(["age", "sex"], [{"age": "young", "sex": "f", "value": 10},
        ...                            {"age": "young", "sex": "m", "value": 12}]).targets
        {('young', 'f'): 10.0, ('young', 'm'): 12.0}
        """
        names = (variables,) if isinstance(variables, str) else tuple(variables)
        cells: dict[tuple[str, ...], float] = {}
        if isinstance(targets, Mapping):
            for key, value in targets.items():
                cell = tuple(str(k) for k in key) if isinstance(key, tuple) else (str(key),)
                cells[cell] = _number(value)
        else:
            for entry in targets:
                missing = [v for v in (*names, "value") if v not in entry]
                if missing:
                    raise MarginError(
                        f"margin {fields.get('name') or '/'.join(names)}: a cell lacks "
                        f"{', '.join(missing)}"
                    )
                cell = tuple(label(entry[v]) for v in names)
                if cell in cells:
                    raise MarginError(
                        f"margin {fields.get('name') or '/'.join(names)}: cell "
                        f"{'/'.join(cell)} is listed twice"
                    )
                cells[cell] = _number(entry["value"])
        return cls(variables=names, targets=cells, **fields)

    @classmethod
    def coerce(cls, spec: Any, name: str | None = None) -> list[Margin]:
        """Margins from a Margin, a list of them, or ``{variable: {level: count}}``."""
        if isinstance(spec, Margin):
            return [spec]
        if isinstance(spec, Mapping):
            return [cls.of(var, targets, name=str(var)) for var, targets in spec.items()]
        if isinstance(spec, Sequence) and not isinstance(spec, str):
            out: list[Margin] = []
            for item in spec:
                out.extend(cls.coerce(item))
            return out
        raise MarginError(
            f"margins must be Margin objects or {{variable: {{level: count}}}}, got "
            f"{type(spec).__name__}"
        )

    # ---- reading --------------------------------------------------------------------

    @property
    def title(self) -> str:
        return self.name or " x ".join(self.variables)

    def total_of_targets(self) -> float:
        return float(sum(self.targets.values()))

    def cells(
        self,
        data: pl.DataFrame,
        *,
        missing: str = "error",
        collapse: Mapping[str, Mapping[str, str]] | None = None,
    ) -> MarginCells:
        """Map every row onto a cell of the margin (``-1``: outside it).

        ``collapse`` merges levels, ``{variable: {level: into_level}}``, in the data and
        in the targets alike -- the explicit way to handle a level without respondents.
        A data level with no target (and no ``other``), a target with no respondent, or
        a missing value (under ``missing="error"``) is an error naming it.

        Each variable is factorized once; the matching of levels to targets then works
        on the few distinct combinations present, not on the rows.
        """
        if missing not in MISSING_POLICIES:
            raise MarginError(f"missing={missing!r}: expected one of {MISSING_POLICIES}")
        collapse = collapse or {}
        n = data.height
        factors = [self._factor(data, var) for var in self.variables]
        # the distinct combinations of levels present (missing: code -1 -> 0)
        key = factors[0][0] + 1
        for codes, labels in factors[1:]:
            key = key * (len(labels) + 1) + (codes + 1)
        possible = math.prod(len(labels) + 1 for _, labels in factors)
        if possible <= 1 << 22:
            counts_all = np.bincount(key, minlength=possible)
            combos = np.flatnonzero(counts_all)
            remap = np.full(possible, -1, dtype=np.int64)
            remap[combos] = np.arange(len(combos))
            combo_of_row = remap[key]
            combo_count = counts_all[combos]
        else:
            combos, combo_of_row, combo_count = np.unique(
                key, return_inverse=True, return_counts=True
            )
        # merged targets: collapsing levels adds their targets together
        targets: dict[tuple[str, ...], float] = {}
        for cell, value in self.targets.items():
            merged = tuple(
                str(collapse.get(var, {}).get(level, level))
                for var, level in zip(self.variables, cell, strict=True)
            )
            targets[merged] = targets.get(merged, 0.0) + float(value)
        labels = list(targets)
        index = {cell: i for i, cell in enumerate(labels)}
        other = None
        if self.other is not None and len(self.variables) == 1:
            other = str(collapse.get(self.variables[0], {}).get(self.other, self.other))
        excluded = [{str(x) for x in self.excluded.get(var, ())} for var in self.variables]
        merges = [
            {str(k): str(v) for k, v in collapse.get(var, {}).items()} for var in self.variables
        ]
        # decode each combination into its levels and find its cell
        combo_cell = np.full(len(combos), -1, dtype=np.int64)
        combo_outside = np.zeros(len(combos), dtype=bool)
        combo_missing = np.zeros(len(combos), dtype=bool)
        unknown: list[tuple[str, int]] = []
        radices = [len(lab) + 1 for _, lab in factors]
        for c, k in enumerate(combos.tolist()):
            parts = []
            for radix in reversed(radices):
                parts.append(k % radix - 1)
                k //= radix
            parts.reverse()
            levels = []
            for j, code in enumerate(parts):
                if code < 0:
                    combo_missing[c] = True
                    break
                level = factors[j][1][code]
                level = merges[j].get(level, level)
                if level in excluded[j]:
                    combo_outside[c] = True
                levels.append(level)
            if combo_missing[c] or combo_outside[c]:
                continue
            cell = index.get(tuple(levels))
            if cell is None and other is not None:
                cell = index.get((other,))
            if cell is None:
                unknown.append(("/".join(levels), int(combo_count[c])))
            else:
                combo_cell[c] = cell
        # gathers over the rows only when some combination needs them
        no_rows = np.zeros(n, dtype=bool)
        missing_rows = combo_missing[combo_of_row] if combo_missing.any() else no_rows
        outside = combo_outside[combo_of_row] if combo_outside.any() else no_rows
        if combo_missing.any():
            if missing == "error":
                rows = np.flatnonzero(missing_rows & ~outside)
                if len(rows):
                    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
                    raise MarginError(
                        f"margin {self.title}: rows {', '.join(str(r + 1) for r in rows[:5])}"
                        f"{more} have no value for {'/'.join(self.variables)}",
                        remedy=Remedy(
                            "missing",
                            "exclude",
                            lead="fill them, or",
                            then="to leave those respondents out of this margin",
                        ),
                    )
            outside = outside | missing_rows
        if unknown:
            unknown.sort(key=lambda item: -item[1])
            listed = "; ".join(f"{name} ({count} rows)" for name, count in unknown[:3])
            more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            level0 = unknown[0][0].split("/")[0]
            raise MarginError(
                f"margin {self.title}: data level {listed}{more} of "
                f"{'/'.join(self.variables)} has no target",
                remedy=Remedy(
                    "collapse",
                    {self.variables[0]: {level0: "<a target level>"}},
                    lead="add it to the margin, give the margin an 'other' level, or merge "
                    "the levels:",
                ),
            )
        codes = combo_cell[combo_of_row]
        if outside.any():
            codes = np.where(outside, -1, codes)
        present = np.zeros(len(labels), dtype=bool)
        present[combo_cell[(combo_cell >= 0) & ~combo_outside & ~combo_missing]] = True
        values = np.array([targets[c] for c in labels])
        empty = [labels[i] for i in np.flatnonzero(~present & (values > 0))]
        if empty:
            listed = ", ".join("/".join(c) for c in empty[:5])
            raise MarginError(
                f"margin {self.title}: target level {listed} of {'/'.join(self.variables)} "
                "has no respondent, so no weight can reach it",
                remedy=Remedy(
                    "collapse",
                    {self.variables[0]: {empty[0][0]: "<another level>"}},
                    lead="merge it into another level:",
                ),
            )
        return MarginCells(self, codes, labels, values, outside)

    def _factor(self, data: pl.DataFrame, var: str) -> tuple[np.ndarray, list[str]]:
        """Codes of ``var`` (``-1`` for missing) and its levels as strings."""
        if var in self.derived:
            bins = self.derived[var]
            if bins.source not in data.columns:
                raise MarginError(
                    f"margin {self.title}: {var} is cut from {bins.source}, which is not a "
                    "column of the data"
                )
            x = data.get_column(bins.source).cast(pl.Float64, strict=False).fill_nan(None)
            x = x.fill_null(np.nan).to_numpy()
            codes = np.full(len(x), -1, dtype=np.int64)
            finite = np.isfinite(x)
            for code, (low, high) in enumerate(bins.bins.values()):
                hit = finite & (codes < 0)
                if low is not None:
                    hit &= x >= low
                if high is not None:
                    hit &= x <= high
                codes[hit] = code
            unbinned = finite & (codes < 0)
            if unbinned.any():
                row = int(np.flatnonzero(unbinned)[0])
                raise MarginError(
                    f"margin {self.title}: row {row + 1}, column {bins.source}: value "
                    f"{x[row]:g} falls in no bin of {var}"
                )
            return codes, [str(level) for level in bins.bins]
        if var not in data.columns:
            raise MarginError(f"margin {self.title}: {var} is not a column of the data")
        series = data.get_column(var)
        if isinstance(series.dtype, pl.Enum):
            # already factorized: the physical codes index the declared levels
            codes = series.to_physical().cast(pl.Int64).fill_null(-1).to_numpy()
            return codes.astype(np.int64), [str(c) for c in series.dtype.categories.to_list()]
        if series.dtype.is_float():
            series = series.fill_nan(None)
        if series.dtype.is_integer() and series.len() > 0:
            nulls = series.is_null().to_numpy()
            values = series.fill_null(0).to_numpy().astype(np.int64)
            low, high = int(values.min()), int(values.max())
            if high - low < 1 << 22:
                seen = np.bincount(values[~nulls] - low, minlength=high - low + 1)
                present = np.flatnonzero(seen)
                remap = np.full(high - low + 1, -1, dtype=np.int64)
                remap[present] = np.arange(len(present))
                codes = np.where(nulls, -1, remap[values - low])
                return codes, [str(int(v) + low) for v in present]
        if series.dtype == pl.Boolean:
            series = (
                series.cast(pl.String).str.replace("true", "True").str.replace("false", "False")
            )
        if series.dtype.is_numeric():
            uniq = series.drop_nulls().unique().sort()
            text = [label(v) for v in uniq.to_list()]
            codes = series.replace_strict(
                uniq, pl.Series(np.arange(len(uniq), dtype=np.int64)), default=-1
            )
            return codes.fill_null(-1).to_numpy().astype(np.int64), text
        series = series.cast(pl.String)
        uniq = series.drop_nulls().unique().sort().to_list()
        codes = series.cast(pl.Enum(uniq)).to_physical().cast(pl.Int64).fill_null(-1)
        return codes.to_numpy().astype(np.int64), uniq


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise MarginError(f"margin target {value!r} is not a number") from None


# ---------------------------------------------------------------------------------------
# margins files (YAML)

_FILE_KEYS = ("margins",)
_MARGIN_KEYS = (
    "name",
    "variables",
    "derived",
    "type",
    "targets",
    "other",
    "excluded",
    "total",
    "population",
    "reference_date",
    "source",
    "illustrative",
    "notes",
)
_DERIVED_KEYS = ("from", "bins")
_SOURCE_KEYS = ("title", "publisher", "url", "via")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")  # the questionnaire's rule for names
_DATE = re.compile(r"^\d{4}-\d{2}(-\d{2})?$")


def read_margins(path: str | Path) -> list[Margin]:
    """Read a margins file: every margin with its targets, source and reference date.

    The schema is described at the top of ``examples/okrussians/margins.yaml``. Every
    mistake is one line naming the file, the line, the margin and the key, e.g.
    ``margins.yaml:12: margin bell: targets.TR: expected a number of at least 0, found
    'many'``. Unknown keys, duplicate margin names and margins without ``source`` or
    ``reference_date`` are errors.

    >>> from volna.examples import example_path
    >>> margins = read_margins(example_path("okrussians", "margins.yaml"))
    >>> bell = margins[0]
    >>> bell.name, bell.type, bell.targets[("TR",)], bell.reference_date
    ('destination_bell_2024', 'counts', 28000.0, '2024-07')
    >>> margins[-1].variables, margins[-1].derived["age_group"].bins["55+"]
    (('age_group', 'gender'), (55.0, None))
    """
    return parse_margins(read_text(path, MarginError, "margins file"), str(path))


def parse_margins(text: str, filename: str = "<margins>") -> list[Margin]:
    """Margins from YAML text; see :func:`read_margins`.

    >>> parse_margins('''
    ... margins:
    ...   - name: sex
    ...     variables: [sex]
    ...     type: shares
    ...     targets: {f: 52, m: 48}
    ...     reference_date: "2021-10"
    ...     source: {title: Census 2021, publisher: Rosstat}
    ... ''')[0].targets
    {('f',): 52.0, ('m',): 48.0}
    >>> parse_margins('''
    ... margins:
    ...   - name: sex
    ...     variables: [sex]
    ...     type: share
    ... ''', "m.yaml")
    Traceback (most recent call last):
    ...
    volna.margins.MarginError: m.yaml:5: margin sex: type: expected counts or shares, found 'share'
    """
    try:
        data = _parse_yaml(text, filename)
    except QuestionnaireError as exc:  # the YAML reader is shared with questionnaires
        raise MarginError(str(exc)) from None
    return _MarginsReader(filename).read(data)


def select_margins(margins: Sequence[Margin], names: str | Sequence[str] | None) -> list[Margin]:
    """The margins named (a list, or names separated by commas), in that order.

    ``None`` selects them all. An unknown name is an error listing the available ones.

    >>> ms = [Margin.of("sex", {"f": 1, "m": 1}, name="sex"),
    ...       Margin.of("age", {"y": 1, "o": 1}, name="age")]
    >>> [m.name for m in select_margins(ms, "age,sex")]
    ['age', 'sex']
    >>> select_margins(ms, ["region"])
    Traceback (most recent call last):
    ...
    volna.margins.MarginError: no margin named 'region'; the margins are: sex, age
    """
    if names is None:
        return list(margins)
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    by_name = {m.title: m for m in margins}
    available = ", ".join(by_name) or "(none)"
    if not names:
        raise MarginError(f"no margin named; the margins are: {available}")
    out: list[Margin] = []
    for name in names:
        if name not in by_name:
            raise MarginError(f"no margin named {name!r}; the margins are: {available}")
        if any(m.title == name for m in out):
            raise MarginError(f"margin {name} is named twice")
        out.append(by_name[name])
    return out


class _MarginsReader:
    """Turns the parsed YAML into margins, naming file:line, margin and key on errors."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.margin = ""  # the margin being read, for messages

    def fail(self, line: int, key: str, message: str) -> MarginError:
        head = f"{self.filename}:{line}: "
        if self.margin:
            head += f"margin {self.margin}: "
        return MarginError(f"{head}{key}: {message}")

    # ---- pieces --------------------------------------------------------------------

    def mapping(self, value: Any, line: int, key: str, allowed: Sequence[str]) -> Any:
        if not isinstance(value, _Map):
            raise self.fail(line, key, f"expected a mapping, found {_kind(value)}")
        unknown = [k for k in value if k not in allowed]
        if unknown:
            k = unknown[0]
            raise self.fail(
                value.lines[k],
                f"{key}.{k}" if key else k,
                f"unknown key (expected one of: {', '.join(allowed)})",
            )
        return value

    def text(self, m: Any, k: str, *, required: bool = False, key: str = "") -> str | None:
        path = f"{key}.{k}" if key else k
        if m.get(k) is None:
            if required:
                raise self.fail(m.line, path, "is required")
            return None
        v = m[k]
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise self.fail(m.lines[k], path, f"expected text, found {_kind(v)}")
        return str(v)

    def number(self, value: Any, line: int, key: str, *, low: float = 0.0) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < low
        ):
            raise self.fail(line, key, f"expected a number of at least {low:g}, found {value!r}")
        return float(value)

    def level(self, value: Any, line: int, key: str) -> str:
        problem = level_problem(value)
        if problem is not None:
            raise self.fail(line, key, problem)
        return label(value)

    def names(self, m: Any, k: str) -> tuple[str, ...]:
        value = m.get(k)
        if value is None:
            raise self.fail(m.line, k, "is required (a list such as [destination])")
        if not isinstance(value, _Seq) or not value:
            raise self.fail(m.lines[k], k, "expected a list of variables such as [destination]")
        out = []
        for v in value:
            if not isinstance(v, str) or not v.strip():
                raise self.fail(m.lines[k], k, f"expected a variable name, found {v!r}")
            if v in out:
                raise self.fail(m.lines[k], k, f"variable {v} is listed twice")
            out.append(v)
        return tuple(out)

    # ---- one margin ----------------------------------------------------------------

    def derived(self, m: Any, variables: tuple[str, ...]) -> dict[str, Bins]:
        if m.get("derived") is None:
            return {}
        spec = m["derived"]
        if not isinstance(spec, _Map):
            raise self.fail(
                m.lines["derived"],
                "derived",
                f"expected {{name: {{from, bins}}}}, found {_kind(spec)}",
            )
        for var in spec:
            if var not in variables:
                raise self.fail(
                    spec.lines[var],
                    f"derived.{var}",
                    f"is not one of the margin's variables ({', '.join(variables)})",
                )
        out = {}
        for var, value in spec.items():
            key = f"derived.{var}"
            d = self.mapping(value, spec.lines[var], key, _DERIVED_KEYS)
            source = self.text(d, "from", required=True, key=key)
            bins_key = f"{key}.bins"
            if d.get("bins") is None:
                raise self.fail(d.line, bins_key, "is required: {level: [low, high]}")
            raw_bins = d["bins"]
            if not isinstance(raw_bins, _Map) or not raw_bins:
                raise self.fail(d.lines["bins"], bins_key, "expected at least one bin")
            bins: dict[str, tuple[float | None, float | None]] = {}
            for level, bounds in raw_bins.items():
                line = raw_bins.lines[level]
                where = f"{bins_key}.{level}"
                if not isinstance(bounds, list) or len(bounds) != 2:
                    raise self.fail(
                        line, where, f"expected [low, high] (null: no bound), found {bounds!r}"
                    )
                lo, hi = (
                    None if b is None else self.number(b, line, where, low=-math.inf)
                    for b in bounds
                )
                if lo is not None and hi is not None and lo > hi:
                    raise self.fail(line, where, f"low bound {lo:g} is above high bound {hi:g}")
                for other, (olo, ohi) in bins.items():
                    a = max(-math.inf if lo is None else lo, -math.inf if olo is None else olo)
                    b = min(math.inf if hi is None else hi, math.inf if ohi is None else ohi)
                    if a <= b:
                        raise self.fail(
                            line, where, f"overlaps bin {other} (a value would fall in both)"
                        )
                bins[level] = (lo, hi)
            out[var] = Bins(source=source, bins=bins)
        return out

    def targets(self, m: Any, variables: tuple[str, ...]) -> dict[tuple[str, ...], float]:
        if m.get("targets") is None:
            raise self.fail(m.line, "targets", "is required")
        value, line = m["targets"], m.lines["targets"]
        cells: dict[tuple[str, ...], float] = {}
        if isinstance(value, _Map):
            if len(variables) > 1:
                raise self.fail(
                    line,
                    "targets",
                    "a crossed margin lists its cells: - {"
                    + ", ".join(f"{v}: <level>" for v in variables)
                    + ", value: <number>}",
                )
            for level, v in value.items():
                cells[(level,)] = self.number(v, value.lines[level], f"targets.{level}")
        elif isinstance(value, _Seq):
            first: dict[tuple[str, ...], int] = {}
            for i, (entry, ln) in enumerate(zip(value, value.lines, strict=True)):
                key = f"targets[{i}]"
                e = self.mapping(entry, ln, key, (*variables, "value"))
                absent = [v for v in (*variables, "value") if v not in e]
                if absent:
                    raise self.fail(ln, key, f"lacks {', '.join(absent)}")
                cell = tuple(self.level(e[v], e.lines[v], f"{key}.{v}") for v in variables)
                if cell in first:
                    raise self.fail(
                        ln,
                        key,
                        f"cell {'/'.join(cell)} is listed twice (first on line {first[cell]})",
                    )
                first[cell] = ln
                cells[cell] = self.number(e["value"], e.lines["value"], f"{key}.value")
        else:
            raise self.fail(
                line,
                "targets",
                f"expected {{level: value}} or a list of cells, found {_kind(value)}",
            )
        if not cells:
            raise self.fail(line, "targets", "expected at least one target")
        if len(variables) > 1:
            levels = [list(dict.fromkeys(c[j] for c in cells)) for j in range(len(variables))]
            for cell in _product(levels):
                if cell not in cells:
                    raise self.fail(
                        line,
                        "targets",
                        f"cell {'/'.join(cell)} is missing; list every cell of "
                        f"{' x '.join(variables)} (0 for an empty one)",
                    )
        return cells

    def excluded(self, m: Any, variables: tuple[str, ...], cells) -> dict[str, tuple[str, ...]]:
        if m.get("excluded") is None:
            return {}
        spec = self.mapping(m["excluded"], m.lines["excluded"], "excluded", variables)
        out = {}
        for var, codes in spec.items():
            line, key = spec.lines[var], f"excluded.{var}"
            codes = codes if isinstance(codes, _Seq) else [codes]
            levels = tuple(self.level(c, line, key) for c in codes)
            j = variables.index(var)
            clash = [c for c in levels if any(cell[j] == c for cell in cells)]
            if clash:
                raise self.fail(line, key, f"{clash[0]} has a target; it cannot be excluded")
            out[var] = levels
        return out

    def reference_date(self, m: Any) -> str:
        value = m.get("reference_date")
        if value is None:
            raise self.fail(m.line, "reference_date", "is required (YYYY-MM or YYYY-MM-DD)")
        line = m.lines["reference_date"]
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value.isoformat()
        text = value if isinstance(value, str) else None
        if text is not None and _DATE.match(text):
            try:
                dt.date.fromisoformat(text if len(text) == 10 else f"{text}-01")
                return text
            except ValueError:
                pass
        raise self.fail(
            line, "reference_date", f"expected a date YYYY-MM or YYYY-MM-DD, found {value!r}"
        )

    def source(self, m: Any) -> dict[str, str | None]:
        if m.get("source") is None:
            raise self.fail(
                m.line, "source", "is required: {title, publisher, url, via} of the figures"
            )
        s = self.mapping(m["source"], m.lines["source"], "source", _SOURCE_KEYS)
        out = {k: self.text(s, k, required=k == "title", key="source") for k in _SOURCE_KEYS}
        url = out["url"]
        if url is not None and not url.startswith(("http://", "https://")):
            raise self.fail(
                s.lines["url"], "source.url", f"expected an http(s) address, found {url!r}"
            )
        return out

    def one(self, value: Any, line: int, index: int) -> Margin:
        self.margin = ""
        key = f"margins[{index}]"
        if not isinstance(value, _Map):
            raise self.fail(
                line, key, f"expected a mapping (name, variables, ...), found {_kind(value)}"
            )
        if isinstance(value.get("name"), str):
            self.margin = value["name"]
        m = self.mapping(value, line, "" if self.margin else key, _MARGIN_KEYS)
        name = self.text(value, "name", required=True, key=key)
        if not _NAME.match(name):
            raise self.fail(
                value.lines["name"],
                f"{key}.name",
                f"{name!r} is not a name (letters, digits, _ . -; no spaces or commas)",
            )
        self.margin = name
        variables = self.names(m, "variables")
        derived = self.derived(m, variables)
        mtype = m.get("type")
        if mtype not in MARGIN_TYPES:
            raise self.fail(
                m.lines.get("type", line),
                "type",
                "is required: counts or shares"
                if mtype is None
                else f"expected counts or shares, found {mtype!r}",
            )
        cells = self.targets(m, variables)
        other = self.text(m, "other")
        if other is not None:
            if len(variables) > 1:
                raise self.fail(m.lines["other"], "other", "applies to a margin of one variable")
            if (other,) not in cells:
                raise self.fail(
                    m.lines["other"], "other", f"{other!r} is not one of the target levels"
                )
        excluded = self.excluded(m, variables, cells)
        total = m.get("total")
        if total is not None:
            total = self.number(total, m.lines["total"], "total")
            s = float(sum(cells.values()))
            if mtype == "counts" and not math.isclose(total, s, rel_tol=1e-9, abs_tol=1e-9):
                raise self.fail(
                    m.lines["total"],
                    "total",
                    f"{total:,.10g} is not the sum of the targets ({s:,.10g})",
                )
        illustrative = m.get("illustrative", False)
        if not isinstance(illustrative, bool):
            raise self.fail(
                m.lines["illustrative"],
                "illustrative",
                f"expected true or false, found {illustrative!r}",
            )
        fields = dict(
            variables=variables,
            targets=cells,
            type=mtype,
            name=name,
            total=total,
            other=other,
            excluded=excluded,
            derived=derived,
            population=self.text(m, "population"),
            reference_date=self.reference_date(m),
            source=self.source(m),
            illustrative=illustrative,
            notes=self.text(m, "notes"),
        )
        try:
            return Margin(**fields)
        except MarginError as exc:
            message = str(exc).removeprefix(f"margin {name}: ")
            raise self.fail(m.lines["targets"], "targets", message) from None

    def read(self, data: Any) -> list[Margin]:
        if data is None:
            raise MarginError(f"{self.filename}: the file is empty; expected a `margins` list")
        top = self.mapping(data, 1, "", _FILE_KEYS)
        if not isinstance(top.get("margins"), _Seq) or not top["margins"]:
            raise self.fail(top.lines.get("margins", 1), "margins", "expected a list of margins")
        out: list[Margin] = []
        seen: dict[str, int] = {}
        for i, (value, line) in enumerate(zip(top["margins"], top["margins"].lines, strict=True)):
            margin = self.one(value, line, i)
            if margin.name in seen:
                raise self.fail(
                    value.lines["name"],
                    "name",
                    f"a margin of this name is already on line {seen[margin.name]}; names "
                    "must be unique",
                )
            seen[margin.name] = value.lines["name"]
            out.append(margin)
        return out


def _product(levels: list[list[str]]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = [()]
    for options in levels:
        out = [(*cell, level) for cell in out for level in options]
    return out


def parse_collapse(specs: Sequence[str]) -> dict[str, dict[str, str]]:
    """Level merges written ``variable:level=into`` (as on the command line).

    >>> parse_collapse(["destination:KG=other", "destination:UZ=other", "age_group:55+=45+"])
    {'destination': {'KG': 'other', 'UZ': 'other'}, 'age_group': {'55+': '45+'}}
    """
    out: dict[str, dict[str, str]] = {}
    for spec in specs:
        var, _, rest = spec.partition(":")
        level, _, into = rest.partition("=")
        var, level, into = var.strip(), level.strip(), into.strip()
        if not (var and level and into):
            raise MarginError(
                f"collapse {spec!r}: expected variable:level=into_level, e.g. destination:KG=other"
            )
        merges = out.setdefault(var, {})
        if level in merges and merges[level] != into:
            raise MarginError(
                f"collapse {spec!r}: {var} level {level} is already merged into {merges[level]}"
            )
        merges[level] = into
    return out
