"""A real loopback HTTP server serving a temporary folder, counting the requests it answers."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args) -> None:  # keep test output quiet
        pass


class FileServer:
    """Serves `root` on 127.0.0.1 at a free port until stopped."""

    def __init__(self, root: Path) -> None:
        self.root = root
        handler = functools.partial(_CountingHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.requests = []
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        self.running = True

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests

    def stop(self) -> None:
        if self.running:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join()
            self.running = False


@pytest.fixture(autouse=True)
def _no_system_data(monkeypatch, tmp_path):
    # Debian's /usr/share/datasets and the user's cache would answer for the files a test withholds;
    # tests that want a system folder pass system_dirs or patch this themselves.
    monkeypatch.setattr("nonn.data.fetch.SYSTEM_DATA_DIRS", ())
    monkeypatch.setenv("NONN_DATA_DIR", str(tmp_path / "default-cache"))


@pytest.fixture(autouse=True)
def _no_proxy_no_mirror(monkeypatch):
    # A proxy or mirror from the developer's shell would send loopback requests elsewhere.
    for var in (
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "NONN_DATA_MIRROR",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    srv = FileServer(root)
    yield srv
    srv.stop()


@pytest.fixture
def dead_url(tmp_path):
    """The URL of a server that has been stopped: any request to it fails."""
    srv = FileServer(tmp_path)
    srv.stop()
    return srv.url
