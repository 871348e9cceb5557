"""SQL of the verdict engine: load what it reads, store events, evidence and transitions.

Storing is idempotent.  A computed event is matched to a stored one of the same scope and family
whose time span overlaps it (same kind first) and keeps that event's id; otherwise its id is a
hash of kind, scope and start, so a backtest into an empty database always gives the same ids.
A transition row is written only for a state (or kind) the event has not yet announced, so
re-running detection over the same data writes nothing new and alerts deliver each change once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from coordinator.signals import Signal
from coordinator.store import iter_measurements
from coordinator.verdict.engine import Dataset
from coordinator.verdict.observations import Obs, derive_interval, obs_from_row
from coordinator.verdict.settings import DETECTOR_VERSION, Settings
from coordinator.verdict.tracker import Event

log = logging.getLogger(__name__)
FAMILY = {"blackout": "outage", "domestic_only": "outage"}
RANK = {"country": 3, "access": 2, "asn": 1}


def _family(kind: str) -> str:
    return FAMILY.get(kind, kind)


def recent_interval(conn: sqlite3.Connection, until: float) -> float:
    """The probe interval of the latest data (see :func:`derive_interval`)."""
    rows = conn.execute("SELECT probe_id, test_name, target, start_ts FROM measurements WHERE start_ts < ? AND "
                        "source = 'tocsin' ORDER BY start_ts DESC LIMIT 3000", (until,)).fetchall()
    return derive_interval(rows)


def load_dataset(conn: sqlite3.Connection, since: float, until: float, s: Settings,
                 cache: dict[int, Obs] | None = None) -> Dataset:
    """Observations and polls from ``lookback_intervals`` before ``since`` up to ``until``.

    ``cache`` (measurement seq -> observation) spares re-parsing rows a previous step has read:
    stored rows never change, so a live loop parses each row once."""
    interval = recent_interval(conn, until)
    start = since - s.lookback_intervals * interval
    if cache is None:
        obs = [obs_from_row(r) for r in iter_measurements(conn, source="tocsin", since=start, until=until)
               if "future" not in (r["flags"] or "")]
    else:
        seqs = [r[0] for r in conn.execute(
            "SELECT seq FROM measurements WHERE source = 'tocsin' AND start_ts >= ? AND start_ts < ? AND "
            "(flags IS NULL OR flags NOT LIKE '%future%')", (start, until))]
        missing = [q for q in seqs if q not in cache]
        for i in range(0, len(missing), 500):
            chunk = missing[i:i + 500]
            for r in conn.execute(f"SELECT * FROM measurements WHERE seq IN ({','.join('?' * len(chunk))})", chunk):
                cache[r["seq"]] = obs_from_row(r)
        for q in [q for q, o in cache.items() if o.ts < start]:
            del cache[q]
        obs = [cache[q] for q in seqs]
    beats: dict[str, list[float]] = defaultdict(list)
    try:
        for probe, ts in conn.execute("SELECT probe_id, ts FROM probe_heartbeats WHERE ts >= ? AND ts < ? ORDER BY ts",
                                      (start, until)):
            beats[probe].append(ts)
    except sqlite3.OperationalError:
        pass                                    # no heartbeat table (an archive-only database)
    return Dataset(obs, dict(beats), atlas_signals(conn, start, until), interval)


def atlas_signals(conn: sqlite3.Connection, since: float, until: float) -> list[Signal]:
    """RIPE Atlas signals when the Atlas feature is installed; none otherwise."""
    try:
        from coordinator.atlas.signals import atlas_signals as provider
    except ModuleNotFoundError:
        return []
    try:
        return list(provider(conn, since, until))
    except Exception:  # a broken provider must not stop detection on our own probes
        log.exception("atlas signals failed; detecting without them")
        return []


def max_seq(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM measurements").fetchone()[0])


def horizon(conn: sqlite3.Connection) -> float | None:
    """Latest measurement time of the data (measurements and polls), never the wall clock."""
    m = conn.execute("SELECT MAX(start_ts) FROM measurements WHERE flags IS NULL OR flags NOT LIKE '%future%'").fetchone()[0]
    try:
        b = conn.execute("SELECT MAX(ts) FROM probe_heartbeats").fetchone()[0]
    except sqlite3.OperationalError:
        b = None
    values = [v for v in (m, b) if v is not None]
    return max(values) if values else None


def covering_since(conn: sqlite3.Connection, since: float) -> float:
    """Move ``since`` back to the start of any stored event that spans it (never cut one in two)."""
    for _ in range(100):
        row = conn.execute("SELECT MIN(start_ts) FROM events WHERE start_ts < ? AND (resolved_ts IS NULL OR resolved_ts >= ?)"
                           " AND json_extract(details, '$.retracted') IS NULL", (since, since)).fetchone()
        if row[0] is None or row[0] >= since:
            return since
        since = row[0]
    return since


def event_id(e: Event) -> str:
    return "ev-" + hashlib.sha256(f"{e.kind}|{e.scope_type}|{e.scope}|{e.start_ts:.3f}".encode()).hexdigest()[:20]


def snapshot(event_id: str, e: Event) -> dict[str, Any]:
    return {"event_id": event_id, "kind": e.kind, "scope_type": e.scope_type, "scope": e.scope, "cc": e.cc,
            "asn": e.asn, "access": e.access, "target": e.target, "state": e.state, "confidence": e.confidence,
            "signals": e.signals, "start_ts": e.start_ts, "suspected_ts": e.suspected_ts,
            "confirmed_ts": e.confirmed_ts, "resolved_ts": e.resolved_ts, "restorations": e.restorations,
            "details": e.details, "detector_version": DETECTOR_VERSION}


@dataclass
class SaveResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    transitions: int = 0
    retracted: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"created": len(self.created), "updated": len(self.updated), "transitions": self.transitions,
                "retracted": len(self.retracted)}


def _overlaps(row: sqlite3.Row, e: Event) -> bool:
    r_end = row["resolved_ts"] if row["resolved_ts"] is not None else float("inf")
    e_end = e.resolved_ts if e.resolved_ts is not None else float("inf")
    return bool(row["start_ts"] <= e_end and r_end >= e.start_ts)


def save_events(conn: sqlite3.Connection, events: list[Event], since: float, until: float,
                recorded_ts: float | None = None) -> SaveResult:
    """Store the events computed for [since, until] in one transaction (see the module docstring)."""
    now = time.time() if recorded_ts is None else recorded_ts
    out = SaveResult()
    conn.execute("BEGIN IMMEDIATE")
    try:
        stored = conn.execute("SELECT * FROM events WHERE start_ts <= ? AND (resolved_ts IS NULL OR resolved_ts >= ?)",
                              (until, since)).fetchall()
        claimed: set[str] = set()
        for e in sorted(events, key=lambda x: (x.start_ts, x.scope)):
            cands = [r for r in stored if r["event_id"] not in claimed and r["cc"] == e.cc and _overlaps(r, e)
                     and _family(r["kind"]) == _family(e.kind)
                     and ((r["scope_type"], r["scope"]) == (e.scope_type, e.scope)
                          or RANK.get(r["scope_type"], 0) < RANK.get(e.scope_type, 0))]   # widened since
            cands.sort(key=lambda r: (r["scope"] != e.scope, r["kind"] != e.kind, abs(r["start_ts"] - e.start_ts)))
            if cands:
                eid = cands[0]["event_id"]
                old = json.loads(cands[0]["details"])
                if "previous_event" in old:
                    e.details.setdefault("previous_event", old["previous_event"])
                out.updated.append(eid)
            elif any(r["cc"] == e.cc and _family(r["kind"]) == _family(e.kind) and _overlaps(r, e)
                     and RANK.get(r["scope_type"], 0) > RANK.get(e.scope_type, 0) for r in stored):
                continue                     # inside a stored wider event: adds nothing, never announced
            else:
                eid = event_id(e)
                while conn.execute("SELECT 1 FROM events WHERE event_id = ?", (eid,)).fetchone():
                    eid += "-1"
                prev = conn.execute("SELECT event_id FROM events WHERE scope_type = ? AND scope = ? AND resolved_ts <= ? "
                                    "ORDER BY resolved_ts DESC LIMIT 1", (e.scope_type, e.scope, e.start_ts)).fetchone()
                if prev:
                    e.details.setdefault("previous_event", prev[0])
                out.created.append(eid)
            claimed.add(eid)
            out.transitions += _upsert(conn, eid, e, now)
        for r in stored:
            if r["event_id"] in claimed or r["start_ts"] < since:
                continue
            details = json.loads(r["details"])
            if details.get("retracted"):
                continue
            details["retracted"] = True                 # later data did not bear it out
            conn.execute("UPDATE events SET details = ?, updated_ts = ? WHERE event_id = ?",
                         (json.dumps(details), now, r["event_id"]))
            if r["state"] != "resolved":
                at = max(r["start_ts"], min(until, r["updated_ts"]))
                conn.execute("UPDATE events SET state = 'resolved', resolved_ts = ? WHERE event_id = ?", (at, r["event_id"]))
                payload = {**_row_snapshot(r), "state": "resolved", "resolved_ts": at, "details": details}
                _transition(conn, r["event_id"], "resolved", at, now, payload)
                out.transitions += 1
            out.retracted.append(r["event_id"])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return out


def _row_snapshot(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    for key in ("signals", "restorations", "details"):
        d[key] = json.loads(d[key])
    d.pop("updated_ts", None)
    return d


def _transition(conn: sqlite3.Connection, eid: str, state: str, at: float, now: float, payload: dict[str, Any]) -> None:
    conn.execute("INSERT INTO event_transitions (event_id, state, at_ts, recorded_ts, payload) VALUES (?, ?, ?, ?, ?)",
                 (eid, state, at, now, json.dumps(payload, sort_keys=True)))


def _upsert(conn: sqlite3.Connection, eid: str, e: Event, now: float) -> int:
    snap = snapshot(eid, e)
    row = (eid, e.kind, e.scope_type, e.scope, e.cc, e.asn, e.access, e.target, e.state, e.confidence,
           json.dumps(e.signals), e.start_ts, e.suspected_ts, e.confirmed_ts, e.resolved_ts,
           json.dumps(e.restorations), json.dumps(e.details, sort_keys=True), DETECTOR_VERSION, now)
    old = conn.execute("SELECT * FROM events WHERE event_id = ?", (eid,)).fetchone()
    same = old is not None and all(old[k] == v for k, v in zip(
        ("kind", "state", "confidence", "signals", "start_ts", "confirmed_ts", "resolved_ts", "restorations",
         "details"), (row[1], row[8], row[9], row[10], row[11], row[13], row[14], row[15], row[16]), strict=True))
    if not same:
        conn.execute("INSERT OR REPLACE INTO events (event_id, kind, scope_type, scope, cc, asn, access, target, state, "
                     "confidence, signals, start_ts, suspected_ts, confirmed_ts, resolved_ts, restorations, details, "
                     "detector_version, updated_ts) VALUES (" + ",".join("?" * 19) + ")", row)
    conn.executemany("INSERT OR IGNORE INTO event_evidence (event_id, measurement_id) VALUES (?, ?)",
                     [(eid, mid) for mid in e.evidence])
    past = conn.execute("SELECT state, payload FROM event_transitions WHERE event_id = ? ORDER BY seq", (eid,)).fetchall()
    states = {p["state"] for p in past}
    last = json.loads(past[-1]["payload"]) if past else {}
    last_kind, last_scope = last.get("kind", e.kind), last.get("scope", e.scope)
    last_state = past[-1]["state"] if past else None
    written = 0
    for state, at in (("suspected", e.suspected_ts), ("confirmed", e.confirmed_ts), ("resolved", e.resolved_ts)):
        if at is not None and state not in states:
            _transition(conn, eid, state, at, now, {**snap, "state": state})
            last_state, written = state, written + 1
    if last_state != e.state or last_kind != e.kind or last_scope != e.scope:   # reopened, reclassified, widened
        at = {"suspected": e.suspected_ts, "confirmed": e.confirmed_ts, "resolved": e.resolved_ts}[e.state]
        note: dict[str, Any] = {"reopened": True} if last_state != e.state else {}
        if last_kind != e.kind:
            note["reclassified_from"] = last_kind
        if last_scope != e.scope:
            note["widened_from"] = last_scope
        _transition(conn, eid, e.state, at or e.suspected_ts, now, {**snap, **note})
        written += 1
    return written
