"""Running the engine over stored data: once over a range (``detect``), or step by step (service).

Live steps re-evaluate from the earliest of: the start of any event still open, the measurement
time of the oldest newly arrived row (a late upload from inside a blackout refines the record),
and a few intervals before the data's horizon.  Both paths call the same pure :func:`detect` and
the same idempotent :func:`save_events`.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from coordinator.verdict.engine import Dataset, detect
from coordinator.verdict.observations import Obs, obs_from_row
from coordinator.verdict.persist import (
    SaveResult,
    atlas_signals,
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
_NOT_FUTURE = "(flags IS NULL OR flags NOT LIKE '%future%')"


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
        self.window = Window()

    def plan(self, conn: sqlite3.Connection) -> Plan | None:
        """What to re-evaluate now, or None when nothing new arrived.  Read-only."""
        seq, hz = max_seq(conn), horizon(conn)
        if hz is None or (seq == self.seq and hz == self.horizon):
            return None
        interval = recent_interval(conn, hz)
        since = hz - (LIVE_CONTEXT_INTERVALS if self.started else self.s.lookback_intervals) * interval
        # by arrival order (rowid range): proportional to what arrived, not to the table
        oldest_new = conn.execute("SELECT MIN(start_ts) FROM measurements NOT INDEXED WHERE seq > ? AND "
                                  "source = 'tocsin'", (self.seq,)).fetchone()[0]
        if self.started and oldest_new is not None:
            since = min(since, oldest_new)
        return Plan(covering_since(conn, since), hz, seq, hz)

    def compute(self, conn: sqlite3.Connection, plan: Plan) -> list[Event]:
        return detect(self.dataset(conn, plan.since, plan.until), plan.since, plan.until, self.s)

    def dataset(self, conn: sqlite3.Connection, since: float, until: float) -> Dataset:
        """What :func:`coordinator.verdict.persist.load_dataset` returns, read incrementally: only
        rows that arrived since the last step (and, when the range moved back, the rows before the
        window) are read and parsed; the rest comes from :class:`Window`."""
        interval = recent_interval(conn, until)
        start = since - self.s.lookback_intervals * interval
        obs = self.window.observations(conn, start, until)
        beats: dict[str, list[float]] = defaultdict(list)
        try:
            for probe, ts in conn.execute("SELECT probe_id, ts FROM probe_heartbeats WHERE ts >= ? AND ts < ? "
                                          "ORDER BY ts", (start, until)):
                beats[probe].append(ts)
        except sqlite3.OperationalError:
            pass                                    # no heartbeat table (an archive-only database)
        return Dataset(obs, dict(beats), atlas_signals(conn, start, until), interval)

    def save(self, conn: sqlite3.Connection, plan: Plan, events: list[Event]) -> SaveResult:
        result = save_events(conn, events, plan.since, plan.until)
        self.seq, self.horizon, self.started = plan.seq, plan.horizon, True
        return result


class Window:
    """The probe observations (``source = 'tocsin'``, not flagged future) with ``start_ts >= low``
    and ``seq <= hi``, kept sorted by (start_ts, seq) - the order of the measurement-time index -
    between live steps.  Stored rows never change, so each step reads only the rows with
    ``seq > hi`` (a rowid range), plus the rows below ``low`` when the range moved back."""

    def __init__(self) -> None:
        self.low: float | None = None
        self.hi = 0
        self.items: list[tuple[float, int, Obs]] = []

    def observations(self, conn: sqlite3.Connection, start: float, until: float) -> list[Obs]:
        top = max_seq(conn)         # every row up to this seq is committed: later reads see them all
        fresh: list[tuple[float, int, Obs]] = []
        if self.low is None:
            fresh += self._rows(conn, f"SELECT * FROM measurements WHERE source = 'tocsin' AND start_ts >= ? AND "
                                      f"seq <= ? AND {_NOT_FUTURE}", (start, top))
            self.low, self.hi = start, top
        else:
            if top > self.hi:           # what arrived since the last step, by arrival order
                fresh += [t for t in self._rows(conn, f"SELECT * FROM measurements WHERE seq > ? AND seq <= ? AND "
                                                      f"+source = 'tocsin' AND {_NOT_FUTURE}", (self.hi, top))
                          if t[0] >= self.low]
            if start < self.low:        # the range moved back: the rows below the window
                fresh += self._rows(conn, f"SELECT * FROM measurements WHERE source = 'tocsin' AND start_ts >= ? "
                                          f"AND start_ts < ? AND seq <= ? AND {_NOT_FUTURE}", (start, self.low, top))
                self.low = start
            self.hi = max(self.hi, top)
        if fresh:
            self.items = sorted(self.items + fresh)   # two sorted runs: a linear merge (seq is unique)
        cut = bisect.bisect_left(self.items, start, key=lambda t: t[0])
        if cut:                                       # never needed again unless the range moves back
            del self.items[:cut]
        self.low = max(start, self.low if self.low is not None else start)
        end = bisect.bisect_left(self.items, until, key=lambda t: t[0])
        return [t[2] for t in self.items[:end]]

    @staticmethod
    def _rows(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> list[tuple[float, int, Obs]]:
        out = [(o.ts, int(r["seq"]), o) for r in conn.execute(sql, args) for o in (obs_from_row(r),)]
        out.sort(key=lambda t: (t[0], t[1]))
        return out


def describe(events: list[Event]) -> list[dict[str, Any]]:
    return [{"kind": e.kind, "scope": e.scope, "state": e.state, "start_ts": e.start_ts} for e in events]
