"""Shared fixtures: an isolated edgecnn cache, a local HTTP server, hardware markers."""

from __future__ import annotations

import http.server
import importlib.util
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edgecnn.telemetry import telemetry_off

telemetry_off()  # no test run reports to OpenVINO's or NNCF's telemetry (tests import openvino too)


def pytest_collection_modifyitems(config, items):
    """Skip hardware tests cleanly where the hardware or its runtime is missing."""
    import torch

    reasons = {}
    if not torch.cuda.is_available():
        reasons["needs_cuda"] = "needs an NVIDIA GPU (torch.cuda.is_available() is False)"
    if importlib.util.find_spec("tensorrt") is None or "needs_cuda" in reasons:
        reasons["needs_tensorrt"] = "needs TensorRT and a GPU (pip install edgecnn[tensorrt])"
    for item in items:
        for marker, why in reasons.items():
            if marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(autouse=True, scope="session")
def _isolated_home_and_threads(tmp_path_factory):
    """Tests never touch the user's cache, and tiny models run fastest on one thread."""
    import torch

    old = os.environ.get("EDGECNN_HOME")
    os.environ["EDGECNN_HOME"] = str(tmp_path_factory.mktemp("edgecnn-home-session"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    if old is None:
        os.environ.pop("EDGECNN_HOME", None)
    else:
        os.environ["EDGECNN_HOME"] = old


@pytest.fixture
def edgecnn_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``EDGECNN_HOME`` (weights, datasets, runs) at an empty temporary directory."""
    home = tmp_path / "edgecnn-home"
    monkeypatch.setenv("EDGECNN_HOME", str(home))
    return home


@dataclass
class _Route:
    body: bytes
    status: int = 200
    content_length: int | None = None  # declared length; more than len(body) simulates a cut-off


@dataclass
class LocalServer:
    """``add(path, body, ...)`` a route, then fetch ``url(path)``; unknown paths give 404."""

    base: str
    routes: dict[str, _Route] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def add(self, path: str, body: bytes, *, status: int = 200, content_length: int | None = None) -> str:
        self.routes[path.lstrip("/")] = _Route(body, status, content_length)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    """A threaded HTTP server on 127.0.0.1 (free port) serving the routes a test adds."""
    server = LocalServer(base="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            server.requests.append(self.path)
            route = server.routes.get(self.path.lstrip("/"))
            if route is None:
                self.send_error(404)
                return
            self.send_response(route.status)
            length = route.content_length if route.content_length is not None else len(route.body)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(route.body)
            if length != len(route.body):
                self.close_connection = True

        def log_message(self, *args):  # keep test output clean
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
