"""A small reusable test topology helper: network namespaces, veths, routers, many /32 targets.

Every name a :class:`Lab` makes starts with ``tb`` plus the lab's tag, so that :meth:`Lab.clean`
(also run at the start of every lab, which removes what a crashed run left behind) deletes
exactly what this helper made and nothing else: namespaces ``tb-<tag>-<name>`` and veths
``tb<tag><n>a``/``tb<tag><n>b`` (veths live only inside namespaces, so deleting a namespace
deletes its veths; any veth stranded in the host namespace by a crash is deleted by name).

Safety: the host namespace gets the lab blackhole route (``lab/host-guard.sh``) before anything
is built, no namespace is ever given a route to the host's network, and only addresses in
198.18.0.0/15 are used (this helper refuses others).
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAB_V4 = ipaddress.ip_network("198.18.0.0/15")
LAB_V6 = ipaddress.ip_network("2001:db8::/32")       # documentation range, used only inside namespaces
_CLONE_NEWNET = 0x40000000


def is_root() -> bool:
    return os.geteuid() == 0


def sh(*args: str, input_text: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), input=input_text, capture_output=True, text=True, check=check, timeout=60)


def host_guard() -> None:
    sh("bash", str(REPO / "lab" / "host-guard.sh"))


def _check_lab_address(addr: str) -> None:
    ip = ipaddress.ip_interface(addr).ip
    if ip not in LAB_V4 and ip not in LAB_V6:
        raise ValueError(f"{addr} is outside the lab ranges {LAB_V4} and {LAB_V6}")


class Lab:
    """Namespaces and links for one test or benchmark; use as a context manager."""

    def __init__(self, tag: str) -> None:
        if not tag.isalnum() or len(tag) > 4:
            raise ValueError("tag: 1-4 letters or digits (interface names are limited to 15 bytes)")
        self.tag = tag
        self.prefix = f"tb-{tag}-"
        self.namespaces: list[str] = []
        self._links = 0

    def __enter__(self) -> Lab:
        host_guard()
        self.clean()
        return self

    def __exit__(self, *exc: object) -> None:
        self.clean()

    # --- building -------------------------------------------------------------------------
    def ns(self, name: str, *, router: bool = False) -> str:
        full = self.prefix + name
        sh("ip", "netns", "add", full)
        self.namespaces.append(full)
        sh("ip", "-n", full, "link", "set", "lo", "up")
        for key in ("net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"):
            self.sysctl(full, key, "0")     # IPv6 addresses usable at once (no duplicate detection)
        if router:
            self.sysctl(full, "net.ipv4.ip_forward", "1")
            self.sysctl(full, "net.ipv6.conf.all.forwarding", "1")
        return full

    def sysctl(self, ns: str, key: str, value: str) -> None:
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}={value}")

    def link(self, a: str, addr_a: str, b: str, addr_b: str, *, v6: tuple[str, str] | None = None) -> tuple[str, str]:
        """A veth between namespaces ``a`` and ``b`` with the given address/prefix on each end."""
        for addr in (addr_a, addr_b, *(v6 or ())):
            _check_lab_address(addr)
        n = self._links
        self._links += 1
        ea, eb = f"tb{self.tag}{n}a", f"tb{self.tag}{n}b"
        sh("ip", "link", "add", ea, "netns", a, "type", "veth", "peer", "name", eb, "netns", b)
        for ns, dev, addr, addr6 in ((a, ea, addr_a, v6[0] if v6 else None), (b, eb, addr_b, v6[1] if v6 else None)):
            sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            if addr6:
                sh("ip", "-n", ns, "addr", "add", addr6, "dev", dev, "nodad")
            sh("ip", "-n", ns, "link", "set", dev, "up")
        return ea, eb

    def route(self, ns: str, prefix: str, via: str) -> None:
        _check_lab_address(via)
        family = "-6" if ":" in prefix else "-4"
        sh("ip", family, "-n", ns, "route", "replace", prefix, "via", via)

    def add_lo_addresses(self, ns: str, addresses: Iterable[str]) -> int:
        """Put each address as a /32 (/128) on ``lo`` of ``ns`` in one ``ip -batch``; returns the count."""
        lines = []
        for a in addresses:
            _check_lab_address(a)
            lines.append(f"address add {a}/{128 if ':' in a else 32} dev lo")
        sh("ip", "-n", ns, "-batch", "-", input_text="\n".join(lines) + "\n")
        return len(lines)

    def nft(self, ns: str, ruleset: str) -> None:
        sh("ip", "netns", "exec", ns, "nft", "-f", "-", input_text=ruleset)

    def nft_rule(self, ns: str, table: str, hook: str, rule: str) -> None:
        """One rule in its own table ``inet <table>`` on ``hook`` (input, output, forward)."""
        self.nft(ns, f"table inet {table} {{\n chain c {{\n  type filter hook {hook} priority 0\n"
                     f"  {rule}\n }}\n}}\n")

    def exec(self, ns: str, *cmd: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                              check=check, timeout=timeout)

    # --- cleaning -------------------------------------------------------------------------
    def clean(self) -> None:
        """Delete every namespace and stray veth of this tag, by name (also after a crash)."""
        out = sh("ip", "netns", "list", check=False).stdout
        for line in out.splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith(self.prefix):
                sh("ip", "netns", "del", name, check=False)
        links = sh("ip", "-o", "link", "show", check=False).stdout
        for line in links.splitlines():
            parts = line.split(":")
            if len(parts) > 1:
                dev = parts[1].strip().split("@")[0]
                if dev.startswith(f"tb{self.tag}") and dev[len(self.tag) + 2:-1].isdigit():
                    sh("ip", "link", "del", dev, check=False)
        self.namespaces.clear()


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def inside(ns: str) -> Iterator[None]:
    """Run the calling thread inside namespace ``ns`` (sockets made meanwhile stay there)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


