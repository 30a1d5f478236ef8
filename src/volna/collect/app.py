"""The web questionnaire: one page, two ways to submit, nothing kept that identifies anyone.

``GET /`` shows every question on one page in the respondent's language
(``?lang=ru|en``). Without JavaScript the browser posts the form to ``POST /``;
the server validates the row with volna's own rules, re-renders the page with
the answers and the errors next to their questions if anything is wrong, and
otherwise seals the answers to the researchers' public key at once and stores
only the envelope. With JavaScript, ``static/form.js`` applies the skip logic
live, checks the same rules, seals the answers in the browser with
``static/seal.js`` and posts the envelope to ``POST /sealed``, which accepts
nothing that does not look sealed to this server's key.

Privacy by construction: no cookies, no address, user agent or referrer read
or logged, strict headers on every response, a request body limit checked
before anything is parsed, a catch-all error page without details.
Bots: a honeypot field, a minimum completion time from the signed form token,
a global rate cap and an optional proof of work; suspicious submissions are
stored with flags in their sealed paradata, never silently dropped.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from volna.collect import crypto
from volna.collect.bots import HONEYPOT_FIELD, RateCap, check_proof
from volna.collect.form import (
    Submitted,
    apply_skip_logic,
    check_answers_many,
    form_view,
    read_form,
    texts,
)
from volna.collect.tokens import FormTokens, IssuedForm, TokenError, coarse_duration
from volna.errors import VolnaError
from volna.questionnaire.model import Questionnaire

log = logging.getLogger("volna.collect")
HERE = Path(__file__).parent
#: the largest request body accepted (bytes); larger ones get 413 before any parsing
MAX_BODY = 256 * 1024
#: the most form fields a submission may have
MAX_FIELDS = 3000

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Permissions-Policy": (
        "accelerometer=(), autoplay=(), camera=(), display-capture=(), encrypted-media=(), "
        "fullscreen=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), "
        "midi=(), payment=(), picture-in-picture=(), publickey-credentials-get=(), "
        "screen-wake-lock=(), sync-xhr=(), usb=(), xr-spatial-tracking=(), "
        "interest-cohort=(), browsing-topics=()"
    ),
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_RAW_HEADERS = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
# replaced by ours (a handler may have set them already), or never sent at all
_DROPPED = {b"set-cookie", b"server", b"date"} | {name for name, _ in _RAW_HEADERS}

_PLAIN_413 = (
    b"<!doctype html><html><head><meta charset=utf-8><title>413</title></head>"
    b"<body><h1>413</h1><p>The form sent was too large.</p></body></html>"
)


class Guard:
    """ASGI middleware: security headers on every response, no cookies, a body size limit.

    The body is read (up to ``max_body`` bytes) before the application sees it, so an
    oversized request is answered 413 without parsing a byte of it.
    """

    def __init__(self, app: Callable, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_guarded(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k not in _DROPPED]
                message = {**message, "headers": headers + _RAW_HEADERS}
            await send(message)

        if scope.get("method") in ("POST", "PUT", "PATCH"):
            declared = dict(scope.get("headers", [])).get(b"content-length")
            too_large = False
            if declared is not None:
                too_large = not declared.isdigit() or int(declared) > self.max_body
            body = b""
            if not too_large:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    body += message.get("body", b"")
                    if len(body) > self.max_body:
                        too_large = True
                        break
                    if not message.get("more_body", False):
                        break
            if too_large:
                await send_guarded(
                    {
                        "type": "http.response.start",
                        "status": 413,
                        "headers": [
                            (b"content-type", b"text/html; charset=utf-8"),
                            (b"content-length", str(len(_PLAIN_413)).encode()),
                            (b"connection", b"close"),
                        ],
                    }
                )
                await send_guarded({"type": "http.response.body", "body": _PLAIN_413})
                return
            done = False

            async def replay() -> dict:
                nonlocal done
                if not done:
                    done = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_guarded)
            return
        await self.app(scope, receive, send_guarded)


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every answer echoed back is escaped, in text and in attributes
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
    )
    return env


def _validated(
    questionnaire: Questionnaire, fields: dict[str, list[str]], language: str
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The row to seal (skipped questions blanked) and the errors per question (CPU work)."""
    return _validated_many(questionnaire, [(fields, language)])[0]


