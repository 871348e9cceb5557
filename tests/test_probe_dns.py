"""The dns test against a real DNS server on loopback (UDP, TCP, DoT, DoH), written with dnspython."""

from __future__ import annotations

import asyncio
import ssl
import struct
import typing
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest
from aiohttp import web

from probe.config import ProbeConfig
from probe.guard import Guard
from probe.probers import dns as dns_test
from probe.probers.base import Context, ParamsError, TargetForbidden
from probe.runner import run_test, validate_params

LAB = ProbeConfig(allow_ranges=("127.0.0.0/8",))
RECORDS: dict[tuple[str, str], list[str]] = {
    ("ok.test.", "A"): ["93.184.216.34"],
    ("ok.test.", "AAAA"): ["2606:2800:220:1:248:1893:25c8:1946"],
    ("bogon.test.", "A"): ["93.184.216.34", "10.10.34.35"],
    ("bogon.test.", "AAAA"): ["::ffff:10.1.2.3"],
    ("lab.test.", "A"): ["198.18.0.5"],
    ("big.test.", "TXT"): [f'"{i:02d} ' + "t" * 60 + '"' for i in range(40)],
}
RCODES = {"nx.test.": dns.rcode.NXDOMAIN, "fail.test.": dns.rcode.SERVFAIL, "refused.test.": dns.rcode.REFUSED}


@dataclass
class Server:
    port: int = 0
    tls_port: int = 0
    doh_url: str = ""
    seen: list[tuple[str, str]] = field(default_factory=list)       # (transport, name)

    def answer(self, wire: bytes, transport: str) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name, rdtype = question.name.to_text(), dns.rdatatype.to_text(question.rdtype)
        self.seen.append((transport, name))
        if name == "slow.test.":
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        if name in RCODES:
            response.set_rcode(RCODES[name])
        values = RECORDS.get((name, rdtype), [])
        if values:
            response.answer.append(dns.rrset.from_text_list(name, 300, "IN", rdtype, values))
        out = response.to_wire()
        if transport == "udp" and len(out) > 512:
            response.answer = []
            response.flags |= dns.flags.TC
            out = response.to_wire()
        return out


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        out = self.server.answer(data, "udp")
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


def stream_handler(server: Server, transport: str) -> Any:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                out = server.answer(await reader.readexactly(size), transport)
                if out is None:
                    await asyncio.sleep(5)
                    return
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
    return handle


@pytest.fixture
async def server(loopback_tls: ssl.SSLContext) -> AsyncIterator[Server]:
    srv = Server()
    loop = asyncio.get_running_loop()
    closers: list[Any] = []
    for _ in range(5):  # UDP and TCP on the same port number
        udp, _proto = await loop.create_datagram_endpoint(lambda: UdpProtocol(srv), local_addr=("127.0.0.1", 0))
        srv.port = udp.get_extra_info("sockname")[1]
        try:
            tcp = await asyncio.start_server(stream_handler(srv, "tcp"), "127.0.0.1", srv.port)
            break
        except OSError:
            udp.close()
    else:
        pytest.fail("no port free for UDP and TCP at once")
    dot = await asyncio.start_server(stream_handler(srv, "dot"), "127.0.0.1", 0, ssl=loopback_tls)
    srv.tls_port = dot.sockets[0].getsockname()[1]

    async def doh(request: web.Request) -> web.Response:
        out = srv.answer(await request.read(), "doh")
        return web.Response(body=out, content_type="application/dns-message")

    app = web.Application()
    app.add_routes([web.post("/dns-query", doh)])
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=loopback_tls).start()
    srv.doh_url = f"https://127.0.0.1:{runner.addresses[0][1]}/dns-query"
    closers += [udp.close, tcp.close, dot.close]
    yield srv
    for close in closers:
        close()
    await runner.cleanup()


async def ask(srv: Server, name: str, guard: Guard | None = None, **params: Any) -> dict[str, Any]:
    params = {"resolver": "127.0.0.1", "port": srv.port, **params}
    return await run_test("dns", name, params, guard=guard or Guard(LAB), timeout_s=5)


async def test_answer_over_udp(server: Server) -> None:
    record = await ask(server, "ok.test")
    keys = record["test_keys"]
    assert record["success"] is True and record["failure"] is None
    assert keys["rcode"] == "NOERROR" and keys["resolver_address"] == "127.0.0.1" and keys["port"] == server.port
    assert keys["answers"] == [{"name": "ok.test.", "type": "A", "ttl": 300, "value": "93.184.216.34"}]
    assert keys["response_time_ms"] > 0 and keys["retried_over_tcp"] is False and keys["bogon_answers"] == []


async def test_aaaa_over_tcp(server: Server) -> None:
    record = await ask(server, "ok.test", query_type="AAAA", transport="tcp")
    assert record["success"] is True and record["test_keys"]["answers"][0]["type"] == "AAAA"
    assert server.seen == [("tcp", "ok.test.")]


