"""XLSForm import and export (volna.questionnaire.xlsform).

Workbooks are built here with openpyxl, so each test shows the form it reads.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from volna.errors import QuestionnaireError, UnsupportedFormError
from volna.examples import example_path
from volna.questionnaire import xlsform
from volna.questionnaire.countries import country_codes
from volna.questionnaire.model import Choice, Paradata, Question, Questionnaire, Section
from volna.questionnaire.xlsform import read_xlsform, write_xlsform
from volna.questionnaire.yaml_format import loads, to_dict

RU = "label::Russian (ru)"
EN = "label::English (en)"


def make_form(
    path: Path,
    survey: list[list[Any]],
    choices: list[list[Any]] | None = None,
    settings: list[list[Any]] | None = None,
    **sheets: list[list[Any]],
) -> Path:
    """Write an XLSForm; each sheet is its rows, the header row first."""
    book = openpyxl.Workbook()
    first = book.active
    first.title = "survey"
    for row in survey:
        first.append(row)
    for title, rows in (("choices", choices), ("settings", settings), *sheets.items()):
        if rows is None:
            continue
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def make_book(path: Path, sheets: dict[str, list[list[Any]]]) -> Path:
    """Write a workbook with exactly these sheets, in this order."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def sheet_rows(path: Path, title: str) -> list[dict[str, Any]]:
    """A written sheet as dicts keyed by header, to check the export format."""
    book = openpyxl.load_workbook(path)
    rows = list(book[title].iter_rows(values_only=True))
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


# -- a Kobo-style form ---------------------------------------------------------------------

KOBO_SURVEY = [
    [
        "type",
        "name",
        RU,
        EN,
        "hint::English (en)",
        "required",
        "relevant",
        "constraint",
        "constraint_message::Russian (ru)",
        "constraint_message::English (en)",
        "appearance",
        "$kuid",
    ],
    ["start", "start", None, None, None, None, None, None, None, None, None, "a1"],
    ["end", "end", None, None, None, None, None, None, None, None, None, "a2"],
    ["begin_group", "about", "О себе", "About you", None, None, None, None, None, None,
     "field-list", "a3"],
    ["select_one yn", "left", "Вы уехали?", "Did you leave?", None, "yes", None, None, None,
     None, "horizontal", "a4"],
    ["begin group", "when", "Когда", "When", None, None, "${left} = 'yes'", None, None, None,
     None, "a5"],
    ["date", "left_on", "Дата отъезда", "Date of departure", None, None, None, ". <= today()",
     "Не в будущем", "Not in the future", None, "a6"],
    ["end group", None, None, None, None, None, None, None, None, None, None, "a7"],
    ["select_multiple reasons or_other", "reasons", "Причины", "Reasons", None,
     "${left} = 'yes'", "selected(${left}, 'yes')", None, None, None, None, "a8"],
    ["integer", "age", "Возраст", "Age", "Completed years", True, None, ". >= 18", None,
     "Adults only", None, "a9"],
    ["select_one yn", "returned", "Вернулись?", "Returned?", None, "no", None, None, None,
     None, None, "a10"],
    ["end_group", None, None, None, None, None, None, None, None, None, None, "a11"],
    ["note", "thanks", "Спасибо", "Thank you", None, None, None, None, None, None, None, "a12"],
]  # fmt: skip
KOBO_CHOICES = [
    ["list_name", "name", RU, EN],
    ["yn", "yes", "Да", "Yes"],
    ["yn", "no", "Нет", "No"],
    ["reasons", "war", "Война", "War"],
    ["reasons", "mobilisation", "Мобилизация", "Mobilisation"],
]
KOBO_SETTINGS = [
    ["form_title", "form_id", "version", "default_language", "style"],
    ["Опрос эмигрантов", "kobo_demo", 2024030101, "Russian (ru)", "pages"],
]


@pytest.fixture
def kobo(tmp_path: Path) -> Questionnaire:
    return read_xlsform(make_form(tmp_path / "kobo.xlsx", KOBO_SURVEY, KOBO_CHOICES, KOBO_SETTINGS))


def test_kobo_form_settings_and_languages(kobo: Questionnaire) -> None:
    assert kobo.id == "kobo_demo"
    assert kobo.version == "2024030101"  # a number in Excel, text in volna
    assert dict(kobo.title) == {"ru": "Опрос эмигрантов"}
    assert kobo.languages == ("ru", "en")
    assert kobo.default_language == "ru"
    assert kobo.source.endswith("kobo.xlsx")


def test_kobo_form_start_and_end_become_paradata(kobo: Questionnaire) -> None:
    assert kobo.paradata == (Paradata("start", "datetime"), Paradata("end", "datetime"))
    assert "start" not in kobo  # not a question


