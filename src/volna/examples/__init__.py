"""Bundled example studies (synthetic data generators and their questionnaires).

The files live inside the package so that ``volna example okrussians`` works
after a plain ``pip install``; ``examples/okrussians`` at the top of the
repository is a link to the same folder.
"""

from __future__ import annotations

from pathlib import Path

from volna.errors import VolnaError

EXAMPLES = ("okrussians",)


def example_path(study: str, filename: str = "") -> Path:
    """Path of a bundled example study's folder, or of one file in it.

    >>> example_path("okrussians", "questionnaire.yaml").name
    'questionnaire.yaml'
    """
    if study not in EXAMPLES:
        raise VolnaError(f"no bundled example named {study!r} (available: {', '.join(EXAMPLES)})")
    folder = Path(__file__).parent / study
    return folder / filename if filename else folder
