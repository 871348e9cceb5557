"""Atom feeds per country and the coordinator's Prometheus metrics, read from a real store."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from coordinator.alerts import service
from coordinator.alerts.settings import Settings
from coordinator.app import CONFIG, DATA_DIR, STORE
from coordinator.archive import synthetic
from coordinator.store import Store, insert_measurements

A = "{http://www.w3.org/2005/Atom}"


@pytest.fixture
async def server(tmp_path: Path, aiohttp_server: Any) -> AsyncIterator[TestServer]:
    store = Store(tmp_path)
    now = time.time()
    records = list(synthetic.records(2, 0.5, campaign_id=None))         # 2 probes x 30 steps x 6 tests
    store.write_sync(lambda c: insert_measurements(c, records[:300], received_ts=now - 200))
    store.write_sync(lambda c: insert_measurements(c, records[300:], received_ts=now - 10))
    store.write_sync(synthetic.add_probes, 3, now)        # probe 0 heard now, 1: 30 s ago, 2: 60 s ago
    store.write_sync(synthetic.add_scenario_events)
    store.write_sync(lambda c: synthetic.add_event(c, "ev-ir", "domestic_only", "country", "IR",
                                                   [("suspected", synthetic.T0)], cc="IR"))
    app = web.Application()
    config = SimpleNamespace(silent_after_s=45.0, section=lambda name: Settings(feed_entries=4))
    app[STORE], app[CONFIG], app[DATA_DIR] = store, config, str(tmp_path)
    service.setup(app)
    yield await aiohttp_server(app)
    store.close()


async def test_atom_feed_per_country(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        resp = await http.get(server.make_url("/feeds/KZ.atom"))
        assert resp.status == 200 and resp.content_type == "application/atom+xml"
        feed = ET.fromstring(await resp.read())
        entries = feed.findall(f"{A}entry")
        assert len(entries) == 4                                   # feed_entries
        titles = [e.findtext(f"{A}title") for e in entries]
        assert titles[0] == "blackout resolved: KZ" and titles[-1] == "throttling resolved: KZ/mobile"
        assert entries[0].find(f"{A}link").get("href").endswith("/event/ev-kz-blackout")  # type: ignore[union-attr]
        assert feed.findtext(f"{A}updated", "").endswith("Z")
        ir = ET.fromstring(await (await http.get(server.make_url("/feeds/ir.atom"))).read())
        assert [e.findtext(f"{A}title") for e in ir.findall(f"{A}entry")] == ["domestic only suspected: IR"]
        everything = ET.fromstring(await (await http.get(server.make_url("/feeds/all.atom"))).read())
        assert len(everything.findall(f"{A}entry")) == 4
        assert (await http.get(server.make_url("/feeds/KAZ.atom"))).status == 404


async def test_metrics_read_the_store(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        text = await (await http.get(server.make_url("/metrics"))).text()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert samples[("tocsin_measurements_stored_total", ())] == 360
    assert samples[("tocsin_ingest_rate_per_second", (("window", "60s"),))] == pytest.approx(60 / 60)
    assert samples[("tocsin_ingest_rate_per_second", (("window", "300s"),))] == pytest.approx(360 / 300)
    assert samples[("tocsin_probes", (("status", "connected"),))] == 2
    assert samples[("tocsin_probes", (("status", "silent"),))] == 1
    assert samples[("tocsin_probe_buffered_results", ())] == 0 + 10 + 20
    assert samples[("tocsin_events", (("kind", "blackout"), ("state", "resolved")))] == 1
    assert samples[("tocsin_events", (("kind", "domestic_only"), ("state", "suspected")))] == 1
    assert samples[("tocsin_event_transitions_total", ())] == 7
    assert samples[("tocsin_store_writer_queue_depth", ())] == 0
