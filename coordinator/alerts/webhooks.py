"""Webhook delivery: each ``event_transitions`` row to each webhook once, in order, across restarts.

Each webhook has a cursor in ``alert_cursors`` (the last ``seq`` it answered 2xx to), committed
right after the 2xx.  A failed attempt (non-2xx, timeout, connection error) is retried with
exponential backoff and jitter, forever, and the webhook's later transitions wait behind it, so
order is kept.  A webhook seen for the first time starts after the newest transition (no flood of
history).  The one window for a repeat is a crash between the receiver's 2xx and the cursor's
commit: the repeat carries the same ``X-Tocsin-Delivery`` id, so receivers can drop it.

Body: ``{"delivery_id", "seq", "event_id", "state", "at", "at_ts", "recorded_ts", "event"}``.
Headers: ``X-Tocsin-Delivery``, ``X-Tocsin-Timestamp`` (unix seconds), ``X-Tocsin-Signature:
ed25519=<base64>`` over ``<timestamp>.<body>`` with the coordinator's key (``GET
/api/v1/archives/key``), and ``X-Tocsin-Signature-256: sha256=<hex HMAC>`` of the same bytes when
``webhook_secret`` is set.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import sqlite3
import time
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.alerts.settings import Settings
from coordinator.archive import signing
from coordinator.archive.formats import utc_iso
from coordinator.store import Store

log = logging.getLogger("tocsin.alerts")
BATCH = 100


def cursor(conn: sqlite3.Connection, url: str) -> int:
    """The webhook's cursor, created at the newest transition when the webhook is new."""
    row = conn.execute("SELECT last_seq FROM alert_cursors WHERE webhook = ?", (url,)).fetchone()
    if row is not None:
        return int(row[0])
    top = conn.execute("SELECT coalesce(max(seq), 0) FROM event_transitions").fetchone()[0]
    conn.execute("INSERT OR IGNORE INTO alert_cursors (webhook, last_seq, updated_ts) VALUES (?, ?, ?)",
                 (url, top, time.time()))
    return int(conn.execute("SELECT last_seq FROM alert_cursors WHERE webhook = ?", (url,)).fetchone()[0])


def advance(conn: sqlite3.Connection, url: str, seq: int) -> None:
    conn.execute("UPDATE alert_cursors SET last_seq = max(last_seq, ?), delivered = delivered + 1, updated_ts = ?"
                 " WHERE webhook = ?", (seq, time.time(), url))


def pending(conn: sqlite3.Connection, after: int, limit: int = BATCH) -> list[tuple[int, str, str, float, float, str]]:
    return [tuple(r) for r in conn.execute(
        "SELECT seq, event_id, state, at_ts, recorded_ts, payload FROM event_transitions WHERE seq > ? ORDER BY seq"
        " LIMIT ?", (after, limit))]


def body(url: str, row: tuple[int, str, str, float, float, str]) -> bytes:
    seq, event_id, state, at_ts, recorded_ts, payload = row
    delivery = f"{hashlib.sha256(url.encode()).hexdigest()[:12]}:{seq}"
    return json.dumps({"delivery_id": delivery, "seq": seq, "event_id": event_id, "state": state,
                       "at": utc_iso(at_ts), "at_ts": at_ts, "recorded_ts": recorded_ts,
                       "event": json.loads(payload)}, sort_keys=True).encode()


def headers(data: bytes, key: Ed25519PrivateKey, secret: str, now: float | None = None) -> dict[str, str]:
    stamp = str(int(time.time() if now is None else now))
    signed = stamp.encode() + b"." + data
    out = {"Content-Type": "application/json", "X-Tocsin-Delivery": json.loads(data)["delivery_id"],
           "X-Tocsin-Timestamp": stamp, "X-Tocsin-Signature": "ed25519=" + signing.sign(key, signed)}
    if secret:
        out["X-Tocsin-Signature-256"] = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return out


class Stats:
    """In-process delivery counters, read by the metrics collector."""

    def __init__(self) -> None:
        self.attempts: dict[tuple[str, str], int] = {}
        self.last_success: dict[str, float] = {}
        self.failing_since: dict[str, float] = {}

    def count(self, url: str, outcome: str) -> None:
        self.attempts[(url, outcome)] = self.attempts.get((url, outcome), 0) + 1


async def deliver_forever(store: Store, settings: Settings, url: str, key: Ed25519PrivateKey,
                          session: aiohttp.ClientSession, stats: Stats, wake: asyncio.Event) -> None:
    """One webhook's delivery loop (runs until cancelled)."""
    after = await store.write(cursor, url)
    while True:
        rows = await store.read(pending, after)
        if not rows:
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), settings.poll_interval_s)
            except TimeoutError:
                pass
            continue
        for row in rows:
            data = body(url, row)
            delay = settings.retry_initial_s
            while not await _attempt(session, url, data, key, settings, stats):
                stats.failing_since.setdefault(url, time.time())
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, settings.retry_max_s)
            await store.write(advance, url, row[0])
            after = row[0]
            stats.last_success[url] = time.time()
            stats.failing_since.pop(url, None)


async def _attempt(session: aiohttp.ClientSession, url: str, data: bytes, key: Ed25519PrivateKey,
                   settings: Settings, stats: Stats) -> bool:
    try:
        async with session.post(url, data=data, headers=headers(data, key, settings.webhook_secret),
                                timeout=aiohttp.ClientTimeout(total=settings.timeout_s)) as resp:
            await resp.read()
            ok = 200 <= resp.status < 300
            stats.count(url, "ok" if ok else f"http_{resp.status}")
            if not ok:
                log.warning("webhook %s answered %s", url, resp.status)
            return ok
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        stats.count(url, "error")
        log.warning("webhook %s failed: %s", url, exc.__class__.__name__)
        return False


__all__ = ["Any", "Stats", "advance", "body", "cursor", "deliver_forever", "headers", "pending"]
