"""Polling fetch and the closed loop against the stand-in, with a real store and a credit budget."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from coordinator.atlas import closedloop, fetch, standin, storage
from coordinator.atlas.client import Client
from coordinator.atlas.settings import Settings
from coordinator.store import Store

KZ = [{"id": 920000 + i, "asn_v4": 9198, "country_code": "KZ", "address_v4": f"198.18.7.{i + 1}", "connected": True}
      for i in range(4)]
DE = [{"id": 930000 + i, "asn_v4": 3320, "country_code": "DE", "address_v4": f"198.18.8.{i + 1}", "connected": True}
      for i in range(4)]
TARGETS = ["198.18.1.10", "198.18.1.11"]


@pytest.fixture
async def env(tls_ca: trustme.CA, tls_cafile: str, tmp_path: Path) -> AsyncIterator[tuple[Any, Settings, Store, Path]]:
    probes = tmp_path / "probes.json"
    probes.write_text(json.dumps({"probes": KZ + DE, "unreachable": [TARGETS[1]]}))
    app = standin.make_app(standin.default_samples(), probes, poll_s=3600, result_interval_s=0)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(ctx)
    runner, port = await standin.start(app, "127.0.0.1", 0, ctx)
    settings = Settings(server=f"127.0.0.1:{port}", ca_file=tls_cafile, api_key="k", countries=["KZ", "DE"],
                        builtin_msm_ids=[1001], backoff_s=0.01, backoff_max_s=0.02, probes_inside=3,
                        probes_outside=3, credit_budget=400, lookback_s=600, outside_countries=["DE"])
    store = Store(tmp_path / "data")
    yield app, settings, store, probes
    store.close()
    await runner.cleanup()


def add_event(store: Store, cc: str = "KZ") -> None:
    now = time.time()
    spec = {"targets": [{"name": t, "address": t, "cc": cc, "category": "domestic", "group": "g",
                         "tests": ["ping", "traceroute"]} for t in TARGETS]}

    def write(c: Any) -> None:
        c.execute("INSERT INTO campaigns (campaign_id, name, spec, created_ts) VALUES ('c1', 'kz', ?, ?)",
                  (json.dumps(spec), now))
        c.execute("INSERT INTO events (event_id, kind, scope_type, scope, cc, state, confidence, signals, start_ts, "
                  "detector_version, updated_ts) VALUES ('ev1', 'blackout', 'country', ?, ?, 'suspected', 0.5, "
                  "'[]', ?, 't', ?)", (cc, cc, now, now))
        c.execute("INSERT INTO event_transitions (event_id, state, at_ts, recorded_ts, payload) "
                  "VALUES ('ev1', 'suspected', ?, ?, '{}')", (now, now))
    store.write_sync(write)


async def test_fetch_pass(env: tuple[Any, Settings, Store, Path]) -> None:
    app, settings, store, probes = env
    state = app[standin.STATE]
    state.tick_builtin()
    doc = json.loads(probes.read_text())
    doc["probes"][0]["connected"] = False
    probes.write_text(json.dumps(doc))
    state.reload_probes(force=True)
    counts = await asyncio.to_thread(fetch.fetch_once, store, Client(settings), settings)
    assert counts.probes >= 8 and counts.inserted == 8 and counts.events_inserted == 1 and not counts.reasons
    got = await store.read(lambda c: c.execute("SELECT cc, event FROM atlas_connection_events").fetchall())
    assert [tuple(r) for r in got] == [("KZ", "disconnect")]
    rows = await store.read(lambda c: [tuple(r) for r in c.execute("SELECT probe_cc, probe_asn FROM measurements")])
    assert sorted(set(rows)) == [("DE", 3320), ("KZ", 9198)]
    again = await asyncio.to_thread(fetch.fetch_once, store, Client(settings), settings)
    assert again.inserted == 0 and again.events_inserted == 0
    # a probe that was cut off uploads a result measured 20 minutes ago, after the cursor moved on
    late = state.one_off_result(1001, {"type": "ping", "target": "193.0.14.129"}, state.emulated[920001])
    late["timestamp"] -= 1200
    state.add_result(late)
    third = await asyncio.to_thread(fetch.fetch_once, store, Client(settings), settings)
    assert third.inserted == 1 and third.duplicates >= 8


async def test_fetch_failure_keeps_cursor(env: tuple[Any, Settings, Store, Path]) -> None:
    app, settings, store, _ = env
    app[standin.FAULTS].append({"path": "/api/v2/measurements/7000/", "status": 503, "count": 100})
    counts = await asyncio.to_thread(fetch.fetch_once, store, Client(settings), settings)
    assert any("HTTP 503" in r for r in counts.reasons)
    assert await store.read(lambda c: storage.get_state(c, fetch.CURSOR)) is None


async def test_closed_loop_within_budget(env: tuple[Any, Settings, Store, Path]) -> None:
    _, settings, store, _ = env
    await asyncio.to_thread(fetch.fetch_once, store, Client(settings), settings)   # learn the probes
    add_event(store)
    report = await asyncio.to_thread(closedloop.run_once, store, Client(settings), settings)
    # per target: ping in/out 2 x 18 credits, traceroute in/out 2 x 120; budget 400 allows 6 one-offs
    assert len(report.created) == 6 and report.credits == 18 * 4 + 120 * 2
    assert sum("credit budget" in s for s in report.skipped) == 2
    rows = await store.read(lambda c: [tuple(r) for r in c.execute(
        "SELECT type, target, vantage, credits FROM atlas_created_measurements ORDER BY msm_id")])
    assert {(r[0], r[1], r[2]) for r in rows} >= {("ping", TARGETS[0], "inside"), ("ping", TARGETS[1], "outside")}
    assert sum(r[3] for r in rows) <= settings.credit_budget
    assert report.results == 6 * 3
    evidence = await store.read(lambda c: c.execute("SELECT COUNT(*) FROM event_evidence WHERE event_id = 'ev1'")
                                .fetchone()[0])
    assert evidence == 18
    ann = await store.read(lambda c: c.execute(
        "SELECT target, success, probe_cc, annotations FROM measurements WHERE test_name = 'ping' "
        "AND annotations LIKE '%target_cc%'").fetchall())
    for target, success, probe_cc, text in ann:
        a = json.loads(text)
        assert a["target_cc"] == "KZ" and a["vantage"] == ("inside" if probe_cc == "KZ" else "outside")
        assert bool(success) == (target == TARGETS[0])
    again = await asyncio.to_thread(closedloop.run_once, store, Client(settings), settings)
    assert again.created == [] and again.results == 0


async def test_closed_loop_without_key_records_nothing(env: tuple[Any, Settings, Store, Path]) -> None:
    _, settings, store, _ = env
    settings.api_key = ""
    add_event(store)
    report = await asyncio.to_thread(closedloop.run_once, store, Client(settings), settings)
    assert report.created == [] and any("API key" in s for s in report.skipped)
