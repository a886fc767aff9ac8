"""A headless Chromium driven over the Chrome DevTools protocol, every wait bounded."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import websocket

from tests.harness.processes import stop_process, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

#: JavaScript: [src, naturalWidth] of every image once it decoded (0 if it failed).
IMAGES_DECODED = """
Promise.all(Array.from(document.images).map(img =>
    img.decode().then(() => [img.getAttribute('src'), img.naturalWidth])
               .catch(() => [img.getAttribute('src'), 0])))
"""


FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
]


class BrowserError(AssertionError):
    """Chromium did not do what was asked in time."""


class PageChanged(BrowserError):
    """The page navigated while a command ran in it; the command may be tried again."""


#: Chromium's answers when the document a command ran in was replaced under it.
PAGE_CHANGED_MESSAGES = (
    "Inspected target navigated or closed",
    "Execution context was destroyed",
    "Cannot find context with specified id",
)


class Chromium:
    """One headless Chromium with a fresh profile and one page, spoken to over CDP."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.profile = Path(tempfile.mkdtemp(prefix="kwchrome"))
        self.log = open(self.profile.parent / f"{self.profile.name}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._next_id = 0
        self.events: list[dict] = []
        try:
            port_file = self.profile / "DevToolsActivePort"
            wait_for(self._started(port_file), timeout, "Chromium's DevTools port")
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                targets = json.loads(r.read())
            page = next(t for t in targets if t["type"] == "page")
            self.socket = websocket.create_connection(
                page["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True
            )
            self.call("Page.enable")
            self.call("Runtime.enable")
        except BaseException:
            self.close()
            raise

    def _started(self, port_file: Path):
        def check() -> bool:
            if self.process.poll() is not None:
                raise BrowserError(f"Chromium exited with status {self.process.returncode}")
            return port_file.exists() and len(port_file.read_text().split()) >= 2

        return check

    def call(self, method: str, **params) -> dict:
        """Send one command and return its result (events seen meanwhile are kept)."""
        self._next_id += 1
        ident = self._next_id
        self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            self.socket.settimeout(max(0.1, deadline - time.monotonic()))
            message = json.loads(self.socket.recv())
            if message.get("id") == ident:
                if "error" in message:
                    text = str(message["error"].get("message", ""))
                    error = PageChanged if text.startswith(PAGE_CHANGED_MESSAGES) else BrowserError
                    raise error(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)
        raise BrowserError(f"no answer to {method} within {self.timeout} s")

    def evaluate(self, expression: str):
        """Evaluate JavaScript in the page (awaiting promises) and return its value."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float | None = None, message: str = ""):
        """Poll *expression* until it is truthy.

        A poll that lands while the page is navigating (a click on a link has
        just been made) counts as "not yet", not as a failure.
        """

        def poll():
            try:
                return self.evaluate(expression)
            except PageChanged:
                return False

        return wait_for(poll, timeout or self.timeout, message or expression)

    def navigate(self, url: str) -> None:
        """Open *url* and wait until its load event."""
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait_loaded()

    def wait_loaded(self) -> None:
        self.wait("document.readyState === 'complete'", message="the page to load")

    def set_viewport(self, width: int, height: int, mobile: bool = False) -> None:
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )

    def screenshot(self, path: Path, keep_as: str | None = None) -> bytes:
        """Save a PNG of the whole page to *path* and return it.

        With *keep_as*, a copy also goes to $KWAPI_SCREENSHOT_DIR under that
        name when the variable is set, for a person to look at.
        """
        data = base64.b64decode(
            self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        )
        path.write_bytes(data)
        keep = os.environ.get("KWAPI_SCREENSHOT_DIR")
        if keep and keep_as:
            (Path(keep) / keep_as).write_bytes(data)
        return data

    def close(self) -> None:
        socket = getattr(self, "socket", None)
        if socket is not None:
            socket.close()
        stop_process(self.process)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)
