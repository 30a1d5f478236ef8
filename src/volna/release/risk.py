"""Disclosure risk measured on the sample itself: k-anonymity, individual risk, l-diversity.

The threat model is *response knowledge*: the adversary may know that someone took
part, so the sample is the population they search. Risk is therefore read first from
the sample frequencies ``f_k`` of each combination of quasi-identifiers (a "key"):

* **k-anonymity** (the rule a release must pass): every respondent shares their key
  with at least ``k - 1`` others. A missing value is a category of its own here (a
  plain ``group_by``), which is stricter than sdcMicro's convention below: a file that
  passes it passes sdcMicro's too.
* **individual risk** as sdcMicro's ``measure_risk`` computes it (the Benedetti-Franconi
  approximation of the negative-binomial super-population model, with ``F_k`` the sum of
  the weights in the key): ``p = f/F - 0.0001`` and ``p/(1-p)·log(1/p)`` for a sample
  unique, ``p/(1-p) - (p/(1-p))²·log(1/p)`` for ``f = 2``, ``p/(f-(1-p))`` above; without
  weights ``1/f``. The *global risk* is their sum, the expected number of
  re-identifications. Here, as in sdcMicro, a suppressed cell matches any value (the
  adversary cannot tell what was there); a value missing in the survey itself (a question
  not asked) stays a category, since the skip logic tells the reader why it is missing.
* **l-diversity** (distinct): within a key, how many different answers to a sensitive
  question were given. ``l = 1`` means everyone in the group answered alike, a group
  disclosure even without a name ("all seven journalists from one city...").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl

#: The k-anonymity levels every report states, as sdcMicro's print(obj, "kAnon") does.
STANDARD_K = (2, 3, 5)

# A survey's own missing value, as a key category distinct from a suppressed cell.
_NOT_ANSWERED = "\x00not answered"


def sample_frequencies(frame: pl.DataFrame, quasi: Sequence[str]) -> np.ndarray:
    """``f_k`` for every respondent: how many share their key (missing = a category).

    >>> import polars as pl
    >>> df = pl.DataFrame({"age": ["18-24", "18-24", None, None], "sex": ["f", "f", "m", "m"]})
    >>> sample_frequencies(df, ["age", "sex"]).tolist()
    [2, 2, 2, 2]
    """
    if not quasi:
        return np.full(frame.height, frame.height, dtype=np.int64)
    return frame.select(pl.len().over(list(quasi)).alias("f")).to_series().to_numpy()


def individual_risk(f: np.ndarray, weight_sum: np.ndarray | None = None) -> np.ndarray:
    """sdcMicro's individual re-identification risk from ``f_k`` and ``F_k``.

    Without weights the risk is ``1/f_k``. With expansion weights (summing to the
    population), ``F_k`` is the weighted count of the key; where ``F_k <= f_k`` (weights
    that sum to the sample size) the sample is taken as the population, as sdcMicro's
    ``p - 0.0001`` correction does.

    >>> import numpy as np
    >>> individual_risk(np.array([1, 2, 4])).round(3).tolist()
    [1.0, 0.5, 0.25]
    >>> individual_risk(np.array([1, 1]), np.array([1.0, 1000.0])).round(4).tolist()
    [0.9999, 0.0063]
    """
    f = np.asarray(f, dtype=np.float64)
    if weight_sum is None:
        return 1.0 / f
    F = np.asarray(weight_sum, dtype=np.float64)
    p = np.minimum(np.divide(f, F, out=np.ones_like(f), where=F > 0), 1.0) - 0.0001
    odds = p / (1.0 - p)
    log_inv = np.log(1.0 / p)
    return np.where(
        f == 1,
        odds * log_inv,
        np.where(f == 2, odds - odds**2 * log_inv, p / (f - (1.0 - p))),
    )


def wildcard_frequencies(
    frame: pl.DataFrame,
    quasi: Sequence[str],
    suppressed: pl.DataFrame | None = None,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``f_k`` and ``F_k`` with suppressed cells matching any value (sdcMicro, alpha = 1).

    ``suppressed`` holds one Boolean column per quasi-identifier, true where local
    suppression blanked the cell. A respondent's key then matches every respondent who
    agrees with it on the variables both have. Computed on distinct keys, pattern by
    pattern, so the cost grows with the number of suppression patterns, not of rows.

    >>> import polars as pl
    >>> df = pl.DataFrame({"a": ["x", "x", None], "b": ["u", "v", "u"]})
    >>> mask = pl.DataFrame({"a": [False, False, True], "b": [False, False, False]})
    >>> f, F = wildcard_frequencies(df, ["a", "b"], mask)
    >>> f.tolist()
    [2, 1, 2]
    """
    quasi = list(quasi)
    n = frame.height
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if not quasi:
        return np.full(n, n, dtype=np.int64), np.full(n, w.sum())
    keys = []
    for col in quasi:
        text = frame.get_column(col).cast(pl.String).fill_null(_NOT_ANSWERED)
        if suppressed is not None:
            text = pl.select(
                pl.when(suppressed.get_column(col)).then(None).otherwise(text)
            ).to_series()
        keys.append(text.alias(col))
    table = pl.DataFrame(keys).with_columns(_w=pl.Series(w))
    mask_cols = [pl.col(c).is_null().alias(f"_m{i}") for i, c in enumerate(quasi)]
    cells = (
        table.group_by(quasi)
        .agg(_f=pl.len(), _F=pl.col("_w").sum())
        .with_columns(mask_cols)
        .with_columns(
            _pattern=pl.concat_str([pl.col(f"_m{i}").cast(pl.Int8) for i in range(len(quasi))])
        )
    )
    # sorted: the sums below add floats pattern by pattern, and polars' unique() order
    # varies from run to run, so the risks would differ in their last digits
    patterns = sorted(cells.get_column("_pattern").unique().to_list())
    by_pattern = {p: cells.filter(pl.col("_pattern") == p) for p in patterns}
    results = []
    for target_pattern, target in by_pattern.items():
        f_sum = np.zeros(target.height)
        F_sum = np.zeros(target.height)
        for source_pattern, source in by_pattern.items():
            shared = [
                c
                for i, c in enumerate(quasi)
                if target_pattern[i] == "0" and source_pattern[i] == "0"
            ]
            if not shared:
                f_sum += source.get_column("_f").sum()
                F_sum += source.get_column("_F").sum()
                continue
            counts = source.group_by(shared).agg(_sf=pl.col("_f").sum(), _sF=pl.col("_F").sum())
            joined = target.select(shared).join(
                counts, on=shared, how="left", maintain_order="left"
            )
            f_sum += joined.get_column("_sf").fill_null(0).to_numpy()
            F_sum += joined.get_column("_sF").fill_null(0.0).to_numpy()
        results.append(
            target.select(quasi).with_columns(_wf=pl.Series(f_sum), _wF=pl.Series(F_sum))
        )
    per_key = pl.concat(results)
    out = table.join(per_key, on=quasi, how="left", nulls_equal=True, maintain_order="left")
    return (
        out.get_column("_wf").to_numpy().astype(np.int64),
        out.get_column("_wF").to_numpy(),
    )


