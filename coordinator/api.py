"""Core HTTP API under /api/v1/: registration, schedule polls (heartbeats), invites, health.

Ingest lives in :mod:`coordinator.api_ingest`, the read side and campaign admin in
:mod:`coordinator.api_read`.  Handlers only translate HTTP; SQL runs on the Store's threads.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from coordinator import auth, campaigns
from coordinator.app import CONFIG, DATA_DIR, STORE
from coordinator.config import Config
from coordinator.prefixes import PrefixTable, load_table
from coordinator.ratelimit import RateLimiter
from probe import signing

API = "/api/v1"
SOFTWARE_MAX = 100


@dataclass
class ServiceState:
    admin_token: str
    prefixes: PrefixTable
    limiter: RateLimiter
    keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)


SERVICE = web.AppKey("service", ServiceState)


def cfg(app: web.Application) -> Config:
    """The app's coordinator.config.Config (app.py types the key loosely)."""
    return cast(Config, app[CONFIG])


def error(status: int, reason: str, **extra: Any) -> web.Response:
    return web.json_response({"error": reason, **extra}, status=status, dumps=lambda o: orjson.dumps(o).decode())


def ok(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def observe(request: web.Request) -> tuple[int, str | None] | None:
    """ASN and country of the connecting address (the address itself is not kept)."""
    origin = request.app[SERVICE].prefixes.lookup(request.remote or "")
    return (origin.asn, origin.cc) if origin else None


def require_admin(request: web.Request) -> None:
    auth.check_admin(request.app[SERVICE].admin_token, request.headers.get("Authorization"))


async def verify_signed(request: web.Request, body: bytes) -> str:
    """Check the signature headers of a probe request; returns the probe id or raises AuthError."""
    state, config = request.app[SERVICE], cfg(request.app)
    try:
        probe_id, ts, nonce, _ = signing.parse_headers(request.headers)
    except signing.SignatureError as exc:
        raise auth.AuthError(401, str(exc)) from None
    skew = ts - time.time()
    if abs(skew) > config.clock_window_s:
        raise auth.AuthError(401, f"request timestamp is {skew:+.0f} s from the coordinator's clock "
                                  f"(window ±{config.clock_window_s:.0f} s); use the Date header's offset")
    key = state.keys.get(probe_id)
    if key is None:
        row = await request.app[STORE].read(
            lambda c: c.execute("SELECT public_key, retired_ts FROM probes WHERE probe_id = ?", (probe_id,)).fetchone())
        if row is None:
            raise auth.AuthError(401, f"unknown probe {probe_id}")
        if row["retired_ts"] is not None:
            raise auth.AuthError(403, f"probe {probe_id} is retired")
        key = signing.load_public_key(row["public_key"])
        state.keys[probe_id] = key
    try:
        signing.verify(key, request.headers, request.method, request.path_qs, body)
    except signing.SignatureError as exc:
        raise auth.AuthError(401, str(exc)) from None
    wait = state.limiter.request(probe_id)
    if wait:
        raise auth.AuthError(429, f"rate limit: retry after {wait:.1f} s")
    await request.app[STORE].write(auth.use_nonce, probe_id, nonce, ts, config.clock_window_s)
    return probe_id


def json_body(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise auth.AuthError(400, f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise auth.AuthError(400, "body must be a JSON object")
    return doc


async def register(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        doc = json_body(body)
        public_key = doc.get("public_key")
        invite = doc.get("invite")
        if not isinstance(public_key, str) or not isinstance(invite, str):
            raise auth.AuthError(400, "invite and public_key (base64 Ed25519) are required")
        try:
            key = signing.load_public_key(public_key)
            signing.verify(key, request.headers, request.method, request.path_qs, body)
        except signing.SignatureError as exc:
            raise auth.AuthError(401, f"registration must be signed with the key it registers: {exc}") from None
        declared = {k: doc.get(k) for k in ("name", "cc", "asn", "access", "tags", "software") if doc.get(k) is not None}
        cc, asn, tags = declared.get("cc"), declared.get("asn"), declared.get("tags", [])
        if cc is not None and (not isinstance(cc, str) or len(cc) != 2 or not cc.isupper()):
            raise auth.AuthError(400, "cc must be two upper-case letters")
        if asn is not None and (not isinstance(asn, int) or isinstance(asn, bool) or not 0 <= asn < 2**32):
            raise auth.AuthError(400, "asn must be an integer")
        if not isinstance(tags, list) or not all(isinstance(t, str) and len(t) <= 40 for t in tags) or len(tags) > 20:
            raise auth.AuthError(400, "tags must be a list of at most 20 short strings")
        if len(str(declared.get("name", ""))) > 100 or len(str(declared.get("software", ""))) > SOFTWARE_MAX:
            raise auth.AuthError(400, "name and software must be at most 100 characters")
        probe = await request.app[STORE].write(auth.register_probe, invite, public_key, declared, observe(request))
    except auth.AuthError as exc:
        return error(exc.status, str(exc))
    return ok({"probe": probe, "poll_interval_s": cfg(request.app).poll_interval_s}, status=201)


def _poll_job(conn: Any, probe_id: str, status: dict[str, Any], observed: tuple[int, str | None] | None) -> dict[str, Any]:
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("INSERT INTO probe_heartbeats (probe_id, ts) VALUES (?, ?)", (probe_id, now))
        conn.execute("UPDATE probes SET last_seen_ts = ?, buffered = ?, buffered_since_ts = ?, software = "
                     "coalesce(?, software) WHERE probe_id = ?",
                     (now, status.get("buffered"), status.get("buffered_since_ts"), status.get("software"), probe_id))
        if observed:
            conn.execute("UPDATE probes SET observed_asn = ?, observed_cc = ? WHERE probe_id = ?",
                         (observed[0], observed[1], probe_id))
        probe = auth.effective(conn.execute("SELECT * FROM probes WHERE probe_id = ?", (probe_id,)).fetchone())
        auth.remember_network(conn, probe, now)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return probe


async def schedule(request: web.Request) -> web.Response:
    """A probe's poll: heartbeat, status report, and its current tasks."""
    body = await request.read()
    try:
        probe_id = await verify_signed(request, body)
        doc = json_body(body) if body else {}
    except auth.AuthError as exc:
        return error(exc.status, str(exc))
    status = {}
    for key in ("buffered", "buffered_since_ts"):
        value = doc.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            status[key] = value
    if isinstance(doc.get("software"), str):
        status["software"] = doc["software"][:SOFTWARE_MAX]
    store = request.app[STORE]
    probe = await store.write(_poll_job, probe_id, status, observe(request))
    active = await store.read(lambda c: campaigns.list_campaigns(c, active_only=True))
    tasks = []
    for c in active:
        tasks.extend(campaigns.tasks_for_probe(c["campaign_id"], c["spec"], probe))
    return ok({"probe": probe, "poll_interval_s": cfg(request.app).poll_interval_s,
               "server_time": time.time(), "campaigns": [c["campaign_id"] for c in active], "tasks": tasks})


async def make_invite(request: web.Request) -> web.Response:
    try:
        require_admin(request)
    except auth.AuthError as exc:
        return error(exc.status, str(exc))
    note = request.query.get("note")
    token = await request.app[STORE].write(auth.create_invite, cfg(request.app).invite_ttl_s, note)
    return ok({"invite": token}, status=201)


async def health(request: web.Request) -> web.Response:
    return ok({"status": "ok", "time": time.time()})


def setup(app: web.Application) -> None:
    from coordinator import api_ingest, api_read, replica, replica_api

    config = cfg(app)
    app[SERVICE] = ServiceState(
        admin_token=auth.admin_token(config.admin_token, app[DATA_DIR]),
        prefixes=load_table(config.prefix_table or None),
        limiter=RateLimiter(config.rate_requests_per_s, config.rate_burst_requests,
                            config.rate_records_per_s, config.rate_burst_records),
    )
    app.router.add_get(f"{API}/health", health)
    app.router.add_post(f"{API}/register", register)
    app.router.add_post(f"{API}/schedule", schedule)
    app.router.add_post(f"{API}/invites", make_invite)
    api_ingest.setup(app)
    api_read.setup(app)
    replica_api.setup(app)   # upstream side: only with [replica] token (docs/replica.md)
    replica.setup(app)       # replica mode: only with [replica] upstream


def routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, path) of every route under /api/v1/ (the docs test compares these)."""
    out = set()
    for r in app.router.routes():
        info = r.resource.get_info() if r.resource else {}
        path = info.get("path") or info.get("formatter") or ""
        if path.startswith(API) and r.method != "HEAD":
            out.add((r.method, path))
    return sorted(out)


__all__ = ["API", "SERVICE", "ServiceState", "cfg", "error", "json", "ok", "setup", "verify_signed"]
