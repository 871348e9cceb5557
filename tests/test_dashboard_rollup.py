"""Dashboard rollups: complete at every level, late uploads land in their old buckets, timeline JSON."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from coordinator import db as dbmod
from coordinator.app import CONFIG, DATA_DIR, STORE
from coordinator.archive import synthetic
from coordinator.dashboard import rollup, service
from coordinator.store import Store, insert_measurements
from probe.record import make_record


def test_rollup_is_complete_and_takes_late_uploads(tmp_path: Path) -> None:
    conn = dbmod.open_writer(tmp_path)
    synthetic.fill(conn, 3, 1.0)
    assert rollup.lag(conn) == 3 * 60 * 6
    assert rollup.refresh(conn) == 3 * 60 * 6 and rollup.refresh(conn) == 0
    total, ok = conn.execute("SELECT count(*), sum(success) FROM measurements").fetchone()
    for level in rollup.LEVELS:
        assert tuple(conn.execute("SELECT sum(n), sum(ok) FROM dashboard_rollup WHERE bucket_s = ?", (level,)).fetchone()) == (
            total, ok)
    tput = conn.execute("SELECT sum(tput_n), sum(tput_sum) FROM dashboard_rollup WHERE bucket_s = 600").fetchone()
    direct = conn.execute("SELECT count(*), sum(json_extract(test_keys, '$.goodput_bps')) FROM measurements "
                          "WHERE test_name = 'throughput' AND success = 1").fetchone()
    assert tput[0] == direct[0] and tput[1] == pytest.approx(direct[1])
    late = make_record(test_name="tcp", test_version="1.0.0", target="198.18.100.10:443",
                       start_time=datetime.fromtimestamp(synthetic.T0 + 5, UTC), runtime_s=0.1, success=False,
                       failure="timeout", test_keys={}, probe_id="late", probe_cc="KZ", probe_asn=9198,
                       probe_access="fixed")
    insert_measurements(conn, [late])
    assert rollup.refresh(conn) == 1
    row = conn.execute("SELECT n, ok FROM dashboard_rollup WHERE bucket_s = 10 AND cc = 'KZ' AND bucket_ts = ? AND asn = 9198"
                       " AND test_name = 'tcp'", (synthetic.T0,)).fetchone()
    assert tuple(row) == (2, 1)   # probe 0 (AS9198) at T0 plus the late one


def test_level_choice() -> None:
    assert rollup.level_for(0, 3600) == 10
    assert rollup.level_for(0, 86400) == 60
    assert rollup.level_for(0, 30 * 86400) == 3600


@pytest.fixture
async def server(tmp_path: Path, aiohttp_server: Any) -> AsyncIterator[tuple[TestServer, Path]]:
    store = Store(tmp_path)
    store.write_sync(synthetic.fill, 4, 3.0)
    store.write_sync(synthetic.add_scenario_events)
    app = web.Application()
    app[STORE], app[CONFIG], app[DATA_DIR] = store, None, str(tmp_path)
    service.setup(app)
    yield await aiohttp_server(app), tmp_path
    store.close()


async def test_timeline_json_matches_the_measurements(server: tuple[TestServer, Path]) -> None:
    srv, path = server
    async with aiohttp.ClientSession() as http:
        data = await (await http.get(srv.make_url("/dashboard/api/country/kz/timeline"))).json()
        assert data["bucket_s"] == 10 and data["measurements"] == 4 * 180 * 6
        assert {s["label"] for s in data["series"]} == {"AS9198 fixed", "AS48503 mobile", "AS29355 mobile",
                                                        "AS21299 datacenter"}
        fixed = next(s for s in data["series"] if s["asn"] == 9198)
        conn = sqlite3.connect(dbmod.db_path(path))
        t = synthetic.T0 + 2 * 3600 + 300              # inside the blackout
        n, ok = conn.execute("SELECT count(*), sum(success) FROM measurements WHERE probe_asn = 9198 AND "
                             "test_name != 'throughput' AND start_ts >= ? AND start_ts < ?", (t, t + 10)).fetchone()
        conn.close()
        i = fixed["t"].index("2022-01-05 02:05:00")
        assert (fixed["n"][i], fixed["reach"][i]) == (n, ok / n) == (5, 0.0)
        kinds = {e["kind"]: e for e in data["events"]}
        assert kinds["blackout"]["restorations"] == [["2022-01-05 02:30:00", "2022-01-05 02:40:00"]]
        hour = await (await http.get(srv.make_url("/dashboard/api/country/KZ/timeline"),
                                     params={"since": "2022-01-05T00:00:00Z", "until": "2022-01-06T00:00:00Z"})).json()
        assert hour["bucket_s"] == 60 and hour["measurements"] == data["measurements"]
        assert (await http.get(srv.make_url("/dashboard/api/country/KZ/timeline"), params={"since": "x"})).status == 400
        assert (await http.get(srv.make_url("/country/KAZ"))).status == 404
        assert (await http.get(srv.make_url("/event/nope"))).status == 404
        ev = await (await http.get(srv.make_url("/dashboard/api/event/ev-kz-blackout"))).json()
        assert ev["evidence_count"] == 50 and all(not m["success"] for m in ev["evidence"])
        js = await http.get(srv.make_url("/static/plotly.min.js"))
        assert js.status == 200 and len(await js.read()) > 1_000_000
        assert (await http.get(srv.make_url("/static/..%2Fservice.py"))).status == 404
