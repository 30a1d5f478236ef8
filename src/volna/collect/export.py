"""Open the store's sealed submissions with the private key and write the response table.

One row per submission, in the order of the random ids (never arrival
order). Columns:

* the questionnaire's paradata: its ``id`` column (``respondent_id`` in the
  example) numbered ``r000001``, ``r000002``... in that order, and its
  ``duration`` column (``duration_sec``) from the server's coarse completion
  time (rounded to 10 s); other paradata columns are empty;
* the questionnaire's answer columns, exactly as submitted (volna's
  canonical CSV form: choice codes, ``1``/``0`` per multi-response option);
* two more **paradata** columns, after the questionnaire's: ``submitted_day``
  (the UTC day of arrival, ``YYYY-MM-DD``) and ``screening_flags`` (the
  server's bot-screening flags, space-separated, e.g. ``too_fast honeypot``;
  empty if none). They describe the submission, not the respondent: screen
  on them, and drop them before any release.

The table is then checked with volna's validation (types, codes, ranges, skip
logic); problems are reported, never fixed. A cell that cannot be read in its
column's type (a hostile or broken client can seal anything) is reported and
left empty in the table written; the store still holds the original.

>>> import json, tempfile, pathlib
>>> from volna import Questionnaire
>>> from volna.collect import crypto
>>> from volna.collect.store import Store
>>> q = Questionnaire.loads('''
... id: demo
... paradata: [{name: respondent_id, type: id}, {name: duration_sec, type: duration}]
... questions:
...   - {name: age, type: integer, min: 18}
... ''')
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> private_pem, public_text = crypto.generate_keypair("passphrase")
>>> _ = (folder / "pub.key").write_bytes(public_text)
>>> _ = (folder / "priv.pem").write_bytes(private_pem)
>>> public = crypto.load_public_key(folder / "pub.key")
>>> store = Store.open(f"sqlite:///{folder / 'responses.db'}")
>>> answers = json.dumps({"v": 1, "lang": "en", "answers": {"age": "34"}}).encode()
>>> paradata = json.dumps({"v": 1, "mode": "nojs", "duration_sec": 250, "flags": []}).encode()
>>> store.add(crypto.seal(public, answers), crypto.seal(public, paradata), b"n1", day="2024-05-01")
True
>>> private = crypto.load_private_key(folder / "priv.pem", "passphrase")
>>> result = export_responses(store, private, q, folder / "responses.csv")
>>> print((folder / "responses.csv").read_text(), end="")
respondent_id,duration_sec,age,submitted_day,screening_flags
r000001,250.0,34,2024-05-01,""
>>> result.rows, result.report.ok
(1, True)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from volna.collect.crypto import PrivateKey, open_sealed
from volna.collect.store import Store
from volna.errors import VolnaError
from volna.io.canonical import FORM_PARADATA
from volna.problems import Problem
from volna.questionnaire.model import Questionnaire
from volna.validation import ValidationReport

#: The paradata columns export adds after the questionnaire's (reading the file keeps
#: them: volna.io.canonical.FORM_PARADATA).
DAY_COLUMN, FLAGS_COLUMN = FORM_PARADATA


class ExportError(VolnaError):
    """A submission cannot be opened or read: wrong key, altered, or not volna's JSON."""


@dataclass(frozen=True)
class Opened:
    """One decrypted submission: its store id and day, answers, and the server's paradata."""

    id: str
    day: str
    answers: dict[str, str]
    language: str | None
    duration_sec: int | None
    flags: tuple[str, ...]


@dataclass
class ExportResult:
    """What export did: rows written, the validation report, submissions skipped, notes."""

    rows: int
    report: ValidationReport
    skipped: list[str] = field(default_factory=list)  # one line per unreadable submission
    notes: list[str] = field(default_factory=list)  # answers left out (unknown columns)


def open_submissions(
    store: Store, private_key: PrivateKey, *, skip_unreadable: bool = False
) -> tuple[list[Opened], list[str]]:
    """Decrypt every submission, in id order: (opened, lines naming those skipped).

    A submission that cannot be opened raises ExportError naming its id,
    unless ``skip_unreadable``, when it is left out and named in the lines.
    """
    opened: list[Opened] = []
    skipped: list[str] = []
    for submission in store.submissions():
        try:
            opened.append(_open(submission, private_key))
        except VolnaError as exc:
            line = f"submission {submission.id} ({submission.day}): {exc}"
            if not skip_unreadable:
                raise ExportError(f"{line} (use --skip-unreadable to export the others)") from None
            skipped.append(line)
    return opened, skipped


