"""Shared, generic fixtures.  Area-specific servers and helpers live in each area's own test files."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A throw-away certificate authority (trustme) for loopback TLS servers."""
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_cafile(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The throw-away CA's certificate as a PEM file, for clients that should trust it."""
    path = Path(tmp_path_factory.mktemp("ca")) / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    """A server-side TLS context with a certificate for ``names`` issued by ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


@pytest.fixture(scope="session")
def loopback_tls(tls_ca: trustme.CA) -> ssl.SSLContext:
    """Server TLS context whose certificate is valid for 127.0.0.1 and localhost."""
    return server_context(tls_ca, "127.0.0.1", "localhost")


# -- the scenario suite's own wall time (issue 4: "the whole suite within 15 minutes of CI time") --
_SCENARIO_S: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "scenario" in report.keywords:
        _SCENARIO_S[report.nodeid] = _SCENARIO_S.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _SCENARIO_S:
        total = sum(_SCENARIO_S.values())
        slowest = max(_SCENARIO_S, key=lambda k: _SCENARIO_S[k])
        terminalreporter.write_line(
            f"lab scenario suite: {len(_SCENARIO_S)} tests, {total / 60:.1f} min "
            f"(slowest {slowest.split('::')[-1]} {_SCENARIO_S[slowest]:.0f} s)")


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web_target() -> Iterator[str]:
    """A plain HTTP server on loopback answering every GET with "hello" (end-to-end tests' target)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
