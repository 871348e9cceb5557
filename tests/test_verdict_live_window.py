"""The live detector's incremental window, fuzzed: whatever order and batches the results arrive in
(probes' buffered blocks delivered late, in any order), and wherever each step's range falls, the
observations it hands the engine are exactly a full load's, and no row is parsed twice."""

from __future__ import annotations

import sqlite3
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator import db
from coordinator.store import insert_measurements
from coordinator.verdict.persist import load_dataset
from coordinator.verdict.run import LiveDetector
from coordinator.verdict.settings import Settings
from coordinator.verdict.synthetic import Campaign, Fault, inside, load
from probe.record import time_to_epoch

S = Settings(lookback_intervals=2.0)     # a short history, so ranges move back past what was read
T0 = 1_700_000_000.0
CAMPAIGN = Campaign(t0=T0, duration_s=45.0, faults=[Fault(15.0, 30.0, "fail", inside)])
RECORDS = CAMPAIGN.records()
BEATS = CAMPAIGN.heartbeats()


def _blocks() -> list[list[dict[str, Any]]]:
    """Each probe's results in 9-second blocks: what one probe would upload at once after a cut."""
    by: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in RECORDS:
        by[(r["probe_id"], int((time_to_epoch(r["start_time"]) - T0) // 9))].append(r)
    return [by[k] for k in sorted(by)]


BLOCKS = _blocks()


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=st.permutations(range(len(BLOCKS))), sizes=st.lists(st.integers(1, 6), min_size=1, max_size=40),
       backs=st.lists(st.floats(0, 40), min_size=1, max_size=40))
def test_any_arrival_order_gives_a_full_loads_observations(order: list[int], sizes: list[int],
                                                           backs: list[float]) -> None:
    with tempfile.TemporaryDirectory(prefix="tc-live-window-") as tmp:
        conn = db.open_writer(Path(tmp))
        try:
            load(conn, [], BEATS)
            live = LiveDetector(S)
            pos = step = seen = 0
            while pos < len(order):
                size = sizes[step % len(sizes)]
                batch = [r for i in order[pos:pos + size] for r in BLOCKS[i]]
                assert not insert_measurements(conn, batch, received_ts=T0 + 50).rejected
                pos += size
                plan = live.plan(conn)
                assert plan is not None
                # the plan's range, or one that reaches further back (a late upload, an open event)
                since = plan.since - backs[step % len(backs)] if step % 3 == 2 else plan.since
                got = live.dataset(conn, since, plan.until)
                want = load_dataset(conn, since, plan.until, S)
                assert [o.mid for o in got.obs] == [o.mid for o in want.obs] and got.obs == want.obs
                seen += bool(want.obs)
                assert (got.heartbeats, got.interval_s) == (want.heartbeats, want.interval_s)
                live.save(conn, plan, [])
                step += 1
            assert seen and live.window.parsed <= _count(conn)      # every row parsed at most once
        finally:
            conn.close()


def test_arrived_rows_keep_every_digit_of_their_times(tmp_path: Path) -> None:
    """Newly arrived rows come as one JSON text per chunk (SQLite's JSON prints REALs with 15
    digits, so they travel as 17-digit text): times and runtimes with awkward digits, over more than
    one chunk, give exactly a full load's observations."""
    import random

    from coordinator.verdict import run

    rng = random.Random(7)
    conn = db.open_writer(tmp_path)
    try:
        load(conn, [], BEATS)
        live = LiveDetector(S)
        records = [dict(r, runtime_s=rng.random() * 3 + 0.1 + 0.2) for r in RECORDS]   # times: microseconds
        first = records[: len(records) // 3]
        assert not insert_measurements(conn, first, received_ts=T0 + 50 + rng.random()).rejected
        plan = live.plan(conn)
        assert plan is not None
        live.dataset(conn, plan.since - 60, plan.until)                     # the window's first full read
        live.save(conn, plan, [])
        parsed = live.window.parsed
        old_chunk, run.ARRIVED_CHUNK = run.ARRIVED_CHUNK, 7                  # many chunks, one remainder
        try:
            assert not insert_measurements(conn, records[len(first):], received_ts=T0 + 51 + rng.random()).rejected
            plan = live.plan(conn)
            assert plan is not None
            got = live.dataset(conn, plan.since - 60, plan.until)
        finally:
            run.ARRIVED_CHUNK = old_chunk
        want = load_dataset(conn, plan.since - 60, plan.until, S)
        assert live.window.parsed - parsed == len(records) - len(first)    # the rest came by the arrival path
        assert len(want.obs) > 3 * 7 and got.obs == want.obs
        assert len({o.received_ts for o in got.obs}) == 2 and all(o.received_ts % 1 for o in got.obs if o.received_ts)
    finally:
        conn.close()