def test_kobo_form_groups_become_nested_sections(kobo: Questionnaire) -> None:
    assert kobo.sections == (
        Section("about", {"ru": "О себе", "en": "About you"}),
        Section("when", {"ru": "Когда", "en": "When"}, "${left} = 'yes'", parent=("about",)),
    )
    assert kobo["left"].section == ("about",)
    assert kobo["left_on"].section == ("about", "when")
    assert kobo["thanks"].section == ()
    assert kobo.relevance("left_on") == ["${left} = 'yes'"]


def test_kobo_form_shared_list_becomes_a_choice_list(kobo: Questionnaire) -> None:
    yes = Choice("yes", {"ru": "Да", "en": "Yes"})
    no = Choice("no", {"ru": "Нет", "en": "No"})
    assert dict(kobo.choice_lists) == {"yn": (yes, no)}
    left = kobo["left"]
    assert (left.type, left.choice_list, left.choices) == ("single", "yn", (yes, no))
    assert left.required is True
    assert left.appearance == "horizontal"
    assert dict(left.labels) == {"ru": "Вы уехали?", "en": "Did you leave?"}
    assert kobo["returned"].choice_list == "yn"
    assert kobo["returned"].required is False


def test_kobo_form_or_other_adds_an_other_choice(kobo: Questionnaire) -> None:
    reasons = kobo["reasons"]
    assert reasons.type == "multiple"
    assert reasons.choice_list is None  # used once: inline
    assert reasons.codes == ("war", "mobilisation", "other")
    other = reasons.choice("other")
    assert other.other is True
    assert dict(other.labels) == {"ru": "Другое", "en": "Other"}
    assert reasons.columns == (
        "reasons/war",
        "reasons/mobilisation",
        "reasons/other",
        "reasons_other",
    )
    assert reasons.required == "${left} = 'yes'"
    assert reasons.relevant == "selected(${left}, 'yes')"


def test_kobo_form_question_details(kobo: Questionnaire) -> None:
    age = kobo["age"]
    assert age.type == "integer"
    assert age.required is True  # Excel's TRUE
    assert age.constraint == ". >= 18"
    assert dict(age.constraint_message) == {"en": "Adults only"}
    assert dict(age.hints) == {"en": "Completed years"}
    assert age.minimum is None  # constraints are not turned into bounds
    left_on = kobo["left_on"]
    assert left_on.type == "date"
    assert dict(left_on.constraint_message) == {"ru": "Не в будущем", "en": "Not in the future"}
    assert kobo["thanks"].type == "note"
    assert kobo.columns == (
        "start",
        "end",
        "left",
        "left_on",
        "reasons/war",
        "reasons/mobilisation",
        "reasons/other",
        "reasons_other",
        "age",
        "returned",
    )


def test_questionnaire_load_and_save_use_xlsform(tmp_path: Path, kobo: Questionnaire) -> None:
    kobo.save(tmp_path / "again.xlsx")
    assert Questionnaire.load(tmp_path / "again.xlsx") == kobo
    assert Questionnaire.from_xlsform(tmp_path / "again.xlsx") == kobo


# -- languages --------------------------------------------------------------------------------


def test_plain_label_is_in_the_default_language(tmp_path: Path) -> None:
    path = make_form(
        tmp_path / "f.xlsx",
        [["type", "name", "label", EN], ["text", "city", "Город", "City"]],
        settings=[["default_language"], ["ru"]],
    )
    q = read_xlsform(path)
    assert q.languages == ("ru", "en")
    assert dict(q["city"].labels) == {"ru": "Город", "en": "City"}


def test_language_without_code_is_looked_up(tmp_path: Path) -> None:
    path = make_form(
        tmp_path / "f.xlsx", [["type", "name", "label::Russian"], ["text", "city", "Город"]]
    )
    assert dict(read_xlsform(path)["city"].labels) == {"ru": "Город"}


def test_form_without_languages_is_undetermined(tmp_path: Path) -> None:
    path = make_form(
        tmp_path / "single.xlsx", [["type", "name", "label"], ["text", "city", "Город"]]
    )
    q = read_xlsform(path)
    assert q.languages == ("und",)
    assert dict(q["city"].labels) == {"und": "Город"}
    assert q.id == "single"  # no settings: the file name


def test_plain_label_without_default_joins_first_translation(tmp_path: Path) -> None:
    survey = [
        ["type", "name", "label", RU],
        ["text", "a", "Город", "Город"],
        ["text", "b", None, "Б"],
    ]
    q = read_xlsform(make_form(tmp_path / "f.xlsx", survey))
    assert q.languages == ("ru",)
    assert dict(q["b"].labels) == {"ru": "Б"}
    survey[1][3] = "Другой город"
    with pytest.raises(QuestionnaireError, match=r"survey row 2: columns 'label' and 'label::Ru"):
        read_xlsform(make_form(tmp_path / "g.xlsx", survey))


def test_unknown_language_is_an_error(tmp_path: Path) -> None:
    path = make_form(tmp_path / "f.xlsx", [["type", "name", "label::Martian"], ["text", "a", "x"]])
    with pytest.raises(QuestionnaireError, match=r"column 'label::Martian': cannot tell"):
        read_xlsform(path)


