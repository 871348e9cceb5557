"""traceroute in a real multi-hop lab of network namespaces (tests/netns.py: PathLab).

Routers keep the kernel's default ICMP rate limit; r4 drops the TTL-exceeded it would send;
198.18.12.99 does not exist.  CI runs as root: without root these tests fail when CI=true.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from probe.config import ProbeConfig
from probe.guard import Guard
from probe.probers import traceroute
from probe.probers.base import Context, Outcome, TargetForbidden
from tests.netns import REPO, Lab, PathLab, inside, is_root

pytestmark = pytest.mark.netns
if not is_root():
    if os.environ.get("CI") == "true":
        raise RuntimeError("the netns tests must run in CI: run them as root")
    pytest.skip("needs root for network namespaces", allow_module_level=True)

LAB_GUARD = Guard(ProbeConfig(allow_ranges=("198.18.0.0/15",), max_pps=100_000))
FAST = {"wait_s": 0.5, "attempts": 3}


@pytest.fixture(scope="module")
def path() -> Iterator[PathLab]:
    with Lab("tr") as lab:
        yield PathLab(lab)


def hop_addresses(out: Outcome) -> list[str | None]:
    return [h["address"] for h in out.test_keys["hops"]]


@pytest.mark.parametrize("protocol", ["icmp", "udp", "tcp"])
async def test_many_destinations_exact(path: PathLab, protocol: str) -> None:
    ends = [PathLab.MISSING, PathLab.UNROUTED] if protocol == "icmp" else []   # slow (ARP): once is enough
    dests = [PathLab.DST, PathLab.DST2, *ends, *path.targets[1:8]]
    with inside(path.src):
        outs = await traceroute.trace_many(dests, traceroute.TracerouteParams(protocol=protocol, **FAST),  # type: ignore[arg-type]
                                           guard=LAB_GUARD, timeout_s=60)
    by = dict(zip(dests, outs, strict=True))
    for dest in [PathLab.DST, *path.targets[1:8]]:
        out = by[dest]
        assert isinstance(out, Outcome) and out.success, dest
        assert hop_addresses(out) == [*PathLab.HOPS_TO_DST, dest]
        keys = out.test_keys
        assert keys["destination_reached"] and keys["hop_count"] == 4 and keys["complete"]
        assert keys["last_responding_hop"] == 4 and keys["last_responding_address"] == dest
        assert keys["protocol"] == protocol and "source_address" not in keys
        assert [h["kind"] for h in keys["hops"]] == ["time_exceeded"] * 3 + ["destination"]
        assert set(keys) == set(traceroute.KEYS)
        assert all(set(h) == set(traceroute.HOP_KEYS) for h in keys["hops"])
    silent = by[PathLab.DST2]
    assert isinstance(silent, Outcome) and silent.success
    assert hop_addresses(silent) == [*PathLab.HOPS_TO_DST2, PathLab.DST2]
    if ends:
        missing = by[PathLab.MISSING]
        assert isinstance(missing, Outcome) and missing.failure == "host_unreachable"
        assert hop_addresses(missing) == [*PathLab.HOPS_TO_DST, "198.18.10.10"]
        assert missing.test_keys["hops"][-1]["kind"] == "unreachable"
        assert not missing.test_keys["destination_reached"] and missing.test_keys["last_responding_hop"] == 4
        unrouted = by[PathLab.UNROUTED]
        assert isinstance(unrouted, Outcome) and unrouted.failure == "network_unreachable"
        assert hop_addresses(unrouted) == ["198.18.10.2"]
    # the stop set spared probes: the siblings of DST copied hops 1-2 instead of probing them
    copied = [h["source"] for d in path.targets[1:8] for h in by[d].test_keys["hops"]]  # type: ignore[union-attr]
    assert copied.count("stop_set") >= 2 * 3


async def test_single_destination_and_rtts(path: PathLab) -> None:
    with inside(path.src):
        out = await traceroute.run(PathLab.DST_LINK, traceroute.TracerouteParams(protocol="udp", **FAST),  # type: ignore[arg-type]
                                   Context(guard=LAB_GUARD, timeout_s=30))
    assert out.success and hop_addresses(out) == [*PathLab.HOPS_TO_DST, PathLab.DST_LINK]
    assert all(0 < h["rtt_ms"] < 100 for h in out.test_keys["hops"])
    assert out.test_keys["hops"][-1]["icmp_type"] == 3 and out.test_keys["hops"][-1]["icmp_code"] == 3


async def test_guard_refusal(path: PathLab) -> None:
    with inside(path.src), pytest.raises(TargetForbidden):
        await traceroute.run(PathLab.DST, traceroute.TracerouteParams(), Context(guard=Guard(ProbeConfig()),
                                                                                    timeout_s=10))


def test_import_does_not_import_scapy() -> None:
    code = ("import sys, probe.probers.traceroute as t, probe.probers.ping, probe.icmp; "
            "t.TracerouteParams(protocol='udp'); print(any(m == 'scapy' or m.startswith('scapy.') for m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60, check=True)
    assert proc.stdout.strip() == "False"


def test_golden_record(path: PathLab) -> None:
    """The record of the known lab path (through the silent hop), made by the real runner."""
    import asyncio

    from probe.runner import run_test

    async def trace() -> dict[str, object]:
        with inside(path.src):
            return await run_test("traceroute", PathLab.DST2, FAST, guard=LAB_GUARD, timeout_s=30)

    record = asyncio.run(trace())
    golden_file = Path(__file__).parent / "golden" / "traceroute_lab_path.json"
    if os.environ.get("TOCSIN_UPDATE_GOLDEN") == "1":
        golden_file.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    assert stable_trace(record) == stable_trace(json.loads(golden_file.read_text()))


def stable_trace(record: dict[str, object]) -> dict[str, object]:
    """Everything but RTTs, ids, times and the probe count (retries vary with the rate limiters)."""
    keys = dict(record["test_keys"])  # type: ignore[call-overload]
    keys["hops"] = [{k: v for k, v in h.items() if k != "rtt_ms"} for h in keys["hops"]]
    keys.pop("probes_sent")
    return {"test_name": record["test_name"], "test_version": record["test_version"],
            "target": record["target"], "success": record["success"], "failure": record["failure"],
            "test_keys": keys}
