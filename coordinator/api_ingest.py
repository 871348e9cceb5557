"""Ingest: ``POST /api/v1/measurements`` - signed gzip batches from the probes' outboxes.

Order of checks: size (aiohttp's ``client_max_size``), signature and replay, gunzip with a cap,
JSON shape, hash chain, per-probe rate limit, then every record through the store's insert path
(:func:`coordinator.store.prepare_measurements`: validation and rows, off the writer thread;
:func:`coordinator.store.write_prepared`: idempotency) with a check that its probe fields are the
uploading probe's.  A batch's records, chain links, drop reports and upload time are written
together; the batches waiting for the writer share one transaction (group commit, a savepoint
each), and every answer is sent only after that COMMIT returned.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import zlib
from collections.abc import Callable
from operator import itemgetter
from typing import Any

import orjson
from aiohttp import web

from coordinator import auth
from coordinator.api import API, SERVICE, cfg, error, ok, verify_signed
from coordinator.app import STORE
from coordinator.sqlbulk import insert_rows, placeholders
from coordinator.store import Outcome, Prepared, Store, prepare_measurements, write_prepared
from probe.signing import GENESIS, chain_hash, chain_hash_raw

_CHAIN_ROW = placeholders(5)
DROP_KEYS = ("drop_id", "dropped_count", "dropped_bytes", "first_start_time", "last_start_time",
             "measurement_ids", "ts")


def decode_batch(body: bytes, max_bytes: int, max_items: int) -> list[dict[str, Any]]:
    """Gunzip (capped) and check the batch's shape and hash chain; raises AuthError(400/413)."""
    if body[:2] == b"\x1f\x8b":
        d = zlib.decompressobj(wbits=31)
        try:
            raw = d.decompress(body, max_bytes + 1)
        except zlib.error as exc:
            raise auth.AuthError(400, f"body is not valid gzip: {exc}") from None
        if len(raw) > max_bytes or d.unconsumed_tail:
            raise auth.AuthError(413, f"batch is larger than {max_bytes} bytes once decompressed")
    else:
        raw = body
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise auth.AuthError(400, f"batch is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        raise auth.AuthError(400, 'batch must be a JSON object {"items": [...]}')
    items = doc["items"]
    if not items:
        raise auth.AuthError(400, "batch has no items")
    if len(items) > max_items:
        raise auth.AuthError(413, f"batch has {len(items)} items; at most {max_items} are accepted")
    prev = None
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("prev"), str) or not isinstance(item.get("hash"), str):
            raise auth.AuthError(400, f"item {i} must be an object with prev, hash and record or drop")
        kind = "record" if "record" in item else "drop"
        payload = item.get(kind)
        if ("record" in item) == ("drop" in item) or not isinstance(payload, (dict, str)):
            raise auth.AuthError(400, f"item {i} must carry exactly one of record or drop (object or JSON text)")
        if prev is not None and item["prev"] != prev:
            raise auth.AuthError(400, f"hash chain broken at item {i}: prev does not match item {i - 1}'s hash")
        if isinstance(payload, str):   # the canonical JSON text the probe hashed: hash the bytes, then parse
            raw = payload.encode()
            link = chain_hash_raw(item["prev"], raw)
            try:
                payload = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise auth.AuthError(400, f"item {i}: {kind} is not JSON text: {exc}") from None
            if not isinstance(payload, dict):
                raise auth.AuthError(400, f"item {i}: {kind} must be a JSON object")
            item[kind] = payload
        else:
            link = chain_hash(item["prev"], payload)
        if link != item["hash"]:
            raise auth.AuthError(400, f"hash chain broken at item {i}: hash does not match its content")
        if "drop" in item:
            check_drop(payload, i)
        prev = item["hash"]
    return items


def check_drop(drop: dict[str, Any], i: int) -> None:
    unknown = sorted(set(drop) - set(DROP_KEYS))
    missing = [k for k in ("drop_id", "dropped_count", "dropped_bytes", "measurement_ids") if k not in drop]
    if unknown or missing:
        raise auth.AuthError(400, f"item {i}: drop report keys: unknown {unknown}, missing {missing}")
    ok = (isinstance(drop["measurement_ids"], list) and all(isinstance(m, str) for m in drop["measurement_ids"])
          and isinstance(drop["drop_id"], str) and 0 < len(drop["drop_id"]) <= 80
          and all(isinstance(drop[k], int) and not isinstance(drop[k], bool) and 0 <= drop[k] < 2**62
                  for k in ("dropped_count", "dropped_bytes"))
          and all(isinstance(drop.get(k), (str, type(None))) for k in ("first_start_time", "last_start_time"))
          and (drop.get("ts") is None or (isinstance(drop["ts"], (int, float)) and not isinstance(drop["ts"], bool)
                                          and abs(drop["ts"]) < 1e12)))
    if not ok:
        raise auth.AuthError(400, f"item {i}: drop report has wrong types (see docs/coordinator.md)")


