"""Known population margins: what weighting aims at, with where the figures come from.

A :class:`Margin` is one table of population figures -- a simple margin (one variable)
or a crossed one (age group x gender) -- as counts or as shares, with its source and
reference date. :meth:`Margin.cells` maps the respondents onto its cells, saying by
name which data level has no target and which target has no respondent, instead of
guessing (the trap of lumping or dropping levels silently).

>>> import polars as pl
>>> m = Margin.of("sex", {"f": 52, "m": 48}, type="shares")
>>> cells = m.cells(pl.DataFrame({"sex": ["m", "f", "f", None]}), missing="exclude")
>>> cells.codes.tolist(), cells.labels
([1, 0, 0, -1], [('f',), ('m',)])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from volna.errors import VolnaError

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
                cell = tuple(_level(entry[v]) for v in names)
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

    def counts(self, population: float) -> dict[tuple[str, ...], float]:
        """Targets as population counts; shares are taken of ``population``."""
        if self.type == "counts":
            return {k: float(v) for k, v in self.targets.items()}
        s = self.total_of_targets()
        return {k: float(v) / s * population for k, v in self.targets.items()}

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
        """
        if missing not in MISSING_POLICIES:
            raise MarginError(f"missing={missing!r}: expected one of {MISSING_POLICIES}")
        collapse = collapse or {}
        n = data.height
        cols: list[pl.Series] = []
        outside = np.zeros(n, dtype=bool)
        missing_rows = np.zeros(n, dtype=bool)
        for var in self.variables:
            values = self._levels(data, var)
            merge = {str(k): str(v) for k, v in collapse.get(var, {}).items()}
            if merge:
                values = values.replace(merge)
            is_missing = values.is_null().to_numpy()
            missing_rows |= is_missing
            excluded = [str(x) for x in self.excluded.get(var, ())]
            if excluded:
                outside |= values.is_in(excluded).fill_null(False).to_numpy()
            cols.append(values)
        if missing_rows.any():
            if missing == "error":
                rows = np.flatnonzero(missing_rows & ~outside)
                if len(rows):
                    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
                    raise MarginError(
                        f"margin {self.title}: rows {', '.join(str(r + 1) for r in rows[:5])}"
                        f"{more} have no value for {'/'.join(self.variables)}; fill them, "
                        "or pass missing='exclude' to leave those respondents out of "
                        "this margin"
                    )
            outside |= missing_rows
        # merged targets: collapsing levels adds their targets together
        targets: dict[tuple[str, ...], float] = {}
        for cell, value in self.targets.items():
            merged = tuple(
                str(collapse.get(var, {}).get(level, level))
                for var, level in zip(self.variables, cell, strict=True)
            )
            targets[merged] = targets.get(merged, 0.0) + float(value)
        labels = list(targets)
        key = cols[0] if len(cols) == 1 else pl.concat_str(cols, separator=_SEP)
        lookup = {_SEP.join(cell): i for i, cell in enumerate(labels)}
        found = key.replace_strict(lookup, default=-1, return_dtype=pl.Int64).to_numpy()
        found = np.where(outside, -1, found)
        if self.other is not None and len(self.variables) == 1 and (self.other,) in lookup:
            found = np.where((found < 0) & ~outside, lookup[self.other], found)
        unmatched = (found < 0) & ~outside
        if unmatched.any():
            counts = key.filter(pl.Series(unmatched)).value_counts(sort=True)
            first = counts.head(3).rows()
            listed = "; ".join(f"{k.replace(_SEP, '/')} ({c} rows)" for k, c in first)
            more = f" and {counts.height - 3} more" if counts.height > 3 else ""
            level0 = first[0][0].split(_SEP)[0]
            raise MarginError(
                f"margin {self.title}: data level {listed}{more} of "
                f"{'/'.join(self.variables)} has no target; add it to the margin, give the "
                "margin an 'other' level, or merge it with collapse="
                f"{{'{self.variables[0]}': {{'{level0}': '<a target level>'}}}}"
            )
        codes = found.astype(np.int64)
        present = np.bincount(codes[codes >= 0], minlength=len(labels)) > 0
        values = np.array([targets[c] for c in labels])
        empty = [labels[i] for i in np.flatnonzero(~present & (values > 0))]
        if empty:
            listed = ", ".join("/".join(c) for c in empty[:5])
            raise MarginError(
                f"margin {self.title}: target level {listed} of {'/'.join(self.variables)} "
                "has no respondent, so no weight can reach it; merge it into another "
                f"level with collapse={{'{self.variables[0]}': {{'{empty[0][0]}': "
                "'<another level>'}}"
            )
        return MarginCells(self, codes, labels, values, outside)

    def _levels(self, data: pl.DataFrame, var: str) -> pl.Series:
        """The levels of ``var`` as strings (null for missing), deriving binned variables."""
        if var in self.derived:
            bins = self.derived[var]
            if bins.source not in data.columns:
                raise MarginError(
                    f"margin {self.title}: {var} is cut from {bins.source}, which is not a "
                    "column of the data"
                )
            x = data.get_column(bins.source).cast(pl.Float64, strict=False).fill_nan(None)
            x = x.to_numpy()
            out = np.full(len(x), None, dtype=object)
            for level, (low, high) in bins.bins.items():
                hit = np.isfinite(x)
                if low is not None:
                    hit &= x >= low
                if high is not None:
                    hit &= x <= high
                out[hit & (out == None)] = str(level)  # noqa: E711 (object array)
            unbinned = np.isfinite(x) & (out == None)  # noqa: E711
            if unbinned.any():
                row = int(np.flatnonzero(unbinned)[0])
                raise MarginError(
                    f"margin {self.title}: row {row + 1}, column {bins.source}: value "
                    f"{x[row]:g} falls in no bin of {var}"
                )
            return pl.Series(var, out.tolist(), dtype=pl.String)
        if var not in data.columns:
            raise MarginError(f"margin {self.title}: {var} is not a column of the data")
        series = data.get_column(var)
        if series.dtype.is_float():
            series = series.fill_nan(None)
            whole = (series == series.round(0)).fill_null(False)
            text = pl.select(
                pl.when(whole)
                .then(series.cast(pl.Int64, strict=False).cast(pl.String))
                .otherwise(series.cast(pl.String))
            ).to_series()
            return text.alias(var)
        if series.dtype in (pl.Categorical,) or isinstance(series.dtype, pl.Enum):
            return series.cast(pl.String)
        if series.dtype == pl.Boolean:
            return series.cast(pl.String).str.replace("true", "True").str.replace("false", "False")
        return series.cast(pl.String)


def _level(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise MarginError(f"margin target {value!r} is not a number") from None
