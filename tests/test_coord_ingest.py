"""Ingest over a real aiohttp server on loopback: accepted once, every refusal a clear 4xx."""

from __future__ import annotations

import gzip
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from test_coord_helpers import Probe, count, make_service, register

from probe import signing

M = "/api/v1/measurements"


@pytest.fixture
async def service(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[Any]:
    async for value in make_service(tmp_path, aiohttp_client):
        yield value


async def test_batch_is_stored_once_and_duplicates_acknowledged(service: Any) -> None:
    client, store = service
    p = await register(client, store)
    recs = [p.record(i) for i in range(20)]
    resp = await p.upload(recs)
    doc = await resp.json()
    assert resp.status == 200 and doc["committed"] and doc["inserted"] == 20
    again = await p.upload(recs)  # the probe never saw the ack: it sends the same records again
    doc = await again.json()
    assert again.status == 200 and doc["inserted"] == 0 and doc["duplicates"] == 20
    assert count(store) == 20
    assert {r["status"] for r in doc["results"]} == {"duplicate"}


async def test_one_bad_record_does_not_block_the_rest(service: Any) -> None:
    client, store = service
    p = await register(client, store)
    good = p.record(1)
    bad = dict(p.record(2), runtime_s=-1.0)
    resp = await p.upload([bad, good])
    doc = await resp.json()
    assert resp.status == 200 and doc["inserted"] == 1 and doc["rejected"] == 1
    assert doc["results"][0] == {"index": 0, "measurement_id": bad["measurement_id"], "status": "rejected",
                                 "reason": "runtime_s must be between 0 and 86400"}
    assert count(store) == 1


async def test_malformed_bodies_are_400_and_store_nothing(service: Any) -> None:
    client, store = service
    p = await register(client, store)
    for body, needle in ((b"\x1f\x8bgarbage", "not valid gzip"), (gzip.compress(b"[1,2"), "not JSON"),
                         (gzip.compress(b'{"records": []}'), '{"items"'), (gzip.compress(b'{"items": []}'), "no items"),
                         (gzip.compress(b'{"items": [{"prev": "x"}]}'), "must be an object with prev")):
        resp = await p.post(M, body)
        assert resp.status == 400, (body, await resp.text())
        assert needle in (await resp.json())["error"]
    assert count(store) == 0


async def test_tampered_chain_is_refused(service: Any) -> None:
    client, store = service
    p = await register(client, store)
    body = orjson.loads(gzip.decompress(p.batch([p.record(1), p.record(2)])))
    body["items"][1]["record"]["test_keys"]["connect_ms"] = 0.5   # changed after hashing
    resp = await p.post(M, gzip.compress(orjson.dumps(body)))
    assert resp.status == 400 and "hash chain broken at item 1" in (await resp.json())["error"]
    assert count(store) == 0


async def test_oversized_body_and_zip_bomb_are_413(service: Any) -> None:
    client, store = service
    p = await register(client, store)
    big = gzip.compress(orjson.dumps({"items": []}) + b" " * 10) + bytes(300_000)  # over ingest_max_bytes=200000
    resp = await p.post(M, big)
    assert resp.status == 413
    bomb = gzip.compress(b'{"items": [' + b" " * (70 * 2**20) + b"]}")  # 70 MiB of spaces, ~70 kB gzip
    resp = await p.post(M, bomb)
    assert resp.status == 413 and "decompressed" in (await resp.json())["error"]
    assert count(store) == 0


async def test_unsigned_forged_replayed_and_stale_requests_are_401(service: Any) -> None:
    client, store = service
    p = await register(client, store)
    other = await register(client, store)
    resp = await p.post(M, p.batch([p.record(1)]), headers={"Content-Type": "application/gzip"})
    assert resp.status == 401 and "unsigned request" in (await resp.json())["error"]
    # signed with another probe's key while claiming to be p
    resp = await p.post(M, p.batch([p.record(2)]), key=other.key)
    assert resp.status == 401 and f"does not verify for probe {p.id}" in (await resp.json())["error"]
    # a body swapped under a valid signature
    body = p.batch([p.record(3)])
    h = signing.sign_headers(p.key, "POST", M, p.id, b"something else")
    h["Content-Type"] = "application/gzip"
    resp = await p.post(M, body, headers=h)
    assert resp.status == 401
    # replay: the exact same signed request twice
    body = p.batch([p.record(4)])
    h = signing.sign_headers(p.key, "POST", M, p.id, body)
    first = await p.post(M, body, headers=h)
    assert first.status == 200
    replay = await p.post(M, body, headers=h)
    assert replay.status == 401 and "replayed request" in (await replay.json())["error"]
    # a timestamp outside the clock window
    resp = await p.post(M, p.batch([p.record(5)]), now=time.time() - 3600)
    assert resp.status == 401 and "from the coordinator's clock" in (await resp.json())["error"]
    resp = await p.post(M, p.batch([p.record(6)]), probe_id="p-nosuchprobe")
    assert resp.status == 401 and "unknown probe" in (await resp.json())["error"]
    assert count(store) == 1


async def test_records_of_another_probe_or_network_are_422(service: Any) -> None:
    client, store = service
    p = await register(client, store)
    other = await register(client, store, cc="DE", asn=3320)
    resp = await p.upload([other.record(1)])                  # other's records, signed by p
    doc = await resp.json()
    assert resp.status == 422 and "is not the uploading probe" in doc["results"][0]["reason"]
    resp = await p.upload([p.record(2, probe_cc="UZ")])         # a network never assigned to p
    doc = await resp.json()
    assert resp.status == 422 and "were never assigned" in doc["results"][0]["reason"]
    resp = await p.upload([p.record(3, source="atlas")])
    assert resp.status == 422
    assert count(store) == 0


async def test_conflicting_upload_is_409_and_keeps_the_first(service: Any) -> None:
    client, store = service
    p = await register(client, store)
    r = p.record(1)
    assert (await p.upload([r])).status == 200
    changed = dict(r, test_keys={"connect_ms": 999.0})
    resp = await p.upload([changed])
    doc = await resp.json()
    assert resp.status == 409 and doc["results"][0]["reason"].startswith("conflict")
    assert doc["results"][0]["index"] == 0
    stored = store.write_sync(lambda c: c.execute("SELECT test_keys FROM measurements").fetchone()[0])
    assert "999" not in stored and count(store) == 1


async def test_future_timestamps_flagged_not_fixed(service: Any) -> None:
    from datetime import UTC, datetime
    client, store = service
    p = await register(client, store)
    r = p.record(1, start_time=datetime.fromtimestamp(time.time() + 7200, UTC))
    doc = await (await p.upload([r])).json()
    assert doc["results"][0]["flags"] == "future_timestamp"
    assert store.write_sync(lambda c: c.execute("SELECT start_time FROM measurements").fetchone()[0]) == r["start_time"]


async def test_rate_limit_is_429_with_retry_after(service: Any) -> None:
    client, store = service
    p = await register(client, store)
    for k in range(3):  # burst 5000, then 1 record/s
        resp = await p.upload([p.record(i) for i in range(k * 1500, (k + 1) * 1500)])
        assert resp.status == 200
    resp = await p.upload([p.record(i) for i in range(4500, 6000)])
    assert resp.status == 429 and (await resp.json())["retry_after_s"] > 0
    assert count(store) == 4500


async def test_drop_reports_and_chain_gaps_are_kept(service: Any) -> None:
    client, store = service
    p = await register(client, store)
    assert (await p.upload([p.record(1)])).status == 200
    p.head = "f" * 64          # the items between were evicted on the probe
    drop = {"drop_id": "drop-1", "dropped_count": 2, "dropped_bytes": 900, "measurement_ids": ["a" * 10, "b" * 10],
            "first_start_time": None, "last_start_time": None, "ts": time.time()}
    resp = await p.post(M, p.batch([drop], kind="drop"))
    assert resp.status == 200 and (await resp.json())["drops"] == 1
    assert count(store, "probe_drops") == 1 and count(store, "chain_gaps") == 1
    assert count(store) == 1


def _unused(p: Probe) -> None:  # keep the import of Probe used for typing in this module
    del p
