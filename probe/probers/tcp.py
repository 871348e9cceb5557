"""tcp: open a TCP connection to host:port and time it, or say why it failed.

The target is ``host:port`` (``[v6]:port`` for IPv6 literals).  The host is resolved by the probe
and every address checked by the guard; the first address is connected to.  ``success`` means the
three-way handshake completed; the connection is closed at once without sending data.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from probe.classify import classify
from probe.guard import resolve_checked
from probe.probers.base import Context, Outcome, ParamsError

NAME = "tcp"
VERSION = "1.0.0"
DEFAULT_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class TcpParams:
    connect_timeout_s: float = field(default=10.0, metadata={"help": "seconds to wait for the handshake (0.1-120)"})

    def __post_init__(self) -> None:
        if not 0.1 <= self.connect_timeout_s <= 120:
            raise ParamsError(f"connect_timeout_s must be between 0.1 and 120, not {self.connect_timeout_s}")


def split_host_port(target: str) -> tuple[str, int]:
    """``"example.org:443"`` / ``"[2001:db8::1]:443"`` to (host, port); ParamsError otherwise."""
    host, sep, port_text = target.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ParamsError(f"target {target!r} must be host:port (IPv6 as [address]:port)")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ParamsError(f"target {target!r}: unbalanced [ ] around the IPv6 address")
        host = host[1:-1]
    elif ":" in host:
        raise ParamsError(f"target {target!r}: write an IPv6 address as [address]:port")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ParamsError(f"target {target!r}: port must be 1-65535")
    return host, port


async def run(target: str, params: TcpParams, ctx: Context) -> Outcome:
    host, port = split_host_port(target)
    keys: dict[str, object] = {"host": host, "port": port}
    t0 = time.perf_counter()
    try:
        addresses = await resolve_checked(ctx.guard, host, port)
    except OSError as exc:
        return Outcome(keys, success=False, failure=classify(exc))
    keys["dns_ms"] = round((time.perf_counter() - t0) * 1000, 3)
    keys["address"] = address = addresses[0]
    await ctx.guard.packets(1)
    t1 = time.perf_counter()
    try:
        async with asyncio.timeout(params.connect_timeout_s):
            _reader, writer = await asyncio.open_connection(address, port)
    except Exception as exc:
        keys["failed_after_ms"] = round((time.perf_counter() - t1) * 1000, 3)
        return Outcome(keys, success=False, failure=classify(exc))
    keys["connect_ms"] = round((time.perf_counter() - t1) * 1000, 3)
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return Outcome(keys, success=True)
