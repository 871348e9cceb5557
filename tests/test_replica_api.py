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
from coordinator.replica_api import SIGNED_PATH
from coordinator.store import Store
from probe import signing

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


def forwarded(probe: Any, body: bytes, *, path: str = "/api/v1/measurements", now: float | None = None,
              key: Any = None, probe_id: str | None = None) -> dict[str, str]:
    """What a replica sends with a batch: its token, and the probe's own signature of its upload."""
    sig = signing.sign_headers(key or probe.key, "POST", path, probe_id or probe.id, body, now=now)
    return {**AUTH, **sig, SIGNED_PATH: path, "Content-Type": "application/gzip"}


async def test_forwarded_batch_is_stored_once_with_its_chain(service: Any) -> None:
    client, store = service
    probe = await register(client, store)
    body = probe.batch([probe.record(i) for i in range(4)])
    url = f"/api/v1/replica/measurements?probe_id={probe.id}"
    # signed an hour ago (a batch held by a replica through a cut): the clock window does not apply
    first = await client.post(url, data=body, headers=forwarded(probe, body, now=time.time() - 3600))
    doc = await first.json()
    assert first.status == 200 and doc["committed"] and doc["inserted"] == 4
    again = await (await client.post(url, data=body, headers=forwarded(probe, body))).json()
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
    resp = await client.post("/api/v1/replica/measurements" + query.format(pid=probe.id), data=body,
                             headers=forwarded(probe, body))
    assert resp.status == status and message in (await resp.json())["error"]
    assert count(store) == 0


async def test_records_of_another_probe_are_refused(service: Any) -> None:
    client, store = service
    probe, other = await register(client, store), await register(client, store)
    body = probe.batch([probe.record(1)])
    resp = await client.post(f"/api/v1/replica/measurements?probe_id={other.id}", data=body,
                             headers=forwarded(other, body))
    assert resp.status == 200 and (await resp.json())["results"][0]["status"] == "rejected"
    assert count(store) == 0


@pytest.mark.parametrize(("case", "message"), [
    ("unsigned", "unsigned request: missing header"),
    ("forged", "signature does not verify"),
    ("another probe's id", "is signed as probe"),
    ("signed for another route", "must be the probe's upload path"),
    ("body changed after signing", "signature does not verify"),
    ("retired", "is retired"),
])
async def test_a_forwarded_batch_needs_the_probe_s_own_signature(service: Any, case: str, message: str) -> None:
    """The replica's token alone cannot store records in a probe's name: each is refused for good (422)."""
    client, store = service
    probe, other = await register(client, store), await register(client, store)
    body = probe.batch([probe.record(1), probe.record(2)])
    headers = forwarded(probe, body)
    if case == "unsigned":
        headers = {**AUTH, SIGNED_PATH: "/api/v1/measurements"}
    elif case == "forged":
        headers = forwarded(probe, body, key=other.key)
    elif case == "another probe's id":
        headers = forwarded(probe, body, key=other.key, probe_id=other.id)
    elif case == "signed for another route":
        headers = forwarded(probe, body, path="/api/v1/schedule")
    elif case == "body changed after signing":
        body = probe.batch([probe.record(3)])
    elif case == "retired":
        store.write_sync(lambda c: c.execute("UPDATE probes SET retired_ts = 1 WHERE probe_id = ?", (probe.id,)))
    resp = await client.post(f"/api/v1/replica/measurements?probe_id={probe.id}", data=body, headers=headers)
    assert resp.status == 422 and message in (await resp.json())["error"]
    assert count(store) == 0 and count(store, "upload_chain") == 0


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


def test_a_replica_outbox_made_before_signatures_were_kept_gains_the_column(tmp_path: Path) -> None:
    import sqlite3

    from coordinator import replica

    conn = sqlite3.connect(tmp_path / "old.db")
    conn.execute("CREATE TABLE replica_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, "
                 "probe_id TEXT NOT NULL, body BLOB NOT NULL, queued_ts REAL NOT NULL)")
    conn.execute("INSERT INTO replica_outbox (kind, probe_id, body, queued_ts) VALUES ('batch', 'p-1', x'00', 1)")
    replica.create_tables(conn)
    replica.create_tables(conn)            # idempotent
    assert conn.execute("SELECT kind, sig FROM replica_outbox").fetchall() == [("batch", None)]
    conn.close()
