"""ping in a real multi-hop lab of network namespaces (tests/netns.py: PathLab).

CI runs as root: there these tests must run, so without root they fail when CI=true.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from probe.config import ProbeConfig
from probe.guard import Guard
from probe.icmp import close_engines, shared_engine
from probe.probers import ping
from probe.probers.base import Context, TargetForbidden
from tests.netns import REPO, Lab, PathLab, inside, is_root

pytestmark = pytest.mark.netns
if not is_root():
    if os.environ.get("CI") == "true":
        raise RuntimeError("the netns tests must run in CI: run them as root")
    pytest.skip("needs root for network namespaces", allow_module_level=True)

LAB_GUARD = Guard(ProbeConfig(allow_ranges=("198.18.0.0/15", "2001:db8::/32"), max_pps=100_000))


@pytest.fixture(scope="module")
def path() -> Iterator[PathLab]:
    with Lab("p") as lab:
        topo = PathLab(lab)
        yield topo
        close_engines()


async def _ping(path: PathLab, target: str, guard: Guard = LAB_GUARD, **kw: object) -> ping.Outcome:
    params = ping.PingParams(**{"count": 3, "interval_s": 0.05, "timeout_s": 1.0, **kw})  # type: ignore[arg-type]
    with inside(path.src):
        return await ping.run(target, params, Context(guard=guard, timeout_s=30))


async def test_ping_success_keys(path: PathLab) -> None:
    out = await _ping(path, PathLab.DST)
    keys = out.test_keys
    assert out.success and out.failure is None
    assert keys["resolved_address"] == PathLab.DST and keys["family"] == "ipv4"
    assert keys["socket_mode"] == "raw"
    assert (keys["sent"], keys["received"], keys["loss_pct"]) == (3, 3, 0.0)
    assert [p["ttl"] for p in keys["packets"]] == [61, 61, 61]      # 64 minus three routers
    assert all(0 < p["rtt_ms"] < 50 for p in keys["packets"])
    assert keys["min_rtt_ms"] <= keys["median_rtt_ms"] <= keys["max_rtt_ms"]
    assert set(keys) == set(ping.KEYS)
    assert all(set(p) == set(ping.PACKET_KEYS) for p in keys["packets"])


async def test_ping_loss_when_target_silent(path: PathLab) -> None:
    path.lab.nft_rule(path.dst_ns, "tbloss", "input", "ip daddr 198.18.20.5 icmp type echo-request drop")
    try:
        out = await _ping(path, "198.18.20.5", timeout_s=0.3)
    finally:
        path.lab.nft(path.dst_ns, "delete table inet tbloss\n")
    assert not out.success and out.failure == "timeout"
    assert out.test_keys["received"] == 0 and out.test_keys["loss_pct"] == 100.0
    assert [p["rtt_ms"] for p in out.test_keys["packets"]] == [None, None, None]
    assert [p["ttl"] for p in out.test_keys["packets"]] == [None, None, None]
    assert out.test_keys["median_rtt_ms"] is None


async def test_ping_partial_loss(path: PathLab) -> None:
    path.lab.nft_rule(path.dst_ns, "tbhalf", "input",
                      "ip daddr 198.18.20.6 icmp type echo-request numgen inc mod 2 == 0 drop")
    try:
        out = await _ping(path, "198.18.20.6", count=4, timeout_s=0.3)
    finally:
        path.lab.nft(path.dst_ns, "delete table inet tbhalf\n")
    keys = out.test_keys
    assert out.success and out.failure is None          # something came back
    assert (keys["sent"], keys["received"], keys["loss_pct"]) == (4, 2, 50.0)
    assert [p["rtt_ms"] is None for p in keys["packets"]] == [True, False, True, False]
    assert [p["failure"] for p in keys["packets"]] == ["timeout", None, "timeout", None]


async def test_ping_network_unreachable(path: PathLab) -> None:
    out = await _ping(path, PathLab.UNROUTED, count=1)
    assert out.failure == "network_unreachable"
    assert out.test_keys["packets"][0]["responder"] == "198.18.10.2"
    assert out.test_keys["packets"][0]["icmp_type"] == 3


async def test_ping_host_unreachable(path: PathLab) -> None:
    out = await _ping(path, PathLab.MISSING, count=1, timeout_s=5.0)
    assert out.failure == "host_unreachable"
    assert out.test_keys["packets"][0]["responder"] == "198.18.10.10"


async def test_ping_ipv6(path: PathLab) -> None:
    with inside(path.src):                      # new IPv6 neighbours: let the path settle first
        engine = await shared_engine(socket.AF_INET6)
        for _ in range(10):
            if (await engine.ping(PathLab.DST6, timeout_s=0.5)).rtt_ms is not None:
                break
    out = await _ping(path, PathLab.DST6)
    assert out.success and out.test_keys["family"] == "ipv6"
    assert [p["ttl"] for p in out.test_keys["packets"]] == [61, 61, 61]
    out = await _ping(path, PathLab.MISSING6, count=1, timeout_s=5.0)
    assert out.failure == "host_unreachable"


async def test_guard_refusal_sends_nothing(path: PathLab) -> None:
    path.lab.nft_rule(path.src, "tbcount", "output", "ip daddr 198.18.20.7 counter")
    try:
        with pytest.raises(TargetForbidden):
            await _ping(path, "198.18.20.7", guard=Guard(ProbeConfig()))
        listing = path.lab.exec(path.src, "nft", "list", "table", "inet", "tbcount").stdout
    finally:
        path.lab.nft(path.src, "delete table inet tbcount\n")
    counted = re.findall(r"counter packets (\d+)", listing)
    assert counted == ["0"]


async def test_sweep_shares_one_socket(path: PathLab) -> None:
    targets = [*path.targets, PathLab.UNROUTED, "10.1.2.3"]
    with inside(path.src):
        outs = await ping.sweep(targets, guard=Guard(ProbeConfig(allow_ranges=("198.18.0.0/15",),
                                                                 max_pps=100_000)), pps=2000, timeout_s=1.0)
        engine = await shared_engine(socket.AF_INET)
    assert [o.success for o in outs[:len(path.targets)]] == [True] * len(path.targets)  # type: ignore[union-attr]
    assert outs[-2].failure == "network_unreachable"  # type: ignore[union-attr]
    assert isinstance(outs[-1], TargetForbidden)
    assert {o.test_keys["socket_mode"] for o in outs[:-1]} == {engine.mode}  # type: ignore[union-attr]
    assert not engine.closed and not engine._pending
    assert engine.icmp.rcvbuf_bytes >= 8 * 1024 * 1024     # raised (SO_RCVBUFFORCE as root)


def _in_src(path: PathLab, code: str, *, drop_net_raw: bool) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", "netns", "exec", path.src]
    if drop_net_raw:
        cmd += ["setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw"]
    return subprocess.run([*cmd, sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


_MODE_CODE = """
import asyncio, json
from probe.config import ProbeConfig
from probe.guard import Guard
from probe.probers import ping
from probe.probers.base import Context, TestCannotRun
async def main():
    g = Guard(ProbeConfig(allow_ranges=("198.18.0.0/15",)))
    try:
        out = await ping.run("198.18.20.1", ping.PingParams(count=1), Context(guard=g, timeout_s=10))
    except TestCannotRun as exc:
        return {"error": str(exc)}
    return {"mode": out.test_keys["socket_mode"], "received": out.test_keys["received"]}
