"""Benchmark: raking 1,000,000 rows to 5 margins, against weightipy, balance, svy, ipfn, R.

What is measured, on synthetic data written once to ``benchmarks/data/`` (parquet for
the Python tools, CSV for R), in the same run:

* **data** -- 1,000,000 rows, 5 categorical variables ``v1..v5`` of 5, 8, 10, 15 and 20
  levels (58 in all; 120,000 possible cells). The variables are correlated through one
  shared latent factor (each is a cut of ``0.8 z + 0.6 e_j``), so raking needs tens of
  sweeps. The targets are Dirichlet(2) draws; the sample's level probabilities are
  pulled away from them towards a second Dirichlet draw, scaled so that the largest
  absolute margin gap is 0.19, as in a snowball sample. Fully raked, the weights have a
  Kish design effect of about 4.5. Seed 39 (the figures are printed when it is made).
  Target counts sum to the number of rows (mean weight 1).
* **1M x 5: the fit** -- each tool rakes to a largest relative margin error of
  ``--tol`` (1e-6) where it has such a rule (stopping rules differ: weightipy has its
  own, R's ``epsilon`` is a change of the joint table); the time is that of the
  weighting call, building the tool's own input structures included (scheme, Sample,
  design, contingency table), reading the file not. Runs under 5 s keep the best of
  ``--repeat``.
* **achieved accuracy** -- from each tool's weights, with one formula for all: the
  weights scaled to the target total, the largest ``|weighted count - target| /
  target`` over all 58 levels; also the Kish deff and the largest ``|w / w_volna - 1|``
  (weights at mean 1).
* **peak memory** -- each tool runs in a fresh process of its own (peers in their own
  venv under ``benchmarks/.venvs/<tool>/``, created on first use from PyPI: balance
  pins numpy<2 on Python 3.11); its peak RSS (``wait4``'s ``ru_maxrss``) covers the
  interpreter, the data and the fit.
* **volna's diagnostics at 1M** -- design effect and ASMD before/after, timed apart
  (``volna.diagnostics.diagnose``; a numpy fallback, labelled so, when that module is
  not there yet). Target: under 2 s.
* **many variables** -- 10,000 rows raked on 4 and on 10 variables of 10 levels
  (1e4 vs 1e10 possible cells). Tools that build the dense contingency table (ipfn's
  input, balance's ``MultiIndex.from_product``) cannot; each peer runs under a
  ``--scaling-timeout`` and an address-space cap (``--mem-cap-gb``) and is reported as
  failed or timed out. volna's peak must not grow with the number of cells.

Targets: volna <= 0.3 s and <= 300 MB peak at 1M x 5 (MB = 10^6 bytes throughout).

The peers' calls are in ``weighting_peer.py`` (and ``weighting_r.R``); volna's:
``SurveyDesign.from_frame(frame)``, ``[Margin.of(v, {level: count}) ...]``,
``design.rake(margins, tol=tol, max_iter=1000)``.

    python benchmarks/weighting.py [--rows 1000000] [--tol 1e-6] [--repeat 3]
        [--with-r | VOLNA_BENCH_R=1] [--tools volna,weightipy,balance,svy,ipfn]
        [--skip-scaling] [--skip-diagnostics] [--peers-from-project] [--json out.json]
    python benchmarks/weighting.py --setup     # only create the peers' venvs
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from workers import r_available, run_measured

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
VENVS = HERE / ".venvs"
PEER_SCRIPT = HERE / "weighting_peer.py"
R_SCRIPT = HERE / "weighting_r.R"

SEED = 39
ALPHA = 2.0  # Dirichlet concentration of the targets
MAIN_LEVELS = (5, 8, 10, 15, 20)
MAIN_RHO = 0.8  # loading of every variable on the shared latent factor
MAIN_GAP = 0.19  # largest absolute gap between a sample share and its target share
SCALING_LEVELS = 10
SCALING_RHO, SCALING_GAP = 0.6, 0.12  # deff ~3.7 at 10 variables (0.8/0.19 gives 24)
MAX_ITER = 1000

PEERS = ("weightipy", "balance", "balance-df", "svy", "ipfn")
TOOLS = ("volna", *PEERS, "R")
# what each peer's venv installs (versions measured; change deliberately)
PEER_REQUIREMENTS = {
    "weightipy": ["weightipy==0.4.2", "pyarrow"],
    "balance": ["balance==0.23.0", "pyarrow<22"],  # pyarrow 22+ needs numpy 2
    "svy": ["svy==0.35.0", "pyarrow"],
    "ipfn": ["ipfn==1.4.4", "pandas", "pyarrow"],
}
PEER_MODULES = {"balance-df": "balance"}  # otherwise the tool's name
VENV_OF = {"balance-df": "balance"}  # balance-df runs in balance's venv
PEERS_IN_PROJECT = ("weightipy", "svy", "ipfn")  # the bench extra; balance never

VOLNA_FIT_TARGET_S = 0.3
VOLNA_PEAK_TARGET_MB = 300.0
DIAG_TARGET_S = 2.0


# ---------------------------------------------------------------------------------------
# data


def stem(rows: int, levels: tuple[int, ...], rho: float, gap: float) -> str:
    return f"weighting_{rows}_{'-'.join(map(str, levels))}_s{SEED}_r{rho:g}_g{gap:g}"


def level_names(k: int) -> list[str]:
    return [f"L{i + 1:02d}" for i in range(k)]


def make_data(
    rows: int, levels: tuple[int, ...], rho: float, gap: float, csv: bool
) -> dict[str, Path]:
    """Write (once) the rows as parquet, the margins as JSON (and CSV for R), the codes."""
    import numpy as np
    import polars as pl
    from scipy.special import ndtr

    name = stem(rows, levels, rho, gap)
    paths = {
        "parquet": DATA / f"{name}.parquet",
        "margins": DATA / f"{name}.margins.json",
        "codes": DATA / f"{name}.codes.npz",
        "csv": DATA / f"{name}.csv",
        "margins_csv": DATA / f"{name}.margins.csv",
    }
    DATA.mkdir(exist_ok=True)
    if not all(paths[k].exists() for k in ("parquet", "margins", "codes")):
        start = time.perf_counter()
        rng = np.random.default_rng(SEED)
        # margins first, so they do not depend on the number of rows
        shares = [rng.dirichlet(np.full(k, ALPHA)) for k in levels]
        away = [rng.dirichlet(np.full(k, ALPHA)) for k in levels]
        scale = gap / max(float(np.abs(a - t).max()) for t, a in zip(shares, away, strict=True))
        z = rng.standard_normal(rows)
        noise = np.sqrt(1.0 - rho**2)
        columns, codes, targets, spec_levels = {}, {}, {}, {}
        for j, (k, t, a) in enumerate(zip(levels, shares, away, strict=True)):
            var = f"v{j + 1}"
            p = t + scale * (a - t)
            u = ndtr(rho * z + noise * rng.standard_normal(rows))
            c = np.minimum(np.searchsorted(np.cumsum(p), u), k - 1).astype(np.int16)
            names = level_names(k)
            columns[var] = pl.Series(var, np.asarray(names)[c]).cast(pl.Enum(names))
            codes[var] = c
            targets[var] = {lv: float(x) * rows for lv, x in zip(names, t, strict=True)}
            spec_levels[var] = names
        pl.DataFrame(columns).write_parquet(paths["parquet"])
        np.savez(paths["codes"], **codes)
        spec = {
            "rows": rows,
            "seed": SEED,
            "variables": list(columns),
            "levels": spec_levels,
            "targets": targets,
        }
        paths["margins"].write_text(json.dumps(spec, indent=1))
        print(f"wrote {paths['parquet'].name} in {time.perf_counter() - start:.1f} s")
    if csv and not paths["csv"].exists():
        pl.read_parquet(paths["parquet"]).write_csv(paths["csv"])
        spec = json.loads(paths["margins"].read_text())
        rows_out = [
            {"variable": v, "level": lv, "count": spec["targets"][v][lv]}
            for v in spec["variables"]
            for lv in spec["levels"][v]
        ]
        pl.DataFrame(rows_out).write_csv(paths["margins_csv"], float_precision=None)
    return paths


def describe_data(paths: dict[str, Path]) -> dict[str, Any]:
    """The sample's largest margin gap and its number of occupied cells."""
    import numpy as np

    spec = json.loads(paths["margins"].read_text())
    codes = np.load(paths["codes"])
    rows = spec["rows"]
    gap, key, possible = 0.0, np.zeros(rows, dtype=np.int64), 1.0
    for v in spec["variables"]:
        k = len(spec["levels"][v])
        t = np.array([spec["targets"][v][lv] for lv in spec["levels"][v]]) / rows
        s = np.bincount(codes[v], minlength=k) / rows
        gap = max(gap, float(np.abs(s - t).max()))
        possible *= k
        if possible < 2**62:
            key = key * k + codes[v]
    cells = len(np.unique(key)) if possible < 2**62 else None
    return {
        "rows": rows,
        "vars": len(spec["variables"]),
        "gap": gap,
        "cells": cells,
        "possible": possible,
    }