def probe_check(probe_id: str, networks: set[tuple[Any, Any, Any]]) -> Callable[[dict[str, Any]], str | None]:
    def check(rec: dict[str, Any]) -> str | None:
        if rec.get("probe_id") != probe_id:
            return f"probe_id {rec.get('probe_id')!r} is not the uploading probe {probe_id}"
        if rec.get("source") != "tocsin":
            return "source must be tocsin for probe uploads"
        net = (rec.get("probe_cc"), rec.get("probe_asn"), rec.get("probe_access"))
        if net not in networks:
            return (f"probe_cc/probe_asn/probe_access {net} were never assigned to probe {probe_id}; "
                    "records must carry the values from the schedule")
        return None
    return check


def probe_networks(conn: sqlite3.Connection, probe_id: str) -> set[tuple[Any, Any, Any]]:
    """The (cc, asn, access) networks a probe's records may carry (the registry assigned them)."""
    rows = conn.execute("SELECT cc, asn, access FROM probe_networks WHERE probe_id = ?", (probe_id,))
    return {(r[0], r[1], r[2]) for r in rows}


def _mid(item: dict[str, Any]) -> str | None:
    mid = item["record"].get("measurement_id") if "record" in item else None
    return mid if isinstance(mid, str) else None


def prepare_items(items: list[dict[str, Any]], probe_id: str, networks: set[Any]) -> tuple[list[int], Prepared]:
    """Validate the batch's records and build their rows (any thread): the writer only runs SQL."""
    positions = [i for i, it in enumerate(items) if "record" in it]
    return positions, prepare_measurements([items[i]["record"] for i in positions],    # parsed by decode_batch
                                           check=probe_check(probe_id, networks), parsed=True)


def _store_batch(conn: sqlite3.Connection, probe_id: str, items: list[dict[str, Any]], prep: Prepared,
                 now: float) -> tuple[Outcome, int]:
    """One batch inside the open transaction: its records, chain links, drop reports, upload time."""
    drops = 0
    out = write_prepared(conn, prep, now)
    first_prev = items[0]["prev"]
    if first_prev != GENESIS and not conn.execute("SELECT 1 FROM upload_chain WHERE hash = ?", (first_prev,)).fetchone():
        conn.execute("INSERT OR IGNORE INTO chain_gaps VALUES (?, ?, ?, ?)", (probe_id, first_prev, items[0]["hash"], now))
    # in key order: neighbouring inserts touch the same b-tree pages (random hashes otherwise
    # land on a different page each; about a quarter of this insert's cost, measured)
    insert_rows(conn, "INSERT OR IGNORE INTO upload_chain VALUES ", _CHAIN_ROW,      # a link re-sent is kept once
                sorted([(it["hash"], it["prev"], probe_id, _mid(it), now) for it in items], key=itemgetter(0)))
    for it in items:
        if "drop" in it:
            d = it["drop"]
            cur = conn.execute(
                "INSERT OR IGNORE INTO probe_drops VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (d["drop_id"], probe_id, d["dropped_count"], d["dropped_bytes"], d.get("first_start_time"),
                 d.get("last_start_time"), json.dumps(d["measurement_ids"]), d.get("ts"), now))
            drops += cur.rowcount
    conn.execute("UPDATE probes SET last_upload_ts = ? WHERE probe_id = ?", (now, probe_id))
    return out, drops


Job = tuple[str, list[dict[str, Any]], Prepared]          # probe id, items, prepared records
Result = tuple[Outcome, int] | Exception


def _ingest_group(conn: sqlite3.Connection, jobs: list[Job]) -> list[Result]:
    """Store the batches waiting for the writer in ONE transaction (group commit), each batch in its
    own savepoint so an error undoes that batch alone.  Nothing is acknowledged before the COMMIT."""
    results: list[Result] = []
    conn.execute("BEGIN IMMEDIATE")
    now = time.time()   # taken once the write lock is held, so received_ts grows with seq
    try:
        for probe_id, items, prep in jobs:
            conn.execute("SAVEPOINT ingest_batch")
            try:
                results.append(_store_batch(conn, probe_id, items, prep, now))
            except Exception as exc:
                if not conn.in_transaction:   # SQLite undid the whole transaction (disk full, I/O error)
                    raise
                conn.execute("ROLLBACK TO ingest_batch")
                results.append(exc)
            conn.execute("RELEASE ingest_batch")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return results


GROUP_MAX_RECORDS = 10000   # a group takes waiting batches up to this many items (at least one batch)


