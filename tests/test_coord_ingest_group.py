"""Group commit on the ingest path: waiting batches share one transaction, each keeps its own answer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_coord_helpers import count, make_service, register

from coordinator.api_ingest import (
    COMMITTER,
    GROUP_MAX_RECORDS,
    Committer,
    Job,
    _ingest_group,
    decode_batch,
    prepare_items,
)


@pytest.fixture
async def service(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[Any]:
    async for value in make_service(tmp_path, aiohttp_client):
        yield value


def job(p: Any, start: int, n: int) -> Job:
    items = decode_batch(p.batch([p.record(i) for i in range(start, start + n)]), 2**26, 20000)
    return p.id, items, prepare_items(items, p.id, {(p.info["cc"], p.info["asn"], p.info["access"])})[1]


async def test_batches_waiting_for_the_writer_share_one_commit(service: Any) -> None:
    client, store = service
    probes = [await register(client, store) for _ in range(3)]
    jobs = [job(p, k * 10, 10) for k in range(2) for p in probes]
    committer, gate = Committer(), threading.Event()
    blocker = asyncio.ensure_future(store.write(lambda _c: gate.wait(10)))   # the writer is busy
    waiting = [asyncio.ensure_future(committer.commit(store, j)) for j in jobs]
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in waiting)        # nothing is answered before its COMMIT
    gate.set()
    results = await asyncio.gather(*waiting)
    await blocker
    assert [len(out.inserted) for out, _ in results] == [10] * 6
    assert (committer.groups, committer.batches) == (1, 6)   # all six waited: one transaction
    assert count(store) == 60 and count(store, "upload_chain") == 60
    again = await asyncio.gather(*(committer.commit(store, j) for j in jobs[:2]))
    assert [len(out.duplicates) for out, _ in again] == [10, 10] and count(store) == 60


async def test_a_failing_batch_is_undone_alone(service: Any) -> None:
    client, store = service
    good_probe, bad_probe = await register(client, store), await register(client, store)
    good, bad = job(good_probe, 0, 5), job(bad_probe, 100, 5)
    bad[2].heads[1] = bad[2].heads[1][:-1]      # one row short of a column: SQLite refuses it mid-batch
    results = await store.write(_ingest_group, [bad, good])
    assert isinstance(results[0], Exception) and not isinstance(results[1], Exception)
    assert len(results[1][0].inserted) == 5
    assert count(store) == 5 and count(store, "upload_chain") == 5     # nothing of the bad batch stayed
    ids = store.write_sync(lambda c: [r[0] for r in c.execute("SELECT probe_id FROM measurements")])
    assert set(ids) == {good_probe.id}


async def test_concurrent_uploads_each_answered_once_and_in_seq_order(service: Any) -> None:
    client, store = service
    probes = [await register(client, store) for _ in range(4)]
    batches = [p.batch([p.record(i) for i in range(k * 50, k * 50 + 50)]) for k in range(3) for p in probes]
    resend = batches[0]                                # the same signed body again, as after a lost answer

    async def send(body: bytes, p: Any) -> dict[str, Any]:
        resp = await p.post("/api/v1/measurements", body)
        assert resp.status == 200, await resp.text()
        return dict(await resp.json())

    owners = [probes[i % 4] for i in range(12)]
    docs = await asyncio.gather(*(send(b, p) for b, p in zip(batches, owners, strict=True)), send(resend, probes[0]))
    assert sum(d["inserted"] for d in docs) == 600 and count(store) == 600
    assert docs[0]["inserted"] + docs[-1]["inserted"] == 50 and docs[0]["duplicates"] + docs[-1]["duplicates"] == 50
    received = store.write_sync(lambda c: [r[0] for r in c.execute("SELECT received_ts FROM measurements ORDER BY seq")])
    assert received == sorted(received)               # received_ts grows with seq (alerts rely on it)
    c = client.server.app[COMMITTER]
    assert c.batches == 13 and 1 <= c.groups <= 13



def test_docs_state_the_group_limit_and_the_insert_path() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "coordinator.md").read_text()
    ingest = text[text.index("### Ingest"):text.index("### Read side")]
    assert f"at most {GROUP_MAX_RECORDS} items per group" in ingest
    for name in ("prepare_measurements", "write_prepared", "upload_chain", "received_ts", "savepoint"):
        assert name in ingest, name