# -- round trips -------------------------------------------------------------------------------

EVERYTHING = """
volna: 1
id: everything
version: "2024.1"
title: {ru: Полный опрос, en: Full survey}
languages: [ru, en]
default_language: ru
choice_lists:
  yes_no:
    - {code: "yes", label: {ru: Да, en: "Yes"}}
    - {code: "no", label: {ru: Нет, en: "No"}}
  agree5:
    - {code: "1", label: {ru: Совсем нет, en: Not at all}, value: 1}
    - {code: "2", label: {ru: Скорее нет, en: Rather not}, value: 2}
    - {code: "3", label: {ru: Отчасти, en: Partly}, value: 3}
    - {code: "4", label: {ru: Скорее да, en: Rather yes}, value: 4}
    - {code: "5", label: {ru: Полностью, en: Fully}, value: 5.5}
    - {code: dk, label: {ru: Затрудняюсь ответить, en: "Don't know"}, missing: true}
  used_once:
    - {code: a, label: {ru: А, en: A}}
    - {code: b, label: {ru: Б, en: B}}
  unused:
    - {code: x, label: {ru: Икс}}
paradata:
  - {name: respondent_id, type: id, label: {ru: Номер, en: Respondent id}}
  - {name: start, type: datetime}
  - {name: duration, type: duration}
  - {name: end, type: datetime, label: {en: End}}
  - {name: today, type: datetime}
  - {name: channel, type: text}
questions:
  - {name: intro, type: note, label: {ru: "=Здравствуйте", en: Hello}, hint: {en: Read this}}
  - section: departure
    label: {ru: Отъезд, en: Departure}
    questions:
      - name: left
        type: single
        label: {ru: "Вы уехали?", en: "Did you leave?"}
        choices: yes_no
        required: true
        required_message: {ru: Ответьте, en: Please answer}
        appearance: horizontal
      - section: when
        label: {ru: Когда, en: When}
        relevant: "${left} = 'yes'"
        questions:
          - name: left_on
            type: date
            label: {ru: Дата отъезда, en: Date of departure}
            min: 2022-02-24
            max: "2024-12-31"
            constraint: ". <= today()"
            constraint_message: {ru: Не в будущем, en: Not in the future}
          - name: destination
            type: country
            label: {ru: Куда, en: Where to}
            required: "${left} = 'yes'"
          - name: returned
            type: single
            label: {ru: "Вернулись?", en: "Returned?"}
            choices: yes_no
  - section: empty_section
    label: {ru: Пусто}
  - name: age
    type: integer
    label: {ru: Возраст, en: Age}
    min: 18
    max: 99
    hint: {ru: Полных лет, en: Completed years}
  - name: income
    type: decimal
    label: {en: Income}
    min: 0.5
    max: 1000000
  - name: reasons
    type: multiple
    label: {ru: Причины, en: Reasons}
    choices:
      - {code: war, label: {ru: Война, en: War}}
      - {code: mobilisation, label: {ru: Мобилизация, en: Mobilisation}}
      - {code: other_reason, label: {ru: Другое, en: Other}, other: true}
      - {code: none, label: {ru: Ничего из этого, en: None of these}, exclusive: true}
  - name: pick
    type: single
    label: {ru: Выбор}
    choices: used_once
  - name: pick_other
    type: single
    label: {en: Pick, ru: Выбор}
    choices:
      - {code: a, label: {ru: А, en: A}}
      - {code: zz, label: {ru: Другое, en: Other}, other: true}
  - name: trust_before
    type: scale
    label: {ru: Доверие до, en: Trust before}
    choices: agree5
    paired_with: trust_after
    period: before
    required: true
  - name: trust_after
    type: scale
    label: {ru: Доверие после, en: Trust after}
    choices: agree5
    paired_with: trust_before
    period: after
    reverse: true
  - name: comment
    type: text
    label: {ru: Комментарий, en: Comment}
    relevant: "${age} >= 18"
  - name: read_check
    type: scale
    label: {ru: Выберите «Скорее нет», en: Choose “Rather not”}
    choices: agree5
    attention: ["2", dk]
  - name: website
    type: text
    honeypot: true
  - name: heard_from
    type: single
    choices: [{code: tg}, {code: friends}]
    recruitment: true
checks:
  - name: adult_trust
    when: "${age} < 18 and ${trust_before} = '5'"
    message: {ru: Младше 18 и полное доверие, en: Under 18 and full trust}
  - {name: bare, when: "${age} > 90"}
"""


@pytest.fixture
def everything() -> Questionnaire:
    return loads(EVERYTHING, "everything.yaml")


