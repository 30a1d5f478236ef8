"""A small DevTools-protocol client for headless Chromium over a pipe (no driver, no websocket).

Shared by the browser tests. ``Browser`` starts Debian's Chromium with
``--remote-debugging-pipe`` and speaks JSON messages on fds 3 and 4; ``Page``
wraps one tab: navigate, evaluate JavaScript, wait for a condition, screenshot.
``chromium()`` finds the binary or skips the test, saying why. Set
``VOLNA_CHROMIUM`` to use another Chromium binary.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

TIMEOUT = 60.0  # seconds for the browser to answer one command (a report page draws slowly)


def chromium() -> str:
    """The Chromium binary, or skip the test when it is not installed."""
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


class Page:
    """One tab of a :class:`Browser`, with the domains a form test needs enabled."""

    def __init__(self, browser: Browser, *, width: int = 1000, height: int = 900) -> None:
        self.browser = browser
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.send(f"{domain}.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def send(self, method: str, params: dict | None = None) -> dict:
        return self.browser.send(method, params, session=self.session)

    def scripts(self, enabled: bool) -> None:
        """Turn JavaScript on or off for this tab (as Tor Browser's "Safest" level does)."""
        self.send("Emulation.setScriptExecutionDisabled", {"value": not enabled})

    def navigate(self, url: str) -> None:
        """Load ``url`` and wait for its load event."""
        self.browser.events.clear()
        self.send("Page.navigate", {"url": url})
        self.browser.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str, *, wait: bool = False):
        """The value of a JavaScript expression (``wait``: await the promise it returns)."""
        answer = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": wait},
        )
        if "exceptionDetails" in answer:
            raise RuntimeError(f"{expression[:80]}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def wait_until(self, expression: str, timeout: float = 10.0):
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except RuntimeError:  # the page is between documents
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"never true: {expression}")
            time.sleep(0.05)

    def screenshot(self, path: Path) -> None:
        """A PNG of the visible part of the page."""
        shot = self.send("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(shot["data"]))
