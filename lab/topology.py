"""The emulated country as data: nodes (network namespaces), links (veth pairs), targets, probes.

Everything is declared here and nothing is hard-wired elsewhere: :mod:`lab.build` turns a
:class:`Topology` into namespaces, veths, addresses and routes (routes are computed from the
link graph), :mod:`lab.actions` finds the interfaces and addresses to cut by node name, and
:mod:`lab.campaign` writes the coordinator's campaign and prefix table from the same data.

All addresses are in 198.19.0.0/16 (the lab's share of 198.18.0.0/15).  Point-to-point links get
/30s from 198.19.0.0/24; each node owns a /24 whose addresses sit on its ``lo``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

LAB_NET = ipaddress.ip_network("198.19.0.0/16")
LINK_NET = ipaddress.ip_network("198.19.0.0/24")
ROLES = ("access", "datacenter", "router", "targets", "vantage", "coordinator", "atlas")


@dataclass(frozen=True)
class Node:
    name: str                    # short name; the namespace is PREFIX-name
    role: str                    # one of ROLES
    asn: int
    cc: str
    prefix: str                  # the /24 this node announces; its .1 is the node's own address
    side: str                    # "domestic" (inside the country) or "international"
    access: str | None = None    # fixed / mobile / datacenter for nodes that host probes
    capacity: str | None = None  # access link rate (tc tbf), e.g. "50mbit"; None = unshaped

    @property
    def address(self) -> str:
        return str(ipaddress.ip_network(self.prefix).network_address + 1)


@dataclass(frozen=True)
class Link:
    a: str
    b: str


@dataclass(frozen=True)
class Target:
    """A service the lab runs: web/DNS/throughput server on an address of a node's ``lo``."""

    name: str                    # host name (resolvable through the lab's resolvers)
    node: str
    address: str
    category: str                # domestic, international, control
    group: str
    kind: str                    # web, dns, speed
    tests: tuple[str, ...]


@dataclass(frozen=True)
class ProbeSpec:
    name: str                    # e.g. "fix-1"; its state dir is STATE/probes/<name>
    node: str


@dataclass(frozen=True)
class AtlasProbe:
    id: int
    node: str


@dataclass
class Topology:
    country: str
    nodes: dict[str, Node]
    links: list[Link]
    targets: list[Target]
    probes: list[ProbeSpec]
    atlas_probes: list[AtlasProbe]
    zone: str = "lab"
    coordinator_port: int = 8470
    atlas_port: int = 8443
    # the in-country coordinator replica (docs/replica.md) runs on this target's host and address:
    # a replica only helps during an allow-list if it sits on an allowed host, as here a domestic
    # news site's server (kazakhstan-2022 allows it); port coordinator_port
    replica_host: str | None = "news.kz.lab"
    extra: dict[str, str] = field(default_factory=dict)

    def node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise KeyError(f"no node {name!r}; nodes: {', '.join(self.nodes)}") from None

    def target(self, name: str) -> Target:
        for t in self.targets:
            if t.name == name or t.group == name:
                return t
        raise KeyError(f"no target {name!r}; targets: {', '.join(t.name for t in self.targets)}")

    def link_subnet(self, index: int) -> ipaddress.IPv4Network:
        subnet = list(LINK_NET.subnets(new_prefix=30))[index]
        assert isinstance(subnet, ipaddress.IPv4Network)
        return subnet

    def link_addresses(self, index: int) -> tuple[str, str]:
        hosts = list(self.link_subnet(index).hosts())
        return str(hosts[0]), str(hosts[1])

    def links_of(self, node: str) -> list[tuple[int, Link]]:
        return [(i, ln) for i, ln in enumerate(self.links) if node in (ln.a, ln.b)]

    def link_index(self, a: str, b: str) -> int:
        for i, ln in enumerate(self.links):
            if {ln.a, ln.b} == {a, b}:
                return i
        raise KeyError(f"no link between {a} and {b}")

    def neighbours(self, node: str) -> list[str]:
        return [ln.b if ln.a == node else ln.a for _, ln in self.links_of(node)]

    def access_nodes(self, access: str | None = None) -> list[Node]:
        return [n for n in self.nodes.values() if n.role in ("access", "datacenter")
                and (access is None or n.access == access)]

    def domestic_prefixes(self) -> list[str]:
        return [n.prefix for n in self.nodes.values() if n.side == "domestic"]

    def resolver(self, side: str) -> Target:
        for t in self.targets:
            if t.kind == "dns" and self.nodes[t.node].side == side:
                return t
        raise KeyError(f"no {side} resolver")

    def check(self) -> None:
        """Refuse an inconsistent topology (addresses outside the lab range, unknown nodes)."""
        seen: set[str] = set()
        for n in self.nodes.values():
            net = ipaddress.ip_network(n.prefix)
            if not net.subnet_of(LAB_NET) or net.overlaps(LINK_NET):  # type: ignore[arg-type]
                raise ValueError(f"node {n.name}: prefix {n.prefix} must be in {LAB_NET} outside {LINK_NET}")
            if n.role not in ROLES:
                raise ValueError(f"node {n.name}: role {n.role!r} not in {ROLES}")
            if n.prefix in seen:
                raise ValueError(f"node {n.name}: prefix {n.prefix} used twice")
            seen.add(n.prefix)
        for ln in self.links:
            self.node(ln.a)
            self.node(ln.b)
        for t in self.targets:
            if ipaddress.ip_address(t.address) not in ipaddress.ip_network(self.node(t.node).prefix):
                raise ValueError(f"target {t.name}: {t.address} is not in {t.node}'s prefix")
        for p in self.probes:
            self.node(p.node)
        if self.replica_host is not None and self.nodes[self.target(self.replica_host).node].side != "domestic":
            raise ValueError(f"replica_host {self.replica_host} must be a domestic target (an in-country replica)")


