"""Reading and writing response tables: CSV, XLSX, parquet, SPSS .sav, Stata .dta.

Every imported file is treated as hostile: its encoding, structure and every
cell are checked, nothing is guessed silently, and nothing is dropped
without a record (a Problem for a cell, a log line for a column).

Reading has two stages, which the validator reuses:

* :func:`read_raw` -> :class:`RawTable`: the file as it is;
* :func:`to_canonical`: the questionnaire's columns in canonical types.

:func:`read` does both. :func:`write` writes a canonical table in any format
so that reading it back gives an equal table.

Modules, by what they do:

==================== ==============================================================
:mod:`.raw`          RawTable, format by extension, :func:`read_raw`, header checks
:mod:`.encoding`     UTF-8 / UTF-16 / Windows-1251 detection, refusing binary files
:mod:`.delimited`    CSV: delimiter, ragged lines, quoting; CSV writing
:mod:`.excel`        .xlsx reading (size and zip-bomb limits) and safe writing
:mod:`.stats`        SPSS .sav and Stata .dta with value and variable labels
:mod:`.names`        column names in .sav/.dta (``fears/x`` -> ``fears__x``) and back
:mod:`.parquet`      parquet
:mod:`.kobo`         matching file columns to the questionnaire (Kobo/ODK exports)
:mod:`.codes`        codes from labels, countries from names, yes/no cells
:mod:`.cells`        the per-type conversions, as polars expressions
:mod:`.canonical`    :func:`to_canonical`: columns, types, problems
:mod:`.writers`      :func:`write`: table checks, format dispatch, atomic files
==================== ==============================================================

>>> import tempfile, pathlib
>>> from volna import Questionnaire
>>> q = Questionnaire.loads('''
... id: demo
... questions:
...   - {name: age, type: integer}
...   - {name: fears, type: multiple, choices: [{code: war}, {code: draft}]}
... ''')
>>> p = pathlib.Path(tempfile.mkdtemp()) / "kobo.csv"
>>> _ = p.write_text("_uuid,grp/age,grp/fears\\nu1,34,war draft\\nu2,51,\\n", encoding="utf-8")
>>> read(p, q).rows()
[(34, True, True), (51, None, None)]
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from volna.io.canonical import (
    MissingColumns,
    UnknownColumns,
    canonical_schema,
    to_canonical,
)
from volna.io.names import original_names, stored_names
from volna.io.raw import FORMATS, RawTable, detect_format, read_raw
from volna.io.writers import write
from volna.problems import Problem
from volna.questionnaire.model import Questionnaire


def read(
    path: str | Path,
    questionnaire: Questionnaire,
    *,
    format: str | None = None,
    sheet: str | int | None = None,
    unknown_columns: UnknownColumns = "error",
    missing_columns: MissingColumns = "error",
    problems: list[Problem] | None = None,
) -> pl.DataFrame:
    """Read a response file into the canonical table of ``questionnaire``.

    ``format`` overrides the extension (csv, xlsx, parquet, sav, dta);
    ``sheet`` picks an .xlsx sheet by name or 0-based index (default: the
    first). See :func:`to_canonical` for ``unknown_columns``,
    ``missing_columns`` and ``problems``. Errors are one-line ReadErrors
    naming the file (and row, column and value where there is one).
    """
    raw = read_raw(path, format=format, sheet=sheet)
    return to_canonical(
        raw,
        questionnaire,
        unknown_columns=unknown_columns,
        missing_columns=missing_columns,
        problems=problems,
    )


__all__ = [
    "FORMATS",
    "RawTable",
    "canonical_schema",
    "detect_format",
    "original_names",
    "read",
    "read_raw",
    "stored_names",
    "to_canonical",
    "write",
]
