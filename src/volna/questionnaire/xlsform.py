"""XLSForm import and export: the spreadsheet format of ODK, KoboToolbox and pyxform.

An XLSForm is an .xlsx workbook with a ``survey`` sheet (one row per question
or group), a ``choices`` sheet (the answer options of each list) and an
optional ``settings`` sheet. :func:`read_xlsform` turns one into a
:class:`~volna.questionnaire.model.Questionnaire`; :func:`write_xlsform`
writes a questionnaire back so that Kobo, ODK and pyxform accept it and so
that ``read_xlsform(write_xlsform(q)) == q``.

What XLSForm cannot say, volna says in columns and a sheet that XLSForm tools
ignore (checked: pyxform 4.5 converts the export and ODK Validate accepts it):

``survey`` columns
    ``volna::type``        ``scale`` or ``country`` on a ``select_one`` row
    ``volna::min``         lower bound of an integer, decimal or date (a number
    ``volna::max``         or an ISO date); no constraint is generated from them
    ``volna::paired_with`` the question measuring the same thing at another time
    ``volna::period``      which time this question measures ("before", "after")
    ``volna::attention``   the code(s), space-separated, an attentive respondent
                           gives to this instructed item (an attention check)
    ``volna::honeypot``    ``yes``: hidden from people; only bots answer it
    ``volna::recruitment`` ``yes``: how the respondent was reached (a release
                           leaves it out unless asked)
    ``volna::reverse``     ``yes``: a reverse-keyed scale item (screening's
                           consistency and person-fit indices flip it)
    ``volna::choice_list`` ``yes``: the question uses the named, shared choice
                           list of volna's ``choice_lists`` (kept even if only
                           one question uses it)
    ``volna::other_for``   on the generated "please specify" text row
                           ``<q>_other``: the question it belongs to. The row
                           makes the export work in ODK and Kobo; on import it
                           folds back into the question's ``other`` choice.
``choices`` columns
    ``volna_value``        the number a scale option scores
    ``volna_missing``      ``yes`` for "don't know" outside the scale
    ``volna_exclusive``    ``yes`` for a "none of these" option
    ``volna_other``        ``yes`` for "other, please specify"
    pyxform turns choices columns into XML element names, and 4.5 crashes on a
    ``::`` there, hence ``_``; ``value`` itself is XLSForm's other name for
    ``name``. On import ``volna::value`` etc. and unprefixed ``missing``,
    ``exclusive`` and ``other`` are accepted too.
``settings`` columns
    ``volna::title::<Language (code)>`` the title in languages other than the
    default one (``form_title`` holds the default language's).
``volna_paradata`` sheet
    columns ``name``, ``type`` and ``label::<Language (code)>``: every paradata
    column in order, written when some paradata has no XLSForm type;
    ``required`` is ``yes`` where the study needs the column in every response
    file (otherwise a response file may lack it: read as empty); ``page``
    names the group (section) whose time on page a ``duration`` row holds. A
    ``start``/``end``/``today`` row of the survey sheet says so in its
    ``required`` column.
``volna_checks`` sheet
    columns ``name``, ``when`` and ``message::<Language (code)>``: the logical
    checks screening flags (``Questionnaire.checks``).

Paradata: XLSForm's ``start`` and ``end`` (interview start and end time) and
``today`` (the interview date) identify no one and become
``Paradata(type="datetime")`` named as in the row (volna has no date paradata;
``today`` holds a date, which a datetime column takes). Back the other way, a
``datetime`` paradata named ``start``, ``end`` or ``today`` is exported as a
row of that type at the top of the survey sheet, so ODK and Kobo record it.

Choice lists: on import, a list used by several questions, or marked with
``volna::choice_list``, or used by none, becomes an entry of
``choice_lists``; a list used by one question becomes its inline choices.
On export, inline choices get a list named after their question.

Refused (:class:`~volna.errors.UnsupportedFormError`, naming file, row and
type): repeats; location (geopoint, geotrace, geoshape, start-geopoint,
background-geopoint); photos, recordings and files (image, audio, video, file,
barcode, background-audio); device and identity metadata (deviceid,
phonenumber, simserial, subscriberid, imei, username, email, audit);
calculate, hidden, range, rank, time, dateTime, acknowledge, external data
(select_one_from_file, xml-external, csv-external, ...) and any unknown type:
volna never silently drops a question. Columns that would change what is
collected (``default``, ``calculation``, ``choice_filter``, ``read_only``,
``trigger``, ``parameters``, ``repeat_count``) are refused when filled in;
columns that only change the display (``guidance_hint``, ``media::image``,
a group's ``appearance``) and columns XLSForm does not know (researchers'
notes, Kobo's ``$kuid``) are ignored, unless the header looks like a misspelled
XLSForm column. Content after 20 blank rows is refused, since XLSForm tools
would silently drop it. Settings other than ``form_id``/``id_string``,
``form_title``, ``version``, ``default_language``, ``style``,
``instance_name`` and ``allow_choice_duplicates`` are refused
(``public_key``: volna uses its own encryption).

Languages come from the translation columns (``label::Russian (ru)``,
``label::ru``, ``label::Russian``). The untranslated ``label`` column is in
the ``default_language`` of the settings sheet; without that setting it is in
the first translated language, or, in a form with no translations at all, in
``und`` (ISO 639 "undetermined"): volna does not guess a language.

The workbook is hostile input: it must be an .xlsx of at most 20 MB that
expands to at most 100 MB, without macros, parsed by openpyxl in read-only
mode through defusedxml; anything openpyxl cannot read becomes a one-line
:class:`~volna.errors.QuestionnaireError` naming the file.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pycountry

from volna.errors import QuestionnaireError, UnsupportedFormError
from volna.questionnaire.countries import country_codes, country_name
from volna.questionnaire.model import (
    CHOICE_TYPES,
    CODE_PATTERN,
    LANGUAGE_PATTERN,
    NAME_PATTERN,
    OTHER_SUFFIX,
    PARADATA_TYPES,
    Check,
    Choice,
    Paradata,
    Question,
    Questionnaire,
    Section,
)

__all__ = ["read_xlsform", "write_xlsform"]

#: Largest workbook accepted; a questionnaire is a few hundred kilobytes.
MAX_BYTES = 20_000_000
#: Largest total size of the workbook's parts once unzipped (zip bombs).
MAX_UNZIPPED_BYTES = 100_000_000
#: More parts than this is not a questionnaire (zip bombs, fuzzed files).
MAX_PARTS = 2_000
#: XLSForm tools stop reading a sheet after this many adjacent blank rows.
BLANK_ROWS = 20
#: Rows with content per sheet; a country list is ~250 rows, a long survey ~2,000.
MAX_ROWS = 100_000

#: Name of the generated list of countries for ``country`` questions.
COUNTRY_LIST = "iso3166_1"
#: Sheet that lists volna's paradata (XLSForm tools ignore unknown sheets).
PARADATA_SHEET = "volna_paradata"
#: Language of untranslated text in a form that names no language (ISO 639-2).
UNDETERMINED = "und"

#: Sheet that lists the questionnaire's logical checks for screening.
CHECKS_SHEET = "volna_checks"

_SHEETS = ("survey", "choices", "settings", PARADATA_SHEET, CHECKS_SHEET)

# Labels volna supplies for rows it generates; other languages get English.
_OTHER_LABEL = {"ru": "Другое", "en": "Other"}
_SPECIFY_LABEL = {"ru": "Уточните", "en": "Please specify"}

# -- column names ---------------------------------------------------------------

_TRANSLATABLE = ("label", "hint", "required_message", "constraint_message")
_SURVEY_KEYS = {
    "type",
    "name",
    "label",
    "hint",
    "required",
    "required_message",
    "relevant",
    "constraint",
    "constraint_message",
    "appearance",
}
# In the order they are written as columns.
_VOLNA_SURVEY_COLUMNS = (
    "volna::type",
    "volna::min",
    "volna::max",
    "volna::paired_with",
    "volna::period",
    "volna::attention",
    "volna::honeypot",
    "volna::recruitment",
    "volna::reverse",
    "volna::choice_list",
    "volna::other_for",
)
_VOLNA_SURVEY_KEYS = set(_VOLNA_SURVEY_COLUMNS)
_CHOICE_KEYS = {"list_name", "name", "label", "missing", "exclusive", "other"}
_VOLNA_CHOICE_KEYS = {"volna::value", "volna::missing", "volna::exclusive", "volna::other"}
# What pyxform can take as choices headers (they become XML element names).
_VOLNA_CHOICE_COLUMNS = {"volna_" + k.split("::")[1]: k for k in _VOLNA_CHOICE_KEYS}
_PARADATA_KEYS = {"name", "type", "label", "required", "page"}
_SETTINGS_KEYS = {
    "form_id",
    "id_string",
    "form_title",
    "version",
    "default_language",
    "style",
    "instance_name",
    "allow_choice_duplicates",
}
_VOLNA_SETTINGS_KEYS = {"volna::title"}
_ALIASES = {
    "caption": "label",
    "relevance": "relevant",
    "constraining_message": "constraint_message",
    "requiredmsg": "required_message",
    "value": "name",  # XLSForm's alias, which is why scale scores are volna::value
    "list name": "list_name",
    "set_form_title": "form_title",
    "set_form_id": "form_id",
}
# XLSForm columns that only change how a question looks; volna has no place
# for them and dropping them changes no answer.
_DISPLAY_COLUMNS = {
    "guidance_hint",
    "image",
    "big-image",
    "audio",
    "video",
    "media",
    "autoplay",
    "rows",
    "body",
    "instance",
    "bind",
    "compact_tag",
}
# XLSForm columns that change what is collected; ignoring them would change
# the data, so a filled-in cell is refused.
_BEHAVIOUR_COLUMNS = {
    "default": "default answers are not supported: a respondent's answer must be their own",
    "calculation": "calculations are not supported: derive variables after collection",
    "calculate": "calculations are not supported: derive variables after collection",
    "choice_filter": "choice filters (cascading selects) are not supported",
    "read_only": "read-only questions are not supported",
    "readonly": "read-only questions are not supported",
    "trigger": "triggers are not supported",
    "parameters": "question parameters (randomisation, ranges...) are not supported",
    "repeat_count": "repeats are not supported",
    "count": "repeats are not supported",
    "jr:count": "repeats are not supported",
    "save_to": "entities (server-side datasets) are not supported",
}

# -- question types ---------------------------------------------------------------

_SIMPLE_TYPES = {
    "integer": "integer",
    "int": "integer",
    "decimal": "decimal",
    "text": "text",
    "string": "text",
    "date": "date",
    "note": "note",
}
_SELECT_ONE = ("select_one", "select one", "select1")
_SELECT_MULTIPLE = ("select_multiple", "select multiple", "select all that apply")
_SELECT = re.compile(
    r"^(?P<kind>select_one|select one|select1|select_multiple|select multiple|"
    r"select all that apply)(?:\s+(?P<list>\S+))?(?P<other>\s+or_other)?$",
    re.IGNORECASE,
)
_BEGIN_GROUP = {"begin group", "begin_group"}
_END_GROUP = {"end group", "end_group"}
_METADATA = {"start", "end", "today"}

_LOCATION = "volna refuses location data (respondents' safety)"
_MEDIA = (
    "volna refuses photos, recordings and file uploads: they carry identifying "
    "content and metadata (respondents' safety)"
)
_IDENTITY = "volna refuses device and identity metadata (respondents' safety)"


def _each(names: str) -> list[str]:
    return [n.strip() for n in names.split(",")]


# pyxform's spellings and aliases too, so that an old form is refused by name.
_REFUSED_TYPES: dict[str, str] = {
    **dict.fromkeys(
        _each(
            "geopoint, geotrace, geoshape, start-geopoint, background-geopoint, gps, location, "
            "add location prompt, q geopoint, q geotrace, q geoshape, q location, osm"
        ),
        _LOCATION,
    ),
    **dict.fromkeys(
        _each(
            "image, photo, audio, video, file, barcode, background-audio, add image prompt, "
            "add photo prompt, add audio prompt, add video prompt, add file prompt, "
            "add barcode prompt, q image, q picture, q audio, q video, q barcode"
        ),
        _MEDIA,
    ),
    **dict.fromkeys(
        _each(
            "deviceid, device id, get device id, imei, phonenumber, phone number, "
            "get phone number, simserial, sim id, get sim id, subscriberid, subscriber id, "
            "get subscriber id, username, email, uri:deviceid, uri:email, uri:phonenumber, "
            "uri:simserial, uri:subscriberid, uri:username"
        ),
        _IDENTITY,
    ),
    "audit": (
        "volna refuses audit logs: they record every move of the respondent and can "
        "record location (respondents' safety)"
    ),
    **dict.fromkeys(
        _each(
            "begin repeat, begin_repeat, end repeat, end_repeat, begin loop, begin_loop, "
            "end loop, end_loop"
        ),
        "repeats are not supported: volna keeps one row per respondent",
    ),
    **dict.fromkeys(
        _each("calculate, hidden, add calculate prompt, q calculate"),
        "computed fields are not supported: derive variables after collection",
    ),
    **dict.fromkeys(
        _each("time, datetime, date time, add date time prompt, start time, end time"),
        "times of day are not supported: they identify respondents; use date, or "
        "volna's start/end paradata",
    ),
    "range": "range is not supported: use integer with volna::min/volna::max, or a scale",
    "rank": "rank is not supported: ask one scale question per item",
    "acknowledge": "acknowledge is not supported: use a note or a select_one",
    "trigger": "trigger is not supported",
    **dict.fromkeys(
        _each(
            "select_one_from_file, select_multiple_from_file, select one from file, "
            "select multiple from file, select_one_external, select one external, "
            "xml-external, csv-external"
        ),
        "external data files are not supported: put the choices in the choices sheet",
    ),
}
_KNOWN_TYPES = sorted(
    {*_SIMPLE_TYPES, *_SELECT_ONE, *_SELECT_MULTIPLE, *_BEGIN_GROUP, *_END_GROUP, *_METADATA}
)

_TRUE = {"yes", "true", "true()", "1"}
_FALSE = {"no", "false", "false()", "0", ""}


# -- small helpers ------------------------------------------------------------------


def _cell_text(value: Any) -> str:
    """A cell's value as the text XLSForm means by it.

    Excel stores ``1`` typed in a cell as the number 1.0, and XLSForm means the
    text "1"; booleans are Excel's TRUE/FALSE.

    >>> _cell_text(3.0), _cell_text(2.5), _cell_text(True), _cell_text("  a b ")
    ('3', '2.5', 'true', 'a b')
    >>> _cell_text(dt.datetime(2022, 2, 24))
    '2022-02-24'
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    # pyxform's default (clean_text_values) also trims text.
    return str(value).strip()


