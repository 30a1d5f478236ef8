"""A throwaway PostgreSQL cluster for tests: initdb in a temporary folder, loopback only.

Use the session fixture in a test module::

    from postgres import postgres_url  # noqa: F401  (a pytest fixture)

    def test_something(postgres_url): ...

or the context manager anywhere: ``with postgres_cluster() as url: ...``. The
cluster listens on 127.0.0.1 (a free port) and on a unix socket inside its
own folder, requires a random password (scram-sha-256), and is stopped and
removed at the end. One cluster serves the whole test session, however many
modules import the fixture. Without PostgreSQL binaries the tests skip, saying so.

initdb refuses to run as root: as root the cluster runs as the ``postgres``
system user (Debian's package creates it) or else ``nobody``, owning the folder.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def find_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, or the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
    )
    for folder in reversed(candidates):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as() -> str | None:
    """The user to run PostgreSQL as when we are root, else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and there is no postgres or nobody user to run as")


def _command(user: str | None, argv: list[str]) -> list[str]:
    if user is None:
        return argv
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *argv]
    import shlex

    return ["su", user, "-s", "/bin/sh", "-c", shlex.join(argv)]


@contextlib.contextmanager
def postgres_cluster(*, fsync: bool = False) -> Iterator[str]:
    """Start a throwaway cluster and yield its URL (``postgresql://volna:...@127.0.0.1:PORT/volna``).

    ``fsync=False`` (the default) makes tests faster; the data survives a
    killed client either way, only not a power cut.
    """
    binaries = find_binaries()
    if binaries is None:
        raise FileNotFoundError("no PostgreSQL binaries (initdb, pg_ctl) on PATH or in /usr/lib")
    user = _run_as()
    # Directly under the system temp folder: pytest's own tmp folders are 0700 root,
    # which the postgres user could not enter.
    root = Path(tempfile.mkdtemp(prefix="volna-pg-"))
    data, sockets, password_file = root / "data", root / "sock", root / "password"
    password = secrets.token_urlsafe(18)
    sockets.mkdir()
    password_file.write_text(password + "\n")
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (root, sockets, password_file):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(root, 0o700)
    port = _free_port()
    started = False
    try:
        subprocess.run(
            _command(
                user,
                [
                    str(binaries / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "volna",
                    "--auth=scram-sha-256",
                    f"--pwfile={password_file}",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ],
            ),
            check=True,
            capture_output=True,
            text=True,
            cwd=root,  # a folder the postgres user can enter
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={sockets} "
            f"-c fsync={'on' if fsync else 'off'} -c max_connections=300 "
            "-c log_connections=off -c log_hostname=off"
        )
        subprocess.run(
            _command(
                user,
                [
                    str(binaries / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(root / "server.log"),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            ),
            check=True,
            capture_output=True,
            text=True,
            cwd=root,  # a folder the postgres user can enter
        )
        started = True
        url = f"postgresql://volna:{password}@127.0.0.1:{port}/postgres"
        _create_database(url, "volna")
        yield f"postgresql://volna:{password}@127.0.0.1:{port}/volna"
    except subprocess.CalledProcessError as exc:
        log = root / "server.log"
        detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(
            f"PostgreSQL test cluster failed: {exc.cmd}: {exc.stderr or exc.stdout}\n{detail}"
        ) from None
    finally:
        if started:
            subprocess.run(
                _command(user, [str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                capture_output=True,
                check=False,
                cwd=root,
            )
        shutil.rmtree(root, ignore_errors=True)


def _create_database(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def fresh_database(url: str) -> str:
    """A new empty database on the cluster of ``url``; its URL (one per test keeps tests apart)."""
    name = "t_" + secrets.token_hex(6)
    _create_database(url, name)
    return url.rsplit("/", 1)[0] + "/" + name


_KEY = pytest.StashKey[str]()


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest) -> str:
    """The URL of the session's throwaway cluster (started on first use); skips without binaries."""
    config = request.config
    if _KEY in config.stash:
        return config.stash[_KEY]
    if find_binaries() is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found on PATH or in /usr/lib")
    stack = contextlib.ExitStack()
    url = stack.enter_context(postgres_cluster())
    config.add_cleanup(stack.close)  # once, at the end of the session
    config.stash[_KEY] = url
    return url
