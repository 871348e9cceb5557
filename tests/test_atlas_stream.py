"""The live stream against the stand-in: the stand-in drops the connection mid-way; every
connection event arrives exactly once and is stored once."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from coordinator.atlas import standin, storage
from coordinator.atlas.settings import Settings
from coordinator.atlas.stream import run_stream
from coordinator.store import Store

N = 12


def write_probes(path: Path, down: set[int]) -> None:
    path.write_text(json.dumps({"probes": [
        {"id": 910000 + i, "asn_v4": 64500, "country_code": "KZ", "address_v4": f"198.18.6.{i + 1}",
         "connected": i not in down} for i in range(N)]}))


@pytest.fixture
async def served(tls_ca: trustme.CA, tmp_path: Path) -> AsyncIterator[tuple[Any, int, Path]]:
    probes = tmp_path / "probes.json"
    write_probes(probes, set())
    app = standin.make_app(standin.default_samples(), probes, poll_s=3600, result_interval_s=0)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(ctx)
    runner, port = await standin.start(app, "127.0.0.1", 0, ctx)
    yield app, port, probes
    await runner.cleanup()


async def wait_for(cond: Any, seconds: float = 15.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def test_reconnect_loses_nothing_and_stores_nothing_twice(served: tuple[Any, int, Path],
                                                               tls_cafile: str, tmp_path: Path) -> None:
    app, port, probes = served
    state = app[standin.STATE]
    store = Store(tmp_path / "data")
    handled: list[tuple[str, dict[str, Any]]] = []
    counts = storage.Counts()

    def handle(kind: str, items: list[dict[str, Any]]) -> None:
        handled.extend((kind, i) for i in items)
        if kind == "connection":
            counts.add(store.write_sync(lambda c: storage.store_connection_events(c, items)))

    settings = Settings(stream_url=f"wss://127.0.0.1:{port}/stream/", ca_file=tls_cafile, backoff_s=0.05,
                        backoff_max_s=0.2, timeout_s=5, builtin_msm_ids=[], stream_overlap_s=300)
    stop = threading.Event()
    task = asyncio.create_task(asyncio.to_thread(run_stream, settings, handle, stop=stop, max_seconds=60))
    await wait_for(lambda: len(app[standin.SOCKETS]) == 1)
    await asyncio.sleep(0.2)  # let the subscription land
    down: set[int] = set()
    for i in range(N):
        down.add(i)
        write_probes(probes, down)
        state.reload_probes(force=True)
        if i == 4:  # the stand-in drops the connection; events 5.. are emitted while it is down
            for ws in list(app[standin.SOCKETS]):
                await ws.close()
        await asyncio.sleep(0.02)
    await wait_for(lambda: counts.events_inserted >= N)
    await asyncio.sleep(0.5)  # any late duplicate would show up now
    stop.set()
    stats = await task
    store.close()
    assert len(state.events) == N
    assert stats.connects >= 2                      # it did reconnect
    assert stats.duplicates_dropped >= 4            # the replay overlapped what it had seen
    keys = [(p["prb_id"], p["timestamp"], p["event"]) for _, p in handled]
    assert len(keys) == len(set(keys)) == N         # each event handed on exactly once
    assert counts.events_inserted == N and counts.events_duplicates == 0


async def test_stream_results_subscription(served: tuple[Any, int, Path], tls_cafile: str) -> None:
    app, port, _ = served
    got: list[dict[str, Any]] = []
    settings = Settings(stream_url=f"wss://127.0.0.1:{port}/stream/", ca_file=tls_cafile,
                        builtin_msm_ids=[1001], backoff_s=0.05)
    stop = threading.Event()
    task = asyncio.create_task(asyncio.to_thread(
        run_stream, settings, lambda kind, items: got.extend(items) if kind == "result" else None,
        stop=stop, max_seconds=30))
    await wait_for(lambda: len(app[standin.SOCKETS]) == 1)
    await asyncio.sleep(0.2)
    assert app[standin.STATE].tick_builtin() == N
    await wait_for(lambda: len(got) == N)
    stop.set()
    await task
    assert {r["msm_id"] for r in got} == {1001}
