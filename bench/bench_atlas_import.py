"""Atlas import (parse, normalise, store) vs ripe.atlas.sagan's bare parse, per type, same results, same run.

The result set is the shared samples replicated with varied prb_id and timestamp.  Ours: the
``atlas import`` path (orjson, sagan's parse, record, the rows ``insert_measurements`` would write
into a fresh SQLite file, the raw result into ``atlas_raw``, the WAL checkpointed at the end).  Peer: ``Result.get(json_text)`` of sagan 2.0.1 on the
same lines.  Median of N runs (default 3).  Target: ours >= 50% of sagan's rate.

    python bench/bench_atlas_import.py [--ping N] [--traceroute N] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ripe.atlas.sagan import Result

from coordinator.atlas.importer import import_paths
from coordinator.atlas.standin import default_samples
from coordinator.db import open_writer


def make_lines(kind: str, n: int) -> list[str]:
    base = [json.loads(x) for x in (default_samples() / f"{kind}.jsonl").read_text().splitlines()]
    out = []
    for i in range(n):
        r = dict(base[i % len(base)])
        r["prb_id"] = 100000 + i
        r["timestamp"] = 1_641_000_000 + i
        out.append(json.dumps(r, separators=(",", ":")))
    return out


def time_sagan(lines: list[str]) -> tuple[float, float]:
    """(results/s, CPU µs per result) of sagan's bare parse."""
    t, c = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for line in lines:
            Result.get(line, on_error=Result.ACTION_IGNORE, on_malformation=Result.ACTION_IGNORE)
    return len(lines) / (time.perf_counter() - t), (time.process_time() - c) / len(lines) * 1e6


def time_ours(lines: list[str]) -> tuple[float, float]:
    """(results/s, CPU µs per result) of the import."""
    with tempfile.TemporaryDirectory(prefix="tf-bench-") as d:
        path = Path(d) / "in.jsonl"
        path.write_text("\n".join(lines) + "\n")
        conn = open_writer(Path(d) / "data")
        t, c = time.perf_counter(), time.process_time()
        counts = import_paths(conn, [path])
        rate, cpu = len(lines) / (time.perf_counter() - t), (time.process_time() - c) / len(lines) * 1e6
        conn.close()
    if counts.inserted != len(lines):
        raise SystemExit(f"import stored {counts.inserted} of {len(lines)}: {counts.reasons}")
    return rate, cpu


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ping", type=int, default=30000)
    p.add_argument("--traceroute", type=int, default=5000)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)")
    print(f"{'type':<11} {'results':>8} {'ours/s':>10} {'sagan/s':>10} {'ratio':>7}  target >= 0.50"
          f"   CPU us/result: {'ours':>7} {'sagan':>7} {'ratio':>6}")
    ok = True
    for kind, n in (("ping", args.ping), ("traceroute", args.traceroute)):
        lines = make_lines(kind, n)
        ours, peer = [], []
        for _ in range(args.runs):
            peer.append(time_sagan(lines))
            ours.append(time_ours(lines))
        o, s = statistics.median(r for r, _ in ours), statistics.median(r for r, _ in peer)
        oc, sc = statistics.median(c for _, c in ours), statistics.median(c for _, c in peer)
        ok &= o / s >= 0.5
        print(f"{kind:<11} {n:>8} {o:>10.0f} {s:>10.0f} {o / s:>7.2f}  {'met' if o / s >= 0.5 else 'SHORT':<14}"
              f"   {'':>14}{oc:>7.1f} {sc:>7.1f} {sc / oc:>6.2f}")
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min); medians of {args.runs} runs, one core (no parallelism)")
    if not ok:
        print("SHORT: below the 50% target (see the ratio column)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