def test_everything_fixture_uses_every_feature(everything: Questionnaire) -> None:
    # Guard the round-trip test below against a fixture that stops covering things.
    q = everything
    assert {x.type for x in q} == {
        "single", "multiple", "scale", "integer", "decimal", "text", "date", "country", "note"
    }  # fmt: skip
    assert any(s.parent for s in q.sections) and any(s.relevant for s in q.sections)
    assert {type(x.required) for x in q} == {bool, str}
    choices = [c for x in q for c in x.choices]
    assert all(any(getattr(c, f) for c in choices) for f in ("exclusive", "other", "missing"))
    assert {p.type for p in q.paradata} >= {"id", "datetime", "duration", "text"}
    assert q.pairs and q.title and q.version
    assert any(isinstance(x.minimum, str) for x in q) and any(x.hints for x in q)
    assert any(len(x.attention) > 1 for x in q) and any(x.honeypot for x in q)
    assert any(x.recruitment for x in q) and any(x.reverse for x in q)
    assert q.checks and any(c.labels for c in q.checks) and any(not c.labels for c in q.checks)


def test_round_trip_everything(tmp_path: Path, everything: Questionnaire) -> None:
    write_xlsform(everything, tmp_path / "everything.xlsx")
    back = read_xlsform(tmp_path / "everything.xlsx")
    assert back == everything
    # the same YAML, up to the order of languages inside a label
    assert to_dict(back) == to_dict(everything)
    assert back.source == str(tmp_path / "everything.xlsx")


def test_round_trip_default_language_english(tmp_path: Path) -> None:
    q = loads(
        "id: en\nlanguages: [ru, en]\ndefault_language: en\ntitle: {en: Survey}\n"
        "questions:\n  - {name: a, type: text, label: {en: A}}"
    )
    write_xlsform(q, tmp_path / "en.xlsx")
    assert read_xlsform(tmp_path / "en.xlsx") == q
    assert sheet_rows(tmp_path / "en.xlsx", "settings")[0]["form_title"] == "Survey"


def test_round_trip_bundled_example(tmp_path: Path) -> None:
    source = example_path("okrussians", "questionnaire.yaml")
    if not source.exists():
        pytest.skip("the okrussians example questionnaire is not written yet")
    q = Questionnaire.load(source)
    write_xlsform(q, tmp_path / "okrussians.xlsx")
    assert read_xlsform(tmp_path / "okrussians.xlsx") == q


def test_round_trip_of_python_built_questionnaire(tmp_path: Path) -> None:
    q = Questionnaire(
        id="py",
        languages=("en",),
        items=(
            Section("s", {"en": "S"}),
            Question("n", "integer", {"en": "N"}, minimum=1.5, maximum=2, section=("s",)),
        ),
    )
    write_xlsform(q, tmp_path / "py.xlsx")
    assert read_xlsform(tmp_path / "py.xlsx") == q


# -- the export format -------------------------------------------------------------------------


def test_export_format(tmp_path: Path, everything: Questionnaire) -> None:
    path = tmp_path / "e.xlsx"
    write_xlsform(everything, path)
    survey: dict[str, dict[str, Any]] = {}
    for row in sheet_rows(path, "survey"):
        survey.setdefault(row["name"], row)  # begin_group, not end_group
    assert list(survey)[:3] == ["start", "end", "today"]  # XLSForm metadata rows first
    assert survey["start"]["type"] == "start"
    assert survey["left"]["type"] == "select_one yes_no"
    assert survey["left"]["volna::choice_list"] == "yes"
    assert survey["left"]["required"] == "yes"
    assert survey["trust_before"]["type"] == "select_one agree5"
    assert survey["trust_before"]["volna::type"] == "scale"
    assert survey["trust_before"]["volna::paired_with"] == "trust_after"
    assert survey["destination"]["type"] == "select_one iso3166_1"
    assert survey["destination"]["volna::type"] == "country"
    assert survey["age"]["volna::min"] == 18 and survey["age"]["constraint"] is None
    assert survey["left_on"]["volna::min"] == "2022-02-24"
    assert survey["reasons"]["type"] == "select_multiple reasons"  # inline: named after it
    specify = survey["reasons_other"]
    assert specify["type"] == "text"
    assert specify["relevant"] == "selected(${reasons}, 'other_reason')"
    assert specify["volna::other_for"] == "reasons"
    assert survey["departure"]["type"] == "begin_group"

    choices = sheet_rows(path, "choices")
    dk = next(c for c in choices if c["list_name"] == "agree5" and c["name"] == "dk")
    assert dk["volna_missing"] == "yes" and dk["volna_value"] is None
    five = next(c for c in choices if c["list_name"] == "agree5" and c["name"] == "5")
    assert five["volna_value"] == 5.5
    none = next(c for c in choices if c["list_name"] == "reasons" and c["name"] == "none")
    assert none["volna_exclusive"] == "yes"
    countries = {c["name"]: c for c in choices if c["list_name"] == "iso3166_1"}
    assert set(countries) == country_codes()
    assert (countries["GE"][RU], countries["GE"][EN]) == ("Грузия", "Georgia")

    settings = sheet_rows(path, "settings")[0]
    assert settings["form_id"] == "everything"
    assert settings["default_language"] == "Russian (ru)"
    assert settings["form_title"] == "Полный опрос"
    assert settings["volna::title::English (en)"] == "Full survey"

    paradata = sheet_rows(path, "volna_paradata")
    assert [(p["name"], p["type"]) for p in paradata][:3] == [
        ("respondent_id", "id"),
        ("start", "datetime"),
        ("duration", "duration"),
    ]


