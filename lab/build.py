"""Bring a :class:`~lab.topology.Topology` up as namespaces and veths, and take it down again.

Routes are computed from the link graph (shortest path, hop count): every node gets one route per
remote node prefix and per remote link /30, with its own address as source, plus ``unreachable
default`` - so no namespace can route to the host's network (there is no veth to the host
namespace at all).  :func:`verify_guard` checks this with ``ip route get`` (nothing is sent).
"""

from __future__ import annotations

import ipaddress
import shutil
from collections import deque
from pathlib import Path

from lab import netns
from lab.topology import Topology

MARKER = ".tocsin-lab"
SYSCTLS = {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0",
           "net.ipv4.icmp_ratelimit": "0", "net.ipv4.ping_group_range": "0 2147483647",
           "net.ipv6.conf.all.disable_ipv6": "1"}


class Lab:
    """A topology brought up under a name prefix.  Use as a context manager or call up()/down()."""

    def __init__(self, topo: Topology, prefix: str = "tl", workdir: str | Path | None = None) -> None:
        self.topo = topo
        self.prefix = netns.check_prefix(prefix)
        self.workdir = Path(workdir) if workdir else Path(f"/tmp/tocsin-lab-{prefix}")

    def ns(self, node: str) -> str:
        self.topo.node(node)
        return f"{self.prefix}-{node}"

    def dev(self, link_index: int, node: str) -> str:
        ln = self.topo.links[link_index]
        if node not in (ln.a, ln.b):
            raise KeyError(f"link {link_index} does not touch {node}")
        return f"{self.prefix}v{link_index}{'a' if node == ln.a else 'b'}"

    def peer_address(self, link_index: int, node: str) -> str:
        a, b = self.topo.link_addresses(link_index)
        return b if node == self.topo.links[link_index].a else a

    # --- up -------------------------------------------------------------------------------
    def up(self) -> None:
        netns.require_root()
        netns.host_guard()
        netns.cleanup(self.prefix)
        if (self.workdir / MARKER).exists():   # a previous run's files (never a directory we did not make)
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / MARKER).write_text("made by python -m lab; removed by the next run\n")
        created: list[str] = []
        state: dict[str, object] = {"prefix": self.prefix, "namespaces": created, "processes": [],
                                    "workdir": str(self.workdir)}
        netns.save_state(self.prefix, state)
        try:
            # the host's side, one `ip -batch`: every namespace, then every veth pair made directly
            # inside its two namespaces (so deleting a namespace deletes its veths)
            host = [f"netns add {self.ns(name)}" for name in self.topo.nodes]
            for i, ln in enumerate(self.topo.links):
                host.append(f"link add {self.dev(i, ln.a)} netns {self.ns(ln.a)} type veth "
                            f"peer name {self.dev(i, ln.b)} netns {self.ns(ln.b)}")
            created += [self.ns(name) for name in self.topo.nodes]
            netns.save_state(self.prefix, state)
            netns.run("ip", "-batch", "-", input_text="\n".join(host) + "\n")
            for name in self.topo.nodes:
                netns.set_sysctls(self.ns(name), SYSCTLS)
            # inside each namespace, one `ip -batch` for addresses and links, then one for routes
            # (a route's gateway must be on a link that is up at both ends); all namespaces at once
            netns.run_many([(["ip", "-n", self.ns(n), "-batch", "-"], self._addresses(n)) for n in self.topo.nodes])
            netns.run_many([(["ip", "-n", self.ns(n), "-batch", "-"], self._routes(n)) for n in self.topo.nodes])
            shaped: dict[str, list[str]] = {}
            for (ns, dev), rate in self.capacities().items():
                shaped.setdefault(ns, []).append(tbf_line(dev, rate))
            netns.run_many([(["tc", "-n", ns, "-batch", "-"], "".join(lines)) for ns, lines in shaped.items()])
            self._resolv_conf()
        except Exception:
            self.down()
            raise

    def _addresses(self, node: str) -> str:
        """``ip -batch`` lines: ``lo`` up with the node's and its targets' /32s, every veth of the
        node with its /30, up."""
        addrs = [self.topo.node(node).address] + [t.address for t in self.topo.targets if t.node == node]
        lines = ["link set lo up"] + [f"address add {a}/32 dev lo" for a in addrs]
        for i, ln in self.topo.links_of(node):
            a, b = self.topo.link_addresses(i)
            dev = self.dev(i, node)
            lines += [f"address add {a if node == ln.a else b}/30 dev {dev}", f"link set {dev} up"]
        return "\n".join(lines) + "\n"

    def next_hops(self, src: str) -> dict[str, tuple[int, str]]:
        """For every node reachable from ``src``: (first link index, first-hop node)."""
        first: dict[str, tuple[int, str]] = {}
        queue = deque([src])
        seen = {src}
        while queue:
            cur = queue.popleft()
            for i, ln in self.topo.links_of(cur):
                nxt = ln.b if ln.a == cur else ln.a
                if nxt in seen:
                    continue
                seen.add(nxt)
                first[nxt] = first[cur] if cur != src else (i, nxt)
                queue.append(nxt)
        return first

    def _routes(self, node: str) -> str:
        hops = self.next_hops(node)
        src = self.topo.node(node).address
        own_links = {i for i, _ in self.topo.links_of(node)}
        lines = ["route replace unreachable default"]
        for other, (li, _) in hops.items():
            via = self.peer_address(li, node)
            lines.append(f"route replace {self.topo.node(other).prefix} via {via} src {src}")
        for i, ln in enumerate(self.topo.links):
            if i in own_links:
                continue
            li = hops[ln.a][0]
            lines.append(f"route replace {self.topo.link_subnet(i)} via {self.peer_address(li, node)} src {src}")
        return "\n".join(lines) + "\n"

    def _resolv_conf(self) -> None:
        for node in self.topo.nodes.values():
            resolver = self.topo.resolver(node.side)
            d = netns.NETNS_ETC / self.ns(node.name)
            d.mkdir(parents=True, exist_ok=True)
            (d / "resolv.conf").write_text(f"nameserver {resolver.address}\noptions timeout:1 attempts:1\n")

    # --- link capacity ----------------------------------------------------------------------
    def capacities(self) -> dict[tuple[str, str], str]:
        """(namespace, device) -> rate for both ends of every uplink of a node with a capacity."""
        out = {}
        for node in self.topo.nodes.values():
            if node.capacity:
                for i, ln in self.topo.links_of(node.name):
                    for end in (ln.a, ln.b):
                        out[(self.ns(end), self.dev(i, end))] = node.capacity
        return out

    def restore_qdisc(self, ns: str, dev: str) -> None:
        """Put a device back to its normal state: the access capacity tbf, or no root qdisc."""
        rate = self.capacities().get((ns, dev))
        if rate is None:
            netns.run("tc", "-n", ns, "qdisc", "del", "dev", dev, "root", check=False)
        else:
            netns.run("tc", "-n", ns, *tbf_line(dev, rate).split())

    # --- down -----------------------------------------------------------------------------
    def down(self) -> dict[str, int]:
        return netns.cleanup(self.prefix)

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # --- checks ---------------------------------------------------------------------------
    def verify_guard(self) -> list[str]:
        """Problems found with ``ip route get`` (empty list = fine): every namespace must route
        lab addresses inside the lab and have no route to the host's own addresses."""
        host_addrs = host_addresses()
        outside = [*host_addrs, "1.1.1.1", "10.0.0.1", "192.168.1.1"]
        inside = [n.address for n in self.topo.nodes.values()]
        names = list(self.topo.nodes)
        # one `ip -batch` of `route get` per namespace, all namespaces at once
        procs = netns.run_many([(netns.route_get_argv(self.ns(n)), netns.route_get_input(outside + inside))
                                for n in names], check=False)
        problems = []
        for node, proc in zip(names, procs, strict=True):
            ns = self.ns(node)
            outs = netns.route_outputs(proc, len(outside) + len(inside))
            for addr, out in zip(outside, outs, strict=False):
                if " via " in out or " dev " in out:
                    problems.append(f"{ns}: {addr} is routable: {out.strip()}")
            for other, out in zip(self.topo.nodes.values(), outs[len(outside):], strict=True):
                if other.name != node and " via " not in out:
                    problems.append(f"{ns}: {other.address} not routed inside the lab: {out.strip()}")
        return problems


def tbf_line(dev: str, rate: str) -> str:
    """The ``tc`` command (batch line) that gives ``dev`` its normal capacity ``rate``."""
    return f"qdisc replace dev {dev} root tbf rate {rate} burst {tbf_burst(rate)} latency 100ms\n"


def tbf_burst(rate: str) -> int:
    """Bucket size for a tbf at ``rate``: 10 ms of traffic, at least two full packets (a big bucket
    lets short downloads through at memory speed and hides the rate from throughput tests)."""
    units = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
    for unit, factor in units.items():
        if rate.endswith(unit):
            return max(int(float(rate[: -len(unit)]) * factor / 8 / 100), 3200)
    raise ValueError(f"rate {rate!r} must end in kbit, mbit or gbit")


def host_addresses() -> list[str]:
    """IPv4 addresses of the host namespace outside the lab range (what a namespace must not reach)."""
    out = netns.run("ip", "-4", "-o", "addr", "show", check=False)
    found = []
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            ip = ipaddress.ip_interface(parts[parts.index("inet") + 1]).ip
            if not ip.is_loopback and ip not in ipaddress.ip_network("198.18.0.0/15"):
                found.append(str(ip))
    return found