def _validated_many(
    questionnaire: Questionnaire, submissions: list[tuple[dict[str, list[str]], str]]
) -> list[tuple[dict[str, str], dict[str, list[str]]]]:
    """:func:`_validated` for submissions that arrived together, in one validation."""
    prepared = []
    for fields, language in submissions:
        sent: Submitted = read_form(questionnaire, fields, language)
        row = apply_skip_logic(questionnaire, sent.answers, set(sent.errors))
        # malformed answers count as unanswered for the other rules; their own message wins
        prepared.append((sent, row, _without(questionnaire, row, set(sent.errors)), language))
    found = check_answers_many(questionnaire, [p[2] for p in prepared], [p[3] for p in prepared])
    out = []
    for (sent, row, _, _), errors in zip(prepared, found, strict=True):
        errors.update(sent.errors)
        out.append((row, errors))
    return out


class Validations:
    """The no-JavaScript submissions waiting to be checked, checked together.

    volna's validation works column by column, so checking a hundred rows costs about
    what checking one does (~20 ms here). While one batch is being checked the next
    submissions wait, and are then checked in one call: a lone respondent waits for
    nothing, and under load the server keeps up (one batch at a time, in a worker
    thread). If a batch fails, its rows are checked one by one, so one hostile row
    cannot fail the others.
    """

    def __init__(self, questionnaire: Questionnaire, max_rows: int = 256) -> None:
        self.questionnaire = questionnaire
        self.max_rows = max_rows
        self.waiting: list[tuple[dict[str, list[str]], str, asyncio.Future]] = []
        self.worker: asyncio.Task | None = None

    async def check(
        self, fields: dict[str, list[str]], language: str
    ) -> tuple[dict[str, str], dict[str, list[str]]]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiting.append((fields, language, future))
        if self.worker is None or self.worker.done():
            self.worker = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self.waiting:
            batch = self.waiting[: self.max_rows]
            del self.waiting[: self.max_rows]
            pairs = [(fields, language) for fields, language, _ in batch]
            try:
                results = await run_in_threadpool(_validated_many, self.questionnaire, pairs)
            except Exception:
                results = [
                    await run_in_threadpool(_validated_one, self.questionnaire, pair)
                    for pair in pairs
                ]
            for (_, _, future), result in zip(batch, results, strict=True):
                if future.done():  # the client went away
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)


def _validated_one(questionnaire: Questionnaire, pair: tuple[dict[str, list[str]], str]):
    """One submission alone; its exception is returned, to be raised in its own request."""
    try:
        return _validated(questionnaire, *pair)
    except Exception as exc:
        return exc


def _without(questionnaire: Questionnaire, row: dict[str, str], names: set[str]) -> dict:
    out = dict(row)
    for name in names:
        for column in questionnaire[name].columns:
            out[column] = ""
    return out


def _language(requested: str | None, questionnaire: Questionnaire) -> str:
    if requested and requested in questionnaire.languages:
        return requested
    return questionnaire.default_language or "en"


def _language_names(questionnaire: Questionnaire) -> list[tuple[str, str]]:
    return [(code, texts(code)["language_name"]) for code in questionnaire.languages]


