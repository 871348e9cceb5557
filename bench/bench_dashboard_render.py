"""Dashboard: time to render a country's page with 1M measurements in range, in headless Chromium.

Ours: page.goto(/country/KZ?since&until) until the charts are drawn (``body[data-rendered]``), a fresh
browser profile each run (cold: plotly.js fetched and compiled again), and the third visit in that
profile (warm: Chromium's code cache holds plotly.js); the data served from the rollup.  Peer, same run: the ``sqlite3`` CLI computing the same buckets straight from the 1M raw
rows (what any page built on raw rows pays before it can draw anything).  Also printed: the
rollup's one-off catch-up rate, and which plotly.js bundle the dashboard served (docs/dashboard.md).

    python bench/bench_dashboard_render.py [--runs 5] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BASE_PROBES, BASE_HOURS, COPIES = 20, 14.0, 10      # 100,800 records x 10 = 1,008,000 in 140 h
SLICE_S = int(BASE_HOURS * 3600)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def make_db(workdir: Path) -> Path:
    from coordinator import db as dbmod
    from coordinator.archive import synthetic
    from coordinator.store import MEASUREMENT_COLUMNS

    data = workdir / "data"
    if (data / "ready").exists():
        return data
    shutil.rmtree(data, ignore_errors=True)
    conn = dbmod.open_writer(data)
    base = synthetic.fill(conn, BASE_PROBES, BASE_HOURS, campaign_id="bench")
    cols = ", ".join(MEASUREMENT_COLUMNS)
    shifted = ", ".join(
        "measurement_id || '-c' || :k" if c == "measurement_id" else
        "strftime('%Y-%m-%dT%H:%M:%S', start_ts + :shift, 'unixepoch') || substr(start_time, 20)" if c == "start_time"
        else "start_ts + :shift" if c == "start_ts" else c for c in MEASUREMENT_COLUMNS)
    for k in range(1, COPIES):
        conn.execute("BEGIN")
        conn.execute(f"INSERT INTO measurements ({cols}) SELECT {shifted} FROM measurements WHERE seq <= :n",
                     {"k": k, "shift": k * SLICE_S, "n": base})
        conn.execute("COMMIT")
        s = synthetic.Phases(start=synthetic.T0 + k * SLICE_S)
        synthetic.add_event(conn, f"ev-blackout-{k}", "blackout", "country", "KZ",
                            [("suspected", s.start + 7260), ("confirmed", s.start + 7380), ("resolved", s.start + 14520)],
                            restorations=[[s.start + 9000, s.start + 9600]])
    synthetic.add_scenario_events(conn)
    conn.close()
    (data / "ready").touch()
    return data


def peer_seconds(db: Path, since: float, until: float, bucket: int) -> float:
    from coordinator.dashboard.rollup import THROUGHPUT_KEY

    sql = (f"SELECT probe_asn, probe_access, CAST(start_ts / {bucket} AS INTEGER) * {bucket} AS b, "
           "sum(CASE WHEN test_name != 'throughput' THEN 1 ELSE 0 END), "
           "sum(CASE WHEN test_name != 'throughput' THEN success ELSE 0 END), "
           f"avg(CASE WHEN test_name = 'throughput' THEN json_extract(test_keys, '{THROUGHPUT_KEY}') END) "
           f"FROM measurements WHERE probe_cc = 'KZ' AND start_ts >= {since} AND start_ts < {until} "
           "GROUP BY 1, 2, 3")
    t = time.perf_counter()
    subprocess.run(["sqlite3", "-readonly", str(db), sql], check=True, capture_output=True)
    return time.perf_counter() - t


async def ours(data: Path, since: float, until: float, runs: int) -> tuple[list[float], list[float], int, float]:
    from aiohttp import web
    from playwright.async_api import async_playwright

    from coordinator.app import CONFIG, DATA_DIR, STORE
    from coordinator.dashboard import assets, rollup, service
    from coordinator.store import Store

    store = Store(data)
    t = time.perf_counter()
    folded = await store.write(rollup.refresh, 10_000)
    catch_up = time.perf_counter() - t
    plotly_js = assets.load()["plotly.min.js"]
    print(f"# plotly.js served: {plotly_js.source} ({len(plotly_js.body):,} bytes, {len(plotly_js.gzipped):,} gzipped)")
    app = web.Application()
    app[STORE], app[CONFIG], app[DATA_DIR] = store, None, str(data)
    service.setup(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/country/KZ?since={since}&until={until}"
    times: list[float] = []
    warm: list[float] = []
    try:
        async with async_playwright() as pw:
            for _ in range(runs):
                profile = tempfile.mkdtemp(prefix="tg-chromium-")
                ctx = await pw.chromium.launch_persistent_context(profile, executable_path="/usr/bin/chromium",
                                                                  args=CHROMIUM_ARGS, headless=True)
                page = await ctx.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
                t = time.perf_counter()
                await page.goto(url)
                await page.wait_for_selector('body[data-rendered="1"]', timeout=60000)
                times.append(time.perf_counter() - t)
                summary = await page.inner_text("#summary")
                drawn = await page.evaluate("() => document.querySelectorAll('#reach .shapelayer path').length")
                if not drawn:
                    raise RuntimeError("the reachability chart has no event shapes")
                for _ in range(2):       # a returning visitor: Chromium's code cache holds plotly.js by the 3rd visit
                    again = await ctx.new_page()
                    t = time.perf_counter()
                    await again.goto(url)
                    await again.wait_for_selector('body[data-rendered="1"]', timeout=60000)
                    warm_t = time.perf_counter() - t
                    await again.close()
                warm.append(warm_t)
                await ctx.close()
                shutil.rmtree(profile, ignore_errors=True)
                if errors:
                    raise RuntimeError(errors)
        print(f"# page says: {summary}; {drawn} event/restoration shapes drawn on the reachability chart")
    finally:
        await runner.cleanup()
        store.close()
    return times, warm, folded, catch_up


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tocsin-bench-dashboard")
    args = p.parse_args()
    from coordinator.archive import synthetic
    from coordinator.dashboard import rollup

    print(f"# {load()} (start)")
    data = make_db(args.workdir)
    since, until = synthetic.T0, synthetic.T0 + COPIES * SLICE_S
    times, warm, folded, catch_up = asyncio.run(ours(data, since, until, args.runs))
    bucket = rollup.level_for(since, until)
    peer = [peer_seconds(data / "tocsin.db", since, until, bucket) for _ in range(max(3, args.runs // 2))]
    if folded:
        print(f"# rollup catch-up (one-off, then incremental): {folded} rows in {catch_up:.1f} s = "
              f"{folded / catch_up:,.0f} rows/s")
    o, q = statistics.median(times), statistics.median(peer)
    print(f"\nCountry page, {COPIES * 100_800:,} measurements in range, {bucket} s buckets; medians "
          f"(ours of {len(times)} runs, peer of {len(peer)})")
    w = statistics.median(warm)
    print(f"{'visit':>14} | {'ours: page drawn in Chromium (s)':>34} | {'peer: sqlite3 raw GROUP BY alone (s)':>36} |"
          " ratio | load")
    print(f"{'first (cold)':>14} | {o:>34.3f} | {q:>36.3f} | {o / q:>5.2f} | {load()}")
    print(f"{'third (warm)':>14} | {w:>34.3f} | {q:>36.3f} | {w / q:>5.2f} | {load()}")
    print(f"# all runs, ours cold: {', '.join(f'{x:.3f}' for x in times)}; warm: "
          f"{', '.join(f'{x:.3f}' for x in warm)}; target < 2 s")


if __name__ == "__main__":
    main()
