"""Benchmark: read and validate a large CSV of the OK Russians questionnaire.

Target (issue 2): 1,000,000 rows read and validated in under 10 s and under
2 GB peak memory on a 2-core machine. As a yardstick the same file is also
read by pandas (``read_csv`` with every column as text, no checks at all),
so the figure is a ratio against a named peer measured in the same run.

Each measurement runs in a fresh process so peak memory (ru_maxrss) belongs
to that step alone.

    python benchmarks/read_validate.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
DATA = HERE / "data"

STEPS = {
    "volna read+validate": """
from volna import Questionnaire, example_path
from volna.validation import validate
q = Questionnaire.load(example_path("okrussians", "questionnaire.yaml"))
report = validate(PATH, q)
result = {"rows": report.n_rows, "problems": len(report.problems)}
""",
    "volna read": """
from volna import Questionnaire, example_path, read
q = Questionnaire.load(example_path("okrussians", "questionnaire.yaml"))
frame = read(PATH, q)
result = {"rows": frame.height}
""",
    "pandas read_csv (text, no checks)": """
import pandas as pd
frame = pd.read_csv(PATH, dtype=str, keep_default_na=False)
result = {"rows": len(frame)}
""",
}

RUNNER = """
import json, resource, sys, time
PATH = sys.argv[1]
start = time.perf_counter()
{code}
seconds = time.perf_counter() - start
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"seconds": seconds, "peak_mb": peak_mb, **result}}))
"""


def make_data(rows: int) -> Path:
    """Write (once) a CSV of ``rows`` synthetic respondents."""
    path = DATA / f"okrussians_{rows}.csv"
    if not path.exists():
        from volna.examples.generate_okrussians import write_example

        DATA.mkdir(exist_ok=True)
        start = time.perf_counter()
        write_example(path, n=rows, seed=7)
        print(f"generated {path} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return path


def run(code: str, path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", RUNNER.format(code=code), str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per step; the best is kept")
    args = parser.parse_args()
    path = make_data(args.rows)
    size_mb = path.stat().st_size / 1e6
    print(f"{args.rows:,} rows, {size_mb:.0f} MB CSV")
    results = {}
    for name, code in STEPS.items():
        runs = [run(code, path) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r["seconds"])
        results[name] = best
        extra = f", {best['problems']} problems" if "problems" in best else ""
        print(f"{name:38s} {best['seconds']:6.2f} s  peak {best['peak_mb']:6.0f} MB{extra}")
    peer = results["pandas read_csv (text, no checks)"]["seconds"]
    mine = results["volna read+validate"]["seconds"]
    print(f"volna read+validate / pandas read_csv = {mine / peer:.2f}")


if __name__ == "__main__":
    main()
