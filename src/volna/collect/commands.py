"""``volna keygen``, ``volna export`` and ``volna status``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the key and storage commands to the ``volna`` command."""
