"""Traceroute input and output: Paris-style probes built and dissected with scapy, sent through one
raw socket, answers read from raw ICMP (and TCP) sockets, all in one pass over every destination.

Runs in a worker thread (``run_in_executor``): ``scapy`` is imported here, inside functions, only
when a traceroute runs.  The sockets are opened by :func:`open_sockets` on the *calling* thread,
so they live in the caller's network namespace.

Paris-style flow identifiers (constant per destination for the whole trace):
* udp: fixed source and destination ports and a fixed payload (so a fixed checksum);
* icmp: fixed identifier and a fixed checksum (the sequence number varies and the last two
  payload bytes compensate for it);
* tcp: SYN with fixed ports.
Probes are told apart by the IP identification field (quoted back in ICMP errors) and by the
ICMP sequence number / TCP sequence number for the destination's own answers.
"""

from __future__ import annotations

import select
import socket
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from probe.icmp.doubletree import DESTINATION, TIME_EXCEEDED, UNREACHABLE, Answer, Planner, PlanParams
from probe.icmp.sockets import SO_TIMESTAMPNS

PROTOCOLS = ("icmp", "udp", "tcp")
UDP_PORT = 33434
TCP_PORT = 80
_PAYLOAD = b"tocsin-paris-trace"


@dataclass
class TraceSockets:
    send: socket.socket
    receivers: list[socket.socket]
    sources: dict[str, str]       # destination -> the local address the kernel uses towards it

    def close(self) -> None:
        for s in (self.send, *self.receivers):
            s.close()


def source_address(dest: str) -> str | None:
    """The local address the kernel would use towards ``dest`` (no packet is sent); None: no route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((dest, UDP_PORT))
        except OSError:
            return None
        return str(s.getsockname()[0])


def open_sockets(protocol: str, dests: list[str]) -> TraceSockets:
    """Raw sockets for one run; needs CAP_NET_RAW (PermissionError otherwise)."""
    send = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    receivers = [socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)]
    if protocol == "tcp":
        receivers.append(socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP))
    for r in receivers:
        r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        r.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        r.setblocking(False)
    sources = {d: source_address(d) for d in dests}
    return TraceSockets(send, receivers, {d: a for d, a in sources.items() if a is not None})


def flow_port(dest: str) -> int:
    return 33000 + zlib.crc32(dest.encode()) % 20000


def build_probe(protocol: str, src: str, dest: str, ttl: int, pid: int, dport: int) -> bytes:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.packet import Raw

    ip = IP(src=src, dst=dest, ttl=ttl, id=pid)
    if protocol == "udp":
        return bytes(ip / UDP(sport=flow_port(dest), dport=dport) / Raw(_PAYLOAD))
    if protocol == "tcp":
        return bytes(ip / TCP(sport=flow_port(dest), dport=dport, flags="S", seq=pid, window=1024))
    compensation = struct.pack("!H", 0xFFFF - pid)   # keeps the ICMP checksum constant
    return bytes(ip / ICMP(type=8, id=flow_port(dest) & 0xFFFF, seq=pid) / Raw(_PAYLOAD + compensation))


def dissect(data: bytes, protocol: str) -> tuple[int, str, Answer] | None:
    """(probe id, the probed destination, answer) for one received packet, or None."""
    from scapy.layers.inet import ICMP, IP, TCP, IPerror, TCPerror

    pkt = IP(data)
    src, ttl = pkt.src, pkt.ttl
    if protocol == "tcp" and pkt.haslayer(TCP) and not pkt.haslayer(ICMP):
        tcp = pkt[TCP]
        return (tcp.ack - 1) & 0xFFFF, src, Answer(src, DESTINATION, reply_ttl=ttl)
    if not pkt.haslayer(ICMP):
        return None
    icmp = pkt[ICMP]
    if icmp.type == 0:
        if protocol != "icmp":
            return None
        return icmp.seq, src, Answer(src, DESTINATION, None, 0, 0, ttl)
    if icmp.type not in (3, 11) or not pkt.haslayer(IPerror):
        return None
    quoted = pkt[IPerror]
    wanted = {"icmp": 1, "udp": 17, "tcp": 6}[protocol]
    if quoted.proto != wanted:
        return None
    pid = quoted.id
    if pid == 0 and protocol == "tcp" and pkt.haslayer(TCPerror):
        pid = pkt[TCPerror].seq & 0xFFFF
    dest = quoted.dst
    kind = TIME_EXCEEDED if icmp.type == 11 else DESTINATION if src == dest else UNREACHABLE
    return pid, dest, Answer(src, kind, None, int(icmp.type), int(icmp.code), ttl)


def _receive(sock: socket.socket) -> list[tuple[bytes, int]]:
    out = []
    for _ in range(1024):
        try:
            data, anc, _flags, _addr = sock.recvmsg(65535, 256)
        except BlockingIOError:
            break
        rx = 0
        for level, kind, value in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                sec, nsec = struct.unpack("=qq", value[:16])
                rx = sec * 1_000_000_000 + nsec
        out.append((data, rx or time.time_ns()))
    return out


def run_traces(socks: TraceSockets, dests: list[str], protocol: str, plan: PlanParams, *, dport: int,
               pps: float, deadline_s: float, pace: Callable[[int], None] | None = None) -> tuple[Planner, dict[str, Any]]:
    """Trace every destination in one send/receive pass; returns the finished planner and counters."""
    start = time.monotonic()
    planner = Planner(dests, plan, start)
    probes: dict[int, tuple[str, int, int]] = {}        # pid -> (dest, ttl, sent_ns)
    expiry: dict[int, float] = {}                       # pid -> monotonic time it counts as lost
    next_pid = 0
    sent = 0
    send_budget, budget_at = 0.0, start
    while not planner.done():
        now = time.monotonic()
        if now - start > deadline_s:
            planner.give_up()
            break
        for pid, at in list(expiry.items()):
            if at <= now:
                del expiry[pid]
                dest, ttl, _ = probes[pid]
                planner.lost(dest, ttl, now)
        send_budget = min(max(1.0, pps / 10), send_budget + (now - budget_at) * pps)
        budget_at = now
        ready = planner.ready(now, int(send_budget))
        if ready and pace is not None:
            pace(len(ready))
        for dest, ttl in ready:
            next_pid = next_pid % 65535 + 1
            packet = build_probe(protocol, socks.sources[dest], dest, ttl, next_pid, dport)
            sent_ns = time.time_ns()
            socks.send.sendto(packet, (dest, 0))
            probes[next_pid] = (dest, ttl, sent_ns)
            expiry[next_pid] = time.monotonic() + plan.wait_s
            send_budget -= 1
            sent += 1
        readable, _, _ = select.select(socks.receivers, [], [], 0.005)
        for sock in readable:
            for data, rx_ns in _receive(sock):
                found = dissect(data, protocol)
                if found is None or found[0] not in probes:
                    continue
                pid, dest, answer = found
                pdest, ttl, sent_ns = probes[pid]
                if pdest != dest:
                    continue
                answer.rtt_ms = round((rx_ns - sent_ns) / 1e6, 3)
                expiry.pop(pid, None)
                planner.answered(dest, ttl, answer, time.monotonic())
    return planner, {"probes_sent": sent, "elapsed_s": time.monotonic() - start}
