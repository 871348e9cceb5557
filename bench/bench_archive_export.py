"""Archive export: measurements/s to JSONL.gz and peak RSS over 1M- and 10M-row ranges.

Ours: ``coordinator.archive.build.build`` of a range bundle in JSONL.gz only (gzip level: the
``[archive] gzip_level`` default unless ``--gzip-level``; ``[archive] export_workers`` processes: the
default unless ``--workers``, a list runs each), each run in a fresh process.  Peak RSS counts the
worker processes too: "RSS MB" is the process's own ru_maxrss plus its children's (RUSAGE_CHILDREN,
the largest child; exact for 2 workers, the builder and one spawned child) and "tree MB" the largest
sum of RSS over the process tree sampled every 50 ms with psutil.  CPU time: every thread of every
process.  Peer, same rows, same run:
``sqlite3 -readonly DB '.mode json' 'SELECT * ... ORDER BY start_ts, seq' | gzip -6`` (its peak RSS
and the pipeline's CPU time from /usr/bin/time).  CPU µs/row does not depend on the machine's load
as much as rows/s does.  One database holds 10M rows: 100,800 synthetic records inserted through
``insert_measurements`` then copied 99 times with new ids, each copy shifted in time (the copies are
made without the indexes the export does not use; ``start_ts``'s stays); the 1M range is the first
tenth of it.  The database is kept in --workdir between runs.  Compressed size: the first run of each
size also pipes our decompressed files through ``gzip -6`` (after the timing), so the bytes per row
of ours and of ``gzip -6`` of the very same lines are printed side by side.

    python bench/bench_archive_export.py [--runs 3] [--sizes 1000000,10000000] [--workdir DIR] [--gzip-level N]
                                         [--workers 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BASE_PROBES, BASE_HOURS = 20, 14.0          # 20 probes x 6 tests x 60/h x 14 h = 100,800 records
SLICE_S = int(BASE_HOURS * 3600)
BASE_ROWS = 100_800


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def make_db(workdir: Path, copies: int) -> Path:
    from coordinator import db as dbmod
    from coordinator.archive import synthetic
    from coordinator.store import MEASUREMENT_COLUMNS

    data = workdir / "data"
    marker = data / f"ready-{copies}"
    if marker.exists():
        return data
    conn = dbmod.open_writer(data)
    base = conn.execute("SELECT count(*) FROM measurements WHERE length(measurement_id) = 36").fetchone()[0]
    if base != BASE_ROWS:
        conn.close()
        shutil.rmtree(data, ignore_errors=True)
        conn = dbmod.open_writer(data)
        t = time.perf_counter()
        base = synthetic.fill(conn, BASE_PROBES, BASE_HOURS, campaign_id="bench")
        print(f"# inserted {base} synthetic records through insert_measurements in {time.perf_counter() - t:.1f} s")
    # The export reads by start_ts only: the copies go faster without the other indexes' upkeep.
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'measurements' "
                                "AND name LIKE 'idx_%' AND name != 'idx_measurements_start_ts'").fetchall():
        conn.execute(f"DROP INDEX {name}")
    cols = ", ".join(MEASUREMENT_COLUMNS)
    shifted = ", ".join(
        "measurement_id || '-c' || :k" if c == "measurement_id" else
        "strftime('%Y-%m-%dT%H:%M:%S', start_ts + :shift, 'unixepoch') || substr(start_time, 20)" if c == "start_time"
        else "start_ts + :shift" if c == "start_ts" else c for c in MEASUREMENT_COLUMNS)
    have = conn.execute("SELECT count(*) FROM measurements").fetchone()[0] // base
    t = time.perf_counter()
    for k in range(have, copies):
        conn.execute("BEGIN")
        conn.execute(f"INSERT INTO measurements ({cols}) SELECT {shifted} FROM measurements WHERE seq <= :n",
                     {"k": k, "shift": k * SLICE_S, "n": base})
        conn.execute("COMMIT")
    total = conn.execute("SELECT count(*) FROM measurements").fetchone()[0]
    print(f"# copied to {total} rows in {time.perf_counter() - t:.1f} s (indexes other than start_ts dropped)")
    conn.close()
    marker.touch()
    return data


def child(args: argparse.Namespace) -> None:
    from coordinator.archive import build
    from coordinator.archive.settings import Settings

    out = Path(tempfile.mkdtemp(prefix="tg-bench-out-"))
    try:
        t = time.perf_counter()
        path = build.build(args.data, build.range_spec(args.since, args.until),
                           Settings(dir=str(out), gzip_level=args.gzip_level, export_workers=int(args.workers)),
                           formats_=["jsonl"])
        seconds = time.perf_counter() - t
        m = json.loads((path / "manifest.json").read_text())
        size = sum(f["bytes"] for f in m["files"])
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    if not args.gzip6:           # else the parent measures gzip -6 of the files, then removes them
        shutil.rmtree(out, ignore_errors=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)          # workers are joined by now
    print(json.dumps({"rows": m["counts"]["measurements"], "seconds": seconds, "bytes": size,
                      "kept": str(path) if args.gzip6 else None,
                      "maxrss_mb": (usage.ru_maxrss + kids.ru_maxrss) / 1024,
                      "self_mb": usage.ru_maxrss / 1024, "child_mb": kids.ru_maxrss / 1024,
                      "cpu_s": usage.ru_utime + usage.ru_stime + kids.ru_utime + kids.ru_stime}))


def gzip6_size(bundle: Path) -> int:
    """Bytes of ``gzip -6`` of each of the bundle's decompressed ``.jsonl.gz`` files (the same lines)."""
    total = 0
    for path in sorted((bundle / "measurements").glob("*.jsonl.gz")):
        res = subprocess.run(f"gzip -dc {path} | gzip -6 | wc -c", shell=True, capture_output=True, text=True,
                             check=True)
        total += int(res.stdout)
    return total


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def ours(data: Path, since: float, until: float, level: int, workers: int, gzip6: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", "--data", str(data), "--since", str(since),
           "--until", str(until), "--gzip-level", str(level), "--workers", str(workers), *(["--gzip6"] if gzip6 else [])]
    with tempfile.TemporaryFile("w+") as out, subprocess.Popen(cmd, stdout=out, cwd=ROOT) as proc:
        ps, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            try:
                peak = max(peak, tree_rss(ps))
            except psutil.Error:
                pass
            time.sleep(0.05)
        if proc.returncode:
            raise SystemExit(f"export child failed ({proc.returncode})")
        out.seek(0)
        result: dict[str, Any] = json.loads(out.read().strip().splitlines()[-1])
    result["tree_mb"] = peak / 2**20
    if result["kept"]:           # measured after the run, outside the measured process tree
        result["gzip6_bytes"] = gzip6_size(Path(result["kept"]))
        shutil.rmtree(Path(result["kept"]).parent, ignore_errors=True)
    return result