def margin_report(paths: dict[str, Path], w, reference=None) -> dict[str, Any]:
    """Achieved accuracy of weights ``w``: one formula for every tool."""
    import numpy as np

    spec = json.loads(paths["margins"].read_text())
    codes = np.load(paths["codes"])
    w = np.asarray(w, dtype=float)
    out: dict[str, Any] = {}
    if w.shape != (spec["rows"],) or not np.all(np.isfinite(w)):
        out["bad_weights"] = f"shape {w.shape}, finite {bool(np.all(np.isfinite(w)))}"
        return out
    total = sum(spec["targets"][spec["variables"][0]].values())
    scaled = w * (total / w.sum())
    worst = 0.0
    for v in spec["variables"]:
        t = np.array([spec["targets"][v][lv] for lv in spec["levels"][v]])
        got = np.bincount(codes[v], weights=scaled, minlength=len(t))
        worst = max(worst, float(np.max(np.abs(got - t) / t)))
    out["error"] = worst
    out["deff"] = float(len(w) * np.sum(w**2) / w.sum() ** 2)
    if reference is not None:
        a, b = w / w.mean(), reference / reference.mean()
        with np.errstate(divide="ignore", invalid="ignore"):
            out["vs_volna"] = float(np.max(np.abs(a / b - 1.0)))
    return out


