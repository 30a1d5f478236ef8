"""Match a file's columns to the questionnaire's: exact names, Kobo/ODK exports, .sav/.dta names.

A column is matched, in this order:

1. by its exact canonical name (``age``, ``fears/persecution``, ``fears_other``);
2. by its .sav/.dta stored name (``fears__persecution``, see :mod:`volna.io.names`);
3. dropped if it is Kobo/ODK platform metadata (``_id``, ``_uuid``,
   ``_submission_time``, ``meta/instanceID``, ``formhub/uuid``, ``deviceid``...)
   the questionnaire does not itself define; only the names are logged;
4. by the last one or two segments of a Kobo/ODK group path:
   ``group/sub/age`` -> ``age``; ``group/fears/persecution`` ->
   ``fears/persecution`` (an option column); the longest match wins;
5. a column named like a multiple-choice question (``fears`` or
   ``group/fears``) holds the whole answer as space-separated codes
   (``persecution conscription``) and is expanded into option columns.

Anything else is an unknown column; two file columns matching the same
canonical column are refused, since either could be the answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from volna.errors import ReadError
from volna.io.names import original_names
from volna.questionnaire.model import Question, Questionnaire

#: Columns Kobo, ODK Collect and ODK Central add to every export. They
#: identify devices and people (deviceid, phonenumber, username, email,
#: _submitted_by, _geolocation) and are dropped unless the questionnaire
#: declares them as paradata.
PLATFORM_COLUMNS = frozenset(
    {
        # KoboToolbox
        "_id",
        "_uuid",
        "_submission_time",
        "_index",
        "_status",
        "_submitted_by",
        "__version__",
        "_version_",
        "_validation_status",
        "_notes",
        "_tags",
        "_parent_index",
        "_parent_table_name",
        "_submission__id",
        "_submission__uuid",
        "_submission__submission_time",
        "_submission__validation_status",
        "_submission__notes",
        "_submission__status",
        "_submission__submitted_by",
        "_submission___version__",
        "_submission__tags",
        "_attachments",
        "_geolocation",
        "_xform_id_string",
        "_media_all_received",
        "_total_media",
        "_media_count",
        "formhub/uuid",
        "meta/instanceID",
        "meta/instanceName",
        "meta/rootUuid",
        "meta/deprecatedID",
        "meta/audit",
        # ODK / XLSForm device metadata
        "start",
        "end",
        "today",
        "deviceid",
        "subscriberid",
        "simserial",
        "phonenumber",
        "username",
        "email",
        "audit",
        "instanceID",
        # ODK Central
        "SubmissionDate",
        "meta-instanceID",
        "KEY",
        "SubmitterID",
        "SubmitterName",
        "AttachmentsPresent",
        "AttachmentsExpected",
        "ReviewState",
        "DeviceID",
        "FormVersion",
    }
)
_PLATFORM_PREFIXES = ("meta/", "formhub/", "_submission_")


def is_platform_column(name: str) -> bool:
    """True for Kobo/ODK bookkeeping columns.

    >>> [is_platform_column(c) for c in ("_uuid", "meta/instanceID", "age")]
    [True, True, False]
    """
    return name in PLATFORM_COLUMNS or name.startswith(_PLATFORM_PREFIXES)


@dataclass
class ColumnMatch:
    """How a file's columns map onto the questionnaire's canonical columns.

    ``sources``: canonical column -> file column holding it. ``combined``:
    multiple-choice question name -> file column holding its space-separated
    codes. ``platform`` and ``unknown``: file columns that are Kobo/ODK
    metadata or that nothing matched. ``missing``: canonical columns no file
    column provides.
    """

    sources: dict[str, str] = field(default_factory=dict)
    combined: dict[str, str] = field(default_factory=dict)
    platform: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def match_columns(names: list[str], questionnaire: Questionnaire, source: str) -> ColumnMatch:
    """Decide which file column holds which canonical column.

    >>> from volna import Questionnaire
    >>> q = Questionnaire.loads('''
    ... id: demo
    ... questions:
    ...   - {name: age, type: integer}
    ...   - {name: fears, type: multiple, choices: [{code: war}, {code: draft}]}
    ... ''')
    >>> m = match_columns(["_uuid", "grp/age", "grp/fears", "note"], q, "k.csv")
    >>> m.sources, m.combined, m.platform, m.unknown
    ({'age': 'grp/age'}, {'fears': 'grp/fears'}, ['_uuid'], ['note'])
    """
    canonical = questionnaire.column_map
    multiple = {q.name: q for q in questionnaire.multiple_choice}
    stored = original_names(canonical)
    out = ColumnMatch()
    claimed: dict[str, str] = {}  # canonical column or "multi:<q>" -> file column

    def claim(key: str, column: str) -> None:
        if key in claimed:
            target = key.removeprefix("multi:")
            raise ReadError(
                f"{source}: columns {claimed[key]!r} and {column!r} both hold {target!r}; "
                "remove or rename one"
            )
        claimed[key] = column

    for name in names:
        if name in canonical:
            claim(name, name)
            continue
        if name in stored:
            claim(stored[name], name)
            continue
        if is_platform_column(name):
            out.platform.append(name)
            continue
        target = _by_path(name, canonical, multiple)
        if target is None:
            out.unknown.append(name)
        elif isinstance(target, Question):
            claim("multi:" + target.name, name)
        else:
            claim(target, name)
    for key, column in claimed.items():
        if key.startswith("multi:"):
            out.combined[key.removeprefix("multi:")] = column
        else:
            out.sources[key] = column
    for column, (item, _) in canonical.items():
        if column in out.sources:
            continue
        combined = isinstance(item, Question) and item.name in out.combined
        if combined and column != item.other_column:
            continue  # an option column, filled from the combined column
        out.missing.append(column)
    return out


def _by_path(name: str, canonical: dict, multiple: dict[str, Question]) -> str | Question | None:
    """Match ``group/sub/question[/option]`` by its last segments, longest first."""
    parts = name.split("/")
    if len(parts) >= 2 and parts[-2] in multiple:
        # An option column; an option the questionnaire lacks stays unknown
        # rather than being taken for a question of the same name.
        tail = "/".join(parts[-2:])
        return tail if tail in canonical else None
    last = parts[-1]
    if last in multiple:
        return multiple[last]
    if len(parts) >= 2 and last in canonical:
        return last
    return None