def kazakhstan() -> Topology:
    """The default country: KZ with fixed, two mobile and a datacenter ASN behind one border."""
    nodes = [
        Node("fix", "access", 64601, "KZ", "198.19.10.0/24", "domestic", "fixed", "50mbit"),
        Node("mob1", "access", 64602, "KZ", "198.19.11.0/24", "domestic", "mobile", "20mbit"),
        Node("mob2", "access", 64603, "KZ", "198.19.12.0/24", "domestic", "mobile", "20mbit"),
        Node("dc", "datacenter", 64610, "KZ", "198.19.20.0/24", "domestic", "datacenter"),
        Node("core", "router", 64600, "KZ", "198.19.1.0/24", "domestic"),
        Node("border", "router", 64600, "KZ", "198.19.2.0/24", "domestic"),
        Node("transit", "router", 64700, "DE", "198.19.3.0/24", "international"),
        Node("intl", "targets", 64710, "NL", "198.19.100.0/24", "international"),
        Node("out", "vantage", 64720, "DE", "198.19.110.0/24", "international", "fixed"),
        Node("coord", "coordinator", 64730, "NL", "198.19.120.0/24", "international"),
        Node("atlas", "atlas", 64740, "NL", "198.19.130.0/24", "international"),
    ]
    links = [Link("fix", "core"), Link("mob1", "core"), Link("mob2", "core"), Link("dc", "core"),
             Link("core", "border"), Link("border", "transit"), Link("transit", "intl"),
             Link("transit", "out"), Link("transit", "coord"), Link("transit", "atlas")]
    full = ("http", "tcp", "ping", "dns")
    targets = [
        Target("news.kz.lab", "dc", "198.19.20.10", "domestic", "news", "web", full),
        Target("bank.kz.lab", "dc", "198.19.20.11", "domestic", "bank", "web", ("http",)),
        Target("gov.kz.lab", "dc", "198.19.20.12", "domestic", "gov", "web", ("http",)),
        Target("shop.kz.lab", "dc", "198.19.20.13", "domestic", "shop", "web", ("http",)),
        Target("speed.kz.lab", "dc", "198.19.20.80", "domestic", "speed-kz", "speed", ("throughput",)),
        Target("resolver-kz.lab", "dc", "198.19.20.53", "domestic", "resolver-kz", "dns", ()),
        Target("world.example.lab", "intl", "198.19.100.10", "international", "world", "web", full),
        Target("social.example.lab", "intl", "198.19.100.20", "international", "social", "speed", ("throughput",)),
        Target("control.example.lab", "intl", "198.19.100.30", "control", "control", "speed", ("throughput",)),
        Target("resolver-intl.lab", "intl", "198.19.100.53", "international", "resolver-intl", "dns", ()),
    ]
    probes = [ProbeSpec("fix-1", "fix"), ProbeSpec("fix-2", "fix"), ProbeSpec("mob1-1", "mob1"),
              ProbeSpec("mob1-2", "mob1"), ProbeSpec("mob2-1", "mob2"), ProbeSpec("out-1", "out")]
    atlas = [AtlasProbe(1001, "fix"), AtlasProbe(1002, "fix"), AtlasProbe(1003, "mob1"),
             AtlasProbe(1004, "mob2"), AtlasProbe(1005, "dc")]
    topo = Topology("KZ", {n.name: n for n in nodes}, links, targets, probes, atlas)
    topo.check()
    return topo
