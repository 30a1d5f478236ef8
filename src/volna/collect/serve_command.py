"""``volna serve``: the web questionnaire.

The server is started so that it cannot log who answered: uvicorn's access
log is off, forwarded-for headers are not read (``proxy_headers=False``), no
``Server`` or ``Date`` header, and the log configuration prints only the
server's own messages (start, stop, its own errors), never a request line or
a client address.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from volna.errors import VolnaError

#: uvicorn's logging, scrubbed: no access logger at all, messages without addresses
LOG_CONFIG: dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s: %(message)s"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
        }
    },
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "volna": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        # request lines name the client's address: never logged, not even at debug level
        "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
    },
}


def serve_options(host: str, port: int) -> dict:
    """The uvicorn settings ``volna serve`` uses (tests start the same server with them).

    >>> options = serve_options("127.0.0.1", 8000)
    >>> options["access_log"], options["proxy_headers"], options["server_header"]
    (False, False, False)
    """
    return {
        "host": host,
        "port": port,
        "access_log": False,
        "proxy_headers": False,
        "forwarded_allow_ips": "",
        "server_header": False,
        "date_header": False,
        "log_config": LOG_CONFIG,
        "ws": "none",
        "lifespan": "off",
    }


def build_app(
    questionnaire_path: Path,
    public_key_path: Path,
    db: str,
    *,
    min_seconds: float,
    rate_per_minute: float,
    proof_of_work_bits: int,
):
    """Open the store, record the questionnaire in it and create the application."""
    from volna.collect.app import create_app
    from volna.collect.crypto import load_public_key
    from volna.collect.store import Store
    from volna.questionnaire.model import Questionnaire

    questionnaire = Questionnaire.load(questionnaire_path)
    if questionnaire_path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
        text = questionnaire.to_yaml()
    else:
        text = questionnaire_path.read_text(encoding="utf-8")
    public_key = load_public_key(public_key_path)
    store = Store.open(db)
    return create_app(
        questionnaire,
        public_key=public_key,
        store=store,
        questionnaire_text=text,
        min_seconds=min_seconds,
        rate_per_minute=rate_per_minute,
        proof_of_work_bits=proof_of_work_bits,
    )


def register(app: typer.Typer) -> None:
    """Add ``volna serve`` to the ``volna`` command."""

    @app.command()
    def serve(
        questionnaire: Annotated[
            Path, typer.Argument(help="The questionnaire: volna YAML or an XLSForm (.xlsx).")
        ],
        public_key: Annotated[
            Path | None,
            typer.Option(
                "--public-key", help="The researchers' public key (from volna keygen). Required."
            ),
        ] = None,
        db: Annotated[
            str, typer.Option(help="sqlite:///responses.db or postgresql://user@host/db.")
        ] = "sqlite:///responses.db",
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
        min_seconds: Annotated[
            float,
            typer.Option(
                "--min-seconds", help="Flag submissions made faster than this (too_fast)."
            ),
        ] = 60.0,
        rate_per_minute: Annotated[
            float,
            typer.Option("--rate-per-minute", help="Submissions per minute, all clients together."),
        ] = 120.0,
        proof_of_work: Annotated[
            int,
            typer.Option(
                "--proof-of-work",
                min=0,
                max=24,
                help="Zero bits of SHA-256 the browser must find (0 = off); missing = flagged.",
            ),
        ] = 0,
    ) -> None:
        """Serve QUESTIONNAIRE as an anonymous web form; answers are stored sealed to the key."""
        if public_key is None:
            raise VolnaError(
                "volna serve needs --public-key: answers are only ever stored sealed to the "
                "researchers' key (make one with volna keygen)"
            )
        if rate_per_minute <= 0:
            raise VolnaError(f"--rate-per-minute must be positive, not {rate_per_minute}")
        import uvicorn

        application = build_app(
            questionnaire,
            public_key,
            db,
            min_seconds=min_seconds,
            rate_per_minute=rate_per_minute,
            proof_of_work_bits=proof_of_work,
        )
        typer.echo(f"serving {questionnaire} on http://{host}:{port}/ (answers go to {db})")
        uvicorn.run(application, **serve_options(host, port))
