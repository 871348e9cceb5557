"""The emulated country comes up, routes only inside the lab, and goes away without a trace."""

from __future__ import annotations

import subprocess

import pytest

from lab import check, netns
from lab.build import Lab
from lab.testing import need_root
from lab.topology import kazakhstan

pytestmark = pytest.mark.netns
PREFIX = "tlu"


def _leftovers(prefix: str) -> list[str]:
    found = netns.list_namespaces(prefix) + netns.list_host_links(prefix)
    if netns.NETNS_ETC.is_dir():
        found += [d.name for d in netns.NETNS_ETC.iterdir() if d.name.startswith(prefix + "-")]
    if netns.state_path(prefix).exists():
        found.append(str(netns.state_path(prefix)))
    return found


def test_up_routes_inside_the_lab_and_down_leaves_nothing(tmp_path):
    need_root()
    lab = Lab(kazakhstan(), PREFIX, tmp_path)
    try:
        lab.up()
        assert sorted(netns.list_namespaces(PREFIX)) == sorted(f"{PREFIX}-{n}" for n in lab.topo.nodes)
        assert lab.verify_guard() == []
        # ip route get: lab addresses go via the lab, the rest of the world is unreachable
        out = netns.run("ip", "-n", f"{PREFIX}-fix", "route", "get", "198.19.100.10")
        assert "via 198.19.0.2" in out and "src 198.19.10.1" in out
        bad = subprocess.run(["ip", "-n", f"{PREFIX}-fix", "route", "get", "10.0.0.1"], capture_output=True, text=True)
        assert bad.returncode != 0 and "no route to host" in bad.stderr.lower()   # unreachable default
        # the host namespace blackholes the whole lab range
        host = subprocess.run(["ip", "route", "get", "198.19.100.10"], capture_output=True, text=True)
        assert host.returncode != 0 or "blackhole" in host.stdout
        # real traffic end to end: ICMP across the border, resolv.conf of the namespace
        ping = netns.nsexec(f"{PREFIX}-fix", "fping", "-c1", "-t1000", "198.19.100.10", "198.19.130.1", check=False)
        assert ping.count("0% loss") == 2
        conf = netns.nsexec(f"{PREFIX}-mob1", "cat", "/etc/resolv.conf")
        assert "nameserver 198.19.20.53" in conf
        assert "nameserver 198.19.100.53" in netns.nsexec(f"{PREFIX}-out", "cat", "/etc/resolv.conf")
        assert check.tcp(f"{PREFIX}-out", "198.19.10.1", 9, 1.0) == "refused"   # reachable, nothing listens
    finally:
        lab.down()
    assert _leftovers(PREFIX) == []


def test_down_is_idempotent_and_prefix_is_checked():
    need_root()
    assert netns.cleanup(PREFIX) == {"processes": 0, "namespaces": 0, "links": 0}
    with pytest.raises(netns.LabError, match="prefix"):
        netns.cleanup("TL-")


def test_topology_is_consistent():
    topo = kazakhstan()
    topo.check()
    assert len([n for n in topo.nodes.values() if n.role == "access"]) >= 3
    assert {n.access for n in topo.nodes.values() if n.role == "access"} == {"fixed", "mobile"}
    assert all(len(f"{PREFIX}v{i}a") <= 15 for i in range(len(topo.links)))
    lab = Lab(topo, "tl")
    assert lab.next_hops("fix")["intl"][1] == "core"


def test_a_stranded_host_veth_is_removed_by_name():
    need_root()
    netns.run("ip", "link", "add", f"{PREFIX}v99a", "type", "veth", "peer", "name", f"{PREFIX}v99b")
    try:
        assert f"{PREFIX}v99a" in netns.list_host_links(PREFIX)
        assert netns.cleanup(PREFIX)["links"] >= 1
        assert netns.list_host_links(PREFIX) == []
    finally:
        netns.run("ip", "link", "del", f"{PREFIX}v99a", check=False)
