"""Atlas as a corroborating class in the live engine: an ASN with a single Atlas probe.

The ASN's two Tocsin probes fall silent (their results are buffered, uploaded after the repair),
and the ASN's only Atlas probe disconnects.  Silence alone can only make the event suspected;
the lone Atlas probe going down with them is the independent second source that confirms it,
live, within three probe intervals.  One Tocsin probe dying next to that Atlas probe is still
nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator import db
from coordinator.atlas import signals, storage
from coordinator.atlas.settings import Settings as AtlasSettings
from coordinator.verdict.queries import list_events
from coordinator.verdict.run import LiveDetector
from coordinator.verdict.settings import Settings
from coordinator.verdict.synthetic import Campaign, Fault, load
from probe.record import time_to_epoch

T0 = 1_700_000_000.0
FAULT, REPAIR, DURATION, IV = 30.0, 75.0, 110.0, 3.0
ATLAS_PROBE = 7001


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    signals.use_settings(AtlasSettings(bucket_s=2 * IV, baseline_s=600.0))
    c = db.open_writer(tmp_path)
    storage.store_probes(c, [{"id": ATLAS_PROBE, "country_code": "KZ", "asn_v4": 64602,
                              "status": {"name": "Connected", "since": "2023-01-01T00:00:00Z"}}])
    storage.store_connection_events(c, [{"prb_id": ATLAS_PROBE, "timestamp": T0 - 3600, "event": "connect"}],
                                    probes=storage.probe_infos(c))
    yield c
    c.close()
    signals._configured.clear()


def atlas_event(c: sqlite3.Connection, rel: float, event: str) -> None:
    storage.store_connection_events(c, [{"prb_id": ATLAS_PROBE, "timestamp": T0 + rel, "event": event}],
                                    probes=storage.probe_infos(c))


def play(c: sqlite3.Connection, faults: list[Fault], *, atlas: bool, check_at: float) -> dict[str, Any] | None:
    """Feed the campaign as it would arrive (buffered results only after the repair); return the
    event list as it stood at ``check_at`` seconds (None if there was none)."""
    camp = Campaign(t0=T0, duration_s=DURATION, faults=faults)
    records, beats = camp.records(), camp.heartbeats()
    silent = {f for f in faults if f.effect == "silent"}
    buffered = {r["measurement_id"] for r in records
                if any(f.start <= rel(r) < f.end and f.match(_probe(r), _target(r), r["test_name"]) for f in silent)}
    live, seen = LiveDetector(Settings()), None
    fed: set[str] = set()
    step = 2.0
    until = 10.0
    while until <= DURATION:
        if atlas and until - step < FAULT + 1 <= until:
            atlas_event(c, FAULT + 1, "disconnect")      # the stand-in's view: the probe dropped
        if atlas and until - step < REPAIR + 1 <= until:
            atlas_event(c, REPAIR + 1, "connect")
        now = [r for r in records if rel(r) < until and r["measurement_id"] not in fed
               and (r["measurement_id"] not in buffered or until >= REPAIR + 5)]
        load(c, now, [b for b in beats if until - step <= b[1] - T0 < until])
        fed.update(r["measurement_id"] for r in now)
        plan = live.plan(c)
        if plan is not None:
            live.save(c, plan, live.compute(c, plan))
        if until == check_at:
            evs = list_events(c, {})
            seen = evs[0] if evs else None
        until += step
    return seen


def rel(r: dict[str, Any]) -> float:
    return time_to_epoch(r["start_time"]) - T0


def _probe(r: dict[str, Any]) -> Any:
    from coordinator.verdict.synthetic import PROBES

    return next(p for p in PROBES if p.id == r["probe_id"])


def _target(r: dict[str, Any]) -> Any:
    from coordinator.verdict.synthetic import TARGETS

    return next((t for t in TARGETS if t.name == r["target"] or t.address == r["target"]), TARGETS[0])


def asn_cut() -> list[Fault]:
    mine = lambda p, t, x: p.asn == 64602  # noqa: E731
    return [Fault(FAULT, REPAIR, "fail", mine), Fault(FAULT, REPAIR, "silent", mine)]


def test_lone_atlas_probe_confirms_an_asn_outage_live(conn: sqlite3.Connection) -> None:
    during = play(conn, asn_cut(), atlas=True, check_at=FAULT + 3 * IV + 1)
    assert during is not None and (during["kind"], during["scope"]) == ("blackout", "AS64602")
    assert during["state"] == "confirmed" and "atlas_disconnect" in during["signals"]
    assert during["confirmed_ts"] - (T0 + FAULT) <= 3 * IV
    (after,) = list_events(conn, {})
    assert after["event_id"] == during["event_id"] and after["state"] == "resolved"


def test_without_atlas_the_same_silence_is_only_suspected(tmp_path: Path) -> None:
    c = db.open_writer(tmp_path / "plain")
    try:
        during = play(c, asn_cut(), atlas=False, check_at=FAULT + 3 * IV + 1)
        assert during is not None and during["state"] == "suspected" and during["signals"] == ["heartbeat"]
        (after,) = list_events(c, {})
        assert after["confirmed_ts"] is not None and "inside" in after["signals"]   # confirmed by the late uploads
    finally:
        c.close()


def test_one_dead_probe_beside_a_lone_atlas_probe_is_nothing(conn: sqlite3.Connection) -> None:
    dead = [Fault(FAULT, REPAIR, "dead", lambda p, t, x: p.id == "mob1-1")]
    assert play(conn, dead, atlas=True, check_at=FAULT + 3 * IV + 1) is None
    assert list_events(conn, {}) == []
