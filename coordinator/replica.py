"""Replica mode: a full coordinator (own SQLite, own verdict engine) that keeps in step with an upstream.

On when ``[replica] upstream`` is set (docs/replica.md).  A background task, whenever the
upstream answers:

* pulls the registry (probes, their networks, campaigns) every ``registry_s``, and measurements
  and heartbeats every ``sync_s`` (cursors kept in ``replica_state``; the ingest is idempotent by
  measurement id, so a pull repeated after a crash is harmless);
* pushes what probes gave the replica itself: each batch uploaded to it, byte for byte with the
  probe's signature headers (the upstream checks the probe's own signature again), and each
  schedule poll it answered (the heartbeat, with its time), queued in ``replica_outbox`` before
  the probe gets its answer and removed only once the upstream acknowledged it.

Registration, invites and campaign changes belong to the upstream: the replica refuses them (409).
Every upstream request has a bounded timeout; failures back off with jitter; SQL runs on the
store's threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from coordinator import auth
from coordinator.api import API, cfg, error
from coordinator.app import STORE
from coordinator.config import ReplicaSettings
from coordinator.replica_api import SIGNED_PATH
from coordinator.replica_sync import Upstream, UpstreamError, apply_pull, apply_registry, take_outbox
from probe import signing

log = logging.getLogger("tocsin.replica")
REFUSED = (f"{API}/register", f"{API}/invites", f"{API}/campaigns")
BACKOFF_CAP_S = 60.0
BACKOFF_CAP_ROUNDS = 3     # the backoff never exceeds this many sync periods: back in step soon after a cut


def backoff_s(sync_s: float, failures: int) -> float:
    return min(BACKOFF_CAP_S, sync_s * BACKOFF_CAP_ROUNDS, sync_s * 2 ** min(failures, 16))


class Status(dict[str, Any]):
    """What ``GET /api/v1/replica/status`` shows (the sync task updates it)."""

    registry_due = False     # set when a probe the replica does not know called: pull the registry early


STATUS = web.AppKey("replica_status", Status)
TABLES = (
    "CREATE TABLE IF NOT EXISTS replica_state (key TEXT PRIMARY KEY, value REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS replica_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, "
    "probe_id TEXT NOT NULL, body BLOB NOT NULL, queued_ts REAL NOT NULL, sig TEXT)",
)


class ReplicaError(ValueError):
    """The replica's settings are unusable; the message says which."""


def upstream_token(settings: ReplicaSettings) -> str:
    if settings.upstream_token:
        return settings.upstream_token
    if settings.upstream_token_file:
        try:
            return Path(settings.upstream_token_file).read_text().strip().splitlines()[0].strip()
        except (OSError, IndexError) as exc:
            raise ReplicaError(f"[replica] upstream_token_file {settings.upstream_token_file}: {exc}") from None
    raise ReplicaError("[replica] upstream is set but neither upstream_token nor upstream_token_file")


def create_tables(conn: sqlite3.Connection) -> None:
    for sql in TABLES:
        conn.execute(sql)
    if "sig" not in {r[1] for r in conn.execute("PRAGMA table_info(replica_outbox)")}:   # made before 'sig'
        conn.execute("ALTER TABLE replica_outbox ADD COLUMN sig TEXT")


def signature_of(request: web.Request) -> str:
    """The probe's signature headers and the path it signed, as the upstream needs them to check it."""
    sig = {h: request.headers[h] for h in signing.HEADERS}
    sig[SIGNED_PATH] = request.path_qs
    return json.dumps(sig)


def _queue(conn: sqlite3.Connection, kind: str, probe_id: str, body: bytes, sig: str | None = None) -> None:
    conn.execute("INSERT INTO replica_outbox (kind, probe_id, body, queued_ts, sig) VALUES (?, ?, ?, ?, ?)",
                 (kind, probe_id, body, time.time(), sig))


def queue_beat(conn: sqlite3.Connection, probe_id: str) -> None:
    """The poll just answered, as the upstream will store it (the same time, so re-pulls match)."""
    row = conn.execute("SELECT * FROM probes WHERE probe_id = ?", (probe_id,)).fetchone()
    if row is None or row["last_seen_ts"] is None:
        return
    eff = auth.effective(row)
    beat = {"probe_id": probe_id, "ts": row["last_seen_ts"], "buffered": row["buffered"],
            "buffered_since_ts": row["buffered_since_ts"], "software": row["software"],
            "cc": eff["cc"], "asn": eff["asn"], "access": eff["access"]}
    _queue(conn, "beat", probe_id, json.dumps(beat).encode())


