"""Benchmark: building and writing the report, on the example and at 1,000,000 rows.

The issue's figures: the example report (2,000 respondents) under 10 s; 1,000,000
respondents with 80 replicate weights under 60 s. Steps timed separately (generating
the data is not counted): the report's build (estimates, tests, rules, charts) and its
writing (HTML, XLSX, Markdown), for one language.

    python benchmarks/report.py                   # the example, and 1M x 80 replicates
    python benchmarks/report.py --rows 2000       # the example only
    python benchmarks/report.py --weighted        # 1M x 80 raked as the example is

At 1M rows the example configuration is used with replicate weights instead of the
recruitment-channel clusters (``design: {replicate_weights: repw, type: bootstrap}``);
by default without its weighting step, with ``--weighted`` as configured; always
without its screening step (timed by ``benchmarks/screening.py``). The example (2,000
rows) runs with its whole configuration: screening, raking, clusters.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

import volna
from volna.examples import example_path
from volna.examples.generate_okrussians import generate
from volna.report.build import build_report
from volna.report.config import parse_config
from volna.report.write import write_report

REPLICATES = 80


def example_config(replicates: bool, weighted: bool):
    text = Path(example_path("okrussians", "report.yaml")).read_text(encoding="utf-8")
    if replicates:
        text = text.replace(
            "design:\n  clusters: channel\n",
            "design:\n  replicate_weights: repw\n  type: bootstrap\n",
        )
    if not weighted:
        text = re.sub(r"\nweighting:\n(  .*\n)+", "\n", text)
    if replicates:
        # screening a million rows is timed by benchmarks/screening.py (about 21 s)
        text = re.sub(r"\nscreening:\n(  .*\n)+", "\n", text)
    return parse_config(text, "report.yaml", base=example_path("okrussians"))


def run(rows: int, weighted: bool, lang: str) -> dict[str, float]:
    frame, _ = generate(n=rows, seed=1)
    replicates = rows > 100_000
    if replicates:
        # bootstrap-like replicate factors, one per respondent and replicate
        rng = np.random.default_rng(1)
        factors = rng.poisson(1.0, size=(rows, REPLICATES)).astype(float)
        frame = frame.with_columns(
            [pl.Series(f"repw{j + 1}", factors[:, j]) for j in range(REPLICATES)]
        )
    questionnaire = volna.Questionnaire.load(example_path("okrussians", "questionnaire.yaml"))
    config = example_config(replicates, weighted or not replicates)
    t0 = time.perf_counter()
    report = build_report(questionnaire, frame, config, lang=lang)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        write_report(report, Path(out))
    t2 = time.perf_counter()
    return {"build": t1 - t0, "write": t2 - t1, "total": t2 - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[2000, 1_000_000])
    parser.add_argument("--weighted", action="store_true", help="rake the 1M-row replicates")
    parser.add_argument("--lang", default="en")
    args = parser.parse_args()
    head = ("respondents", "replicates", "build s", "write s", "total s")
    print(f"{head[0]:>12s} {head[1]:>10s} {head[2]:>8s} {head[3]:>8s} {head[4]:>8s}")
    for rows in args.rows:
        times = run(rows, args.weighted, args.lang)
        reps = REPLICATES if rows > 100_000 else 0
        print(
            f"{rows:>12,d} {reps:>10d} {times['build']:>8.1f} {times['write']:>8.1f} "
            f"{times['total']:>8.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
