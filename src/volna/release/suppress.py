"""Local suppression: blank a few key cells until every key is shared by at least k.

The convention is the strict one of :mod:`volna.release.risk`: a blank cell is a
category of its own, so the released file passes a plain ``group_by`` count. (sdcMicro
lets a blank match anything; a file that passes the strict rule passes that one too.)

The heuristic, per round, for every respondent whose key is too rare (or whose group
answers a sensitive question too uniformly, when ``min_l`` is set): try blanking each
of their key variables, least important first, and take the first that moves them into
a group that is already safe; failing that, the first that moves them into a group
large enough once the others have moved too; failing that, the one leaving the largest
group. Each round blanks at most one more cell per respondent and never shrinks a safe
group, so it ends within as many rounds as there are key variables. If the respondents
left with every key variable blank are fewer than k, the smallest number of respondents
from the largest groups join them (the fewest extra cells that can close the gap).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl


def suppression_order(
    frame: pl.DataFrame, quasi: Sequence[str], importance: Sequence[str] | None = None
) -> list[str]:
    """Key variables in the order their cells are blanked (least important first).

    ``importance`` lists variables most important first (the ones to spare); by default,
    as in sdcMicro, the variable with the most categories goes first, since it splits
    keys the most.

    >>> import polars as pl
    >>> df = pl.DataFrame({"sex": ["f", "m", "f"], "country": ["GE", "AM", "TR"]})
    >>> suppression_order(df, ["sex", "country"])
    ['country', 'sex']
    >>> suppression_order(df, ["sex", "country"], importance=["country", "sex"])
    ['sex', 'country']
    """
    quasi = list(quasi)
    if importance:
        ranked = [v for v in importance if v in quasi]
        rest = [v for v in quasi if v not in ranked]
        return list(reversed(ranked + rest))
    sizes = {v: frame.get_column(v).n_unique() for v in quasi}
    return sorted(quasi, key=lambda v: (-sizes[v], quasi.index(v)))


def _unsafe(
    keys: pl.DataFrame, quasi: list[str], k: int, sensitive: Sequence[str], min_l: int | None
) -> np.ndarray:
    checks = [pl.len().over(quasi) < k]
    if min_l is not None:
        for s in sensitive:
            answered = pl.col(s).is_not_null().any().over(quasi)
            distinct = pl.col(s).drop_nulls().n_unique().over(quasi)
            checks.append(answered & (distinct < min_l))
    return keys.select(pl.any_horizontal(checks)).to_series().to_numpy()


def suppress_to_k(
    frame: pl.DataFrame,
    quasi: Sequence[str],
    k: int,
    *,
    importance: Sequence[str] | None = None,
    sensitive: Sequence[str] = (),
    min_l: int | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Blank key cells until every key occurs at least ``k`` times.

    Returns the frame with blanks and a Boolean frame (one column per key variable)
    marking the blanked cells. Sensitive columns are never touched; ``min_l`` adds the
    rule that a group's answers to each sensitive question take at least ``min_l``
    distinct values.

    >>> import polars as pl
    >>> df = pl.DataFrame({"age": ["30s"] * 5, "sex": ["f", "f", None, None, "m"]})
    >>> out, mask = suppress_to_k(df, ["age", "sex"], k=2)
    >>> out.rows()[-1], mask.sum().row(0)
    (('30s', None), (0, 1))
    """
    quasi = list(quasi)
    n = frame.height
    mask = np.zeros((n, len(quasi)), dtype=bool)
    if not quasi or n == 0:
        return frame, pl.DataFrame({v: mask[:, i] for i, v in enumerate(quasi)})
    order = suppression_order(frame, quasi, importance)
    position = {v: quasi.index(v) for v in order}
    columns = quasi + [s for s in sensitive if s not in quasi]
    keys = frame.select(columns)

    for _ in range(len(quasi) + 1):
        bad = _unsafe(keys, quasi, k, sensitive, min_l)
        if not bad.any():
            break
        bad_s = pl.Series("_bad", bad)
        # per candidate variable: does blanking it land the respondent in a safe group
        # (0), in a group safe once everyone has moved (1), or only in some group (2)?
        best_tier = np.full(n, 3)
        best_size = np.full(n, -1)
        choice = np.full(n, -1)
        for v in order:
            j = position[v]
            trial = keys.with_columns(
                pl.when(bad_s).then(None).otherwise(pl.col(v)).alias(v), bad_s
            )
            others = [u for u in quasi if u != v]
            sizes = trial.select(
                safe=(~pl.col("_bad")).sum().over(quasi),
                size=pl.len().over(quasi),
                # how many share the rest of the key: the group blanking could still build
                potential=pl.len().over(others) if others else pl.len(),
            )
            safe = sizes.get_column("safe").to_numpy() > 0
            group = sizes.get_column("size").to_numpy()
            size = sizes.get_column("potential").to_numpy()
            movable = bad & ~mask[:, j] & keys.get_column(v).is_not_null().to_numpy()
            tier = np.where(safe, 0, np.where(group >= k, 1, 2))
            better = movable & (
                (tier < best_tier) | ((tier == 2) & (best_tier == 2) & (size > best_size))
            )
            choice = np.where(better, j, choice)
            best_tier = np.where(better, tier, best_tier)
            best_size = np.where(better, size, best_size)
        rows = np.flatnonzero(choice >= 0)
        if rows.size == 0:
            break
        mask[rows, choice[rows]] = True
        keys = _apply(keys, quasi, mask)

    keys = _pad_blank_group(keys, quasi, k, mask, sensitive, min_l)
    out = frame.with_columns(keys.select(quasi))
    return out, pl.DataFrame({v: mask[:, i] for i, v in enumerate(quasi)})


