"""Headless Chromium driven over the DevTools protocol, for tests of the dashboard.

Why the DevTools protocol over ``--remote-debugging-pipe`` rather than Selenium:
Debian's ``chromium`` package is all it needs (no chromedriver of the same
version, no new dependency, no port to find), and the same connection can
emulate a phone's screen and the dark color scheme, catch the page's script
errors, and take screenshots. Chromium reads JSON commands, each ended by a NUL
byte, from its fd 3 and writes answers and events to its fd 4.

    with Browser(profile_dir) as browser:
        browser.open("http://127.0.0.1:8040/")
        browser.wait_for("document.querySelector('#mem-available').textContent !== '–'")
        browser.screenshot(path)
"""

from __future__ import annotations

import base64
import fcntl
import itertools
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from yoyu.testing.waiting import wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BASH = shutil.which("bash") or "/bin/bash"  # dash's redirections take one-digit fds only
# A closed network: no sandbox (root in CI), no calls home at start.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--mute-audio",
)  # fmt: skip
COMMAND_TIMEOUT_S = 30.0


class BrowserError(RuntimeError):
    """A DevTools command failed, or the page's script threw."""


def _above_four(fd: int) -> int:
    """``fd`` moved to a number above 4, so redirecting the child's 3 and 4 cannot clobber it."""
    if fd > 4:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class Browser:
    """One headless Chromium with one page (tab)."""

    def __init__(self, profile: Path, *, width: int = 1280, height: int = 900) -> None:
        if CHROMIUM is None:
            raise BrowserError("Chromium is not installed (apt-get install chromium)")
        self.errors: list[str] = []  # the page's uncaught exceptions and console errors
        self._ids = itertools.count(1)
        self._answers: dict[int, dict[str, Any]] = {}
        self._arrived = threading.Condition()
        commands_in, self._commands = os.pipe()
        self._events, events_out = os.pipe()
        commands_in, events_out = _above_four(commands_in), _above_four(events_out)
        shell = f'exec "$0" "$@" 3<&{commands_in} 4>&{events_out}'
        self.process = subprocess.Popen(
            [BASH, "-c", shell, CHROMIUM, *CHROMIUM_FLAGS, "--remote-debugging-pipe",
             f"--user-data-dir={profile}", f"--window-size={width},{height}"],
            pass_fds=(commands_in, events_out), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(commands_in)
        os.close(events_out)
        threading.Thread(target=self._read, name="chromium-devtools", daemon=True).start()
        try:
            self._open_page(width, height)
        except BaseException:
            self.close()
            raise

    def _open_page(self, width: int, height: int) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        self._session = attached["sessionId"]
        for domain in ("Page.enable", "Runtime.enable"):
            self.call(domain, session=True)
        self.viewport(width, height)

    # -- the protocol ------------------------------------------------------------

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, session: bool = False
    ) -> dict[str, Any]:
        """Send one command and wait for its answer's ``result``."""
        message: dict[str, Any] = {"id": next(self._ids), "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        with self._arrived:
            if not self._arrived.wait_for(
                lambda: message["id"] in self._answers, COMMAND_TIMEOUT_S
            ):
                raise BrowserError(f"{method}: no answer in {COMMAND_TIMEOUT_S:g} s")
            answer = self._answers.pop(message["id"])
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def _read(self) -> None:
        pending = b""
        while chunk := os.read(self._events, 1 << 16):
            pending += chunk
            *messages, pending = pending.split(b"\0")
            for raw in messages:
                self._dispatch(json.loads(raw))

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            with self._arrived:
                self._answers[message["id"]] = message
                self._arrived.notify_all()
        elif message.get("method") == "Runtime.exceptionThrown":
            details = message["params"]["exceptionDetails"]
            self.errors.append(str(details.get("exception", {}).get("description") or details))
        elif message.get("method") == "Runtime.consoleAPICalled":
            params = message["params"]
            if params.get("type") == "error":
                self.errors.append(" ".join(str(a.get("value", a)) for a in params["args"]))

    # -- the page -------------------------------------------------------------------

    def open(self, url: str) -> None:
        """Navigate and wait for the page (and its scripts) to load."""
        self.call("Page.navigate", {"url": url}, session=True)
        wait_until(
            lambda: self.evaluate("document.readyState") == "complete",
            COMMAND_TIMEOUT_S, f"{url} to load",
        )  # fmt: skip

    def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` in the page (a promise is awaited)."""
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        result = self.call("Runtime.evaluate", params, session=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout_s: float = 30.0) -> Any:
        """Wait until ``expression`` is truthy in the page; its value."""
        found: list[Any] = []
        # an element comes back by value as {}: count it as found
        probe = f"(() => {{ const v = ({expression}); return v instanceof Node || v; }})()"

        def check() -> bool:
            try:
                value = self.evaluate(probe)
            except BrowserError:  # a page mid-navigation has no body yet: not there yet
                return False
            found[:] = [value]
            return bool(value)

        wait_until(check, timeout_s, f"the page to show: {expression}")
        return found[0]

    def click(self, selector: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")

    def viewport(self, width: int, height: int, *, mobile: bool = False) -> None:
        params = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
        self.call("Emulation.setDeviceMetricsOverride", params, session=True)

    def accept_language(self, languages: str) -> None:
        """Ask for ``languages`` (``ja,en``; Chromium adds the q-values) from now on."""
        agent = self.call("Browser.getVersion")["userAgent"]  # the override needs one: keep it
        override = {"userAgent": agent, "acceptLanguage": languages}
        self.call("Emulation.setUserAgentOverride", override, session=True)

    def color_scheme(self, scheme: str) -> None:
        """Emulate ``prefers-color-scheme: light`` or ``dark``."""
        features = [{"name": "prefers-color-scheme", "value": scheme}]
        self.call("Emulation.setEmulatedMedia", {"features": features}, session=True)

    def screenshot(self, path: Path, *, full_page: bool = True) -> Path:
        """A PNG of the page (the whole of it, not only the viewport, by default)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
            params.update(clip=clip, captureBeyondViewport=True)
        data = self.call("Page.captureScreenshot", params, session=True)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                self.call("Browser.close")
        except (BrowserError, OSError):
            self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)

    def __enter__(self) -> Browser:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
