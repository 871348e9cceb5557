"""The agent's coordinator client: endpoints tried in order (primary first), one that failed tried
last for ``recheck_s`` and then first again, the clock offset learnt from the ``Date`` header.
Real aiohttp servers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from probe.agent.client import Client, Unreachable

SKEW_S = 120.0


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def syn_swallowing_port() -> AsyncIterator[int]:
    """A loopback port whose accept queue is full (never accepted): new SYNs are dropped, as a cut
    link drops them, so a connection attempt gets no answer at all."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            f = socket.socket()
            fillers.append(f)
            f.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                f.connect(("127.0.0.1", port))
        await asyncio.sleep(0.2)
        yield port
    finally:
        for f in fillers:
            f.close()
        lsock.close()


@contextlib.asynccontextmanager
async def echo_server(handler: Callable[[web.Request], Awaitable[web.Response]]) -> AsyncIterator[str]:
    """A real aiohttp server on a loopback port answering ``POST /api/v1/echo`` with ``handler``."""
    app = web.Application()
    app.router.add_post("/api/v1/echo", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        resp = web.json_response({"ok": True})
        # a coordinator whose clock runs SKEW_S ahead of ours
        resp.headers["Date"] = email.utils.formatdate(time.time() + SKEW_S, usegmt=True)
        return resp

    async with echo_server(echo) as url:
        yield url, seen


async def test_falls_back_in_order_and_returns_to_the_primary_after_recheck(server: tuple[str, list]) -> None:
    url, seen = server
    dead = f"http://127.0.0.1:{closed_port()}"
    async with Client([dead, url], Ed25519PrivateKey.generate(), timeout_s=5, recheck_s=0.5) as client:
        answer = await client.post("/api/v1/echo", b"{}")
        assert answer.status == 200 and answer.endpoint == url and answer.doc == {"ok": True}
        assert client.endpoints == [dead, url]          # the configured order is never changed
        assert client.order() == [url, dead]            # the primary that failed goes last for recheck_s
        await client.post("/api/v1/echo", b"{}")
        time.sleep(0.6)
        assert client.order() == [dead, url]            # ... then it is tried first again
    assert len(seen) == 2
    for headers in seen:   # signed on every endpoint it tries
        assert {"X-Tocsin-Probe", "X-Tocsin-Timestamp", "X-Tocsin-Nonce", "X-Tocsin-Signature"} <= set(headers)
    assert seen[0]["X-Tocsin-Nonce"] != seen[1]["X-Tocsin-Nonce"]


async def test_a_primary_that_answers_again_is_used_again(server: tuple[str, list]) -> None:
    url, _ = server
    fallback = f"http://127.0.0.1:{closed_port()}"
    async with Client([url, fallback], Ed25519PrivateKey.generate(), timeout_s=5, recheck_s=60) as client:
        now = time.monotonic()                             # as after a border cut: the primary failed,
        client.failed_at[url], client.down_until[url] = now - 1, now + 60
        client.ok_at[fallback] = now                        # ... the fallback answered since
        assert client.order() == [fallback, url]
        answer = await client.post("/api/v1/echo", b"{}")   # the fallback is dead too: the primary still tried
        assert answer.endpoint == url and url not in client.down_until
        assert client.order() == [url, fallback] and fallback in client.down_until


def test_in_a_blackout_the_primary_stays_first() -> None:
    client = Client(["http://primary", "http://replica"], Ed25519PrivateKey.generate(), recheck_s=60)
    now = time.monotonic()
    client.ok_at = {"http://primary": now - 30, "http://replica": now - 20}       # both answered before the cut
    client.failed_at = {"http://primary": now - 2, "http://replica": now - 1}     # ... neither since
    client.down_until = {e: t + 60 for e, t in client.failed_at.items()}
    assert client.order() == ["http://primary", "http://replica"]
    client.ok_at["http://replica"] = now                    # the replica answers again (a border cut, not a blackout)
    assert client.order() == ["http://replica", "http://primary"]


async def test_a_silent_primary_costs_at_most_fallback_after_s(server: tuple[str, list]) -> None:
    """A primary that takes the connection but never answers (a stale path during a cut)."""
    url, _ = server
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)                                   # the kernel completes handshakes; nobody answers
        primary = f"http://127.0.0.1:{silent.getsockname()[1]}"
        async with Client([primary, url], Ed25519PrivateKey.generate(), timeout_s=20) as client:
            client.fallback_after_s = 0.5
            started = time.monotonic()
            answer = await client.post("/api/v1/echo", b"{}")
            assert answer.endpoint == url and time.monotonic() - started < 5
            assert client.order() == [url, primary]