class Committer:
    """Hands the writer thread every batch waiting for it as one group; each caller gets its own
    batch's result once the group's COMMIT returned.  Batches only wait while the writer is busy."""

    def __init__(self) -> None:
        self.pending: list[tuple[Job, asyncio.Future[tuple[Outcome, int]]]] = []
        self.task: asyncio.Task[None] | None = None
        self.groups = 0      # transactions run, and batches they carried (batches / groups = mean group)
        self.batches = 0
        self.arrived = asyncio.Event()   # set after a COMMIT that stored rows (the verdict loop wakes on it)

    async def commit(self, store: Store, job: Job) -> tuple[Outcome, int]:
        fut: asyncio.Future[tuple[Outcome, int]] = asyncio.get_running_loop().create_future()
        self.pending.append((job, fut))
        if self.task is None:
            self.task = asyncio.create_task(self._drain(store))
        return await fut

    async def _drain(self, store: Store) -> None:
        group: list[tuple[Job, asyncio.Future[tuple[Outcome, int]]]] = []
        try:
            while self.pending:
                size, n = 0, 0
                while n < len(self.pending) and (n == 0 or size + len(self.pending[n][0][1]) <= GROUP_MAX_RECORDS):
                    size += len(self.pending[n][0][1])
                    n += 1
                group, self.pending = self.pending[:n], self.pending[n:]
                self.groups += 1
                self.batches += n
                try:
                    results: list[Result] = await store.write(_ingest_group, [job for job, _ in group])
                except Exception as exc:
                    results = [exc] * len(group)
                if any(not isinstance(r, Exception) and r[0].inserted for r in results):
                    self.arrived.set()
                for (_, fut), res in zip(group, results, strict=True):
                    if fut.done():     # its request was cancelled (client gone): committed all the same
                        continue
                    if isinstance(res, Exception):
                        fut.set_exception(res)
                    else:
                        fut.set_result(res)
                group = []
        finally:
            self.task = None
            for _, fut in group + self.pending:   # only when this task itself was cancelled (shutdown)
                if not fut.done():
                    fut.set_exception(RuntimeError("ingest stopped before the batch was committed"))
            self.pending = []


COMMITTER = web.AppKey("ingest_committer", Committer)


def batch_answer(items: list[dict[str, Any]], positions: list[int], out: Outcome, drops: int) -> dict[str, Any]:
    """The committed batch's answer: one result per record, in batch order."""
    status = dict.fromkeys(out.duplicates, "duplicate")
    status.update(dict.fromkeys(out.inserted, "inserted"))
    flags = dict(out.flagged)
    reasons = dict(out.rejected)   # k: index among the records, as the store reports it
    results: list[dict[str, Any]] = []
    for k, i in enumerate(positions):
        rec = items[i]["record"]
        mid: Any = rec.get("measurement_id") if isinstance(rec, dict) else None
        if k in reasons:
            results.append({"index": i, "measurement_id": mid, "status": "rejected", "reason": reasons[k]})
            continue
        res: dict[str, Any] = {"index": i, "measurement_id": mid, "status": status.get(mid, "rejected")}
        if mid in flags:
            res["flags"] = flags[mid]
        results.append(res)
    return {"committed": True, "inserted": len(out.inserted), "duplicates": len(out.duplicates),
            "rejected": len(out.rejected), "drops": drops, "results": results}


async def ingest(request: web.Request) -> web.Response:
    config, store = cfg(request.app), request.app[STORE]
    try:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise auth.AuthError(413, f"request body is larger than {config.ingest_max_bytes} bytes") from None
        probe_id = await verify_signed(request, body)
        items = await asyncio.to_thread(decode_batch, body, config.ingest_max_decompressed_bytes,
                                        config.ingest_max_records)
        wait = request.app[SERVICE].limiter.records(probe_id, len(items))
        if wait:
            return error(429, f"rate limit: retry after {wait:.1f} s", retry_after_s=wait)
        networks = await store.read(probe_networks, probe_id)
        positions, prep = await asyncio.to_thread(prepare_items, items, probe_id, networks)
        out, drops = await request.app[COMMITTER].commit(store, (probe_id, items, prep))
    except auth.AuthError as exc:
        return error(exc.status, str(exc))
    answer = batch_answer(items, positions, out, drops)
    status = 200
    if positions and not out.inserted and not out.duplicates:
        conflicts = all(r.get("reason", "").startswith("conflict") for r in answer["results"])
        status = 409 if conflicts else 422
    return ok(answer, status=status)


def setup(app: web.Application) -> None:
    app[COMMITTER] = Committer()
    app.router.add_post(f"{API}/measurements", ingest)