def create_app(
    questionnaire: Questionnaire,
    *,
    public_key: crypto.PublicKey,
    store: Any,
    questionnaire_text: str | None = None,
    token_secret: bytes | None = None,
    min_seconds: float = 60,
    rate_per_minute: float = 120,
    rate_burst: float | None = None,
    proof_of_work_bits: int = 0,
    token_max_age: int = 24 * 3600,
    max_body: int = MAX_BODY,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The web questionnaire as an ASGI application.

    ``store`` is an open :class:`volna.collect.store.Store`; its meta keeps the
    questionnaire text (``questionnaire_text``, if given) and the form-token secret
    (``token_secret``, else the stored one, else a new one), so forms issued before a
    restart still submit. ``min_seconds``: a submission faster than this after the form
    was issued is flagged ``too_fast``. ``rate_per_minute``: the global rate cap (all
    clients together). ``proof_of_work_bits``: the zero bits form.js must find (0 = off).

    >>> import pathlib, tempfile
    >>> from cryptography.hazmat.primitives.asymmetric import ec
    >>> from volna import Questionnaire
    >>> from volna.collect.store import Store
    >>> q = Questionnaire.loads("id: d\\nquestions:\\n  - {name: age, type: integer}")
    >>> key = ec.generate_private_key(ec.SECP256R1()).public_key()
    >>> store = Store.open(f"sqlite:///{tempfile.mkdtemp()}/responses.db")
    >>> app = create_app(q, public_key=key, store=store, questionnaire_text="id: d")
    >>> [route.path for route in app.routes]
    ['/', '/', '/sealed', '/thanks', '/static']
    >>> store.get_meta("questionnaire"), len(store.get_meta("token_secret"))
    (b'id: d', 32)
    >>> store.close()
    """
    from volna.collect.tokens import new_secret

    if questionnaire_text is not None:
        store.set_meta("questionnaire", questionnaire_text.encode("utf-8"))
    if token_secret is None:
        token_secret = store.get_meta("token_secret")
        if not token_secret:
            token_secret = new_secret()
            store.set_meta("token_secret", token_secret)
    tokens = FormTokens(token_secret, max_age=token_max_age)
    cap = RateCap(rate_per_minute, burst=rate_burst)
    validations = Validations(questionnaire)
    env = _templates()
    key_for_browser = crypto.browser_key(public_key)
    views = {lang: form_view(questionnaire, lang) for lang in questionnaire.languages}
    labels = {
        lang: {q.name: q.label(lang) for q in questionnaire.questions}
        for lang in questionnaire.languages
    }
    js_messages = {
        lang: json.dumps(
            {k: v for k, v in texts(lang).items() if k.startswith("e_")}, ensure_ascii=False
        )
        for lang in questionnaire.languages
    }

    def page(name: str, language: str, status: int = 200, **context: Any) -> HTMLResponse:
        t = texts(language)
        base = {
            "language": language,
            "languages": _language_names(questionnaire),
            "title": questionnaire.title.get(language)
            or next(iter(questionnaire.title.values()), questionnaire.id),
            "t": t,
            "link_base": "/",
        }
        html = env.get_template(name).render(**base, **context)
        return HTMLResponse(html, status_code=status)

    def form_page(
        language: str,
        *,
        status: int = 200,
        token: str | None = None,
        values: dict[str, list[str]] | None = None,
        errors: dict[str, list[str]] | None = None,
        notice: str = "",
    ) -> HTMLResponse:
        token = token or tokens.issue(language, now=clock())
        try:
            challenge = tokens.check(token, now=clock()).challenge.hex()
        except TokenError:
            token = tokens.issue(language, now=clock())
            challenge = tokens.check(token, now=clock()).challenge.hex()
        return page(
            "form.html",
            language,
            status,
            groups=views[language],
            labels=labels[language],
            token=token,
            challenge=challenge,
            browser_key=key_for_browser,
            pow_bits=proof_of_work_bits,
            values=values or {},
            errors=errors or {},
            notice=notice,
            js_messages=js_messages[language],
        )

    def message_page(language: str, status: int, heading: str, message: str) -> HTMLResponse:
        return page("message.html", language, status, heading=heading, message=message)

    async def read_fields(request: Request) -> dict[str, list[str]]:
        try:
            form = await request.form(max_files=0, max_fields=MAX_FIELDS)
        except Exception:  # malformed bodies of every kind are the sender's fault
            raise HTTPException(400) from None
        out: dict[str, list[str]] = {}
        for key, value in form.multi_items():
            if not isinstance(value, str):
                raise HTTPException(400)
            out.setdefault(key, []).append(value)
        return out

    def one(fields: dict[str, list[str]], name: str) -> str:
        values = fields.get(name) or [""]
        return values[0]

    def flags_for(form: IssuedForm, fields: dict[str, list[str]]) -> tuple[list[str], int]:
        flags = []
        if one(fields, HONEYPOT_FIELD).strip():
            flags.append("honeypot")
        duration = clock() - form.issued
        if duration < min_seconds:
            flags.append("too_fast")
        if proof_of_work_bits > 0 and not check_proof(
            form.challenge, one(fields, "pow").strip(), proof_of_work_bits
        ):
            flags.append("no_proof_of_work")
        return flags, coarse_duration(duration)

    def paradata(mode: str, duration: int, flags: list[str]) -> bytes:
        plain = {"v": 1, "mode": mode, "duration_sec": duration, "flags": flags}
        return crypto.seal(public_key, json.dumps(plain).encode("utf-8"))

    async def show_form(request: Request) -> Response:
        language = _language(request.query_params.get("lang"), questionnaire)
        return form_page(language)

    async def thanks(request: Request) -> Response:
        language = _language(request.query_params.get("lang"), questionnaire)
        return page("thanks.html", language, 200)

    async def submit_plain(request: Request) -> Response:
        """The no-JavaScript path: validate, then seal on arrival; never store plaintext."""
        fields = await read_fields(request)
        token = one(fields, "token")
        try:
            form: IssuedForm | None = tokens.check(token, now=clock())
        except TokenError as exc:
            form = None
            problem = exc
        language = _language(
            form.language if form else one(fields, "lang") or request.query_params.get("lang"),
            questionnaire,
        )
        t = texts(language)
        if not cap.allow():
            return form_page(
                language, status=429, values=fields, notice=t["busy"], token=token if form else None
            )
        if form is None:
            notice = t["expired"] if problem.expired else t["bad_token"]
            return form_page(language, status=400, values=fields, notice=notice)
        row, errors = await validations.check(fields, language)
        if errors:
            return form_page(language, status=422, token=token, values=fields, errors=errors)
        flags, duration = flags_for(form, fields)
        plain = {"v": 1, "lang": language, "answers": row}
        envelope = crypto.seal(public_key, json.dumps(plain, ensure_ascii=False).encode("utf-8"))
        try:
            await run_in_threadpool(
                store.add, envelope, paradata("nojs", duration, flags), form.nonce
            )
        except VolnaError:
            return form_page(
                language, status=503, token=token, values=fields, notice=t["send_failed"]
            )
        return page("thanks.html", language, 200)

    async def submit_sealed(request: Request) -> Response:
        """The JavaScript path: the answers arrive sealed; refuse anything that is not."""
        fields = await read_fields(request)
        try:
            form: IssuedForm | None = tokens.check(one(fields, "token"), now=clock())
        except TokenError as exc:
            form = None
            problem = exc
        language = _language(form.language if form else one(fields, "lang"), questionnaire)
        t = texts(language)
        if not cap.allow():
            return JSONResponse({"error": t["busy"]}, status_code=429)
        if form is None:
            fresh = tokens.issue(language, now=clock())
            notice = t["expired"] if problem.expired else t["bad_token"]
            return JSONResponse({"error": notice, "token": fresh}, status_code=400)
        text = one(fields, "sealed")
        try:
            envelope = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            envelope = b""
        if not crypto.looks_sealed(envelope, public_key):
            return JSONResponse(
                {
                    "error": "a server started with a key refuses plaintext: "
                    "the answers must be sealed to its public key"
                },
                status_code=400,
            )
        flags, duration = flags_for(form, fields)
        try:
            await run_in_threadpool(
                store.add, envelope, paradata("js", duration, flags), form.nonce
            )
        except VolnaError:
            return JSONResponse({"error": t["send_failed"]}, status_code=503)
        return JSONResponse({"ok": True, "next": f"/thanks?lang={language}"})

    async def on_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        language = _language(request.query_params.get("lang"), questionnaire)
        t = texts(language)
        message = {404: t["not_found"], 413: t["too_large"], 400: t["bad_request"]}.get(
            status, t["bad_request"] if status < 500 else t["error_title"]
        )
        try:
            response = message_page(language, status, t["error_title"], message)
        except Exception:  # the error page itself must never fail
            response = HTMLResponse("<!doctype html><title>error</title>", status_code=status)
        # a 500 is answered outside Guard, so the headers are set here as well
        response.headers.update(SECURITY_HEADERS)
        return response

    def guarded(handler: Callable) -> Callable:
        """Unexpected errors become a plain 500 page and one log line naming only their type.

        A traceback (what the server would otherwise print) can quote values from the
        request, so none is printed.
        """

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException:
                raise
            except Exception as exc:
                log.error("internal error (%s) while answering a request", type(exc).__name__)
                return await on_error(request, exc)

        return run

    routes = [
        Route("/", guarded(show_form), methods=["GET"]),
        Route("/", guarded(submit_plain), methods=["POST"]),
        Route("/sealed", guarded(submit_sealed), methods=["POST"]),
        Route("/thanks", guarded(thanks), methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(Guard, max_body=max_body)],
        exception_handlers={HTTPException: on_error, Exception: on_error},
    )
    app.state.store = store
    app.state.questionnaire = questionnaire
    return app