def _language_code(text: str) -> str | None:
    """The language code in a translation header's language part, or None.

    >>> _language_code("Russian (ru)"), _language_code("en"), _language_code("English")
    ('ru', 'en', 'en')
    >>> _language_code("Русский (RU)"), _language_code("Martian") is None
    ('ru', True)
    """
    text = text.strip()
    match = re.search(r"\(([^()]*)\)\s*$", text)
    candidate = match.group(1).strip() if match else text
    primary, _, rest = candidate.partition("-")
    candidate = primary.lower() + ("-" + rest if rest else "")
    if LANGUAGE_PATTERN.match(candidate):
        return candidate
    if match:
        return None
    try:
        language = pycountry.languages.lookup(text)
    except LookupError:
        return None
    return getattr(language, "alpha_2", None) or language.alpha_3


def _language_header(code: str) -> str:
    """The ``Language (code)`` form XLSForm recommends for a language code.

    >>> _language_header("ru"), _language_header("und"), _language_header("xx")
    ('Russian (ru)', 'Undetermined (und)', 'xx')
    """
    primary = code.split("-")[0]
    if len(primary) == 2:
        language = pycountry.languages.get(alpha_2=primary)
    else:
        language = pycountry.languages.get(alpha_3=primary)
    return f"{language.name} ({code})" if language is not None else code


