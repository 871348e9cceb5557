"""``GET /api/v1/events`` and the live detection task, on a real Store and a loopback server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from coordinator.app import CONFIG, STORE
from coordinator.store import Store
from coordinator.verdict import service
from coordinator.verdict.settings import Settings
from coordinator.verdict.synthetic import Campaign, Fault, inside, load
from probe.record import time_to_epoch

T0 = 1_700_000_000.0


class _Config:
    def __init__(self, settings: Settings) -> None:
        self._s = settings

    def section(self, name: str) -> Any:
        if name != "verdict":
            raise KeyError(name)
        return self._s


async def _client(aiohttp_client: Any, tmp_path: Path, poll_s: float = 0.05) -> tuple[TestClient, Store]:
    store = await asyncio.to_thread(Store, tmp_path)
    app = web.Application()
    app[STORE] = store
    app[CONFIG] = _Config(Settings(poll_s=poll_s))
    service.setup(app)
    return await aiohttp_client(app), store


async def test_live_task_finds_the_blackout_and_serves_it(aiohttp_client: Any, tmp_path: Path) -> None:
    client, store = await _client(aiohttp_client, tmp_path)
    try:
        c = Campaign(t0=T0, duration_s=110, faults=[Fault(30, 75, "fail", inside), Fault(30, 75, "silent", inside)])
        await store.write(load, c.records(), c.heartbeats())
        events: list[dict[str, Any]] = []
        for _ in range(400):                       # bounded: 400 x 0.05 s
            ans = await client.get("/api/v1/events", params={"country": "KZ", "kind": "blackout"})
            assert ans.status == 200
            events = (await ans.json())["events"]
            if events and events[0]["state"] == "resolved":
                break
            await asyncio.sleep(0.05)
        assert [(e["kind"], e["scope"], e["state"]) for e in events] == [("blackout", "KZ", "resolved")]
        one = await (await client.get(f"/api/v1/events/{events[0]['event_id']}")).json()
        assert [t["state"] for t in one["transitions"]] == ["suspected", "confirmed", "resolved"]
        assert len(one["evidence"]) == events[0]["evidence_count"] > 0
        for params, count in (({"kind": "throttling"}, 0), ({"state": "resolved"}, 1), ({"asn": "AS64601"}, 0),
                              ({"since": "2023-11-14T22:20:00Z"}, 0), ({"until": str(T0 + 10)}, 0),
                              ({"country": "kz"}, 1)):
            ans = await client.get("/api/v1/events", params=params)
            assert (await ans.json())["count"] == count, params
    finally:
        await asyncio.to_thread(store.close)


async def test_bad_filters_are_refused_with_a_reason(aiohttp_client: Any, tmp_path: Path) -> None:
    client, store = await _client(aiohttp_client, tmp_path, poll_s=5)
    try:
        for params, words in (({"kind": "meltdown"}, "kind must be"), ({"since": "yesterday"}, "ISO 8601"),
                              ({"country": "KAZ"}, "two-letter"), ({"colour": "red"}, "unknown filter"),
                              ({"limit": "0"}, "limit")):
            ans = await client.get("/api/v1/events", params=params)
            assert ans.status == 400 and words in (await ans.json())["error"]
        assert (await client.get("/api/v1/events/ev-nope")).status == 404
    finally:
        await asyncio.to_thread(store.close)


def test_the_pause_after_a_step_coalesces_only_under_load() -> None:
    from coordinator.verdict.service import pause_after, wake_gap

    assert pause_after(0.02, 1.0) == 1.0          # the normal case: poll_s, as before
    assert pause_after(0.999, 1.0) == 1.0
    assert pause_after(2.5, 1.0) == 2.5           # a step longer than poll_s: at most half the time
    assert wake_gap(0.02, 1.0) == 0.25            # arriving results: a quarter of poll_s apart at least
    assert wake_gap(0.3, 1.0) == 0.6              # ... and twice the step: a third of the time at most
    assert wake_gap(0.8, 1.0) == 1.0 and wake_gap(2.5, 1.0) == 2.5    # never longer than without a wake


def _job(records: list[dict[str, Any]]) -> Any:
    from coordinator.store import prepare_measurements

    items = [{"prev": f"{i:064x}", "hash": f"{i + 1:064x}", "record": r} for i, r in enumerate(records)]
    return "p-uploader", items, prepare_measurements(records)


async def test_committed_uploads_wake_the_live_step(aiohttp_client: Any, tmp_path: Path) -> None:
    """With an 8 s poll, results committed by the ingest are judged after the 2 s wake gap, not at
    the next poll."""
    from coordinator.api_ingest import COMMITTER, Committer

    store = await asyncio.to_thread(Store, tmp_path)
    c = Campaign(t0=T0, duration_s=110, faults=[Fault(30, 75, "fail", inside)])      # the probes keep polling
    records = c.records()
    early = [r for r in records if time_to_epoch(r["start_time"]) < T0 + 20]    # before the fault
    await store.write(load, early, c.heartbeats())
    app = web.Application()
    app[STORE] = store
    app[CONFIG] = _Config(Settings(poll_s=8.0))
    app[COMMITTER] = committer = Committer()
    service.setup(app)
    client = await aiohttp_client(app)
    try:
        for _ in range(100):                       # the first step ran, at start-up (bounded: 100 x 0.05 s)
            if app[service.STATS].get("steps"):
                break
            await asyncio.sleep(0.05)
        assert app[service.STATS]["steps"] == 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        out, _ = await committer.commit(store, _job([r for r in records if r not in early]))
        assert out.inserted and committer.arrived.is_set()
        events: list[dict[str, Any]] = []
        for _ in range(120):                       # bounded: 120 x 0.05 s, below the 8 s poll
            events = (await (await client.get("/api/v1/events", params={"kind": "blackout"})).json())["events"]
            if events:
                break
            await asyncio.sleep(0.05)
        assert [e["scope"] for e in events] == ["KZ"]
        assert loop.time() - started < 6.0
        committer.arrived.clear()
        out, _ = await committer.commit(store, _job(records[-1:]))      # a duplicate stores nothing: no wake
        assert out.duplicates and not out.inserted and not committer.arrived.is_set()
    finally:
        await asyncio.to_thread(store.close)
