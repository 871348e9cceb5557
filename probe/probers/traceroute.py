"""``traceroute``: Paris-style traceroute over ICMP, UDP or TCP SYN (IPv4), one or many destinations.

Importing this module does not import scapy (~80 MB, ~1 s): the probing code in
``probe.icmp.tracer`` imports it inside its functions, in a worker thread.  Many destinations are
traced in ONE send/receive pass (:func:`trace_many`) with Doubletree stop sets and per-responder
pacing (``probe.icmp.doubletree``), so that routers with the kernel's default ICMP rate limit
still answer for every path.  Keys: ``docs/tests/traceroute.md`` (tested against :data:`KEYS`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from probe.probers.base import Context, Guard, Outcome, ParamsError, TestCannotRun

NAME = "traceroute"
VERSION = "1.0.0"
DEFAULT_TIMEOUT_S = 120.0

PROTOCOLS = ("icmp", "udp", "tcp")
KEYS = ("protocol", "resolved_address", "dst_port", "hops", "hop_count",
        "last_responding_hop", "last_responding_address", "destination_reached", "complete", "probes_sent")
FAILURES_USED = ("timeout", "host_unreachable", "network_unreachable", "dns_nxdomain")
HOP_KEYS = ("ttl", "address", "rtt_ms", "icmp_type", "icmp_code", "kind", "source")
NEEDS_RAW = ("traceroute needs raw sockets (CAP_NET_RAW): run the probe as root or "
             "setcap cap_net_raw+ep $(readlink -f $(which python3))")


@dataclass(frozen=True)
class TracerouteParams:
    protocol: str = field(default="icmp", metadata={"help": "icmp (echo), udp or tcp (SYN)"})
    dst_port: int = field(default=0, metadata={"help": "udp/tcp destination port; 0 = 33434 for udp, 80 for tcp"})
    max_ttl: int = field(default=30, metadata={"help": "highest TTL probed (1-64)"})
    attempts: int = field(default=3, metadata={"help": "probes per hop before it counts as silent (1-10)"})
    wait_s: float = field(default=1.0, metadata={"help": "wait for an answer to one probe (0.05-10)"})
    gap_limit: int = field(default=3, metadata={"help": "silent hops in a row that end a trace that never reached its target (1-10)"})
    responder_pps: float = field(default=1.0, metadata={"help": "probes per second per expected responder after the burst (0.1-100)"})
    responder_burst: int = field(default=5, metadata={"help": "probes a responder may get at once (1-100)"})
    pps: float = field(default=200.0, metadata={"help": "all probes of the run, per second (1-10000)"})
    stop_sets: bool = field(default=True, metadata={"help": "Doubletree: stop at hops already known from other destinations"})

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ParamsError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {self.protocol!r}")
        limits: tuple[tuple[str, float, float, bool], ...] = (
            ("dst_port", 0, 65535, True), ("max_ttl", 1, 64, True), ("attempts", 1, 10, True),
            ("wait_s", 0.05, 10, False), ("gap_limit", 1, 10, True), ("responder_pps", 0.1, 100, False),
            ("responder_burst", 1, 100, True), ("pps", 1, 10000, False))
        for name, low, high, integer in limits:
            value: float = getattr(self, name)
            kinds: tuple[type, ...] = (int,) if integer else (int, float)
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise ParamsError(f"{name} must be {'an integer' if integer else 'a number'}, not {value!r}")
            if not low <= value <= high:
                raise ParamsError(f"{name} must be between {low} and {high}, not {value}")
        if not isinstance(self.stop_sets, bool):
            raise ParamsError(f"stop_sets must be true or false, not {self.stop_sets!r}")

    @property
    def port(self) -> int:
        return self.dst_port or (33434 if self.protocol == "udp" else 80 if self.protocol == "tcp" else 0)


PARAM_NAMES = tuple(f.name for f in fields(TracerouteParams))


async def _resolve(target: str) -> str | Outcome:
    try:
        ip = ipaddress.ip_address(target.strip("[]"))
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(target, None, family=socket.AF_INET)
        except socket.gaierror as exc:
            nx = exc.errno in (socket.EAI_NONAME, socket.EAI_NODATA)
            return Outcome({"resolved_address": None}, False, "dns_nxdomain" if nx else "timeout")
        return str(infos[0][4][0])
    if ip.version != 4:
        raise TestCannotRun("traceroute is IPv4-only in this version")
    return str(ip)


async def trace_many(targets: Sequence[str], params: TracerouteParams, *, guard: Guard,
                     timeout_s: float = 120.0) -> list[Outcome | TestCannotRun]:
    """Trace every target in one pass (shared stop sets and pacing); aligned with ``targets``."""
    from probe.icmp import tracer
    from probe.icmp.doubletree import PlanParams

    out: list[Outcome | TestCannotRun | None] = [None] * len(targets)
    addresses: dict[str, list[int]] = {}
    for i, target in enumerate(targets):
        try:
            resolved = await _resolve(target)
            if isinstance(resolved, Outcome):
                out[i] = resolved
                continue
            guard.check_address(resolved)
        except TestCannotRun as exc:
            out[i] = exc
            continue
        addresses.setdefault(resolved, []).append(i)
    if addresses:
        dests = list(addresses)
        try:
            socks = tracer.open_sockets(params.protocol, dests)   # on this thread: this namespace
        except PermissionError as exc:
            raise TestCannotRun(NEEDS_RAW) from exc
        loop = asyncio.get_running_loop()

        def pace(n: int) -> None:
            asyncio.run_coroutine_threadsafe(guard.packets(n), loop).result(timeout_s)

        plan = PlanParams(max_ttl=params.max_ttl, attempts=params.attempts, wait_s=params.wait_s,
                          gap_limit=params.gap_limit, responder_pps=params.responder_pps,
                          responder_burst=float(params.responder_burst), stop_sets=params.stop_sets)
        try:
            planner, _counters = await loop.run_in_executor(
                None, lambda: tracer.run_traces(socks, list(socks.sources), params.protocol, plan, dport=params.port,
                                                pps=params.pps, deadline_s=max(0.1, timeout_s - 0.2), pace=pace))
        finally:
            socks.close()
        for dest, indexes in addresses.items():
            outcome = _outcome(planner, dest, params) if dest in socks.sources else _no_route(dest, params)
            for i in indexes:
                out[i] = outcome
    return [o if o is not None else TestCannotRun("not traced") for o in out]


def _no_route(dest: str, params: TracerouteParams) -> Outcome:
    """The probe's own stack has no route to ``dest``: nothing was sent."""
    keys: dict[str, Any] = {
        "protocol": params.protocol, "resolved_address": dest, "dst_port": params.port or None, "hops": [],
        "hop_count": None, "last_responding_hop": None, "last_responding_address": None,
        "destination_reached": False, "complete": True, "probes_sent": 0}
    return Outcome(keys, False, "network_unreachable")


