"""The probe's address guard and its local caps (packets per second, concurrent tests, bytes/hour).

The guard is checked on *resolved* addresses: after every name resolution and again for every
redirect, so a name that points at the volunteer's router, or a redirect to the cloud metadata
service, is refused whatever it is called.  Every spelling of an address is understood: IPv4 in
decimal, hex, octal and short forms (as the C library's ``inet_aton`` reads them), and IPv4
embedded in IPv6 (mapped, compatible, 6to4, NAT64, Teredo).  Rules are in :data:`RULES`
(documented in ``docs/probe-cli.md``); the local ``allow_ranges`` lift chosen ranges and
``allow_private`` (``--allow-private``, one run only) lifts the address rules altogether.
Make one :class:`Guard` per process: its caps are meant to be shared by everything it runs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterable

from probe.config import ProbeConfig
from probe.probers.base import Guard as GuardProtocol
from probe.probers.base import TargetForbidden

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# (rule, range).  The first match names the reason; metadata addresses come before their ranges.
_RULE_TEXT: tuple[tuple[str, str], ...] = (
    ("cloud_metadata", "169.254.169.254/32"), ("cloud_metadata", "169.254.170.2/32"),
    ("cloud_metadata", "100.100.100.200/32"), ("cloud_metadata", "fd00:ec2::254/128"),
    ("unspecified", "0.0.0.0/8"), ("private", "10.0.0.0/8"), ("cgnat", "100.64.0.0/10"),
    ("loopback", "127.0.0.0/8"), ("link_local", "169.254.0.0/16"), ("private", "172.16.0.0/12"),
    ("reserved", "192.0.0.0/24"), ("documentation", "192.0.2.0/24"), ("reserved", "192.88.99.0/24"),
    ("private", "192.168.0.0/16"), ("benchmarking", "198.18.0.0/15"), ("documentation", "198.51.100.0/24"),
    ("documentation", "203.0.113.0/24"), ("multicast", "224.0.0.0/4"), ("broadcast", "255.255.255.255/32"),
    ("reserved", "240.0.0.0/4"),
    ("unspecified", "::/128"), ("loopback", "::1/128"), ("discard", "100::/64"),
    ("reserved", "2001:10::/28"), ("reserved", "2001:20::/28"), ("documentation", "2001:db8::/32"),
    ("documentation", "3fff::/20"), ("private", "fc00::/7"), ("link_local", "fe80::/10"),
    ("reserved", "fec0::/10"), ("multicast", "ff00::/8"),
)
RULES: tuple[tuple[str, IPNetwork], ...] = tuple((name, ipaddress.ip_network(net)) for name, net in _RULE_TEXT)
RULE_NAMES: tuple[str, ...] = tuple(dict.fromkeys(name for name, _ in RULES))

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_COMPAT = ipaddress.ip_network("::/96")


def parse_ip(text: str) -> IPAddress | None:
    """The address ``text`` spells, in any form; None when it is a host name."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]  # IPv6 zone index
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if ":" in text or not text or not all(c.isalnum() or c == "." for c in text):
        return None
    try:
        # inet_aton understands "2130706433", "0x7f000001", "0177.0.0.1", "127.1".
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def embedded_ipv4(addr: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, compatible, 6to4, NAT64, Teredo)."""
    found: list[ipaddress.IPv4Address] = []
    if addr.ipv4_mapped is not None:
        found.append(addr.ipv4_mapped)
    if addr.sixtofour is not None:
        found.append(addr.sixtofour)
    if addr.teredo is not None:
        found.extend(addr.teredo)
    if any(addr in net for net in _NAT64) or (addr in _COMPAT and int(addr) > 1):
        found.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    return found


def forbidden_reason(address: str | IPAddress, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Why the guard refuses ``address`` (``"loopback 127.0.0.1"``), or None when it may be measured."""
    addr = parse_ip(address) if isinstance(address, str) else address
    if addr is None:
        return f"not an IP address: {address!r}"
    allowed = tuple(allowed)
    candidates: list[IPAddress] = [addr]
    if isinstance(addr, ipaddress.IPv6Address):
        inner = embedded_ipv4(addr)
        if inner:
            candidates = [addr, *inner]
    for cand in candidates:
        if any(cand.version == net.version and cand in net for net in allowed):
            continue
        for name, net in RULES:
            if cand.version == net.version and cand in net:
                shown = cand if cand is addr else f"{cand} (inside {addr})"
                return f"{name} {shown}"
        if cand is addr and len(candidates) == 1 and not cand.is_global:
            return f"reserved {cand}"
    return None