print(json.dumps(asyncio.run(main())))
"""


def test_socket_mode_selection(path: PathLab) -> None:
    as_root = json.loads(_in_src(path, _MODE_CODE, drop_net_raw=False).stdout)
    assert as_root == {"mode": "raw", "received": 1}
    path.lab.sysctl(path.src, "net.ipv4.ping_group_range", "1 0")
    proc = _in_src(path, _MODE_CODE, drop_net_raw=True)
    error = json.loads(proc.stdout)["error"]
    assert "net.ipv4.ping_group_range" in error and "setcap cap_net_raw+ep" in error
    path.lab.sysctl(path.src, "net.ipv4.ping_group_range", "0 2147483647")
    try:
        unprivileged = json.loads(_in_src(path, _MODE_CODE, drop_net_raw=True).stdout)
    finally:
        path.lab.sysctl(path.src, "net.ipv4.ping_group_range", "1 0")
    assert unprivileged == {"mode": "datagram", "received": 1}


async def test_datagram_mode_errors_and_ttl(path: PathLab) -> None:
    path.lab.sysctl(path.src, "net.ipv4.ping_group_range", "0 2147483647")
    try:
        ok = await _ping(path, PathLab.DST, socket_mode="datagram", count=2)
        bad = await _ping(path, PathLab.UNROUTED, socket_mode="datagram", count=1)
    finally:
        path.lab.sysctl(path.src, "net.ipv4.ping_group_range", "1 0")
    assert ok.test_keys["socket_mode"] == "datagram" and ok.test_keys["received"] == 2
    assert [p["ttl"] for p in ok.test_keys["packets"]] == [61, 61]
    assert bad.failure == "network_unreachable" and bad.test_keys["packets"][0]["responder"] == "198.18.10.2"


def test_golden_record(path: PathLab) -> None:
    """The record of the known lab path, made by the real runner, against tests/golden/."""
    import asyncio

    from probe.runner import run_test

    async def measure() -> dict[str, object]:
        with inside(path.src):
            return await run_test("ping", PathLab.DST, {"count": 3, "interval_s": 0.05, "timeout_s": 1.0},
                                  guard=LAB_GUARD)

    record = asyncio.run(measure())
    golden_file = Path(__file__).parent / "golden" / "ping_lab_path.json"
    if os.environ.get("TOCSIN_UPDATE_GOLDEN") == "1":
        golden_file.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    golden = json.loads(golden_file.read_text())
    assert stable_ping(record) == stable_ping(golden)


def stable_ping(record: dict[str, object]) -> dict[str, object]:
    """What must not change between runs of the same lab path: everything but times and ids."""
    keys = dict(record["test_keys"])  # type: ignore[call-overload]
    keys["packets"] = [{k: v for k, v in p.items() if k != "rtt_ms"} for p in keys["packets"]]
    for k in ("min_rtt_ms", "median_rtt_ms", "mean_rtt_ms", "max_rtt_ms", "stddev_rtt_ms", "jitter_ms"):
        keys[k] = keys[k] is not None
    return {"test_name": record["test_name"], "test_version": record["test_version"],
            "target": record["target"], "success": record["success"], "failure": record["failure"],
            "test_keys": keys}