async def test_clock_offset_from_the_date_header(server: tuple[str, list]) -> None:
    url, _ = server
    async with Client([url], Ed25519PrivateKey.generate(), timeout_s=5) as client:
        await client.post("/api/v1/echo", b"{}")
        # Date has one-second resolution: the estimate is within a second of the real skew
        assert abs(client.clock_offset_s - SKEW_S) <= 1.0


async def test_every_endpoint_down_names_each_one() -> None:
    dead1, dead2 = f"http://127.0.0.1:{closed_port()}", f"http://127.0.0.1:{closed_port()}"
    async with Client([dead1, dead2], Ed25519PrivateKey.generate(), timeout_s=5) as client:
        with pytest.raises(Unreachable) as info:
            await client.post("/api/v1/echo", b"{}")
    assert dead1 in str(info.value) and dead2 in str(info.value)


async def test_a_per_request_timeout_gives_up_on_a_silent_coordinator() -> None:
    """A listener that accepts and never answers (a half-open path): the poll's own short timeout
    ends the attempt, so the next one can go out as soon as the line is back."""
    import asyncio

    accepted: list[asyncio.StreamWriter] = []

    async def hold(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(w)

    srv = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        async with Client([f"http://127.0.0.1:{port}"], Ed25519PrivateKey.generate(), timeout_s=30.0) as c:
            t = time.monotonic()
            with pytest.raises(Unreachable, match="Timeout"):
                await c.post("/api/v1/schedule", b"{}", timeout_s=0.5)
            assert time.monotonic() - t < 5 and accepted
    finally:
        for w in accepted:
            w.close()
        srv.close()
        await srv.wait_closed()


def test_poll_timeout_is_two_poll_intervals_within_bounds() -> None:
    from probe.agent.service import poll_timeout_s

    assert poll_timeout_s(1.5) == 3.0 and poll_timeout_s(10.0) == 20.0 and poll_timeout_s(60.0) == 30.0


async def test_connect_timeout_bounds_an_attempt_whose_syn_gets_no_answer() -> None:
    """A listener whose accept queue is full drops new SYNs (as a cut link does): the attempt ends
    after the client's connect timeout, not after its 30 s total."""
    async with syn_swallowing_port() as port, \
            Client([f"http://127.0.0.1:{port}"], Ed25519PrivateKey.generate(), timeout_s=30.0) as c:
        c.connect_timeout_s = 0.7
        t = time.monotonic()
        with pytest.raises(Unreachable):
            await c.post("/api/v1/schedule", b"{}")
        assert time.monotonic() - t < 5


def test_endpoints_command_adds_a_fallback_after_the_primary(tmp_path, capsys) -> None:
    import argparse

    from probe.agent import identity as ident
    from probe.agent.cli import cmd_endpoints

    ident.ensure_key(tmp_path)
    ident.Identity("p-1", ["http://primary:8470"]).save(tmp_path)

    def call(add: list[str], remove: list[str]) -> int:
        return cmd_endpoints(argparse.Namespace(state=tmp_path, add=add, remove=remove))

    assert call(["http://replica.kz:8470/"], []) == 0
    assert ident.load(tmp_path)[0].endpoints == ["http://primary:8470", "http://replica.kz:8470"]
    assert capsys.readouterr().out.split() == ["http://primary:8470", "http://replica.kz:8470"]
    assert call(["ftp://x"], []) == 2 and "not an http(s) URL" in capsys.readouterr().err
    assert call([], ["http://primary:8470", "http://replica.kz:8470"]) == 2
    assert ident.load(tmp_path)[0].endpoints == ["http://primary:8470", "http://replica.kz:8470"]


async def test_with_a_fallback_a_connection_a_cut_left_dangling_is_never_reused(server: tuple[str, list]) -> None:
    """A primary that answered once on a kept-alive connection and then went dark (a border cut: the
    old connection hangs, new ones fail): the next request opens a new connection, whose failure
    sends it to the fallback at once, instead of waiting on the old one for ``fallback_after_s``."""
    import asyncio

    url, _ = server
    requests: list[bytes] = []
    writers: list[asyncio.StreamWriter] = []

    async def once_then_hang(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        writers.append(w)
        while head := await r.readuntil(b"\r\n\r\n"):
            requests.append(head.split(b"\r\n", 1)[0])
            length = int(next((ln.split(b":")[1] for ln in head.split(b"\r\n")
                               if ln.lower().startswith(b"content-length:")), b"0"))
            await r.readexactly(length)
            if len(requests) == 1:
                w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                        b"Connection: keep-alive\r\n\r\n{}")
                await w.drain()

    srv = await asyncio.start_server(once_then_hang, "127.0.0.1", 0)
    primary = f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
    try:
        async with Client([primary, url], Ed25519PrivateKey.generate(), timeout_s=20) as client:
            client.fallback_after_s = 3.0
            assert (await client.post("/api/v1/echo", b"{}")).endpoint == primary
            srv.close()                                   # no new connections; the old one stays open
            await srv.wait_closed()
            answer = await client.post("/api/v1/echo", b"{}")
            assert answer.endpoint == url
            assert len(requests) == 1                     # nothing was sent on the dangling connection
    finally:
        for w in writers:
            w.close()


async def test_a_lone_endpoint_keeps_its_connection_alive() -> None:
    """With no fallback there is nothing to fail over to: requests share one kept-alive connection."""
    peers: list[object] = []

    async def who(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        return web.json_response({})

    async with echo_server(who) as url:
        async with Client([url], Ed25519PrivateKey.generate(), timeout_s=5) as client:
            for _ in range(3):
                assert (await client.post("/api/v1/echo", b"{}")).status == 200
        assert len(peers) == 3 and len(set(peers)) == 1


def test_a_late_failure_of_the_primary_does_not_send_uploads_back_to_it() -> None:
    """A border cut: the replica answered; then a request that was still in flight to the primary
    fails.  Uploads stay on the replica (no upload waits on a primary that failed lately); polls
    re-probe the primary after ``recheck_s``, and once it answers everything is back on it."""
    primary, replica = "http://primary", "http://replica"
    client = Client([primary, replica], Ed25519PrivateKey.generate(), recheck_s=60)
    now = time.monotonic()
    client.ok_at = {primary: now - 30, replica: now - 2}          # the replica answered after the cut ...
    client.failed_at = {primary: now - 1}                          # ... and the primary failed again since
    client.down_until = {primary: now + 59}
    assert client.order(recheck=False) == [replica, primary]
    assert client.order() == [replica, primary]                    # polls too, until recheck_s is over
    client.down_until[primary] = now - 0.1
    assert client.order() == [primary, replica]                    # then a poll re-probes the primary
    assert client.order(recheck=False) == [replica, primary]       # ... uploads wait for its answer
    client.ok_at[primary] = time.monotonic()
    assert client.order(recheck=False) == [primary, replica]


def test_after_a_blackout_the_endpoint_that_answered_last_before_it_goes_first() -> None:
    """Nothing answered for a while: the last outcome of both is a failure, so neither is demoted."""
    primary, replica = "http://primary", "http://replica"
    client = Client([primary, replica], Ed25519PrivateKey.generate(), recheck_s=60)
    now = time.monotonic()
    client.ok_at = {primary: now - 40, replica: now - 30}
    client.failed_at = {primary: now - 2, replica: now - 1}
    client.down_until = {e: t + 60 for e, t in client.failed_at.items()}
    assert client.order(recheck=False) == [primary, replica]


async def test_when_nothing_answered_the_last_endpoint_gets_the_short_connection_bound() -> None:
    """A blackout: every endpoint failed at its last try.  The last endpoint's connection attempt
    is bounded by ``fallback_connect_s`` too, so a SYN lost in the cut is not waited out for the
    full connection bound after the line is back (the next attempt sends a fresh SYN)."""
    dead = f"http://127.0.0.1:{closed_port()}"
    async with syn_swallowing_port() as port:
        swallowed = f"http://127.0.0.1:{port}"
        async with Client([dead, swallowed], Ed25519PrivateKey.generate(), timeout_s=30.0) as c:
            c.connect_timeout_s, c.fallback_connect_s = 2.0, 0.3
            t = time.monotonic()
            with pytest.raises(Unreachable):
                await c.post("/api/v1/schedule", b"{}")            # not yet known dark: the full bound
            first = time.monotonic() - t
            assert first >= 1.8
            t = time.monotonic()
            with pytest.raises(Unreachable):
                await c.post("/api/v1/schedule", b"{}")            # both failed last time: short bounds
            assert time.monotonic() - t < 1.5