def test_export_keeps_formula_like_text_as_text(tmp_path: Path, everything: Questionnaire) -> None:
    path = tmp_path / "e.xlsx"
    write_xlsform(everything, path)
    sheet = openpyxl.load_workbook(path)["survey"]
    row = next(r for r in sheet.iter_rows() if r[1].value == "intro")
    assert sheet.cell(1, 3).value == RU
    assert (row[2].value, row[2].data_type) == ("=Здравствуйте", "s")


def test_no_paradata_sheet_when_xlsform_can_say_it(tmp_path: Path) -> None:
    q = loads(
        "id: p\nparadata: [{name: start, type: datetime}, {name: end, type: datetime},\n"
        "  {name: today, type: datetime, label: {en: Date}}]\n"
        "questions: [{name: a, type: text}]"
    )
    write_xlsform(q, tmp_path / "p.xlsx")
    assert "volna_paradata" not in openpyxl.load_workbook(tmp_path / "p.xlsx").sheetnames
    assert read_xlsform(tmp_path / "p.xlsx") == q


def test_today_is_datetime_paradata(tmp_path: Path) -> None:
    path = make_form(
        tmp_path / "f.xlsx",
        [["type", "name"], ["today", "today"], ["text", "a"], ["start", "begun"]],
    )
    assert read_xlsform(path).paradata == (
        Paradata("today", "datetime"),
        Paradata("begun", "datetime"),
    )


def test_paradata_sheet_gives_the_order(tmp_path: Path) -> None:
    path = make_form(
        tmp_path / "f.xlsx",
        [["type", "name"], ["start", "start"], ["end", "end"], ["text", "a"]],
        volna_paradata=[["name", "type"], ["rid", "id"], ["end", "datetime"]],
    )
    assert [p.name for p in read_xlsform(path).paradata] == ["rid", "end", "start"]


def test_write_refuses_other_suffixes(tmp_path: Path, everything: Questionnaire) -> None:
    with pytest.raises(QuestionnaireError, match=r"\.xlsx"):
        write_xlsform(everything, tmp_path / "form.xls")


def test_write_refuses_control_characters(tmp_path: Path) -> None:
    q = Questionnaire(id="c", items=(Question("a", "text", {"ru": "bad\x01"}),))
    with pytest.raises(QuestionnaireError, match=r"c.xlsx: cannot write"):
        write_xlsform(q, tmp_path / "c.xlsx")


# -- refused types -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qtype", "reason"),
    [
        ("begin repeat", "repeats"),
        ("begin_repeat", "repeats"),
        ("geopoint", "location data"),
        ("geotrace", "location data"),
        ("geoshape", "location data"),
        ("start-geopoint", "location data"),
        ("background-geopoint", "location data"),
        ("image", "photos, recordings"),
        ("audio", "photos, recordings"),
        ("video", "photos, recordings"),
        ("file", "photos, recordings"),
        ("barcode", "photos, recordings"),
        ("background-audio", "photos, recordings"),
        ("deviceid", "identity metadata"),
        ("phonenumber", "identity metadata"),
        ("simserial", "identity metadata"),
        ("subscriberid", "identity metadata"),
        ("imei", "identity metadata"),
        ("username", "identity metadata"),
        ("email", "identity metadata"),
        ("audit", "audit logs"),
        ("calculate", "computed"),
        ("hidden", "computed"),
        ("range", "range"),
        ("rank yn", "rank"),
        ("time", "times of day"),
        ("dateTime", "times of day"),
        ("select_one_from_file places.csv", "external data"),
        ("acknowledge", "acknowledge"),
        ("xml-external", "external data"),
        ("csv-external", "external data"),
        ("frobnicate", "unknown type"),
        ("integr", "did you mean 'integer'"),
    ],
)
def test_refused_types_name_file_row_and_type(tmp_path: Path, qtype: str, reason: str) -> None:
    path = make_form(
        tmp_path / "form.xlsx",
        [
            ["type", "name", "label"],
            ["text", "a", "A"],
            [None, None, None],  # a blank row still counts in Excel's numbering
            ["integer", "b", "B"],
            [qtype, "bad", "Bad"],
            ["text", "c", "C"],
        ],
        [["list_name", "name", "label"], ["yn", "yes", "Yes"]],
    )
    with pytest.raises(UnsupportedFormError) as info:
        read_xlsform(path)
    message = str(info.value)
    assert message.startswith(f"{path}: survey row 5: type {qtype!r} is not supported: ")
    assert reason in message
    assert "\n" not in message


