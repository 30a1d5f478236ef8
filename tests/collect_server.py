"""The real ``volna serve`` as a subprocess, and respondents that fill in its form.

Used by ``tests/test_collect_load.py`` and ``benchmarks/collect.py``. Everything
goes through the command line a researcher uses: ``volna keygen`` makes the
keys (passphrase from ``VOLNA_KEY_PASSPHRASE``), ``volna serve`` runs the form
on a loopback port with its stdout and stderr captured to files, ``volna
export`` opens what was stored. The respondents are asyncio clients, each with
its own HTTP connection: they GET the form, take the signed token from its
hidden field and POST the answers, either as form fields (the no-JavaScript
path, sealed by the server) or sealed here as form.js does (``POST /sealed``).

Every submission carries a unique marker in the one free-text answer of the
example questionnaire (``sector_other``, asked when ``employed=yes`` and
``sector=other``), so acknowledged submissions can be matched with exported rows.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from volna.collect import crypto
from volna.examples import example_path
from volna.questionnaire.model import Questionnaire

QUESTIONNAIRE = example_path("okrussians", "questionnaire.yaml")
PASSPHRASE = "load test: five words or more, please"
#: the command that runs volna: this interpreter, so no wrapper process stands in between
VOLNA = [sys.executable, "-m", "volna.cli"]
TOKEN = re.compile(r'name="token" value="([^"]+)"')
THANKS = 'id="thanks"'

COUNTRIES = ("GE", "AM", "TR", "RS", "KZ", "DE", "IL", "AE")
MONTHS = ("2022-02", "2022-03", "2022-09", "2022-10")
PLANS = ("stay", "move_on", "undecided")
VOTES = ("yabloko", "kprf", "no_vote")
GENDERS = ("female", "male")
CHANNELS = ("friends", "tg_news")
ACTIVITIES = ("petitions", "posts", "rallies", "refugees", "emigrants", "ngos")


def volna_env() -> dict[str, str]:
    """The environment for volna commands: passphrase for the key, unbuffered output."""
    return {**os.environ, "VOLNA_KEY_PASSPHRASE": PASSPHRASE, "PYTHONUNBUFFERED": "1"}


def make_keys(folder: Path) -> tuple[Path, Path]:
    """``volna keygen -o folder``: (private key file, public key file)."""
    subprocess.run(
        [*VOLNA, "keygen", "-o", str(folder)],
        env=volna_env(),
        check=True,
        capture_output=True,
        timeout=60,
    )
    return folder / "volna-private.pem", folder / "volna-public.key"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on at ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """One running ``volna serve``: its process, address and captured output files."""

    process: subprocess.Popen
    host: str
    port: int
    stdout: Path
    stderr: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def children(self) -> list[int]:
        """Process ids of the server's child processes (none: it is uvicorn itself)."""
        out = []
        for task in Path(f"/proc/{self.process.pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                out += [int(p) for p in (task / "children").read_text().split()]
        return out

    def kill(self) -> None:
        """``kill -9`` the server process: no shutdown handler, no flush, no checkpoint."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def output(self) -> bytes:
        """Everything the server printed so far, stdout then stderr."""
        return self.stdout.read_bytes() + self.stderr.read_bytes()


def start_server(
    db: str,
    public_key: Path,
    folder: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    rate_per_minute: float = 10_000_000,
    questionnaire: Path = QUESTIONNAIRE,
    timeout: float = 60,
) -> Server:
    """Start ``volna serve`` and wait until it answers ``GET /``; output appended to files."""
    port = port or free_port(host)
    stdout, stderr = folder / "server.stdout", folder / "server.stderr"
    command = [
        *VOLNA,
        "serve",
        str(questionnaire),
        "--public-key",
        str(public_key),
        "--db",
        db,
        "--host",
        host,
        "--port",
        str(port),
        "--min-seconds",
        "0",
        "--rate-per-minute",
        str(rate_per_minute),
    ]
    with open(stdout, "ab") as out, open(stderr, "ab") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=volna_env())
    server = Server(process, host, port, stdout, stderr)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(server.url + "/", timeout=5).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError(
                f"volna serve did not start (exit {process.returncode}): "
                + stderr.read_text(errors="replace")[-2000:]
            )
        time.sleep(0.1)


def stop_server(server: Server) -> None:
    """Stop the server as a service manager would (SIGTERM, then SIGKILL after 20 s)."""
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@contextlib.contextmanager
def serving(db: str, public_key: Path, folder: Path, **options) -> Iterator[Server]:
    """``with serving(db, key, folder) as server:`` a started server, stopped at the end."""
    server = start_server(db, public_key, folder, **options)
    try:
        yield server
    finally:
        stop_server(server)


def export(db: str, private_key: Path, output: Path) -> list[dict[str, str]]:
    """``volna export --db DB --key KEY -o OUTPUT.csv``: the rows written, every cell as text."""
    done = subprocess.run(
        [*VOLNA, "export", "--db", db, "--key", str(private_key), "-o", str(output)],
        env=volna_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"volna export failed ({done.returncode}): {done.stderr[-2000:]}")
    with open(output, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- answers


def answers(number: int, marker: str) -> dict[str, str | list[str]]:
    """A valid answer of the example questionnaire, varied by ``number``, as form fields."""
    chosen = [ACTIVITIES[number % 6], ACTIVITIES[(number // 6) % 6]]
    vote = VOTES[number % 3]
    fields: dict[str, str | list[str]] = {
        "destination": COUNTRIES[number % len(COUNTRIES)],
        "left_month": MONTHS[number % len(MONTHS)],
        "plans": PLANS[number % len(PLANS)],
        "employed": "yes",
        "sector": "other",
        "sector_other": marker,
        "vote_2021": vote,
        "activity_before": sorted(set(chosen)),
        "activity_after": ["none"] if number % 2 else [ACTIVITIES[number % 6]],
        "age": str(18 + number % 70),
        "gender": GENDERS[number % 2],
        "channel": CHANNELS[number % 2],
    }
    if vote != "no_vote":  # asked only of those who voted
        fields["smart_voting"] = "yes" if number % 4 else "no"
    return fields


def canonical_row(questionnaire: Questionnaire, fields: dict) -> dict[str, str]:
    """The canonical row of the answers, written out by hand from the form fields.

    Multi-response questions become one ``question/code`` column of ``1``/``0``
    per option (empty when unanswered), every other answer is its code as text.
    """
    row: dict[str, str] = {}
    for q in questionnaire.answerable:
        value = fields.get(q.name)
        if q.type == "multiple":
            for code in q.codes:
                row[f"{q.name}/{code}"] = "" if value is None else ("1" if code in value else "0")
        else:
            row[q.name] = value or ""
        if q.other_column:
            row[q.other_column] = fields.get(q.other_column, "")
    return row


def sealed_field(public_key: crypto.PublicKey, language: str, row: dict[str, str]) -> str:
    """The ``sealed`` field form.js posts: the row sealed to the key, base64url."""
    plain = json.dumps({"v": 1, "lang": language, "answers": row}, ensure_ascii=False)
    envelope = crypto.seal(public_key, plain.encode("utf-8"))
    return base64.urlsafe_b64encode(envelope).rstrip(b"=").decode("ascii")


# --------------------------------------------------------------------------- respondents


@dataclass
class Attempt:
    """One respondent's submission: what was sent, and what the server answered."""

    number: int
    marker: str
    mode: str  # "nojs" (form fields to POST /) or "js" (sealed, to POST /sealed)
    language: str
    path: str = ""
    data: dict = field(default_factory=dict)
    status: int | None = None  # of the submission POST; None: no answer (connection lost)
    error: str = ""  # the exception's type when there was no answer
    seconds: float | None = None  # latency of the submission POST
    acked: bool = False  # the thanks page, or {"ok": true}

    @property
    def outcome(self) -> str:
        """How it ended, for counting: ``acked``, an HTTP status, or the error's type."""
        if self.acked:
            return "acked"
        return str(self.status) if self.status is not None else (self.error or "not sent")


def acknowledged(mode: str, response: httpx.Response) -> bool:
    """True if the response is the server's success answer for this path."""
    if response.status_code != 200:
        return False
    if mode == "js":
        try:
            return response.json().get("ok") is True
        except ValueError:
            return False
    return THANKS in response.text


def prepare(
    attempt: Attempt, token: str, questionnaire: Questionnaire, public_key: crypto.PublicKey
) -> None:
    """Fill in the request a respondent's browser would send for this attempt."""
    fields = answers(attempt.number, attempt.marker)
    if attempt.mode == "js":
        row = canonical_row(questionnaire, fields)
        attempt.path = "/sealed"
        attempt.data = {"token": token, "sealed": sealed_field(public_key, attempt.language, row)}
    else:
        attempt.path = "/"
        attempt.data = {"token": token, "lang": attempt.language, "website": "", **fields}


async def post(client: httpx.AsyncClient, attempt: Attempt) -> None:
    """Send (or resend) the attempt's submission and record the answer and its latency."""
    started = time.perf_counter()
    try:
        response = await client.post(attempt.path, data=attempt.data)
    except httpx.HTTPError as exc:
        attempt.status, attempt.error, attempt.acked = None, type(exc).__name__, False
        return
    attempt.seconds = time.perf_counter() - started
    attempt.status = response.status_code
    attempt.acked = acknowledged(attempt.mode, response)


@dataclass
class Load:
    """The attempts of one load run, its wall-clock time and its peak of open requests."""

    attempts: list[Attempt]
    seconds: float
    peak: int = 0  # the most requests under way at once (each client has one connection)
    form_seconds: list[float] = field(default_factory=list)  # latencies of GET /

    @property
    def acked(self) -> list[Attempt]:
        return [a for a in self.attempts if a.acked]

    def outcomes(self) -> dict[str, int]:
        """How many attempts ended each way (``acked``, status codes, error types)."""
        counts: dict[str, int] = {}
        for a in self.attempts:
            counts[a.outcome] = counts.get(a.outcome, 0) + 1
        return dict(sorted(counts.items()))


async def run_load(
    url: str,
    submissions: int,
    clients: int,
    public_key: crypto.PublicKey,
    questionnaire: Questionnaire,
    *,
    prefix: str = "m",
    nojs_every: int = 2,
    headers: dict[str, str] | None = None,
    on_ack: Callable[[int], None] | None = None,
    timeout: float = 300,
) -> Load:
    """``clients`` respondents at once, each on its own connection, until ``submissions`` are sent.

    Submission ``n`` takes the no-JavaScript path when ``n % nojs_every == 0`` (every
    second one by default), else the sealed path; every third is in Russian. ``on_ack(k)``
    is called with the running count of acknowledged submissions (the crash test kills
    the server from it). A respondent whose connection fails stops: after a crash there
    is no server to talk to.
    """
    attempts: list[Attempt] = []
    form_seconds: list[float] = []
    acked = under_way = peak = 0
    stop = asyncio.Event()
    next_number = iter(range(submissions))

    async def timed(request):
        nonlocal under_way, peak
        under_way += 1
        peak = max(peak, under_way)
        try:
            return await request
        finally:
            under_way -= 1

    async def respondent() -> None:
        nonlocal acked
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        # plain HTTP on loopback: verify=False spares each client loading the CA store
        async with httpx.AsyncClient(
            base_url=url, limits=limits, timeout=timeout, headers=headers, verify=False
        ) as client:
            for number in next_number:
                if stop.is_set():
                    return
                language = "ru" if number % 3 == 0 else "en"
                mode = "nojs" if number % nojs_every == 0 else "js"
                attempt = Attempt(number, f"{prefix}{number:06d}-q", mode, language)
                attempts.append(attempt)
                started = time.perf_counter()
                try:
                    page = await timed(client.get(f"/?lang={language}"))
                except httpx.HTTPError as exc:
                    attempt.error = "form: " + type(exc).__name__
                    stop.set()
                    return
                form_seconds.append(time.perf_counter() - started)
                match = TOKEN.search(page.text)
                if page.status_code != 200 or match is None:
                    attempt.error = f"form: {page.status_code}"
                    continue
                prepare(attempt, match.group(1), questionnaire, public_key)
                await timed(post(client, attempt))
                if attempt.acked:
                    acked += 1
                    if on_ack is not None:
                        on_ack(acked)
                elif attempt.status is None:
                    stop.set()
                    return

    started = time.perf_counter()
    await asyncio.gather(*(respondent() for _ in range(clients)))
    return Load(attempts, time.perf_counter() - started, peak, form_seconds)


async def resend(
    url: str,
    attempts: list[Attempt],
    questionnaire: Questionnaire,
    public_key: crypto.PublicKey,
    clients: int = 20,
) -> None:
    """Send these attempts again with the same form token, as a browser retrying would.

    Sealed answers are sealed afresh (a new envelope, byte for byte different), so
    only the token can tell the server that it has stored this submission already.
    """
    queue = iter(attempts)

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=300, verify=False) as client:
            for attempt in queue:
                prepare(attempt, attempt.data["token"], questionnaire, public_key)
                await post(client, attempt)

    await asyncio.gather(*(worker() for _ in range(clients)))


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in 0..1) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = min(max(math.ceil(share * len(ordered)), 1), len(ordered))
    return ordered[rank - 1]
