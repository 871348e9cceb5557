"""The http test against real loopback servers: redirects, blockpage, resets, stalls, TLS failures."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trustme
from aiohttp import web

from probe.config import ProbeConfig
from probe.guard import Guard
from probe.probers import http
from probe.probers.base import Context, TargetForbidden
from probe.runner import run_test, validate_params
from tests.conftest import server_context

BLOCKPAGE = "<html><head><title>Access denied</title></head><body>This site is blocked by order of the authority.</body></html>"
LAB = ProbeConfig(allow_ranges=("127.0.0.0/8",))


def make_app() -> web.Application:
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="hello world", headers={"Server": "ta-test", "X-Other": "not kept"})

    async def blockpage(_request: web.Request) -> web.Response:
        return web.Response(status=403, text=BLOCKPAGE, content_type="text/html")

    async def big(_request: web.Request) -> web.Response:
        return web.Response(body=bytes(range(255, -1, -1)) * 12_000)

    async def redirect(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        raise web.HTTPFound("/ok" if n == 0 else f"/r/{n - 1}")

    async def loop(_request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def metadata(_request: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")

    async def dns_query(request: web.Request) -> web.Response:
        return await request.app["doh"](request) if "doh" in request.app else web.Response(status=404)

    app = web.Application()
    app.add_routes([web.get("/ok", ok), web.get("/blockpage", blockpage), web.get("/big", big),
                    web.get("/r/{n}", redirect), web.get("/loop", loop), web.get("/meta", metadata),
                    web.post("/dns-query", dns_query)])
    return app


async def start_app(app: web.Application, context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


@pytest.fixture
async def plain() -> AsyncIterator[str]:
    runner, port = await start_app(make_app())
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def tls(loopback_tls: ssl.SSLContext) -> AsyncIterator[str]:
    runner, port = await start_app(make_app(), loopback_tls)
    yield f"https://127.0.0.1:{port}"
    await runner.cleanup()


Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def raw_server(behaviour: Behaviour) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await behaviour(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def send_rst_on_close(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close -> RST


async def reset_after_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    send_rst_on_close(writer)


async def reset_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
    await writer.drain()
    await asyncio.sleep(0.05)
    send_rst_on_close(writer)


async def close_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
    await writer.drain()


async def stall(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)


async def not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
    await writer.drain()


async def not_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\nplain text, no TLS here\r\n")
    await writer.drain()
    await reader.read(100)


async def measure(url: str, guard: Guard | None = None, **params: Any) -> dict[str, Any]:
    return await run_test("http", url, params, guard=guard or Guard(LAB), timeout_s=10)


async def test_plain_get(plain: str) -> None:
    record = await measure(plain + "/ok")
    keys = record["test_keys"]
    assert record["success"] is True and record["failure"] is None
    assert keys["status"] == 200 and keys["body_length_bytes"] == 11
    assert keys["body_sha256"] == hashlib.sha256(b"hello world").hexdigest()
    assert keys["body_head"] == "hello world" and keys["body_head_encoding"] == "utf-8"
    assert keys["headers"]["server"] == "ta-test" and "x-other" not in keys["headers"]
    hop = keys["redirects"][0]
    assert hop["addresses"] == ["127.0.0.1"] and hop["tls_ms"] is None
    for phase in ("dns_ms", "connect_ms", "first_byte_ms", "transfer_ms"):
        assert isinstance(hop[phase], float) and hop[phase] >= 0, phase


async def test_blockpage_is_recorded_for_fingerprinting(plain: str) -> None:
    record = await measure(plain + "/blockpage", keep_body_bytes=64)
    keys = record["test_keys"]
    assert record["success"] is True and keys["status"] == 403
    assert keys["body_head"] == BLOCKPAGE[:64]
    assert keys["body_sha256"] == hashlib.sha256(BLOCKPAGE.encode()).hexdigest()


async def test_body_is_bounded(plain: str) -> None:
    keys = (await measure(plain + "/big", max_body_bytes=100_000, keep_body_bytes=16))["test_keys"]
    assert keys["body_length_bytes"] == 100_000 and keys["body_truncated"] is True
    assert keys["body_head_encoding"] == "base64"


async def test_redirect_chain_is_followed_and_recorded(plain: str) -> None:
    keys = (await measure(plain + "/r/3"))["test_keys"]
    assert [h["status"] for h in keys["redirects"]] == [302, 302, 302, 302, 200]
    assert keys["redirects"][0]["headers"]["location"] == "/r/2"
    assert keys["final_url"] == plain + "/ok"


async def test_redirect_loop(plain: str) -> None:
    record = await measure(plain + "/loop", max_redirects=3)
    assert record["failure"] == "redirect_loop" and len(record["test_keys"]["redirects"]) == 4


async def test_redirect_to_metadata_is_refused_and_recorded(plain: str) -> None:
    record = await measure(plain + "/meta")
    assert record["success"] is False and record["failure"] == "redirect_forbidden"
    last = record["test_keys"]["redirects"][-1]
    assert last["url"].startswith("http://169.254.169.254/") and "cloud_metadata" in last["refused"]


async def test_forbidden_first_url_cannot_run(plain: str) -> None:
    port = plain.rsplit(":", 1)[1]
    for spelling in ("127.0.0.1", "2130706433", "0x7f000001", "[::ffff:127.0.0.1]"):
        with pytest.raises(TargetForbidden, match="loopback"):
            await measure(f"http://{spelling}:{port}/ok", guard=Guard())


async def test_https_with_phase_timings(tls: str, tls_cafile: str) -> None:
    ctx = Context(guard=Guard(LAB), timeout_s=10, extra={"ssl_cafile": tls_cafile})
    outcome = await http.run(tls + "/ok", validate_params("http", {}), ctx)
    assert outcome.success, outcome
    hop = outcome.test_keys["redirects"][0]
    assert hop["tls_ms"] is not None and hop["tls_ms"] > 0 and hop["connect_ms"] >= 0
    assert hop["tls_version"] in ("TLSv1.2", "TLSv1.3")


async def test_concurrent_https_tests_share_one_context_but_not_their_timings(tls: str, tls_cafile: str,
                                                                             plain: str) -> None:
    ctx = Context(guard=Guard(LAB), timeout_s=10, extra={"ssl_cafile": tls_cafile})
    params = validate_params("http", {})
    urls = [tls + "/ok"] * 6 + [plain + "/ok"] * 3
    outcomes = await asyncio.gather(*(http.run(u, params, ctx) for u in urls))
    for url, outcome in zip(urls, outcomes, strict=True):
        hop = outcome.test_keys["redirects"][0]
        assert outcome.success, outcome
        if url.startswith("https"):
            assert hop["tls_ms"] is not None and hop["tls_version"] in ("TLSv1.2", "TLSv1.3")
        else:  # a plain request running beside TLS handshakes must not pick up their marks
            assert hop["tls_ms"] is None and hop["tls_version"] is None
    assert http.make_ssl_context(True, tls_cafile) is http.make_ssl_context(True, tls_cafile)


async def test_https_trusted_through_the_environment(tls: str, tls_cafile: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", tls_cafile)
    record = await measure(tls + "/ok")
    assert record["success"] is True, record["failure"]


async def test_untrusted_certificate(tls: str) -> None:
    record = await measure(tls + "/ok")
    assert record["failure"] == "tls_certificate_error"


async def test_wrong_name_certificate(tls_ca: trustme.CA, tls_cafile: str) -> None:
    runner, port = await start_app(make_app(), server_context(tls_ca, "wrong.example"))
    try:
        ctx = Context(guard=Guard(LAB), timeout_s=10, extra={"ssl_cafile": tls_cafile})
        outcome = await http.run(f"https://127.0.0.1:{port}/ok", validate_params("http", {}), ctx)
        assert outcome.failure == "tls_certificate_error" and outcome.success is False
        noverify = await http.run(f"https://127.0.0.1:{port}/ok", validate_params("http", {"verify_tls": False}), ctx)
        assert noverify.success is True and noverify.test_keys["status"] == 200
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("behaviour", "scheme", "failure"), [
    (reset_after_request, "http", "connection_reset"),
    (reset_mid_body, "http", "connection_reset"),
    (close_mid_body, "http", "eof_error"),
    (not_http, "http", "http_protocol_error"),
    (not_tls, "https", "tls_error"),
])
async def test_network_failures_are_data(behaviour: Behaviour, scheme: str, failure: str) -> None:
    server, port = await raw_server(behaviour)
    try:
        record = await measure(f"{scheme}://127.0.0.1:{port}/")
    finally:
        server.close()
    assert record["success"] is False and record["failure"] == failure
    assert record["test_keys"]["redirects"][0]["failure"] == failure


async def test_stalled_server_times_out_with_partial_keys() -> None:
    server, port = await raw_server(stall)
    try:
        record = await run_test("http", f"http://127.0.0.1:{port}/", guard=Guard(LAB), timeout_s=0.5)
    finally:
        server.close()
    assert record["failure"] == "timeout" and 0.5 <= record["runtime_s"] < 2
    assert record["test_keys"]["redirects"][0]["addresses"] == ["127.0.0.1"]


async def test_refused_port(plain: str) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    record = await measure(f"http://127.0.0.1:{port}/")
    assert record["failure"] == "connection_refused"


def test_keep_head() -> None:
    assert http.keep_head("добро".encode(), 5) == {"body_head": "до", "body_head_encoding": "utf-8"}
    assert http.keep_head(b"\xff\xfeab", 4) == {"body_head": "//5hYg==", "body_head_encoding": "base64"}
