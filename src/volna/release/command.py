"""``volna release``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add ``volna release`` to the ``volna`` command."""
