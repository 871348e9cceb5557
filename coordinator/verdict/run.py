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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

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


# The columns :func:`obs_from_row` reads (and ``seq``): a narrower row is cheaper to fetch than ``*``.
OBS_COLUMNS = ("seq", "measurement_id", "probe_id", "probe_cc", "probe_asn", "probe_access", "test_name", "target",
               "start_ts", "runtime_s", "success", "failure", "test_keys", "annotations", "received_ts")
_SELECT = f"SELECT {', '.join(OBS_COLUMNS)} FROM measurements"
KEYED_TESTS = frozenset(("throughput", "http", "dns"))   # the only tests whose test_keys obs_from_row reads
ARRIVED_CHUNK = 4096       # seq numbers per JSON fetch of newly arrived rows
# OBS_COLUMNS as one JSON array per row, the rows of a seq range as one array; REAL columns as
# '%!.17g' text, which SQLite prints with all the digits a double round-trips with (its JSON
# prints REALs with 15), and test keys only where obs_from_row reads them (KEYED_TESTS)
_ARRIVED = ("SELECT json_group_array(json_array(seq, measurement_id, probe_id, probe_cc, probe_asn, probe_access, "
            "test_name, target, printf('%!.17g', start_ts), printf('%!.17g', runtime_s), success, failure, "
            f"CASE WHEN test_name IN ({', '.join(repr(t) for t in sorted(KEYED_TESTS))}) THEN test_keys END, annotations, "
            "CASE WHEN received_ts IS NOT NULL THEN printf('%!.17g', received_ts) END)) "
            f"FROM measurements WHERE seq > ? AND seq <= ? AND +source = 'tocsin' AND +start_ts >= ? AND {_NOT_FUTURE}")
RETAIN_ROWS = 200_000      # rows kept below the range between steps, so a range moving back re-reads none


class Window:
    """The probe observations (``source = 'tocsin'``, not flagged future) with ``start_ts >= low``
    and ``seq <= hi``, kept sorted by (start_ts, seq) - the order of the measurement-time index -
    between live steps.  Stored rows never change, so each step reads only the rows with
    ``seq > hi`` (a rowid range), plus the rows below ``low`` when the range moved back.

    Rows below the range stay (up to :data:`RETAIN_ROWS` in all), so a range that moves forward and
    back again (late uploads spread over the past) parses each row once.  Each row is read with the
    columns :func:`obs_from_row` needs; its annotations text is parsed once per distinct text and
    its test keys only for the tests that have keys the observation keeps (:data:`KEYED_TESTS`):
    the observations are the same as :func:`coordinator.verdict.persist.load_dataset` 's (tested)."""

    def __init__(self) -> None:
        self.low: float | None = None
        self.hi = 0
        self.items: list[tuple[float, int, Obs]] = []
        self.parsed = 0                      # rows read and parsed so far (each row once)
        self._annotations: dict[str, Any] = {}

    def observations(self, conn: sqlite3.Connection, start: float, until: float) -> list[Obs]:
        top = max_seq(conn)         # every row up to this seq is committed: later reads see them all
        fresh: list[tuple[float, int, Obs]] = []
        if self.low is None:
            fresh += self._rows(conn, f"{_SELECT} WHERE source = 'tocsin' AND start_ts >= ? AND seq <= ? AND "
                                      f"{_NOT_FUTURE}", (start, top))
            self.low, self.hi = start, top
        else:
            if top > self.hi:           # what arrived since the last step, by arrival order
                fresh += self._arrived(conn, self.hi, top, self.low)
            if start < self.low:        # the range moved back: the rows below the window
                fresh += self._rows(conn, f"{_SELECT} WHERE source = 'tocsin' AND start_ts >= ? AND start_ts < ? "
                                          f"AND seq <= ? AND {_NOT_FUTURE}", (start, self.low, top))
                self.low = start
            self.hi = max(self.hi, top)
        if fresh:
            self.items = sorted(self.items + fresh)   # two sorted runs: a linear merge (seq is unique)
        cut = bisect.bisect_left(self.items, start, key=lambda t: t[0])
        if cut and len(self.items) > RETAIN_ROWS:     # too many kept: drop what lies below the range
            del self.items[:cut]
            self.low = start
            cut = 0
        end = bisect.bisect_left(self.items, until, key=lambda t: t[0])
        return [t[2] for t in self.items[cut:end]]

    def _arrived(self, conn: sqlite3.Connection, after: int, top: int, low: float) -> list[tuple[float, int, Obs]]:
        """The rows with ``after < seq <= top`` (and ``start_ts >= low``), each chunk of seq numbers
        fetched as ONE row: a JSON array that SQLite builds with the GIL released (see
        :data:`_ARRIVED`).  Fetching row by row releases and re-takes the GIL once a row, and under a
        heavy ingest each hand-off lets another thread in and moves the interpreter between cores:
        in the ingest benchmark that cost more than the detection itself."""
        values: list[list[Any]] = []
        for lo in range(after, top, ARRIVED_CHUNK):
            text = conn.execute(_ARRIVED, (lo, min(top, lo + ARRIVED_CHUNK), low)).fetchone()[0]
            values += orjson.loads(text)
        for v in values:                 # exact REALs travel as 17-digit text (tested round trip)
            v[8], v[9] = float(v[8]), float(v[9])
            v[14] = float(v[14]) if v[14] is not None else None
        out = [(o.ts, seq, o) for seq, row in self._mappings(values) for o in (obs_from_row(row),)]
        out.sort(key=lambda t: (t[0], t[1]))
        self.parsed += len(out)
        return out

    def _rows(self, conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> list[tuple[float, int, Obs]]:
        out = [(o.ts, seq, o) for seq, row in self._mappings(conn.execute(sql, args)) for o in (obs_from_row(row),)]
        out.sort(key=lambda t: (t[0], t[1]))
        self.parsed += len(out)
        return out

    def _mappings(self, cursor: Iterable[Sequence[Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
        """(seq, row as a dict) with annotations parsed (once per distinct text) and test keys
        parsed only where :func:`obs_from_row` reads them ({} elsewhere, which it reads as no keys)."""
        cache = self._annotations
        if len(cache) > 10_000:
            cache.clear()
        for values in cursor:
            row = dict(zip(OBS_COLUMNS, values, strict=True))
            text = row["annotations"]
            if text is not None:
                parsed = cache.get(text)
                if parsed is None:
                    parsed = cache[text] = _json_object(text)
                row["annotations"] = parsed
            row["test_keys"] = _json_object(row["test_keys"]) if row["test_name"] in KEYED_TESTS else {}
            yield int(values[0]), row


def _json_object(text: str | None) -> dict[str, Any]:
    """A JSON object's text parsed; {} for anything else (as ``obs_from_row`` reads a bad column)."""
    try:
        value = orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def describe(events: list[Event]) -> list[dict[str, Any]]:
    return [{"kind": e.kind, "scope": e.scope, "state": e.state, "start_ts": e.start_ts} for e in events]