# ---------------------------------------------------------------------------------------
# volna, in a fresh process of the project venv


def volna_worker(task: str, data: str, margins: str, tol: float, repeat: int, out: str):
    import numpy as np
    import polars as pl
    from weighting_peer import best_of

    from volna.design import SurveyDesign
    from volna.margins import Margin

    spec = json.loads(Path(margins).read_text())
    variables = spec["variables"]
    frame = pl.read_parquet(data)

    def fit():
        design = SurveyDesign.from_frame(frame)
        ms = [Margin.of(v, spec["targets"][v]) for v in variables]
        return design.rake(ms, tol=tol, max_iter=MAX_ITER)

    if task == "baseline":  # the same process without the fit: imports + data
        print(json.dumps({"tool": "volna", "frame_mb": frame.estimated_size() / 1e6}))
        return
    if task == "rake":
        raked, info = best_of(fit, repeat)
        step = raked.weighting[-1]
        info.update(iterations=step.iterations, converged=step.converged, own_error=step.max_error)
        np.save(out, np.asarray(raked.weights, dtype=np.float64))
        print(json.dumps({"tool": "volna", **info}), flush=True)
        return

    # task == "diag": rake (not timed), then time the diagnostics
    before = SurveyDesign.from_frame(frame)
    ms = [Margin.of(v, spec["targets"][v]) for v in variables]
    after = before.rake(ms, tol=tol, max_iter=MAX_ITER)
    try:
        from volna.diagnostics import diagnose
    except ImportError:
        diagnose = None
    if diagnose is not None:
        how = "volna.diagnostics.diagnose(raked, margins)"

        def diag():
            report = diagnose(after, ms)
            m = report.margins
            return {
                "deff_before": report.design_effect["before"],
                "deff_after": report.design_effect["after"],
                "max_asmd_before": float(m.get_column("asmd_before").max()),
                "max_asmd_after": float(m.get_column("asmd_after").max()),
            }
    else:
        how = "numpy fallback (volna.diagnostics not there yet): Kish deff + ASMD"

        def diag():
            return _numpy_diagnostics(frame, before.weights, after.weights, spec)

    result, info = best_of(diag, repeat)
    summary = result if isinstance(result, dict) else {"repr": repr(result)[:300]}
    print(json.dumps({"tool": "volna", "how": how, **info, "summary": summary}), flush=True)