def _open(submission, private_key: PrivateKey) -> Opened:
    answers_doc = _json(open_sealed(private_key, submission.answers), "answers")
    paradata_doc = _json(open_sealed(private_key, submission.paradata), "paradata")
    answers = answers_doc.get("answers")
    if not isinstance(answers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in answers.items()
    ):
        raise ExportError("the answers are not a mapping of column names to text")
    language = answers_doc.get("lang")
    duration = paradata_doc.get("duration_sec")
    if duration is not None and (
        isinstance(duration, bool) or not isinstance(duration, int) or duration < 0
    ):
        raise ExportError(f"the paradata's duration_sec {duration!r} is not a whole number >= 0")
    flags = paradata_doc.get("flags") or []
    if not isinstance(flags, list) or not all(isinstance(f, str) and f for f in flags):
        raise ExportError(f"the paradata's flags {flags!r} are not a list of names")
    return Opened(
        id=submission.id,
        day=submission.day,
        answers=answers,
        language=language if isinstance(language, str) else None,
        duration_sec=duration,
        flags=tuple(flags),
    )


def _json(plaintext: bytes, what: str) -> dict:
    try:
        doc = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ExportError(f"the {what} do not decrypt to volna's JSON") from None
    if not isinstance(doc, dict) or doc.get("v") != 1:
        raise ExportError(f"the {what} are not volna's JSON version 1")
    return doc


def response_table(
    opened: list[Opened], questionnaire: Questionnaire, source: str = "export"
) -> tuple[pl.DataFrame, list[Problem], list[str]]:
    """The canonical table of the opened submissions: (table, cell problems, notes).

    Cells are read as volna reads a CSV file; a cell that is not a value of
    its column's type is a Problem and empty in the table. Answer columns the
    questionnaire lacks (or that name paradata) are left out, each named in a note.
    """
    paradata = {p.name: p for p in questionnaire.paradata}
    answer_columns = [c for c in questionnaire.columns if c not in paradata]
    allowed = set(answer_columns)
    id_column = next((p.name for p in questionnaire.paradata if p.type == "id"), "respondent_id")
    duration_column = next(
        (p.name for p in questionnaire.paradata if p.type == "duration" and p.page is None),
        "duration_sec",
    )
    notes = []
    cells: dict[str, list[str | None]] = {c: [] for c in questionnaire.columns}
    cells.setdefault(id_column, [])
    cells.setdefault(duration_column, [])
    cells[DAY_COLUMN], cells[FLAGS_COLUMN] = [], []
    for number, item in enumerate(opened, start=1):
        respondent = f"r{number:06d}"
        for column in sorted(set(item.answers) - allowed):
            notes.append(
                f"submission {item.id} ({respondent}): column {column!r} is not an answer "
                "column of the questionnaire; left out"
            )
        for column in questionnaire.columns:
            if column in allowed:
                cells[column].append(item.answers.get(column) or None)
            elif column not in (id_column, duration_column):
                cells[column].append(None)
        cells[id_column].append(respondent)
        duration = item.duration_sec
        cells[duration_column].append(None if duration is None else str(duration))
        cells[DAY_COLUMN].append(item.day)
        cells[FLAGS_COLUMN].append(" ".join(item.flags))
    raw_frame = pl.DataFrame(
        {c: pl.Series(c, v, dtype=pl.String) for c, v in cells.items()}, height=len(opened)
    )
    from volna.io import RawTable, to_canonical

    problems: list[Problem] = []
    extras = [c for c in raw_frame.columns if c not in questionnaire.column_map]
    frame = to_canonical(
        RawTable(raw_frame.drop(extras), source, "csv"), questionnaire, problems=problems
    )
    # submitted_day and screening_flags (and ids the questionnaire lacks) stay text, as they are
    frame = frame.with_columns(raw_frame.select(extras).get_columns())
    return frame, problems, notes


def export_responses(
    store: Store,
    private_key: PrivateKey,
    questionnaire: Questionnaire,
    output: str | Path,
    *,
    language: str | None = None,
    skip_unreadable: bool = False,
) -> ExportResult:
    """Decrypt, build the table, validate it, and write ``output`` (format by extension)."""
    from volna.io import write
    from volna.validation import validate

    opened, skipped = open_submissions(store, private_key, skip_unreadable=skip_unreadable)
    frame, problems, notes = response_table(opened, questionnaire, store.url)
    checked = validate(frame, questionnaire)
    position = {c: i for i, c in enumerate(questionnaire.columns)}
    every = sorted(
        problems + list(checked.problems),
        key=lambda p: (p.row, position.get(p.column, len(position))),
    )
    counts: dict[str, int] = {}
    for p in every:
        counts[p.rule] = counts.get(p.rule, 0) + 1
    report = ValidationReport(
        problems=tuple(every), n_rows=frame.height, source=store.url, counts=counts
    )
    write(frame, output, questionnaire, language=language)
    return ExportResult(rows=frame.height, report=report, skipped=skipped, notes=notes)
