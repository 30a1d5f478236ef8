"""The tidy result table every estimator returns and every report reads.

One row per estimate, with the columns of the contract in ``DESIGN.md``:

=============  ==========================================================================
``variable``   the variable (``num/den`` for a ratio)
``level``      the level of a categorical variable, the probability of a quantile, or null
``domain``     ``"stype=E"`` (``by=`` variables, crossed with ``", "``), null for everyone
``estimator``  mean, total, proportion, ratio or quantile
``estimate``   the point estimate
``se``         its standard error
``ci_low``     lower confidence limit (level in ``Estimates.conf_level``)
``ci_high``    upper confidence limit
``ci_method``  normal, t, logit, likelihood, beta, wilson, asin, wald, woodruff...
``df``         degrees of freedom of the interval (``inf`` for a normal interval)
``deff``       design effect (against simple random sampling without replacement)
``n``          respondents used (of the level, for proportions and counts)
``n_weighted`` their weighted count
``missing``    respondents of the domain dropped because the variable is missing
``flags``      list of warnings about this estimate (see below)
=============  ==========================================================================

Then one column per ``by=`` variable, holding its level, so tables pivot easily.

Flags: ``empty_domain`` (nobody in the domain), ``all_missing`` (nobody answered),
``missing_values`` (missing values kept with ``na_rm=False``), ``zero_weight``,
``zero_denominator``, ``proportion_boundary`` (0 or 1: exact binomial interval),
``zero_variance``, ``lonely_psu`` (a stratum with one PSU, handled by the design's rule),
``single_psu_in_stratum`` (the domain sits in one PSU of a stratum),
``no_degrees_of_freedom`` (no t interval possible), ``replicates_dropped``,
``ci_clamped`` (a quantile interval reached the end of the data), ``deff_replace``.

>>> est = Estimates({"variable": ["age"], "estimate": [41.5], "se": [0.8]}, conf_level=0.95)
>>> est.value()
41.5
>>> est.to_polars().columns[:6]
['variable', 'level', 'domain', 'estimator', 'estimate', 'se']
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

COLUMNS: dict[str, Any] = {
    "variable": pl.String,
    "level": pl.String,
    "domain": pl.String,
    "estimator": pl.String,
    "estimate": pl.Float64,
    "se": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "ci_method": pl.String,
    "df": pl.Float64,
    "deff": pl.Float64,
    "n": pl.Int64,
    "n_weighted": pl.Float64,
    "missing": pl.Int64,
    "flags": pl.List(pl.String),
}

#: columns some results add (tests of association, contrasts)
OPTIONAL_COLUMNS: dict[str, Any] = {
    "statistic": pl.Float64,
    "ndf": pl.Float64,
    "ddf": pl.Float64,
    "p_value": pl.Float64,
}


class Estimates:
    """A tidy table of estimates, with the confidence level and design it came from.

    Build it from columns (missing ones are filled with nulls); read it with
    :meth:`to_polars`, :meth:`to_pandas`, :meth:`value` or by iterating over rows
    (dicts).
    """

    def __init__(
        self,
        columns: Mapping[str, Sequence[Any]],
        *,
        by: Sequence[str] = (),
        by_columns: Mapping[str, Sequence[Any]] | None = None,
        conf_level: float = 0.95,
        estimator: str | None = None,
        design: str | None = None,
        where: str | None = None,
        vcov: np.ndarray | None = None,
    ) -> None:
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValueError("all columns of an Estimates table must have the same length")
        self._n = lengths.pop() if lengths else 0
        self._columns = {k: list(v) for k, v in columns.items()}
        self.by = tuple(by)
        self._by_columns = {k: list(v) for k, v in (by_columns or {}).items()}
        self.conf_level = conf_level
        self.estimator = estimator
        self.design = design
        self.where = where
        #: covariance matrix of the estimates, in row order, when asked for (``vcov=True``)
        self.vcov = vcov

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.to_polars().iter_rows(named=True))

    def column(self, name: str) -> list[Any]:
        """One column as a list (``None`` for an absent one)."""
        if name in self._columns:
            return list(self._columns[name])
        if name in self._by_columns:
            return list(self._by_columns[name])
        return [None] * self._n

    def value(self, column: str = "estimate") -> Any:
        """The single value of a one-row table (handy in code and doctests)."""
        if self._n != 1:
            raise ValueError(f"value() needs exactly one estimate; this table has {self._n}")
        return self.column(column)[0]

    def to_polars(self) -> pl.DataFrame:
        """The table as a polars DataFrame (core columns, then ``by`` columns)."""
        data: dict[str, pl.Series] = {}
        for name, dtype in COLUMNS.items():
            values = self._columns.get(name, [None] * self._n)
            if name == "flags":
                values = [list(v) if v is not None else [] for v in values]
            data[name] = pl.Series(name, values, dtype=dtype)
        for name, dtype in OPTIONAL_COLUMNS.items():
            if name in self._columns:
                data[name] = pl.Series(name, self._columns[name], dtype=dtype)
        for name, values in self._by_columns.items():
            key = name if name not in data else f"by:{name}"
            data[key] = pl.Series(key, values, dtype=pl.String)
        extra = [k for k in self._columns if k not in data]
        for name in extra:
            data[name] = pl.Series(name, self._columns[name])
        return pl.DataFrame(data)

    def to_pandas(self):
        """The table as a pandas DataFrame (``flags`` holds Python lists)."""
        frame = self.to_polars()
        pdf = frame.drop("flags").to_pandas()
        pdf.insert(frame.columns.index("flags"), "flags", frame["flags"].to_list())
        return pdf

    def to_dicts(self) -> list[dict[str, Any]]:
        return self.to_polars().to_dicts()

    # ---- display -----------------------------------------------------------------------

    def _display_rows(self) -> tuple[list[str], list[list[str]]]:
        show = [
            "variable",
            "level",
            "domain",
            "estimate",
            "se",
            "ci_low",
            "ci_high",
            "deff",
            "n",
            "missing",
            "flags",
        ]
        for opt in ("statistic", "p_value"):
            if opt in self._columns:
                show.insert(show.index("flags"), opt)
        show = [
            c
            for c in show
            if any(v is not None for v in self.column(c)) or c in ("variable", "estimate")
        ]
        if not any(self.column("flags")):
            show = [c for c in show if c != "flags"]
        if not any(self.column("missing")):
            show = [c for c in show if c != "missing"]
        if all(v is None or (isinstance(v, float) and math.isnan(v)) for v in self.column("deff")):
            show = [c for c in show if c != "deff"]
        rows = []
        for i in range(self._n):
            row = []
            for c in show:
                v = self.column(c)[i]
                row.append(_fmt(v))
            rows.append(row)
        return show, rows

    def _title(self) -> str:
        what = self.estimator or "estimates"
        title = f"Estimates: {what}, {len(self)} row{'s' if len(self) != 1 else ''}"
        if self.conf_level is not None and "ci_low" in self._columns:
            title += f", {_fmt_level(self.conf_level)} confidence intervals"
        if self.where:
            title += f"; where {self.where}"
        return title

    def __repr__(self) -> str:
        header, rows = self._display_rows()
        limit = 40
        cut = rows[:limit]
        widths = [max([len(h)] + [len(r[j]) for r in cut]) for j, h in enumerate(header)]
        numeric = {"estimate", "se", "ci_low", "ci_high", "deff", "n", "missing"}
        numeric |= {"statistic", "p_value"}

        def line(cells: list[str]) -> str:
            parts = []
            for j, cell in enumerate(cells):
                parts.append(
                    cell.rjust(widths[j]) if header[j] in numeric else cell.ljust(widths[j])
                )
            return "  ".join(parts).rstrip()

        out = [self._title(), line(header)]
        out += [line(r) for r in cut]
        if len(rows) > limit:
            out.append(f"... {len(rows) - limit} more rows (use .to_polars())")
        return "\n".join(out)

    def _repr_html_(self) -> str:
        header, rows = self._display_rows()
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
        )
        return (
            f"<div><p><b>{html.escape(self._title())}</b></p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
        )


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return ", ".join(v)
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.6g}"
    return str(v)


def _fmt_level(level: float) -> str:
    pct = 100 * level
    return f"{pct:g}%"
