"""Run one benchmark worker in its own process: its JSON lines, its own peak memory.

Shared by ``estimate.py``, ``glm.py`` and ``weighting.py``: each step runs in a fresh
process so that the peak resident memory ``wait4`` reports is that step's alone; inside a
worker, the JSON lines it prints and the memory it holds after reading the data; and
whether R's survey package can be a peer here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class WorkerRun:
    """What a worker printed and cost."""

    records: list[dict]  # the JSON objects it printed, one per line
    stderr_tail: str  # the last 3,000 characters of its standard error
    exit_code: int
    peak_kib: int  # ru_maxrss of the worker alone
    wall: float  # seconds
    timed_out: bool


def run_measured(
    command: list[str], timeout: float, preexec_fn: Callable[[], None] | None = None
) -> WorkerRun:
    """Run ``command``, killing it after ``timeout`` seconds; see :class:`WorkerRun`."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, text=True, preexec_fn=preexec_fn)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                timed_out = True
                break
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
        elapsed = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        records = [json.loads(line) for line in out if line.strip().startswith("{")]
        tail = err.read()[-3000:]
    return WorkerRun(
        records, tail, os.waitstatus_to_exitcode(status), usage.ru_maxrss, elapsed, timed_out
    )


def r_available() -> str | None:
    """Why R cannot run, or None when Rscript and the survey package are there."""
    if shutil.which("Rscript") is None:
        return "Rscript not found"
    done = subprocess.run(
        ["Rscript", "-e", "cat(requireNamespace('survey', quietly=TRUE))"],
        capture_output=True,
        text=True,
    )
    return None if done.stdout.strip().endswith("TRUE") else "R package survey not installed"


# ---------------------------------------------------------------------------------------
# inside a worker


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def memory_mib(field: str) -> float | None:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, from ``/proc/self/status``."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        return None
    return None


def mark_after_read(frame) -> None:
    """Emit what the process holds once the data is read, and restart its peak there.

    Writing 5 to ``/proc/self/clear_refs`` resets the peak RSS (``VmHWM``) to the
    current RSS, so the peak read at the end (:func:`mark_end`) is what the design and
    the estimates added on top of the data, not a transient of the reader.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        reset = True
    except OSError:
        reset = False
    emit({"info": "frame_mb", "value": frame.estimated_size() / 2**20})
    emit({"info": "after_read_mb", "value": memory_mib("VmRSS"), "reset": reset})


def mark_end() -> None:
    emit({"info": "peak_after_read_mb", "value": memory_mib("VmHWM")})
