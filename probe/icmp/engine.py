"""The engine: one non-blocking ICMP socket on the event loop (``add_reader``), paced sending,
kernel receive timestamps, and demultiplexing of replies and errors to the waiting requests.

Timing: the send time is ``time.time_ns()`` taken immediately before ``sendto``; the receive
time is the kernel's ``SO_TIMESTAMPNS`` stamp of the reply (the same clock), so the time the
event loop takes to notice a reply never enters an RTT.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from probe.icmp import packets
from probe.icmp.sockets import (
    IP_RECVERR,
    IP_RECVTTL,
    IPV6_RECVERR,
    SO_TIMESTAMPNS,
    IcmpSocket,
    open_icmp_socket,
)

_CMSG_BYTES = 512
_MAX_READS_PER_WAKEUP = 4096
_IPV6_HOPLIMIT = 52
_IP_TTL = 2


@dataclass
class EchoResult:
    """What became of one echo request."""

    address: str
    rtt_ms: float | None = None        # kernel receive stamp minus send time; None when lost
    ttl: int | None = None             # TTL / hop limit of the reply
    failure: str | None = None         # None for a reply; timeout, host_unreachable, network_unreachable
    icmp_type: int | None = None       # of the ICMP error, when one came back
    icmp_code: int | None = None
    responder: str | None = None       # who sent the ICMP error
    sent_ns: int = 0


class _Sweep:
    def __init__(self, n: int) -> None:
        self.remaining = n
        self.done = asyncio.Event()

    def finish_one(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0:
            self.done.set()


@dataclass
class _Pending:
    result: EchoResult
    number: int
    sweep: _Sweep
    deadline_ns: int


class IcmpEngine:
    """One ICMP socket for one address family, shared by every ping and sweep on this loop."""

    def __init__(self, family: socket.AddressFamily = socket.AF_INET, mode: str = "auto") -> None:
        self.icmp: IcmpSocket = open_icmp_socket(family, mode)
        self.family = family
        self.mode = self.icmp.mode
        self.loop = asyncio.get_running_loop()
        self.ident = os.getpid() & 0xFFFF
        self.token = os.urandom(8)
        self._number = 0
        self._seq = 0
        self._pending: dict[tuple[str, int], _Pending] = {}
        self.closed = False
        self.loop.add_reader(self.icmp.sock.fileno(), self._on_readable)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if not self.loop.is_closed():
                self.loop.remove_reader(self.icmp.sock.fileno())
            self.icmp.sock.close()

    # --- sending ------------------------------------------------------------------------------
    async def sweep(self, addresses: Sequence[str], *, pps: float = 1000.0, timeout_s: float = 1.0,
                    size_bytes: int = 56,
                    pace: Callable[[int], Awaitable[None]] | None = None,
                    admit: Callable[[int, str], bool] | None = None) -> list[EchoResult]:
        """Send one echo to each address in order at ``pps`` packets/s; wait for replies.

        ``pace(n)`` (the guard's packet budget) is awaited before each batch of ``n`` sends;
        ``admit(i, address)`` is asked just before the i-th send (the address guard, checked in the
        pacing gaps): when it says False nothing is sent and that result keeps ``failure=None``
        and ``sent_ns=0``.  Results come back in the order of ``addresses`` (an address may
        repeat: ping count).
        """
        if pps <= 0:
            raise ValueError("pps must be positive")
        results = [EchoResult(a) for a in addresses]
        if not results:
            return results
        sweep = _Sweep(len(results))
        timeout_ns = int(timeout_s * 1e9)
        start = time.monotonic()
        i = 0
        while i < len(results):
            due = min(len(results), int((time.monotonic() - start) * pps) + 1)
            if due > i:
                if pace is not None:
                    await pace(due - i)
                for k in range(i, due):
                    if admit is None or admit(k, results[k].address):
                        self._send(results[k], sweep, size_bytes, timeout_ns)
                    else:
                        sweep.finish_one()
                i = due
            if i < len(results):
                wait = (i / pps) - (time.monotonic() - start)
                await asyncio.sleep(max(0.0, min(wait, 0.001)) if wait > 0.0005 else 0)
        last_deadline = max(r.sent_ns for r in results) + timeout_ns if sweep.remaining else 0
        remaining_s = (last_deadline - time.time_ns()) / 1e9
        if sweep.remaining > 0 and remaining_s > 0:
            try:
                await asyncio.wait_for(sweep.done.wait(), remaining_s + 0.002)
            except TimeoutError:
                pass
        for key, p in list(self._pending.items()):
            if p.sweep is sweep:
                del self._pending[key]
                if p.result.failure is None and p.result.rtt_ms is None:
                    p.result.failure = "timeout"
        return results

    async def ping(self, address: str, *, timeout_s: float = 1.0, size_bytes: int = 56) -> EchoResult:
        return (await self.sweep([address], pps=1e6, timeout_s=timeout_s, size_bytes=size_bytes))[0]

    def _next_seq(self, address: str) -> int:
        for _ in range(65536):
            self._seq = (self._seq + 1) & 0xFFFF
            if (address, self._seq) not in self._pending:
                return self._seq
        raise RuntimeError("65536 requests to one address are in flight")

    def _send(self, result: EchoResult, sweep: _Sweep, size_bytes: int, timeout_ns: int) -> None:
        self._number += 1
        seq = self._next_seq(result.address)
        payload = packets.make_payload(self.token, self._number, size_bytes)
        data = packets.build_echo(self.family, self.ident, seq, payload)
        key = (result.address, seq)
        pending = _Pending(result, self._number, sweep, 0)
        self._pending[key] = pending
        sent = time.time_ns()
        try:
            self.icmp.sock.sendto(data, (result.address, 0))
        except OSError as exc:
            del self._pending[key]
            result.sent_ns = sent
            result.failure = _send_failure(exc)
            sweep.finish_one()
            return
        result.sent_ns = sent
        pending.deadline_ns = sent + timeout_ns

    # --- receiving ----------------------------------------------------------------------------
    def _on_readable(self) -> None:
        sock = self.icmp.sock
        for _ in range(_MAX_READS_PER_WAKEUP):
            try:
                data, anc, _flags, addr = sock.recvmsg(65535, _CMSG_BYTES)
            except BlockingIOError:
                break
            except OSError:
                self._drain_errors()
                continue
            self._handle(data, anc, addr[0])
        if self.mode == "datagram":
            self._drain_errors()

    def _drain_errors(self) -> None:
        for _ in range(_MAX_READS_PER_WAKEUP):
            try:
                data, anc, _flags, addr = self.icmp.sock.recvmsg(65535, _CMSG_BYTES, socket.MSG_ERRQUEUE)
            except OSError:
                return
            ee = b""
            for level, kind, value in anc:
                if (level, kind) in ((socket.IPPROTO_IP, IP_RECVERR), (socket.IPPROTO_IPV6, IPV6_RECVERR)):
                    ee = value
            parsed = packets.parse_errqueue(self.family, data, addr[0], ee)
            if parsed is not None:
                self._match(parsed, time.time_ns())

    def _handle(self, data: bytes, anc: list[tuple[int, int, bytes]], source: str) -> None:
        rx_ns = 0
        ttl: int | None = None
        for level, kind, value in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                sec, nsec = struct.unpack("=qq", value[:16])
                rx_ns = sec * 1_000_000_000 + nsec
            elif (level, kind) in ((socket.IPPROTO_IP, IP_RECVTTL), (socket.IPPROTO_IP, _IP_TTL),
                                   (socket.IPPROTO_IPV6, _IPV6_HOPLIMIT)) and len(value) >= 4:
                ttl = struct.unpack("=i", value[:4])[0]
        if "%" in source:
            source = source.split("%", 1)[0]
        if self.mode == "raw":
            parsed = packets.parse_raw(self.family, data, source)
        else:
            parsed = packets.parse_datagram_reply(self.family, data, source, ttl)
        if parsed is None:
            return
        if parsed.ttl is None:
            parsed.ttl = ttl
        self._match(parsed, rx_ns or time.time_ns())

    def _match(self, parsed: packets.Parsed, rx_ns: int) -> None:
        pending = self._pending.get((parsed.dest, parsed.seq))
        if pending is None:
            return
        if self.mode == "raw" and parsed.ident != self.ident:
            return
        cookie = self.token + struct.pack("!Q", pending.number)
        if parsed.kind == "reply" and parsed.cookie != cookie:
            return
        if parsed.kind == "error" and parsed.cookie and not cookie.startswith(parsed.cookie):
            return
        del self._pending[(parsed.dest, parsed.seq)]
        result = pending.result
        if rx_ns > pending.deadline_ns:      # came back after its timeout: counted as lost
            result.failure = "timeout"
        elif parsed.kind == "reply":
            result.rtt_ms = (rx_ns - result.sent_ns) / 1e6
            result.ttl = parsed.ttl
        else:
            result.failure = packets.failure_of(self.family, parsed.icmp_type, parsed.icmp_code)
            result.icmp_type, result.icmp_code = parsed.icmp_type, parsed.icmp_code
            result.responder = parsed.responder or None
        pending.sweep.finish_one()


def _send_failure(exc: OSError) -> str:
    if exc.errno in (errno.ENETUNREACH, errno.EINVAL):   # EINVAL: a blackhole route
        return "network_unreachable"
    if exc.errno in (errno.EHOSTUNREACH, errno.EACCES, errno.EPERM):
        return "host_unreachable"
    return "unknown_failure: send: " + (exc.strerror or str(exc))


_ENGINES: dict[tuple[int, int, socket.AddressFamily, str], IcmpEngine] = {}


def _netns_id() -> int:
    try:
        return os.stat("/proc/thread-self/ns/net").st_ino
    except OSError:
        return 0


async def shared_engine(family: socket.AddressFamily = socket.AF_INET, mode: str = "auto") -> IcmpEngine:
    """The process's engine for this loop, namespace, family and mode (made on first use)."""
    loop = asyncio.get_running_loop()
    for key, engine in list(_ENGINES.items()):
        if engine.loop.is_closed() or engine.closed:
            engine.close()
            del _ENGINES[key]
    key = (id(loop), _netns_id(), family, mode)
    found = _ENGINES.get(key)
    if found is None or found.loop is not loop:
        found = _ENGINES[key] = IcmpEngine(family, mode)
    return found


def close_engines() -> None:
    """Close every shared engine (tests and the agent's shutdown)."""
    for engine in _ENGINES.values():
        engine.close()
    _ENGINES.clear()
