"""SQL of the Atlas part: results (:mod:`coordinator.atlas.bulk`: the store's rows and idempotency,
in one transaction with their raw results), connection events, probe objects, cursors.  Every
function takes the writer (or a reader) connection and is meant to run on the store's threads,
never on the event loop.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from coordinator.atlas import bulk
from coordinator.atlas.normalize import ProbeInfo, TargetCountry
from coordinator.atlas.parse import MalformedResult

EVENTS = ("connect", "disconnect")


@dataclass
class Counts:
    """What an import or a fetch did; ``reasons`` counts malformed items by reason."""

    inserted: int = 0
    duplicates: int = 0
    malformed: int = 0
    events_inserted: int = 0
    events_duplicates: int = 0
    probes: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    inserted_ids: list[str] = field(default_factory=list)

    def add(self, other: Counts) -> None:
        for name in ("inserted", "duplicates", "malformed", "events_inserted", "events_duplicates", "probes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.reasons.update(other.reasons)
        self.inserted_ids.extend(other.inserted_ids)

    def as_dict(self) -> dict[str, Any]:
        return {"inserted": self.inserted, "duplicates": self.duplicates, "malformed": self.malformed,
                "events_inserted": self.events_inserted, "events_duplicates": self.events_duplicates,
                "probes": self.probes, "reasons": dict(self.reasons.most_common())}

    def bad(self, reason: str) -> None:
        self.malformed += 1
        self.reasons[reason] += 1


def kind_of(item: Any) -> str:
    """``result``, ``connection`` or ``probe`` - or ``""`` when it is none of them."""
    if not isinstance(item, dict):
        return ""
    if item.get("event") in EVENTS and "prb_id" in item and "timestamp" in item:
        return "connection"
    if "msm_id" in item or "prb_id" in item:
        return "result"
    if "id" in item and ("country_code" in item or "asn_v4" in item or "status" in item):
        return "probe"
    return ""


def store_results(conn: sqlite3.Connection, raws: Iterable[dict[str, Any]], *,
                  probes: Mapping[int, ProbeInfo] | None = None,
                  target_cc: TargetCountry | None = None,
                  texts: Sequence[str | None] | None = None) -> Counts:
    """Normalise and store results (:func:`coordinator.atlas.bulk.store_results`); the original
    result goes to ``atlas_raw``: ``texts[i]``, the JSON text ``raws[i]`` was decoded from, when the
    caller has it (else it is encoded again)."""
    out = Counts()
    bulk.store_results(conn, raws, out, probes=probes, target_cc=target_cc, texts=texts)
    return out


def event_row(item: dict[str, Any], probes: Mapping[int, ProbeInfo] | None = None) -> tuple[Any, ...]:
    """(prb_id, asn, cc, event, ts) of a connection event (msm 7000 result or stream probestatus)."""
    try:
        prb = int(item["prb_id"])
        ts = float(item["timestamp"])
    except (KeyError, TypeError, ValueError):
        raise MalformedResult("connection event: prb_id and timestamp must be numbers") from None
    if item.get("event") not in EVENTS:
        raise MalformedResult(f"connection event: event must be connect or disconnect, not {item.get('event')!r}")
    info = probes.get(prb) if probes else None
    asn = item.get("asn")
    if not isinstance(asn, int) or isinstance(asn, bool):
        asn = info.asn if info else None
    cc = item.get("country_code")
    if not (isinstance(cc, str) and len(cc) == 2):
        cc = info.cc if info else None
    return prb, asn, cc.upper() if cc else None, item["event"], ts


def store_connection_events(conn: sqlite3.Connection, items: Iterable[dict[str, Any]], *,
                            probes: Mapping[int, ProbeInfo] | None = None) -> Counts:
    out = Counts()
    rows = []
    for item in items:
        try:
            rows.append(event_row(item, probes))
        except MalformedResult as exc:
            out.bad(str(exc))
    if not rows:
        return out
    conn.execute("BEGIN IMMEDIATE")
    try:
        before = conn.total_changes
        conn.executemany("INSERT OR IGNORE INTO atlas_connection_events (prb_id, asn, cc, event, ts) "
                         "VALUES (?, ?, ?, ?, ?)", rows)
        new = conn.total_changes - before
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    out.events_inserted = new
    out.events_duplicates = len(rows) - new
    return out


def _epoch(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def probe_row(obj: dict[str, Any], now: float) -> tuple[Any, ...]:
    """An ``atlas_probes`` row from a probe object (2016 style or current)."""
    if not isinstance(obj.get("id"), int):
        raise MalformedResult("probe: id must be an integer")
    status = obj.get("status")
    since = obj.get("status_since")
    if isinstance(status, dict):
        since = status.get("since", since)
        status = status.get("name")
    tags = obj.get("tags") or []
    slugs = [t["slug"] if isinstance(t, dict) else str(t) for t in tags if isinstance(t, (dict, str))]
    cc = obj.get("country_code")
    return (obj["id"], cc.upper() if isinstance(cc, str) and len(cc) == 2 else None, obj.get("asn_v4"),
            obj.get("asn_v6"), status, _epoch(since), json.dumps(slugs), 1 if obj.get("is_anchor") else 0,
            now, orjson.dumps(obj).decode())


def store_probes(conn: sqlite3.Connection, objs: Iterable[dict[str, Any]]) -> Counts:
    out = Counts()
    now = time.time()
    rows = []
    for obj in objs:
        try:
            rows.append(probe_row(obj, now))
        except MalformedResult as exc:
            out.bad(str(exc))
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany("INSERT OR REPLACE INTO atlas_probes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    out.probes = len(rows)
    return out


def probe_infos(conn: sqlite3.Connection) -> dict[int, ProbeInfo]:
    return {r[0]: ProbeInfo(r[0], r[1], r[2]) for r in conn.execute("SELECT prb_id, cc, asn_v4 FROM atlas_probes")}


def target_countries(conn: sqlite3.Connection) -> dict[str, str]:
    """Target (name and address) -> country, from the campaigns' resolved target lists."""
    out: dict[str, str] = {}
    for (spec,) in conn.execute("SELECT spec FROM campaigns"):
        try:
            targets = json.loads(spec).get("targets", [])
        except (ValueError, AttributeError):
            continue
        for t in targets:
            if isinstance(t, dict) and t.get("cc"):
                for key in ("name", "address"):
                    if t.get(key):
                        out[str(t[key])] = t["cc"]
    return out


def get_state(conn: sqlite3.Connection, key: str, default: Any = None) -> Any:
    row = conn.execute("SELECT value FROM atlas_state WHERE key = ?", (key,)).fetchone()
    return default if row is None else json.loads(row[0])


def set_state(conn: sqlite3.Connection, key: str, value: Any) -> None:
    conn.execute("INSERT INTO atlas_state VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                 (key, json.dumps(value)))
