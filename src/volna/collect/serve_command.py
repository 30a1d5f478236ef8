"""``volna serve``: the web questionnaire."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add ``volna serve`` to the ``volna`` command."""