def test_geopoint_message_as_documented(tmp_path: Path) -> None:
    path = make_form(tmp_path / "form.xlsx", [["type", "name"], ["geopoint", "where"]])
    with pytest.raises(UnsupportedFormError) as info:
        read_xlsform(path)
    assert str(info.value) == (
        f"{path}: survey row 2: type 'geopoint' is not supported: "
        "volna refuses location data (respondents' safety)"
    )


@pytest.mark.parametrize("column", ["default", "calculation", "choice_filter", "read_only"])
def test_behaviour_columns_refused_when_filled(tmp_path: Path, column: str) -> None:
    survey = [["type", "name", column], ["text", "a", None], ["text", "b", "x"]]
    with pytest.raises(UnsupportedFormError, match=rf"survey row 3: column '{column}'"):
        read_xlsform(make_form(tmp_path / "f.xlsx", survey))
    survey[2][2] = None  # an empty column changes nothing
    assert len(read_xlsform(make_form(tmp_path / "g.xlsx", survey))) == 2


def test_public_key_refused(tmp_path: Path) -> None:
    path = make_form(
        tmp_path / "f.xlsx",
        [["type", "name"], ["text", "a"]],
        settings=[["form_id", "public_key"], ["f", "MIIBIjANBgkq"]],
    )
    with pytest.raises(UnsupportedFormError, match=r"settings row 2: setting 'public_key'.*own"):
        read_xlsform(path)


def test_unknown_setting_refused_by_name(tmp_path: Path) -> None:
    path = make_form(
        tmp_path / "f.xlsx",
        [["type", "name"], ["text", "a"]],
        settings=[["form_id", "submission_url"], ["f", "https://example.org/submit"]],
    )
    with pytest.raises(UnsupportedFormError, match="setting 'submission_url' is not supported"):
        read_xlsform(path)


def test_harmless_settings_accepted(tmp_path: Path) -> None:
    path = make_form(
        tmp_path / "f.xlsx",
        [["type", "name"], ["text", "a"]],
        settings=[
            ["id_string", "style", "instance_name", "allow_choice_duplicates", "public_key"],
            ["f", "pages", "concat('x', ${a})", "no", None],
        ],
    )
    assert read_xlsform(path).id == "f"


def test_entities_sheet_refused(tmp_path: Path) -> None:
    path = make_form(
        tmp_path / "f.xlsx", [["type", "name"], ["text", "a"]], entities=[["list_name"], ["x"]]
    )
    with pytest.raises(UnsupportedFormError, match="entities"):
        read_xlsform(path)


# -- mistakes in the form ----------------------------------------------------------------------


def test_unknown_list(tmp_path: Path) -> None:
    path = make_form(
        tmp_path / "f.xlsx",
        [["type", "name"], ["select_one yesno", "left"]],
        [["list_name", "name"], ["yes_no", "yes"], ["yes_no", "no"]],
    )
    with pytest.raises(
        QuestionnaireError, match=r"survey row 2, column type: .*'yesno'.*did you mean 'yes_no'"
    ):
        read_xlsform(path)


def test_select_without_choices_sheet(tmp_path: Path) -> None:
    path = make_form(tmp_path / "f.xlsx", [["type", "name"], ["select_one yn", "left"]])
    with pytest.raises(QuestionnaireError, match=r"survey row 2: .*no 'choices' sheet"):
        read_xlsform(path)


def test_duplicate_names(tmp_path: Path) -> None:
    path = make_form(
        tmp_path / "f.xlsx",
        [["type", "name"], ["text", "age"], ["integer", "b"], ["integer", "age"]],
    )
    with pytest.raises(
        QuestionnaireError,
        match="survey row 4, column name: the name 'age' is already used on row 2",
    ):
        read_xlsform(path)


def test_duplicate_choice_names(tmp_path: Path) -> None:
    path = make_form(
        tmp_path / "f.xlsx",
        [["type", "name"], ["select_one yn", "left"]],
        [["list_name", "name"], ["yn", "yes"], ["yn", "no"], ["yn", "yes"]],
    )
    with pytest.raises(QuestionnaireError, match="choices row 4: list 'yn' has the choice 'yes'"):
        read_xlsform(path)


@pytest.mark.parametrize(
    ("title", "wanted"), [("Survey", "survey"), ("surve", "survey"), ("choises", "choices")]
)
def test_misspelled_sheet_names(tmp_path: Path, title: str, wanted: str) -> None:
    sheets = {"survey": [["type", "name"], ["select_one yn", "left"]]}
    sheets["choices"] = [["list_name", "name"], ["yn", "yes"]]
    sheets[title] = sheets.pop(wanted)
    path = make_book(tmp_path / "f.xlsx", sheets)
    with pytest.raises(QuestionnaireError, match=rf"sheet '{title}' should be named '{wanted}'"):
        read_xlsform(path)