def _settle(conn: sqlite3.Connection, done: list[int], refused: list[int]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany("DELETE FROM replica_outbox WHERE id = ?", [(i,) for i in done])
        conn.executemany("UPDATE replica_outbox SET kind = 'refused:' || kind WHERE id = ?", [(i,) for i in refused])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _probe_id(request: web.Request) -> str | None:
    try:
        return signing.parse_headers(request.headers)[0]
    except signing.SignatureError:
        return None


@web.middleware
async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
    path = request.path
    if request.method == "POST" and any(path == p or path.startswith(p + "/") for p in REFUSED):
        upstream = cfg(request.app).section("replica").upstream
        return error(409, f"this coordinator is a replica of {upstream}: register probes, make invites and "
                          "change campaigns there")
    resp = await handler(request)
    if request.method != "POST" or path not in (f"{API}/measurements", f"{API}/schedule"):
        return resp
    if resp.status == 401:      # perhaps a probe registered since the last registry pull: pull it now
        request.app[STATUS].registry_due = True
    if resp.status != 200:
        return resp
    probe_id = _probe_id(request)
    if probe_id is None:
        return resp
    store = request.app[STORE]
    try:   # queued for the upstream before the probe hears "200": nothing it hands over is lost
        if path == f"{API}/measurements":
            await store.write(_queue, "batch", probe_id, await request.read(), signature_of(request))
        else:
            await store.write(queue_beat, probe_id)
    except Exception as exc:
        log.exception("replica: could not queue %s of %s for the upstream", path, probe_id)
        return error(503, f"replica could not queue the data for its upstream: {exc}")
    return resp


class Syncer:
    """Pull from and push to the upstream, forever; one round every ``sync_s``."""

    def __init__(self, app: web.Application, settings: ReplicaSettings, token: str) -> None:
        self.app, self.s = app, settings
        self.upstream = Upstream(settings.upstream, token, settings.timeout_s)
        self.rng = random.Random()
        self.next_registry = 0.0
        self.status = app[STATUS]

    async def round(self) -> None:
        store = self.app[STORE]
        now = time.time()
        if now >= self.next_registry or (self.status.registry_due and now >= self.next_registry - self.s.registry_s
                                         + self.s.sync_s):
            self.status.registry_due = False
            reg = await self.upstream.get("registry", {})
            await store.write(apply_registry, reg)
            self.next_registry = now + self.s.registry_s
            self.status["registry_ts"] = now
        for _ in range(20):                      # catch up in bounded pages
            cursors = await store.read(lambda c: dict(c.execute("SELECT key, value FROM replica_state").fetchall()))
            params = {"after_seq": int(cursors.get("last_seq", 0)), "beats_after": int(cursors.get("last_beat", 0)),
                      "since": f"{time.time() - self.s.history_s:.3f}", "limit": self.s.batch_records}
            page = await self.upstream.get("pull", params)
            pulled = await store.write(apply_pull, page)
            self.status["pulled_records"] = self.status.get("pulled_records", 0) + pulled
            if not page.get("more"):
                break
        await self.push()
        self.status.update(last_ok_ts=time.time(), last_error=None, upstream_reachable=True)

    async def push(self) -> None:
        store = self.app[STORE]
        for _ in range(100):
            rows = await store.read(take_outbox, self.s.batch_records)
            if not rows:
                break
            beats = [r for r in rows if r["kind"] == "beat"]
            done: list[int] = []
            refused: list[int] = []
            if beats:
                body = json.dumps({"beats": [json.loads(r["body"]) for r in beats]}).encode()
                await self._send("heartbeats", body, {}, {"Content-Type": "application/json"}, [r["id"] for r in beats],
                                 done, refused)
            for r in rows:
                if r["kind"] != "batch":
                    continue
                ctype = "application/gzip" if bytes(r["body"][:2]) == b"\x1f\x8b" else "application/json"
                sig = json.loads(r["sig"]) if r["sig"] else {}    # none: queued by an older replica (refused)
                await self._send("measurements", bytes(r["body"]), {"probe_id": r["probe_id"]}, {"Content-Type": ctype,
                                 **sig}, [r["id"]], done, refused)
            await store.write(_settle, done, refused)
            self.status["forwarded"] = self.status.get("forwarded", 0) + len(done)
            if refused:
                self.status["refused"] = self.status.get("refused", 0) + len(refused)

    async def _send(self, route: str, body: bytes, params: dict[str, Any], headers: dict[str, str], ids: list[int],
                    done: list[int], refused: list[int]) -> None:
        try:
            await self.upstream.post(route, body, params, headers)
            done.extend(ids)
        except UpstreamError as exc:
            if not exc.refused:
                raise                      # the upstream is away or failing: retried next round
            # refused for good: kept aside (never resent, never blocking what follows)
            log.error("replica: upstream refused %s %s for good: %s", route, params, exc)
            self.status["last_refusal"] = str(exc)[:300]
            refused.extend(ids)

    async def run(self) -> None:
        failures = 0
        try:
            while True:
                try:
                    await self.round()
                    failures = 0
                    wait = self.s.sync_s
                except (aiohttp.ClientError, TimeoutError, OSError, UpstreamError) as exc:
                    failures += 1
                    wait = backoff_s(self.s.sync_s, failures) * self.rng.uniform(0.5, 1.0)
                    self.status.update(last_error=f"{type(exc).__name__}: {exc}"[:300], upstream_reachable=False)
                    log.warning("replica: upstream %s: %s (retry in %.1f s)", self.s.upstream, exc, wait)
                except Exception as exc:   # a bug must not end replication for good
                    failures += 1
                    wait = backoff_s(self.s.sync_s, failures)
                    self.status.update(last_error=f"{type(exc).__name__}: {exc}"[:300])
                    log.exception("replica: sync round failed")
                self.status["failures"] = failures
                await asyncio.sleep(wait)
        finally:
            await self.upstream.close()


async def status_route(request: web.Request) -> web.Response:
    status: dict[str, Any] = request.app[STATUS].copy()
    status["queued"] = await request.app[STORE].read(
        lambda c: c.execute("SELECT COUNT(*) FROM replica_outbox WHERE kind IN ('beat', 'batch')").fetchone()[0])
    return web.json_response(status)


def setup(app: web.Application) -> None:
    """Replica mode when ``[replica] upstream`` is set: the middleware, the sync task, status."""
    settings: ReplicaSettings = cfg(app).section("replica")
    if not settings.upstream:
        return
    token = upstream_token(settings)
    status = Status({"upstream": settings.upstream, "upstream_reachable": None, "last_ok_ts": None, "last_error": None})
    app[STATUS] = status
    app.middlewares.append(middleware)
    app.router.add_get(f"{API}/replica/status", status_route)

    async def background(app: web.Application) -> AsyncIterator[None]:
        await app[STORE].write(create_tables)
        task = asyncio.create_task(Syncer(app, settings, token).run(), name="replica-sync")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(background)