def peer(data: Path, since: float, until: float) -> dict[str, float]:
    db = data / "tocsin.db"
    out = Path(tempfile.mkdtemp(prefix="tg-bench-peer-")) / "out.json.gz"
    sql = f"SELECT * FROM measurements WHERE start_ts >= {since} AND start_ts < {until} ORDER BY start_ts, seq"
    script = f"/usr/bin/time -f 'RSS %M' sqlite3 -readonly {db} '.mode json' \"{sql}\" | gzip -6 > {out}"
    t = time.perf_counter()
    res = subprocess.run(["/usr/bin/time", "-f", "CPU %U %S", "bash", "-o", "pipefail", "-c", script],
                         capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - t
    rss = next(int(line.split()[1]) for line in res.stderr.splitlines() if line.startswith("RSS "))
    cpu = next(float(a) + float(b) for _, a, b in (line.split() for line in res.stderr.splitlines()
                                                  if line.startswith("CPU ")))
    size = out.stat().st_size
    shutil.rmtree(out.parent)
    return {"seconds": seconds, "maxrss_mb": rss / 1024, "bytes": size, "cpu_s": cpu}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path)
    p.add_argument("--since", type=float)
    p.add_argument("--until", type=float)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--sizes", default="1000000,10000000")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tocsin-bench-archive")
    p.add_argument("--gzip-level", type=int, default=None, help="ours; default: the [archive] gzip_level default")
    p.add_argument("--workers", default=None, help="ours, comma-separated; default: [archive] export_workers")
    p.add_argument("--gzip6", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    from coordinator.archive.settings import Settings

    args.gzip_level = Settings().gzip_level if args.gzip_level is None else args.gzip_level
    args.workers = str(Settings().export_workers) if args.workers is None else args.workers
    if args.child:
        child(args)
        return
    from coordinator.archive import formats, synthetic

    sizes = [int(s) for s in args.sizes.split(",")]
    copies = -(-max(sizes) // 100_800)
    print(f"# {load()} (start)")
    data = make_db(args.workdir, copies)
    print(f"# {load()} (database ready)", flush=True)
    workers = [int(w) for w in args.workers.split(",")]
    print(f"\nJSONL.gz export (ours: gzip level {args.gzip_level}, {formats.gzip_engine(args.gzip_level)}; peer: gzip -6),"
          f" medians of {args.runs} runs"
          " (peak RSS: max over runs, worker processes included; CPU: user+sys of every thread/process, per row)")
    print(f"{'rows':>10} | {'workers':>7} | {'ours rows/s':>11} | {'RSS MB':>6} | {'tree MB':>7} | {'B/row':>5} |"
          f" {'CPU us/row':>10} | {'sqlite3|gzip rows/s':>19} | {'peer RSS MB':>11} | {'B/row':>5} |"
          f" {'CPU us/row':>10} | {'ratio':>5} | load", flush=True)
    for size in sizes:
        slices = -(-size // 100_800)
        since, until = synthetic.T0, synthetic.T0 + slices * SLICE_S
        o: dict[int, list[dict[str, float]]] = {w: [] for w in workers}
        q = []
        for run in range(args.runs):                # interleaved, so all see the same load
            for w in workers:
                o[w].append(ours(data, since, until, args.gzip_level, w, gzip6=run == 0 and w == workers[0]))
            q.append(peer(data, since, until))
        n = o[workers[0]][0]["rows"]
        q_rate = statistics.median(n / r["seconds"] for r in q)
        q_cpu = statistics.median(r["cpu_s"] for r in q) / n * 1e6
        for w in workers:
            runs = o[w]
            o_rate = statistics.median(n / r["seconds"] for r in runs)
            o_cpu = statistics.median(r["cpu_s"] for r in runs) / n * 1e6
            print(f"{n:>10} | {w:>7} | {o_rate:>11,.0f} | {max(r['maxrss_mb'] for r in runs):>6.1f} |"
                  f" {max(r['tree_mb'] for r in runs):>7.1f} | {runs[0]['bytes'] / n:>5.0f} | {o_cpu:>10.1f} |"
                  f" {q_rate:>19,.0f} | {max(r['maxrss_mb'] for r in q):>11.1f} | {q[0]['bytes'] / n:>5.0f} |"
                  f" {q_cpu:>10.1f} | {o_rate / q_rate:>5.2f} | {load()}", flush=True)
            print(f"#   ours x{w} per run (rows/s, RSS MB self+child, tree MB): "
                  f"{[(round(n / r['seconds']), round(r['self_mb'], 1), round(r['child_mb'], 1), round(r['tree_mb'], 1)) for r in runs]}",
                  flush=True)
        print(f"#   peer per run (rows/s, MB): {[(round(n / r['seconds']), round(r['maxrss_mb'], 1)) for r in q]}",
              flush=True)
        first = o[workers[0]][0]
        print(f"#   compressed size: ours {first['bytes'] / n:.1f} B/row, gzip -6 of the same lines"
              f" {first['gzip6_bytes'] / n:.1f} B/row (ours / gzip -6 = {first['bytes'] / first['gzip6_bytes']:.3f})",
              flush=True)
    print(f"# {load()} (end); target: >= 100,000 rows/s, peak RSS the same for every size")


if __name__ == "__main__":
    main()
