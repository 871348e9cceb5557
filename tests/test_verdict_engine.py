"""The engine on a real SQLite file filled with synthetic but realistic records (several probes and
ASNs, baseline -> fault -> repair), for every event kind and for the negatives."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator import db
from coordinator.verdict.queries import list_events
from coordinator.verdict.run import LiveDetector, detect_range
from coordinator.verdict.settings import Settings
from coordinator.verdict.synthetic import Campaign, Fault, SProbe, STarget, inside, load

S = Settings()
T0 = 1_700_000_000.0
FAULT, REPAIR, DURATION = 30.0, 75.0, 110.0
IV = 3.0


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = db.open_writer(tmp_path)
    yield c
    c.close()


def kz_out(p: SProbe, t: STarget, test: str) -> bool:
    return p.cc != "KZ" and t.cc == "KZ"


def run(conn: sqlite3.Connection, *faults: Fault, **kw: Any) -> list[dict[str, Any]]:
    c = Campaign(t0=T0, duration_s=DURATION, faults=list(faults), **kw)
    load(conn, c.records(), c.heartbeats())
    detect_range(conn, T0, T0 + c.duration_s, S)
    return list_events(conn, {})


def only(events: list[dict[str, Any]], kind: str, scope: str) -> dict[str, Any]:
    assert [(e["kind"], e["scope"]) for e in events] == [(kind, scope)], events
    e = events[0]
    assert e["state"] == "resolved" and e["confirmed_ts"] is not None
    # latency targets: suspected within 2 intervals, confirmed within 3, resolved within 3 of the repair
    assert e["suspected_ts"] - (T0 + FAULT) <= 2 * IV
    assert e["confirmed_ts"] - (T0 + FAULT) <= 3 * IV
    assert 0 <= e["resolved_ts"] - (T0 + REPAIR) <= 3 * IV
    assert e["evidence_count"] > 0
    return e


def test_national_blackout(conn: sqlite3.Connection) -> None:
    e = only(run(conn, Fault(FAULT, REPAIR, "fail", inside), Fault(FAULT, REPAIR, "silent", inside),
                 Fault(FAULT, REPAIR, "fail", kz_out)), "blackout", "KZ")
    assert e["scope_type"] == "country" and set(e["signals"]) >= {"inside", "outside"}
    assert e["details"]["cause"] == "network" and e["confidence"] > 0.9


def test_border_cut_is_domestic_only(conn: sqlite3.Connection) -> None:
    e = only(run(conn, Fault(FAULT, REPAIR, "fail", lambda p, t, x: p.cc == "KZ" and t.cc != "KZ"),
                 Fault(FAULT, REPAIR, "silent", inside), Fault(FAULT, REPAIR, "fail", kz_out)), "domestic_only", "KZ")
    assert not e["details"].get("allow_list")


def test_allow_list_is_domestic_only_with_details(conn: sqlite3.Connection) -> None:
    cut = lambda p, t, x: p.cc == "KZ" and p.access != "datacenter" and t.group not in ("news", "bank")  # noqa: E731
    e = only(run(conn, Fault(FAULT, REPAIR, "fail", cut),
                 Fault(FAULT, REPAIR, "silent", lambda p, t, x: p.cc == "KZ" and p.access != "datacenter")),
             "domestic_only", "KZ")
    assert e["details"]["allow_list"] is True
    assert e["details"]["reachable_domestic"] == ["bank", "news"] and "gov" in e["details"]["unreachable_domestic"]


def test_mobile_throttling_is_throttling_not_outage(conn: sqlite3.Connection) -> None:
    e = only(run(conn, Fault(FAULT, REPAIR, "slow", lambda p, t, x: p.access == "mobile")), "throttling", "KZ/mobile")
    assert e["details"]["targeted"] is False and e["details"]["goodput_ratio"] < 0.1


def test_targeted_throttling(conn: sqlite3.Connection) -> None:
    e = only(run(conn, Fault(FAULT, REPAIR, "slow", lambda p, t, x: p.cc == "KZ" and t.group == "social")),
             "throttling", "KZ|social")
    assert e["details"]["targeted"] is True and "outside" in e["signals"]


def test_dns_tampering(conn: sqlite3.Connection) -> None:
    e = only(run(conn, Fault(FAULT, REPAIR, "bogon", lambda p, t, x: p.cc == "KZ" and t.group == "world")),
             "dns_tampering", "KZ|world")
    assert e["target"] == "world.example.lab" and e["details"]["failures"] == ["dns_bogon_answer"]


def test_http_blocking(conn: sqlite3.Connection) -> None:
    e = only(run(conn, Fault(FAULT, REPAIR, "reset", lambda p, t, x: p.cc == "KZ" and t.group == "world")),
             "http_blocking", "KZ|world")
    assert e["details"]["failures"] == ["connection_reset"]


def test_one_asn_and_one_access_type(conn: sqlite3.Connection, tmp_path: Path) -> None:
    only(run(conn, Fault(FAULT, REPAIR, "fail", lambda p, t, x: p.asn == 64602),
             Fault(FAULT, REPAIR, "silent", lambda p, t, x: p.asn == 64602)), "blackout", "AS64602")
    other = db.open_writer(tmp_path / "mobile")
    try:
        only(run(other, Fault(FAULT, REPAIR, "fail", lambda p, t, x: p.access == "mobile"),
                 Fault(FAULT, REPAIR, "silent", lambda p, t, x: p.access == "mobile")), "blackout", "KZ/mobile")
    finally:
        other.close()


@pytest.mark.parametrize("faults,kw", [
    ((), {"noise": 0.03}),                                                           # an ordinary, noisy day
    ((Fault(FAULT, 999, "dead", lambda p, t, x: p.id == "fix-2"),), {}),              # one probe dies
    ((), {"coordinator_gaps": [(FAULT, FAULT + 20)]}),                               # the coordinator is away
    ((Fault(FAULT, REPAIR, "slow", lambda p, t, x: t.group == "social"),), {}),      # a target slow for everyone
], ids=["ordinary", "probe-dies", "coordinator-gap", "slow-target"])
def test_negatives_raise_nothing(conn: sqlite3.Connection, faults: tuple[Fault, ...], kw: dict[str, Any]) -> None:
    assert run(conn, *faults, **kw) == []


def test_silent_probes_that_come_back_empty_are_not_called_a_shutdown(conn: sqlite3.Connection) -> None:
    events = run(conn, Fault(FAULT, REPAIR, "dead", lambda p, t, x: p.asn == 64602))
    assert [(e["kind"], e["scope"]) for e in events] == [("blackout", "AS64602")]
    assert events[0]["details"]["cause"] == "power_or_probe_failure" and events[0]["signals"] == ["heartbeat"]


def test_redetect_is_idempotent(conn: sqlite3.Connection) -> None:
    run(conn, Fault(FAULT, REPAIR, "fail", inside), Fault(FAULT, REPAIR, "silent", inside))
    before = conn.execute("SELECT event_id, state, at_ts FROM event_transitions ORDER BY seq").fetchall()
    assert [r[1] for r in before] == ["suspected", "confirmed", "resolved"]
    for since in (T0, T0 + 20, T0 + 60):            # any sub-range: same ids, nothing fired twice
        _, result = detect_range(conn, since, T0 + DURATION, S)
        assert result.transitions == 0 and not result.created and not result.retracted
    assert conn.execute("SELECT event_id, state, at_ts FROM event_transitions ORDER BY seq").fetchall() == before
    assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1


def test_late_uploads_refine_a_live_verdict(conn: sqlite3.Connection) -> None:
    """Live, a border cut looks like a blackout (probes silent, outside view failing); the results
    the probes buffered arrive after the repair and turn it into domestic-only, same event."""
    c = Campaign(t0=T0, duration_s=DURATION, faults=[Fault(FAULT, REPAIR, "fail", lambda p, t, x: p.cc == "KZ" and t.cc != "KZ"),
                                Fault(FAULT, REPAIR, "silent", inside), Fault(FAULT, REPAIR, "fail", kz_out)])
    records, beats = c.records(), c.heartbeats()
    buffered = {r["measurement_id"] for r in records if r["probe_cc"] == "KZ" and FAULT <= _rel(r) < REPAIR}
    live = LiveDetector(S)
    fed: set[str] = set()
    for until in range(10, int(DURATION) + 1, 5):
        now = [r for r in records if _rel(r) < until and r["measurement_id"] not in fed
               and (r["measurement_id"] not in buffered or until >= REPAIR + 5)]
        load(conn, now, [b for b in beats if until - 5 <= b[1] - T0 < until])
        fed.update(r["measurement_id"] for r in now)
        plan = live.plan(conn)
        if plan is not None:
            live.save(conn, plan, live.compute(conn, plan))
        if until == 60:
            (during,) = list_events(conn, {})
            assert during["kind"] == "blackout" and during["state"] == "confirmed"
            assert set(during["signals"]) >= {"heartbeat", "outside"}
    (after,) = list_events(conn, {})
    assert after["event_id"] == during["event_id"] and after["kind"] == "domestic_only"
    assert after["state"] == "resolved" and "inside" in after["signals"]
    kinds = [r[0] for r in conn.execute("SELECT json_extract(payload, '$.kind') FROM event_transitions ORDER BY seq")]
    assert kinds[0] == "blackout" and kinds[-1] == "domestic_only"


def _rel(record: dict[str, Any]) -> float:
    from probe.record import time_to_epoch

    return time_to_epoch(record["start_time"]) - T0


def test_live_window_reads_what_load_dataset_reads(conn: sqlite3.Connection) -> None:
    """The live detector reads only new rows between steps; at every step its observations are
    exactly load_dataset's (same rows, same order), with late uploads from the past, rows flagged
    future, Atlas rows, and a range that moves back (a late upload) and forward again."""
    from coordinator.store import insert_measurements
    from coordinator.verdict.persist import load_dataset

    c = Campaign(t0=T0, duration_s=DURATION, faults=[Fault(FAULT, REPAIR, "silent", inside)])
    records, beats = c.records(), c.heartbeats()
    buffered = {r["measurement_id"] for r in records if r["probe_cc"] == "KZ" and FAULT <= _rel(r) < REPAIR}
    live = LiveDetector(S)
    fed: set[str] = set()
    steps = backs = 0
    last_start = lowest = float("inf")
    for until in range(10, int(DURATION) + 1, 5):
        now = [r for r in records if _rel(r) < until and r["measurement_id"] not in fed
               and (r["measurement_id"] not in buffered or until >= REPAIR + 5)]
        load(conn, now, [b for b in beats if until - 5 <= b[1] - T0 < until])
        fed.update(r["measurement_id"] for r in now)
        odd = [{**now[0], "measurement_id": f"odd-{until}-{k}", "source": src} for k, src in enumerate(("atlas", "tocsin"))]
        insert_measurements(conn, odd, received_ts=T0 + until - (0 if until % 2 else 1000))   # some flagged future
        plan = live.plan(conn)
        if plan is None:
            continue
        start = plan.since - S.lookback_intervals * IV
        backs += start < last_start
        last_start, lowest = start, min(lowest, start)
        got = live.dataset(conn, plan.since, plan.until)
        want = load_dataset(conn, plan.since, plan.until, S)
        assert [o.mid for o in got.obs] == [o.mid for o in want.obs] and got.obs == want.obs
        assert (got.heartbeats, got.interval_s) == (want.heartbeats, want.interval_s)
        live.save(conn, plan, live.compute(conn, plan))
        steps += 1
    assert steps >= 15 and backs >= 1
    assert conn.execute("SELECT COUNT(*) FROM measurements WHERE flags LIKE '%future%'").fetchone()[0] > 0
    # every row was parsed once, although the range moved back (the rows below it were kept)
    assert live.window.parsed == conn.execute(
        "SELECT COUNT(*) FROM measurements WHERE source = 'tocsin' AND start_ts >= ? AND (flags IS NULL OR "
        "flags NOT LIKE '%future%')", (lowest,)).fetchone()[0]


def test_late_pieces_of_a_blackout_the_coordinator_missed_raise_no_narrow_event(conn: sqlite3.Connection) -> None:
    """A coordinator cut off itself during a national blackout (an in-country replica whose
    datacenter went dark: no poll, no result from anyone) gets the blackout's results afterwards
    and in pieces.  The first piece (one probe of each of two ASNs) must not raise
    narrow ASN events that the rest then turns into one national event (a retraction is a false
    event): while the probes it has not heard from could be down too, it waits for them."""
    c = Campaign(t0=T0, duration_s=DURATION, faults=[Fault(FAULT, REPAIR, "fail", inside),
                                                     Fault(FAULT, REPAIR, "fail", kz_out)],
                 coordinator_gaps=[(FAULT, REPAIR)])
    records, beats = c.records(), c.heartbeats()
    first_piece = {"fix-1", "mob2-1"}
    live = LiveDetector(S)

    def step(recs: list[dict[str, Any]], bts: list[tuple[str, float]], at: float | None = None) -> None:
        deliver(conn, recs, bts, at)
        plan = live.plan(conn)
        if plan is not None:
            live.save(conn, plan, live.compute(conn, plan))

    for until in range(10, int(FAULT) + 1, 5):                  # live until the coordinator is cut off
        step([r for r in records if until - 5 <= _rel(r) < until], [b for b in beats if until - 5 <= b[1] - T0 < until])
    late = [r for r in records if FAULT <= _rel(r) < REPAIR + 2]
    step([r for r in late if r["probe_id"] in first_piece], [], T0 + REPAIR + 2)
    assert list_events(conn, {}) == []                        # the rest of the country is unknown: no verdict yet
    step([r for r in late if r["probe_id"] not in first_piece], [b for b in beats if REPAIR <= b[1] - T0 < REPAIR + 2])
    for until in range(int(REPAIR) + 5, int(DURATION) + 1, 5):
        step([r for r in records if until - 5 <= _rel(r) - 2 < until], [b for b in beats if until - 5 <= b[1] - T0 - 2 < until])
    events = list_events(conn, {})
    assert [(e["kind"], e["scope"], e["state"]) for e in events] == [("blackout", "KZ", "resolved")], events
    assert not events[0]["details"].get("retracted")
    scopes = {r[0] for r in conn.execute("SELECT json_extract(payload, '$.scope') FROM event_transitions")}
    assert scopes == {"KZ"}


def test_late_piece_of_one_asn_outage_is_still_found(conn: sqlite3.Connection) -> None:
    """The same late, partial delivery, but only one ASN was down: once the other probes' results
    show them up, the ASN event is raised (waiting hides no true narrow event)."""
    c = Campaign(t0=T0, duration_s=DURATION, faults=[Fault(FAULT, REPAIR, "fail", lambda p, t, x: p.asn == 64602)],
                 coordinator_gaps=[(FAULT, REPAIR)])
    records, beats = c.records(), c.heartbeats()
    load(conn, [r for r in records if _rel(r) < FAULT], [b for b in beats if b[1] - T0 < FAULT])
    deliver(conn, [r for r in records if _rel(r) >= FAULT and r["probe_asn"] == 64602], [], T0 + DURATION)
    live = LiveDetector(S)
    plan = live.plan(conn)
    assert plan is not None
    live.save(conn, plan, live.compute(conn, plan))
    load(conn, [r for r in records if _rel(r) >= FAULT and r["probe_asn"] != 64602],
         [b for b in beats if b[1] - T0 >= FAULT])
    plan = live.plan(conn)
    assert plan is not None
    live.save(conn, plan, live.compute(conn, plan))
    events = list_events(conn, {})
    assert [(e["kind"], e["scope"]) for e in events] == [("blackout", "AS64602")], events
    assert not events[0]["details"].get("retracted")


def deliver(conn: sqlite3.Connection, records: list[dict[str, Any]], beats: list[tuple[str, float]],
            received: float | None = None) -> None:
    """:func:`load`, received at ``received`` (a piece that comes with no poll)."""
    from coordinator.store import insert_measurements

    if received is None:
        load(conn, records, beats)
        return
    assert not insert_measurements(conn, records, received_ts=received).rejected
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO probe_heartbeats (probe_id, ts) VALUES (?, ?)", beats)
    conn.execute("COMMIT")