def _numpy_diagnostics(frame, w_before, w_after, spec) -> dict:
    """Kish deff before/after and the largest ASMD of a level against its target."""
    import numpy as np

    out: dict[str, Any] = {"max_asmd_before": 0.0, "max_asmd_after": 0.0}
    for label, w in (("before", w_before), ("after", w_after)):
        w = np.asarray(w, dtype=float)
        out[f"deff_{label}"] = float(len(w) * np.sum(w**2) / w.sum() ** 2)
    for v in spec["variables"]:
        names = spec["levels"][v]
        t = np.array([spec["targets"][v][lv] for lv in names])
        t = t / t.sum()
        codes = frame.get_column(v).to_physical().to_numpy()
        sd = np.sqrt(t * (1 - t))
        for label, w in (("before", w_before), ("after", w_after)):
            p = np.bincount(codes, weights=w, minlength=len(t)) / np.sum(w)
            key = f"max_asmd_{label}"
            out[key] = max(out[key], float(np.max(np.abs(p - t) / sd)))
    return out


# ---------------------------------------------------------------------------------------
# peers' venvs


def peer_python(tool: str, from_project: bool) -> str:
    if from_project and tool in PEERS_IN_PROJECT:
        return sys.executable
    return str(VENVS / VENV_OF.get(tool, tool) / "bin" / "python")


def ensure_venv(tool: str) -> None:
    """Create ``.venvs/<tool>`` and install the pinned peer from PyPI (once)."""
    tool = VENV_OF.get(tool, tool)
    venv = VENVS / tool
    stamp = venv / ".bench-requirements"
    wanted = "\n".join(PEER_REQUIREMENTS[tool])
    if stamp.exists() and stamp.read_text() == wanted:
        return
    VENVS.mkdir(exist_ok=True)
    ignore = VENVS / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")  # the venvs never enter git (nor ruff's view)
    base = getattr(sys, "_base_executable", sys.executable)
    print(f"creating {venv.relative_to(HERE.parent)}: {' '.join(PEER_REQUIREMENTS[tool])}")
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *PEER_REQUIREMENTS[tool]], check=True)
    stamp.write_text(wanted)


def peer_version(python: str, tool: str) -> str:
    module = PEER_MODULES.get(tool, tool)
    code = (
        "from importlib.metadata import version as v\n"
        f"out = [v('{module}')]\n"
        "try: out.append('numpy ' + v('numpy'))\n"
        "except Exception: pass\n"
        "print(', '.join(out))"
    )
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return done.stdout.strip() or "?"


