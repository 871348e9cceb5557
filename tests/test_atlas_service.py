"""Atlas inside the coordinator app: polling, stream and closed loop against the stand-in."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from pathlib import Path
from typing import Any

import trustme

from coordinator.app import make_app
from coordinator.atlas import standin
from coordinator.atlas.settings import Settings
from coordinator.config import load_config
from coordinator.store import Store


async def test_service_polls_streams_and_closes_the_loop(tls_ca: trustme.CA, tls_cafile: str, tmp_path: Path,
                                                        aiohttp_client: Any) -> None:
    probes = tmp_path / "probes.json"
    kz = [{"id": 940000 + i, "asn_v4": 9198, "country_code": "KZ", "address_v4": f"198.18.9.{i + 1}",
           "connected": True} for i in range(5)]
    probes.write_text(json.dumps({"probes": kz}))
    sapp = standin.make_app(standin.default_samples(), probes, poll_s=0.05, result_interval_s=0)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(ctx)
    runner, port = await standin.start(sapp, "127.0.0.1", 0, ctx)
    config = load_config(None, environ={})
    config.sections["atlas"] = Settings(
        enabled=True, server=f"127.0.0.1:{port}", stream_url=f"wss://127.0.0.1:{port}/stream/", ca_file=tls_cafile,
        api_key="lab", countries=["KZ"], closed_loop=True, poll_interval_s=0.5, backoff_s=0.05, probes_inside=2,
        probes_outside=1, outside_countries=["DE"], closed_loop_interval_s=0.2)
    store = Store(tmp_path / "data")
    client = await aiohttp_client(make_app(store, config, str(tmp_path / "data")))
    try:
        for _ in range(200):
            status = await (await client.get("/api/v1/atlas/status")).json()
            if status["fetches"] >= 1 and len(sapp[standin.SOCKETS]) == 1:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        kz[0]["connected"] = kz[1]["connected"] = kz[2]["connected"] = False   # the lab cuts
        probes.write_text(json.dumps({"probes": kz}))
        for _ in range(200):
            n = await store.read(lambda c: c.execute("SELECT COUNT(*) FROM atlas_connection_events").fetchone()[0])
            if n == 3:
                break
            await asyncio.sleep(0.05)
        assert n == 3
        now = time.time()
        spec = {"targets": [{"name": "198.18.1.10", "address": "198.18.1.10", "cc": "KZ", "category": "domestic",
                             "group": "g", "tests": ["ping"]}]}

        def suspect(c: Any) -> None:
            c.execute("INSERT INTO campaigns (campaign_id, name, spec, created_ts) VALUES ('c', 'c', ?, ?)",
                      (json.dumps(spec), now))
            c.execute("INSERT INTO events (event_id, kind, scope_type, scope, cc, state, confidence, signals, "
                      "start_ts, detector_version, updated_ts) VALUES ('e', 'blackout', 'country', 'KZ', 'KZ', "
                      "'suspected', 0.5, '[]', ?, 't', ?)", (now, now))
            c.execute("INSERT INTO event_transitions (event_id, state, at_ts, recorded_ts, payload) "
                      "VALUES ('e', 'suspected', ?, ?, '{}')", (now, now))
        await store.write(suspect)
        for _ in range(400):
            status = await (await client.get("/api/v1/atlas/status")).json()
            if status["created"]:
                break
            await asyncio.sleep(0.05)
        assert status["created"], status
        created = await store.read(lambda c: c.execute("SELECT COUNT(*) FROM atlas_created_measurements").fetchone()[0])
        assert created == len(status["created"]) == 4          # ping and traceroute, inside and outside
    finally:
        await client.close()
        await runner.cleanup()
    store.close()
