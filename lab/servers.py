"""The lab's target services, run inside namespaces: ``python -m lab.servers web|dns ...``.

``web``: an aiohttp server on every address of its namespace: ``/`` (a small page naming the
host), ``/bytes/N`` or ``/download?bytes=N`` (N zero bytes, for throughput tests; at most 64 MiB)
and ``POST /upload`` (read and count).

``dns``: a dnspython answerer for the lab zone (UDP and TCP).  It answers A queries for the names
in its zone file (JSON ``{"name": "address"}``) and NXDOMAIN for anything else.  The in-country
resolver reads a tamper file (JSON ``{"names": {NAME: MODE}}``, MODE ``nxdomain``, ``bogus`` or
``bogon``) whenever it changes, which is how the lab's ``dns_tamper`` action works.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

BOGUS_ADDRESS = "198.19.66.66"      # a lab address where nothing answers (a fake block page host)
BOGON_ADDRESS = "10.10.34.34"       # private space, as Iran's resolvers answered in 2019-2022
TAMPER_MODES = ("nxdomain", "bogus", "bogon")
MAX_BYTES = 64 * 2**20
_CHUNK = b"\0" * 65536


# --- web --------------------------------------------------------------------------------------

async def _page(request: Any) -> Any:
    from aiohttp import web

    host = request.host or "lab"
    return web.Response(text=f"<html><head><title>{host}</title></head><body>{host} works</body></html>\n",
                        content_type="text/html")


async def _bytes(request: Any) -> Any:
    from aiohttp import web

    raw = request.match_info.get("n") or request.query.get("bytes") or request.query.get("size") or "1048576"
    try:
        n = min(int(raw), MAX_BYTES)
    except ValueError:
        return web.Response(status=400, text="bytes must be an integer\n")
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream", "Content-Length": str(n)})
    await resp.prepare(request)
    left = n
    try:
        while left > 0:
            chunk = _CHUNK[:min(left, len(_CHUNK))]
            await resp.write(chunk)
            left -= len(chunk)
        await resp.write_eof()
    except ConnectionError:
        pass  # the client stopped early (a time-capped throughput test): normal here
    return resp


async def _upload(request: Any) -> Any:
    from aiohttp import web

    total = 0
    async for chunk in request.content.iter_chunked(65536):
        total += len(chunk)
    return web.json_response({"received_bytes": total})


def run_web(host: str, ports: list[int]) -> None:
    from aiohttp import web

    app = web.Application()
    app.router.add_get("/bytes/{n}", _bytes)
    app.router.add_get("/download", _bytes)
    app.router.add_post("/upload", _upload)
    app.router.add_get("/{tail:.*}", _page)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        for port in ports:
            await web.TCPSite(runner, host, port).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"web: listening on {host} ports {ports}", flush=True)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


# --- dns --------------------------------------------------------------------------------------

class Answerer:
    """Builds DNS answers from the zone and the (reloaded) tamper file."""

    def __init__(self, zone: dict[str, str], tamper_path: Path | None) -> None:
        self.zone = {k.lower().rstrip("."): v for k, v in zone.items()}
        self.tamper_path = tamper_path
        self._mtime: float | None = None
        self.tamper: dict[str, str] = {}

    def _reload(self) -> None:
        if self.tamper_path is None:
            return
        try:
            mtime = self.tamper_path.stat().st_mtime_ns
        except FileNotFoundError:
            self.tamper, self._mtime = {}, None
            return
        if mtime != self._mtime:
            try:
                names = json.loads(self.tamper_path.read_text()).get("names", {})
                self.tamper = {k.lower().rstrip("."): v for k, v in names.items() if v in TAMPER_MODES}
            except (OSError, ValueError, AttributeError):
                self.tamper = {}
            self._mtime = mtime

    def answer(self, wire: bytes) -> bytes | None:
        import dns.exception
        import dns.flags
        import dns.message
        import dns.rcode
        import dns.rdataclass
        import dns.rdatatype
        import dns.rrset

        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        self._reload()
        resp = dns.message.make_response(query)
        resp.flags |= dns.flags.AA | dns.flags.RA
        if not query.question:
            resp.set_rcode(dns.rcode.FORMERR)
            return resp.to_wire()
        q = query.question[0]
        name = q.name.to_text().lower().rstrip(".")
        mode = self.tamper.get(name)
        address = self.zone.get(name)
        if mode == "nxdomain" or (address is None and mode is None):
            resp.set_rcode(dns.rcode.NXDOMAIN)
        elif q.rdtype == dns.rdatatype.A:
            if mode == "bogus":
                address = BOGUS_ADDRESS
            elif mode == "bogon":
                address = BOGON_ADDRESS
            resp.answer.append(dns.rrset.from_text(q.name, 60, dns.rdataclass.IN, dns.rdatatype.A, str(address)))
        return resp.to_wire()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, answerer: Answerer) -> None:
        self.answerer = answerer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        out = self.answerer.answer(data)
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


def run_dns(host: str, port: int, zone_path: Path, tamper_path: Path | None) -> None:
    answerer = Answerer(json.loads(zone_path.read_text()), tamper_path)

    async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 10), "big")
                out = answerer.answer(await reader.readexactly(size))
                if out is None:
                    break
                writer.write(len(out).to_bytes(2, "big") + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(answerer), local_addr=(host, port))
        server = await asyncio.start_server(tcp, host, port)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"dns: answering on {host}:{port}", flush=True)
        await stop.wait()
        transport.close()
        server.close()

    asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.servers", description="lab target services")
    sub = parser.add_subparsers(dest="what", required=True)
    w = sub.add_parser("web", help="HTTP pages and bytes for throughput")
    w.add_argument("--host", default="0.0.0.0")
    w.add_argument("--port", type=int, action="append", default=None)
    d = sub.add_parser("dns", help="the lab zone's DNS answerer (tamperable)")
    d.add_argument("--host", required=True)
    d.add_argument("--port", type=int, default=53)
    d.add_argument("--zone", required=True, type=Path, help="JSON {name: address}")
    d.add_argument("--tamper", type=Path, default=None, help="JSON {names: {name: nxdomain|bogus|bogon}}")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if args.what == "web":
        run_web(args.host, args.port or [80])
    else:
        run_dns(args.host, args.port, args.zone, args.tamper)
    return 0


if __name__ == "__main__":
    sys.exit(main())
