"""The upstream's replica routes over a real server on loopback (real SQLite): token, clear 4xx on
bad input, forwarded batches stored as the probe's own upload (idempotently), heartbeats once."""

from __future__ import annotations

import gzip
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from test_coord_helpers import ADMIN, count, register

from coordinator.app import make_app
from coordinator.config import load_config
from coordinator.store import Store

TOKEN = "replica-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def service(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[Any]:
    config = load_config(None, environ={"TOCSIN_ADMIN_TOKEN": ADMIN, "TOCSIN_REPLICA__TOKEN": TOKEN})
    store = Store(tmp_path)
    client = await aiohttp_client(make_app(store, config, str(tmp_path)))
    yield client, store
    await client.close()
    store.close()


async def test_routes_need_the_replica_token_not_the_admin_token(service: Any) -> None:
    client, _ = service
    for method, path in (("GET", "registry"), ("GET", "pull"), ("POST", "heartbeats"), ("POST", "measurements")):
        url = f"/api/v1/replica/{path}"
        assert (await client.request(method, url)).status == 401
        wrong = await client.request(method, url, headers={"Authorization": f"Bearer {ADMIN}"})
        assert wrong.status == 403 and "replica token is wrong" in (await wrong.json())["error"]


async def test_no_token_configured_means_no_replica_routes(tmp_path: Path, aiohttp_client: Any) -> None:
    store = Store(tmp_path)
    client = await aiohttp_client(make_app(store, load_config(None, environ={"TOCSIN_ADMIN_TOKEN": ADMIN}), str(tmp_path)))
    try:
        assert (await client.get("/api/v1/replica/registry", headers=AUTH)).status == 404
    finally:
        await client.close()
        store.close()


async def test_registry_and_pull_serve_what_a_replica_needs(service: Any) -> None:
    client, store = service
    probe = await register(client, store, cc="KZ", asn=9198, access="mobile", tags=["battery"])
    assert (await probe.upload([probe.record(i) for i in range(5)])).status == 200
    reg = await (await client.get("/api/v1/replica/registry", headers=AUTH)).json()
    (row,) = reg["probes"]
    assert row["probe_id"] == probe.id and row["public_key"] and row["access"] == "mobile"
    assert not any("addr" in k or k == "ip" for k in row)        # the registry holds no addresses
    assert reg["networks"][0]["asn"] == 9198
    page = await (await client.get("/api/v1/replica/pull", headers=AUTH, params={"limit": "3"})).json()
    assert len(page["records"]) == 3 and page["more"]
    rest = await (await client.get("/api/v1/replica/pull", headers=AUTH,
                                   params={"after_seq": page["last_seq"], "limit": "10"})).json()
    assert len(rest["records"]) == 2 and not rest["more"]
    ids = {r["measurement_id"] for r in page["records"] + rest["records"]}
    assert len(ids) == 5


@pytest.mark.parametrize(("params", "message"), [
    ({"after_seq": "x"}, "after_seq must be a number"), ({"limit": "0"}, "limit must be"),
    ({"since": "nan"}, "since must be"), ({"beats_after": "-1"}, "beats_after must be")])
async def test_bad_pull_queries_get_400(service: Any, params: dict[str, str], message: str) -> None:
    client, _ = service
    resp = await client.get("/api/v1/replica/pull", headers=AUTH, params=params)
    assert resp.status == 400 and message in (await resp.json())["error"]


async def test_forwarded_batch_is_stored_once_with_its_chain(service: Any) -> None:
    client, store = service
    probe = await register(client, store)
    body = probe.batch([probe.record(i) for i in range(4)])
    url = f"/api/v1/replica/measurements?probe_id={probe.id}"
    first = await client.post(url, data=body, headers={**AUTH, "Content-Type": "application/gzip"})
    doc = await first.json()
    assert first.status == 200 and doc["committed"] and doc["inserted"] == 4
    again = await (await client.post(url, data=body, headers=AUTH)).json()
    assert again["inserted"] == 0 and again["duplicates"] == 4
    assert count(store) == 4 and count(store, "upload_chain") == 4
    # the probe's next batch, straight to the upstream, continues the chain: no gap recorded
    assert (await probe.upload([probe.record(10)])).status == 200
    assert count(store, "chain_gaps") == 0


