"""The emulated country comes up, routes only inside the lab, and goes away without a trace; the
warm-up's readiness check reads a real coordinator database."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

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
    host_ping_range = Path("/proc/sys/net/ipv4/ping_group_range").read_text()
    stray = None
    try:
        lab.up()
        assert sorted(netns.list_namespaces(PREFIX)) == sorted(f"{PREFIX}-{n}" for n in lab.topo.nodes)
        assert lab.verify_guard() == []
        # sysctls were written inside every namespace (from a thread that entered it), not in the host's
        for node in ("core", "fix", "coord"):
            got = netns.nsexec(f"{PREFIX}-{node}", "sysctl", "-n", "net.ipv4.ip_forward", "net.ipv4.ping_group_range")
            assert got.split() == ["1", "0", "2147483647"]
        assert Path("/proc/sys/net/ipv4/ping_group_range").read_text() == host_ping_range
        with pytest.raises(netns.LabError, match="only net"):
            netns.set_sysctls(f"{PREFIX}-fix", {"kernel.hostname": "x"})
        # a process nobody recorded, inside a lab namespace: down finds it by its namespace and ends it
        stray = subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}-dc", "sleep", "60"])
        deadline = time.monotonic() + 10
        while stray.pid not in netns.pids_in_namespaces([f"{PREFIX}-dc"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert netns.pids_in_namespaces([f"{PREFIX}-dc"]) == [stray.pid]
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
        counts = lab.down()
        if stray is not None:
            stray.wait(10)
    assert counts == {"processes": 1, "namespaces": len(lab.topo.nodes), "links": 0}
    assert _leftovers(PREFIX) == []


def test_route_get_batch_output_is_split_per_address():
    proc = subprocess.CompletedProcess(
        netns.route_get_argv("x"), 1,
        "198.19.1.1 via 198.19.0.2 dev xv0a src 198.19.10.1 uid 0 \\    cache \n"
        "local 198.19.10.1 dev lo src 198.19.10.1 uid 0 \\    cache <local> \n",
        "RTNETLINK answers: No route to host\nCommand failed -:2\nRTNETLINK answers: No route to host\n"
        "Command failed -:4\n")
    outs = netns.route_outputs(proc, 4)
    assert outs[0].startswith("198.19.1.1 via") and outs[1] == "" and outs[2].startswith("local") and outs[3] == ""
    assert netns.route_get_input(["1.1.1.1", "10.0.0.1"]) == "route get 1.1.1.1\nroute get 10.0.0.1\n"
    with pytest.raises(netns.LabError, match="more output lines"):
        netns.route_outputs(proc, 1)


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


# --- the warm-up's readiness check, on a real coordinator database (no root needed) -------------

def _record(probe: str, test: str, target: str, ts: float, ok: bool = True, **keys: object) -> dict:
    from datetime import UTC, datetime

    from probe.record import make_record

    group = {"throughput": "speed-kz", "dns": "news"}[test]
    return make_record(test_name=test, test_version="1", target=target, start_time=datetime.fromtimestamp(ts, UTC),
                       runtime_s=0.5, success=ok, failure=None if ok else "timeout", test_keys=dict(keys),
                       probe_id=probe, annotations={"target_group": group})


def test_baseline_missing_until_every_probe_has_its_rounds_polls_and_the_pooled_downloads(tmp_path):
    from coordinator import db
    from coordinator.store import insert_measurements
    from coordinator.verdict.settings import Settings

    assert check.baseline_missing(tmp_path, ["p1"]) == ["no database yet"]
    conn = db.open_writer(tmp_path)
    probes, t = ["p1", "p2"], 1_800_000_000.0
    need = Settings().min_baseline_samples            # pooled healthy downloads before goodput is judged

    def round_(k: int, dns_ok: bool = True) -> None:
        recs = []
        for p in probes:
            recs.append(_record(p, "throughput", "http://speed.kz.lab/bytes/1000000", t + 3 * k, goodput_bps=2e7))
            recs.append(_record(p, "dns", "news.kz.lab", t + 3 * k + 1, ok=dns_ok))
            conn.executemany("INSERT INTO probe_heartbeats VALUES (?, ?)", [(p, t + 3 * k), (p, t + 3 * k + 1.5)])
        assert len(insert_measurements(conn, recs).accepted) == len(recs)

    round_(0, dns_ok=False)
    missing = check.baseline_missing(tmp_path, probes)
    assert "p1: 2/4 polls" in missing and "p2: under 2 results of 2 of 2 tasks" in missing
    assert "dns news.kz.lab: no answer yet" in missing and f"throughput speed-kz: 2/{need} downloads" in missing
    rounds = need // len(probes)                      # the round that brings the pool to `need`
    for k in range(1, rounds - 1):
        round_(k)
    missing = check.baseline_missing(tmp_path, probes)
    assert missing == [f"throughput speed-kz: {need - 2}/{need} downloads"]   # rounds and polls are there
    round_(rounds - 1)
    assert check.baseline_missing(tmp_path, probes) == []
    assert check.baseline_missing(tmp_path, [*probes, "p3"])[0] == "p3: 0/4 polls"   # a probe not heard of
    conn.close()


def test_timing_section_of_the_docs_matches_the_code():
    from lab.procs import TEARDOWN_GRACE_S

    section = (netns.REPO / "docs" / "lab.md").read_text().split("## Timing", 1)[1].split("\n## ", 1)[0]
    assert f"SIGKILL {TEARDOWN_GRACE_S:g} s later" in section
    defaults = check.baseline_missing.__kwdefaults__
    assert f"{defaults['rounds']} results of every" in section and f"{defaults['polls']} schedule polls" in section
    from coordinator.verdict.settings import Settings

    assert f"`min_baseline_samples` ({Settings().min_baseline_samples})" in section


def test_run_many_runs_everything_and_names_every_failure():
    done = netns.run_many([(["cat"], "one\n"), (["sh", "-c", "echo bad >&2; exit 3"], None), (["true"], None)],
                          check=False)
    assert [c.returncode for c in done] == [0, 3, 0] and done[0].stdout == "one\n"
    with pytest.raises(netns.LabError, match=r"sh -c echo bad >&2; exit 3: exit 3: bad"):
        netns.run_many([(["true"], None), (["sh", "-c", "echo bad >&2; exit 3"], None)])
    slow = netns.run_many([(["sleep", "5"], None)], check=False, timeout=0.3)[0]
    assert slow.returncode != 0 and "timed out" in slow.stderr
