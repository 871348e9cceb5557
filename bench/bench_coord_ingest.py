"""Ingest throughput: 20 concurrent probe clients over HTTP into SQLite, against raw executemany.

Our figure: results/s from first request to last acknowledgement (every batch signed, gzip,
hash-chained, validated, committed before the answer).  Batches are the agent's: its default batch
size and its own encoder (``probe.agent.uploader``).  Peer/ceiling: the same rows inserted with
``sqlite3.executemany`` in one transaction into the same schema, in the same run.  Medians of 3.
The CPU seconds the coordinator process and this client process spent are printed beside it: both
share the machine's cores.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchlib import start_coordinator  # noqa: E402

from coordinator import db as dbmod  # noqa: E402
from coordinator.store import _INSERT_SQL, row_from_record  # noqa: E402
from probe import signing  # noqa: E402
from probe.agent.outbox import Item  # noqa: E402
from probe.agent.uploader import Uploader, encode  # noqa: E402
from probe.record import canonical_json, make_record  # noqa: E402

BATCH = int(inspect.signature(Uploader).parameters["batch_items"].default)   # the agent's default
CLIENTS, PER_CLIENT, RUNS = 20, 5000, 3
ADMIN = "bench-admin"


def start(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    return start_coordinator(data, {"TOCSIN_ADMIN_TOKEN": ADMIN, "TOCSIN_RATE_RECORDS_PER_S": "1e9",
                                    "TOCSIN_RATE_BURST_RECORDS": "1000000000", "TOCSIN_RATE_REQUESTS_PER_S": "1e6",
                                    "TOCSIN_RATE_BURST_REQUESTS": "1000000"})


async def register(session: aiohttp.ClientSession, url: str) -> tuple[Any, dict[str, Any]]:
    async with session.post(url + "/api/v1/invites", headers={"Authorization": f"Bearer {ADMIN}"}) as r:
        invite = (await r.json())["invite"]
    key = signing.new_key()
    body = orjson.dumps({"invite": invite, "public_key": signing.public_key_b64(key), "cc": "KZ", "asn": 9198})
    async with session.post(url + "/api/v1/register", data=body,
                            headers=signing.sign_headers(key, "POST", "/api/v1/register", "-", body)) as r:
        return key, (await r.json())["probe"]


def make_batches(probe: dict[str, Any], base: int) -> tuple[list[bytes], list[dict[str, Any]]]:
    head, batches, records = signing.GENESIS, [], []
    for b in range(0, PER_CLIENT, BATCH):
        items = []
        for i in range(min(BATCH, PER_CLIENT - b)):
            n = base + b + i
            r = make_record(test_name="tcp", test_version="1.0.0", target=f"192.0.2.{n % 250}:443",
                            start_time=datetime.fromtimestamp(time.time() - 3600 + n / 1000, UTC), runtime_s=0.012,
                            success=n % 9 != 0, failure=None if n % 9 else "timeout", test_keys={"connect_ms": n % 97 / 3},
                            probe_id=probe["probe_id"], probe_cc=probe["cc"], probe_asn=probe["asn"],
                            probe_access=probe["access"], annotations={"target_category": "domestic", "target_cc": "KZ",
                                                                       "target_group": "g", "vantage": "inside"})
            raw = canonical_json(r)                      # what the outbox keeps and the hash covers
            h = signing.chain_hash_raw(head, raw)
            items.append(Item(n, "record", r["measurement_id"], raw, head, h, len(raw)))
            records.append(r)
            head = h
        batches.append(encode(items))                    # the agent's own wire encoder (gzip JSON)
    return batches, records


async def client(session: aiohttp.ClientSession, url: str, key: Any, pid: str, batches: list[bytes]) -> int:
    done = 0
    for body in batches:
        h = signing.sign_headers(key, "POST", "/api/v1/measurements", pid, body)
        h["Content-Type"] = "application/gzip"
        async with session.post(url + "/api/v1/measurements", data=body, headers=h) as r:
            doc = await r.json()
            if r.status != 200:
                raise RuntimeError(f"{r.status} {doc}")
            done += doc["inserted"]
    return done


async def one_run() -> tuple[float, float, float, float]:
    with tempfile.TemporaryDirectory(prefix="tc-bench-") as tmp:
        data = Path(tmp) / "coord"
        data.mkdir()
        proc, url = start(data)
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CLIENTS)) as s:
                probes = [await register(s, url) for _ in range(CLIENTS)]
                work = [make_batches(p, k * PER_CLIENT) for k, (_, p) in enumerate(probes)]
                server, me = psutil.Process(proc.pid), psutil.Process()
                s0, c0, t0 = sum(server.cpu_times()[:2]), sum(me.cpu_times()[:2]), time.perf_counter()
                counts = await asyncio.gather(*(client(s, url, key, p["probe_id"], w[0])
                                                for (key, p), w in zip(probes, work, strict=True)))
                ours = sum(counts) / (time.perf_counter() - t0)
                server_cpu = (sum(server.cpu_times()[:2]) - s0) / sum(counts)
                client_cpu = (sum(me.cpu_times()[:2]) - c0) / sum(counts)
                assert sum(counts) == CLIENTS * PER_CLIENT
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        # ceiling: the same rows, raw executemany, one transaction, same schema and indexes
        raw = Path(tmp) / "raw"
        conn = dbmod.open_writer(raw)
        rows = [row_from_record(r, time.time()) for w in work for r in w[1]]
        t0 = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(_INSERT_SQL, rows)
        conn.execute("COMMIT")
        ceiling = len(rows) / (time.perf_counter() - t0)
        conn.close()
        assert sqlite3.connect(raw / "tocsin.db").execute("SELECT count(*) FROM measurements").fetchone()[0] == len(rows)
        return ours, ceiling, server_cpu, client_cpu


def main() -> None:
    results = [asyncio.run(one_run()) for _ in range(RUNS)]
    ours = statistics.median(r[0] for r in results)
    ceiling = statistics.median(r[1] for r in results)
    server_cpu = statistics.median(r[2] for r in results)
    client_cpu = statistics.median(r[3] for r in results)
    load = os.getloadavg()
    print(f"ingest: {CLIENTS} probe clients x {PER_CLIENT} results, batches of {BATCH}, median of {RUNS}; "
          f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'path':<52}{'results/s':>12}")
    print(f"{'tocsin HTTP ingest (signed gzip batches, committed)':<52}{ours:>12,.0f}")
    print(f"{'raw sqlite3.executemany, same rows (ceiling)':<52}{ceiling:>12,.0f}")
    print(f"{'ratio ours / ceiling':<52}{ours / ceiling:>12.2f}")
    print(f"{'target >= 10,000 results/s':<52}{'met' if ours >= 10000 else 'NOT met':>12}")
    print(f"{'coordinator CPU per result (µs, all threads)':<52}{server_cpu * 1e6:>12.0f}")
    print(f"{'client CPU per result (µs, 20 clients, 1 process)':<52}{client_cpu * 1e6:>12.0f}")
    print("runs (ours/ceiling):", ", ".join(f"{r[0]:,.0f}/{r[1]:,.0f}" for r in results))


if __name__ == "__main__":
    main()
