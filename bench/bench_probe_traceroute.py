"""Benchmark: traceroute of 100 lab destinations behind routers that keep the kernel's default ICMP
rate limit (about one TTL-exceeded per second per source after a burst of ~6), ours against
``scamper`` (Paris ICMP traceroute) on the same destinations in the same run.

The lab (all namespaces ``tb-bt-*``; the measuring processes run inside ``src`` with
``ip netns exec``)::

    src ── r1 ── r2 ─┬─ a1 ─┬─ e1 ── h1 (10 destinations on lo)
                     │      └─ e2 ── h2
                     ├─ a2 ── ...          5 aggregation routers, 10 edge routers, 100 destinations
                     └─ a5 ─┬─ e9 ── h9
                            └─ e10 ── h10

Every destination is 5 hops away; a hop list is exact when TTLs 1-4 are the expected routers and
TTL 5 is the destination.  Between runs the benchmark waits for the routers' limiters to refill.

    sudo python3 bench/bench_probe_traceroute.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
REFILL_S = 8.0


def trace_in_namespace(dests_file: str, out_file: str, protocol: str) -> None:
    """The measuring side (inside the source namespace): one pass over every destination."""
    from probe.config import ProbeConfig
    from probe.guard import Guard
    from probe.probers import traceroute
    from probe.probers.base import Outcome

    dests = Path(dests_file).read_text().split()
    guard = Guard(ProbeConfig(allow_ranges=("198.18.0.0/15",), max_pps=100_000))
    start = time.perf_counter()
    outs = asyncio.run(traceroute.trace_many(dests, traceroute.TracerouteParams(protocol=protocol), guard=guard,
                                             timeout_s=300))
    elapsed = time.perf_counter() - start
    hops = {d: [h["address"] for h in o.test_keys["hops"]] if isinstance(o, Outcome) else None
            for d, o in zip(dests, outs, strict=True)}
    probes = sum(o.test_keys["probes_sent"] for o in outs if isinstance(o, Outcome))
    Path(out_file).write_text(json.dumps({"elapsed_s": elapsed, "hops": hops, "probes": probes}))


def build():  # type: ignore[no-untyped-def]
    from tests.netns import Lab

    lab = Lab("bt").__enter__()
    links = iter(range(0, 256, 4))

    def link(a: str, b: str) -> tuple[str, str]:
        base = next(links)
        up, down = f"198.18.100.{base + 1}", f"198.18.100.{base + 2}"
        lab.link(a, f"{up}/30", b, f"{down}/30")
        lab.route(b, "198.18.0.0/15", up)
        return up, down

    src = lab.ns("src")
    r1, r2 = lab.ns("r1", router=True), lab.ns("r2", router=True)
    _, r1_addr = link(src, r1)
    _, r2_addr = link(r1, r2)
    lab.route(src, "198.18.0.0/15", r1_addr)
    lab.route(r1, "198.18.96.0/19", r2_addr)
    expected: dict[str, list[str]] = {}
    for j in range(5):
        a = lab.ns(f"a{j + 1}", router=True)
        _, a_addr = link(r2, a)
        for k in range(2):
            i = 2 * j + k
            e = lab.ns(f"e{i + 1}", router=True)
            _, e_addr = link(a, e)
            h = lab.ns(f"h{i + 1}")
            _, h_addr = link(e, h)
            prefix = f"198.18.{110 + i}.0/24"
            lab.route(e, prefix, h_addr)
            lab.route(a, prefix, e_addr)
            lab.route(r2, prefix, a_addr)
            dests = [f"198.18.{110 + i}.{n}" for n in range(1, 11)]
            lab.add_lo_addresses(h, dests)
            for d in dests:
                expected[d] = [r1_addr, r2_addr, a_addr, e_addr, d]
    return lab, src, expected


def _timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    return time.perf_counter() - start, proc


def run_ours(ns: str, dests_file: str, protocol: str) -> dict[str, object]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    wall, proc = _timed(["ip", "netns", "exec", ns, sys.executable, __file__, "--measure", dests_file, out, protocol])
    if proc.returncode:
        raise RuntimeError(proc.stderr)
    data = json.loads(Path(out).read_text())
    os.unlink(out)
    return {"wall_s": wall, "hops": data["hops"], "probes": data["probes"]}


SCAMPER_METHOD = {"icmp": "icmp-paris", "udp": "udp-paris", "tcp": "tcp"}


def run_scamper(ns: str, dests_file: str, protocol: str) -> dict[str, object]:
    method = SCAMPER_METHOD[protocol]
    wall, proc = _timed(["ip", "netns", "exec", ns, "scamper", "-c", f"trace -P {method}", "-p", "1000",
                         "-O", "json", "-f", dests_file])
    hops: dict[str, list[str | None]] = {}
    probes = 0
    for line in proc.stdout.splitlines():
        obj = json.loads(line)
        if obj.get("type") != "trace":
            continue
        by_ttl: dict[int, str] = {}
        for hop in obj.get("hops", []):
            by_ttl.setdefault(int(hop["probe_ttl"]), hop["addr"])
        top = max(by_ttl, default=0)
        hops[obj["dst"]] = [by_ttl.get(t) for t in range(1, top + 1)]
        probes += int(obj.get("probe_count", 0))
    return {"wall_s": wall, "hops": hops, "probes": probes}


def exact(result: dict[str, object], expected: dict[str, list[str]]) -> int:
    hops = result["hops"]
    assert isinstance(hops, dict)
    return sum(hops.get(d) == want for d, want in expected.items())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--protocol", default="icmp", choices=("icmp", "udp", "tcp"))
    parser.add_argument("--measure", nargs=3, metavar=("DESTS", "OUT", "PROTOCOL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        trace_in_namespace(*args.measure)
        return 0
    if os.geteuid() != 0:
        print("bench_probe_traceroute: needs root (network namespaces)", file=sys.stderr)
        return 1
    lab, src, expected = build()
    rows: dict[str, list[dict[str, object]]] = {"ours": [], "scamper": []}
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("\n".join(expected) + "\n")
            dfile = f.name
        for _ in range(args.rounds):
            time.sleep(REFILL_S)
            rows["ours"].append(run_ours(src, dfile, args.protocol))
            time.sleep(REFILL_S)
            rows["scamper"].append(run_scamper(src, dfile, args.protocol))
        os.unlink(dfile)
    finally:
        lab.__exit__(None, None, None)
    n = len(expected)
    load = os.getloadavg()
    print(f"traceroute: {n} lab destinations, 5 hops, 17 routers with the default ICMP rate limit; "
          f"medians of {args.rounds} rounds; load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'tool':<28}{'exact':>8}{'wall s':>9}{'x scamper':>11}{'probes':>8}   per round (exact / wall s)")
    sc_wall = statistics.median(float(r["wall_s"]) for r in rows["scamper"])  # type: ignore[arg-type]
    for name, label in (("ours", f"tocsin ({args.protocol}, one pass)"), ("scamper", f"scamper {SCAMPER_METHOD[args.protocol]} -p 1000")):
        ex = [exact(r, expected) for r in rows[name]]
        walls = [float(r["wall_s"]) for r in rows[name]]  # type: ignore[arg-type]
        probes = statistics.median(int(r["probes"]) for r in rows[name])  # type: ignore[call-overload]
        per = ", ".join(f"{e}/{w:.1f}" for e, w in zip(ex, walls, strict=True))
        print(f"{label:<28}{statistics.median(ex):>8}{statistics.median(walls):>9.2f}"
              f"{statistics.median(walls) / sc_wall:>11.2f}{probes:>8}   {per}")
    print("target: exact hop lists for >= 99 of 100")
    return 0


if __name__ == "__main__":
    sys.exit(main())