def test_misspelled_settings_sheet(tmp_path: Path) -> None:
    path = make_form(tmp_path / "f.xlsx", [["type", "name"], ["text", "a"]], stetings=[["x"]])
    with pytest.raises(QuestionnaireError, match="should be named 'settings'"):
        read_xlsform(path)


def test_missing_survey_sheet(tmp_path: Path) -> None:
    path = make_book(tmp_path / "f.xlsx", {"questions": [["type", "name"], ["text", "a"]]})
    with pytest.raises(
        QuestionnaireError, match=r"no 'survey' sheet \(the workbook has: 'questions'\)"
    ):
        read_xlsform(path)


@pytest.mark.parametrize("missing", ["type", "name"])
def test_missing_type_or_name_column(tmp_path: Path, missing: str) -> None:
    header = ["label", "name" if missing == "type" else "type"]
    path = make_form(tmp_path / "f.xlsx", [header, ["A", "text"]])
    with pytest.raises(QuestionnaireError, match=f"survey row 1: no '{missing}' column"):
        read_xlsform(path)


def test_misspelled_column(tmp_path: Path) -> None:
    path = make_form(tmp_path / "f.xlsx", [["type", "name", "relevnt"], ["text", "a", "1 = 1"]])
    with pytest.raises(
        QuestionnaireError, match=r"unknown column 'relevnt' .did you mean 'relevant'"
    ):
        read_xlsform(path)


def test_unknown_volna_column(tmp_path: Path) -> None:
    path = make_form(tmp_path / "f.xlsx", [["type", "name", "volna::minimum"], ["integer", "a", 1]])
    with pytest.raises(QuestionnaireError, match="unknown volna column 'volna::minimum'"):
        read_xlsform(path)


def test_researchers_own_columns_are_ignored(tmp_path: Path) -> None:
    path = make_form(
        tmp_path / "f.xlsx", [["type", "name", "translator notes"], ["text", "a", "check"]]
    )
    assert read_xlsform(path)["a"].type == "text"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([["begin_group", "g"], ["text", "a"]], "survey row 2: group 'g' is never closed"),
        ([["text", "a"], ["end_group", None]], "survey row 3: 'end group' without"),
        ([["text", "a"], [None, "b"]], "survey row 3, column type: a row with a name"),
        ([["text", "2nd"]], "survey row 2, column name: '2nd' is not a valid name"),
        ([["text", None]], "survey row 2, column name: a 'text' row needs a name"),
        ([["integer", "a", "many"]], "survey row 2, column volna::min: expected a number"),
        ([["text", "a", 1]], "survey row 2: question a: minimum/maximum apply"),
    ],
)
def test_survey_mistakes(tmp_path: Path, rows: list[list[Any]], message: str) -> None:
    path = make_form(tmp_path / "f.xlsx", [["type", "name", "volna::min"], *rows])
    with pytest.raises(QuestionnaireError, match=message):
        read_xlsform(path)


def test_model_errors_get_the_row(tmp_path: Path) -> None:
    path = make_form(
        tmp_path / "f.xlsx",
        [["type", "name", "volna::paired_with"], ["text", "a", None], ["text", "b", "nobody"]],
    )
    with pytest.raises(QuestionnaireError, match="survey row 3: question b: paired_with names"):
        read_xlsform(path)


def test_scale_needs_values(tmp_path: Path) -> None:
    path = make_form(
        tmp_path / "f.xlsx",
        [["type", "name", "volna::type"], ["select_one s", "trust", "scale"]],
        [["list_name", "name", "volna_value"], ["s", "lo", 1], ["s", "hi", None]],
    )
    with pytest.raises(QuestionnaireError, match="survey row 2: question trust: every scale"):
        read_xlsform(path)


def test_or_other_on_a_list_with_other(tmp_path: Path) -> None:
    path = make_form(
        tmp_path / "f.xlsx",
        [["type", "name"], ["select_one l or_other", "q"]],
        [["list_name", "name"], ["l", "a"], ["l", "other"]],
    )
    with pytest.raises(QuestionnaireError, match="already has a choice 'other'"):
        read_xlsform(path)


def test_hand_written_volna_flags_are_read(tmp_path: Path) -> None:
    # The unprefixed and the 'volna::' spellings are accepted on import.
    path = make_form(
        tmp_path / "f.xlsx",
        [["type", "name"], ["select_multiple l", "q"]],
        [
            ["list_name", "name", "exclusive", "volna::other"],
            ["l", "a", None, None],
            ["l", "b", None, "yes"],
            ["l", "none", "yes", None],
        ],
    )
    q = read_xlsform(path)["q"]
    assert q.other_choice.code == "b" and q.choice("none").exclusive
    assert q.columns[-1] == "q_other"


