"""The upstream's side of replication: the routes an in-country replica pulls from and pushes to.

Served only when ``[replica] token`` is set (docs/replica.md); every route needs
``Authorization: Bearer <that token>`` - a token of its own, not the admin token, since a replica
needs to read the registry and write forwarded data but never to make invites or campaigns.

* ``GET /api/v1/replica/registry``: probes (ids, public keys, declared/observed network, access,
  tags - the registry has no addresses), their networks, and campaigns;
* ``GET /api/v1/replica/pull``: measurements after an upstream ``seq`` and heartbeats after an
  upstream row id, both no older than ``since``;
* ``POST /api/v1/replica/measurements?probe_id=ID``: a batch a probe uploaded to the replica, byte
  for byte as the probe sent it, with the probe's four signature headers and ``X-Tocsin-Signed-Path``
  (the path the probe signed); the probe's own signature is checked again here (not its clock
  window nor its nonce: a forwarded batch is late by design, and a second copy stores nothing),
  then the batch is checked (hash chain, the probe's networks) and stored exactly as the probe's
  own upload would have been (idempotent: a second copy is a duplicate);
* ``POST /api/v1/replica/heartbeats``: schedule polls the replica answered, with their times, so
  the upstream does not take probes that talked to the replica for silent.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import sqlite3
import time
from typing import Any

from aiohttp import web

from coordinator import auth
from coordinator.api import API, cfg, error, json_body, ok
from coordinator.api_ingest import COMMITTER, batch_answer, decode_batch, prepare_items, probe_networks
from coordinator.app import STORE
from coordinator.store import iter_measurements, record_from_row
from probe import signing
from probe.record import ACCESS_TYPES

REPLICA_API = f"{API}/replica"
ROUTES = (("GET", f"{REPLICA_API}/registry"), ("GET", f"{REPLICA_API}/pull"),
          ("POST", f"{REPLICA_API}/measurements"), ("POST", f"{REPLICA_API}/heartbeats"))
PULL_MAX = 20000           # most records (and heartbeats) one pull answers with
BEATS_MAX = 20000          # most heartbeats one push may carry
PROBE_COLUMNS = ("probe_id", "public_key", "name", "created_ts", "declared_cc", "declared_asn", "observed_cc",
                 "observed_asn", "access", "tags", "last_seen_ts", "retired_ts", "software")
NETWORK_COLUMNS = ("probe_id", "network", "cc", "asn", "access", "first_ts", "last_ts")
CAMPAIGN_COLUMNS = ("campaign_id", "name", "spec", "created_ts", "stopped_ts", "embargo_s")
SIGNED_PATH = "X-Tocsin-Signed-Path"     # a forwarded batch: the path the probe signed its upload for


def check_token(request: web.Request) -> None:
    expected = cfg(request.app).section("replica").token
    header = request.headers.get("Authorization")
    if not header or not header.startswith("Bearer "):
        raise auth.AuthError(401, "replica token required: Authorization: Bearer <token>")
    if not hmac.compare_digest(header[7:].strip().encode(), expected.encode()):
        raise auth.AuthError(403, "replica token is wrong")


def _number(query: Any, key: str, default: float, low: float = -math.inf) -> float:
    raw = query.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise auth.AuthError(400, f"{key} must be a number, not {raw!r}") from None
    if not math.isfinite(value) or value < low:
        raise auth.AuthError(400, f"{key} must be a finite number >= {low:g}")
    return value


def _registry(conn: sqlite3.Connection) -> dict[str, Any]:
    def rows(sql: str, cols: tuple[str, ...]) -> list[dict[str, Any]]:
        return [{c: r[c] for c in cols} for r in conn.execute(sql)]

    return {"probes": rows(f"SELECT {', '.join(PROBE_COLUMNS)} FROM probes", PROBE_COLUMNS),
            "networks": rows(f"SELECT {', '.join(NETWORK_COLUMNS)} FROM probe_networks", NETWORK_COLUMNS),
            "campaigns": rows(f"SELECT {', '.join(CAMPAIGN_COLUMNS)} FROM campaigns", CAMPAIGN_COLUMNS),
            "server_time": time.time()}


def _pull(conn: sqlite3.Connection, after_seq: int, beats_after: int, since: float, limit: int) -> dict[str, Any]:
    conn.execute("BEGIN")      # one snapshot: the cursors returned never skip a row committed meanwhile
    try:
        return _pull_snapshot(conn, after_seq, beats_after, since, limit)
    finally:
        conn.execute("COMMIT")


def _pull_snapshot(conn: sqlite3.Connection, after_seq: int, beats_after: int, since: float,
                   limit: int) -> dict[str, Any]:
    records, last_seq = [], after_seq
    for row in iter_measurements(conn, order="seq", batch=min(limit, 5000), after_seq=after_seq, since=since):
        records.append(record_from_row(row))
        last_seq = row["seq"]
        if len(records) >= limit:
            break
    more = len(records) >= limit
    if not records:   # nothing new: move the cursor past measurements too old to matter
        top = conn.execute("SELECT MAX(seq) FROM measurements").fetchone()[0]
        last_seq = max(after_seq, top or 0)
    beats = conn.execute("SELECT rowid, probe_id, ts FROM probe_heartbeats WHERE rowid > ? AND ts >= ? "
                         "ORDER BY rowid LIMIT ?", (beats_after, since, limit)).fetchall()
    last_beat = beats[-1][0] if beats else beats_after
    if not beats:
        top = conn.execute("SELECT MAX(rowid) FROM probe_heartbeats").fetchone()[0]
        last_beat = max(beats_after, top or 0)
    return {"records": records, "last_seq": last_seq, "beats": [[b[1], b[2]] for b in beats],
            "last_beat": last_beat, "more": more or len(beats) >= limit}


async def registry(request: web.Request) -> web.Response:
    try:
        check_token(request)
    except auth.AuthError as exc:
        return error(exc.status, str(exc))
    return ok(await request.app[STORE].read(_registry))


async def pull(request: web.Request) -> web.Response:
    try:
        check_token(request)
        q = request.query
        after_seq = int(_number(q, "after_seq", 0, 0))
        beats_after = int(_number(q, "beats_after", 0, 0))
        since = _number(q, "since", time.time() - cfg(request.app).section("replica").history_s)
        limit = int(_number(q, "limit", 5000, 1))
    except auth.AuthError as exc:
        return error(exc.status, str(exc))
    return ok(await request.app[STORE].read(_pull, after_seq, beats_after, since, min(limit, PULL_MAX)))


def check_probe_signature(headers: Any, probe_id: str, public_key: str, body: bytes) -> None:
    """AuthError(422) unless the forwarded headers are the probe's own signature of this batch upload.

    422, not 401: the replica's token was good; this content can never be stored, so the replica
    sets it aside instead of retrying it."""
    signed_path = headers.get(SIGNED_PATH, "")
    if signed_path.partition("?")[0] != f"{API}/measurements":
        raise auth.AuthError(422, f"{SIGNED_PATH} must be the probe's upload path {API}/measurements, "
                                  f"not {signed_path!r}")
    try:
        if signing.parse_headers(headers)[0] != probe_id:
            raise auth.AuthError(422, f"the batch is signed as probe {headers[signing.H_PROBE]}, not {probe_id}")
        signing.verify(signing.load_public_key(public_key), headers, "POST", signed_path, body)
    except signing.SignatureError as exc:
        raise auth.AuthError(422, f"the probe's signature of the forwarded batch: {exc}") from None


async def forwarded_measurements(request: web.Request) -> web.Response:
    """A probe's batch as the replica received it: stored as the probe's own upload would be."""
    config, store = cfg(request.app), request.app[STORE]
    try:
        check_token(request)
        probe_id = request.query.get("probe_id", "")
        if not probe_id:
            raise auth.AuthError(400, "probe_id (query) is required")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise auth.AuthError(413, f"request body is larger than {config.ingest_max_bytes} bytes") from None
        known = await store.read(lambda c: c.execute("SELECT public_key, retired_ts FROM probes WHERE probe_id = ?",
                                                     (probe_id,)).fetchone())
        if known is None:
            raise auth.AuthError(422, f"unknown probe {probe_id}")
        await asyncio.to_thread(check_probe_signature, request.headers, probe_id, known["public_key"], body)
        if known["retired_ts"] is not None:
            raise auth.AuthError(422, f"probe {probe_id} is retired")
        items = await asyncio.to_thread(decode_batch, body, config.ingest_max_decompressed_bytes,
                                        config.ingest_max_records)
        networks = await store.read(probe_networks, probe_id)
        positions, prep = await asyncio.to_thread(prepare_items, items, probe_id, networks)
        out, drops = await request.app[COMMITTER].commit(store, (probe_id, items, prep))
    except auth.AuthError as exc:
        return error(exc.status, str(exc))
    return ok(batch_answer(items, positions, out, drops))


def check_beats(doc: dict[str, Any], clock_window_s: float) -> list[dict[str, Any]]:
    """The heartbeats of a push, checked; AuthError(400) names the first bad one."""
    beats = doc.get("beats")
    if not isinstance(beats, list):
        raise auth.AuthError(400, 'body must be {"beats": [...]}')
    if len(beats) > BEATS_MAX:
        raise auth.AuthError(413, f"{len(beats)} heartbeats; at most {BEATS_MAX} per request")
    horizon = time.time() + clock_window_s

    def num(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    for i, b in enumerate(beats):
        if not isinstance(b, dict) or not isinstance(b.get("probe_id"), str) or not num(b.get("ts")):
            raise auth.AuthError(400, f"heartbeat {i} needs probe_id (string) and ts (number)")
        if not 0 < b["ts"] <= horizon:
            raise auth.AuthError(400, f"heartbeat {i}: ts {b['ts']} is in the future or not a time")
        if b.get("access") not in (None, *ACCESS_TYPES):
            raise auth.AuthError(400, f"heartbeat {i}: access must be one of {', '.join(ACCESS_TYPES)}")
        if (b.get("buffered") is not None and not (num(b["buffered"]) and b["buffered"] >= 0)) or \
                (b.get("asn") is not None and not (isinstance(b["asn"], int) and not isinstance(b["asn"], bool))) or \
                (b.get("buffered_since_ts") is not None and not num(b["buffered_since_ts"])) or \
                not all(isinstance(b.get(k), (str, type(None))) for k in ("cc", "software")):
            raise auth.AuthError(400, f"heartbeat {i}: buffered, buffered_since_ts, cc, asn or software has a wrong type")
    return beats


def store_beats(conn: sqlite3.Connection, beats: list[dict[str, Any]]) -> dict[str, Any]:
    """Heartbeats the replica saw: each (probe, time) once; last_seen_ts only moves forward."""
    added, unknown = 0, set()
    conn.execute("BEGIN IMMEDIATE")
    try:
        for b in beats:
            pid, ts = b["probe_id"], float(b["ts"])
            row = conn.execute("SELECT last_seen_ts FROM probes WHERE probe_id = ?", (pid,)).fetchone()
            if row is None:
                unknown.add(pid)
                continue
            if conn.execute("SELECT 1 FROM probe_heartbeats WHERE probe_id = ? AND ts = ?", (pid, ts)).fetchone():
                continue
            conn.execute("INSERT INTO probe_heartbeats (probe_id, ts) VALUES (?, ?)", (pid, ts))
            added += 1
            if row[0] is None or ts > row[0]:
                conn.execute("UPDATE probes SET last_seen_ts = ?, buffered = ?, buffered_since_ts = ?, "
                             "software = coalesce(?, software) WHERE probe_id = ?",
                             (ts, b.get("buffered"), b.get("buffered_since_ts"), b.get("software"), pid))
            if b.get("access"):
                auth.remember_network(conn, {"probe_id": pid, "cc": b.get("cc"), "asn": b.get("asn"),
                                             "access": b["access"]}, ts)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return {"added": added, "unknown_probes": sorted(unknown)}


async def heartbeats(request: web.Request) -> web.Response:
    try:
        check_token(request)
        beats = check_beats(json_body(await request.read()), cfg(request.app).clock_window_s)
    except auth.AuthError as exc:
        return error(exc.status, str(exc))
    return ok(await request.app[STORE].write(store_beats, beats))


def setup(app: web.Application) -> None:
    """Mount the routes when the upstream has a replica token (replication is opt-in)."""
    if not cfg(app).section("replica").token:
        return
    app.router.add_get(f"{REPLICA_API}/registry", registry)
    app.router.add_get(f"{REPLICA_API}/pull", pull)
    app.router.add_post(f"{REPLICA_API}/measurements", forwarded_measurements)
    app.router.add_post(f"{REPLICA_API}/heartbeats", heartbeats)