def _outcome(planner: Any, dest: str, params: TracerouteParams) -> Outcome:
    trace = planner.traces[dest]
    hops = []
    for ttl, hop in planner.hop_list(dest):
        if hop is None:
            hops.append({"ttl": ttl, "address": None, "rtt_ms": None, "icmp_type": None, "icmp_code": None,
                         "kind": None, "source": "probed"})
        else:
            hops.append({"ttl": ttl, "address": hop.address, "rtt_ms": hop.rtt_ms, "icmp_type": hop.icmp_type,
                         "icmp_code": hop.icmp_code, "kind": hop.kind, "source": hop.source})
    answered = [h for h in hops if h["address"] is not None]
    last = answered[-1] if answered else None
    keys = {
        "protocol": params.protocol,
        "resolved_address": dest,
        "dst_port": params.port or None,
        "hops": hops,
        "hop_count": trace.dist,
        "last_responding_hop": last["ttl"] if last else None,
        "last_responding_address": last["address"] if last else None,
        "destination_reached": trace.reached,
        "complete": trace.complete,
        "probes_sent": trace.probes_sent,
    }
    if trace.reached:
        return Outcome(keys, True, None)
    if last is not None and last["kind"] == "unreachable":
        code = last["icmp_code"]
        return Outcome(keys, False, "network_unreachable" if code in (0, 6, 11) else "host_unreachable")
    return Outcome(keys, False, "timeout")


async def run(target: str, params: TracerouteParams, ctx: Context) -> Outcome:
    """Trace one destination (the same pass as :func:`trace_many`, with one destination)."""
    result = (await trace_many([target], params, guard=ctx.guard, timeout_s=ctx.timeout_s))[0]
    if isinstance(result, TestCannotRun):
        raise result
    return result
