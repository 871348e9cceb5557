"""The throughput test against a real loopback server that paces its bytes."""

from __future__ import annotations

import asyncio
import gc
import socket
import struct
import warnings
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from probe.config import ProbeConfig
from probe.guard import Guard
from probe.probers import base
from probe.runner import run_test

LAB = ProbeConfig(allow_ranges=("127.0.0.0/8",))
CHUNK = 16_384


async def stream(request: web.Request) -> web.StreamResponse:
    total = int(request.query.get("total", "1000000"))
    rate = float(request.query.get("rate", "0"))            # bytes per second, 0 = as fast as possible
    stall = request.query.get("stall") == "1"
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await resp.prepare(request)
    if stall:
        await asyncio.sleep(30)
    sent = 0
    while sent < total:
        n = min(CHUNK, total - sent)
        await resp.write(b"x" * n)
        sent += n
        if rate:
            await asyncio.sleep(n / rate)
    await resp.write_eof()
    return resp


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.add_routes([web.get("/stream", stream)])
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_stops_at_max_bytes(server: str) -> None:
    record = await run_test("throughput", server + "/stream?total=5000000", {"max_bytes": 1_000_000}, guard=Guard(LAB))
    d = record["test_keys"]["download"]
    assert record["success"] is True and d["stopped_by"] == "max_bytes" and d["bytes"] == 1_000_000
    assert d["samples"][0] == [0.0, 0] and d["samples"][-1][1] == 1_000_000
    assert record["test_keys"]["goodput_bps"] == d["goodput_bps"] > 0


async def test_stops_at_eof(server: str) -> None:
    d = (await run_test("throughput", server + "/stream?total=200000", guard=Guard(LAB)))["test_keys"]["download"]
    assert d["stopped_by"] == "eof" and d["bytes"] == 200_000 and d["status"] == 200


async def test_stops_at_max_seconds_with_samples(server: str) -> None:
    params = {"max_seconds": 1.0, "sample_interval_s": 0.25}
    record = await run_test("throughput", server + "/stream?total=10000000&rate=200000", params, guard=Guard(LAB))
    d = record["test_keys"]["download"]
    assert record["success"] is True and d["stopped_by"] == "max_seconds"
    assert 3 <= len(d["samples"]) <= 7
    times = [t for t, _ in d["samples"]]
    counts = [b for _, b in d["samples"]]
    assert times == sorted(times) and counts == sorted(counts)
    assert 0.8e6 <= d["goodput_bps"] <= 3.2e6        # paced at 1.6 Mbit/s (loose: a shared 2-core machine)


async def test_control_shows_targeted_throttling(server: str) -> None:
    params = {"max_seconds": 0.8, "control_url": server + "/stream?total=10000000&rate=2000000"}
    record = await run_test("throughput", server + "/stream?total=10000000&rate=100000", params, guard=Guard(LAB))
    keys = record["test_keys"]
    assert keys["control"]["url"].endswith("rate=2000000") and keys["control"]["failure"] is None
    assert keys["control_goodput_bps"] > keys["goodput_bps"]
    assert keys["goodput_ratio"] < 0.5


async def test_budget_stops_the_download_then_refuses(server: str) -> None:
    guard = Guard(ProbeConfig(allow_ranges=("127.0.0.0/8",), max_throughput_bytes_per_hour=300_000))
    d = (await run_test("throughput", server + "/stream?total=1000000", guard=guard))["test_keys"]["download"]
    assert d["stopped_by"] == "budget" and d["bytes"] == 300_000
    with pytest.raises(base.TestCannotRun, match="budget"):
        await run_test("throughput", server + "/stream?total=1000", guard=guard)


async def test_stall_after_headers_is_a_timeout(server: str) -> None:
    params = {"max_seconds": 0.5}
    record = await run_test("throughput", server + "/stream?stall=1", params, guard=Guard(LAB))
    assert record["success"] is False and record["failure"] == "timeout"
    assert record["test_keys"]["download"]["stopped_by"] == "max_seconds"


async def test_not_found_is_not_success(server: str) -> None:
    record = await run_test("throughput", server + "/nothing", guard=Guard(LAB))
    assert record["success"] is False and record["test_keys"]["download"]["status"] == 404


async def test_reset_mid_transfer_is_a_failure_with_the_bytes_so_far() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 300_000)
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        record = await run_test("throughput", f"http://127.0.0.1:{port}/", guard=Guard(LAB))
    finally:
        server.close()
    d = record["test_keys"]["download"]
    assert record["success"] is False and record["failure"] == "connection_reset"
    assert d["stopped_by"] == "error" and 0 < d["bytes"] <= 300_000 and d["failure"] == "connection_reset"


async def test_a_download_cut_by_max_seconds_releases_its_connection(server: str) -> None:
    """The response is closed when max_seconds ends the body, not left for the garbage collector
    (which logged "Unclosed connection")."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    loop.set_exception_handler(lambda _loop, context: seen.append(str(context.get("message"))))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            params = {"max_seconds": 0.5}
            record = await run_test("throughput", server + "/stream?total=10000000&rate=200000", params,
                                    guard=Guard(LAB))
            gc.collect()
            await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert record["test_keys"]["download"]["stopped_by"] == "max_seconds"
    unclosed = [str(w.message) for w in caught if "nclosed" in str(w.message)] + [m for m in seen if "nclosed" in m]
    assert unclosed == []
