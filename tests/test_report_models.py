"""Model tables in the report (``models:`` in report.yaml): config, numbers, renderers."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from openpyxl import load_workbook

from volna.design import SurveyDesign
from volna.examples import example_path
from volna.examples.generate_okrussians import generate
from volna.questionnaire import Questionnaire
from volna.report import i18n
from volna.report.build import _label_and_choice, build_report
from volna.report.config import ConfigError, ReportConfig, parse_config
from volna.report.html import render_html
from volna.report.markdown import render_markdown
from volna.report.xlsx import write_xlsx

MODEL = """
models:
  - label: {ru: Остаться, en: Staying}
    formula: "plans ~ age + sector + `fears/persecution`"
    family: quasibinomial
    success: [stay]
"""


@pytest.fixture(scope="module")
def questionnaire() -> Questionnaire:
    return Questionnaire.load(example_path("okrussians", "questionnaire.yaml"))


@pytest.fixture(scope="module")
def responses() -> pl.DataFrame:
    return generate(n=2000, seed=1)[0]


def _config(text: str) -> ReportConfig:
    # a small report: one question, clusters as the example, no banners or benchmarks
    return parse_config(
        "design: {clusters: channel}\nquestions: [plans]\npaired: false\ncharts: false\n" + text,
        "r.yaml",
    )


_REPORTS: dict = {}


def _report(lang, questionnaire, responses, text=MODEL):
    key = (lang, text)
    if key not in _REPORTS:
        _REPORTS[key] = build_report(questionnaire, responses, _config(text), lang=lang)
    return _REPORTS[key]


def _fit(responses):
    frame = responses.with_columns(
        (pl.col("plans") == "stay").cast(pl.Float64).alias("stay"),
        pl.col("sector").cast(
            pl.Enum(
                [
                    "it",
                    "arts",
                    "management",
                    "accounting",
                    "teaching",
                    "journalism",
                    "healthcare",
                    "other",
                ]
            )
        ),
    )
    return SurveyDesign.from_frame(frame, ids="channel").glm(
        "stay ~ age + sector + `fears/persecution`", "quasibinomial"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: {formula: y ~ x}", r"^r\.yaml:5: models: expected a list of models"),
        ("models:\n  - {family: binomial}", r"^r\.yaml:6: models\[0\]\.formula: is required"),
        (
            "models:\n  - {formula: 'y ~ x', family: logit}",
            r"^r\.yaml:6: models\[0\]\.family: expected one of binomial, quasibinomial, "
            r"gaussian, poisson, quasipoisson, found 'logit'",
        ),
        (
            "models:\n  - {formula: 'y ~ x +', family: binomial}",
            r"^r\.yaml:6: models\[0\]\.formula: ",
        ),
        (
            "models:\n  - {formula: 'y ~ x', family: binomial, colour: red}",
            r"^r\.yaml:6: models\[0\]\.colour: unknown key \(expected one of: formula, family",
        ),
        (
            "models:\n  - formula: 'y ~ x'\n    family: binomial\n    where: [a]",
            r"^r\.yaml:8: models\[0\]\.where: expected \{question: \[codes\]\}",
        ),
    ],
)
def test_config_errors_are_one_line(text, message):
    with pytest.raises(ConfigError, match=message) as info:
        _config(text)
    assert "\n" not in str(info.value)


def test_build_errors_name_the_key(questionnaire, responses):
    with pytest.raises(ConfigError, match=r"r\.yaml:6: models\[0\]\.formula: no column 'nope'"):
        _report(
            "en",
            questionnaire,
            responses,
            "models:\n  - {formula: 'plans ~ nope', family: binomial, success: [stay]}",
        )
    with pytest.raises(ConfigError, match=r"models\[0\]\.success: 'go' is not a code of plans"):
        _report(
            "en",
            questionnaire,
            responses,
            "models:\n  - {formula: 'plans ~ age', family: binomial, success: [go]}",
        )


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_table_shows_the_fit(lang, questionnaire, responses):
    report = _report(lang, questionnaire, responses)
    table = next(t for t in report.tables() if t.kind == "model")
    fit = _fit(responses)
    want = fit.table(exp=True).to_polars()
    got = table.estimates
    assert got["term"].to_list() == want["term"].to_list()
    for col in ("estimate", "ci_low", "ci_high", "p_value"):
        assert np.allclose(got[col].to_numpy(), want[col].to_numpy(), rtol=1e-9)
    assert np.allclose(np.log(got["estimate"].to_numpy()), fit.coefficients, rtol=1e-9)
    shown = table.display
    # one row per coefficient, and one naming each choice question over its levels
    assert shown.height == len(fit.coefs) + 1
    for row in got.iter_rows(named=True):
        cells = shown.row(row["display_row"])
        assert cells[1] == i18n.number(row["estimate"], lang, 2)
        assert cells[2] == i18n.number(row["ci_low"], lang, 2)
        assert cells[3] == i18n.number(row["ci_high"], lang, 2)
        assert cells[4] == i18n.p_value(row["p_value"], lang)
    labels = shown.get_column(shown.columns[0]).to_list()
    sector = questionnaire["sector"]
    group = i18n.t(
        "model_group", lang, question=sector.label(lang), reference=sector.choice("it").label(lang)
    )
    arts = labels.index(sector.choice("arts").label(lang))
    assert labels[arts - 1] == group
    fears = questionnaire["fears"]
    assert _label_and_choice(fears.label(lang), fears.choice("persecution").label(lang)) in labels
    assert table.title == ("Staying" if lang == "en" else "Остаться")
    note = " ".join(table.notes)
    assert i18n.number(fit.n, lang, 0) in note and str(int(fit.design_df)) in note
    assert i18n.t("method_linearization", lang) in note
    # the renderers show the same numbers; the workbook holds them as numbers
    html, md = render_html(report), render_markdown(report)
    for row in want.iter_rows(named=True):
        for col in ("estimate", "ci_low", "ci_high"):
            text = i18n.number(row[col], lang, 2)
            assert text in html and text in md
    assert table.title in html and table.title in md


def test_xlsx_numbers_are_numbers(questionnaire, responses, tmp_path):
    report = _report("ru", questionnaire, responses)
    path = write_xlsx(report, tmp_path / "r.xlsx")
    book = load_workbook(path)
    sheet = next(s for s in book.worksheets if s.title.startswith("model"))
    want = _fit(responses).table(exp=True).to_polars()
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    odds = [v for row in values for v in row[1:2] if isinstance(v, float | int)]
    assert np.allclose(odds[: want.height], np.round(want["estimate"].to_numpy(), 2))
    lows = [row[2] for row in values if isinstance(row[2], float | int)]
    assert np.allclose(lows[: want.height], np.round(want["ci_low"].to_numpy(), 2))


def test_aliased_terms_are_flagged(questionnaire, responses):
    text = (
        "models:\n  - {formula: 'plans ~ age + sector', family: binomial, success: [stay], "
        "where: {sector: [it, arts]}}"
    )
    report = _report("en", questionnaire, responses, text)
    table = next(t for t in report.tables() if t.kind == "model")
    flags = table.display.get_column(table.display.columns[-1]).to_list()
    assert flags.count("not estimable: collinear with other terms") == 6
    assert table.display.height == 3 + 1 + 6


def test_linear_model_shows_coefficients(questionnaire, responses):
    text = "models:\n  - {formula: 'age ~ gender', family: gaussian}"
    report = _report("en", questionnaire, responses, text)
    table = next(t for t in report.tables() if t.kind == "model")
    assert table.display.columns[1] == "Coefficient"
    frame = responses.with_columns(
        pl.col("gender").cast(pl.Enum(list(questionnaire["gender"].codes)))
    )
    fit = SurveyDesign.from_frame(frame, ids="channel").glm("age ~ gender")
    want = fit.table().to_polars()
    assert np.allclose(table.estimates["estimate"].to_numpy(), want["estimate"].to_numpy())
    assert np.allclose(table.estimates["ci_high"].to_numpy(), want["ci_high"].to_numpy())
