"""The replica's half of replication: its HTTP client for the upstream and the SQL that applies
what it pulled (each function runs on the store's writer or reader thread, never on the loop)."""

from __future__ import annotations

import sqlite3
from typing import Any

import aiohttp

from coordinator.replica_api import CAMPAIGN_COLUMNS, NETWORK_COLUMNS, PROBE_COLUMNS, REPLICA_API
from coordinator.store import insert_measurements


class UpstreamError(Exception):
    """The upstream answered, but not with what replication needs (status and reason in the text)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status

    @property
    def refused(self) -> bool:
        """The upstream refuses this content for good (sending it again cannot help)."""
        return self.status in (400, 413, 422)


class Upstream:
    """Bearer-token JSON client for the upstream's replica routes; every request bounded."""

    def __init__(self, base: str, token: str, timeout_s: float) -> None:
        self.base = base.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, connect=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self.headers, timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _answer(self, resp: aiohttp.ClientResponse, what: str) -> dict[str, Any]:
        try:
            doc = await resp.json(content_type=None)
        except ValueError:
            doc = None
        if resp.status != 200 or not isinstance(doc, dict):
            reason = doc.get("error") if isinstance(doc, dict) else (await resp.text())[:200]
            raise UpstreamError(f"{what}: HTTP {resp.status} {reason}", resp.status)
        return doc

    async def get(self, route: str, params: dict[str, Any]) -> dict[str, Any]:
        async with self.session().get(f"{self.base}{REPLICA_API}/{route}", params=params) as resp:
            return await self._answer(resp, f"GET {route}")

    async def post(self, route: str, body: bytes, params: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        async with self.session().post(f"{self.base}{REPLICA_API}/{route}", data=body, params=params,
                                       headers=headers) as resp:
            doc = await self._answer(resp, f"POST {route}")
        if route == "measurements" and not doc.get("committed"):
            raise UpstreamError(f"POST {route}: the upstream did not commit the batch: {doc}")
        return doc


def _upsert(conn: sqlite3.Connection, table: str, cols: tuple[str, ...], keys: tuple[str, ...],
            rows: list[dict[str, Any]], updates: dict[str, str]) -> None:
    if not rows:
        return
    sets = ", ".join(f"{c} = {updates.get(c, 'excluded.' + c)}" for c in cols if c not in keys)
    sql = (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
           f"ON CONFLICT({', '.join(keys)}) DO UPDATE SET {sets}")
    conn.executemany(sql, [tuple(r.get(c) for c in cols) for r in rows])


def apply_registry(conn: sqlite3.Connection, reg: dict[str, Any]) -> None:
    """Probes, networks and campaigns as the upstream has them (times only move forward)."""
    for key in ("probes", "networks", "campaigns"):
        if not isinstance(reg.get(key), list) or not all(isinstance(r, dict) for r in reg[key]):
            raise ValueError(f"registry answer: {key} must be a list of objects")
    conn.execute("BEGIN IMMEDIATE")
    try:
        _upsert(conn, "probes", PROBE_COLUMNS, ("probe_id",), reg["probes"],
                {"last_seen_ts": "max(coalesce(probes.last_seen_ts, 0), coalesce(excluded.last_seen_ts, 0))",
                 "public_key": "probes.public_key"})
        _upsert(conn, "probe_networks", NETWORK_COLUMNS, ("probe_id", "network"), reg["networks"],
                {"first_ts": "min(probe_networks.first_ts, excluded.first_ts)",
                 "last_ts": "max(probe_networks.last_ts, excluded.last_ts)"})
        _upsert(conn, "campaigns", CAMPAIGN_COLUMNS, ("campaign_id",), reg["campaigns"], {})
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def apply_pull(conn: sqlite3.Connection, page: dict[str, Any]) -> int:
    """Store a pulled page and advance the cursors; returns how many records were new here.
    Measurements go first, in their own transaction (idempotent by id, so a crash before the cursors
    move only pulls them again); heartbeats (once each) and the cursors then share one transaction."""
    records, beats = page.get("records"), page.get("beats")
    if not isinstance(records, list) or not isinstance(beats, list):
        raise ValueError("pull answer: records and beats must be lists")
    out = insert_measurements(conn, records) if records else None
    conn.execute("BEGIN IMMEDIATE")
    try:
        for probe_id, ts in beats:
            if not conn.execute("SELECT 1 FROM probe_heartbeats WHERE probe_id = ? AND ts = ?", (probe_id, ts)).fetchone():
                conn.execute("INSERT INTO probe_heartbeats (probe_id, ts) VALUES (?, ?)", (probe_id, ts))
                conn.execute("UPDATE probes SET last_seen_ts = ? WHERE probe_id = ? AND coalesce(last_seen_ts, 0) < ?",
                             (ts, probe_id, ts))
        conn.executemany("INSERT INTO replica_state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                         "value = max(value, excluded.value)",
                         [("last_seq", float(page["last_seq"])), ("last_beat", float(page["last_beat"]))])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(out.inserted) if out else 0


def take_outbox(conn: sqlite3.Connection, max_records: int) -> list[sqlite3.Row]:
    """The oldest queued items: heartbeats (up to ``max_records``) and at most 20 batches."""
    beats = conn.execute("SELECT * FROM replica_outbox WHERE kind = 'beat' ORDER BY id LIMIT ?", (max_records,)).fetchall()
    # kind 'refused:beat' / 'refused:batch': the upstream refused them for good; kept, never resent
    batches = conn.execute("SELECT * FROM replica_outbox WHERE kind = 'batch' ORDER BY id LIMIT 20").fetchall()
    return [*beats, *batches]
