"""The outbox: every result is written here, durably, before anything else happens to it.

Items (results, and reports of what a full disk forced out) form a hash chain: each carries the
hash of the item before it, so a gap or an edit made while the probe was offline is detectable -
here by :meth:`Outbox.verify`, at the coordinator by the links it receives.  Items leave only as a
prefix (oldest first): after the coordinator acknowledged them, or under the disk quota, in which
case a ``drop`` item naming every evicted measurement id is appended.  Records the coordinator
rejected are kept in ``rejected`` with the reason.  Not thread-safe: use from one thread.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.record import canonical_json
from probe.signing import GENESIS, chain_hash, chain_hash_raw

DEFAULT_QUOTA_BYTES = 512 * 2**20


class OutboxError(Exception):
    """The outbox file is damaged (its hash chain does not verify)."""


@dataclass(frozen=True)
class Item:
    seq: int
    kind: str               # record | drop
    item_id: str            # measurement id or drop id
    raw: bytes              # canonical JSON of the record or drop report (what the hash covers)
    prev: str
    hash: str
    size: int

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.raw))

    def wire(self) -> dict[str, Any]:
        return {"prev": self.prev, "hash": self.hash, self.kind: self.raw.decode()}


class Outbox:
    def __init__(self, path: str | Path, quota_bytes: int = DEFAULT_QUOTA_BYTES):
        self.path = Path(path)
        self.quota_bytes = quota_bytes
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")   # a Raspberry Pi loses power: FULL, not NORMAL
        self.conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS items (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, item_id TEXT NOT NULL UNIQUE,
                start_time TEXT, payload BLOB NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL,
                size INTEGER NOT NULL, created_ts REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS rejected (
                measurement_id TEXT PRIMARY KEY, reason TEXT NOT NULL, payload BLOB NOT NULL, ts REAL NOT NULL);
            INSERT OR IGNORE INTO meta VALUES ('head', '0000000000000000000000000000000000000000000000000000000000000000');
            INSERT OR IGNORE INTO meta VALUES ('base', '0000000000000000000000000000000000000000000000000000000000000000');
            """
        )
        self._bytes = self._scalar("SELECT coalesce(sum(size), 0) FROM items")

    def _scalar(self, sql: str, *args: Any) -> Any:
        return self.conn.execute(sql, args).fetchone()[0]

    def _meta(self, key: str) -> str:
        return str(self._scalar("SELECT value FROM meta WHERE key = ?", key))

    def append(self, record: dict[str, Any]) -> list[str]:
        """Store one record at the chain's head; returns measurement ids evicted to make room."""
        return self.append_many([record])

    def append_many(self, records: list[dict[str, Any]]) -> list[str]:
        """Store records in order, in one transaction; returns measurement ids evicted to make room."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            head = self._meta("head")
            rows = []
            now = time.time()
            for record in records:
                blob = canonical_json(record)
                h = chain_hash(head, record)
                rows.append((record["measurement_id"], record.get("start_time"), blob, head, h, len(blob), now))
                head = h
                self._bytes += len(blob)
            conn.executemany("INSERT INTO items (kind, item_id, start_time, payload, prev, hash, size, created_ts) "
                             "VALUES ('record', ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'head'", (head,))
            evicted = self._evict_locked() if self._bytes > self.quota_bytes else []
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            self._bytes = self._scalar("SELECT coalesce(sum(size), 0) FROM items")
            raise
        return evicted

    def _evict_locked(self) -> list[str]:
        """Evict oldest items until under quota; append one drop item naming all of them."""
        target = int(self.quota_bytes * 0.9)
        ids: list[str] = []
        fresh: list[str] = []
        times: list[str] = []
        freed, last_hash, last_seq = 0, None, None
        for seq, kind, item_id, start, payload, h, size in self.conn.execute(
                "SELECT seq, kind, item_id, start_time, payload, hash, size FROM items ORDER BY seq"):
            if self._bytes - freed <= target:
                break
            if kind == "drop":  # an older drop report is folded into the new one
                old = json.loads(payload)
                ids.extend(old["measurement_ids"])
                times.extend(t for t in (old.get("first_start_time"), old.get("last_start_time")) if t)
            else:
                ids.append(item_id)
                fresh.append(item_id)
                if start:
                    times.append(start)
            freed += size
            last_hash, last_seq = h, seq
        if last_seq is None:
            return []
        self.conn.execute("DELETE FROM items WHERE seq <= ?", (last_seq,))
        self.conn.execute("UPDATE meta SET value = ? WHERE key = 'base'", (last_hash,))
        self._bytes -= freed
        drop = {"drop_id": "drop-" + os.urandom(8).hex(), "dropped_count": len(ids), "dropped_bytes": freed,
                "first_start_time": min(times) if times else None, "last_start_time": max(times) if times else None,
                "measurement_ids": ids, "ts": time.time()}
        blob = canonical_json(drop)
        head = self._meta("head")
        h = chain_hash(head, drop)
        self.conn.execute("INSERT INTO items (kind, item_id, start_time, payload, prev, hash, size, created_ts) "
                          "VALUES ('drop', ?, NULL, ?, ?, ?, ?, ?)", (drop["drop_id"], blob, head, h, len(blob), time.time()))
        self.conn.execute("UPDATE meta SET value = ? WHERE key = 'head'", (h,))
        self._bytes += len(blob)
        return fresh

    def peek(self, max_items: int, max_bytes: int) -> list[Item]:
        """The oldest items, at most ``max_items`` and about ``max_bytes`` of JSON."""
        out: list[Item] = []
        total = 0
        for seq, kind, item_id, payload, prev, h, size in self.conn.execute(
                "SELECT seq, kind, item_id, payload, prev, hash, size FROM items ORDER BY seq LIMIT ?", (max_items,)):
            if out and total + size > max_bytes:
                break
            out.append(Item(seq, kind, item_id, payload if isinstance(payload, bytes) else str(payload).encode(), prev, h, size))
            total += size
        return out

    def acknowledge(self, batch: list[Item], rejected: dict[str, str]) -> None:
        """The coordinator committed ``batch`` (a prefix): remove it; keep rejected records aside."""
        if not batch:
            return
        first = self._scalar("SELECT min(seq) FROM items")
        if first != batch[0].seq:
            raise OutboxError("acknowledged batch is not the outbox's oldest items")
        now = time.time()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for item in batch:
                if item.kind == "record" and item.item_id in rejected:
                    self.conn.execute("INSERT OR REPLACE INTO rejected VALUES (?, ?, ?, ?)",
                                      (item.item_id, rejected[item.item_id], item.raw, now))
            self.conn.execute("DELETE FROM items WHERE seq <= ?", (batch[-1].seq,))
            self.conn.execute("UPDATE meta SET value = ? WHERE key = 'base'", (batch[-1].hash,))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self._bytes -= sum(i.size for i in batch)

    def verify(self) -> int:
        """Walk the chain from ``base`` to ``head``; returns the item count or raises OutboxError."""
        prev = self._meta("base")
        n = 0
        for seq, payload, p, h in self.conn.execute("SELECT seq, payload, prev, hash FROM items ORDER BY seq"):
            if p != prev:
                raise OutboxError(f"outbox chain broken at seq {seq}: prev does not match the item before")
            if chain_hash_raw(p, payload if isinstance(payload, bytes) else str(payload).encode()) != h:
                raise OutboxError(f"outbox chain broken at seq {seq}: content does not match its hash")
            prev, n = h, n + 1
        if prev != self._meta("head"):
            raise OutboxError("outbox chain broken: the newest item is not the recorded head")
        return n

    def stats(self) -> dict[str, Any]:
        row = self.conn.execute("SELECT count(*), min(created_ts), coalesce(sum(size), 0) FROM items "
                                "WHERE kind = 'record'").fetchone()
        drops = self.conn.execute("SELECT payload FROM items WHERE kind = 'drop'").fetchall()
        return {"buffered": row[0], "buffered_since_ts": row[1], "buffered_bytes": row[2],
                "pending_drop_reports": len(drops),
                "rejected": self._scalar("SELECT count(*) FROM rejected")}

    def count(self) -> int:
        return int(self._scalar("SELECT count(*) FROM items"))

    def close(self) -> None:
        self.conn.close()


__all__ = ["GENESIS", "Item", "Outbox", "OutboxError"]
