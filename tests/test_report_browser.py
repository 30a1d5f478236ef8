"""The HTML report in a real browser: it renders, logs no error and requests nothing.

Drives Debian's headless Chromium (``apt-get install chromium``; ``.ci/run`` installs
it) through the DevTools protocol over a pipe (``--remote-debugging-pipe``): no
driver, no websocket library, no browser download. Every request the page makes is
seen by ``Network.requestWillBeSent``; the only ones allowed are the report file
itself and ``data:`` URIs. Skipped, saying why, only when Chromium is not installed.
Set ``VOLNA_CHROMIUM`` to use another Chromium binary.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from test_report_render import bundled_report, sample_report
from volna.report.write import write_report

TIMEOUT = 60.0  # seconds for the browser to start, load the page and draw it


def _chromium() -> str:
    found = os.environ.get("VOLNA_CHROMIUM") or shutil.which("chromium")
    if not found:
        for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
            if Path(candidate).exists():
                found = candidate
    if not found:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    return found


class Browser:
    """Headless Chromium spoken to with DevTools protocol messages over two pipes."""

    def __init__(self, binary: str, profile: Path) -> None:
        # the browser reads commands on fd 3 and writes answers and events on fd 4
        self._commands_read, self._commands = os.pipe()
        self._answers, self._answers_write = os.pipe()
        into, out = self._commands_read, self._answers_write

        def pipes_as_3_and_4() -> None:  # in the child, before exec
            # through fds >= 10 first: a pipe may itself be fd 3 or 4 (then dup2 onto
            # itself would keep it close-on-exec, or one pipe would overwrite the other)
            high_in = fcntl.fcntl(into, fcntl.F_DUPFD, 10)
            high_out = fcntl.fcntl(out, fcntl.F_DUPFD, 10)
            os.dup2(high_in, 3)  # a copy made by dup2 is inherited by the browser
            os.dup2(high_out, 4)
            os.close(high_in)
            os.close(high_out)

        args = [
            binary,
            "--headless",
            "--remote-debugging-pipe",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        self.log = profile.parent / "chromium.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=pipes_as_3_and_4,  # the test starts no thread
                close_fds=False,  # the pipes are not inheritable; fds 3 and 4 are
            )
        os.close(self._commands_read)
        os.close(self._answers_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one command and wait for its answer (events meanwhile are kept)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            answer = self._receive(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_for(self, method: str, timeout: float = TIMEOUT) -> dict:
        """The first event ``method`` (already received or still to come)."""
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + timeout
        while True:
            event = self._receive(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def drain(self, seconds: float) -> None:
        """Keep the events that arrive within ``seconds`` (late requests, late errors)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.events.append(self._receive(deadline))
            except TimeoutError:
                return

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._answers], [], [], left)
            if ready:
                chunk = os.read(self._answers, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium exited; its log: {self.log}")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._answers)


def open_page(html: Path, screenshot: Path) -> dict:
    """Load ``html`` in headless Chromium; what it requested, logged and drew.

    Returns the URLs requested, the console and log errors, the exceptions, a few
    facts measured in the page, and writes a full-page PNG to ``screenshot``.
    """
    binary = _chromium()
    browser = Browser(binary, html.parent / "chromium-profile")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Network", "Runtime", "Log"):
            browser.send(f"{domain}.enable", session=session)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1100, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        browser.events.clear()  # only what the report page does counts
        url = html.resolve().as_uri()
        browser.send("Page.navigate", {"url": url}, session=session)
        browser.wait_for("Page.loadEventFired")
        browser.drain(0.5)
        facts = browser.send(
            "Runtime.evaluate",
            {
                "expression": """JSON.stringify({
                    title: document.title,
                    lang: document.documentElement.lang,
                    tables: document.querySelectorAll("table").length,
                    charts: Array.from(document.querySelectorAll("figure.chart svg"))
                        .map(s => s.getBoundingClientRect().width),
                    height: document.documentElement.scrollHeight,
                })""",
                "returnByValue": True,
            },
            session=session,
        )["result"]["value"]
        facts = json.loads(facts)
        height = min(int(facts["height"]), 12000)
        shot = browser.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": 1100, "height": height, "scale": 1},
            },
            session=session,
        )
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        browser.drain(0.2)
    finally:
        browser.close()

    events = browser.events
    requests = [
        e["params"]["request"]["url"]
        for e in events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    console = [
        e["params"]
        for e in events
        if e.get("method") == "Runtime.consoleAPICalled"
        and e["params"].get("type") in ("error", "assert", "warning")
    ]
    logged = [
        e["params"]["entry"]
        for e in events
        if e.get("method") == "Log.entryAdded"
        and e["params"]["entry"].get("level") in ("error", "warning")
    ]
    exceptions = [e["params"] for e in events if e.get("method") == "Runtime.exceptionThrown"]
    return {
        "url": url,
        "requests": requests,
        "console": console + logged,
        "exceptions": exceptions,
        "facts": facts,
    }


def _assert_clean(result: dict, screenshot: Path) -> None:
    outside = [u for u in result["requests"] if u != result["url"] and not u.startswith("data:")]
    assert not outside, f"the report made requests: {outside}"
    assert result["url"] in result["requests"], "the page itself was loaded"
    assert not result["console"], f"console errors: {result['console']}"
    assert not result["exceptions"], f"exceptions: {result['exceptions']}"
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "a PNG"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 1100 and height >= 600, (width, height)
    assert len(data) > 20_000, "a page with text and charts, not a blank image"
    from PIL import Image  # matplotlib's dependency

    with Image.open(screenshot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50, "more than a flat background"


@pytest.mark.parametrize("lang", ["ru", "en"])
def test_hand_made_report_in_chromium(tmp_path, lang):
    _chromium()
    html = write_report(sample_report(lang), tmp_path, formats=("html",))[0]
    screenshot = tmp_path / f"report.{lang}.png"
    result = open_page(html, screenshot)
    _assert_clean(result, screenshot)
    facts = result["facts"]
    assert facts["lang"] == lang and facts["tables"] == 3
    assert len(facts["charts"]) == 2 and all(w > 100 for w in facts["charts"])


def test_a_page_that_requests_something_is_caught(tmp_path):
    """The check itself: a page with an external image and a script error fails it."""
    _chromium()
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html lang="en"><meta charset="utf-8"><title>bad</title>'
        '<img src="http://127.0.0.1:9/x.png" alt=""><p>some text</p>'
        "<script>console.error('boom')</script>",
        encoding="utf-8",
    )
    result = open_page(page, tmp_path / "bad.png")
    assert "http://127.0.0.1:9/x.png" in result["requests"]
    assert any("boom" in json.dumps(c) for c in result["console"])


def test_example_report_in_chromium(tmp_path):
    """The bundled study's report, when report building exists (volna.report.build)."""
    _chromium()
    report = bundled_report("ru")
    html = write_report(report, tmp_path / "report", formats=("html",))[0]
    screenshot = tmp_path / "example.ru.png"
    result = open_page(html, screenshot)
    _assert_clean(result, screenshot)
    facts = result["facts"]
    assert facts["lang"] == "ru" and facts["tables"] == len(report.tables())
    assert len(facts["charts"]) == len(report.charts()) and all(w > 100 for w in facts["charts"])
