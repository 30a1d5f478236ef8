"""The web questionnaire's server: pages, both submission paths, bots, headers, hostile input.

Submissions are opened with the private key in the test, never by the app: what
the store holds must be sealed, and must open to exactly what was sent.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
import warnings

import httpx
import pytest

from collect_server import canonical_row as expected_row
from volna import Questionnaire
from volna.collect import crypto
from volna.collect.app import SECURITY_HEADERS, create_app
from volna.collect.bots import solve
from volna.collect.store import Store
from volna.examples import example_path

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

QUESTIONNAIRE = example_path("okrussians", "questionnaire.yaml")
PASSPHRASE = "test passphrase"

# A complete, valid answer of the example questionnaire, as a browser sends it.
VALID = {
    "destination": "GE",
    "left_month": "2022-03",
    "plans": "stay",
    "employed": "yes",
    "sector": "other",
    "sector_other": "beekeeper",
    "vote_2021": "yabloko",
    "smart_voting": "no",
    "activity_before": ["posts", "rallies"],
    "activity_after": ["none"],
    "age": "34",
    "gender": "female",
    "channel": "friends",
}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    private, public = crypto.generate_keypair(PASSPHRASE)
    (folder / "pub.key").write_bytes(public)
    (folder / "priv.pem").write_bytes(private)
    return {
        "folder": folder,
        "public": crypto.load_public_key(folder / "pub.key"),
        "private": crypto.load_private_key(folder / "priv.pem", PASSPHRASE),
    }


@pytest.fixture(scope="module")
def questionnaire():
    return Questionnaire.load(QUESTIONNAIRE)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def make(tmp_path, keys, questionnaire):
    """Build an app on a fresh SQLite store: make(**options) -> (client, store, clock)."""
    opened = []

    def build(**options):
        store = Store.open(f"sqlite:///{tmp_path / 'responses.db'}")
        opened.append(store)
        clock = Clock()
        settings = {"min_seconds": 0, "rate_per_minute": 10_000, "clock": clock, **options}
        app = create_app(
            questionnaire,
            public_key=keys["public"],
            store=store,
            questionnaire_text=QUESTIONNAIRE.read_text(encoding="utf-8"),
            **settings,
        )
        return TestClient(app, raise_server_exceptions=False), store, clock

    yield build
    for store in opened:
        store.close()


def token_of(html: str) -> str:
    return re.search(r'name="token" value="([^"]+)"', html).group(1)


def fresh_form(client, lang="en") -> str:
    response = client.get(f"/?lang={lang}")
    assert response.status_code == 200
    return token_of(response.text)


def opened(store, keys) -> list[tuple[dict, dict]]:
    return [
        (
            json.loads(crypto.open_sealed(keys["private"], s.answers)),
            json.loads(crypto.open_sealed(keys["private"], s.paradata)),
        )
        for s in store.submissions()
    ]


def seal_json(public, lang: str, answers: dict) -> str:
    plain = json.dumps({"v": 1, "lang": lang, "answers": answers}).encode()
    return base64.urlsafe_b64encode(crypto.seal(public, plain)).rstrip(b"=").decode()


# --------------------------------------------------------------------------- pages


def test_the_form_in_both_languages(make):
    client, _, _ = make()
    ru = client.get("/")
    assert ru.status_code == 200 and '<html lang="ru">' in ru.text  # the default language
    assert "Сколько вам полных лет?" in ru.text and "How old are you?" not in ru.text
    assert 'href="/?lang=en"' in ru.text
    en = client.get("/?lang=en")
    assert '<html lang="en">' in en.text and "How old are you?" in en.text
    assert 'href="/?lang=ru"' in en.text
    # choices, help text, notes, sections, countries in a list
    assert 'value="2022-03"> March 2022' in en.text
    assert "The country you are in now, not one you passed through" in en.text
    assert "The survey is anonymous" in en.text
    assert "<legend>Work</legend>" in en.text
    assert '<option value="GE">Georgia</option>' in en.text
    assert '<option value="GE">Грузия</option>' in ru.text
    # an unknown language falls back to the default, never an error
    assert '<html lang="ru">' in client.get("/?lang=xx<script>").text


def test_skip_logic_is_written_out(make):
    client, _, _ = make()
    en = client.get("/?lang=en").text
    sector = en[en.index('id="q-sector"') : en.index('id="q-vote_2021"')]
    assert (
        "Answer if: “Were you working before you left (employed, self-employed or running a "
        "business)?” is “Yes”" in sector
    )
    smart = en[en.index('id="q-smart_voting"') :]
    assert "is not “Did not vote” and" in smart and "is not “Prefer not to say”" in smart
    ru = client.get("/?lang=ru").text
    assert "Ответьте, если: «Работали ли вы перед отъездом" in ru
    assert "бизнесом)?» — «Да»" in ru
    # the JSON tree form.js evaluates rides along, escaped in the attribute
    assert 'data-relevant="[&#34;=&#34;, [&#34;ref&#34;, &#34;employed&#34;' in en


# --------------------------------------------------------------------------- no JavaScript


def test_a_form_without_javascript_is_stored_sealed(make, keys, questionnaire, tmp_path):
    client, store, clock = make()
    token = fresh_form(client)
    clock.now += 95
    response = client.post("/", data={"token": token, "lang": "en", "website": "", **VALID})
    assert response.status_code == 200 and 'id="thanks"' in response.text
    assert store.count() == 1
    [(answers, paradata)] = opened(store, keys)
    assert answers == {"v": 1, "lang": "en", "answers": expected_row(questionnaire, VALID)}
    assert paradata == {"v": 1, "mode": "nojs", "duration_sec": 100, "flags": []}

    from volna.collect.export import export_responses

    export_responses(store, keys["private"], questionnaire, tmp_path / "out.csv")
    import polars as pl

    table = pl.read_csv(tmp_path / "out.csv", infer_schema=False)
    row = table.row(0, named=True)
    for column, value in expected_row(questionnaire, VALID).items():
        assert (row[column] or "") == value, column
    assert row["duration_sec"] in ("100", "100.0")


def test_answers_to_skipped_questions_are_dropped(make, keys):
    client, store, _ = make()
    token = fresh_form(client)
    sent = {**VALID, "employed": "no", "vote_2021": "no_vote"}  # sector, smart_voting skipped
    response = client.post("/", data={"token": token, **sent})
    assert response.status_code == 200
    [(answers, _)] = opened(store, keys)
    assert answers["answers"]["sector"] == "" and answers["answers"]["sector_other"] == ""
    assert answers["answers"]["smart_voting"] == ""
    assert answers["answers"]["employed"] == "no"


def test_errors_are_shown_next_to_their_question(make):
    client, store, _ = make()
    token = fresh_form(client)
    sent = {**VALID, "age": "12", "plans": ""}
    response = client.post("/", data={"token": token, **sent})
    assert response.status_code == 422
    html = response.text
    age = html[html.index('id="q-age"') : html.index('id="q-gender"')]
    assert '<p class="error" id="e-age">Please enter a number from 18 to 90.</p>' in age
    assert 'value="12"' in age  # the answer is kept
    plans = html[html.index('id="q-plans"') : html.index('id="s-work"')]
    assert "Please answer this question." in plans
    gender = html[html.index('id="q-gender"') : html.index('id="q-education"')]
    assert 'class="error" id="e-gender" hidden' in gender
    assert 'value="female" checked' in gender and 'value="GE" selected' in html
    assert store.count() == 0  # nothing is stored before the form is valid
    # a constraint with its own message, in the respondent's language
    token = fresh_form(client, "ru")
    sent = {**VALID, "age": "20", "education": "postgrad"}
    html = client.post("/", data={"token": token, **sent}).text
    assert "Аспирантура или учёная степень до 22 лет?" in html


def test_an_expired_form_keeps_the_answers(make):
    client, store, clock = make()
    token = fresh_form(client)
    clock.now += 25 * 3600
    response = client.post("/", data={"token": token, "lang": "en", **VALID})
    assert response.status_code == 400
    assert "expired" in response.text and 'value="2022-03" checked' in response.text
    assert token_of(response.text) != token  # a fresh form token to send again with
    assert store.count() == 0
    forged = client.post("/", data={"token": token[:-4] + "AAAA", **VALID})
    assert forged.status_code == 400 and store.count() == 0


def test_a_resubmitted_form_is_stored_once(make):
    client, store, _ = make()
    token = fresh_form(client)
    first = client.post("/", data={"token": token, **VALID})
    second = client.post("/", data={"token": token, **VALID})
    assert first.status_code == second.status_code == 200
    assert 'id="thanks"' in second.text
    assert store.count() == 1


# --------------------------------------------------------------------------- JavaScript


def test_a_sealed_envelope_is_accepted(make, keys, questionnaire):
    client, store, clock = make()
    token = fresh_form(client, "ru")
    clock.now += 300
    row = expected_row(questionnaire, VALID)
    data = {"token": token, "lang": "ru", "sealed": seal_json(keys["public"], "ru", row)}
    response = client.post("/sealed", data=data)
    assert response.status_code == 200
    assert response.json() == {"ok": True, "next": "/thanks?lang=ru"}
    [(answers, paradata)] = opened(store, keys)
    assert answers["answers"] == row
    assert paradata == {"v": 1, "mode": "js", "duration_sec": 300, "flags": []}
    again = client.post("/sealed", data=data)
    assert again.status_code == 200 and store.count() == 1


def test_plaintext_is_refused(make, keys):
    client, store, _ = make()
    token = fresh_form(client)
    plain = base64.urlsafe_b64encode(json.dumps({"answers": {"age": "34"}}).encode()).decode()
    _, other_public = crypto.generate_keypair("other")
    other_folder = keys["folder"] / "other"
    other_folder.mkdir(exist_ok=True)
    (other_folder / "pub.key").write_bytes(other_public)
    other_key = crypto.load_public_key(other_folder / "pub.key")
    for sealed in (
        plain,
        "",
        "not base64 at all !!!",
        seal_json(other_key, "en", {"age": "34"}),  # sealed, but not to this server's key
    ):
        response = client.post("/sealed", data={"token": token, "sealed": sealed})
        assert response.status_code == 400, sealed
        assert "refuses plaintext" in response.json()["error"]
    # the no-JS fields sent to the sealed endpoint are not a way in either
    response = client.post("/sealed", data={"token": token, **VALID})
    assert response.status_code == 400
    assert store.count() == 0


# --------------------------------------------------------------------------- bots


def test_bot_flags_are_sealed_in_the_paradata(make, keys, questionnaire):
    client, store, clock = make(min_seconds=30, proof_of_work_bits=8)
    row = expected_row(questionnaire, VALID)
    # a person: slow enough, honeypot empty, proof of work found
    token = fresh_form(client)
    page = client.get("/?lang=en").text
    challenge = bytes.fromhex(re.search(r'data-challenge="([0-9a-f]+)"', page).group(1))
    token = token_of(page)
    clock.now += 40
    proof = solve(challenge, 8)
    sent = {"token": token, "sealed": seal_json(keys["public"], "en", row), "pow": proof}
    assert client.post("/sealed", data=sent).status_code == 200
    # a bot: fills the honeypot, sends at once, no proof
    token = fresh_form(client)
    sent = {
        "token": token,
        "sealed": seal_json(keys["public"], "en", row),
        "website": "spam.example",
    }
    assert client.post("/sealed", data=sent).status_code == 200
    # without JavaScript there is no proof of work: flagged, never refused
    token = fresh_form(client)
    clock.now += 45
    assert client.post("/", data={"token": token, **VALID}).status_code == 200
    flags = sorted(tuple(p["flags"]) for _, p in opened(store, keys))
    assert flags == sorted(
        [(), ("honeypot", "too_fast", "no_proof_of_work"), ("no_proof_of_work",)]
    )


def test_the_rate_cap_answers_429_and_keeps_the_answers(make):
    client, store, _ = make(rate_per_minute=1, rate_burst=2)
    for _ in range(2):
        assert client.post("/", data={"token": fresh_form(client), **VALID}).status_code == 200
    response = client.post("/", data={"token": fresh_form(client), **VALID})
    assert response.status_code == 429
    assert "Please wait a minute" in response.text and 'value="beekeeper"' in response.text
    sealed = client.post("/sealed", data={"token": fresh_form(client), "sealed": "x"})
    assert sealed.status_code == 429 and "wait a minute" in sealed.json()["error"]
    assert store.count() == 2


# --------------------------------------------------------------------------- headers, hostile input


def assert_safe_headers(response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (response.url, name)
    assert "set-cookie" not in response.headers
    assert "server" not in response.headers


def test_headers_on_every_response(make, keys, questionnaire, caplog):
    client, _, _ = make()
    token = fresh_form(client)
    responses = [
        client.get("/"),
        client.get("/?lang=en"),
        client.get("/thanks"),
        client.get("/static/form.js"),
        client.get("/static/form.css"),
        client.get("/static/seal.js"),
        client.get("/nothing-here"),
        client.get("/static/../app.py"),
        client.post("/", data={"token": token, **VALID}),
        client.post("/", data={"token": "bad"}),
        client.post("/sealed", data={"token": token, "sealed": "x"}),
        client.post("/", content=b"x" * 300_000),
        client.put("/"),
    ]
    for response in responses:
        assert_safe_headers(response)
    assert responses[6].status_code == 404 and responses[-1].status_code == 405
    assert responses[3].headers["content-type"].startswith("text/javascript")

    class Broken:
        def set_meta(self, name, value):
            pass

        def get_meta(self, name):
            return b"s" * 32

        def add(self, *args):
            raise RuntimeError("internal detail that must not leak")

    app = create_app(questionnaire, public_key=keys["public"], store=Broken(), min_seconds=0)
    broken = TestClient(app, raise_server_exceptions=False)
    with caplog.at_level("DEBUG"):
        response = broken.post("/", data={"token": fresh_form(broken), **VALID})
    assert response.status_code == 500
    assert_safe_headers(response)
    assert "internal detail" not in response.text and "Traceback" not in response.text
    assert "RuntimeError" in caplog.text and "internal detail" not in caplog.text
    assert "beekeeper" not in caplog.text


def test_hostile_input_is_refused_and_escaped(make):
    client, store, _ = make()
    token = fresh_form(client)
    script = "<script>alert(1)</script>"
    cases = [
        {**VALID, "sector_other": script},  # markup in free text
        {**VALID, "age": script},  # markup in a number
        {**VALID, "plans": script},  # markup as a choice code
        {**VALID, "left_month": "2099-01"},  # an unknown choice code
        {**VALID, "activity_before": ["posts", "unknown"]},
        {**VALID, "destination": "SU"},  # no such country
        {**VALID, "age": "1e400"},
        {**VALID, "sector_other": "x" * 5000},
        {**VALID, "age": "34\x00"},
    ]
    for sent in cases:
        response = client.post("/", data={"token": token, **sent})
        assert response.status_code == 422, sent
        assert script not in response.text
        assert "Traceback" not in response.text
    response = client.post("/", data={"token": token, **cases[0]})
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    assert "Please write without markup" in response.text
    # malformed bodies: broken multipart, a file upload, no token at all
    broken = client.post(
        "/",
        content=b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\nb',
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert broken.status_code == 400 and "Traceback" not in broken.text
    upload = client.post("/", files={"age": ("a.txt", b"34")}, data={"token": token})
    assert upload.status_code == 400
    assert client.post("/", data=VALID).status_code == 400
    assert store.count() == 0


def test_an_oversized_body_is_refused_before_parsing(make):
    client, store, _ = make()
    token = fresh_form(client)
    big = {"token": token, **VALID, "sector_other": "x" * 300_000}
    response = client.post("/", data=big)
    assert response.status_code == 413
    sealed = client.post("/sealed", data={"token": token, "sealed": "A" * 300_000})
    assert sealed.status_code == 413

    def chunks():  # no Content-Length: the limit is counted as the body arrives
        for _ in range(40):
            yield b"a=" + b"x" * 10_000 + b"&"

    streamed = client.post(
        "/", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert streamed.status_code == 413
    assert store.count() == 0


# --------------------------------------------------------------------------- the real server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_hundred_submissions_leave_no_trace(tmp_path, keys, questionnaire):
    """volna serve, 100 submissions: neither the database nor the server's output holds an
    answer, an address or a user agent."""
    port = _free_port()
    db_path = tmp_path / "responses.db"
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from volna.cli import main; main()",
                "serve",
                str(QUESTIONNAIRE),
                "--public-key",
                str(keys["folder"] / "pub.key"),
                "--db",
                f"sqlite:///{db_path}",
                "--port",
                str(port),
                "--min-seconds",
                "0",
                "--rate-per-minute",
                "100000",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        url = f"http://127.0.0.1:{port}"
        agent = "Mozilla/5.0 (DistinctiveAgent-7Q3Z)"
        forwarded = "203.0.113.77"
        headers = {"User-Agent": agent, "X-Forwarded-For": forwarded, "X-Real-IP": forwarded}
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(url + "/", timeout=1)
                    break
                except httpx.HTTPError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            secrets = [f"quokka-{i:03d}-marmalade" for i in range(100)]
            with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
                for i, secret in enumerate(secrets):
                    token = token_of(client.get("/?lang=en").text)
                    data = {"token": token, **VALID, "sector_other": secret}
                    if i % 2:  # half as form.js sends them
                        row = expected_row(questionnaire, {**VALID, "sector_other": secret})
                        data = {"token": token, "sealed": seal_json(keys["public"], "en", row)}
                        response = client.post("/sealed", data=data)
                    else:
                        response = client.post("/", data=data)
                    assert response.status_code == 200, response.text[:300]
                    assert "set-cookie" not in response.headers
        finally:
            process.terminate()
            process.wait(timeout=10)
    output = log_path.read_bytes()
    stored = b"".join(
        p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("responses.db")
    )
    for blob in (output, stored):
        for secret in (*secrets[:3], *secrets[-3:], "beekeeper"):
            assert secret.encode() not in blob
        assert b"quokka" not in blob
        for trace in (agent, "DistinctiveAgent", forwarded, "127.0.0.1:"):
            assert trace.encode() not in blob.replace(f"127.0.0.1:{port}".encode(), b"")
        assert b"POST /" not in blob and b"GET /" not in blob
    store = Store.open(f"sqlite:///{db_path}")
    try:
        got = sorted(a["answers"]["sector_other"] for a, _ in opened(store, keys))
    finally:
        store.close()
    assert got == sorted(secrets)


def test_a_questionnaire_honeypot_is_hidden_and_screening_flags_it(tmp_path, keys):
    # A honeypot declared in the questionnaire is on the page but hidden like the
    # form's own; whatever a bot writes in it travels sealed, and screening flags it.
    from volna.collect.export import open_submissions, response_table
    from volna.screening import ScreeningRules, screen

    q = Questionnaire.loads(
        "id: hp\nquestions:\n"
        "  - {name: age, type: integer, label: {en: Age}}\n"
        "  - {name: homepage, type: text, honeypot: true, label: {en: Homepage}}\n"
    )
    store = Store.open(f"sqlite:///{tmp_path / 'hp.db'}")
    app = create_app(q, public_key=keys["public"], store=store, min_seconds=0)
    client = TestClient(app, raise_server_exceptions=False)
    page = client.get("/?lang=en").text
    block = re.search(r'<div class="question[^"]*" id="q-homepage"[^>]*>', page).group(0)
    assert " hp" in block and 'aria-hidden="true"' in block
    assert re.search(r'<textarea id="f-homepage"[^>]*tabindex="-1"', page)
    for text in ("", "http://spam.example"):
        token = fresh_form(client)
        sent = client.post("/?lang=en", data={"token": token, "age": "40", "homepage": text})
        assert sent.status_code == 200
    submissions, _ = open_submissions(store, keys["private"])
    store.close()
    frame, _, _ = response_table(submissions, q, "hp.db")
    result = screen(frame, q, ScreeningRules(speeders=None, straightlining=None, duplicates=None))
    flagged = result.data.filter("flag_honeypot")
    assert flagged.height == 1 and flagged["homepage"][0] == "http://spam.example"


def test_submissions_arriving_together_are_validated_together(make, questionnaire, monkeypatch):
    # Under load the no-JavaScript path checks the waiting submissions in one call of
    # volna's validation; each still gets its own errors, in its own language.
    import asyncio

    from volna.collect import app as app_module

    sizes = []
    real = app_module._validated_many

    def counting(q, pairs):
        sizes.append(len(pairs))
        return real(q, pairs)

    monkeypatch.setattr(app_module, "_validated_many", counting)
    young = {**VALID, "age": ["12"]}
    wordy = {**VALID, "age": ["thirty"]}
    sent = [(VALID, "en"), (young, "ru"), (VALID, "ru"), (wordy, "en"), (young, "en")]

    async def all_at_once(validations):
        return await asyncio.gather(*(validations.check(f, lang) for f, lang in sent))

    results = asyncio.run(all_at_once(app_module.Validations(questionnaire)))
    assert sizes == [5]
    # and the no-JavaScript endpoint goes through this batching
    queued = []
    real_check = app_module.Validations.check

    async def spying(self, fields, language):
        queued.append(language)
        return await real_check(self, fields, language)

    monkeypatch.setattr(app_module.Validations, "check", spying)
    client, _, _ = make()
    token = fresh_form(client)
    assert client.post("/?lang=en", data={**VALID, "token": token}).status_code == 200
    assert queued == ["en"] and sizes == [5, 1]
    errors = [e for _, e in results]
    assert errors[0] == {} and errors[2] == {}
    assert list(errors[1]) == ["age"] and "18" in errors[1]["age"][0]
    assert errors[1]["age"] != errors[4]["age"]  # the same mistake, told in ru and in en
    assert list(errors[3]) == ["age"]
    assert results[0][0]["age"] == "34" and results[1][0]["age"] == "12"

    # a batch that fails is checked row by row: one hostile row fails only itself
    def fragile(q, pairs):
        if len(pairs) > 1 or pairs[0][0] is young:
            raise RuntimeError("boom")
        return real(q, pairs)

    monkeypatch.setattr(app_module, "_validated_many", fragile)

    async def mixed(validations):
        return await asyncio.gather(
            *(validations.check(f, lang) for f, lang in sent[:3]), return_exceptions=True
        )

    outcome = asyncio.run(mixed(app_module.Validations(questionnaire)))
    assert outcome[0][1] == {} and outcome[2][1] == {}
    assert isinstance(outcome[1], RuntimeError)
