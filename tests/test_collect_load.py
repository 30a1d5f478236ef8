"""The real ``volna serve`` under load, killed mid-way, and checked for traces of respondents.

Each test starts ``volna serve`` as a subprocess (``tests/collect_server.py``)
with keys made by ``volna keygen``, sends submissions from many concurrent
clients and reads back what was stored only through ``volna export``. Expected
rows are written out from the answers sent, never taken from the server.
Throughput and latency are measured by ``benchmarks/collect.py``, not here.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections import Counter
from pathlib import Path

import pytest

import collect_server as cs
from postgres import fresh_database, postgres_url  # noqa: F401  (postgres_url: a fixture)
from volna.collect import crypto
from volna.questionnaire.model import Questionnaire

# Values a client sends that must never reach the database or the server's output.
AGENT = "Mozilla/5.0 (X11; Linux) Gecko/20100101 Firefox/999.0 DistinctiveAgent-7Q3Z"
FORWARDED = "203.0.113.77"
HEADERS = {
    "User-Agent": AGENT,
    "X-Forwarded-For": FORWARDED,
    "X-Real-IP": FORWARDED,
    "Forwarded": f"for={FORWARDED}",
}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """(private key file, public key file, public key) made by ``volna keygen``."""
    private, public = cs.make_keys(tmp_path_factory.mktemp("keys"))
    return private, public, crypto.load_public_key(public)


@pytest.fixture(scope="module")
def questionnaire() -> Questionnaire:
    return Questionnaire.load(cs.QUESTIONNAIRE)


def check_export(
    rows: list[dict[str, str]], sent: list[cs.Attempt], questionnaire: Questionnaire
) -> Counter:
    """Assert the exported rows are submissions sent, each exactly as sent; markers counted.

    Every row's answer columns must equal the canonical row of the answers its
    marker was sent with (so the multiset of answers is the one submitted).
    """
    by_marker = {a.marker: a for a in sent}
    counts = Counter(row["sector_other"] for row in rows)
    assert not {m: n for m, n in counts.items() if n > 1}, "duplicated submissions"
    assert set(counts) <= set(by_marker), "rows that nobody sent"
    for row in rows:
        attempt = by_marker[row["sector_other"]]
        expected = cs.canonical_row(questionnaire, cs.answers(attempt.number, attempt.marker))
        got = {column: row[column] for column in expected}
        assert got == expected, attempt.marker
        assert row["screening_flags"] == ""
    return counts


def assert_clean_output(server: cs.Server) -> None:
    output = server.output()
    assert b"Traceback" not in output and b"ERROR" not in output, output[-2000:]
    assert b"GET /" not in output and b"POST /" not in output  # no request lines


# --------------------------------------------------------------------------- privacy


def test_a_hundred_submissions_leave_no_answer_address_or_agent(tmp_path, keys, questionnaire):
    """After 100 submissions (both paths) with a telling user agent and forwarded-for
    header, neither the database (with its -wal and -shm files, while the server runs and
    after it stops) nor the server's output holds an answer, an address or the agent."""
    private, public, public_key = keys
    host = "127.0.0.2"  # so that the client's address (127.0.0.1) is not the server's
    db_path = tmp_path / "responses.db"
    db = f"sqlite:///{db_path}"
    prefix = "quokka-marmalade-"
    with cs.serving(db, public, tmp_path, host=host) as server:
        with socket.create_connection((host, server.port)) as probe:
            client_address = probe.getsockname()[0]
        assert client_address == "127.0.0.1"  # Linux answers 127.0.0.2 from 127.0.0.1
        load = asyncio.run(
            cs.run_load(
                server.url, 100, 10, public_key, questionnaire, prefix=prefix, headers=HEADERS
            )
        )
        assert load.outcomes() == {"acked": 100}
        while_running = {p.name: p.read_bytes() for p in tmp_path.glob("responses.db*")}
    assert "responses.db-wal" in while_running  # WAL mode: the newest rows are there
    after_stop = {p.name: p.read_bytes() for p in tmp_path.glob("responses.db*")}
    markers = [a.marker for a in load.attempts]
    assert len(set(markers)) == 100
    telling = [
        *markers,
        prefix,
        AGENT,
        "DistinctiveAgent",
        FORWARDED,
        "203.0.113",
        client_address,
    ]
    places = {
        "server stdout": server.stdout.read_bytes(),
        "server stderr": server.stderr.read_bytes(),
        **{f"{name} (server running)": data for name, data in while_running.items()},
        **{f"{name} (server stopped)": data for name, data in after_stop.items()},
    }
    for place, data in places.items():
        for text in telling:
            for encoding in ("utf-8", "utf-16-le"):
                assert text.encode(encoding) not in data, f"{text!r} found in {place}"
    assert_clean_output(server)
    # the only address the server printed is its own (so the search above could see one)
    printed = places["server stdout"] + places["server stderr"]
    assert set(re.findall(rb"\d{1,3}(?:\.\d{1,3}){3}", printed)) == {host.encode()}
    rows = cs.export(db, private, tmp_path / "out.csv")
    assert sorted(check_export(rows, load.attempts, questionnaire)) == sorted(markers)