def r_version() -> str:
    done = subprocess.run(
        [
            "Rscript",
            "-e",
            "cat(R.version$major, '.', R.version$minor, ', survey ', "
            "format(packageVersion('survey')), sep='')",
        ],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


# ---------------------------------------------------------------------------------------
# running workers


def run_worker(
    command: list[str], timeout: float, label: str, mem_cap_gb: float | None = None
) -> tuple[list[dict], dict]:
    """Run one worker; collect its JSON lines and its own peak RSS (from ``wait4``)."""

    def cap() -> None:
        if mem_cap_gb:
            limit = int(mem_cap_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    run = run_measured(command, timeout, preexec_fn=cap)
    records, tail, code, elapsed = run.records, run.stderr_tail, run.exit_code, run.wall
    meta: dict[str, Any] = {"peak_mb": run.peak_kib * 1024 / 1e6, "wall": elapsed}
    if run.timed_out:
        meta["failed"] = f"timeout after {timeout:.0f} s"
    elif code != 0:
        meta["failed"] = _last_error(tail) or f"exit {code}"
    elif not records:
        meta["failed"] = "no result"
    print(
        f"  ran {label}: {elapsed:6.1f} s wall, peak {meta['peak_mb']:6.0f} MB"
        + (f" -- FAILED: {meta['failed']}" if "failed" in meta else ""),
        flush=True,
    )
    return records, meta


def _last_error(stderr: str) -> str:
    """The exception line of a traceback (or R's 'Error' line), shortened."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    for i in range(len(lines) - 1, -1, -1):
        match = re.match(r"^([\w.]*(Error|Exception)|Error in .*?)\s*:\s*(.*)$", lines[i])
        if match:
            text = lines[i] if match.group(3) else " ".join(lines[i : i + 3])
            return re.sub(r"^(\w+\.)+", "", text)[:200]
    return lines[-1][:200] if lines else ""


def run_tool(
    tool: str,
    paths: dict[str, Path],
    args: argparse.Namespace,
    scratch: Path,
    *,
    timeout: float,
    mem_cap_gb: float | None = None,
    reference=None,
) -> dict[str, Any]:
    """One tool on one data set: fit time, peak, achieved accuracy (or why it failed)."""
    import numpy as np

    weights_out = scratch / f"{tool}-{paths['parquet'].stem}.npy"
    weights_out.unlink(missing_ok=True)
    if tool == "volna":
        command = [
            args.volna_python,
            str(Path(__file__).resolve()),
            "--worker",
            "rake",
            "--data",
            str(paths["parquet"]),
            "--margins",
            str(paths["margins"]),
            "--tol",
            str(args.tol),
            "--repeat",
            str(args.repeat),
            "--weights-out",
            str(weights_out),
        ]
    elif tool == "R":
        weights_out = weights_out.with_suffix(".bin")
        command = [
            "Rscript",
            str(R_SCRIPT),
            str(paths["csv"]),
            str(paths["margins_csv"]),
            str(args.r_epsilon),
            str(args.r_maxit),
            str(weights_out),
        ]
    else:
        command = [
            peer_python(tool, args.peers_from_project),
            str(PEER_SCRIPT),
            "--tool",
            tool,
            "--data",
            str(paths["parquet"]),
            "--margins",
            str(paths["margins"]),
            "--tol",
            str(args.tol),
            "--repeat",
            str(args.repeat),
            "--weights-out",
            str(weights_out),
        ]
    label = f"{tool} ({paths['parquet'].stem})"
    records, meta = run_worker(command, timeout, label, mem_cap_gb)
    result: dict[str, Any] = {"tool": tool, **meta}
    if records:
        result.update(records[-1])
    if "failed" not in meta and weights_out.exists():
        r_binary = tool == "R"
        w = np.fromfile(weights_out, dtype=np.float64) if r_binary else np.load(weights_out)
        result.update(margin_report(paths, w, reference))
        result["_weights"] = w
        weights_out.unlink()
    return result


def run_diagnostics(paths, args, task: str = "diag") -> dict[str, Any]:
    command = [
        args.volna_python,
        str(Path(__file__).resolve()),
        "--worker",
        task,
        "--data",
        str(paths["parquet"]),
        "--margins",
        str(paths["margins"]),
        "--tol",
        str(args.tol),
        "--repeat",
        str(args.repeat),
        "--weights-out",
        "-",
    ]
    records, meta = run_worker(command, args.timeout, f"volna {task}")
    return {**meta, **(records[-1] if records else {})}


# ---------------------------------------------------------------------------------------
# report


def fmt_s(x) -> str:
    if not isinstance(x, float):
        return "-"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def fmt_e(x) -> str:
    return f"{x:.1e}" if isinstance(x, float) else "-"


def print_table(title: str, results: list[dict], data: dict) -> None:
    cells = f"{data['cells']:,} of " if data.get("cells") is not None else ""
    print(
        f"\n{title}: {data['rows']:,} rows x {data['vars']} variables, {cells}"
        f"{data['possible']:.3g} possible cells, largest margin gap {data['gap']:.3f}"
    )
    header = (
        f"{'tool':10s} {'fit s':>8s} {'first s':>8s} {'peak MB':>8s} {'margin err':>10s} "
        f"{'iters':>5s} {'deff':>6s} {'|w/w_volna-1|':>13s} {'ratio':>7s}  note"
    )
    print(header)
    print("-" * len(header))
    volna = next((r for r in results if r["tool"] == "volna"), {})
    base = volna.get("fit") if "failed" not in volna else None
    for r in results:
        fit = r.get("fit") if "failed" not in r else None
        ratio = "-"
        if isinstance(fit, float) and isinstance(base, float) and base > 0:
            ratio = f"{fit / base:.1f}x" if fit / base < 100 else f"{fit / base:.0f}x"
        if r["tool"] == "volna" and isinstance(fit, float):
            ratio = "1.0x"
        note = r.get("failed") or r.get("note") or ""
        if r.get("converged") is False:
            note = ("NOT converged; " + note).strip("; ")
        if r.get("runs", 1) > 1 and isinstance(r.get("first"), float):
            first = fmt_s(r["first"])
        else:
            first = ""
        iters = r.get("iterations")
        vs = "" if r["tool"] == "volna" else fmt_e(r.get("vs_volna"))
        deff = r.get("deff")
        print(
            f"{r['tool']:10s} {fmt_s(fit) if fit is not None else 'failed':>8s} {first:>8s} "
            f"{r['peak_mb']:8.0f} {fmt_e(r.get('error')):>10s} "
            f"{'' if iters is None else iters:>5} "
            f"{'' if deff is None else f'{deff:.3f}':>6s} {vs:>13s} {ratio:>7s}  {note}"
        )


def print_targets(
    main: list[dict], diag: dict | None, scaling: dict[int, list[dict]], rows: int
) -> None:
    print("\ntargets" + ("" if rows == 1_000_000 else " (set for 1,000,000 rows)") + ":")
    at = f"{rows:,} x 5"
    volna = next((r for r in main if r["tool"] == "volna"), None)
    if volna and "failed" not in volna:
        fit, peak = volna["fit"], volna["peak_mb"]
        ok = "met" if fit <= VOLNA_FIT_TARGET_S else "MISSED"
        print(f"  volna fit at {at}  <= {VOLNA_FIT_TARGET_S} s:  {fit:.3f} s  {ok}")
        ok = "met" if peak <= VOLNA_PEAK_TARGET_MB else "MISSED"
        print(f"  volna peak at {at} <= {VOLNA_PEAK_TARGET_MB:.0f} MB: {peak:.0f} MB  {ok}")
        if isinstance(volna.get("error"), float):
            own = volna.get("own_error", float("nan"))
            print(f"  volna margin error: {volna['error']:.1e} (its own report: {own:.1e})")
    elif volna:
        print(f"  volna at {at}: FAILED -- {volna['failed']}")
    if diag is not None:
        if "failed" in diag:
            print(f"  volna diagnostics: FAILED -- {diag['failed']}")
        else:
            ok = "met" if diag["fit"] < DIAG_TARGET_S else "MISSED"
            print(
                f"  volna deff + ASMD at {rows:,} < {DIAG_TARGET_S:.0f} s: {diag['fit']:.3f} s  "
                f"{ok}  [{diag.get('how')}; peak {diag['peak_mb']:.0f} MB]"
            )
    peaks = {
        k: next((r["peak_mb"] for r in rs if r["tool"] == "volna" and "failed" not in r), None)
        for k, rs in scaling.items()
    }
    if len(peaks) >= 2 and all(v is not None for v in peaks.values()):
        ks = sorted(peaks)
        lo, hi = peaks[ks[0]], peaks[ks[-1]]
        ok = "met" if hi <= 1.1 * lo + 10 else "MISSED"
        print(
            f"  volna peak flat in the number of cells: {ks[0]} vars {lo:.0f} MB, "
            f"{ks[-1]} vars {hi:.0f} MB  {ok}"
        )


# ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--repeat", type=int, default=3, help="runs per fit under 5 s")
    parser.add_argument(
        "--tools", default=",".join(TOOLS[:-1]), help="comma-separated; R also needs --with-r"
    )
    parser.add_argument(
        "--with-r",
        action="store_true",
        default=os.environ.get("VOLNA_BENCH_R") == "1",
        help="also R's survey::rake (about a minute at 1M rows); or VOLNA_BENCH_R=1",
    )
    parser.add_argument("--r-epsilon", type=float, default=1e-6, help="rake(control=) epsilon")
    parser.add_argument("--r-maxit", type=int, default=100, help="rake(control=) maxit")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per 1M worker")
    parser.add_argument("--skip-diagnostics", action="store_true")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--scaling-rows", type=int, default=10_000)
    parser.add_argument("--scaling-vars", default="4,10", help="numbers of 10-level variables")
    parser.add_argument("--scaling-timeout", type=float, default=120)
    parser.add_argument(
        "--mem-cap-gb", type=float, default=12, help="address-space cap of peers, scaling runs"
    )
    parser.add_argument(
        "--peers-from-project",
        action="store_true",
        help="run weightipy, svy and ipfn with this interpreter (the bench extra) instead "
        "of their own venvs; balance always has its own",
    )
    parser.add_argument(
        "--volna-python", default=sys.executable, help="interpreter with volna installed"
    )
    parser.add_argument("--setup", action="store_true", help="only create the peers' venvs")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--margins", help=argparse.SUPPRESS)
    parser.add_argument("--weights-out", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        volna_worker(args.worker, args.data, args.margins, args.tol, args.repeat, args.weights_out)
        return

    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = sorted(set(tools) - set(TOOLS))
    if unknown:
        parser.error(f"unknown tools {unknown}; choose from {TOOLS}")
    if args.with_r and "R" not in tools:
        tools.append("R")
    why_no_r = None if args.with_r else "not asked (--with-r or VOLNA_BENCH_R=1)"
    if args.with_r:
        why_no_r = r_available()
    if why_no_r and "R" in tools:
        tools.remove("R")
    peers = [t for t in tools if t in PEERS]
    for tool in peers:
        if not (args.peers_from_project and tool in PEERS_IN_PROJECT):
            ensure_venv(tool)
    if args.setup:
        return

    versions = {"volna": _volna_version(), "python": sys.version.split()[0]}
    for tool in peers:
        versions[tool] = peer_version(peer_python(tool, args.peers_from_project), tool)
    if "R" in tools:
        versions["R"] = r_version()
    print("versions: " + "; ".join(f"{k} {v}" for k, v in versions.items()))
    if why_no_r:
        print(f"R skipped: {why_no_r}")

    with_r = "R" in tools
    raw: dict[str, Any] = {"versions": versions, "tol": args.tol}
    scratch = DATA / "weighting_weights"
    scratch.mkdir(parents=True, exist_ok=True)

    # -- 1M x 5 ---------------------------------------------------------------------------
    paths = make_data(args.rows, MAIN_LEVELS, MAIN_RHO, MAIN_GAP, csv=with_r)
    data = describe_data(paths)
    main_results: list[dict] = []
    reference = None
    for tool in tools:
        res = run_tool(tool, paths, args, scratch, timeout=args.timeout, reference=reference)
        if tool == "volna" and "_weights" in res:
            reference = res["_weights"]
        main_results.append(res)

    diag = baseline = None
    if "volna" in tools:
        baseline = run_diagnostics(paths, args, "baseline")
        if not args.skip_diagnostics:
            diag = run_diagnostics(paths, args)

    # -- 10k x many variables ------------------------------------------------------------
    scaling: dict[int, list[dict]] = {}
    scaling_data: dict[int, dict] = {}
    if not args.skip_scaling:
        for k in (int(x) for x in args.scaling_vars.split(",")):
            levels = (SCALING_LEVELS,) * k
            spaths = make_data(args.scaling_rows, levels, SCALING_RHO, SCALING_GAP, csv=with_r)
            scaling_data[k] = describe_data(spaths)
            ref = None
            scaling[k] = []
            for tool in tools:
                res = run_tool(
                    tool,
                    spaths,
                    args,
                    scratch,
                    timeout=args.scaling_timeout if tool != "volna" else args.timeout,
                    mem_cap_gb=args.mem_cap_gb if tool != "volna" else None,
                    reference=ref,
                )
                if tool == "volna" and "_weights" in res:
                    ref = res["_weights"]
                scaling[k].append(res)

    # -- report --------------------------------------------------------------------------
    print(
        f"\nraking to a largest relative margin error of {args.tol:g} (where the tool has "
        "that rule); fit = the weighting call, best of the runs under 5 s"
    )
    print_table(f"{data['rows']:,} x 5", main_results, data)
    for k, results in scaling.items():
        print_table(f"{args.scaling_rows:,} x {k}", results, scaling_data[k])
    if diag is not None and "failed" not in diag:
        print(
            f"\nvolna diagnostics at {data['rows']:,} rows: {diag['fit']:.3f} s "
            f"(first {diag['first']:.3f} s), peak {diag['peak_mb']:.0f} MB; {diag['how']}"
        )
    print_targets(main_results, diag, scaling, data["rows"])
    if baseline is not None and "failed" not in baseline:
        print(
            f"  (volna's process without the fit -- imports and the data, a "
            f"{baseline['frame_mb']:.1f} MB frame -- peaks at {baseline['peak_mb']:.0f} MB)"
        )
    print(
        "\nmargin err: largest |weighted count - target| / target over every level, weights "
        "scaled to the target total; ratio: tool fit / volna fit; peak: the tool's whole "
        "process (interpreter + data + fit), MB = 10^6 bytes"
    )
    if args.json:
        strip = [{k: v for k, v in r.items() if k != "_weights"} for r in main_results]
        raw.update(data=data, main=strip, diagnostics=diag, volna_baseline=baseline)
        raw["scaling"] = {
            k: {
                "data": scaling_data[k],
                "results": [{kk: vv for kk, vv in r.items() if kk != "_weights"} for r in rs],
            }
            for k, rs in scaling.items()
        }
        args.json.write_text(json.dumps(raw, indent=1, default=str))


def _volna_version() -> str:
    head = subprocess.run(
        ["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    )
    dirty = subprocess.run(
        ["git", "-C", str(HERE.parent), "status", "--porcelain", "src"],
        capture_output=True,
        text=True,
    )
    return head.stdout.strip() + (" + uncommitted src/" if dirty.stdout.strip() else "")


if __name__ == "__main__":
    main()
