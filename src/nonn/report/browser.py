"""Open a report in headless Chromium (Debian's `chromium`) over the DevTools protocol: the console errors,
any request that leaves the page, what the page shows, and a screenshot. Used by `nonn report --screenshot`
and by the tests."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ReportError

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                  "--remote-debugging-port=0", "--remote-allow-origins=*")

_PAGE_FACTS = """JSON.stringify({
  tables: [...document.querySelectorAll('table')].map(t => t.id),
  images: [...document.images].filter(i => i.complete && i.naturalWidth > 0).length,
  broken_images: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length,
  accuracy_rows: Math.max(0, document.querySelectorAll('table#accuracy tr').length - 1),
  height: document.documentElement.scrollHeight,
  title: document.title})"""


@dataclass
class PageCheck:
    """What headless Chromium saw of a page."""

    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # URLs fetched other than the page itself and data: URIs
    tables: list[str] = field(default_factory=list)  # ids of the tables
    images: int = 0  # images decoded and shown
    broken_images: int = 0
    accuracy_rows: int = 0
    title: str = ""
    screenshot: Path | None = None


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


class _DevTools:
    """A minimal DevTools-protocol client over one websocket: commands by id, events kept in order."""

    def __init__(self, ws_url: str, timeout: float):
        import websocket
        self.ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self.events: list[dict] = []
        self._next = 0

    def call(self, method: str, **params) -> dict:
        self._next += 1
        self.ws.send(json.dumps({"id": self._next, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._next:
                if "error" in msg:
                    raise ReportError(f"chromium refused {method}: {msg['error'].get('message')}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if any(e.get("method") == method for e in self.events):
            return
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            self.events.append(msg)
            if msg.get("method") == method:
                return
        raise ReportError(f"chromium did not report {method} within {timeout:.0f} s")

    def drain(self, seconds: float) -> None:
        """Collect events for a little longer (late console messages)."""
        import websocket
        self.ws.settimeout(seconds)
        try:
            while True:
                self.events.append(json.loads(self.ws.recv()))
        except (websocket.WebSocketTimeoutException, TimeoutError):
            pass

    def close(self) -> None:
        self.ws.close()


def _devtools_url(user_dir: Path, proc: subprocess.Popen, timeout: float) -> str:
    port_file = user_dir / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
        if proc.poll() is not None:
            raise ReportError(f"chromium exited with code {proc.returncode} before opening its DevTools port")
        if time.monotonic() > deadline:
            raise ReportError(f"chromium opened no DevTools port within {timeout:.0f} s")
        time.sleep(0.1)
    port = port_file.read_text().splitlines()[0].strip()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback never goes through a proxy
    while True:
        targets = json.loads(opener.open(f"http://127.0.0.1:{port}/json/list", timeout=timeout).read())
        pages = [t for t in targets if t.get("type") == "page" and "webSocketDebuggerUrl" in t]
        if pages:
            return pages[0]["webSocketDebuggerUrl"]
        if time.monotonic() > deadline:
            raise ReportError("chromium has no page target to drive")
        time.sleep(0.1)


def _messages(events: list[dict], page_url: str) -> tuple[list[str], list[str]]:
    errors, requests = [], []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            errors.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            errors.append(p["entry"].get("text", ""))
        elif method == "Network.requestWillBeSent":
            url = p.get("request", {}).get("url", "")
            if url != page_url and not url.startswith("data:"):
                requests.append(url)
    return errors, requests


def open_in_chromium(html: str | Path, screenshot: str | Path | None = None, *, width: int = 1100,
                     max_height: int = 1600, timeout: float = 60.0) -> PageCheck:
    """Load `html` (a file) in a fresh headless Chromium; with `screenshot`, save a PNG of the page's top
    (`width` x up to `max_height` CSS pixels). ReportError names the package when Chromium is missing."""
    exe = find_chromium()
    if exe is None:
        raise ReportError("no chromium browser found; install Debian's package: apt-get install chromium")
    page_url = Path(html).resolve().as_uri()
    user_dir = Path(tempfile.mkdtemp(prefix="nonn-chromium-"))
    proc = subprocess.Popen([exe, *CHROMIUM_FLAGS, f"--user-data-dir={user_dir}", f"--window-size={width},900",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HOME": str(user_dir)})
    tools = None
    try:
        tools = _DevTools(_devtools_url(user_dir, proc, timeout), timeout)
        for domain in ("Page", "Runtime", "Log", "Network"):
            tools.call(f"{domain}.enable")
        tools.call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1, mobile=False)
        tools.call("Page.navigate", url=page_url)
        tools.wait_for("Page.loadEventFired", timeout)
        tools.drain(0.5)
        facts = json.loads(tools.call("Runtime.evaluate", expression=_PAGE_FACTS, returnByValue=True)["result"]["value"])
        errors, requests = _messages(tools.events, page_url)
        check = PageCheck(errors, requests, facts["tables"], facts["images"], facts["broken_images"],
                          facts["accuracy_rows"], facts["title"])
        if screenshot is not None:
            height = int(min(max_height, facts["height"]))
            tools.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                       mobile=False)
            shot = tools.call("Page.captureScreenshot", format="png")
            check.screenshot = _save_png(base64.b64decode(shot["data"]), Path(screenshot))
        return check
    finally:
        if tools is not None:
            tools.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(user_dir, ignore_errors=True)


def _save_png(data: bytes, path: Path) -> Path:
    """Write the screenshot as a small palette PNG (text and flat plots survive 256 colours), atomically."""
    import io

    from PIL import Image

    from .. import atomic
    image = Image.open(io.BytesIO(data)).convert("RGB").quantize(colors=256)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    atomic.write_bytes(path, buf.getvalue())
    return path
