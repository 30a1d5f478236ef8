"""Benchmark: a design-based logistic regression with 80 replicate weights, vs svy and R.

What is measured, on one synthetic survey written once to ``benchmarks/data/``
(parquet for the Python engines, CSV for R), in the same run:

* 1,000,000 rows (``--rows``) in 50 strata x 40 PSUs, lognormal weights ``w``, ten
  predictors ``x1..x10`` (seven standard normal, three 0/1), a 0/1 outcome ``y`` from a
  logistic model with a PSU effect; 80 successive-difference-style replicate weights
  ``rw1..rw80``: ``w`` times a factor from {0.293, 1, 1.707} drawn per PSU and replicate,
  rounded to 3 decimals as published files are (scale 4/80; variance centred on the
  replicates' mean, ``mse=False``, because svy's GLM centres there);
* the fit ``y ~ x1 + ... + x10`` (11 coefficients), logistic, with the replicate
  covariance: every engine refits the model under each of the 80 replicate weights;
* each engine in its own process: the time to build the design and the time of the fit
  (reading the data is timed apart), the peak RSS of the process (``wait4``) and the
  peak *added* once the data is read (the worker resets its peak there through
  ``/proc/self/clear_refs`` and reads ``VmHWM`` at the end), reported against the
  replicate-weight matrix, 80 x rows x 8 bytes (610 MiB at 1M rows);
* agreement: the largest relative difference of each peer's coefficients and standard
  errors from volna's.

Peer calls:

* volna: ``SurveyDesign.replicate(frame, weights="w", replicate_weights=[rw1..rw80],
  type="SDR", mse=False).glm("y ~ x1 + ... + x10", family="quasibinomial")``;
* svy 0.35.0 (its own venv, ``benchmarks/.venvs/svy``, built on first use):
  ``Sample(frame, Design(wgt="w", rep_wgts=SdrWgts(prefix="rw", n_reps=80))).glm.fit(
  "y", x=[x1..x10], family="binomial", method="replication")``;
* R: ``glm_r.R``: ``svrepdesign(repweights="rw[0-9]+", weights=~w,
  type="successive-difference", mse=FALSE, combined.weights=TRUE)`` and
  ``svyglm(y ~ x1 + ... + x10, design, family=quasibinomial())``. ``--r-rows N`` fits R
  on the first N rows only (and volna again on the same rows, so the ratio compares like
  with like); by default R runs on every row.

    python benchmarks/glm.py [--rows 1000000] [--r-rows N] [--skip-r] [--skip-svy]
        [--repeat 1] [--timeout 1800] [--blas-threads 1] [--json out.json]

Every worker runs with one BLAS thread by default (``OPENBLAS_NUM_THREADS=1``, and
OMP/MKL): on this shared 2-core machine OpenBLAS's own threads spin against each other
and other jobs (volna's fit took 23 s instead of 4 s with them); ``--blas-threads ''``
leaves the environment as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from workers import emit, mark_after_read, mark_end, r_available, run_measured

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"
R_SCRIPT = HERE / "glm_r.R"
SVY_VENV = HERE / ".venvs" / "svy"
SVY_REQUIREMENTS = ["svy==0.35.0", "numpy", "polars", "pyarrow"]

N_STRATA, PSU_PER_STRATUM, N_REPLICATES, N_PREDICTORS = 50, 40, 80, 10
SDR_FACTORS = (0.293, 1.0, 1.707)
PREDICTORS = [f"x{j}" for j in range(1, N_PREDICTORS + 1)]
REPLICATES = [f"rw{k}" for k in range(1, N_REPLICATES + 1)]
COLUMNS = ["w", "y", *PREDICTORS, *REPLICATES]
FORMULA = "y ~ " + " + ".join(PREDICTORS)
ENGINES = ("volna", "svy", "R")


# ---------------------------------------------------------------------------------------
# data


def make_data(rows: int, csv: bool) -> tuple[Path, Path]:
    """Write (once) the synthetic survey as parquet, and as CSV for R."""
    import numpy as np
    import polars as pl

    parquet, csv_path = DATA / f"glm_{rows}.parquet", DATA / f"glm_{rows}.csv"
    DATA.mkdir(exist_ok=True)
    if not parquet.exists():
        start = time.perf_counter()
        rng = np.random.default_rng(20261208)
        n_psu = N_STRATA * PSU_PER_STRATUM
        psu = rng.integers(0, n_psu, rows)
        w = np.round(np.exp(rng.normal(np.log(100.0), 0.5, rows)), 3)
        columns = {
            "stratum": (psu // PSU_PER_STRATUM + 1).astype(np.int32),
            "psu": (psu + 1).astype(np.int32),
            "w": w,
        }
        eta = -0.5 + rng.normal(0.0, 0.3, n_psu)[psu]
        slopes = np.linspace(-0.6, 0.6, N_PREDICTORS)
        for j, name in enumerate(PREDICTORS):
            x = rng.standard_normal(rows) if j < 7 else (rng.random(rows) < 0.4).astype(float)
            columns[name] = x
            eta = eta + slopes[j] * x
        columns["y"] = (rng.random(rows) < 1 / (1 + np.exp(-eta))).astype(np.int32)
        pattern = rng.integers(0, 3, size=(n_psu, N_REPLICATES))
        factors = np.asarray(SDR_FACTORS)
        for k, name in enumerate(REPLICATES):
            columns[name] = np.round(w * factors[pattern[psu, k]], 3)
        pl.DataFrame(columns).write_parquet(parquet)
        print(f"wrote {parquet.name} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    if csv and not csv_path.exists():
        start = time.perf_counter()
        pl.read_parquet(parquet).write_csv(csv_path)
        print(f"wrote {csv_path.name} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return parquet, csv_path


# ---------------------------------------------------------------------------------------
# workers: one engine in a fresh process


def timed(step: str, fn, repeat: int, n: int):
    times = []
    result = None
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    emit({"step": step, "seconds": min(times), "first": times[0], "runs": len(times), "n": n})
    return result


def volna_worker(path: str, repeat: int, head: int) -> None:
    import polars as pl

    from volna.design import SurveyDesign

    frame = timed("read", lambda: pl.read_parquet(path, columns=COLUMNS), 1, 0)
    if head:
        frame = frame.head(head)
    mark_after_read(frame)

    def build():
        return SurveyDesign.replicate(
            frame, weights="w", replicate_weights=REPLICATES, type="SDR", mse=False
        )

    d = timed("design", build, 1, frame.height)
    fit = timed("fit", lambda: d.glm(FORMULA, family="quasibinomial"), repeat, frame.height)
    mark_end()
    emit({"coef": [float(v) for v in fit.coefficients], "se": [float(v) for v in fit.se]})


def svy_worker(path: str, repeat: int, head: int) -> None:
    import polars as pl
    import svy

    frame = timed("read", lambda: pl.read_parquet(path, columns=COLUMNS), 1, 0)
    if head:
        frame = frame.head(head)
    mark_after_read(frame)

    def build():
        reps = svy.SdrWgts(prefix="rw", n_reps=N_REPLICATES)
        return svy.Sample(frame, svy.Design(wgt="w", rep_wgts=reps))

    sample = timed("design", build, 1, frame.height)

    def fit():
        return sample.glm.fit("y", x=PREDICTORS, family="binomial", method="replication")

    model = timed("fit", fit, repeat, frame.height)
    mark_end()
    coefs = model.fitted.coefs
    emit({"coef": [float(c.est) for c in coefs], "se": [float(c.se) for c in coefs]})


# ---------------------------------------------------------------------------------------
# driver


def svy_python() -> Path:
    """The svy venv's interpreter, created on first use."""
    python = SVY_VENV / "bin" / "python"
    if not python.exists():
        uv = ROOT / ".tools" / "bin" / "uv"
        uv_cmd = [str(uv)] if uv.exists() else ["uv"]
        subprocess.run([*uv_cmd, "venv", "-q", "-p", "3.11", str(SVY_VENV)], check=True)
        subprocess.run(
            [*uv_cmd, "pip", "install", "-q", "--python", str(python), *SVY_REQUIREMENTS],
            check=True,
        )
    return python


