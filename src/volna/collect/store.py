"""The encrypted store: sealed submissions in SQLite or PostgreSQL, nothing else.

A submission row holds a random id (16 random bytes, hex: the storage order
says nothing about arrival order), the UTC day it arrived (``YYYY-MM-DD``, no
finer time anywhere), the two sealed envelopes (answers, sealed in the
browser or on arrival; paradata, sealed by the server) and SHA-256 of the
form's one-time nonce, so a retried submission is stored once. No IP address,
user agent, cookie or timestamp has a column to go into.

:meth:`Store.add` returns only once the row is committed: SQLite runs in WAL
mode with ``synchronous=FULL`` (every commit is on disk), PostgreSQL commits
durably by default. So a success answer to the respondent means the answers
are kept.

>>> import tempfile, pathlib
>>> url = "sqlite:///" + str(pathlib.Path(tempfile.mkdtemp()) / "responses.db")
>>> store = Store.open(url)
>>> store.add(b"sealed answers", b"sealed paradata", nonce=b"form 1")
True
>>> store.add(b"sealed answers", b"sealed paradata", nonce=b"form 1")  # a retry
False
>>> store.count(), len(next(store.submissions()).id)
(1, 32)
>>> store.close()
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from volna.errors import VolnaError

_meta = sa.MetaData()

submissions_table = sa.Table(
    "volna_submissions",
    _meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("answers", sa.LargeBinary, nullable=False),
    sa.Column("paradata", sa.LargeBinary, nullable=False),
    sa.Column("nonce_hash", sa.LargeBinary(32), nullable=False, unique=True),
)

meta_table = sa.Table(
    "volna_meta",
    _meta,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.LargeBinary, nullable=False),
)

# SQLite waits this long for another process's write lock before giving up.
_BUSY_TIMEOUT_MS = 30_000
# submissions() reads this many rows per query, so no read transaction stays open long.
_PAGE = 500


class StoreError(VolnaError):
    """The store cannot be opened, read or written."""


@dataclass(frozen=True, slots=True)
class Submission:
    """One stored submission: random id, UTC day, and the two sealed envelopes."""

    id: str
    day: str
    answers: bytes
    paradata: bytes


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # Every connection, not just the first: the pool opens new ones under load.
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = FULL")
    cursor.execute("PRAGMA secure_delete = ON")  # a deleted row leaves no readable trace
    cursor.execute("PRAGMA trusted_schema = OFF")
    cursor.close()


def masked(url: str) -> str:
    """The URL for messages, with any password replaced by ``***``.

    >>> masked("postgresql://volna:s3cret@db.internal:5432/survey")
    'postgresql://volna:***@db.internal:5432/survey'
    >>> masked("not a url")
    'not a url'
    """
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def driver_url(url: str) -> sa.URL:
    """The SQLAlchemy URL with its driver: ``postgresql://`` becomes psycopg 3's.

    >>> driver_url("postgresql://u@localhost/db").drivername
    'postgresql+psycopg'
    >>> driver_url("sqlite:///responses.db").database
    'responses.db'
    >>> driver_url("mysql://u@localhost/db")
    Traceback (most recent call last):
    ...
    volna.collect.store.StoreError: mysql://u@localhost/db: unsupported database URL (expected ...)
    """
    expected = "expected sqlite:///path.db or postgresql://user@host/database"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"{masked(url)}: not a database URL ({expected})") from None
    name = parsed.drivername
    if name in ("postgresql", "postgres", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    if name in ("sqlite", "sqlite+pysqlite"):
        if not parsed.database or parsed.database == ":memory:":
            raise StoreError(f"{url}: the store needs a file (sqlite:///path.db), not memory")
        return parsed.set(drivername="sqlite+pysqlite")
    raise StoreError(f"{masked(url)}: unsupported database URL ({expected})")


class Store:
    """Sealed submissions and public settings in one database; open with :meth:`open`."""

    def __init__(self, engine: sa.Engine, url: str):
        self._engine = engine
        self.url = masked(url)
        self._sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer at a time: queueing writers here is faster than
        # SQLite's own busy-wait between threads (other processes still use busy_timeout).
        self._write_lock = threading.Lock() if self._sqlite else None
        self._insert = (sqlite.insert if self._sqlite else postgresql.insert)(submissions_table)
        self._meta_insert = (sqlite.insert if self._sqlite else postgresql.insert)(meta_table)

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> Store:
        """Open the store at ``url``: ``sqlite:///file.db`` or ``postgresql://...``.

        A new SQLite file and the tables are created unless ``create=False``
        (what export and status say: a mistyped path is then an error, not a
        new empty store). An unreachable database is a one-line StoreError
        naming the URL, its password masked.
        """
        target = driver_url(url)
        if target.drivername.startswith("sqlite"):
            path = Path(target.database)
            if not path.parent.is_dir():
                raise StoreError(f"{url}: the folder {path.parent} does not exist")
            if not path.exists() and not create:
                raise StoreError(f"{url}: no such database file")
            if not path.exists():
                # readable by its owner only, like every file volna writes with answers;
                # SQLite gives its -wal and -shm files the same mode
                try:
                    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
                except OSError as exc:
                    raise StoreError(f"{url}: cannot create the database: {exc.strerror}") from None
            engine = sa.create_engine(target, pool_size=8, max_overflow=32, pool_timeout=60)
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = sa.create_engine(
                target,
                pool_size=10,
                max_overflow=30,
                pool_timeout=60,
                pool_pre_ping=True,
                connect_args={"connect_timeout": 10},
            )
        try:
            _meta.create_all(engine)
        except SQLAlchemyError as exc:
            engine.dispose()
            raise StoreError(f"{masked(url)}: cannot open the database: {_brief(exc)}") from None
        return cls(engine, url)

    # -- submissions ----------------------------------------------------------

    def add(self, answers: bytes, paradata: bytes, nonce: bytes, *, day: str | None = None) -> bool:
        """Store one submission; True once it is committed, False if ``nonce`` was seen before.

        ``day`` (``YYYY-MM-DD``) defaults to today in UTC; tests and imports set it.
        Safe to call from many threads at once.
        """
        row = {
            "id": secrets.token_hex(16),
            "day": day or dt.datetime.now(dt.UTC).date().isoformat(),
            "answers": bytes(answers),
            "paradata": bytes(paradata),
            "nonce_hash": hashlib.sha256(bytes(nonce)).digest(),
        }
        # RETURNING says whether the row went in (rowcount is unreliable across drivers
        # for ON CONFLICT DO NOTHING); the conflict target is the nonce alone, so a
        # duplicate nonce, even from another thread at the same moment, stores nothing.
        statement = self._insert.on_conflict_do_nothing(index_elements=["nonce_hash"]).returning(
            submissions_table.c.id
        )
        try:
            if self._write_lock is None:
                return self._insert_row(statement, row)
            with self._write_lock:
                return self._insert_row(statement, row)
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.url}: cannot store the submission: {_brief(exc)}") from None

    def _insert_row(self, statement, row: dict) -> bool:
        with self._engine.begin() as conn:  # commits (durably) before leaving the block
            return conn.execute(statement, row).first() is not None

    def count(self) -> int:
        """How many submissions are stored."""
        query = sa.select(sa.func.count()).select_from(submissions_table)
        return int(self._read(lambda conn: conn.execute(query).scalar_one()))

    def counts_by_day(self) -> list[tuple[str, int]]:
        """``(day, submissions)`` for every day with any, oldest first."""
        query = (
            sa.select(submissions_table.c.day, sa.func.count())
            .group_by(submissions_table.c.day)
            .order_by(submissions_table.c.day)
        )
        return self._read(lambda conn: [(d, int(n)) for d, n in conn.execute(query)])

    def submissions(self) -> Iterator[Submission]:
        """Every submission, ordered by its random id (not by arrival)."""
        t = submissions_table
        last = ""
        while True:
            query = (
                sa.select(t.c.id, t.c.day, t.c.answers, t.c.paradata)
                .where(t.c.id > last)
                .order_by(t.c.id)
                .limit(_PAGE)
            )
            rows = self._read(lambda conn, q=query: conn.execute(q).all())
            for row in rows:
                yield Submission(row.id, row.day, bytes(row.answers), bytes(row.paradata))
            if len(rows) < _PAGE:
                return
            last = rows[-1].id

    # -- public settings ------------------------------------------------------

    def set_meta(self, name: str, value: bytes) -> None:
        """Keep a public setting (the served questionnaire, the form-token secret)."""
        statement = self._meta_insert.values(name=name, value=bytes(value))
        statement = statement.on_conflict_do_update(
            index_elements=["name"], set_={"value": statement.excluded.value}
        )
        try:
            if self._write_lock is None:
                self._execute(statement)
            else:
                with self._write_lock:
                    self._execute(statement)
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.url}: cannot save {name}: {_brief(exc)}") from None

    def _execute(self, statement) -> None:
        with self._engine.begin() as conn:
            conn.execute(statement)

    def get_meta(self, name: str) -> bytes | None:
        """A setting kept by :meth:`set_meta`, or None."""
        query = sa.select(meta_table.c.value).where(meta_table.c.name == name)
        value = self._read(lambda conn: conn.execute(query).scalar_one_or_none())
        return None if value is None else bytes(value)

    def _read(self, work):
        try:
            with self._engine.connect() as conn:
                return work(conn)
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.url}: cannot read the database: {_brief(exc)}") from None

    def close(self) -> None:
        """Close every connection."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _brief(exc: SQLAlchemyError) -> str:
    """The driver's first line, without SQLAlchemy's statement dump."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__