@pytest.mark.parametrize(("query", "body", "status", "message"), [
    ("", b"{}", 400, "probe_id (query) is required"),
    ("?probe_id=p-nobody", b'{"items": []}', 422, "unknown probe"),
    ("?probe_id={pid}", b"not json", 400, "batch is not JSON"),
    ("?probe_id={pid}", b"\x1f\x8bgarbage", 400, "not valid gzip"),
    ("?probe_id={pid}", b'{"items": []}', 400, "batch has no items"),
    ("?probe_id={pid}", b'{"items": [{"prev": "x", "hash": "y", "record": {}}]}', 400, "hash chain broken"),
])
async def test_bad_forwarded_batches_get_4xx(service: Any, query: str, body: bytes, status: int, message: str) -> None:
    client, store = service
    probe = await register(client, store)
    resp = await client.post("/api/v1/replica/measurements" + query.format(pid=probe.id), data=body, headers=AUTH)
    assert resp.status == status and message in (await resp.json())["error"]
    assert count(store) == 0


async def test_records_of_another_probe_are_refused(service: Any) -> None:
    client, store = service
    probe, other = await register(client, store), await register(client, store)
    body = probe.batch([probe.record(1)])
    resp = await client.post(f"/api/v1/replica/measurements?probe_id={other.id}", data=body, headers=AUTH)
    assert resp.status == 200 and (await resp.json())["results"][0]["status"] == "rejected"
    assert count(store) == 0


async def test_heartbeats_are_stored_once_and_last_seen_only_moves_forward(service: Any) -> None:
    client, store = service
    probe = await register(client, store)
    now = time.time()
    beats = [{"probe_id": probe.id, "ts": now - 10, "buffered": 3, "cc": "KZ", "asn": 9198, "access": "fixed"},
             {"probe_id": probe.id, "ts": now - 5, "buffered": 0}, {"probe_id": "p-nobody", "ts": now - 5}]
    doc = await (await client.post("/api/v1/replica/heartbeats", data=orjson.dumps({"beats": beats}), headers=AUTH)).json()
    assert doc == {"added": 2, "unknown_probes": ["p-nobody"]}
    gz = gzip.compress(orjson.dumps({"beats": beats[:1]}))   # only JSON is accepted here
    assert (await client.post("/api/v1/replica/heartbeats", data=gz, headers=AUTH)).status == 400
    again = await (await client.post("/api/v1/replica/heartbeats", data=orjson.dumps({"beats": beats[:2]}),
                                     headers=AUTH)).json()
    assert again["added"] == 0
    assert count(store, "probe_heartbeats") == 2
    seen = store.write_sync(lambda c: c.execute("SELECT last_seen_ts FROM probes").fetchone()[0])
    assert seen == pytest.approx(now - 5)


@pytest.mark.parametrize(("doc", "message"), [
    ({}, 'body must be {"beats"'), ({"beats": [{"ts": 1.0}]}, "needs probe_id"),
    ({"beats": [{"probe_id": "p", "ts": time.time() + 3600}]}, "in the future"),
    ({"beats": [{"probe_id": "p", "ts": 1.0, "access": "satellite"}]}, "access must be one of"),
    ({"beats": [{"probe_id": "p", "ts": 1.0, "buffered": "many"}]}, "wrong type"),
])
async def test_bad_heartbeats_get_400(service: Any, doc: dict[str, Any], message: str) -> None:
    client, store = service
    resp = await client.post("/api/v1/replica/heartbeats", data=orjson.dumps(doc), headers=AUTH)
    assert resp.status == 400 and message in (await resp.json())["error"]
    assert count(store, "probe_heartbeats") == 0
