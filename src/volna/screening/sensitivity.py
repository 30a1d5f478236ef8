"""What excluding the flagged respondents changes."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl

from volna.errors import VolnaError
from volna.screening.core import ScreeningResult

# -- sensitivity: what excluding the flagged respondents changes ----------------------


def sensitivity(
    result: ScreeningResult,
    variables: str | Sequence[str],
    *,
    design=None,
    conf_level: float = 0.95,
) -> pl.DataFrame:
    """Estimates with every respondent and without those the policy excludes, side by side.

    For each level of a categorical variable (its share) or a numeric one (its mean):
    ``all``, ``kept``, ``difference`` (all minus kept), its standard error, confidence
    interval and p-value, and the respondents behind each. The difference is a
    function of four totals -- ``Y`` and ``N`` over everyone who answered, ``Y_k`` and
    ``N_k`` over those kept -- whose covariance the design gives, so its standard
    error is the exact linearization ``g' V g`` (not two independent samples: the kept
    respondents are part of all of them).

    ``design`` is a :class:`~volna.design.SurveyDesign` built on ``result.data`` (same
    rows; weights, strata, clusters); without it every respondent counts once.

    >>> import polars as pl
    >>> from volna.screening import ScreeningRules, _empty_pairs
    >>> frame = pl.DataFrame({"a": ["x", "y", "x", "x"], "excluded": [False, False, False, True]})
    >>> res = ScreeningResult(frame, pl.DataFrame(), _empty_pairs(), ScreeningRules())
    >>> table = sensitivity(res, "a")
    >>> table.select("level", "all", "kept", "difference").to_dicts()[0]
    {'level': 'x', 'all': 0.75, 'kept': 0.6666666666666666, 'difference': 0.08333333333333337}
    """
    from scipy import stats

    from volna.design import SurveyDesign, level_labels

    data = result.data
    if design is None:
        design = SurveyDesign.from_frame(data)
    elif design.data.height != data.height:
        raise VolnaError(
            f"the design has {design.data.height} rows, the screened data {data.height}; "
            "build the design on result.data"
        )
    kept = (~data["excluded"].fill_null(False)).cast(pl.Float64)
    z = stats.norm.ppf(0.5 + conf_level / 2)
    rows = []
    for name in [variables] if isinstance(variables, str) else list(variables):
        if name not in data.columns:
            raise VolnaError(f"sensitivity: {name} is not a column of the data")
        series = data.get_column(name)
        answered = series.is_not_null()
        if series.dtype.is_float():
            answered = answered & series.is_not_nan()
        if series.dtype.is_numeric() and series.dtype != pl.Boolean:
            items = [(None, series.cast(pl.Float64).fill_nan(None).fill_null(0.0))]
        else:
            text = level_labels(series)
            levels = sorted(set(text.drop_nulls().to_list()))
            items = [(lv, (text == lv).fill_null(False).cast(pl.Float64)) for lv in levels]
        a = answered.cast(pl.Float64)
        series_list = []
        for k, (_, y) in enumerate(items):
            series_list += [
                (y * a).alias(f"Y{k}"),
                a.alias(f"N{k}"),
                (y * a * kept).alias(f"Yk{k}"),
                (a * kept).alias(f"Nk{k}"),
            ]
        est = design.total(series_list, vcov=True, deff=False)
        t = est.to_polars()["estimate"].to_numpy()
        v = est.vcov
        for k, (level, _) in enumerate(items):
            Y, N, Yk, Nk = t[4 * k : 4 * k + 4]
            with np.errstate(divide="ignore", invalid="ignore"):
                all_, kept_ = Y / N, Yk / Nk
                g = np.array([1 / N, -Y / N**2, -1 / Nk, Yk / Nk**2])
            block = v[4 * k : 4 * k + 4, 4 * k : 4 * k + 4]
            var = float(g @ block @ g) if np.all(np.isfinite(g)) else math.nan
            se = math.sqrt(max(var, 0.0)) if math.isfinite(var) else math.nan
            diff = all_ - kept_
            p = 2 * stats.norm.sf(abs(diff) / se) if se > 0 else math.nan
            rows.append(
                {
                    "variable": name,
                    "level": level,
                    "all": float(all_),
                    "kept": float(kept_),
                    "difference": float(diff),
                    "se": se,
                    "ci_low": diff - z * se,
                    "ci_high": diff + z * se,
                    "p_value": p,
                    "n_all": int(answered.sum()),
                    "n_kept": int((answered & (kept > 0)).sum()),
                }
            )
    return pl.DataFrame(rows, schema_overrides={"level": pl.String})
