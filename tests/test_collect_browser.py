"""The web questionnaire in a real browser, with JavaScript on and off.

``volna serve`` runs in a subprocess on a free loopback port with a temporary
SQLite store and a test key; headless Chromium (driven over the DevTools
protocol, see ``cdp.py``) fills the bundled example questionnaire the way a
respondent would: clicking options, typing, sending. With JavaScript the skip
logic hides a dependent question until its condition holds and form.js seals
the answers; without it the page says "answer if ..." and the server seals on
arrival. Both submissions are then exported with the private key and compared
with what was filled. Skipped only when Chromium is not installed.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import polars as pl
import pytest

from cdp import Browser, Page, chromium
from volna import Questionnaire
from volna.examples import example_path

QUESTIONNAIRE = example_path("okrussians", "questionnaire.yaml")
PASSPHRASE = "browser test passphrase"

# What the respondent enters (no-JS and JS alike): field -> value(s)
ANSWERS_JS = {
    "destination": "GE",
    "left_month": "2022-03",
    "plans": "stay",
    "employed": "yes",
    "sector": "other",
    "sector_other": "lighthouse keeper with JS",
    "vote_2021": "yabloko",
    "smart_voting": "yes",
    "activity_before": ["posts", "rallies"],
    "activity_after": ["none"],
    "age": "34",
    "gender": "female",
    "education": "higher",
    "channel": "friends",
}
ANSWERS_NOJS = {
    "destination": "AM",
    "left_month": "2022-09",
    "plans": "undecided",
    "employed": "no",
    "vote_2021": "no_vote",
    "activity_before": ["petitions"],
    "activity_after": ["petitions", "ngos"],
    "fears": ["conscription"],
    "exp_living": "4",
    "age": "27",
    "gender": "male",
    "channel": "tg_it",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    binary = chromium()
    from volna.collect import crypto

    folder = tmp_path_factory.mktemp("serve")
    private, public = crypto.generate_keypair(PASSPHRASE)
    (folder / "pub.key").write_bytes(public)
    (folder / "priv.pem").write_bytes(private)
    port = _free_port()
    db = f"sqlite:///{folder / 'responses.db'}"
    command = [
        sys.executable,
        "-c",
        "from volna.cli import main; main()",
        "serve",
        str(QUESTIONNAIRE),
        "--public-key",
        str(folder / "pub.key"),
        "--db",
        db,
        "--port",
        str(port),
        "--min-seconds",
        "0",
        "--rate-per-minute",
        "10000",
    ]
    url = f"http://127.0.0.1:{port}"
    with open(folder / "server.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for(url, process, folder / "server.log")
            browser = Browser(binary, folder / "chromium-profile")
            try:
                yield {"url": url, "db": db, "folder": folder, "browser": browser}
            finally:
                browser.close()
        finally:
            process.terminate()
            process.wait(timeout=10)


def _wait_for(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"volna serve did not start: {log.read_text()}")
        time.sleep(0.1)


def _fill(page: Page, answers: dict) -> None:
    """Click and type as a respondent would (events fire, so form.js sees them)."""
    script = """
    (function (answers) {
      const form = document.getElementById("volna-form");
      for (const [name, value] of Object.entries(answers)) {
        const values = Array.isArray(value) ? value : [value];
        const fields = Array.from(form.elements).filter(e => e.name === name);
        for (const field of fields) {
          if (field.type === "radio" || field.type === "checkbox") {
            if (values.includes(field.value) !== field.checked) field.click();
          } else {
            field.value = values[0];
            field.dispatchEvent(new Event("input", {bubbles: true}));
            field.dispatchEvent(new Event("change", {bubbles: true}));
          }
        }
      }
      return true;
    })(%s)
    """
    page.evaluate(script % json.dumps(answers))


def _visible(page: Page, selector: str) -> bool:
    return page.evaluate(
        f"(e => !!e && e.offsetParent !== null)(document.querySelector({json.dumps(selector)}))"
    )


def _text(page: Page, selector: str) -> str:
    return page.evaluate(
        f"(e => e ? e.textContent.trim() : null)(document.querySelector({json.dumps(selector)}))"
    )


def _exported(server, tmp_path) -> pl.DataFrame:
    from volna.collect.crypto import load_private_key
    from volna.collect.export import export_responses
    from volna.collect.store import Store

    key = load_private_key(server["folder"] / "priv.pem", PASSPHRASE)
    store = Store.open(server["db"])
    try:
        export_responses(store, key, Questionnaire.load(QUESTIONNAIRE), tmp_path / "out.csv")
    finally:
        store.close()
    return pl.read_csv(tmp_path / "out.csv", infer_schema=False)


def _expected_row(answers: dict) -> dict:
    """The canonical row a questionnaire expects for these answers (unanswered = empty)."""
    q = Questionnaire.load(QUESTIONNAIRE)
    row = {}
    for question in q.answerable:
        value = answers.get(question.name)
        if question.type == "multiple":
            for code in question.codes:
                tick = None if value is None else ("1" if code in value else "0")
                row[question.option_column(code)] = tick
        else:
            row[question.name] = value
        if question.other_column:
            row[question.other_column] = answers.get(question.other_column)
    return row


def test_with_javascript(server, tmp_path):
    page = Page(server["browser"])
    page.scripts(True)
    page.navigate(server["url"] + "/?lang=en")
    assert page.evaluate("document.documentElement.lang") == "en"
    assert _visible(page, "#js-notice")
    # skip logic applied live: the sector question waits for "employed = yes"
    assert not _visible(page, "#q-sector")
    _fill(page, {"employed": "yes"})
    assert _visible(page, "#q-sector")
    _fill(page, {"employed": "no"})
    assert not _visible(page, "#q-sector")

    # a validation error shown next to its question, nothing sent
    _fill(page, {**ANSWERS_JS, "age": "12"})
    page.evaluate("document.getElementById('submit').click()")
    assert "18" in page.wait_until(
        "(e => !e.hidden && e.textContent)(document.getElementById('e-age'))"
    )
    assert page.evaluate("location.pathname") == "/"
    assert page.evaluate("document.querySelector('.summary') === null")  # form.js, not the server
    assert _text(page, "#e-destination") == ""

    _fill(page, {"age": ANSWERS_JS["age"]})
    page.evaluate("document.getElementById('submit').click()")
    page.wait_until("location.pathname === '/thanks' && !!document.getElementById('thanks')")
    assert page.evaluate("document.documentElement.lang") == "en"


def test_without_javascript(server, tmp_path):
    page = Page(server["browser"])
    page.scripts(False)
    try:
        page.navigate(server["url"] + "/?lang=ru")
        assert page.evaluate("document.documentElement.lang") == "ru"
        assert not _visible(page, "#js-notice")
        # no live skip logic: the dependent question is shown with its condition in words
        assert _visible(page, "#q-sector")
        condition = _text(page, "#q-sector .condition")
        assert condition.startswith("Ответьте, если:")
        assert "«Да»" in condition and "Работали ли вы перед отъездом" in condition

        _fill(page, {**ANSWERS_NOJS, "age": "15"})
        page.evaluate("document.getElementById('submit').click()")
        page.wait_until(
            "document.readyState === 'complete' && !!document.querySelector('.summary')"
        )
        assert "18" in _text(page, "#e-age")
        assert _visible(page, "#e-age")
        # the respondent's answers are kept in the page sent back
        assert page.evaluate("document.querySelector('select[name=destination]').value") == "AM"
        assert page.evaluate("document.querySelector('input[name=age]').value") == "15"

        _fill(page, {"age": ANSWERS_NOJS["age"]})
        page.evaluate("document.getElementById('submit').click()")
        page.wait_until("!!document.getElementById('thanks')")
        assert "зашифрован" in _text(page, "#thanks")
    finally:
        page.scripts(True)


def test_switching_language(server):
    page = Page(server["browser"])
    page.navigate(server["url"] + "/")
    assert page.evaluate("document.documentElement.lang") == "ru"  # the questionnaire's default
    page.evaluate("document.querySelector('a[hreflang=en]').click()")
    page.wait_until("document.documentElement.lang === 'en'")
    assert "How old are you?" in _text(page, "#q-age label")


EXPRESSIONS = [
    "${age} >= 18",
    "${age} = ''",
    "${age} != ''",
    "${employed} = 'yes'",
    "${employed} != 'yes'",
    "selected(${activity_before}, 'posts')",
    "count-selected(${activity_before})",
    "${age} div 4",
    "${age} mod 7",
    "-5 mod 2",
    "round(${age} div 7, 1)",
    "concat(${employed}, '-', string(${age}))",
    "if(${age} > 30, 'older', 'younger')",
    "coalesce(${sector}, 'none')",
    "string-length(${employed})",
    "not(${employed} = 'no')",
    "${age} = '34'",
    "${employed} < 3",
    "regex(${employed}, '^y')",
    "int(-3.7)",
    "${age} + ${age}",
    "date('2022-03-01') + 1",
    "string(date('2022-03-01'))",
    "${age} > 20 and (${employed} = 'yes' or selected(${activity_before}, 'none'))",
]


def test_form_js_evaluates_like_the_server(server):
    """form.js's evaluator against volna's own, on the same trees and answers."""
    from volna.collect.conditions import to_tree
    from volna.questionnaire.expressions import evaluate_one
    from volna.validation import QuestionnaireResolver

    q = Questionnaire.load(QUESTIONNAIRE)
    resolver = QuestionnaireResolver(q)
    page = Page(server["browser"])
    page.navigate(server["url"] + "/?lang=en")
    cases = [
        (
            {"age": "34", "employed": "yes", "activity_before": ["posts", "rallies"]},
            {"age": 34.0, "employed": "yes", "activity_before": "posts rallies"},
        ),
        ({}, {}),
        (
            {"age": "19", "employed": "no", "sector": "it", "activity_before": ["none"]},
            {"age": 19.0, "employed": "no", "sector": "it", "activity_before": "none"},
        ),
    ]
    for python_answers, js_answers in cases:
        for text in EXPRESSIONS:
            expected = evaluate_one(text, python_answers, resolver)
            tree = json.dumps(to_tree(text, q))
            got = page.evaluate(f"volnaEvaluate({tree}, {json.dumps(js_answers)})")
            if isinstance(expected, float):
                if math.isnan(expected):
                    assert got == "NaN", (text, python_answers)
                else:
                    assert got == pytest.approx(expected), (text, python_answers)
            elif hasattr(expected, "isoformat"):
                assert got == expected.isoformat(), (text, python_answers)
            else:
                assert got == expected, (text, python_answers, got)


def test_form_js_proof_of_work(server):
    from volna.collect.bots import check_proof, solve

    page = Page(server["browser"])
    page.navigate(server["url"] + "/?lang=en")
    challenge = bytes(range(16))
    proof = page.evaluate(f"volnaProofOfWork({json.dumps(challenge.hex())}, 10)", wait=True)
    assert check_proof(challenge, proof, 10)
    assert proof == solve(challenge, 10)  # both count up from 0: the same first solution


def test_exported_equals_what_was_filled(server, tmp_path):
    """Runs after the two submissions: both are in the store, sealed, and export exactly."""
    from volna.collect.crypto import load_private_key, open_sealed
    from volna.collect.store import Store

    key = load_private_key(server["folder"] / "priv.pem", PASSPHRASE)
    store = Store.open(server["db"])
    try:
        modes = sorted(
            json.loads(open_sealed(key, s.paradata))["mode"] for s in store.submissions()
        )
    finally:
        store.close()
    assert modes == ["js", "nojs"]  # sealed in the browser once, on arrival once
    table = _exported(server, tmp_path)
    assert table.height == 2
    rows = {row["destination"]: row for row in table.iter_rows(named=True)}
    for answers in (ANSWERS_JS, ANSWERS_NOJS):
        got = rows[answers["destination"]]
        for column, value in _expected_row(answers).items():
            assert got[column] == value, (column, got[column], value)
    db = (server["folder"] / "responses.db").read_bytes()
    assert b"lighthouse keeper" not in db