@pytest.mark.parametrize(("name", "rcode", "failure"), [
    ("nx.test", "NXDOMAIN", "dns_nxdomain"), ("fail.test", "SERVFAIL", "dns_servfail"),
    ("refused.test", "REFUSED", "dns_refused"), ("empty.test", "NOERROR", "dns_no_answer"),
])
async def test_resolver_failures(server: Server, name: str, rcode: str, failure: str) -> None:
    record = await ask(server, name)
    assert record["success"] is False and record["failure"] == failure
    assert record["test_keys"]["rcode"] == rcode


async def test_bogon_answers_are_flagged(server: Server) -> None:
    record = await ask(server, "bogon.test")
    keys = record["test_keys"]
    assert record["success"] is False and record["failure"] == "dns_bogon_answer"
    assert sorted(a["value"] for a in keys["answers"]) == ["10.10.34.35", "93.184.216.34"]
    assert keys["bogon_answers"] == [{"value": "10.10.34.35", "reason": "private"}]
    six = (await ask(server, "bogon.test", query_type="AAAA"))["test_keys"]
    assert six["bogon_answers"] == [{"value": "::ffff:10.1.2.3", "reason": "private"}]


async def test_allow_ranges_are_not_bogons(server: Server) -> None:
    assert (await ask(server, "lab.test"))["failure"] == "dns_bogon_answer"
    lab = Guard(ProbeConfig(allow_ranges=("127.0.0.0/8", "198.18.0.0/15")))
    assert (await ask(server, "lab.test", guard=lab))["success"] is True


async def test_truncation_retries_over_tcp(server: Server) -> None:
    record = await ask(server, "big.test", query_type="TXT")
    keys = record["test_keys"]
    assert record["success"] is True and keys["retried_over_tcp"] is True and len(keys["answers"]) == 40
    assert server.seen == [("udp", "big.test."), ("tcp", "big.test.")]


async def test_no_answer_is_a_timeout(server: Server) -> None:
    record = await ask(server, "slow.test", query_timeout_s=0.3)
    assert record["failure"] == "timeout" and record["test_keys"]["response_time_ms"] >= 300


async def test_resolver_is_guarded(server: Server) -> None:
    for spelling in ("127.0.0.1", "2130706433", "localhost"):
        with pytest.raises(TargetForbidden, match="loopback"):
            await ask(server, "ok.test", guard=Guard(), resolver=spelling)


async def test_dns_over_tls(server: Server, tls_cafile: str) -> None:
    params = validate_params("dns", {"resolver": "127.0.0.1", "port": server.tls_port, "transport": "dot",
                                     "tls_server_name": "127.0.0.1"})
    outcome = await dns_test.run("ok.test", params, Context(Guard(LAB), 5, extra={"ssl_cafile": tls_cafile}))
    assert outcome.success and outcome.test_keys["tls_verified"] is True
    unverified = await ask(server, "ok.test", transport="dot", port=server.tls_port)
    assert unverified["success"] is True and unverified["test_keys"]["tls_verified"] is False
    wrong = await dns_test.run("ok.test", validate_params("dns", {**vars(params), "tls_server_name": "other.example"}),
                               Context(Guard(LAB), 5, extra={"ssl_cafile": tls_cafile}))
    assert wrong.failure == "tls_certificate_error"
    assert [t for t, _ in server.seen] == ["dot", "dot"]


async def test_dns_over_https(server: Server, tls_cafile: str) -> None:
    params = validate_params("dns", {"resolver": server.doh_url, "transport": "doh", "query_type": "AAAA"})
    outcome = await dns_test.run("ok.test", params, Context(Guard(LAB), 5, extra={"ssl_cafile": tls_cafile}))
    assert outcome.success, outcome
    keys = outcome.test_keys
    assert keys["http_status"] == 200 and keys["resolver_address"] == "127.0.0.1"
    assert keys["answers"][0]["value"] == "2606:2800:220:1:248:1893:25c8:1946"
    assert server.seen == [("doh", "ok.test.")]
    with pytest.raises(TargetForbidden):
        await dns_test.run("ok.test", params, Context(Guard(), 5, extra={"ssl_cafile": tls_cafile}))


@pytest.mark.parametrize(("params", "message"), [
    ({"query_type": "BOGUS"}, "not a DNS record type"),
    ({"transport": "doh"}, "needs resolver set to an https:// URL"),
    ({"transport": "smoke"}, "transport must be one of"),
    ({"resolver": "https://x/dns-query"}, "must be an address or host name"),
    ({"port": 0}, "port must be 1-65535"),
])
def test_params_errors(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        validate_params("dns", params)


def test_system_resolver_reads_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("search lan\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n")
    assert dns_test.system_resolver(str(conf)) == "192.0.2.53"
    conf.write_text("search lan\n")
    with pytest.raises(OSError, match="no system resolver"):
        dns_test.system_resolver(str(conf))
