"""``volna keygen``, ``volna export`` and ``volna status``.

The passphrase of the private key is asked for without echo (twice by
keygen), or read from the environment variable ``VOLNA_KEY_PASSPHRASE`` for
scripts and tests. It is never an option: options end up in shell history.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from volna.errors import VolnaError

PASSPHRASE_VARIABLE = "VOLNA_KEY_PASSPHRASE"
PRIVATE_NAME = "volna-private.pem"
PUBLIC_NAME = "volna-public.key"


def passphrase(*, confirm: bool) -> str:
    """The passphrase from ``VOLNA_KEY_PASSPHRASE``, else asked for without echo."""
    given = os.environ.get(PASSPHRASE_VARIABLE)
    if given is not None:
        return given
    import sys

    import click

    if not sys.stdin.isatty():
        # getpass would fall back to reading with echo; a passphrase is never shown
        raise VolnaError(
            f"no passphrase: set {PASSPHRASE_VARIABLE}, or run in a terminal to be asked"
        )
    try:
        return typer.prompt(
            "Passphrase of the private key",
            hide_input=True,
            confirmation_prompt=confirm,
            default="",
            show_default=False,
        )
    except (click.exceptions.Abort, EOFError):
        raise VolnaError(
            f"no passphrase: type it when asked, or set {PASSPHRASE_VARIABLE}"
        ) from None


def _write_new(path: Path, data: bytes, mode: int, force: bool) -> None:
    """Write ``path`` through a temporary file created with ``mode`` (never wider)."""
    if path.exists() and not force:
        raise VolnaError(f"{path}: already exists; keep it, or replace it with --force")
    if not path.parent.is_dir():
        raise VolnaError(f"{path}: the folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise VolnaError(f"{path}: cannot write: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def register(app: typer.Typer) -> None:
    """Add the key and storage commands to the ``volna`` command."""

    @app.command()
    def keygen(
        output: Annotated[
            Path, typer.Option("-o", "--output", help="The folder to write both key files into.")
        ] = Path("."),
        private: Annotated[
            Path | None,
            typer.Option("--private", help=f"The private key file (default: DIR/{PRIVATE_NAME})."),
        ] = None,
        public: Annotated[
            Path | None,
            typer.Option("--public", help=f"The public key file (default: DIR/{PUBLIC_NAME})."),
        ] = None,
        force: Annotated[bool, typer.Option("--force", help="Replace existing key files.")] = False,
    ) -> None:
        """Make the researchers' key pair: a passphrase-protected private key and a public key.

        The server gets only the public key. Keep the private key and its
        passphrase offline: whoever has both can read every answer.
        """
        from rich.console import Console

        from volna.collect import crypto

        out = Console(soft_wrap=True, highlight=False)
        private = private or output / PRIVATE_NAME
        public = public or output / PUBLIC_NAME
        if private.resolve() == public.resolve():
            raise VolnaError(f"{private}: the private and public key files must differ")
        for path in (private, public):
            if path.exists() and not force:
                raise VolnaError(f"{path}: already exists; keep it, or replace it with --force")
        secret = passphrase(confirm=True)
        if not secret:
            raise VolnaError("the passphrase is empty; the private key must be protected")
        private_pem, public_text = crypto.generate_keypair(secret)
        # the key folder is made private to its owner; a folder named explicitly as
        # --private's or --public's must exist already
        if private.parent == output and not output.exists():
            try:
                output.mkdir(mode=0o700, parents=True)
            except OSError as exc:
                raise VolnaError(f"{output}: cannot create the folder: {exc.strerror}") from None
        _write_new(private, private_pem, 0o600, force)
        _write_new(public, public_text, 0o644, force)
        key = crypto.load_public_key(public)
        out.print(f"wrote {private} (private: keep it offline, with its passphrase)", markup=False)
        out.print(f"wrote {public} (public: give it to volna serve --public-key)", markup=False)
        out.print(f"key id {crypto.key_id(key).hex()}", markup=False)
        if len(secret) < 12:
            out.print("warning: a passphrase this short can be guessed; prefer 5 or more words")

    @app.command("export")
    def export_command(
        db: Annotated[
            str, typer.Option("--db", help="The store: sqlite:///responses.db or postgresql://...")
        ],
        key: Annotated[Path, typer.Option("--key", help="The private key file (volna keygen).")],
        output: Annotated[
            Path,
            typer.Option(
                "-o", "--output", help="The table to write: csv, xlsx, parquet, sav, dta."
            ),
        ],
        questionnaire: Annotated[
            Path | None,
            typer.Option(
                "--questionnaire",
                "-q",
                help="Validate against this questionnaire (default: the one the server stored).",
            ),
        ] = None,
        language: Annotated[
            str | None, typer.Option("--lang", help="Label language for .sav and .dta files.")
        ] = None,
        skip_unreadable: Annotated[
            bool,
            typer.Option(
                "--skip-unreadable",
                help="Leave out submissions that cannot be opened (named), instead of stopping.",
            ),
        ] = False,
        show: Annotated[int, typer.Option(help="How many validation problems to list.")] = 50,
    ) -> None:
        """Decrypt the stored submissions, validate them, and write the response table.

        Besides the questionnaire's columns the table has two paradata
        columns: submitted_day (UTC day) and screening_flags (bot screening).
        """
        from rich.console import Console
        from rich.table import Table

        from volna.collect import crypto
        from volna.collect.export import export_responses
        from volna.collect.store import Store
        from volna.io.raw import detect_format
        from volna.questionnaire.model import Questionnaire

        out = Console(soft_wrap=True, highlight=False)
        err = Console(stderr=True, soft_wrap=True, highlight=False)
        detect_format(output)  # a bad extension fails before the passphrase is asked
        store = Store.open(db, create=False)
        try:
            if questionnaire is not None:
                q = Questionnaire.load(questionnaire)
            else:
                text = store.get_meta("questionnaire")
                if text is None:
                    raise VolnaError(
                        f"{store.url}: no questionnaire stored (the server stores the one it "
                        "serves); give it with --questionnaire"
                    )
                q = Questionnaire.loads(text.decode("utf-8"), f"{store.url} (questionnaire)")
            private = crypto.load_private_key(key, passphrase(confirm=False))
            result = export_responses(
                store, private, q, output, language=language, skip_unreadable=skip_unreadable
            )
        finally:
            store.close()
        for line in result.skipped:
            err.print(f"skipped {line}", markup=False)
        for line in result.notes:
            err.print(line, markup=False)
        for line in result.report.lines(show):
            out.print(line, markup=False)
        if len(result.report.problems) > show:
            out.print(f"... and {len(result.report.problems) - show} more (use --show)")
        if not result.report.ok:
            table = Table("rule", "problems", title="validation")
            for rule, count in result.report.counts.items():
                table.add_row(rule, str(count))
            out.print(table)
        skipped = f", {len(result.skipped)} unreadable skipped" if result.skipped else ""
        problems = (
            "no problems"
            if result.report.ok
            else f"{len(result.report.problems)} problems (data written as submitted)"
        )
        out.print(f"{result.rows} submissions -> {output}{skipped}; {problems}", markup=False)

    @app.command()
    def status(
        db: Annotated[
            str, typer.Option("--db", help="The store: sqlite:///responses.db or postgresql://...")
        ],
    ) -> None:
        """How many submissions are stored, in total and per day (counts only)."""
        from rich.console import Console

        from volna.collect.store import Store

        out = Console(soft_wrap=True, highlight=False)
        with Store.open(db, create=False) as store:
            days = store.counts_by_day()
        out.print(f"{store.url}: {sum(n for _, n in days)} submissions", markup=False)
        for day, n in days:
            out.print(f"{day}  {n}", markup=False)
