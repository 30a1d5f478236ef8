"""The encrypted store on SQLite and PostgreSQL: rows, duplicates, threads, durability."""

from __future__ import annotations

import re
import sqlite3
import stat
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from postgres import fresh_database, postgres_url  # noqa: F401  (postgres_url: a fixture)
from volna.collect.store import Store, StoreError

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'responses.db'}"
    return fresh_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(store_url):
    opened = Store.open(store_url)
    yield opened
    opened.close()


def test_add_count_and_read_back(store):
    assert store.count() == 0
    assert store.add(b"A1", b"P1", b"nonce-1", day="2024-05-01") is True
    assert store.add(b"A2", b"P2", b"nonce-2", day="2024-05-03") is True
    assert store.add(b"A3", b"P3", b"nonce-3", day="2024-05-01") is True
    assert store.count() == 3
    assert store.counts_by_day() == [("2024-05-01", 2), ("2024-05-03", 1)]
    rows = list(store.submissions())
    assert sorted((r.day, r.answers, r.paradata) for r in rows) == [
        ("2024-05-01", b"A1", b"P1"),
        ("2024-05-01", b"A3", b"P3"),
        ("2024-05-03", b"A2", b"P2"),
    ]
    assert all(re.fullmatch("[0-9a-f]{32}", r.id) for r in rows)
    assert [r.id for r in rows] == sorted(r.id for r in rows)


def test_default_day_is_today_in_utc(store):
    import datetime as dt

    before = dt.datetime.now(dt.UTC).date().isoformat()
    store.add(b"A", b"P", b"n")
    after = dt.datetime.now(dt.UTC).date().isoformat()
    (day, n), *_ = store.counts_by_day()
    assert n == 1 and day in (before, after)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", day)


def test_same_nonce_is_stored_once(store):
    assert store.add(b"first", b"P", b"same") is True
    assert store.add(b"second", b"P", b"same") is False
    assert [s.answers for s in store.submissions()] == [b"first"]


def test_order_is_the_random_id_not_arrival(store):
    for i in range(60):
        store.add(f"{i:03d}".encode(), b"P", f"n{i}".encode())
    answers = [s.answers for s in store.submissions()]
    assert sorted(answers) == [f"{i:03d}".encode() for i in range(60)]
    assert answers != sorted(answers)  # arrival order: a 1 in 60! chance


def test_more_rows_than_one_page(store):
    for i in range(1203):
        store.add(b"A", b"P", str(i).encode(), day="2024-01-01")
    ids = [s.id for s in store.submissions()]
    assert len(ids) == len(set(ids)) == 1203
    assert ids == sorted(ids)


def test_meta_settings(store, store_url):
    assert store.get_meta("questionnaire") is None
    store.set_meta("questionnaire", "id: демо\n".encode())
    store.set_meta("token_secret", b"\x00\xff" * 16)
    store.set_meta("token_secret", b"replaced")
    store.close()
    again = Store.open(store_url)
    assert again.get_meta("questionnaire").decode() == "id: демо\n"
    assert again.get_meta("token_secret") == b"replaced"
    again.close()


def test_schema_has_no_place_for_identifying_metadata(store, store_url):
    engine = sa.create_engine(store_url.replace("postgresql://", "postgresql+psycopg://"))
    inspector = sa.inspect(engine)
    assert set(inspector.get_table_names()) == {"volna_submissions", "volna_meta"}
    columns = {c["name"] for c in inspector.get_columns("volna_submissions")}
    assert columns == {"id", "day", "answers", "paradata", "nonce_hash"}
    engine.dispose()


def test_many_threads_none_lost_none_duplicated(store):
    unique = [(f"answer {i}".encode(), f"nonce {i}".encode()) for i in range(2000)]
    # 100 nonces each sent by 4 threads at once: exactly one of each is stored
    repeated = [(f"retry {i}".encode(), f"retried {i}".encode()) for i in range(100)] * 4
    jobs = unique + repeated
    jobs = jobs[::2] + jobs[1::2]  # spread the repeats among the unique ones
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda job: store.add(job[0], b"P", job[1]), jobs))
    assert sum(results) == 2100
    stored = sorted(s.answers for s in store.submissions())
    expected = sorted([a for a, _ in unique] + [f"retry {i}".encode() for i in range(100)])
    assert stored == expected
    assert store.count() == 2100


def test_sqlite_settings(tmp_path):
    path = tmp_path / "responses.db"
    store = Store.open(f"sqlite:///{path}")
    store.add(b"A", b"P", b"n")
    with store._engine.connect() as conn:  # every pooled connection gets the pragmas
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    store.close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # kept in the file
    raw.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_unreachable_postgres_is_one_line_with_the_password_masked():
    with pytest.raises(StoreError) as info:
        Store.open("postgresql://volna:hunter2@127.0.0.1:1/survey")
    message = str(info.value)
    assert message.startswith("postgresql://volna:***@127.0.0.1:1/survey: cannot open")
    assert "hunter2" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:pw@localhost/db", "unsupported database URL"),
        ("sqlite://", "needs a file"),
        ("sqlite:///:memory:", "needs a file"),
        ("responses.db", "not a database URL"),
    ],
)
def test_bad_urls(url, message):
    with pytest.raises(StoreError, match=message):
        Store.open(url)


def test_sqlite_in_a_missing_folder(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        Store.open(f"sqlite:///{tmp_path / 'nowhere' / 'r.db'}")


def test_every_acknowledged_add_survives_kill_9(store_url):
    """A child adds rows, printing each nonce once add() returned; kill -9 it mid-stream."""
    child = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(SRC)!r})
        from volna.collect.store import Store
        store = Store.open({store_url!r})
        for i in range(100000):
            store.add(str(i).encode(), b"P", str(i).encode())
            print(i, flush=True)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    acknowledged = []
    for line in process.stdout:
        acknowledged.append(int(line))
        if len(acknowledged) == 150:
            process.kill()
            break
    process.wait()
    process.stdout.close()
    store = Store.open(store_url)
    try:
        stored = {int(s.answers) for s in store.submissions()}
    finally:
        store.close()
    assert acknowledged == list(range(150))
    assert set(acknowledged) <= stored  # every acknowledged one, and perhaps the next
    assert stored <= set(range(151))
