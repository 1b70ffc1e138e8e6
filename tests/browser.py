"""A page opened in headless Chromium the way a person opens it, watched over the DevTools
protocol: what it logged, what it asked the network for, which images failed, a screenshot.

Stdlib only: Chromium speaks the protocol over two pipes (`--remote-debugging-pipe`, file
descriptors 3 and 4, messages ending in NUL), so the test needs no driver or websocket
package. Debian's `chromium` package provides the browser; `CHROMIUM` names another.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# The flags this workplace's machines need: no sandbox as root, and none of Chromium's own
# background traffic (which a closed network refuses and which would read as the page's).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--remote-debugging-pipe"]


def chromium() -> str | None:
    """The browser to use, or None when there is none."""
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@dataclass
class Seen:
    """What the page did."""

    console: list[str] = field(default_factory=list)
    """Console errors and uncaught exceptions."""
    requests: list[str] = field(default_factory=list)
    """Every URL the page requested, itself included."""
    failed: list[str] = field(default_factory=list)
    """Requests that failed."""
    values: dict = field(default_factory=dict)
    """The results of the `evaluate` expressions, by name."""
    screenshots: dict = field(default_factory=dict)
    """Name -> PNG bytes."""

    @property
    def network(self) -> list[str]:
        """Requests that would leave the machine: anything but the file itself and data: URIs."""
        return [u for u in self.requests if not (u.startswith("file:") or u.startswith("data:"))]


class _Pipe:
    def __init__(self, exe: str, profile: str):
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()
        # Out of the way of 3 and 4, which the child's dup2 below gives the protocol.
        hi_in, hi_out = (fcntl.fcntl(fd, fcntl.F_DUPFD, 20) for fd in (to_child, from_child))
        os.close(to_child)
        os.close(from_child)

        def wire():
            os.dup2(hi_in, 3)
            os.dup2(hi_out, 4)

        self.proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=wire, pass_fds=(3, 4))
        os.close(hi_in)
        os.close(hi_out)
        self._buffer = b""
        self._id = 0
        self.events: list[dict] = []

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed the protocol pipe (exit code {self.proc.poll()})")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._write, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._message(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for i, m in enumerate(self.events):
            if m.get("method") == method:
                return self.events.pop(i)
        while True:
            m = self._message(deadline)
            if m.get("method") == method:
                return m
            self.events.append(m)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._read)
        os.close(self._write)


def open_page(path: Path, evaluate: dict[str, str] | None = None, shots: dict[str, str] | None = None,
              width: int = 1280, height: int = 900) -> Seen:
    """Open `path` and record what happens. `evaluate` maps a name to a JS expression whose value
    is kept; `shots` maps a screenshot's name to the URL fragment to show (or "" for the top)."""
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("no chromium on PATH")
    seen = Seen()
    with tempfile.TemporaryDirectory(prefix="codec-chromium-") as profile:
        pipe = _Pipe(exe, profile)
        try:
            target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            s = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                pipe.call(f"{domain}.enable", session=s)
            pipe.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=s)
            url = path.resolve().as_uri()
            pipe.call("Page.navigate", {"url": url}, session=s)
            pipe.wait_for("Page.loadEventFired", timeout=120)
            for name, expression in (evaluate or {}).items():
                r = pipe.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=s)
                if "exceptionDetails" in r:
                    seen.console.append(f"evaluate {name}: {r['exceptionDetails'].get('text')}")
                seen.values[name] = r.get("result", {}).get("value")
            for name, fragment in (shots or {}).items():
                pipe.call("Runtime.evaluate", {"expression": f"location.hash = {json.dumps(fragment)}; "
                                               "window.scrollTo(0, document.getElementById("
                                               f"{json.dumps(fragment)})?.offsetTop || 0)"}, session=s)
                time.sleep(0.3)
                shot = pipe.call("Page.captureScreenshot", {"format": "png"}, session=s)
                seen.screenshots[name] = base64.b64decode(shot["data"])
            time.sleep(0.2)
            pipe.call("Runtime.evaluate", {"expression": "1"}, session=s)  # drain the events sent meanwhile
        finally:
            pipe.close()
    for m in pipe.events:
        method, p = m.get("method"), m.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            seen.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            seen.console.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            seen.console.append(p["entry"].get("text", ""))
        elif method == "Network.requestWillBeSent":
            seen.requests.append(p.get("request", {}).get("url", ""))
        elif method == "Network.loadingFailed":
            seen.failed.append(p.get("errorText", ""))
    return seen