class PathLab:
    """The known lab path of the ping and traceroute tests (and their golden records)::

        src ── r1 ── r2 ── r3 ── dst    (dst: 198.18.20.0/24 on lo, 198.18.12.2 on its link)
                      └─── r4 ── dst2   (r4 drops the ICMP time-exceeded it would send)

    198.18.12.99 sits on r3's link but does not exist (r3 answers host unreachable after ARP
    fails); 198.18.30.1 is routed nowhere past r1 (network unreachable).  Routers keep the
    kernel's default ICMP rate limit.
    """

    HOPS_TO_DST = ("198.18.10.2", "198.18.10.6", "198.18.10.10")
    HOPS_TO_DST2 = ("198.18.10.2", "198.18.10.6", None)
    DST = "198.18.20.1"
    DST_LINK = "198.18.12.2"
    DST2 = "198.18.21.1"
    MISSING = "198.18.12.99"
    UNROUTED = "198.18.30.1"
    DST6 = "2001:db8:13::2"
    MISSING6 = "2001:db8:13::99"

    def __init__(self, lab: Lab, targets: int = 20) -> None:
        self.lab = lab
        self.src = lab.ns("src")
        r1, r2, r3, r4 = (lab.ns(n, router=True) for n in ("r1", "r2", "r3", "r4"))
        dst, dst2 = lab.ns("dst"), lab.ns("dst2")
        self.routers = (r1, r2, r3, r4)
        self.dst_ns = dst
        lab.link(self.src, "198.18.10.1/30", r1, "198.18.10.2/30", v6=("2001:db8:10::1/64", "2001:db8:10::2/64"))
        lab.link(r1, "198.18.10.5/30", r2, "198.18.10.6/30", v6=("2001:db8:11::1/64", "2001:db8:11::2/64"))
        lab.link(r2, "198.18.10.9/30", r3, "198.18.10.10/30", v6=("2001:db8:12::1/64", "2001:db8:12::2/64"))
        lab.link(r3, "198.18.12.1/24", dst, "198.18.12.2/24", v6=("2001:db8:13::1/64", "2001:db8:13::2/64"))
        lab.link(r2, "198.18.10.17/30", r4, "198.18.10.18/30")
        lab.link(r4, "198.18.13.1/24", dst2, "198.18.13.2/24")
        self.targets = [f"198.18.20.{i}" for i in range(1, targets + 1)]
        lab.add_lo_addresses(dst, self.targets)
        lab.add_lo_addresses(dst2, [self.DST2])
        up4 = {self.src: "198.18.10.2", r2: "198.18.10.5", r3: "198.18.10.9", dst: "198.18.12.1",
               r4: "198.18.10.17", dst2: "198.18.13.1"}
        for ns, via in up4.items():
            lab.route(ns, "198.18.0.0/15", via)
        for prefix in ("198.18.12.0/22", "198.18.20.0/23", "198.18.10.8/29", "198.18.10.16/29"):
            lab.route(r1, prefix, "198.18.10.6")
        for prefix in ("198.18.12.0/24", "198.18.20.0/24"):
            lab.route(r2, prefix, "198.18.10.10")
        for prefix in ("198.18.13.0/24", "198.18.21.0/24"):
            lab.route(r2, prefix, "198.18.10.18")
        lab.route(r3, "198.18.20.0/24", "198.18.12.2")
        lab.route(r4, "198.18.21.0/24", "198.18.13.2")
        up6 = {self.src: "2001:db8:10::2", r2: "2001:db8:11::1", r3: "2001:db8:12::1", dst: "2001:db8:13::1"}
        for ns, via in up6.items():
            lab.route(ns, "2001:db8::/32", via)
        for prefix in ("2001:db8:12::/64", "2001:db8:13::/64"):
            lab.route(r1, prefix, "2001:db8:11::2")
        lab.route(r2, "2001:db8:13::/64", "2001:db8:12::2")
        lab.nft_rule(r4, "tbsilent", "output", "icmp type time-exceeded drop")