def test_shared_list_with_or_other_is_inline(tmp_path: Path) -> None:
    path = make_form(
        tmp_path / "f.xlsx",
        [["type", "name"], ["select_one l", "a"], ["select_one l or_other", "b"]],
        [["list_name", "name"], ["l", "x"], ["l", "y"]],
    )
    q = read_xlsform(path)
    assert q["a"].choice_list == "l" and q["b"].choice_list is None
    assert q["b"].codes == ("x", "y", "other")


# -- blank rows --------------------------------------------------------------------------------


def test_nineteen_blank_rows_are_skipped(tmp_path: Path) -> None:
    survey = [["type", "name"], ["text", "a"], *[[None, None]] * 19, ["text", "b"]]
    assert read_xlsform(make_form(tmp_path / "f.xlsx", survey)).columns == ("a", "b")


def test_content_after_twenty_blank_rows_is_an_error(tmp_path: Path) -> None:
    survey = [["type", "name"], ["text", "a"], *[[None, None]] * 20, ["text", "b"]]
    with pytest.raises(QuestionnaireError, match="survey row 23: content after 20 blank rows"):
        read_xlsform(make_form(tmp_path / "f.xlsx", survey))


# -- hostile and broken files ------------------------------------------------------------------


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return make_form(tmp_path / "good.xlsx", KOBO_SURVEY, KOBO_CHOICES, KOBO_SETTINGS)


def assert_one_line_error(path: Path, pattern: str = "not a readable .xlsx") -> None:
    with pytest.raises(QuestionnaireError) as info:
        read_xlsform(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert pattern in message


def test_truncated_xlsx(tmp_path: Path, good: Path) -> None:
    path = tmp_path / "truncated.xlsx"
    path.write_bytes(good.read_bytes()[:500])
    assert_one_line_error(path)


def test_corrupted_middle_of_xlsx(tmp_path: Path, good: Path) -> None:
    data = bytearray(good.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 200] = b"\xff" * 200
    path = tmp_path / "corrupt.xlsx"
    path.write_bytes(bytes(data))
    with pytest.raises(QuestionnaireError) as info:
        read_xlsform(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_garbage_named_xlsx(tmp_path: Path) -> None:
    path = tmp_path / "garbage.xlsx"
    path.write_bytes(b"\x00\x01garbage, not a workbook" * 50)
    assert_one_line_error(path)


def test_zip_that_is_not_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "other.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "hello")
    assert_one_line_error(path)


def test_missing_file(tmp_path: Path) -> None:
    assert_one_line_error(tmp_path / "absent.xlsx", "cannot read")


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("old.xls", "save it as .xlsx"),
        ("macros.xlsm", "macro-enabled"),
        ("form.csv", "must be an .xlsx"),
        ("form.ods", "must be an .xlsx"),
    ],
)
def test_other_file_kinds_refused(tmp_path: Path, good: Path, name: str, pattern: str) -> None:
    path = tmp_path / name
    path.write_bytes(good.read_bytes())  # even with a good workbook inside
    assert_one_line_error(path, pattern)


def test_oversized_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.xlsx"
    with path.open("wb") as f:
        f.truncate(xlsform.MAX_BYTES + 1)  # sparse: no 20 MB written
    assert_one_line_error(path, "larger than 20 MB")


def test_zip_bomb_refused(tmp_path: Path, good: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xlsform, "MAX_UNZIPPED_BYTES", 1_000)
    assert_one_line_error(good, "expands to more than")


def test_macros_inside_xlsx_refused(tmp_path: Path, good: Path) -> None:
    path = tmp_path / "sneaky.xlsx"
    path.write_bytes(good.read_bytes())
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("xl/vbaProject.bin", b"\x00" * 16)
    assert_one_line_error(path, "contains macros")


def rewrite_part(source: Path, target: Path, part: str, prefix: bytes) -> Path:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            zout.writestr(name, prefix + data if name == part else data)
    return target


@pytest.mark.parametrize("part", ["xl/workbook.xml", "xl/worksheets/sheet1.xml"])
def test_xml_entities_refused(tmp_path: Path, good: Path, part: str) -> None:
    doctype = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]>'
    path = rewrite_part(good, tmp_path / "entities.xlsx", part, doctype)
    assert_one_line_error(path, "declares a DTD or entities")


def test_defusedxml_is_active() -> None:
    assert openpyxl.DEFUSEDXML is True


def test_refuses_to_parse_without_defusedxml(good: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openpyxl, "DEFUSEDXML", False)
    assert_one_line_error(good, "defusedxml is not active")


def test_huge_declared_dimension_is_harmless(tmp_path: Path) -> None:
    path = make_form(tmp_path / "f.xlsx", [["type", "name"], ["text", "a"]])
    book = openpyxl.load_workbook(path)
    book["survey"]["XFD1048576"] = None  # the dimension now claims the whole sheet
    book["survey"]["A1000000"] = "   "
    book.save(path)
    assert read_xlsform(path).columns == ("a",)