def _suggest(word: str, options: Iterable[str], cutoff: float = 0.75) -> str:
    close = difflib.get_close_matches(word.lower(), list(options), n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _one_line(exc: BaseException) -> str:
    """An exception as one short line, for messages about files we could not read."""
    text = " ".join(str(exc).split())
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _unreadable(filename: str, exc: BaseException) -> QuestionnaireError:
    """The error for a workbook openpyxl cannot read, naming the root cause."""
    cause = exc
    while (cause.__cause__ or cause.__context__) is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    if type(cause).__module__.startswith("defusedxml"):
        return QuestionnaireError(
            f"{filename}: refused: the workbook's XML declares a DTD or entities, which "
            f"spreadsheets never need and attacks use ({type(cause).__name__})"
        )
    return QuestionnaireError(
        f"{filename}: not a readable .xlsx workbook (damaged or not Excel): {_one_line(cause)}"
    )


# -- reading the workbook --------------------------------------------------------------


@dataclass
class _RawSheet:
    """A sheet's rows as (Excel row number, cell values), blank rows left out."""

    title: str
    rows: list[tuple[int, tuple[Any, ...]]]


def _check_file(path: Path, filename: str) -> None:
    """Refuse what is not a plain .xlsx of sensible size before any XML is parsed."""
    suffix = path.suffix.lower()
    if suffix == ".xls":
        raise QuestionnaireError(
            f"{filename}: .xls (Excel 97-2003) workbooks are not supported; "
            "open it in Excel or LibreOffice and save it as .xlsx"
        )
    if suffix in (".xlsm", ".xltm"):
        raise QuestionnaireError(
            f"{filename}: macro-enabled workbooks are refused; save it as .xlsx (Excel Workbook)"
        )
    if suffix != ".xlsx":
        raise QuestionnaireError(f"{filename}: an XLSForm must be an .xlsx workbook")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise QuestionnaireError(f"{filename}: cannot read: {exc.strerror}") from None
    if size > MAX_BYTES:
        raise QuestionnaireError(
            f"{filename}: larger than {MAX_BYTES // 1_000_000} MB; "
            "a questionnaire is far smaller, so volna does not open it"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise QuestionnaireError(
            f"{filename}: not a readable .xlsx workbook (damaged or not Excel): {_one_line(exc)}"
        ) from None
    if len(parts) > MAX_PARTS:
        raise QuestionnaireError(f"{filename}: the workbook has {len(parts)} parts; refused")
    # Declared sizes bound what zipfile will inflate, so this stops zip bombs.
    if sum(p.file_size for p in parts) > MAX_UNZIPPED_BYTES:
        raise QuestionnaireError(
            f"{filename}: the workbook expands to more than "
            f"{MAX_UNZIPPED_BYTES // 1_000_000} MB; refused"
        )
    if any(p.filename.lower().endswith("vbaproject.bin") for p in parts):
        raise QuestionnaireError(
            f"{filename}: the workbook contains macros; save it as .xlsx (Excel Workbook) "
            "without macros"
        )


def _load_workbook(path: Path, filename: str) -> tuple[list[str], dict[str, _RawSheet]]:
    """All openpyxl work in one place: any failure of a hostile file becomes one line."""
    _check_file(path, filename)
    import openpyxl

    # openpyxl parses through defusedxml only when it is installed (and not
    # switched off by OPENPYXL_DEFUSEDXML); without it, entity tricks in a
    # hostile workbook reach the standard library parser.
    if openpyxl.DEFUSEDXML is not True:
        raise QuestionnaireError(
            f"{filename}: defusedxml is not active, and volna does not parse untrusted "
            "spreadsheets without it (pip install defusedxml; unset OPENPYXL_DEFUSEDXML)"
        )
    try:
        book = openpyxl.load_workbook(
            path, read_only=True, data_only=True, keep_links=False, keep_vba=False
        )
    except Exception as exc:  # openpyxl raises anything at all on damaged input
        raise _unreadable(filename, exc) from None
    try:
        titles = list(book.sheetnames)
        sheets = {
            title: _RawSheet(title, _read_rows(book[title], filename))
            for title in titles
            if title in _SHEETS
        }
    except QuestionnaireError:
        raise
    except Exception as exc:
        raise _unreadable(filename, exc) from None
    finally:
        book.close()
    return titles, sheets


def _read_rows(sheet: Any, filename: str) -> list[tuple[int, tuple[Any, ...]]]:
    """Rows with content, numbered as Excel numbers them, up to 20 adjacent blank rows.

    Content after the blank stretch is an error rather than ignored: XLSForm
    tools would silently drop those questions.
    """
    if not hasattr(sheet, "iter_rows"):  # a chart sheet named 'survey'
        raise QuestionnaireError(f"{filename}: sheet {sheet.title!r} is not a worksheet")
    # A hostile file can declare a huge dimension; forget it and read what is there.
    sheet.reset_dimensions()
    rows: list[tuple[int, tuple[Any, ...]]] = []
    blank_run = 0
    stopped_at = 0
    for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
        blank = all(_cell_text(v) == "" for v in values)
        if stopped_at:
            if not blank:
                raise QuestionnaireError(
                    f"{filename}: {sheet.title} row {number}: content after "
                    f"{BLANK_ROWS} blank rows (rows {stopped_at - BLANK_ROWS + 1}-{stopped_at}); "
                    "XLSForm tools stop reading there, so delete the blank rows"
                )
            continue
        if blank:
            blank_run += 1
            if blank_run == BLANK_ROWS:
                stopped_at = number
            continue
        blank_run = 0
        if len(rows) >= MAX_ROWS:
            raise QuestionnaireError(
                f"{filename}: {sheet.title}: more than {MAX_ROWS} rows; refused"
            )
        rows.append((number, tuple(values)))
    return rows


# -- interpreting the sheets -----------------------------------------------------------


@dataclass
class _Column:
    index: int
    header: str
    key: str
    language: str | None  # None: untranslated (the default language) or not translatable


@dataclass
class _Sheet:
    """A sheet with its header row understood."""

    title: str
    columns: list[_Column]
    rows: list[tuple[int, tuple[Any, ...]]]
    refused: list[_Column] = field(default_factory=list)

    def has(self, key: str) -> bool:
        return any(c.key == key for c in self.columns)


class _Reader:
    """Turns the sheets' rows into model objects, naming file, sheet, row and column."""

    def __init__(self, filename: str, stem: str, titles: list[str], raw: dict[str, _RawSheet]):
        self.filename = filename
        self.stem = stem
        self.titles = titles
        self.raw = raw
        self.default_language = UNDETERMINED
        self.languages: tuple[str, ...] = ()

    # -- messages

    def fail(
        self, sheet: str, row: int | None, message: str, column: str | None = None
    ) -> QuestionnaireError:
        return QuestionnaireError(self._where(sheet, row, column) + message)

    def refuse(self, sheet: str, row: int, message: str) -> UnsupportedFormError:
        return UnsupportedFormError(self._where(sheet, row, None) + message)

    def _where(self, sheet: str, row: int | None, column: str | None) -> str:
        place = f"{sheet} row {row}" if row is not None else sheet
        if column is not None:
            place += f", column {column}"
        return f"{self.filename}: {place}: "

    # -- sheets and headers

    def check_sheet_names(self) -> None:
        """Catch 'Survey' or 'choises': the form would otherwise lose its choices."""
        for wanted in ("survey", "choices", "settings"):
            if wanted in self.titles:
                continue
            for title in self.titles:
                if title in _SHEETS:
                    continue
                low = title.strip().lower()
                if low == wanted or difflib.SequenceMatcher(None, low, wanted).ratio() >= 0.75:
                    raise QuestionnaireError(
                        f"{self.filename}: sheet {title!r} should be named {wanted!r} "
                        "(XLSForm sheet names are lower case and spelled exactly)"
                    )
        if "survey" not in self.titles:
            raise QuestionnaireError(
                f"{self.filename}: no 'survey' sheet "
                f"(the workbook has: {', '.join(repr(t) for t in self.titles) or 'no sheets'})"
            )
        if "entities" in self.titles:
            raise UnsupportedFormError(
                f"{self.filename}: an 'entities' sheet is not supported: volna does not copy "
                "answers into server-side datasets"
            )

    def sheet(self, title: str, known: set[str], volna_known: set[str]) -> _Sheet | None:
        raw = self.raw.get(title)
        if raw is None or (not raw.rows and title != "survey"):
            return None  # an empty optional sheet is as good as none
        if not raw.rows or raw.rows[0][0] != 1:
            raise self.fail(title, 1, "expected the column headers in the first row")
        header_row = raw.rows[0][1]
        columns: list[_Column] = []
        refused: list[_Column] = []
        seen: dict[tuple[str, str | None], str] = {}
        blank_run = 0
        for index, value in enumerate(header_row):
            header = _cell_text(value)
            if not header:
                blank_run += 1
                if blank_run >= BLANK_ROWS:
                    # XLSForm stops after 20 blank columns; so do we, but loudly.
                    later = [_cell_text(v) for v in header_row[index:]]
                    if any(later):
                        raise self.fail(
                            title,
                            1,
                            f"column header {next(h for h in later if h)!r} comes after "
                            f"{BLANK_ROWS} blank columns; XLSForm tools ignore it, so move it",
                        )
                    break
                continue
            blank_run = 0
            column = self.column(title, index, header, known, volna_known)
            if column is None:
                continue
            if column.key.startswith("!"):
                refused.append(column)
                continue
            ident = (column.key, column.language)
            if ident in seen:
                raise self.fail(
                    title,
                    1,
                    f"columns {seen[ident]!r} and {header!r} are the same column; keep one",
                )
            seen[ident] = header
            columns.append(column)
        return _Sheet(title, columns, raw.rows[1:], refused)

    def column(
        self, title: str, index: int, header: str, known: set[str], volna_known: set[str]
    ) -> _Column | None:
        """Understand one header; None for a column volna ignores."""
        if header.startswith("$") or header.lower().startswith("kobo--"):
            return None  # KoboToolbox's bookkeeping ($kuid, $autoname...)
        parts = [p.strip() for p in header.split("::")]
        base = " ".join(parts[0].lower().split())
        base = _ALIASES.get(base, base)
        if base == "volna":
            key = "volna::" + (parts[1].lower() if len(parts) > 1 else "")
            if key not in volna_known:
                raise self.fail(
                    title,
                    1,
                    f"unknown volna column {header!r} "
                    f"(volna columns on this sheet: {', '.join(sorted(volna_known)) or 'none'})",
                )
            if key == "volna::title":
                return self._translated(title, index, header, key, parts[2:])
            if len(parts) > 2:
                raise self.fail(title, 1, f"unknown volna column {header!r}")
            return _Column(index, header, key, None)
        if title == "choices" and base in _VOLNA_CHOICE_COLUMNS:
            return _Column(index, header, _VOLNA_CHOICE_COLUMNS[base], None)
        if base in known:
            translatable = base == "label" or (title == "survey" and base in _TRANSLATABLE)
            if (title, base) in (("settings", "form_title"), (CHECKS_SHEET, "message")):
                translatable = True
            if translatable:
                return self._translated(title, index, header, base, parts[1:])
            if len(parts) > 1:
                raise self.fail(title, 1, f"column {header!r}: {base!r} cannot be translated")
            return _Column(index, header, base, None)
        if title == "settings":
            if base == "public_key":
                return _Column(index, header, "!public_key", None)
            return _Column(index, header, "!setting", None)
        if base in _DISPLAY_COLUMNS or base.startswith("sms_"):
            return None
        if title == "survey" and base in _BEHAVIOUR_COLUMNS:
            return _Column(index, header, "!" + base, None)
        close = difflib.get_close_matches(base, sorted(known), n=1, cutoff=0.8)
        if close:
            raise self.fail(title, 1, f"unknown column {header!r} (did you mean {close[0]!r}?)")
        return None  # researchers' own columns: comments, translator notes

    def _translated(
        self, title: str, index: int, header: str, key: str, rest: list[str]
    ) -> _Column:
        if not rest:
            return _Column(index, header, key, None)
        code = _language_code(rest[0]) if len(rest) == 1 else None
        if code is None:
            raise self.fail(
                title,
                1,
                f"column {header!r}: cannot tell the language; "
                f"write it as '{key}::Russian (ru)' or '{key}::ru'",
            )
        return _Column(index, header, key, code)

    # -- cells

    def raw_value(self, sheet: _Sheet, values: tuple[Any, ...], key: str) -> Any:
        for c in sheet.columns:
            if c.key == key and c.language is None:
                return values[c.index] if c.index < len(values) else None
        return None

    def text(self, sheet: _Sheet, values: tuple[Any, ...], key: str) -> str:
        return _cell_text(self.raw_value(sheet, values, key))

    def optional(self, sheet: _Sheet, values: tuple[Any, ...], key: str) -> str | None:
        return self.text(sheet, values, key) or None

    def texts(self, sheet: _Sheet, row: int, values: tuple[Any, ...], key: str) -> dict[str, str]:
        """Text in each language; the untranslated column is the default language's."""
        out: dict[str, str] = {}
        source: dict[str, str] = {}
        for c in sheet.columns:
            if c.key != key:
                continue
            value = _cell_text(values[c.index]) if c.index < len(values) else ""
            if not value:
                continue
            language = c.language or self.default_language
            if language in out and out[language] != value:
                raise self.fail(
                    sheet.title,
                    row,
                    f"columns {source[language]!r} and {c.header!r} give different "
                    f"{_language_header(language)} text; say which language the untranslated "
                    "column is in with default_language in the settings sheet",
                )
            out[language] = value
            source[language] = c.header
        return out

    def flag(self, sheet: _Sheet, row: int, values: tuple[Any, ...], key: str) -> bool:
        keys = [key, "volna::" + key] if not key.startswith("volna::") else [key]
        result = False
        for k in keys:
            text = self.text(sheet, values, k).lower()
            if text in _TRUE:
                result = True
            elif text not in _FALSE:
                raise self.fail(sheet.title, row, f"expected yes or no, found {text!r}", k)
        return result

    def number(
        self, sheet: _Sheet, row: int, values: tuple[Any, ...], key: str, *, dates: bool
    ) -> float | int | str | None:
        """A number (or, for bounds, an ISO date) from a cell that may hold either."""
        value = self.raw_value(sheet, values, key)
        expected = "a number or a date (YYYY-MM-DD)" if dates else "a number"
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, bool):
            raise self.fail(sheet.title, row, f"expected {expected}, found {value!r}", key)
        if isinstance(value, int | float):
            if not math.isfinite(value):
                raise self.fail(sheet.title, row, f"expected {expected}, found {value!r}", key)
            return value
        if isinstance(value, dt.datetime | dt.date):
            if dates:
                return _cell_text(value)
            raise self.fail(sheet.title, row, f"expected {expected}, found a date", key)
        text = _cell_text(value)
        for parse in (int, float):
            try:
                number = parse(text)
            except ValueError:
                continue
            if math.isfinite(number):
                return number
        if dates:
            try:
                return dt.date.fromisoformat(text).isoformat()
            except ValueError:
                pass
        raise self.fail(sheet.title, row, f"expected {expected}, found {text!r}", key)

    # -- settings and languages

    def settings(self, sheet: _Sheet | None) -> dict[str, Any]:
        if sheet is None or not sheet.rows:
            return {}
        row, values = sheet.rows[0]
        if len(sheet.rows) > 1:
            raise self.fail(
                "settings",
                sheet.rows[1][0],
                "the settings sheet holds one row of values, under its headers",
            )
        for c in sheet.refused:
            value = _cell_text(values[c.index]) if c.index < len(values) else ""
            if not value:
                continue  # an empty setting has no effect
            if c.key == "!public_key":
                raise self.refuse(
                    "settings",
                    row,
                    "setting 'public_key' is not supported: volna encrypts answers with its "
                    "own keys, not ODK's",
                )
            raise self.refuse(
                "settings",
                row,
                f"setting {c.header!r} is not supported"
                + _suggest(c.header, sorted(_SETTINGS_KEYS))
                + f" (volna understands: {', '.join(sorted(_SETTINGS_KEYS))})",
            )
        out: dict[str, Any] = {"row": row, "values": values}
        form_id = self.text(sheet, values, "form_id")
        id_string = self.text(sheet, values, "id_string")
        if form_id and id_string and form_id != id_string:
            raise self.fail(
                "settings", row, f"form_id {form_id!r} and id_string {id_string!r} differ"
            )
        out["id"] = form_id or id_string or None
        out["version"] = self.optional(sheet, values, "version")
        language = self.text(sheet, values, "default_language")
        if language and language.lower() != "default":
            code = _language_code(language)
            if code is None:
                raise self.fail(
                    "settings",
                    row,
                    f"cannot tell the language of {language!r}; write it as 'Russian (ru)'",
                    "default_language",
                )
            out["default_language"] = code
        return out

    def find_languages(self, sheets: list[_Sheet], default: str | None) -> None:
        """Languages in order of their first column; the untranslated one is the default."""
        order: list[str | None] = []
        for sheet in sheets:
            for c in sheet.columns:
                if c.key in _TRANSLATABLE or c.key in ("volna::title", "form_title", "message"):
                    if c.key == "form_title" and c.language is None:
                        continue  # the title alone names no language
                    if c.language not in order:
                        order.append(c.language)
        translated = [code for code in order if code is not None]
        if default is None:
            default = translated[0] if translated else UNDETERMINED
        languages: list[str] = []
        for code in order:
            code = code or default
            if code not in languages:
                languages.append(code)
        if not languages:
            languages = [default]
        if default not in languages:
            raise self.fail(
                "settings",
                None,
                f"default_language {_language_header(default)!r} has no label column "
                f"(languages: {', '.join(_language_header(c) for c in languages)})",
            )
        self.default_language = default
        self.languages = tuple(languages)

    # -- choices

    def choice_lists(self, sheet: _Sheet | None) -> dict[str, list[tuple[int, Choice]]]:
        lists: dict[str, list[tuple[int, Choice]]] = {}
        if sheet is None:
            return lists
        for key in ("list_name", "name"):
            if not sheet.has(key):
                raise self.fail("choices", 1, f"no {key!r} column")
        codes: dict[tuple[str, str], int] = {}
        for row, values in sheet.rows:
            list_name = self.text(sheet, values, "list_name")
            code = self.text(sheet, values, "name")
            if not list_name and not code:
                continue  # a row of researchers' notes
            if not list_name:
                raise self.fail("choices", row, "a choice without a list_name", "list_name")
            if not code:
                raise self.fail("choices", row, f"a choice of list {list_name!r} without a name")
            if not CODE_PATTERN.match(code):
                raise self.fail(
                    "choices", row, f"choice name {code!r} may not contain spaces or '/'", "name"
                )
            if (list_name, code) in codes:
                raise self.fail(
                    "choices",
                    row,
                    f"list {list_name!r} has the choice {code!r} twice "
                    f"(also on row {codes[list_name, code]}); volna needs unique codes",
                )
            codes[list_name, code] = row
            value = self.number(sheet, row, values, "volna::value", dates=False)
            lists.setdefault(list_name, []).append(
                (
                    row,
                    Choice(
                        code,
                        self.texts(sheet, row, values, "label"),
                        value=float(value) if value is not None else None,
                        exclusive=self.flag(sheet, row, values, "exclusive"),
                        other=self.flag(sheet, row, values, "other"),
                        missing=self.flag(sheet, row, values, "missing"),
                    ),
                )
            )
        return lists

    # -- the survey

    def survey(
        self, sheet: _Sheet, lists: dict[str, list[tuple[int, Choice]]]
    ) -> tuple[list[_Item], list[tuple[int, Paradata]], dict[str, int]]:
        for key in ("type", "name"):
            if not sheet.has(key):
                raise self.fail(
                    "survey",
                    1,
                    f"no {key!r} column"
                    + _suggest(key, [c.header for c in sheet.columns] or [""], cutoff=0.6),
                )
        items: list[_Item] = []
        paradata: list[tuple[int, Paradata]] = []
        names: dict[str, int] = {}
        groups: list[tuple[str, int]] = []
        questions: dict[str, _Item] = {}
        for row, values in sheet.rows:
            type_text = " ".join(self.text(sheet, values, "type").split())
            name = self.text(sheet, values, "name")
            if not type_text:
                if name or self.texts(sheet, row, values, "label"):
                    raise self.fail("survey", row, "a row with a name or label but no type", "type")
                continue
            low = type_text.lower()
            if low in _END_GROUP:
                if not groups:
                    raise self.fail("survey", row, "'end group' without a 'begin group'")
                groups.pop()
                continue
            self._refuse_type(row, type_text)
            self._refuse_columns(sheet, row, values)
            if not name:
                raise self.fail("survey", row, f"a {type_text!r} row needs a name", "name")
            if not NAME_PATTERN.match(name):
                raise self.fail(
                    "survey",
                    row,
                    f"{name!r} is not a valid name "
                    "(a letter or '_', then letters, digits, '_', '-' or '.')",
                    "name",
                )
            path = tuple(g for g, _ in groups)
            if low in _BEGIN_GROUP:
                self._claim(names, name, row)
                items.append(
                    _Item(
                        row,
                        section=Section(
                            name,
                            self.texts(sheet, row, values, "label"),
                            self.optional(sheet, values, "relevant"),
                            parent=path,
                        ),
                    )
                )
                groups.append((name, row))
                continue
            if low in _METADATA:
                self._claim(names, name, row)
                labels = self.texts(sheet, row, values, "label")
                required = self.flag(sheet, row, values, "required")
                paradata.append((row, Paradata(name, "datetime", labels, required=required)))
                continue
            target = self.text(sheet, values, "volna::other_for")
            if target:
                self._specify_row(row, type_text, name, target, questions)
                continue
            self._claim(names, name, row)
            item = self._question(sheet, row, values, type_text, name, path, lists)
            questions[name] = item
            items.append(item)
        if groups:
            name, row = groups[-1]
            raise self.fail("survey", row, f"group {name!r} is never closed with 'end group'")
        return items, paradata, names

    def _claim(self, names: dict[str, int], name: str, row: int) -> None:
        if name in names:
            raise self.fail(
                "survey", row, f"the name {name!r} is already used on row {names[name]}", "name"
            )
        names[name] = row

    def _refuse_type(self, row: int, type_text: str) -> None:
        low = type_text.lower()
        words = low.split()
        if _SELECT.match(type_text) or low in _BEGIN_GROUP or low in _METADATA:
            return
        if low in _SIMPLE_TYPES:
            return
        for key in (low, " ".join(words[:2]), words[0]):
            reason = _REFUSED_TYPES.get(key)
            if reason:
                raise self.refuse("survey", row, f"type {type_text!r} is not supported: {reason}")
        raise self.refuse(
            "survey",
            row,
            f"type {type_text!r} is not supported: unknown type"
            + _suggest(words[0], _KNOWN_TYPES)
            + " (volna never silently drops a question)",
        )

    def _refuse_columns(self, sheet: _Sheet, row: int, values: tuple[Any, ...]) -> None:
        for c in sheet.refused:
            value = _cell_text(values[c.index]) if c.index < len(values) else ""
            if value:
                raise self.refuse(
                    "survey",
                    row,
                    f"column {c.header!r} is not supported: {_BEHAVIOUR_COLUMNS[c.key[1:]]}",
                )

    def _specify_row(
        self, row: int, type_text: str, name: str, target: str, questions: dict[str, _Item]
    ) -> None:
        """Check a generated "please specify" row; the model implies it, so drop it."""
        owner = questions.get(target)
        if owner is None or owner.question is None:
            raise self.fail(
                "survey",
                row,
                f"volna::other_for names {target!r}, which is no question above",
                "volna::other_for",
            )
        if not any(c.other for c in owner.choices):
            raise self.fail(
                "survey",
                row,
                f"volna::other_for: question {target!r} has no 'other' choice",
                "volna::other_for",
            )
        if type_text.lower() not in ("text", "string") or name != target + OTHER_SUFFIX:
            raise self.fail(
                "survey",
                row,
                f"the 'please specify' row of {target!r} must be a text row "
                f"named {target + OTHER_SUFFIX!r}",
            )

    def _question(
        self,
        sheet: _Sheet,
        row: int,
        values: tuple[Any, ...],
        type_text: str,
        name: str,
        path: tuple[str, ...],
        lists: dict[str, list[tuple[int, Choice]]],
    ) -> _Item:
        volna_type = self.text(sheet, values, "volna::type").lower()
        select = _SELECT.match(type_text)
        list_name: str | None = None
        country_list: str | None = None
        choices: tuple[Choice, ...] = ()
        if select:
            kind = select.group("kind").lower()
            qtype = "single" if kind in _SELECT_ONE else "multiple"
            list_name = select.group("list")
            if not list_name:
                raise self.fail("survey", row, f"{type_text!r} needs a choice list name", "type")
            if list_name not in lists:
                if not lists:
                    raise self.fail(
                        "survey",
                        row,
                        f"{type_text!r}: the workbook has no choices (no 'choices' sheet "
                        "or no rows in it)",
                    )
                raise self.fail(
                    "survey",
                    row,
                    f"{type_text!r}: no list named {list_name!r} in the choices sheet"
                    + _suggest(list_name, lists, cutoff=0.6)
                    + f" (lists: {', '.join(sorted(lists))})",
                    "type",
                )
            choices = tuple(c for _, c in lists[list_name])
            if select.group("other"):
                choices = self._or_other(row, list_name, choices)
        else:
            qtype = _SIMPLE_TYPES[type_text.lower()]
        if volna_type:
            if volna_type not in ("scale", "country"):
                raise self.fail(
                    "survey",
                    row,
                    f"unknown volna::type {volna_type!r} (expected scale or country)",
                    "volna::type",
                )
            if qtype != "single":
                raise self.fail(
                    "survey",
                    row,
                    f"volna::type {volna_type} needs a select_one row, not {type_text!r}",
                    "volna::type",
                )
            qtype = volna_type
        if qtype == "country":
            unknown = [c.code for c in choices if c.code not in country_codes()]
            if unknown:
                raise self.fail(
                    "survey",
                    row,
                    f"a country question's list {list_name!r} holds codes that are not "
                    f"ISO 3166-1 alpha-2: {', '.join(unknown[:5])}",
                )
            country_list, choices, list_name = list_name, (), None
        required_text = self.text(sheet, values, "required")
        required: bool | str
        if required_text.lower() in _TRUE - {"1"}:
            required = True
        elif required_text.lower() in _FALSE - {"0"}:
            required = False
        else:
            required = required_text
        shared = self.flag(sheet, row, values, "volna::choice_list")
        if shared and list_name is None:
            raise self.fail(
                "survey", row, "volna::choice_list is for select rows", "volna::choice_list"
            )
        kwargs = {
            "name": name,
            "type": qtype,
            "labels": self.texts(sheet, row, values, "label"),
            "hints": self.texts(sheet, row, values, "hint"),
            "required": required,
            "required_message": self.texts(sheet, row, values, "required_message"),
            "relevant": self.optional(sheet, values, "relevant"),
            "constraint": self.optional(sheet, values, "constraint"),
            "constraint_message": self.texts(sheet, row, values, "constraint_message"),
            "minimum": self.number(sheet, row, values, "volna::min", dates=True),
            "maximum": self.number(sheet, row, values, "volna::max", dates=True),
            "paired_with": self.optional(sheet, values, "volna::paired_with"),
            "period": self.optional(sheet, values, "volna::period"),
            "attention": tuple(self.text(sheet, values, "volna::attention").split()),
            "honeypot": self.flag(sheet, row, values, "volna::honeypot"),
            "recruitment": self.flag(sheet, row, values, "volna::recruitment"),
            "reverse": self.flag(sheet, row, values, "volna::reverse"),
            "section": path,
            "appearance": self.optional(sheet, values, "appearance"),
        }
        return _Item(
            row,
            question=kwargs,
            choices=choices,
            list_name=list_name,
            shared=shared,
            country_list=country_list,
        )

    def _or_other(
        self, row: int, list_name: str, choices: tuple[Choice, ...]
    ) -> tuple[Choice, ...]:
        """XLSForm's ``or_other``: an extra choice 'other' with a "please specify" column."""
        if any(c.code == "other" for c in choices):
            raise self.fail(
                "survey",
                row,
                f"list {list_name!r} already has a choice 'other', so 'or_other' would add a "
                "second; drop 'or_other' and mark that choice with volna::other = yes",
                "type",
            )
        if any(c.other for c in choices):
            raise self.fail(
                "survey",
                row,
                f"list {list_name!r} already has an 'other, please specify' choice; "
                "drop 'or_other'",
                "type",
            )
        labels = {lang: _OTHER_LABEL.get(lang, _OTHER_LABEL["en"]) for lang in self.languages}
        return (*choices, Choice("other", labels, other=True))

    # -- paradata

    def paradata_sheet(self, sheet: _Sheet | None) -> list[tuple[int, Paradata]]:
        if sheet is None:
            return []
        if not sheet.has("name"):
            raise self.fail(PARADATA_SHEET, 1, "no 'name' column")
        out = []
        for row, values in sheet.rows:
            name = self.text(sheet, values, "name")
            ptype = self.text(sheet, values, "type") or "text"
            if not name:
                raise self.fail(PARADATA_SHEET, row, "a paradata row needs a name", "name")
            if not NAME_PATTERN.match(name):
                raise self.fail(PARADATA_SHEET, row, f"{name!r} is not a valid name", "name")
            if ptype not in PARADATA_TYPES:
                raise self.fail(
                    PARADATA_SHEET,
                    row,
                    f"unknown paradata type {ptype!r} "
                    f"(expected one of {', '.join(PARADATA_TYPES)})",
                    "type",
                )
            labels = self.texts(sheet, row, values, "label")
            required = self.flag(sheet, row, values, "required")
            page = self.text(sheet, values, "page") or None
            out.append((row, Paradata(name, ptype, labels, required=required, page=page)))
        return out

    def checks_sheet(self, sheet: _Sheet | None) -> list[Check]:
        if sheet is None:
            return []
        for needed in ("name", "when"):
            if not sheet.has(needed):
                raise self.fail(CHECKS_SHEET, 1, f"no {needed!r} column")
        out = []
        for row, values in sheet.rows:
            name, when = self.text(sheet, values, "name"), self.text(sheet, values, "when")
            if not name or not when:
                raise self.fail(CHECKS_SHEET, row, "a check needs a name and a 'when' expression")
            out.append(Check(name, when, self.texts(sheet, row, values, "message")))
        return out

    def merge_paradata(
        self,
        from_sheet: list[tuple[int, Paradata]],
        from_survey: list[tuple[int, Paradata]],
        names: dict[str, int],
    ) -> list[Paradata]:
        """The paradata sheet gives the order; survey metadata rows it lacks follow."""
        out: list[Paradata] = []
        listed: dict[str, int] = {}
        survey = {p.name: p for _, p in from_survey}
        for row, p in from_sheet:
            if p.name in listed:
                raise self.fail(
                    PARADATA_SHEET, row, f"{p.name!r} is listed twice (also row {listed[p.name]})"
                )
            listed[p.name] = row
            if p.name in survey:
                if p.type != "datetime":
                    raise self.fail(
                        PARADATA_SHEET,
                        row,
                        f"{p.name!r} is a start/end/today row of the survey sheet, "
                        "so its type is datetime",
                        "type",
                    )
            elif p.name in names:
                raise self.fail(
                    PARADATA_SHEET,
                    row,
                    f"the name {p.name!r} is also used on survey row {names[p.name]}",
                    "name",
                )
            out.append(p)
        out.extend(p for _, p in from_survey if p.name not in listed)
        return out

    # -- everything

    def questionnaire(self) -> Questionnaire:
        self.check_sheet_names()
        settings = self.sheet("settings", _SETTINGS_KEYS, _VOLNA_SETTINGS_KEYS)
        survey = self.sheet("survey", _SURVEY_KEYS, _VOLNA_SURVEY_KEYS)
        choices = self.sheet("choices", _CHOICE_KEYS, _VOLNA_CHOICE_KEYS)
        para = self.sheet(PARADATA_SHEET, _PARADATA_KEYS, set())
        checks_sheet = self.sheet(CHECKS_SHEET, {"name", "when", "message"}, set())
        assert survey is not None  # check_sheet_names saw it
        info = self.settings(settings)
        sheets = [s for s in (survey, choices, para, checks_sheet, settings) if s is not None]
        self.find_languages(sheets, info.get("default_language"))
        lists = self.choice_lists(choices)
        items, survey_paradata, names = self.survey(survey, lists)
        paradata = self.merge_paradata(self.paradata_sheet(para), survey_paradata, names)
        title: dict[str, str] = {}
        if settings is not None and "values" in info:
            title = self.texts(settings, info["row"], info["values"], "form_title")
            title.update(self.texts(settings, info["row"], info["values"], "volna::title"))
        named = self._named_lists(items, lists)
        built: list[Question | Section] = []
        rows: dict[str, int] = {}
        for item in items:
            if item.section is not None:
                built.append(item.section)
                continue
            assert item.question is not None
            shared = item.list_name if item.list_name in named else None
            if shared is not None and named[shared] != item.choices:
                shared = None  # or_other made the question's choices differ from the list
            built.append(Question(**item.question, choices=item.choices, choice_list=shared))
            rows[item.question["name"]] = item.row
        try:
            return Questionnaire(
                id=info.get("id") or self.stem,
                title=title,
                version=info.get("version"),
                languages=self.languages,
                default_language=self.default_language,
                items=tuple(built),
                choice_lists=named,
                paradata=tuple(paradata),
                checks=tuple(self.checks_sheet(checks_sheet)),
                source=self.filename,
            )
        except QuestionnaireError as exc:
            raise self._locate(exc, rows) from None

    def _named_lists(
        self, items: list[_Item], lists: dict[str, list[tuple[int, Choice]]]
    ) -> dict[str, tuple[Choice, ...]]:
        """Which lists become volna's shared ``choice_lists`` (see the module docstring)."""
        uses: dict[str, int] = dict.fromkeys(lists, 0)
        marked: set[str] = set()
        countries: set[str] = set()
        for item in items:
            if item.country_list is not None:
                countries.add(item.country_list)
            if item.list_name is not None:
                uses[item.list_name] += 1
                if item.shared:
                    marked.add(item.list_name)
        named = {}
        for name, rows in lists.items():
            if uses[name] == 1 and name not in marked:
                continue  # one question's own choices
            if uses[name] == 0 and name in countries:
                continue  # the country list volna generates; country questions need none
            named[name] = tuple(c for _, c in rows)
        return named

    def _locate(self, exc: QuestionnaireError, rows: dict[str, int]) -> QuestionnaireError:
        """Add the survey row to the model's cross-item errors, which name the question."""
        message = str(exc)
        prefix = f"{self.filename}: "
        body = message[len(prefix) :] if message.startswith(prefix) else message
        if body.startswith("question "):
            name = body.split()[1].rstrip(":")
            if name in rows:
                return type(exc)(f"{prefix}survey row {rows[name]}: {body}")
        return type(exc)(f"{prefix}{body}")


@dataclass
class _Item:
    """A survey row on its way to becoming a Section or a Question."""

    row: int
    section: Section | None = None
    question: dict[str, Any] | None = None
    choices: tuple[Choice, ...] = ()
    list_name: str | None = None
    shared: bool = False
    country_list: str | None = None


def read_xlsform(path: str | Path) -> Questionnaire:
    """Read an XLSForm (.xlsx) into a :class:`Questionnaire`.

    Errors name the file, the sheet, the row as Excel numbers it and, where
    there is one, the column::

        form.xlsx: survey row 7: type 'geopoint' is not supported: volna refuses
        location data (respondents' safety)

    >>> import tempfile
    >>> from volna.questionnaire.yaml_format import loads
    >>> q = loads('''
    ... id: demo
    ... questions:
    ...   - {name: age, type: integer, label: {ru: Возраст, en: Age}, min: 18}
    ... ''')
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     write_xlsform(q, Path(folder) / "demo.xlsx")
    ...     back = read_xlsform(Path(folder) / "demo.xlsx")
    >>> back == q, back["age"].label("ru"), back["age"].minimum
    (True, 'Возраст', 18)
    """
    path = Path(path)
    filename = str(path)
    titles, raw = _load_workbook(path, filename)
    reader = _Reader(filename, path.stem, titles, raw)
    return reader.questionnaire()


# -- writing ---------------------------------------------------------------------------------


class _Table:
    """Rows as dicts, written with the columns that are used, in a fixed order."""

    def __init__(self, order: list[str], always: Iterable[str] = ()):
        self.order = order
        self.used: set[str] = set(always)
        self.rows: list[dict[str, Any]] = []

    def add(self, row: dict[str, Any]) -> None:
        row = {k: v for k, v in row.items() if v is not None and v != ""}
        unknown = set(row) - set(self.order)
        if unknown:  # a bug in this module, not in the questionnaire
            raise AssertionError(f"columns {unknown} missing from the column order")
        self.used.update(row)
        self.rows.append(row)

    def write(self, sheet: Any) -> None:
        columns = [c for c in self.order if c in self.used]
        for index, header in enumerate(columns, start=1):
            _put(sheet, 1, index, header)
        for number, row in enumerate(self.rows, start=2):
            for index, header in enumerate(columns, start=1):
                if header in row:
                    _put(sheet, number, index, row[header])


def _put(sheet: Any, row: int, column: int, value: Any) -> None:
    from openpyxl.utils.exceptions import IllegalCharacterError

    cell = sheet.cell(row=row, column=column)
    try:
        cell.value = value
    except IllegalCharacterError as exc:  # control characters, which XML cannot hold
        raise QuestionnaireError(
            f"cannot write {value!r} to an .xlsx file: {_one_line(exc)}"
        ) from None
    if isinstance(value, str) and value.startswith("="):
        # openpyxl would store it as a formula: Excel would compute a label.
        cell.data_type = "s"


def _translated(key: str, languages: Iterable[str]) -> list[str]:
    return [f"{key}::{_language_header(code)}" for code in languages]


def _spread(key: str, labels: Mapping[str, str], default: str) -> dict[str, str]:
    """Label columns for one text; a language-less text ('' key) is the default's."""
    out: dict[str, str] = {}
    for code, text in labels.items():
        out[f"{key}::{_language_header(code or default)}"] = text
    return out


def _number_out(value: float | str | None) -> float | int | str | None:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _list_name_ok(name: str) -> str:
    if not name or any(ch.isspace() for ch in name):
        raise QuestionnaireError(
            f"choice list name {name!r} cannot be written to an XLSForm (no spaces allowed)"
        )
    return name


def _languages(q: Questionnaire) -> list[str]:
    """The questionnaire's languages, then any a label uses without declaring it."""
    out = list(q.languages) or [q.default_language or UNDETERMINED]
    texts: list[Mapping[str, str]] = [q.title]
    for item in q.items:
        texts.append(item.labels)
        if isinstance(item, Question):
            texts += [item.hints, item.required_message, item.constraint_message]
            texts += [c.labels for c in item.choices]
    for choices in q.choice_lists.values():
        texts += [c.labels for c in choices]
    texts += [p.labels for p in q.paradata]
    for labels in texts:
        for code in labels:
            if code and code not in out:
                out.append(code)
    return out


def _ordered_items(q: Questionnaire) -> Iterator[tuple[str, Question | Section]]:
    """Items depth first, with ('end', section) after each section's contents."""
    children: dict[tuple[str, ...], list[Question | Section]] = {(): []}
    for item in q.items:
        parent = item.parent if isinstance(item, Section) else item.section
        if parent not in children:
            raise QuestionnaireError(
                f"{item.name}: its section {'/'.join(parent)!r} comes after it or does not exist"
            )
        children[parent].append(item)
        if isinstance(item, Section):
            children[(*item.parent, item.name)] = []

    def walk(path: tuple[str, ...]) -> Iterator[tuple[str, Question | Section]]:
        for item in children[path]:
            if isinstance(item, Section):
                yield "begin", item
                yield from walk((*item.parent, item.name))
                yield "end", item
            else:
                yield "question", item

    yield from walk(())


def _unique(base: str, taken: set[str]) -> str:
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


def _build_workbook(q: Questionnaire) -> Any:
    import openpyxl

    languages = _languages(q)
    default = q.default_language or languages[0]
    survey = _Table(
        [
            "type",
            "name",
            *_translated("label", languages),
            *_translated("hint", languages),
            "required",
            *_translated("required_message", languages),
            "relevant",
            "constraint",
            *_translated("constraint_message", languages),
            "appearance",
            *_VOLNA_SURVEY_COLUMNS,
        ],
        always=["type", "name", *_translated("label", languages)],
    )
    choices = _Table(
        [
            "list_name",
            "name",
            *_translated("label", languages),
            "volna_value",
            "volna_missing",
            "volna_exclusive",
            "volna_other",
        ],
        always=["list_name", "name", *_translated("label", languages)],
    )

    def add_choices(list_name: str, options: Iterable[Choice]) -> None:
        for c in options:
            choices.add(
                {
                    "list_name": list_name,
                    "name": c.code,
                    **_spread("label", c.labels, default),
                    "volna_value": _number_out(c.value),
                    "volna_missing": "yes" if c.missing else None,
                    "volna_exclusive": "yes" if c.exclusive else None,
                    "volna_other": "yes" if c.other else None,
                }
            )

    taken = {_list_name_ok(name) for name in q.choice_lists}
    for name, options in q.choice_lists.items():
        add_choices(name, options)
    country_list = None
    if any(question.type == "country" for question in q.questions):
        country_list = _unique(COUNTRY_LIST, taken)

    # start/end/today paradata are XLSForm metadata rows; the rest needs volna's sheet.
    in_survey = [p for p in q.paradata if p.type == "datetime" and p.name in _METADATA]
    for p in in_survey:
        survey.add(
            {
                "type": p.name,
                "name": p.name,
                **_spread("label", p.labels, default),
                "required": "yes" if p.required else None,
            }
        )

    for kind, item in _ordered_items(q):
        if kind == "end":
            survey.add({"type": "end_group", "name": item.name})
            continue
        if kind == "begin":
            assert isinstance(item, Section)
            survey.add(
                {
                    "type": "begin_group",
                    "name": item.name,
                    **_spread("label", item.labels, default),
                    "relevant": item.relevant,
                }
            )
            continue
        assert isinstance(item, Question)
        survey.add(_question_row(item, q, default, taken, country_list, add_choices))
        if item.other_choice is not None:
            code = item.other_choice.code
            survey.add(
                {
                    "type": "text",
                    "name": item.other_column,
                    **{
                        f"label::{_language_header(lang)}": _SPECIFY_LABEL.get(
                            lang, _SPECIFY_LABEL["en"]
                        )
                        for lang in languages
                    },
                    "relevant": f"selected(${{{item.name}}}, '{code}')",
                    "volna::other_for": item.name,
                }
            )

    if country_list is not None:
        codes = sorted(country_codes())
        options = [
            Choice(code, {lang: country_name(code, lang) for lang in languages}) for code in codes
        ]
        options.sort(key=lambda c: c.labels[default].casefold() if default in c.labels else c.code)
        add_choices(country_list, options)

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "survey"
    survey.write(sheet)
    if choices.rows:
        choices.write(book.create_sheet("choices"))
    settings = _Table(
        [
            "form_id",
            "form_title",
            "version",
            "default_language",
            *(f"volna::title::{_language_header(code)}" for code in languages),
        ]
    )
    title = {code or default: text for code, text in q.title.items()}
    settings.add(
        {
            "form_id": q.id,
            "form_title": title.get(default),
            "version": q.version,
            "default_language": _language_header(default),
            **{
                f"volna::title::{_language_header(code)}": text
                for code, text in title.items()
                if code != default
            },
        }
    )
    settings.write(book.create_sheet("settings"))
    if len(in_survey) < len(q.paradata):
        table = _Table(
            ["name", "type", *_translated("label", languages), "required", "page"],
            always=["name", "type"],
        )
        for p in q.paradata:
            table.add(
                {
                    "name": p.name,
                    "type": p.type,
                    **_spread("label", p.labels, default),
                    "required": "yes" if p.required else None,
                    "page": p.page,
                }
            )
        table.write(book.create_sheet(PARADATA_SHEET))
    if q.checks:
        table = _Table(["name", "when", *_translated("message", languages)], always=["name"])
        for c in q.checks:
            table.add({"name": c.name, "when": c.when, **_spread("message", c.labels, default)})
        table.write(book.create_sheet(CHECKS_SHEET))
    return book


def _question_row(
    item: Question,
    q: Questionnaire,
    default: str,
    taken: set[str],
    country_list: str | None,
    add_choices: Any,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": item.name,
        **_spread("label", item.labels, default),
        **_spread("hint", item.hints, default),
        "required": "yes" if item.required is True else (item.required or None),
        **_spread("required_message", item.required_message, default),
        "relevant": item.relevant,
        "constraint": item.constraint,
        **_spread("constraint_message", item.constraint_message, default),
        "appearance": item.appearance,
        "volna::min": _number_out(item.minimum),
        "volna::max": _number_out(item.maximum),
        "volna::paired_with": item.paired_with,
        "volna::period": item.period,
        "volna::attention": " ".join(item.attention) or None,
        "volna::honeypot": "yes" if item.honeypot else None,
        "volna::recruitment": "yes" if item.recruitment else None,
        "volna::reverse": "yes" if item.reverse else None,
    }
    if item.type == "country":
        row["type"] = f"select_one {country_list}"
        row["volna::type"] = "country"
    elif item.type in CHOICE_TYPES:
        # The same rule as the YAML writer: a question uses a named list only
        # when its choices are that list's.
        if item.choice_list and q.choice_lists.get(item.choice_list) == item.choices:
            list_name = item.choice_list
            row["volna::choice_list"] = "yes"
        else:
            list_name = _unique(item.name, taken)
            add_choices(list_name, item.choices)
        row["type"] = (
            f"{'select_multiple' if item.type == 'multiple' else 'select_one'} {list_name}"
        )
        if item.type == "scale":
            row["volna::type"] = "scale"
    else:
        row["type"] = item.type
    return row


def write_xlsform(questionnaire: Questionnaire, path: str | Path) -> None:
    """Write ``questionnaire`` as an XLSForm that Kobo, ODK and pyxform accept.

    ``read_xlsform`` gives the same questionnaire back (the module docstring
    lists the ``volna::`` columns that carry what XLSForm cannot say).

    >>> import tempfile, openpyxl
    >>> from volna.questionnaire.yaml_format import loads
    >>> q = loads('''
    ... id: demo
    ... questions:
    ...   - name: trust
    ...     type: scale
    ...     label: {ru: Доверие, en: Trust}
    ...     choices:
    ...       - {code: low, value: 1}
    ...       - {code: high, value: 2}
    ...       - {code: dk, missing: true}
    ... ''')
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     write_xlsform(q, Path(folder) / "demo.xlsx")
    ...     book = openpyxl.load_workbook(Path(folder) / "demo.xlsx")
    >>> [c.value for c in book["survey"][2]]
    ['select_one trust', 'trust', 'Доверие', 'Trust', 'scale']
    >>> [c.value for c in book["choices"][4]]
    ['trust', 'dk', None, None, None, 'yes']
    """
    path = Path(path)
    if path.suffix.lower() != ".xlsx":
        raise QuestionnaireError(f"{path}: an XLSForm is written as .xlsx")
    try:
        book = _build_workbook(questionnaire)
    except QuestionnaireError as exc:
        raise QuestionnaireError(f"{path}: {exc}") from None
    try:
        book.save(path)
    except OSError as exc:
        raise QuestionnaireError(f"{path}: cannot write: {exc.strerror}") from None
