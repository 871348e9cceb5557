"""Running the engine over stored data: once over a range (``detect``), or step by step (service).

Live steps re-evaluate from the earliest of: the start of any event still open, the measurement
time of the oldest newly arrived row (a late upload from inside a blackout refines the record),
and a few intervals before the data's horizon.  Both paths call the same pure :func:`detect` and
the same idempotent :func:`save_events`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from coordinator.verdict.engine import detect
from coordinator.verdict.observations import Obs
from coordinator.verdict.persist import (
    SaveResult,
    covering_since,
    horizon,
    load_dataset,
    max_seq,
    recent_interval,
    save_events,
)
from coordinator.verdict.settings import Settings
from coordinator.verdict.tracker import Event

LIVE_CONTEXT_INTERVALS = 3.0     # re-evaluated before the horizon on every live step


def detect_range(conn: sqlite3.Connection, since: float, until: float, s: Settings,
                 recorded_ts: float | None = None) -> tuple[list[Event], SaveResult]:
    """Re-compute and store the events of [since, until] (``since`` moves back to the start of any
    stored event that spans it)."""
    since = covering_since(conn, since)
    data = load_dataset(conn, since, until, s)
    events = detect(data, since, until, s)
    return events, save_events(conn, events, since, until, recorded_ts)


@dataclass
class Plan:
    since: float
    until: float
    seq: int
    horizon: float


class LiveDetector:
    """Remembers what it has seen (measurement ``seq``, data horizon) between steps."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        self.seq = 0
        self.horizon: float | None = None
        self.started = False
        self.cache: dict[int, Obs] = {}

    def plan(self, conn: sqlite3.Connection) -> Plan | None:
        """What to re-evaluate now, or None when nothing new arrived.  Read-only."""
        seq, hz = max_seq(conn), horizon(conn)
        if hz is None or (seq == self.seq and hz == self.horizon):
            return None
        interval = recent_interval(conn, hz)
        since = hz - (LIVE_CONTEXT_INTERVALS if self.started else self.s.lookback_intervals) * interval
        oldest_new = conn.execute("SELECT MIN(start_ts) FROM measurements WHERE seq > ? AND source = 'tocsin'",
                                  (self.seq,)).fetchone()[0]
        if self.started and oldest_new is not None:
            since = min(since, oldest_new)
        return Plan(covering_since(conn, since), hz, seq, hz)

    def compute(self, conn: sqlite3.Connection, plan: Plan) -> list[Event]:
        return detect(load_dataset(conn, plan.since, plan.until, self.s, self.cache), plan.since, plan.until, self.s)

    def save(self, conn: sqlite3.Connection, plan: Plan, events: list[Event]) -> SaveResult:
        result = save_events(conn, events, plan.since, plan.until)
        self.seq, self.horizon, self.started = plan.seq, plan.horizon, True
        return result


def describe(events: list[Event]) -> list[dict[str, Any]]:
    return [{"kind": e.kind, "scope": e.scope, "state": e.state, "start_ts": e.start_ts} for e in events]
