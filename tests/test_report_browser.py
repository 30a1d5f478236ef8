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
import json
import struct
from pathlib import Path

import pytest

from cdp import Browser
from cdp import chromium as _chromium
from test_report_render import bundled_report, sample_report
from volna.report.write import write_report


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
