"""What every ``volna`` command that reads responses shares: options and their words.

The library says a remedy as a Python parameter (``unknown_columns='drop'``);
the command line says it as the option that sets that parameter
(``--unknown-columns drop``). :data:`REMEDY_OPTIONS` is that one translation;
every command reading a data file has all of :data:`DATA_OPTIONS`, so a
remedy raised while reading names an option the command has. A remedy with no
option (a parameter only Python has) is left out of the line: the message
still says what is wrong.

Commands living beside their rooms (``volna release``) import from here, not
from :mod:`volna.cli`, which imports them.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from volna.errors import Remedy, VolnaError


class DataFormat(StrEnum):
    csv = "csv"
    xlsx = "xlsx"
    parquet = "parquet"
    sav = "sav"
    dta = "dta"


class ColumnPolicy(StrEnum):
    error = "error"
    drop = "drop"
    keep = "keep"


class MissingColumns(StrEnum):
    error = "error"
    null = "null"


DataFormatOption = Annotated[
    DataFormat | None,
    typer.Option(
        "--data-format",
        help="Read DATA as this format whatever its extension (default: from the extension).",
    ),
]
UnknownColumnsOption = Annotated[
    ColumnPolicy,
    typer.Option(
        "--unknown-columns",
        help="Columns of DATA the questionnaire lacks: error, drop them, or keep them as text.",
    ),
]
MissingColumnsOption = Annotated[
    MissingColumns,
    typer.Option(
        "--missing-columns",
        help="Questionnaire columns DATA lacks: error, or null (read them as empty). "
        "Paradata not marked required may always be absent.",
    ),
]

#: The options of every command that reads a response file.
DATA_OPTIONS = ("--data-format", "--unknown-columns", "--missing-columns")


def _collapse(value: Any) -> str:
    """``{'region': {'x': 'w'}}`` as ``--collapse`` takes it: ``region:x=w``."""
    return " --collapse ".join(
        f"{var}:{level}={into}" for var, levels in value.items() for level, into in levels.items()
    )


#: Library parameter -> (command-line option, how to write its value).
REMEDY_OPTIONS: dict[str, tuple[str, Any]] = {
    "format": ("--data-format", str),
    "unknown_columns": ("--unknown-columns", str),
    "missing_columns": ("--missing-columns", str),
    "missing": ("--missing", str),
    "collapse": ("--collapse", _collapse),
}


def spell_remedy(remedy: Remedy) -> str | None:
    """A remedy in the command line's words; None if no option sets its parameter.

    >>> spell_remedy(Remedy("unknown_columns", "drop", lead="remove it or"))
    'remove it or use --unknown-columns drop'
    >>> spell_remedy(Remedy("collapse", {"region": {"x": "w"}}, lead="merge:"))
    'merge: use --collapse region:x=w'
    >>> spell_remedy(Remedy("lonely_psu", "adjust")) is None
    True
    """
    known = REMEDY_OPTIONS.get(remedy.parameter)
    if known is None:
        return None
    option, write = known
    return remedy.spell(option, write)


def read_data(
    data: Path,
    questionnaire: Any,
    data_format: DataFormat | None,
    unknown_columns: ColumnPolicy,
    missing_columns: MissingColumns,
):
    """Read DATA with the questionnaire and the command's data options."""
    from volna.io import read

    return read(
        data,
        questionnaire,
        format=data_format.value if data_format is not None else None,
        unknown_columns=unknown_columns.value,
        missing_columns=missing_columns.value,
    )


def choose_language(language: str | None, questionnaire: Any, source: object) -> str | None:
    """The ``--lang`` asked for, in the questionnaire's spelling; an error if it has none.

    ``EN`` is ``en``; a language the questionnaire has no labels in is refused
    (naming the ones it has) rather than mixing codes and stray labels.

    >>> from volna import Questionnaire
    >>> q = Questionnaire.loads('''
    ... id: demo
    ... languages: [ru, en]
    ... questions:
    ...   - {name: age, type: integer, label: {ru: Возраст, en: Age}}
    ... ''')
    >>> choose_language("EN", q, "q.yaml")
    'en'
    >>> choose_language("de", q, "q.yaml")
    Traceback (most recent call last):
    ...
    volna.errors.VolnaError: q.yaml: --lang de: the questionnaire has labels in ru, en
    """
    if language is None:
        return None
    known = list(questionnaire.languages)
    by_case = {lang.casefold(): lang for lang in known}
    chosen = by_case.get(language.strip().casefold())
    if chosen is None:
        has = ", ".join(known) if known else "no language (its labels have no language code)"
        raise VolnaError(f"{source}: --lang {language}: the questionnaire has labels in {has}")
    return chosen


def check_unique(option: str, names: list[str]) -> list[str]:
    """The names of a comma-separated option, refusing one given twice.

    >>> check_unique("--compare", ["age", "gender"])
    ['age', 'gender']
    >>> check_unique("--compare", ["age", "age", "gender"])
    Traceback (most recent call last):
    ...
    volna.errors.VolnaError: --compare age,age,gender: age is given twice; name each once
    """
    seen: set[str] = set()
    for name in names:
        if name in seen:
            said = ",".join(names)
            raise VolnaError(f"{option} {said}: {name} is given twice; name each once")
        seen.add(name)
    return names
