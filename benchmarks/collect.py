"""Load on the real web questionnaire: many respondents at once, nothing lost, nothing twice.

Run by hand::

    .venv/bin/python benchmarks/collect.py                      # SQLite, 200 clients, 10,000
    .venv/bin/python benchmarks/collect.py --db postgresql      # a throwaway local cluster
    .venv/bin/python benchmarks/collect.py --clients 400 --submissions 2000 --nojs-every 1
        [--pg-fsync off] [--json out.json] [--keep DIR]

Starts ``volna serve`` (the example questionnaire, keys from ``volna keygen``,
``--min-seconds 0``, a rate cap far above the load) on a free loopback port
with a temporary SQLite file, or on a PostgreSQL cluster started for the run
(``tests/postgres.py``; durable commits, ``fsync=on``, unless ``--pg-fsync
off``). Then ``--clients`` asyncio respondents, each on its own HTTP
connection, GET the form, take its token and POST a valid answer until
``--submissions`` are sent: every ``--nojs-every``-th as form fields (the
no-JavaScript path: the server validates and seals), the others sealed on the
client as form.js does. Every answer carries a unique marker, and ``volna
export`` must give back each acknowledged submission exactly once, as sent.

Prints throughput (acknowledged submissions per second of wall time), the
latency of the submission POST (p50, p99, max; all, and per path), of the
form GET, the outcomes by status, the CPU seconds of the server and of the
client process (both share the machine's cores, so a client-bound run says
so), and the export check: lost, duplicated, unexpected, altered. Exits 1 if
any submission was lost, duplicated, altered or refused.

Measured 2026-11-27 (2-core VM shared with other work, +-30%), 200 clients,
every run: all acknowledged, 0 lost, 0 duplicated, 0 altered, 0 tracebacks.
Since the server validates the no-JavaScript submissions that arrive together in
one call (``collect.app.Validations``):

=========================  ======  ========  =======  =======  =======  ==========
run                        sent    per s     p50 ms   p99 ms   max ms   server CPU
=========================  ======  ========  =======  =======  =======  ==========
SQLite, half without JS    10,000  186.9     862      2,211    2,753    51 s
PostgreSQL, half w/o JS    10,000  122.4     1,078    3,350    3,865    57 s
SQLite, all without JS     2,000   129.5     1,408    1,849    1,995    12 s
=========================  ======  ========  =======  =======  =======  ==========

Before (one validation per submission, load average 5-10): half without JS 59.4
per s (p50 2,931, p99 5,120 ms; PostgreSQL 57.9), all without JS 36.2 per s
(p50 5,314 ms), all sealed 183.9 per s (p50 921, p99 1,260 ms).

Latency is of the submission POST; with 200 clients always waiting on a saturated
server it is mostly queueing. Per path in the mixed SQLite run: no-JS p50 1,566 /
p99 2,364 ms, sealed p50 383 / p99 870 ms; form GET p50 46 / p99 594 ms. The
client (200 asyncio respondents, ~3 ms of CPU per submission) shares the two
cores. One client at a time: GET 3 ms, sealed POST 3 ms, no-JS POST 42 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import collect_server as cs  # noqa: E402  (tests/ holds the server and respondent helpers)
from volna.collect import crypto  # noqa: E402
from volna.questionnaire.model import Questionnaire  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def latency(values: list[float]) -> dict[str, float]:
    """p50, p99 and max in milliseconds."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": round(cs.percentile(values, 0.50) * 1000, 1),
        "p99_ms": round(cs.percentile(values, 0.99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


def check(rows: list[dict[str, str]], load: cs.Load, questionnaire: Questionnaire) -> dict:
    """Lost, duplicated, unexpected and altered submissions in the exported rows."""
    sent = {a.marker: a for a in load.attempts if a.path}
    counts = Counter(row["sector_other"] for row in rows)
    altered = 0
    for row in rows:
        attempt = sent.get(row["sector_other"])
        if attempt is None:
            continue
        expected = cs.canonical_row(questionnaire, cs.answers(attempt.number, attempt.marker))
        altered += any(row[column] != value for column, value in expected.items())
    return {
        "exported_rows": len(rows),
        "lost": sum(1 for a in load.acked if counts[a.marker] == 0),
        "duplicated": sum(1 for n in counts.values() if n > 1),
        "unexpected": sum(1 for m in counts if m not in sent),
        "altered": altered,
        "stored_but_not_acked": sum(1 for m in counts if m in sent and not sent[m].acked),
    }


def run(args: argparse.Namespace, folder: Path, db: str) -> dict:
    questionnaire = Questionnaire.load(cs.QUESTIONNAIRE)
    private, public = cs.make_keys(folder)
    public_key = crypto.load_public_key(public)
    with cs.serving(db, public, folder) as server:
        server_cpu = cpu_seconds(server.process.pid)
        client_cpu = time.process_time()
        load = asyncio.run(
            cs.run_load(
                server.url,
                args.submissions,
                args.clients,
                public_key,
                questionnaire,
                nojs_every=args.nojs_every,
            )
        )
        client_cpu = time.process_time() - client_cpu
        server_cpu = cpu_seconds(server.process.pid) - server_cpu
    output = server.output()
    started = time.perf_counter()
    rows = cs.export(db, private, folder / "export.csv")
    export_seconds = time.perf_counter() - started
    posts = [a for a in load.attempts if a.seconds is not None]
    result = {
        "db": args.db,
        "clients": args.clients,
        "submissions": args.submissions,
        "nojs_every": args.nojs_every,
        "wall_s": round(load.seconds, 2),
        "acked": len(load.acked),
        "throughput_per_s": round(len(load.acked) / load.seconds, 1),
        "peak_requests_under_way": load.peak,
        "post_latency": latency([a.seconds for a in posts]),
        "post_latency_nojs": latency([a.seconds for a in posts if a.mode == "nojs"]),
        "post_latency_js": latency([a.seconds for a in posts if a.mode == "js"]),
        "form_get_latency": latency(load.form_seconds),
        "outcomes": load.outcomes(),
        "server_cpu_s": round(server_cpu, 1),
        "client_cpu_s": round(client_cpu, 1),
        "export_s": round(export_seconds, 2),
        "server_output_tracebacks": output.count(b"Traceback"),
        **check(rows, load, questionnaire),
    }
    return result


def describe() -> dict:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    return {"commit": commit, "python": platform.python_version(), "cores": os.cpu_count()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--submissions", type=int, default=10_000)
    parser.add_argument(
        "--nojs-every", type=int, default=2, help="every N-th submission without JavaScript"
    )
    parser.add_argument("--pg-fsync", choices=("on", "off"), default="on")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            folder = args.keep
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="volna-load-")))
        if args.db == "postgresql":
            from postgres import fresh_database, postgres_cluster

            url = stack.enter_context(postgres_cluster(fsync=args.pg_fsync == "on"))
            db = fresh_database(url)
        else:
            db = f"sqlite:///{folder / 'responses.db'}"
        result = {**describe(), **run(args, folder, db)}

    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    bad = result["lost"] + result["duplicated"] + result["unexpected"] + result["altered"]
    refused = result["submissions"] - result["acked"]
    return 1 if bad or refused or result["server_output_tracebacks"] else 0


if __name__ == "__main__":
    sys.exit(main())