# --------------------------------------------------------------------------- load


def test_two_hundred_clients_at_once_lose_and_duplicate_nothing(tmp_path, keys, questionnaire):
    """200 concurrent clients, 1,000 submissions: every one acknowledged and exported once."""
    private, public, public_key = keys
    db = f"sqlite:///{tmp_path / 'responses.db'}"
    with cs.serving(db, public, tmp_path) as server:
        # one in ten without JavaScript: its server-side validation is the slow path
        load = asyncio.run(
            cs.run_load(server.url, 1000, 200, public_key, questionnaire, nojs_every=10)
        )
    assert load.peak >= 200  # every client had a request under way at the same moment
    assert load.outcomes() == {"acked": 1000}
    assert Counter(a.mode for a in load.attempts) == {"nojs": 100, "js": 900}
    assert_clean_output(server)
    rows = cs.export(db, private, tmp_path / "out.csv")
    counts = check_export(rows, load.attempts, questionnaire)
    assert set(counts) == {a.marker for a in load.attempts} and len(rows) == 1000


# --------------------------------------------------------------------------- crash


def crash_and_recover(db: str, folder: Path, keys, questionnaire: Questionnaire) -> None:
    """Load, ``kill -9`` after 200 acknowledgements, restart, check, resend everything, check."""
    private, public, public_key = keys
    server = cs.start_server(db, public, folder)
    try:
        # the process started is uvicorn itself: killing it kills the server, not a wrapper
        assert server.children() == []
        assert b"serve" in Path(f"/proc/{server.process.pid}/cmdline").read_bytes()

        def kill_mid_way(acked: int) -> None:
            if acked == 200:
                server.kill()

        load = asyncio.run(
            cs.run_load(
                server.url, 2000, 200, public_key, questionnaire, nojs_every=5, on_ack=kill_mid_way
            )
        )
    finally:
        cs.stop_server(server)
    assert server.process.returncode == -9
    acked = load.acked
    unanswered = [a for a in load.attempts if a.path and not a.acked]
    # killed mid-way: submissions under way got no answer, and most were never sent
    assert 200 <= len(acked) < 400 and unanswered, load.outcomes()
    assert all(a.status is None for a in unanswered), load.outcomes()

    restarted = cs.start_server(db, public, folder)
    try:
        rows = cs.export(db, private, folder / "after-crash.csv")
        counts = check_export(rows, load.attempts, questionnaire)
        lost = [a.marker for a in acked if counts[a.marker] != 1]
        assert not lost, f"{len(lost)} acknowledged submissions lost in the crash"

        # every browser retries with its form token (signed before the crash: the secret
        # is in the store): the acknowledged ones are stored again as nothing, the ones
        # cut off by the crash are stored once, whether or not they had been before
        retried = acked + unanswered
        asyncio.run(cs.resend(restarted.url, retried, questionnaire, public_key))
        assert Counter(a.outcome for a in retried) == {"acked": len(retried)}
    finally:
        cs.stop_server(restarted)
    assert_clean_output(restarted)
    rows = cs.export(db, private, folder / "after-retry.csv")
    counts = check_export(rows, load.attempts, questionnaire)
    assert sorted(counts) == sorted(a.marker for a in retried)


def test_kill_9_during_load_keeps_every_acknowledged_submission(tmp_path, keys, questionnaire):
    crash_and_recover(f"sqlite:///{tmp_path / 'responses.db'}", tmp_path, keys, questionnaire)


def test_kill_9_during_load_on_postgresql(postgres_url, tmp_path, keys, questionnaire):  # noqa: F811
    crash_and_recover(fresh_database(postgres_url), tmp_path, keys, questionnaire)
