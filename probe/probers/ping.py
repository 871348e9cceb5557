"""``ping``: ICMP echo over IPv4 or IPv6 through the process's single shared ICMP socket.

Also :func:`sweep`: one echo to each of many targets through the same socket, paced at a given
packets/s (what the agent runs for a ping task over a target list).  Keys are documented in
``docs/tests/ping.md`` (tested against :data:`KEYS`).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import socket
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from probe.probers.base import Context, Guard, Outcome, ParamsError, TestCannotRun

NAME = "ping"
VERSION = "1.0.0"
DEFAULT_TIMEOUT_S = 30.0

FAMILIES = ("auto", "ipv4", "ipv6")
SOCKET_MODES = ("auto", "raw", "datagram")
KEYS = ("resolved_address", "family", "socket_mode", "packets", "sent", "received", "loss_pct",
        "min_rtt_ms", "median_rtt_ms", "mean_rtt_ms", "max_rtt_ms", "stddev_rtt_ms", "jitter_ms")
FAILURES_USED = ("timeout", "host_unreachable", "network_unreachable", "dns_nxdomain", "dns_no_answer")
PACKET_KEYS = ("seq", "rtt_ms", "ttl", "failure", "icmp_type", "icmp_code", "responder")


@dataclass(frozen=True)
class PingParams:
    count: int = field(default=5, metadata={"help": "echo requests to send (1-100)"})
    interval_s: float = field(default=1.0, metadata={"help": "seconds between requests (0.01-60)"})
    timeout_s: float = field(default=2.0, metadata={"help": "seconds to wait for each reply (0.05-30)"})
    size_bytes: int = field(default=56, metadata={"help": "ICMP payload bytes (16-1452)"})
    family: str = field(default="auto", metadata={"help": "auto (first address of the name), ipv4 or ipv6"})
    socket_mode: str = field(default="auto", metadata={"help": "auto (raw if allowed, else datagram), raw or datagram"})

    def __post_init__(self) -> None:
        _check_number("count", self.count, 1, 100, integer=True)
        _check_number("interval_s", self.interval_s, 0.01, 60)
        _check_number("timeout_s", self.timeout_s, 0.05, 30)
        _check_number("size_bytes", self.size_bytes, 16, 1452, integer=True)
        if self.family not in FAMILIES:
            raise ParamsError(f"family must be one of {', '.join(FAMILIES)}, not {self.family!r}")
        if self.socket_mode not in SOCKET_MODES:
            raise ParamsError(f"socket_mode must be one of {', '.join(SOCKET_MODES)}, not {self.socket_mode!r}")


PARAM_NAMES = tuple(f.name for f in fields(PingParams))


def _check_number(name: str, value: float, low: float, high: float, *, integer: bool = False) -> None:
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ParamsError(f"{name} must be {'an integer' if integer else 'a number'}, not {value!r}")
    if not low <= value <= high:
        raise ParamsError(f"{name} must be between {low} and {high}, not {value}")


def address_literal(text: str) -> tuple[str, socket.AddressFamily] | None:
    """``text`` as a canonical IPv4/IPv6 address and its family, or None when it is not one."""
    text = text.strip("[]")
    for fam in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_ntop(fam, socket.inet_pton(fam, text)), fam
        except OSError:
            continue
    return None


async def resolve(target: str, family: str) -> tuple[str, socket.AddressFamily] | str:
    """The address to ping, or a failure string when the name does not resolve."""
    literal = address_literal(target)
    if literal is not None:
        if (family == "ipv4" and literal[1] == socket.AF_INET6) or (family == "ipv6" and literal[1] == socket.AF_INET):
            raise ParamsError(f"family={family} but {target} is an address of the other family")
        return literal
    want = {"auto": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}[family]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(target, None, family=want, type=socket.SOCK_RAW)
    except socket.gaierror as exc:
        return "dns_nxdomain" if exc.errno in (socket.EAI_NONAME, socket.EAI_NODATA) else "timeout"
    if not infos:
        return "dns_no_answer"
    fam, _, _, _, addr = infos[0]
    return str(addr[0]), socket.AddressFamily(fam)


def summarize(rtts: list[float]) -> dict[str, float | None]:
    """min/median/mean/max/stddev (population) of the RTTs; jitter = mean |difference| of consecutive RTTs."""
    if not rtts:
        return dict.fromkeys(("min_rtt_ms", "median_rtt_ms", "mean_rtt_ms", "max_rtt_ms", "stddev_rtt_ms",
                              "jitter_ms"))
    if len(rtts) == 1:
        r = round(rtts[0], 3)
        return {"min_rtt_ms": r, "median_rtt_ms": r, "mean_rtt_ms": r, "max_rtt_ms": r, "stddev_rtt_ms": 0.0,
                "jitter_ms": 0.0}
    mean = math.fsum(rtts) / len(rtts)
    diffs = [abs(b - a) for a, b in itertools.pairwise(rtts)]
    return {
        "min_rtt_ms": round(min(rtts), 3),
        "median_rtt_ms": round(statistics.median(rtts), 3),
        "mean_rtt_ms": round(mean, 3),
        "max_rtt_ms": round(max(rtts), 3),
        "stddev_rtt_ms": round(math.sqrt(math.fsum((r - mean) ** 2 for r in rtts) / len(rtts)), 3),
        "jitter_ms": round(math.fsum(diffs) / len(diffs), 3) if diffs else 0.0,
    }


def overall_failure(failures: list[str | None], received: int) -> str | None:
    """None when anything came back; else the commonest ICMP error, else ``timeout``."""
    if received:
        return None
    errors = Counter(f for f in failures if f and f != "timeout")
    return errors.most_common(1)[0][0] if errors else "timeout"


async def run(target: str, params: PingParams, ctx: Context) -> Outcome:
    from probe.icmp import NoIcmpSocketError, shared_engine

    resolved = await resolve(target, params.family)
    if isinstance(resolved, str):
        return Outcome({"resolved_address": None}, False, resolved)
    address, fam = resolved
    ctx.guard.check_address(address)
    try:
        engine = await shared_engine(fam, params.socket_mode)
    except NoIcmpSocketError as exc:
        raise TestCannotRun(str(exc)) from exc
    budget = ctx.timeout_s - (params.count - 1) * params.interval_s - 0.05
    timeout_s = max(0.05, min(params.timeout_s, budget))
    results = await engine.sweep([address] * params.count, pps=1.0 / params.interval_s, timeout_s=timeout_s,
                                 size_bytes=params.size_bytes, pace=ctx.guard.packets)
    packets = [{"seq": i, "rtt_ms": None if r.rtt_ms is None else round(r.rtt_ms, 3), "ttl": r.ttl,
                "failure": r.failure, "icmp_type": r.icmp_type, "icmp_code": r.icmp_code,
                "responder": r.responder} for i, r in enumerate(results)]
    rtts = [r.rtt_ms for r in results if r.rtt_ms is not None]
    keys: dict[str, Any] = {
        "resolved_address": address,
        "family": "ipv6" if fam == socket.AF_INET6 else "ipv4",
        "socket_mode": engine.mode,
        "packets": packets,
        "sent": len(results),
        "received": len(rtts),
        "loss_pct": round(100.0 * (len(results) - len(rtts)) / len(results), 2),
        **summarize(rtts),
    }
    failure = overall_failure([r.failure for r in results], len(rtts))
    return Outcome(keys, failure is None, failure)


async def sweep(targets: Sequence[str], *, guard: Guard, pps: float = 1000.0, timeout_s: float = 2.0,
                size_bytes: int = 56, socket_mode: str = "auto") -> list[Outcome | TestCannotRun]:
    """One echo to each target through the shared socket(s), paced at ``pps``; aligned with ``targets``.

    Each entry is an Outcome with the same keys as a ``ping`` with count=1, or the
    :class:`TestCannotRun` (e.g. ``TargetForbidden``) that kept that target from being pinged.
    """
    from probe.icmp import NoIcmpSocketError, shared_engine

    PingParams(count=1, timeout_s=timeout_s, size_bytes=size_bytes, socket_mode=socket_mode)
    out: list[Outcome | TestCannotRun | None] = [None] * len(targets)
    by_family: dict[socket.AddressFamily, list[tuple[int, str]]] = {}
    for i, target in enumerate(targets):
        resolved = address_literal(target)
        if resolved is None:
            found = await resolve(target, "auto")
            if isinstance(found, str):
                out[i] = Outcome({"resolved_address": None}, False, found)
                continue
            resolved = found
        by_family.setdefault(resolved[1], []).append((i, resolved[0]))

    async def one_family(fam: socket.AddressFamily, items: list[tuple[int, str]]) -> None:
        try:
            engine = await shared_engine(fam, socket_mode)
        except NoIcmpSocketError as exc:
            for i, _ in items:
                out[i] = TestCannotRun(str(exc))
            return
        def admit(k: int, address: str) -> bool:
            try:
                guard.check_address(address)        # checked in the pacing gaps, just before sending
            except TestCannotRun as exc:
                out[items[k][0]] = exc
                return False
            return True

        results = await engine.sweep([a for _, a in items], pps=pps, timeout_s=timeout_s,
                                     size_bytes=size_bytes, pace=guard.packets, admit=admit)
        for (i, address), r in zip(items, results, strict=True):
            if out[i] is not None:
                continue
            rtt = None if r.rtt_ms is None else round(r.rtt_ms, 3)
            keys = {"resolved_address": address, "family": "ipv6" if fam == socket.AF_INET6 else "ipv4",
                    "socket_mode": engine.mode,
                    "packets": [{"seq": 0, "rtt_ms": rtt, "ttl": r.ttl, "failure": r.failure,
                                 "icmp_type": r.icmp_type, "icmp_code": r.icmp_code, "responder": r.responder}],
                    "sent": 1, "received": int(rtt is not None), "loss_pct": 0.0 if rtt is not None else 100.0,
                    **summarize([rtt] if rtt is not None else [])}
            failure = overall_failure([r.failure], int(rtt is not None))
            out[i] = Outcome(keys, failure is None, failure)

    await asyncio.gather(*(one_family(f, items) for f, items in by_family.items()))
    return [o if o is not None else TestCannotRun("not pinged") for o in out]