def l_diversity(frame: pl.DataFrame, quasi: Sequence[str], sensitive: str) -> np.ndarray:
    """Distinct l-diversity of ``sensitive`` in every respondent's key (missing = a category).

    Counted over those who answered: a group where nobody answered discloses nothing
    and gets the group size instead (it cannot fail a rule ``l <= k``).

    >>> import polars as pl
    >>> df = pl.DataFrame({"city": ["a", "a", "b", "b"], "vote": ["x", "y", "x", "x"]})
    >>> l_diversity(df, ["city"], "vote").tolist()
    [2, 2, 1, 1]
    """
    keys = list(quasi)
    answered = pl.col(sensitive).drop_nulls().n_unique()
    expr = pl.when(pl.col(sensitive).is_not_null().any()).then(answered).otherwise(pl.len())
    if keys:
        expr = expr.over(keys)
    out = frame.select(expr.alias("l")).to_series()
    if not keys:
        out = pl.repeat(out[0], frame.height, eager=True)
    return out.to_numpy().astype(np.int64)


@dataclass(frozen=True)
class RiskSummary:
    """The disclosure risk of a table of respondents, as the release report states it.

    ``violations[k]`` is the number of respondents whose key is shared by fewer than
    ``k`` (strict convention); ``global_risk`` the expected number of re-identifications
    (sum of individual risks, sdcMicro); ``risky`` respondents have a risk above both
    ``median + 2·MAD`` and 0.1 (sdcMicro's rule); ``l_diversity`` maps each sensitive
    question to its smallest l and the number of keys below the requested l.
    """

    n: int
    keys: int
    violations: dict[int, int]
    global_risk: float
    global_risk_pct: float
    max_risk: float
    risky: int
    weighted: bool
    l_diversity: dict[str, dict[str, int | None]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["violations"] = {str(k): v for k, v in self.violations.items()}
        return out


def measure(
    frame: pl.DataFrame,
    quasi: Sequence[str],
    *,
    k: int = 5,
    weights: np.ndarray | None = None,
    suppressed: pl.DataFrame | None = None,
    sensitive: Sequence[str] = (),
    min_l: int | None = None,
) -> RiskSummary:
    """Measure every risk of ``frame`` on the quasi-identifiers ``quasi``.

    >>> import polars as pl
    >>> df = pl.DataFrame({"age": ["a"] * 5 + ["b"], "vote": ["x"] * 5 + ["y"]})
    >>> r = measure(df, ["age"], k=5, sensitive=["vote"], min_l=2)
    >>> r.violations[5], r.global_risk, r.l_diversity["vote"]["min"]
    (1, 2.0, 1)
    """
    quasi = list(quasi)
    n = frame.height
    f = sample_frequencies(frame, quasi)
    levels = sorted({*STANDARD_K, k})
    violations = {level: int((f < level).sum()) for level in levels}
    keys = frame.select(quasi).n_unique() if quasi and n else 0
    wf, wF = wildcard_frequencies(frame, quasi, suppressed, weights)
    risk = individual_risk(wf, wF if weights is not None else None) if n else np.zeros(0)
    if quasi and suppressed is not None:
        # a respondent whose every key variable was suppressed carries no key (sdcMicro)
        blank = suppressed.select(pl.all_horizontal(quasi)).to_series().to_numpy()
        risk = np.where(blank, 0.0, risk)
    global_risk = float(risk.sum())
    if n:
        median = float(np.median(risk))
        mad = float(np.median(np.abs(risk - median))) * 1.4826
        risky = int(((risk > median + 2 * mad) & (risk > 0.1)).sum())
    else:
        risky = 0
    diversity: dict[str, dict[str, int | None]] = {}
    for name in sensitive:
        ld = l_diversity(frame, quasi, name) if n else np.zeros(0, dtype=np.int64)
        below = None
        if min_l is not None and n:
            failing = frame.select(quasi).filter(pl.Series(ld < min_l)) if quasi else frame
            below = failing.n_unique() if failing.height else 0
        diversity[name] = {"min": int(ld.min()) if n else None, "keys_below_l": below}
    return RiskSummary(
        n=n,
        keys=int(keys),
        violations=violations,
        global_risk=round(global_risk, 4),
        global_risk_pct=round(100 * global_risk / n, 4) if n else 0.0,
        max_risk=round(float(risk.max()), 4) if n else 0.0,
        risky=risky,
        weighted=weights is not None,
        l_diversity=diversity,
    )
