"""SurveyDesign: the one object that carries everything a standard error needs.

A design is built once from a table of responses -- pandas or polars -- and is
immutable: ``subset``, ``with_replicates`` (and the weighting steps of other modules)
return new designs. Two kinds exist, as in R's survey package:

* a **linearization design** (``SurveyDesign.from_frame``): sampling weights, strata,
  cluster ids for any number of stages, finite population corrections per stage and a
  rule for strata with a single PSU (R's ``svydesign``);
* a **replicate design** (``SurveyDesign.replicate`` or ``design.with_replicates``):
  sampling weights plus replicate weights with their scale factors (R's
  ``svrepdesign``).

Every estimator is a method that reads like the question asked of the data:

>>> import polars as pl
>>> frame = pl.DataFrame({
...     "region": ["N", "N", "N", "S", "S", "S"],
...     "school": [1, 1, 2, 3, 4, 4],
...     "weight": [10.0, 10.0, 12.0, 8.0, 9.0, 9.0],
...     "score": [3.0, 5.0, 4.0, 6.0, 7.0, 5.0],
...     "kind": ["a", "b", "a", "b", "b", "a"],
... })
>>> design = SurveyDesign.from_frame(frame, ids="school", strata="region", weights="weight")
>>> design
SurveyDesign: stratified cluster sample, 6 rows
  weights  weight (sum 58)
  strata   region (2)
  PSUs     school (4)
  degrees of freedom 2; lonely PSU rule "fail"
>>> round(design.mean("score").value(), 4)
4.8966
>>> design.proportion("kind", by="region").to_polars().select("domain", "level", "estimate")
shape: (4, 3)
┌──────────┬───────┬──────────┐
│ domain   ┆ level ┆ estimate │
│ ---      ┆ ---   ┆ ---      │
│ str      ┆ str   ┆ f64      │
╞══════════╪═══════╪══════════╡
│ region=N ┆ a     ┆ 0.6875   │
│ region=N ┆ b     ┆ 0.3125   │
│ region=S ┆ a     ┆ 0.346154 │
│ region=S ┆ b     ┆ 0.653846 │
└──────────┴───────┴──────────┘
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from volna.errors import Remedy, VolnaError
from volna.variance import (
    LONELY_PSU_RULES,
    BlockTotals,
    CalibrationModel,
    CellSums,
    Presence,
    RatioBlock,
    ReplicateGroups,
    ReplicateWeightColumns,
    Stage,
    as_replicate_columns,
    block_estimates,
    block_linearization_variance,
    block_totals,
    calibrated_block_variance,
    calibration_coefficients,
    calibration_model,
    cell_sums,
    find_replicate_groups,
    linearization_covariance,
    presence,
    replicate_covariance,
    replicate_estimates,
    replicate_rank,
    replicate_variance,
    stratum_coefficients,
)

if TYPE_CHECKING:
    from volna.results import Estimates
    from volna.weighting import Calibration, WeightingStep


class DesignError(VolnaError):
    """A survey design cannot be built or used as asked: a column, a value or an option.

    >>> str(DesignError("column pw: row 4: weight -1 is negative"))
    'column pw: row 4: weight -1 is negative'
    """


#: replicate types: the name R uses, with the aliases volna accepts
REPLICATE_TYPES = {
    "jk1": "JK1",
    "jkn": "JKn",
    "brr": "BRR",
    "fay": "Fay",
    "bootstrap": "bootstrap",
    "sdr": "successive-difference",
    "acs": "successive-difference",
    "successive-difference": "successive-difference",
    "other": "other",
}

Frame = Any  # a pandas or polars DataFrame
ColumnSpec = Any  # a column name, a polars/pandas Series, a numpy array or a polars expression


# ---------------------------------------------------------------------------------------
# columns


def to_polars(frame: Frame) -> pl.DataFrame:
    """Accept a polars or pandas frame; keep pandas category order as a polars Enum.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"a": pd.Categorical(["x", "y"], categories=["y", "x"])})
    >>> to_polars(df).schema["a"]
    Enum(categories=['y', 'x'])
    """
    if isinstance(frame, pl.DataFrame):
        return frame
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(frame, pd.DataFrame):
        columns = {}
        for name in frame.columns:
            s = frame[name]
            if isinstance(s.dtype, pd.CategoricalDtype):
                cats = [str(c) for c in s.cat.categories]
                values = [None if v is None or v != v else str(v) for v in s.astype(object)]
                columns[str(name)] = pl.Series(str(name), values, dtype=pl.Enum(cats))
            else:
                columns[str(name)] = pl.from_pandas(s.rename(str(name)))
        return pl.DataFrame(columns)
    raise DesignError(
        f"expected a pandas or polars DataFrame, got {type(frame).__name__}; "
        "read the responses with volna.read() or polars first"
    )


def label(value: Any) -> str:
    """How a level or a stratum is written in results: ``1`` not ``1.0``.

    >>> label(1.0), label(2.5), label("E"), label(True)
    ('1', '2.5', 'E', 'True')
    """
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def level_labels(series: pl.Series) -> pl.Series:
    """A column's values as level labels, written as :func:`label` writes them.

    >>> level_labels(pl.Series([1.0, 2.5, None])).to_list()
    ['1', '2.5', None]
    """
    dtype = series.dtype
    if dtype == pl.Boolean:
        return pl.select(
            pl.when(series).then(pl.lit("True")).otherwise(pl.lit("False"))
        ).to_series()
    if dtype.is_float():
        series = series.fill_nan(None)
        whole = ((series == series.round(0)) & (series.abs() < 2.0**53)).fill_null(False)
        return pl.select(
            pl.when(whole)
            .then(series.cast(pl.Int64, strict=False).cast(pl.String))
            .otherwise(series.cast(pl.String))
        ).to_series()
    return series.cast(pl.String)


def factorize(series: pl.Series) -> tuple[np.ndarray, list[Any]]:
    """Integer codes (``-1`` for missing) and the sorted levels of a column.

    Enum columns keep their declared order, including levels nobody chose.

    >>> codes, levels = factorize(pl.Series(["b", "a", None, "b"]))
    >>> codes.tolist(), levels
    ([1, 0, -1, 1], ['a', 'b'])
    """
    if isinstance(series.dtype, pl.Enum):
        levels = series.dtype.categories.to_list()
        codes = series.to_physical().cast(pl.Int64).fill_null(-1).to_numpy()
        return codes.astype(np.int64, copy=False), levels
    if series.dtype == pl.Categorical:
        series = series.cast(pl.String)
    if series.dtype.is_float():
        series = series.fill_nan(None)
    levels = series.drop_nulls().unique().sort().to_list()
    if series.dtype == pl.String:
        # a cast to an Enum of the sorted levels is a hash lookup, much faster than a rank
        codes = series.cast(pl.Enum(levels)).to_physical().cast(pl.Int64)
    else:
        codes = series.rank("dense").cast(pl.Int64) - 1
    return codes.fill_null(-1).to_numpy().astype(np.int64, copy=False), levels


def interaction(*codes: np.ndarray) -> np.ndarray:
    """Dense codes of the combinations of several code arrays, ordered by the first.

    >>> interaction(np.array([1, 0, 1]), np.array([0, 5, 0])).tolist()
    [1, 0, 1]
    """
    n = len(codes[0])
    combined = np.zeros(n, dtype=np.int64)
    missing = np.zeros(n, dtype=bool)
    for c in codes:
        c = np.asarray(c, dtype=np.int64)
        missing |= c < 0
        c = np.where(c < 0, 0, c)
        size = int(c.max(initial=0)) + 1
        combined = _dense(combined * size + c, int(combined.max(initial=0) + 1) * size)
    return np.where(missing, -1, combined).astype(np.int64)


def _dense(keys: np.ndarray, size: int) -> np.ndarray:
    """Renumber non-negative keys ``0..k-1`` in their order (bincount when it fits)."""
    if size <= 1 << 24:
        present = np.bincount(keys, minlength=size) > 0
        remap = np.cumsum(present) - 1
        return remap[keys]
    return np.unique(keys, return_inverse=True)[1].astype(np.int64)


def describe_spec(spec: Any) -> str:
    """A short name for a column, an expression or a mask, for titles and messages.

    >>> describe_spec("both"), describe_spec(pl.col("x") > 1)
    ('both', '[(col("x")) > (dyn int: 1)]')
    """
    if isinstance(spec, str):
        return spec
    if isinstance(spec, pl.Expr):
        text = str(spec)
        return text if len(text) <= 60 else text[:57] + "..."
    name = getattr(spec, "name", None)
    return str(name) if name else "a mask"


@dataclass(frozen=True, eq=False)
class Column:
    """A variable as estimation sees it: numeric values or categorical codes."""

    name: str
    kind: str  # "numeric", "categorical" or "boolean"
    values: np.ndarray | None  # float64 for numeric/boolean (NaN = missing)
    codes: np.ndarray | None  # int64 for categorical/boolean (-1 = missing)
    levels: tuple[Any, ...] = ()

    @property
    def missing(self) -> np.ndarray:
        if self.values is not None:
            return np.isnan(self.values)
        return self.codes < 0


def column_from_series(series: pl.Series, name: str) -> Column:
    dtype = series.dtype
    if dtype == pl.Boolean:
        codes = series.cast(pl.Int64).fill_null(-1).to_numpy().astype(np.int64, copy=False)
        values = np.where(codes < 0, np.nan, codes).astype(float)
        return Column(name, "boolean", values, codes, (False, True))
    if dtype.is_numeric() or dtype == pl.Null:
        values = series.cast(pl.Float64).fill_null(np.nan).to_numpy().astype(float, copy=False)
        return Column(name, "numeric", values, None)
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        codes, levels = factorize(series)
        return Column(name, "categorical", None, codes, tuple(levels))
    raise DesignError(
        f"column {name}: type {dtype} cannot be estimated; expected numbers, "
        "true/false or categories"
    )


# ---------------------------------------------------------------------------------------
# domains


@dataclass(frozen=True, eq=False)
class Domains:
    """The domains of one estimation call: a code per row (``-1`` outside all of them)."""

    codes: np.ndarray
    labels: tuple[str | None, ...]
    by: tuple[str, ...] = ()
    values: tuple[tuple[str, ...], ...] = ((),)
    where: str | None = None

    @property
    def n(self) -> int:
        return len(self.labels)


# ---------------------------------------------------------------------------------------
# the design


@dataclass(frozen=True, eq=False, repr=False)
class ReplicateWeights:
    """Replicate weights of a design, already multiplied by the sampling weights.

    They are held as :class:`~volna.variance.ReplicateWeightColumns`: views of the data
    frame's own columns for a design read from a frame (no second copy), or the matrix
    that replicate construction or weighting made.
    """

    columns: ReplicateWeightColumns  # (n, R)
    scale: float
    rscales: np.ndarray  # (R,)
    mse: bool
    type: str
    rho: float | None = None
    #: the rows grouped by identical replicate factors (R's compressed weights), if any
    groups: ReplicateGroups | None = None

    @property
    def n_replicates(self) -> int:
        return self.columns.n_replicates

    @property
    def weights(self) -> np.ndarray:
        """All replicate weights as one ``(n, R)`` array.

        The matrix itself when they are held as one; otherwise a new Fortran-ordered
        array each time (the frame's columns copied): estimation never needs it.
        """
        cols = self.columns
        if cols.matrix is not None and cols.multiplier is None:
            return cols.matrix
        return cols.to_array()


@dataclass(frozen=True, eq=False, repr=False)
class SurveyDesign:
    """A complex survey sample: responses, weights and how they were drawn.

    Build it with :meth:`from_frame` (strata, clusters, fpc) or :meth:`replicate`
    (replicate weights). Every method returns new objects; the design never changes.
    """

    data: pl.DataFrame
    weights: np.ndarray
    stages: tuple[Stage, ...] = ()
    lonely_psu: str = "fail"
    replicates: ReplicateWeights | None = None
    restriction: np.ndarray | None = None
    spec: Mapping[str, Any] = field(default_factory=dict)
    degf_override: float | None = None
    #: calibration records (rake, post-stratify, calibrate) for weighting-aware variance
    calibrations: tuple[Calibration, ...] = ()
    #: what weighting did to this design, step by step
    weighting: tuple[WeightingStep, ...] = ()
    _cache: dict = field(default_factory=dict)

    # ---- construction ------------------------------------------------------------------

    @classmethod
    def from_frame(
        cls,
        frame: Frame,
        *,
        ids: str | Sequence[str] | None = None,
        strata: str | Sequence[str | None] | None = None,
        weights: str | None = None,
        fpc: str | float | Sequence[str | float] | None = None,
        nest: bool = False,
        lonely_psu: str = "fail",
        ultimate_cluster: bool = False,
    ) -> SurveyDesign:
        """A design from strata, cluster ids, weights and fpc (R's ``svydesign``).

        Parameters
        ----------
        frame:
            the responses, a pandas or polars DataFrame (one row per respondent).
        ids:
            the cluster column of each sampling stage (PSU first); none when every
            respondent was sampled directly.
        strata:
            the stratum column of the first stage, or a list with one entry per stage
            (``None`` for a stage without strata). Later stages are always stratified by
            the cluster of the stage before.
        weights:
            the sampling weight column. Without it the weights are the inverse sampling
            fractions implied by ``fpc``, or 1.
        fpc:
            per stage, a column or a constant: population sizes (numbers above 1) or
            sampling fractions (all at most 1). Without it, sampling is treated as with
            replacement and only the first stage counts (ultimate cluster).
        nest:
            PSU ids repeat across strata (only unique within a stratum).
        lonely_psu:
            what to do with a stratum that has a single PSU, as R's
            ``options(survey.lonely.psu=)``: ``"fail"`` (an error naming the stratum),
            ``"remove"`` (no contribution), ``"certainty"`` (a certainty PSU, no
            contribution), ``"adjust"`` (centre it at the grand mean), ``"average"``
            (the average variance of the other strata).
        ultimate_cluster:
            use the first stage only even when every stage has an fpc.

        >>> import polars as pl
        >>> frame = pl.DataFrame({"y": [1.0, 2.0, 3.0, 4.0], "N": [40, 40, 40, 40]})
        >>> d = SurveyDesign.from_frame(frame, fpc="N")
        >>> d.weights.tolist()
        [10.0, 10.0, 10.0, 10.0]
        """
        data = to_polars(frame)
        n = data.height
        if n == 0:
            raise DesignError("the response table has no rows; a design needs respondents")
        if lonely_psu not in LONELY_PSU_RULES:
            raise DesignError(
                f"lonely_psu={lonely_psu!r} is not a rule; expected one of "
                + ", ".join(LONELY_PSU_RULES)
            )
        id_cols = _as_names(ids)
        if id_cols == ["1"]:
            id_cols = []
        strata_cols: list[str | None]
        strata_cols = [strata] if strata is None or isinstance(strata, str) else list(strata)
        fpc_list: list[str | float]
        if fpc is None:
            fpc_list = []
        elif isinstance(fpc, (str, int, float)):
            fpc_list = [fpc]
        else:
            fpc_list = list(fpc)
        n_stages = max(1, len(id_cols))
        if len(fpc_list) > n_stages:
            raise DesignError(
                f"fpc has {len(fpc_list)} entries but the design has {n_stages} stage(s); "
                "give one fpc per cluster column"
            )
        if len(strata_cols) > n_stages:
            raise DesignError(
                f"strata has {len(strata_cols)} entries but the design has {n_stages} "
                "stage(s); give one strata column per cluster column"
            )
        for col in [*id_cols, *[s for s in strata_cols if s], weights]:
            if col is not None and col not in data.columns:
                raise DesignError(_unknown_column(col, data))

        w = None
        if weights is not None:
            w = _weight_column(data, weights)

        stages = _build_stages(data, id_cols, strata_cols, fpc_list, nest)
        has_fpc = bool(fpc_list)
        if w is None:
            if has_fpc:
                w = np.ones(n)
                for st in stages:
                    w = w * (st.pop_units / st.n_units)[st.unit_stratum[st.unit]]
                if not np.all(np.isfinite(w)):
                    raise DesignError(
                        "no weights column, and the fpc does not give every stage a "
                        "population size to derive them from",
                        remedy=Remedy("weights", "<the weights column>"),
                    )
            else:
                w = np.ones(n)
        used = stages if (has_fpc and not ultimate_cluster) else stages[:1]
        used = _with_multipliers(used)
        if lonely_psu == "fail":
            for s, st in enumerate(used):
                lonely = np.flatnonzero(st.lonely())
                if len(lonely):
                    where_ = f" at stage {s + 1}" if s else ""
                    name = st.labels[lonely[0]]
                    more = f" (and {len(lonely) - 1} more)" if len(lonely) > 1 else ""
                    raise DesignError(
                        f"stratum {name}{where_} has only one PSU{more}, so its variance "
                        "cannot be estimated",
                        remedy=Remedy(
                            "lonely_psu",
                            choices=("remove", "certainty", "adjust", "average"),
                            lead="choose a rule:",
                        ),
                    )
        spec = {
            "ids": id_cols,
            "strata": [s for s in strata_cols if s],
            "weights": weights,
            "fpc": fpc_list,
            "nest": nest,
        }
        return cls(data=data, weights=w, stages=used, lonely_psu=lonely_psu, spec=spec)

    @classmethod
    def replicate(
        cls,
        frame: Frame,
        *,
        weights: str | None,
        replicate_weights: str | Sequence[str],
        type: str,
        scale: float | None = None,
        rscales: Sequence[float] | np.ndarray | None = None,
        mse: bool | None = None,
        rho: float | None = None,
        combined_weights: bool = True,
        degf: float | None = None,
    ) -> SurveyDesign:
        """A design from replicate weight columns (R's ``svrepdesign``).

        Parameters
        ----------
        weights:
            the full-sample weight column.
        replicate_weights:
            the replicate columns, as a list, or one string: a prefix (``"repwt"``
            matches ``repwt1``, ``repwt2``...) or a regular expression.
        type:
            ``"JK1"`` (scale (R-1)/R), ``"JKn"`` (give ``rscales``), ``"BRR"`` (1/R),
            ``"Fay"`` (1/(R(1-rho)^2), give ``rho``), ``"bootstrap"`` (1/(R-1)),
            ``"SDR"`` / ``"ACS"`` / ``"successive-difference"`` (4/R, mse by default) or
            ``"other"`` (give ``scale``).
        scale, rscales:
            the overall and per-replicate variance factors, overriding the type's.
        mse:
            centre the replicates on the full-sample estimate instead of their mean.
        combined_weights:
            the replicate columns already include the sampling weight (true of most
            published files: ACS, ESS, ...). Set False when they are adjustment factors.
        degf:
            the design degrees of freedom; computed from the rank of the replicate
            weights when not given.

        >>> import polars as pl
        >>> frame = pl.DataFrame({"y": [1.0, 2.0, 3.0], "w": [1.0, 1.0, 1.0],
        ...                       "r1": [0.0, 1.5, 1.5], "r2": [1.5, 0.0, 1.5],
        ...                       "r3": [1.5, 1.5, 0.0]})
        >>> d = SurveyDesign.replicate(frame, weights="w", replicate_weights="r", type="JK1")
        >>> d.mean("y").to_polars()["se"].round(6).to_list()
        [0.57735]
        """
        data = to_polars(frame)
        n = data.height
        cols = _replicate_columns(data, replicate_weights)
        kind = _replicate_type(type)
        w = np.ones(n) if weights is None else _weight_column(data, weights)
        pieces = []
        for c in cols:
            series = data.get_column(c)
            if not series.dtype.is_numeric():
                raise DesignError(
                    f"column {c}: replicate weights must be numbers, got {series.dtype}"
                )
            if series.null_count():
                row = int(series.is_null().arg_max())
                raise DesignError(
                    f"row {row + 1}, column {c}: replicate weight is missing; "
                    "every row needs every replicate weight"
                )
            pieces.append(_float_pieces(series))
        # the frame's own buffers: a factor column (combined_weights=False) is multiplied
        # by the sampling weight where it is read, never stored as a product
        reps = ReplicateWeightColumns(pieces, None if combined_weights else w)
        bad = reps.first_nonfinite()
        if bad is not None:
            row, j = bad
            raise DesignError(
                f"row {row + 1}, column {cols[j]}: replicate weight is missing; "
                "every row needs every replicate weight"
            )
        set_ = _replicate_factors(kind, reps, scale, rscales, mse, rho)
        spec = {"weights": weights, "replicate_weights": cols, "type": kind}
        return cls(data=data, weights=w, replicates=set_, spec=spec, degf_override=degf)

    # ---- derived designs ---------------------------------------------------------------

    def subset(self, where: ColumnSpec) -> SurveyDesign:
        """The design restricted to a subpopulation, keeping its full structure.

        Rows outside the subset stay in the design with no influence, so standard errors
        are those of a domain (R's ``subset`` of a survey design), never those of a
        smaller sample.

        >>> import polars as pl
        >>> frame = pl.DataFrame({"y": [1.0, 2.0, 3.0, 4.0], "w": [1.0, 2.0, 1.0, 2.0]})
        >>> d = SurveyDesign.from_frame(frame, weights="w").subset(pl.col("y") > 1)
        >>> d.n_rows, round(d.mean("y").value(), 4)
        (3, 3.0)
        """
        mask = self._mask(where, "subset")
        if self.restriction is not None:
            mask = mask & self.restriction
        label_ = describe_spec(where)
        spec = dict(self.spec)
        spec["subset"] = [*spec.get("subset", []), label_]
        return replace(self, restriction=mask, spec=spec, _cache={})

    def with_replicates(
        self,
        type: str = "auto",
        *,
        replicates: int | None = None,
        seed: int | None = None,
        rho: float | None = None,
        mse: bool | None = None,
    ) -> SurveyDesign:
        """Turn this design's strata, PSUs and fpc into replicate weights.

        ``type``: ``"JK1"`` (unstratified designs), ``"JKn"``, ``"BRR"``, ``"Fay"``
        (with ``rho``), ``"bootstrap"`` (with ``replicates`` and a ``seed``) or ``"SDR"``;
        ``"auto"`` is JK1 without strata and JKn with them, as R's ``as.svrepdesign``.
        The weights follow R's conventions (see :mod:`volna.replicates`): JK1 folds the
        first-stage fpc into the scale, JKn into the per-replicate factors, BRR drops it.
        ``mse`` centres the replicates on the full-sample estimate (type's default when
        not given).

        >>> import polars as pl
        >>> frame = pl.DataFrame({"psu": [1, 1, 2, 3], "y": [1.0, 3.0, 2.0, 6.0]})
        >>> d = SurveyDesign.from_frame(frame, ids="psu").with_replicates("JK1")
        >>> d.replicates.n_replicates, round(d.mean("y").value("se"), 6)
        (3, 1.175889)
        """
        if self.calibrations:
            raise DesignError(
                "this design is already weighted ("
                + ", ".join(self.spec.get("weighting", []))
                + "); make the replicate weights first, then weight the replicate design, so "
                "that every replicate is weighted the same way"
            )
        if self.replicates is not None:
            raise DesignError("this design already has replicate weights")
        try:
            from volna.replicates import make_replicates
        except ImportError as exc:  # another module not written yet
            raise DesignError(
                "replicate weights cannot be made here: volna.replicates is not available"
            ) from exc
        stage = self.stages[0]
        has_strata = bool(self.spec.get("strata"))
        kind = type
        if type == "auto":
            kind = "JKn" if has_strata else "JK1"
        fpc_fraction = None
        if self.spec.get("fpc"):
            fpc_fraction = stage.sampling_fraction[stage.unit_stratum[stage.unit]]
        # the stratum names, not codes: BRR orders strata by their labels as text, as R
        strata_labels = (
            np.asarray(stage.labels, dtype=object)[stage.unit_stratum[stage.unit]]
            if has_strata
            else None
        )
        result = make_replicates(
            strata_labels,
            stage.unit.copy(),
            fpc_fraction,
            self.weights.copy(),
            type=kind,
            seed=seed,
            replicates=replicates,
            rho=rho,
            lonely_psu=self.lonely_psu,
        )
        rep_weights = np.asarray(result.weights, dtype=float)
        set_ = ReplicateWeights(
            columns=ReplicateWeightColumns.from_matrix(rep_weights),
            scale=float(result.scale),
            rscales=np.asarray(result.rscales, dtype=float),
            mse=bool(result.mse if mse is None else mse),
            type=str(result.type),
            rho=rho,
            groups=find_replicate_groups(self.weights, rep_weights, candidate=stage.unit),
        )
        spec = dict(self.spec)
        spec["type"] = set_.type
        spec["from"] = "linearization design"
        return replace(self, stages=(), replicates=set_, spec=spec, _cache={})

    # ---- weighting (see volna.weighting) ------------------------------------------------

    def rake(self, margins, **kwargs) -> SurveyDesign:
        """Rake the weights to known margins; see :func:`volna.weighting.rake`."""
        from volna.weighting import rake

        return rake(self, margins, **kwargs)

    def poststratify(self, cells, **kwargs) -> SurveyDesign:
        """Post-stratify to known cell counts; see :func:`volna.weighting.poststratify`."""
        from volna.weighting import poststratify

        return poststratify(self, cells, **kwargs)

    def calibrate(self, auxiliaries, totals, **kwargs) -> SurveyDesign:
        """Calibrate to known totals; see :func:`volna.weighting.calibrate`."""
        from volna.weighting import calibrate

        return calibrate(self, auxiliaries, totals, **kwargs)

    def trim(self, upper=None, lower=None, **kwargs) -> SurveyDesign:
        """Cap extreme weights and keep the calibration; see :func:`volna.weighting.trim`."""
        from volna.weighting import trim

        return trim(self, upper, lower, **kwargs)

    def reweighted(
        self,
        weights: np.ndarray,
        step: WeightingStep,
        calibration: Calibration | None = None,
        replicate_weights: np.ndarray | None = None,
        *,
        replace_last: bool = False,
    ) -> SurveyDesign:
        """A design with new weights, recording the weighting step that made them.

        ``calibration`` (when the new weights reproduce known totals) makes
        linearization variances use the calibration residuals; ``replicate_weights``
        replaces the replicate weights (recalibrated one by one). Weighting methods call
        this; analysts rarely need it.
        """
        if self.restriction is not None:
            raise DesignError(
                "this design is a subset ("
                + " & ".join(map(str, self.spec.get("subset", [])))
                + "); weight the full sample, then take the subset, so that the subset's "
                "standard errors remain those of a domain"
            )
        w = np.asarray(weights, dtype=float)
        if w.shape != self.weights.shape or not np.all(np.isfinite(w)):
            raise DesignError("new weights must be finite, one per row of the design")
        calibrations = self.calibrations
        if replace_last and calibrations:
            calibrations = calibrations[:-1]
        if calibration is not None:
            calibrations = (*calibrations, calibration)
        rep = self.replicates
        if rep is not None and replicate_weights is not None:
            # new replicate weights are new data: held as the matrix they came in
            new = as_replicate_columns(
                replicate_weights
                if isinstance(replicate_weights, ReplicateWeightColumns)
                else np.asarray(replicate_weights, dtype=float)
            )
            rep = replace(rep, columns=new, groups=find_replicate_groups(w, new))
        elif rep is not None:
            # the same replicate weights over new sampling weights: their factors changed
            rep = replace(rep, groups=None)
        spec = dict(self.spec)
        spec["weighting"] = [*spec.get("weighting", []), step.method]
        return replace(
            self,
            weights=w,
            replicates=rep,
            calibrations=calibrations if rep is None else (),
            weighting=(*self.weighting, step),
            spec=spec,
            _cache={},
        )

    # ---- properties --------------------------------------------------------------------

    @property
    def n_rows(self) -> int:
        """Rows in the (sub)population the design describes."""
        if self.restriction is None:
            return self.data.height
        return int(self.restriction.sum())

    @property
    def is_replicate(self) -> bool:
        return self.replicates is not None

    @property
    def degf(self) -> float:
        """Design degrees of freedom, as R's ``degf``.

        Linearization: PSUs with a non-zero weight minus strata. Replicate weights: the
        rank of the replicate weight matrix minus one (or the ``degf`` given).
        """
        if self.degf_override is not None:
            return float(self.degf_override)
        if "degf" not in self._cache:
            base = np.zeros(self.data.height, dtype=np.int64)
            if self.restriction is not None:
                base = np.where(self.restriction, 0, -1)
            block = RatioBlock(base=base, n_bases=1)
            self._cache["degf"] = float(self.evaluate([block])[0].degf()[0])
        return self._cache["degf"]

    def _positive(self) -> np.ndarray:
        if "positive" not in self._cache:
            self._cache["positive"] = (self.weights > 0).astype(float)
        return self._cache["positive"]

    def _top_units(self) -> np.ndarray:
        """The first-stage unit of every unit of the last stage."""
        if "top" not in self._cache:
            top = np.arange(self.stages[-1].n_unit_total)
            for st in self.stages[:0:-1]:
                top = st.unit_parent[top]
            self._cache["top"] = top
        return self._cache["top"]

    def _replicate_groups(self) -> ReplicateGroups | None:
        rep = self.replicates
        if rep.groups is not None:
            return rep.groups
        if "groups" not in self._cache:
            self._cache["groups"] = find_replicate_groups(self.weights, rep.columns)
        return self._cache["groups"]

    # ---- columns and domains -----------------------------------------------------------

    def column(self, spec: ColumnSpec) -> Column:
        """The values of a variable: a column name, a Series, an array or an expression."""
        if isinstance(spec, str):
            key = ("column", spec)
            if key not in self._cache:
                if spec not in self.data.columns:
                    raise DesignError(_unknown_column(spec, self.data))
                self._cache[key] = column_from_series(self.data.get_column(spec), spec)
            return self._cache[key]
        series = self._series(spec, "variable")
        return column_from_series(series, series.name or "x")

    def _series(self, spec: ColumnSpec, what: str) -> pl.Series:
        n = self.data.height
        if isinstance(spec, pl.Expr):
            series = self.data.select(spec).to_series()
            if len(series) == 1 and n != 1:
                # a literal (pl.lit(True)) applies to every row
                series = pl.Series(series.name, [series[0]] * n, dtype=series.dtype)
        elif isinstance(spec, pl.Series):
            series = spec
        elif isinstance(spec, np.ndarray):
            series = pl.Series("x", spec)
        else:
            try:
                import pandas as pd

                if isinstance(spec, pd.Series):
                    series = to_polars(pd.DataFrame({str(spec.name or "x"): spec})).to_series()
                else:
                    raise TypeError
            except TypeError:
                raise DesignError(
                    f"{what} {spec!r}: expected a column name, a Series, an array or a "
                    "polars expression"
                ) from None
        if len(series) != n:
            raise DesignError(
                f"{what} {series.name!r} has {len(series)} values but the design has {n} rows"
            )
        return series

    def _mask(self, spec: ColumnSpec, what: str) -> np.ndarray:
        if isinstance(spec, str):
            if spec not in self.data.columns:
                raise DesignError(_unknown_column(spec, self.data))
            series = self.data.get_column(spec)
        else:
            series = self._series(spec, what)
        if series.dtype != pl.Boolean:
            if series.dtype.is_numeric():
                series = series.cast(pl.Float64).fill_nan(None) != 0
            else:
                raise DesignError(
                    f"{what} {series.name!r}: expected true/false values, got {series.dtype}"
                )
        return series.fill_null(False).to_numpy().astype(bool)

    def domains(self, by: ColumnSpec | Sequence[ColumnSpec] | None, where: ColumnSpec | None):
        """Domain codes for ``by`` (crossed) within ``where`` and the design's subset.

        Domains are the combinations of ``by`` observed in the design's rows; a domain
        emptied by ``where`` stays in the results, flagged ``empty_domain``. Domains of
        column names are kept (the design never changes), their codes read-only.
        """
        names = [by] if isinstance(by, str) else by
        named = by is None or (
            isinstance(names, (list, tuple)) and all(isinstance(b, str) for b in names)
        )
        if not (named and (where is None or isinstance(where, str))):
            return self._domains(by, where)
        key = ("domains", None if by is None else tuple(names), where)
        if key not in self._cache:
            found = self._domains(by, where)
            found.codes.flags.writeable = False
            self._cache[key] = found
        return self._cache[key]

    def _domains(self, by, where) -> Domains:
        n = self.data.height
        inside = np.ones(n, dtype=bool) if self.restriction is None else self.restriction.copy()
        where_label = None
        if where is not None:
            where_mask = self._mask(where, "where")
            where_label = describe_spec(where)
        else:
            where_mask = None
        if by is None:
            rows = inside if where_mask is None else inside & where_mask
            return Domains(np.where(rows, 0, -1).astype(np.int64), (None,), where=where_label)
        specs = [by] if isinstance(by, (str, pl.Expr, pl.Series, np.ndarray)) else list(by)
        if not specs:
            return self._domains(None, where)
        names, codes, levels = [], [], []
        for spec in specs:
            col = self.column(spec)
            c = col.codes if col.codes is not None else factorize(pl.Series(col.values))[0]
            lv = col.levels if col.codes is not None else factorize(pl.Series(col.values))[1]
            names.append(col.name)
            codes.append(c)
            levels.append([label(v) for v in lv])
        combined = interaction(*codes) if len(codes) > 1 else codes[0]
        size = int(combined.max(initial=-1)) + 1
        ok = inside & (combined >= 0)
        rows_ok = np.flatnonzero(ok)
        first = np.full(size, -1, dtype=np.int64)
        first[combined[rows_ok[::-1]]] = rows_ok[::-1]
        observed = np.flatnonzero(first >= 0)
        remap = np.full(size + 1, -1, dtype=np.int64)
        remap[observed] = np.arange(len(observed))
        dom = remap[np.where(ok, combined, size)]
        if where_mask is not None:
            dom = np.where(where_mask, dom, -1)
        labels, values = [], []
        for k in observed:
            row = int(first[k])
            vals = tuple(levels[j][codes[j][row]] for j in range(len(codes)))
            values.append(vals)
            labels.append(", ".join(f"{nm}={v}" for nm, v in zip(names, vals, strict=True)))
        return Domains(dom, tuple(labels), tuple(names), tuple(values), where_label)

    # ---- the one variance path ---------------------------------------------------------

    def evaluate(
        self, blocks: Sequence[RatioBlock], *, covariance: bool = False
    ) -> list[BlockResult]:
        """Point estimates, variances and degrees of freedom of ratio blocks.

        This is the only place where a variance is computed: linearization designs sum
        influence totals by PSU within strata, replicate designs recompute every total
        under every replicate with one matrix product.
        """
        w, pos = self.weights, self._positive()
        rep = self.replicates
        groups = None
        if rep is None:
            last = self.stages[-1]
            cells = [
                cell_sums(b, w, pos, last.unit, last.n_unit_total, rows_are_groups=last.elements)
                for b in blocks
            ]
        else:
            groups = self._replicate_groups()
            if groups is not None:
                cells = [cell_sums(b, w, pos, groups.group, groups.n_groups) for b in blocks]
            else:
                cells = [cell_sums(b, w, pos, None, 1) for b in blocks]
        totals = [block_totals(b, w, pos, c) for b, c in zip(blocks, cells, strict=True)]
        thetas = [
            block_estimates(b, t.numerator, t.denominator)
            for b, t in zip(blocks, totals, strict=True)
        ]
        results = []
        cov = None
        if rep is not None:
            rep_thetas = replicate_estimates(blocks, cells, rep.columns, groups)
            # the blocks of one call mostly share one array of domain codes: digest it once
            digests: dict[int, tuple[np.ndarray, tuple]] = {}
            for block, c, tot, theta, th_r in zip(
                blocks, cells, totals, thetas, rep_thetas, strict=True
            ):
                th_r = th_r.reshape(block.n_estimates, -1)
                var, dropped = replicate_variance(
                    th_r, theta.ravel(), rep.scale, rep.rscales, rep.mse
                )
                result = BlockResult(
                    theta, var.reshape(theta.shape), dropped.reshape(theta.shape), None, tot
                )
                result._degf = self._replicate_degf_fn(block, c, groups, digests)
                results.append(result)
            if covariance and blocks:
                cov = replicate_covariance(
                    np.vstack(
                        [
                            t.reshape(b.n_estimates, -1)
                            for b, t in zip(blocks, rep_thetas, strict=True)
                        ]
                    ),
                    np.concatenate([t.ravel() for t in thetas]),
                    rep.scale,
                    rep.rscales,
                    rep.mse,
                )
        else:
            coefs = [stratum_coefficients(s, self.lonely_psu) for s in self.stages]
            model = self._calibration_model()
            residual_coefs: list[np.ndarray] = []
            top = self._top_units()
            stage1 = self.stages[0]
            lonely = stage1.lonely()
            for block, c, theta, tot in zip(blocks, cells, thetas, totals, strict=True):
                present = c.positive > 0
                # cells that are rows of a one-stage element design are distinct units
                distinct = len(self.stages) == 1 and c.local is not None
                pres = presence(
                    top[c.group[present]],
                    c.base[present],
                    block.n_bases,
                    stage1,
                    lonely,
                    distinct=distinct,
                )
                factor = pres.average_factor if coefs[0].averaged else None
                if model is None:
                    var = block_linearization_variance(
                        block, c, theta, tot, self.stages, coefs, factor
                    )
                else:
                    a = calibration_coefficients(model, block, w, theta, tot.denominator)
                    residual_coefs.append(a)
                    var = calibrated_block_variance(
                        block, c, theta, tot, self.stages, coefs, factor, model, a
                    )
                result = BlockResult(theta, var, np.zeros(theta.shape, int), pres, tot)
                result._degf = self._linear_degf_fn(pres, block.n_bases)
                results.append(result)
            if covariance and blocks:
                k = sum(b.n_estimates for b in blocks)
                if k * self.stages[-1].n_unit_total > 1 << 26:
                    raise DesignError(
                        f"vcov=True for {k} estimates over {self.stages[-1].n_unit_total} "
                        "sampling units needs too much memory; ask for fewer estimates"
                    )
                cov = linearization_covariance(
                    blocks, cells, thetas, totals, self.stages, coefs, model, residual_coefs
                )
        if cov is not None:
            for r in results:
                r.covariance = cov
        return results

    def _calibration_model(self) -> CalibrationModel | None:
        """The calibration steps, prepared once, for weighting-aware linearization."""
        if not self.calibrations:
            return None
        if "calibration" not in self._cache:
            last = self.stages[-1]
            self._cache["calibration"] = calibration_model(
                self.calibrations, last.unit, last.n_unit_total
            )
        return self._cache["calibration"]

    def _linear_degf_fn(self, pres: Presence, n_bases: int):
        if self.degf_override is not None:
            return lambda: np.full(n_bases, float(self.degf_override))
        return lambda: pres.degf.astype(float)

    def _replicate_degf_fn(self, block: RatioBlock, cells: CellSums, groups, digests=None):
        """Degrees of freedom per base, computed only when an interval needs them.

        ``digests`` maps ``id(base)`` to (base, its fingerprint) for the blocks of one
        call; the array is kept with its digest, so its id cannot be reused meanwhile.
        """
        digests = {} if digests is None else digests
        if self.degf_override is not None:
            return lambda: np.full(block.n_bases, float(self.degf_override))
        rep = self.replicates

        def degf() -> np.ndarray:
            if groups is None:
                held = digests.get(id(block.base))
                if held is None or held[0] is not block.base:
                    held = (block.base, _base_fingerprint(block.base, block.n_bases))
                    digests[id(block.base)] = held
                key = ("rank", held[1], block.n_bases)
                if key not in self._cache:
                    self._cache[key] = replicate_rank(rep.columns, block.base, block.n_bases)
                return self._cache[key].astype(float) - 1
            ranks = np.zeros(block.n_bases)
            present = cells.positive > 0
            for b in range(block.n_bases):
                g = np.unique(cells.group[present & (cells.base == b)])
                key = ("group rank", g.tobytes())
                if key not in self._cache:
                    self._cache[key] = _rank(groups.factors[g])
                ranks[b] = self._cache[key]
            return ranks - 1

        return degf

    # ---- estimators (see volna.estimate) ----------------------------------------------

    def mean(self, variables, **kwargs) -> Estimates:
        """Means of numeric variables (proportions of each level for categorical ones).

        See :func:`volna.estimate.mean` for the parameters.
        """
        from volna import estimate

        return estimate.mean(self, variables, **kwargs)

    def total(self, variables, **kwargs) -> Estimates:
        """Population totals (weighted counts of each level for categorical variables).

        See :func:`volna.estimate.total`.
        """
        from volna import estimate

        return estimate.total(self, variables, **kwargs)

    def proportion(self, variables, **kwargs) -> Estimates:
        """Proportions of each level, with intervals that stay inside [0, 1].

        See :func:`volna.estimate.proportion`.
        """
        from volna import estimate

        return estimate.proportion(self, variables, **kwargs)

    def ratio(self, numerator, denominator, **kwargs) -> Estimates:
        """Ratios of two population totals. See :func:`volna.estimate.ratio`."""
        from volna import estimate

        return estimate.ratio(self, numerator, denominator, **kwargs)

    def quantile(self, variables, probs=(0.5,), **kwargs) -> Estimates:
        """Quantiles with Woodruff intervals. See :func:`volna.estimate.quantile`."""
        from volna import estimate

        return estimate.quantile(self, variables, probs, **kwargs)

    def median(self, variables, **kwargs) -> Estimates:
        """Medians with Woodruff intervals. See :func:`volna.estimate.quantile`."""
        from volna import estimate

        return estimate.quantile(self, variables, (0.5,), **kwargs)

    def glm(self, formula, family="gaussian", **kwargs):
        """A regression model with design-based standard errors (R's ``svyglm``).

        See :func:`volna.models.glm`.
        """
        from volna import models

        return models.glm(self, formula, family, **kwargs)

    def olr(self, formula, **kwargs):
        """A proportional-odds model for ordered answers (R's ``svyolr``).

        See :func:`volna.models.olr`.
        """
        from volna import models

        return models.olr(self, formula, **kwargs)

    # ---- display -----------------------------------------------------------------------

    def describe(self) -> str:
        spec = self.spec
        lines = []
        if self.replicates is not None:
            rep = self.replicates
            lines.append(f"SurveyDesign: replicate weights ({rep.type}), {self.data.height} rows")
            wname = spec.get("weights") or "1"
            lines.append(f"  weights  {wname} (sum {_num(self.weights.sum())})")
            lines.append(
                f"  {rep.n_replicates} replicates, scale {_num(rep.scale)}, "
                f"mse {'yes' if rep.mse else 'no'}"
            )
        else:
            stage = self.stages[0]
            strat = bool(spec.get("strata"))
            ids = spec.get("ids") or []
            if ids:
                kind = "cluster sample" if len(ids) == 1 else f"{len(ids)}-stage cluster sample"
            else:
                kind = "sample of individuals"
            kind = f"stratified {kind}" if strat else kind
            lines.append(f"SurveyDesign: {kind}, {self.data.height} rows")
            wname = spec.get("weights") or ("from fpc" if spec.get("fpc") else "1")
            lines.append(f"  weights  {wname} (sum {_num(self.weights.sum())})")
            if strat:
                lines.append(f"  strata   {', '.join(spec['strata'])} ({stage.n_strata})")
            if ids:
                lines.append(f"  PSUs     {ids[0]} ({stage.n_unit_total})")
                if len(ids) > 1:
                    lines.append(f"  later    {', '.join(ids[1:])}")
            if spec.get("fpc"):
                lines.append(f"  fpc      {', '.join(str(f) for f in spec['fpc'])}")
        if spec.get("subset"):
            lines.append(
                f"  subset   {' & '.join(str(s) for s in spec['subset'])} ({self.n_rows} rows)"
            )
        df = self.degf
        tail = f"  degrees of freedom {_num(df)}"
        if self.replicates is None:
            tail += f'; lonely PSU rule "{self.lonely_psu}"'
        lines.append(tail)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.describe()


@dataclass(eq=False)
class BlockResult:
    """What :meth:`SurveyDesign.evaluate` returns for each block."""

    estimate: np.ndarray  # (B, per)
    variance: np.ndarray  # (B, per)
    dropped_replicates: np.ndarray  # (B, per)
    presence: Presence | None
    totals: BlockTotals
    covariance: np.ndarray | None = None
    _degf: Any = None

    def degf(self) -> np.ndarray:
        """(B,) design degrees of freedom of each base (domain)."""
        return self._degf()


def _rank(matrix: np.ndarray) -> int:
    """Numerical rank of a tall matrix through its small Gram matrix (R uses a QR)."""
    if matrix.size == 0:
        return 0
    gram = matrix.T @ matrix
    eig = np.linalg.eigvalsh(gram)
    top = eig.max()
    return int((eig > top * 1e-12).sum()) if top > 0 else 0


# ---------------------------------------------------------------------------------------
# construction helpers


def _num(x: float) -> str:
    return f"{x:.6g}"


def _as_names(spec: str | Sequence[str] | None) -> list[str]:
    if spec is None:
        return []
    if isinstance(spec, str):
        return [spec]
    return [s for s in spec]


def _unknown_column(name: str, data: pl.DataFrame) -> str:
    close = [c for c in data.columns if c.lower() == str(name).lower()]
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"column {name}: not in the response table{hint}"


def _weight_column(data: pl.DataFrame, name: str) -> np.ndarray:
    s = data.get_column(name)
    if not (s.dtype.is_numeric()):
        raise DesignError(f"column {name}: weights must be numbers, got {s.dtype}")
    w = s.cast(pl.Float64).fill_null(np.nan).to_numpy().astype(float)
    bad = np.flatnonzero(~np.isfinite(w))
    if len(bad):
        raise DesignError(
            f"row {bad[0] + 1}, column {name}: weight is missing or infinite; "
            "every row needs a weight (0 to leave a row out)"
        )
    neg = np.flatnonzero(w < 0)
    if len(neg):
        raise DesignError(
            f"row {neg[0] + 1}, column {name}: weight {_num(w[neg[0]])} is negative; "
            "expected a weight of 0 or more"
        )
    if not np.any(w > 0):
        raise DesignError(f"column {name}: every weight is 0; expected some positive weights")
    return w


def _codes_of(data: pl.DataFrame, col: str, what: str) -> tuple[np.ndarray, list[Any]]:
    codes, levels = factorize(data.get_column(col))
    bad = np.flatnonzero(codes < 0)
    if len(bad):
        raise DesignError(
            f"row {bad[0] + 1}, column {col}: {what} is missing; every row needs a {what}"
        )
    return codes, levels


def _stage_fpc(
    data: pl.DataFrame, spec: str | float, stratum: np.ndarray, n_units: np.ndarray, s: int
) -> np.ndarray:
    """Population units per stratum from an fpc column or constant (sizes or fractions)."""
    n = data.height
    if isinstance(spec, str):
        if spec not in data.columns:
            raise DesignError(_unknown_column(spec, data))
        col = data.get_column(spec)
        if not col.dtype.is_numeric():
            raise DesignError(f"column {spec}: fpc must be numbers, got {col.dtype}")
        v = col.cast(pl.Float64).fill_null(np.nan).to_numpy().astype(float)
        name = f"column {spec}"
    else:
        v = np.full(n, float(spec))
        name = f"fpc {spec}"
    bad = np.flatnonzero(~np.isfinite(v) | (v <= 0))
    if len(bad):
        raise DesignError(
            f"row {bad[0] + 1}, {name}: fpc {_num(v[bad[0]])} is missing or not positive; "
            "expected a population size or a sampling fraction"
        )
    H = len(n_units)
    first = np.full(H, np.nan)
    first[stratum[::-1]] = v[::-1]
    varies = np.flatnonzero(v != first[stratum])
    if len(varies):
        raise DesignError(
            f"row {varies[0] + 1}, {name}: fpc {_num(v[varies[0]])} differs from "
            f"{_num(first[stratum[varies[0]]])} elsewhere in its stratum at stage {s + 1}; "
            "expected one value per stratum"
        )
    pop = n_units / first if np.all(v <= 1) else first
    over = np.flatnonzero(pop < n_units - 1e-9 * n_units)
    if len(over):
        raise DesignError(
            f"{name}: population size {_num(pop[over[0]])} is smaller than the "
            f"{int(n_units[over[0]])} units sampled in one stratum at stage {s + 1}"
        )
    return pop


def _build_stages(
    data: pl.DataFrame,
    id_cols: list[str],
    strata_cols: list[str | None],
    fpc_list: list[str | float],
    nest: bool,
) -> tuple[Stage, ...]:
    """Factorise clusters and strata of every stage once, following R's svydesign."""
    n = data.height
    n_stages = max(1, len(id_cols))
    stages: list[Stage] = []
    prev_unit: np.ndarray | None = None
    prev_labels: list[str] = []
    for s in range(n_stages):
        scol = strata_cols[s] if s < len(strata_cols) else None
        if scol is not None:
            scodes, slevels = _codes_of(data, scol, "stratum")
        else:
            scodes, slevels = np.zeros(n, dtype=np.int64), ["(all)"]
        if id_cols:
            ccodes, clevels = _codes_of(data, id_cols[s], "cluster id")
        else:
            # every row its own unit; unit labels are only read when ids were given
            ccodes, clevels = np.arange(n, dtype=np.int64), []
        if s == 0:
            if scol is not None and not nest and id_cols:
                n_strata = len(slevels)
                pair = ccodes * n_strata + scodes
                if len(clevels) * n_strata <= 1 << 24:
                    present = np.flatnonzero(np.bincount(pair, minlength=len(clevels) * n_strata))
                else:
                    present = np.unique(pair)
                counts = np.bincount(present // n_strata, minlength=len(clevels))
                split = np.flatnonzero(counts > 1)
                if len(split):
                    raise DesignError(
                        f"column {id_cols[0]}: PSU {label(clevels[split[0]])} appears in "
                        f"more than one stratum of {scol}; PSU ids must be nested in strata",
                        remedy=Remedy("nest", True, then="if ids are only unique within a stratum"),
                    )
            stratum = scodes
            stratum_labels = [label(v) if scol else "(all)" for v in slevels]
            stratum_group = np.zeros(len(slevels), dtype=np.int64)
        else:
            # later-stage strata are nested in the units of the stage before
            stratum = interaction(prev_unit, scodes)
            h = int(stratum.max()) + 1
            first_row = np.full(h, -1)
            first_row[stratum[::-1]] = np.arange(n)[::-1]
            stratum_group = prev_unit[first_row]
            stratum_labels = [
                prev_labels[prev_unit[r]] + (f"/{label(slevels[scodes[r]])}" if scol else "")
                for r in first_row
            ]
        # units within strata; codes are ordered by stratum so strata are contiguous
        unit = interaction(stratum, ccodes if s == 0 else interaction(prev_unit, ccodes))
        U = int(unit.max()) + 1
        first_row = np.full(U, -1)
        first_row[unit[::-1]] = np.arange(n)[::-1]
        unit_stratum = stratum[first_row]
        unit_parent = prev_unit[first_row] if prev_unit is not None else None
        H = int(stratum.max()) + 1
        n_units = np.bincount(unit_stratum, minlength=H).astype(float)
        if s < len(fpc_list):
            pop = _stage_fpc(data, fpc_list[s], stratum, n_units, s)
        else:
            pop = np.full(H, np.inf)
        stages.append(
            Stage(
                unit=unit,
                unit_stratum=unit_stratum,
                unit_parent=unit_parent,
                n_units=n_units,
                pop_units=pop,
                multiplier=np.ones(H),
                stratum_group=stratum_group,
                labels=tuple(stratum_labels),
                elements=(n == U),
            )
        )
        unit_labels = [label(clevels[ccodes[r]]) for r in first_row] if id_cols else []
        prev_labels = (
            [
                (f"{stratum_labels[unit_stratum[u]]}/" if s == 0 and scol else "") + unit_labels[u]
                for u in range(U)
            ]
            if id_cols
            else []
        )
        prev_unit = unit
    return tuple(stages)


def _with_multipliers(stages: Sequence[Stage]) -> tuple[Stage, ...]:
    """Later stages count in proportion to the sampling fractions of earlier ones."""
    out = [stages[0]]
    for s in range(1, len(stages)):
        prev = out[-1]
        st = stages[s]
        parent_stratum = prev.unit_stratum[st.stratum_group]
        mult = prev.multiplier[parent_stratum] * prev.sampling_fraction[parent_stratum]
        out.append(replace(st, multiplier=mult))
    return tuple(out)


def _base_fingerprint(base: np.ndarray, n_bases: int) -> tuple:
    """An exact digest of a block's bases, cheap enough to take for every question.

    Bases lie in ``[-1, n_bases)``, so they are hashed in the smallest integer type that
    holds them (an eighth of the bytes of int64 for up to 127 bases); the exact values
    are hashed, so equal fingerprints mean equal bases.
    """
    base = np.asarray(base)
    data = base
    if base.size and np.issubdtype(base.dtype, np.integer):
        for small in (np.int8, np.int16, np.int32):
            if n_bases <= np.iinfo(small).max:
                if base.dtype.itemsize > np.dtype(small).itemsize and (
                    int(base.min()) >= -1 and int(base.max()) < n_bases
                ):
                    data = base.astype(small)
                break
    data = np.ascontiguousarray(data)
    digest = hashlib.blake2b(data.view(np.uint8).ravel(), digest_size=16).digest()
    return (data.dtype.str, base.shape, digest)


def _replicate_columns(data: pl.DataFrame, spec: str | Sequence[str]) -> list[str]:
    if isinstance(spec, str):
        cols = [c for c in data.columns if re.fullmatch(re.escape(spec) + r"_?\d+", c)]
        if not cols:
            try:
                pattern = re.compile(spec)
            except re.error:
                pattern = None
            if pattern is not None:
                cols = [c for c in data.columns if pattern.fullmatch(c)]
        if not cols:
            raise DesignError(
                f"replicate_weights {spec!r}: no column matches; give a list of columns, a "
                "prefix (repwt matches repwt1, repwt2, ...) or a regular expression"
            )
        return sorted(cols, key=lambda c: (len(c), c)) if _numbered(cols) else cols
    cols = list(spec)
    for c in cols:
        if c not in data.columns:
            raise DesignError(_unknown_column(c, data))
    if not cols:
        raise DesignError("replicate_weights is empty; a replicate design needs replicates")
    return cols


def _numbered(cols: list[str]) -> bool:
    return all(re.search(r"\d+$", c) for c in cols)


def _replicate_type(type: str) -> str:
    kind = REPLICATE_TYPES.get(str(type).lower())
    if kind is None:
        raise DesignError(
            f"type={type!r} is not a replicate type; expected JK1, JKn, BRR, Fay, "
            "bootstrap, SDR (successive-difference, ACS) or other"
        )
    return kind


def _float_pieces(series: pl.Series) -> list[np.ndarray]:
    """A numeric column as float64 arrays, one per chunk: views of the frame's buffers.

    A Float64 column without nulls is read in place (polars hands numpy its buffer);
    any other numeric type (integers, Float32, decimals) is converted, one copy of that
    column, as numpy needs float64 values.
    """
    if series.dtype == pl.Float64:
        try:
            return [chunk.to_numpy(allow_copy=False) for chunk in series.get_chunks()]
        except RuntimeError:  # pragma: no cover - a layout polars cannot hand over
            pass
    return [series.cast(pl.Float64).to_numpy().astype(np.float64, copy=False)]


def _replicate_factors(
    kind: str,
    reps: ReplicateWeightColumns,
    scale: float | None,
    rscales: Sequence[float] | np.ndarray | None,
    mse: bool | None,
    rho: float | None,
) -> ReplicateWeights:
    """Scale factors of each replicate type, as R's svrepdesign sets them."""
    R = reps.n_replicates
    if kind == "Fay" and rho is None:
        raise DesignError("type='Fay' needs rho=, the Fay coefficient (e.g. 0.5)")
    if kind == "JKn" and rscales is None:
        raise DesignError("type='JKn' needs rscales=, one (n_h - 1)/n_h factor per replicate")
    if kind == "other" and scale is None and rscales is None:
        raise DesignError("type='other' needs scale= (and rscales= if they differ)")
    default_scale = {
        "JK1": (R - 1) / R if R > 1 else 1.0,
        "JKn": 1.0,
        "BRR": 1.0 / R,
        "Fay": 1.0 / (R * (1 - (rho or 0.0)) ** 2),
        "bootstrap": 1.0 / (R - 1) if R > 1 else 1.0,
        "successive-difference": 4.0 / R,
        "other": 1.0,
    }[kind]
    rs = np.ones(R) if rscales is None else np.asarray(rscales, dtype=float)
    if rs.shape != (R,):
        raise DesignError(f"rscales has {rs.size} values but there are {R} replicates")
    if mse is None:
        mse = kind == "successive-difference"
    return ReplicateWeights(
        columns=reps,
        scale=float(default_scale if scale is None else scale),
        rscales=rs,
        mse=bool(mse),
        type=kind,
        rho=rho,
    )
