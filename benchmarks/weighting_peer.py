"""One peer's raking run for ``benchmarks/weighting.py``, in that peer's own venv.

Run by the driver as ``<venv>/bin/python weighting_peer.py --tool NAME --data X.parquet
--margins X.json --tol 1e-6 --weights-out W.npy``. It reads the data (not timed), times
the weighting call -- building the tool's own input structures (scheme, table, Sample)
included -- keeps the best of ``--repeat`` runs while a run takes under 5 s, saves the
weights of the last run in row order (``numpy.save``) and prints one JSON line. The
driver computes every tool's achieved margin error from the saved weights, with one
formula for all, and reads this process's peak RSS from ``wait4``.

Only the standard library is imported at module level: each tool's venv has its own
numpy/pandas/polars (balance pins numpy<2 on Python 3.11).

Calls (``tol`` = 1e-6 unless told):

* weightipy: ``scheme_from_dict({var: {level: percent}})`` then ``weight(df, scheme)``;
  its stopping rule is its own (``Rim(convcrit=)`` is ignored), so ``tol`` is unused.
* ipfn: the dense contingency table of all raking variables (``np.bincount`` over the
  raveled cell index), ``ipfn(table, margins, [[0], [1], ...], convergence_rate=tol,
  max_iteration=1000).iteration()``, weights = fitted cell / sample cell.
* balance: ``balance.weighting_methods.rake.rake(df, ones, None, None,
  variables=..., transformations=None, target_margins={var: {level: count}},
  convergence_rate=tol, max_iteration=1000)`` -- ``transformations=None`` because the
  default lumps levels under 5% and bins integer codes.
* balance-df: the same with an exact target instead of ``target_margins`` (whose
  realisation as at most 10,000 synthetic rows leaves a ~1e-3 margin error): the full
  product of the margins as ``target_df`` (120,000 rows at 5, 8, 10, 15, 20 levels) with
  ``target_weights`` = the product of the shares; not tried past 1e7 cells.
* svy: ``Sample(frame + w=1, Design(wgt="w")).weighting.rake(controls={var: {level:
  count}}, tol=tol, max_iter=1000, on_nonconvergence="warn")`` (a stall is reported as
  not converged, with the last iterate's accuracy).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

SLOW = 5.0  # runs longer than this are not repeated


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[Any, dict]:
    """Run ``fn`` up to ``repeat`` times (once if a run takes >= SLOW s); time each."""
    times: list[float] = []
    result = None
    while True:
        result = None  # let the previous result go before the next run
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        if len(times) >= repeat or times[-1] >= SLOW:
            break
    return result, {"fit": min(times), "first": times[0], "runs": len(times)}


def run_weightipy(path: str, spec: dict, tol: float, repeat: int):
    import pandas as pd
    import weightipy as wp

    df = pd.read_parquet(path, columns=spec["variables"])
    total = float(spec["rows"])
    scheme_dict = {
        var: {level: 100.0 * count / total for level, count in spec["targets"][var].items()}
        for var in spec["variables"]
    }

    def fit():
        scheme = wp.scheme_from_dict(scheme_dict, name="bench")
        return wp.weight(df, scheme).to_numpy()

    w, info = best_of(fit, repeat)
    return w, info


def run_ipfn(path: str, spec: dict, tol: float, repeat: int):
    import numpy as np
    import pandas as pd
    from ipfn import ipfn

    variables = spec["variables"]
    df = pd.read_parquet(path, columns=variables)
    levels = [spec["levels"][v] for v in variables]
    shape = tuple(len(lv) for lv in levels)
    targets = [np.array([spec["targets"][v][lv] for lv in spec["levels"][v]]) for v in variables]
    info_extra: dict = {"cells": int(np.prod(np.array(shape, dtype=float)))}

    def fit():
        codes = [
            pd.Categorical(df[v], categories=lv).codes
            for v, lv in zip(variables, levels, strict=True)
        ]
        flat = np.ravel_multi_index(codes, shape)
        counts = np.bincount(flat, minlength=int(np.prod(shape)))
        table = counts.astype(float).reshape(shape)  # ipfn updates it in place
        engine = ipfn.ipfn(
            table,
            targets,
            [[j] for j in range(len(variables))],
            convergence_rate=tol,
            max_iteration=1000,
            verbose=2,
        )
        fitted, flag, history = engine.iteration()
        w = fitted.ravel()[flat] / counts[flat]
        info_extra["iterations"] = len(history)
        info_extra["converged"] = bool(flag)
        return w

    w, info = best_of(fit, repeat)
    info.update(info_extra)
    return w, info


def run_balance(path: str, spec: dict, tol: float, repeat: int):
    import numpy as np
    import pandas as pd

    variables = spec["variables"]
    df, rake = _balance_input(path, variables)
    margins = {v: dict(spec["targets"][v]) for v in variables}
    info_extra: dict = {"note": "target_margins (realised as <= 10,000 rows)"}

    def fit():
        out = rake(
            df,
            pd.Series(np.ones(len(df)), index=df.index),
            None,
            None,
            variables=variables,
            transformations=None,
            max_iteration=1000,
            convergence_rate=tol,
            target_margins=margins,
        )
        _balance_model(out, info_extra)
        return out["weight"].to_numpy()

    w, info = best_of(fit, repeat)
    info.update(info_extra)
    return w, info


def run_balance_df(path: str, spec: dict, tol: float, repeat: int):
    """balance with an exact target: the full product of the margins as target rows."""
    import numpy as np
    import pandas as pd

    variables = spec["variables"]
    levels = [spec["levels"][v] for v in variables]
    cells = 1
    for lv in levels:
        cells *= len(lv)
    if cells > 10_000_000:
        raise MemoryError(f"the product target frame would have {cells:.3g} rows; not tried")
    df, rake = _balance_input(path, variables)
    total = float(sum(spec["targets"][variables[0]].values()))
    info_extra: dict = {"note": f"target_df: the {cells:,} cells of the margins' product"}

    def fit():
        grids = np.meshgrid(*[np.arange(len(lv)) for lv in levels], indexing="ij")
        target = pd.DataFrame(
            {
                v: np.asarray(lv)[g.ravel()]
                for v, lv, g in zip(variables, levels, grids, strict=True)
            }
        )
        weight = np.ones(1)
        for v, lv in zip(variables, levels, strict=True):
            share = np.array([spec["targets"][v][x] for x in lv]) / total
            weight = np.multiply.outer(weight, share)
        out = rake(
            df,
            pd.Series(np.ones(len(df)), index=df.index),
            target,
            pd.Series(weight.ravel() * total, index=target.index),
            variables=variables,
            transformations=None,
            max_iteration=1000,
            convergence_rate=tol,
        )
        _balance_model(out, info_extra)
        return out["weight"].to_numpy()

    w, info = best_of(fit, repeat)
    info.update(info_extra)
    return w, info


def _balance_input(path: str, variables: list[str]):
    import logging

    import pyarrow as pa
    import pyarrow.parquet as pq
    from balance.weighting_methods.rake import rake

    logging.getLogger("balance").setLevel(logging.ERROR)
    # plain strings, as balance's examples use (its pyarrow<22, for numpy<2, cannot
    # convert polars' uint8 dictionary indices to pandas categories)
    table = pq.read_table(path, columns=variables)
    table = table.cast(pa.schema([pa.field(v, pa.string()) for v in variables]))
    return table.to_pandas(), rake


def _balance_model(out: dict, info: dict) -> None:
    model = out["model"]
    info["converged"] = bool(model.get("converged"))
    iters = model.get("iterations")
    if iters is not None and hasattr(iters, "__len__"):
        info["iterations"] = len(iters)


def run_svy(path: str, spec: dict, tol: float, repeat: int):
    import polars as pl
    import svy

    variables = spec["variables"]
    frame = pl.read_parquet(path, columns=variables).with_columns(w=pl.lit(1.0))
    controls = {v: dict(spec["targets"][v]) for v in variables}

    info_extra: dict = {}

    def fit():
        sample = svy.Sample(frame, svy.Design(wgt="w"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            raked = sample.weighting.rake(
                controls=controls, tol=tol, max_iter=1000, on_nonconvergence="warn"
            )
        stalled = [str(c.message) for c in caught if "converge" in str(c.message).lower()]
        info_extra["converged"] = not stalled
        if stalled:
            info_extra["note"] = "svy: did not converge in 1000 sweeps (last iterate kept)"
        return raked.data.get_column("rk_wgt").to_numpy()

    w, info = best_of(fit, repeat)
    info.update(info_extra)
    return w, info


TOOLS = {
    "weightipy": run_weightipy,
    "ipfn": run_ipfn,
    "balance": run_balance,
    "balance-df": run_balance_df,
    "svy": run_svy,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool", required=True, choices=sorted(TOOLS))
    parser.add_argument("--data", required=True)
    parser.add_argument("--margins", required=True)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--weights-out", required=True)
    args = parser.parse_args()

    with open(args.margins) as fh:
        spec = json.load(fh)
    weights, info = TOOLS[args.tool](args.data, spec, args.tol, args.repeat)
    import numpy as np

    np.save(args.weights_out, np.asarray(weights, dtype=np.float64))
    print(json.dumps({"tool": args.tool, **info}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