def run_worker(label: str, command: list[str], timeout: float) -> dict:
    run = run_measured(command, timeout)
    out: dict = {"peak_mb": run.peak_kib / 1024, "wall": run.wall, "timed_out": run.timed_out}
    for record in run.records:
        if "step" in record:
            out[record["step"]] = record
        elif "info" in record:
            out[record["info"]] = record["value"]
        elif "coef" in record:
            out.update(record)
    if run.exit_code != 0:
        out["error"] = run.stderr_tail[-1500:]
        print(f"  {label}: exit {run.exit_code}\n{run.stderr_tail[-1500:]}", file=sys.stderr)
    print(
        f"  ran {label}: {run.wall:6.1f} s wall, peak {out['peak_mb']:6.0f} MiB"
        + (" (TIMED OUT)" if run.timed_out else ""),
        flush=True,
    )
    return out


def max_rel(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) / max(abs(y), 1e-300) for x, y in zip(a, b, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--r-rows", type=int, default=0, help="fit R on the first N rows")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip-r", action="store_true")
    parser.add_argument("--skip-svy", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--blas-threads",
        default="1",
        help="OPENBLAS/OMP/MKL_NUM_THREADS of every worker ('' leaves them unset)",
    )
    parser.add_argument("--worker", choices=["volna", "svy"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--head", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker = {"volna": volna_worker, "svy": svy_worker}[args.worker]
        worker(args.path, args.repeat, args.head)
        return

    if args.blas_threads:
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = args.blas_threads
    why_not_r = None if args.skip_r else r_available()
    with_r = not args.skip_r and why_not_r is None
    parquet, csv_path = make_data(args.rows, csv=with_r)
    me = [str(Path(__file__).resolve())]
    base = ["--path", str(parquet), "--repeat", str(args.repeat)]
    runs: dict[str, dict] = {}
    blas = args.blas_threads or "unset"
    print(f"logistic y ~ x1..x10 on {args.rows:,} rows, {N_REPLICATES} SDR replicates")
    print(f"BLAS threads per worker: {blas}")
    runs["volna"] = run_worker("volna", [sys.executable, *me, "--worker", "volna", *base], 1e9)
    if not args.skip_svy:
        command = [str(svy_python()), *me, "--worker", "svy", *base]
        runs["svy"] = run_worker("svy", command, args.timeout)
    r_rows = args.r_rows if 0 < args.r_rows < args.rows else args.rows
    if with_r:
        command = ["Rscript", str(R_SCRIPT), str(csv_path), str(r_rows)]
        runs["R"] = run_worker("R", command, args.timeout)
        if r_rows < args.rows:
            command = [sys.executable, *me, "--worker", "volna", *base, "--head", str(r_rows)]
            runs["volna_sub"] = run_worker(f"volna on {r_rows:,} rows", command, 1e9)
    elif not args.skip_r:
        print(f"  R skipped: {why_not_r}")
    report(runs, args.rows, r_rows)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


def report(runs: dict[str, dict], rows: int, r_rows: int) -> None:
    matrix = rows * N_REPLICATES * 8 / 2**20
    volna = runs["volna"]

    def sec(run, step):
        value = run.get(step, {}).get("seconds")
        return value if isinstance(value, (int, float)) else None

    print(
        f"\n{'engine':10s} {'rows':>9s} {'read s':>7s} {'design s':>8s} {'fit s':>8s}"
        f" {'peak MiB':>9s} {'added MiB':>9s} {'added/matrix':>12s}"
    )
    for name, run in runs.items():
        n = r_rows if name in ("R", "volna_sub") else rows
        m = n * N_REPLICATES * 8 / 2**20
        added = None
        if "peak_after_read_mb" in run and "after_read_mb" in run:
            added = max(0.0, run["peak_after_read_mb"] - run["after_read_mb"])
        cells = [sec(run, "read"), sec(run, "design"), sec(run, "fit")]
        text = " ".join(f"{v:>8.2f}" if v is not None else f"{'-':>8s}" for v in cells)
        added_text = f"{added:9.0f} {added / m:11.2f}x" if added is not None else ""
        print(f"{name:10s} {n:9,d} {text} {run['peak_mb']:9.0f} {added_text}")
    print(f"(replicate-weight matrix: {matrix:.0f} MiB at {rows:,} rows)")

    print("\nagreement with volna (largest relative difference):")
    for name in ("svy", "R"):
        run = runs.get(name)
        ref = runs["volna_sub"] if name == "R" and "volna_sub" in runs else volna
        if run and "coef" in run and "coef" in ref:
            print(
                f"  {name:4s} coefficients {max_rel(run['coef'], ref['coef']):.1e}, "
                f"SEs {max_rel(run['se'], ref['se']):.1e}"
            )

    print("\ntargets:")
    fit = sec(volna, "fit")
    design_fit = (sec(volna, "design") or 0) + (fit or 0)
    if "svy" in runs and sec(runs["svy"], "fit") and fit:
        s = runs["svy"]
        ratio = sec(s, "fit") / fit
        both = ((sec(s, "design") or 0) + sec(s, "fit")) / design_fit
        verdict = "met" if ratio >= 5 else "MISSED"
        print(f"  svy/volna >= 5x:  fit {ratio:.1f}x (design + fit {both:.1f}x)  {verdict}")
    if "R" in runs and sec(runs["R"], "fit"):
        ref = runs.get("volna_sub", volna)
        ratio = sec(runs["R"], "fit") / sec(ref, "fit")
        both = (sec(runs["R"], "design") + sec(runs["R"], "fit")) / (
            sec(ref, "design") + sec(ref, "fit")
        )
        verdict = "met" if ratio >= 50 else "MISSED"
        where = f"at {r_rows:,} rows" + (" (R on a subsample)" if r_rows < rows else "")
        print(f"  R/volna >= 50x:   fit {ratio:.1f}x (design + fit {both:.1f}x) {where}  {verdict}")
    if "peak_after_read_mb" in volna:
        added = max(0.0, volna["peak_after_read_mb"] - volna["after_read_mb"])
        verdict = "met" if added <= 1.5 * matrix else "MISSED"
        print(f"  volna peak added <= 1.5x matrix: {added / matrix:.2f}x  {verdict}")


if __name__ == "__main__":
    main()