def _apply(keys: pl.DataFrame, quasi: list[str], mask: np.ndarray) -> pl.DataFrame:
    return keys.with_columns(
        pl.when(pl.Series(mask[:, i])).then(None).otherwise(pl.col(v)).alias(v)
        for i, v in enumerate(quasi)
    )


def _pad_blank_group(
    keys: pl.DataFrame,
    quasi: list[str],
    k: int,
    mask: np.ndarray,
    sensitive: Sequence[str] = (),
    min_l: int | None = None,
) -> pl.DataFrame:
    """Bring the all-blank group up to k (and l) with respondents from the largest groups."""
    blank = keys.select(pl.all_horizontal(pl.col(v).is_null() for v in quasi)).to_series()
    if blank.sum() == 0:
        return keys
    sizes = keys.select(pl.len().over(quasi)).to_series().to_numpy()
    # donors: largest groups first, never taking a group below k
    ranked = keys.with_row_index("_row").with_columns(_size=pl.Series(sizes), _blank=blank)
    ranked = ranked.filter(~pl.col("_blank") & (pl.col("_size") >= k + 1))
    ranked = ranked.with_columns(_rank=pl.int_range(pl.len()).over(quasi)).filter(
        pl.col("_rank") < pl.col("_size") - k
    )
    ranked = ranked.sort(["_size", "_row"], descending=[True, False])
    chosen: list[int] = []
    if min_l is not None:
        # a blank group answering a sensitive question alike is a group disclosure too
        for s in sensitive:
            have = set(keys.filter(blank).get_column(s).drop_nulls().to_list())
            if not have:
                continue
            for value in ranked.get_column(s).drop_nulls().unique(maintain_order=True):
                if len(have) >= min_l:
                    break
                if value not in have:
                    row = ranked.filter(pl.col(s) == value).get_column("_row")[0]
                    chosen.append(int(row))
                    have.add(value)
    short = k - int(blank.sum()) - len(chosen)
    if short > 0:
        extra = ranked.filter(~pl.col("_row").is_in(chosen)).head(short)
        chosen += extra.get_column("_row").to_list()
    if not chosen:
        return keys
    rows = np.array(chosen, dtype=np.int64)
    present = keys.select(pl.col(v).is_not_null() for v in quasi).to_numpy()
    mask[rows, :] |= present[rows, :]
    return _apply(keys, quasi, mask)
