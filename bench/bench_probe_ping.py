"""Benchmark: a ping sweep of 10,000 lab targets, 1 echo each at 10,000 packets/s, against
``scamper -p 10000`` and ``fping -i 0.1`` on the same targets in the same run.

The lab: a source namespace, one router, and a target namespace holding the 10,000 addresses on
``lo`` (198.18.64.0 upwards); every measuring process runs inside the source namespace
(``ip netns exec``), so it can reach nothing but the lab.  Wall times are of whole processes
(start-up included) and, for ours, also of the sweep alone.  Prints medians of ``--rounds`` rounds.

    sudo python3 bench/bench_probe_ping.py [--targets 10000] [--rounds 3]
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


def sweep_in_namespace(targets_file: str, out_file: str, pps: float) -> None:
    """The measuring side (run inside the source namespace): our sweep through one shared socket."""
    from probe.config import ProbeConfig
    from probe.guard import Guard
    from probe.probers import ping
    from probe.probers.base import Outcome

    targets = Path(targets_file).read_text().split()
    guard = Guard(ProbeConfig(allow_ranges=("198.18.0.0/15",), max_pps=100_000))

    async def main() -> tuple[list[Outcome | Exception], float]:
        start = time.perf_counter()
        outs = await ping.sweep(targets, guard=guard, pps=pps, timeout_s=1.0)
        return list(outs), time.perf_counter() - start

    outs, elapsed = asyncio.run(main())
    rtts = {t: (o.test_keys["packets"][0]["rtt_ms"] if isinstance(o, Outcome) else None)
            for t, o in zip(targets, outs, strict=True)}
    mode = next((o.test_keys["socket_mode"] for o in outs if isinstance(o, Outcome)), None)
    Path(out_file).write_text(json.dumps({"sweep_s": elapsed, "rtts": rtts, "mode": mode}))


def _timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return time.perf_counter() - start, proc


def run_ours(ns: str, targets_file: str, pps: float) -> dict[str, object]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    wall, proc = _timed(["ip", "netns", "exec", ns, sys.executable, __file__, "--measure", targets_file, out, str(pps)])
    if proc.returncode:
        raise RuntimeError(proc.stderr)
    data = json.loads(Path(out).read_text())
    os.unlink(out)
    return {"wall_s": wall, "sweep_s": data["sweep_s"], "rtts": data["rtts"], "mode": data["mode"]}


def run_scamper(ns: str, targets_file: str, pps: int) -> dict[str, object]:
    wall, proc = _timed(["ip", "netns", "exec", ns, "scamper", "-c", "ping -c 1", "-p", str(pps), "-O", "json",
                         "-f", targets_file])
    rtts: dict[str, float | None] = {}
    for line in proc.stdout.splitlines():
        obj = json.loads(line)
        if obj.get("type") == "ping":
            responses = obj.get("responses") or []
            rtts[obj["dst"]] = responses[0]["rtt"] if responses else None
    return {"wall_s": wall, "rtts": rtts}


def run_fping(ns: str, targets_file: str) -> dict[str, object]:
    wall, proc = _timed(["ip", "netns", "exec", ns, "fping", "-C", "1", "-q", "-i", "0.1", "-f", targets_file])
    rtts: dict[str, float | None] = {}
    for line in proc.stderr.splitlines():
        if " : " in line:
            addr, value = line.split(" : ", 1)
            rtts[addr.strip()] = None if value.strip() == "-" else float(value)
    return {"wall_s": wall, "rtts": rtts}


def replies_pct(rtts: dict[str, float | None], n: int) -> float:
    return 100.0 * sum(v is not None for v in rtts.values()) / n


def median_diff(a: dict[str, float | None], b: dict[str, float | None]) -> float | None:
    diffs = [a[k] - b[k] for k in a if a.get(k) is not None and b.get(k) is not None]  # type: ignore[operator]
    return statistics.median(diffs) if diffs else None


def build(n: int):  # type: ignore[no-untyped-def]
    from tests.netns import Lab

    lab = Lab("bp").__enter__()
    src, r1, tgt = lab.ns("src"), lab.ns("r1", router=True), lab.ns("tgt")
    lab.link(src, "198.18.1.1/30", r1, "198.18.1.2/30")
    lab.link(r1, "198.18.1.5/30", tgt, "198.18.1.6/30")
    lab.route(src, "198.18.0.0/15", "198.18.1.2")
    lab.route(tgt, "198.18.0.0/15", "198.18.1.5")
    lab.route(r1, "198.18.64.0/18", "198.18.1.6")
    targets = [f"198.18.{64 + i // 256}.{i % 256}" for i in range(n)]
    lab.add_lo_addresses(tgt, targets)
    return lab, src, targets


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pps", type=int, default=10_000)
    parser.add_argument("--no-fping", action="store_true")
    parser.add_argument("--measure", nargs=3, metavar=("TARGETS", "OUT", "PPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        sweep_in_namespace(args.measure[0], args.measure[1], float(args.measure[2]))
        return 0
    if os.geteuid() != 0:
        print("bench_probe_ping: needs root (network namespaces)", file=sys.stderr)
        return 1
    lab, src, targets = build(args.targets)
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("\n".join(targets) + "\n")
            tfile = f.name
        run_ours(src, tfile, args.pps)                  # warm-up: neighbour caches, page cache
        rows: dict[str, list[dict[str, object]]] = {"ours": [], "scamper": [], "fping": []}
        for _ in range(args.rounds):
            rows["ours"].append(run_ours(src, tfile, args.pps))
            rows["scamper"].append(run_scamper(src, tfile, args.pps))
            if not args.no_fping:
                rows["fping"].append(run_fping(src, tfile))
        os.unlink(tfile)
    finally:
        lab.__exit__(None, None, None)
    report(rows, len(targets), args)
    return 0


def report(rows: dict[str, list[dict[str, object]]], n: int, args: argparse.Namespace) -> None:
    def med(tool: str, key: str) -> float:
        return statistics.median(float(r[key]) for r in rows[tool])  # type: ignore[arg-type]

    sc_wall = med("scamper", "wall_s")
    diffs = [median_diff(o["rtts"], s["rtts"])  # type: ignore[arg-type]
             for o, s in zip(rows["ours"], rows["scamper"], strict=True)]
    fdiffs = [median_diff(f["rtts"], s["rtts"])  # type: ignore[arg-type]
              for f, s in zip(rows["fping"], rows["scamper"], strict=False)]
    load = os.getloadavg()
    print(f"ping sweep: {n} lab targets, 1 echo each at {args.pps} pps; medians of {args.rounds} rounds; "
          f"socket mode {rows['ours'][0]['mode']}; load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'tool':<22}{'wall s':>9}{'x scamper':>11}{'replies %':>11}{'median RTT - scamper ms':>26}")
    ours_rep = statistics.median(replies_pct(r["rtts"], n) for r in rows["ours"])  # type: ignore[arg-type]
    print(f"{'tocsin (process)':<22}{med('ours', 'wall_s'):>9.3f}{med('ours', 'wall_s') / sc_wall:>11.2f}"
          f"{ours_rep:>11.2f}{statistics.median(d for d in diffs if d is not None):>+26.4f}")
    print(f"{'tocsin (sweep only)':<22}{med('ours', 'sweep_s'):>9.3f}{med('ours', 'sweep_s') / sc_wall:>11.2f}")
    sc_rep = statistics.median(replies_pct(r["rtts"], n) for r in rows["scamper"])  # type: ignore[arg-type]
    print(f"{'scamper -p ' + str(args.pps):<22}{sc_wall:>9.3f}{1.0:>11.2f}{sc_rep:>11.2f}{0.0:>+26.4f}")
    if rows["fping"]:
        fp_rep = statistics.median(replies_pct(r["rtts"], n) for r in rows["fping"])  # type: ignore[arg-type]
        fd = [d for d in fdiffs if d is not None]
        print(f"{'fping -i 0.1':<22}{med('fping', 'wall_s'):>9.3f}{med('fping', 'wall_s') / sc_wall:>11.2f}"
              f"{fp_rep:>11.2f}{(statistics.median(fd) if fd else float('nan')):>+26.4f}")
    print("targets: wall <= 1.2x scamper, 100% replies, |median RTT difference| <= 0.1 ms")


if __name__ == "__main__":
    sys.exit(main())
