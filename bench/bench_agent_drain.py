"""Recovery: a probe with 100,000 buffered results drains them after reconnection.

Our figure: seconds from starting the agent (the line is back) until the coordinator has
committed all 100,000 (default coordinator settings, default agent batch size).  Peer/ceiling: the
same rows inserted with raw ``sqlite3.executemany`` in one transaction, in the same run.  Medians of 3.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchlib import start_coordinator  # noqa: E402

from coordinator import db as dbmod  # noqa: E402
from coordinator.store import _INSERT_SQL, row_from_record  # noqa: E402
from probe.agent.cli import do_register  # noqa: E402
from probe.agent.outbox import Outbox  # noqa: E402
from probe.record import make_record  # noqa: E402

N, RUNS = 100_000, 3
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TOCSIN_ADMIN_TOKEN": "bench"}


def start(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    return start_coordinator(data, ENV)


def count(data: Path) -> int:
    conn = sqlite3.connect(f"file:{data / 'tocsin.db'}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute("SELECT count(*) FROM measurements").fetchone()[0])
    finally:
        conn.close()


def one_run() -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="tc-drain-") as tmp:
        data, state = Path(tmp) / "coord", Path(tmp) / "probe"
        data.mkdir()
        coord, url = start(data)
        agent = None
        try:
            invite = subprocess.run([sys.executable, "-m", "coordinator", "invite", "--data", str(data)], cwd=ROOT,
                                    env=ENV, capture_output=True, text=True, check=True).stdout.strip()
            asyncio.run(do_register([url], invite, state, {"cc": "KZ", "asn": 9198}))
            p = json.loads((state / "identity.json").read_text())["probe"]
            box = Outbox(state / "outbox.db")
            now = time.time()
            records = [make_record(test_name="http", test_version="1.0.0", target=f"https://site{i % 50}.kz/",
                                   start_time=datetime.fromtimestamp(now - 86400 + i * 0.8, UTC), runtime_s=0.2,
                                   success=False, failure="timeout", test_keys={"status": None, "redirects": []},
                                   probe_id=p["probe_id"], probe_cc=p["cc"], probe_asn=p["asn"], probe_access=p["access"],
                                   annotations={"target_category": "domestic", "target_cc": "KZ",
                                                "target_group": f"site{i % 50}", "vantage": "inside"})
                       for i in range(N)]
            for k in range(0, N, 10_000):
                box.append_many(records[k:k + 10_000])
            box.close()
            t0 = time.perf_counter()
            agent = subprocess.Popen([sys.executable, "-m", "probe", "run", "--state", str(state), "--poll-interval", "30"],
                                     cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.time() + 1200
            while count(data) < N:
                if time.time() > deadline:
                    raise TimeoutError(f"only {count(data)} of {N} after 1200 s")
                time.sleep(0.2)
            drain = time.perf_counter() - t0
        finally:
            if agent:
                agent.terminate()
                agent.wait(timeout=30)
            coord.terminate()
            coord.wait(timeout=30)
        conn = dbmod.open_writer(Path(tmp) / "raw")
        rows = [row_from_record(r, time.time()) for r in records]
        t0 = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(_INSERT_SQL, rows)
        conn.execute("COMMIT")
        ceiling = time.perf_counter() - t0
        conn.close()
        return drain, ceiling


def main() -> None:
    results = [one_run() for _ in range(RUNS)]
    drain = statistics.median(r[0] for r in results)
    ceiling = statistics.median(r[1] for r in results)
    load = os.getloadavg()
    print(f"recovery: {N:,} buffered results, agent started = reconnection, median of {RUNS}; "
          f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'path':<58}{'seconds':>10}{'results/s':>12}")
    print(f"{'tocsin agent drain to coordinator (signed, committed)':<58}{drain:>10.1f}{N / drain:>12,.0f}")
    print(f"{'raw sqlite3.executemany of the same rows (ceiling)':<58}{ceiling:>10.1f}{N / ceiling:>12,.0f}")
    print(f"{'ratio ours / ceiling (time)':<58}{drain / ceiling:>10.1f}")
    print("runs (drain/ceiling s):", ", ".join(f"{a:.1f}/{b:.1f}" for a, b in results))


if __name__ == "__main__":
    main()