class TokenBucket:
    """Packets per second for the whole process (GCRA: a burst of one second, then the rate)."""

    def __init__(self, rate_per_s: float, burst: float | None = None) -> None:
        self.rate = float(rate_per_s)
        self.burst = float(burst if burst is not None else rate_per_s)
        self._next = 0.0
        self._lock = threading.Lock()

    def delay_for(self, n: int) -> float:
        """Take ``n`` packets from the budget; return how long the caller must wait before sending."""
        with self._lock:
            now = time.monotonic()
            self._next = max(self._next, now - self.burst / self.rate) + n / self.rate
            return max(0.0, self._next - now)


class ByteBudget:
    """Bytes per sliding hour (throughput tests)."""

    WINDOW_S = 3600.0

    def __init__(self, bytes_per_hour: int) -> None:
        self.limit = bytes_per_hour
        self._grants: collections.deque[tuple[float, int]] = collections.deque()
        self._used = 0
        self._lock = threading.Lock()

    def used(self) -> int:
        with self._lock:
            self._expire(time.monotonic())
            return self._used

    def reserve(self, n: int) -> int:
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            granted = max(0, min(n, self.limit - self._used))
            if granted:
                self._grants.append((now, granted))
                self._used += granted
            return granted

    def _expire(self, now: float) -> None:
        while self._grants and self._grants[0][0] <= now - self.WINDOW_S:
            self._used -= self._grants.popleft()[1]


class Guard(GuardProtocol):
    """The guard and caps of one probe process, configured by the volunteer's ``probe.toml``."""

    def __init__(self, config: ProbeConfig | None = None, *, allow_private: bool = False) -> None:
        self.config = config or ProbeConfig()
        self.allow_private = allow_private
        self.allow_networks: tuple[IPNetwork, ...] = self.config.networks()
        self.bucket = TokenBucket(self.config.max_pps)
        self.bytes = ByteBudget(self.config.max_throughput_bytes_per_hour)
        self._slots: asyncio.Semaphore | None = None

    def check_address(self, address: str) -> None:
        if self.allow_private:
            if parse_ip(address) is None:
                raise TargetForbidden(f"not an IP address: {address!r}")
            return
        reason = forbidden_reason(address, self.allow_networks)
        if reason is not None:
            raise TargetForbidden(f"target refused by the address guard: {reason}")

    async def packets(self, n: int) -> None:
        wait = self.bucket.delay_for(n)
        if wait > 0:
            await asyncio.sleep(wait)

    def reserve_bytes(self, n: int) -> int:
        return self.bytes.reserve(n)

    @contextlib.asynccontextmanager
    async def test_slot(self) -> AsyncIterator[None]:
        """One of ``max_concurrent_tests`` slots, held while a test runs (the runner takes it)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.config.max_concurrent_tests)
        async with self._slots:
            yield


async def resolve_checked(guard: GuardProtocol, host: str, port: int = 0) -> list[str]:
    """Resolve ``host`` and check every address with the guard; a literal in any spelling is not looked up.

    Raises TargetForbidden when any address is refused (a name that mixes public and private
    answers is refused whole), OSError (socket.gaierror) when the name does not resolve.
    """
    literal = parse_ip(host)
    if literal is not None:
        guard.check_address(str(literal))
        return [str(literal)]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        guard.check_address(address)
    return addresses
