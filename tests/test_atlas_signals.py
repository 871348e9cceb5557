"""Atlas signals on synthetic connection-event sets in a real SQLite file."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.atlas import storage
from coordinator.atlas.normalize import ProbeInfo
from coordinator.atlas.signals import atlas_signals, binom_sf, disconnect_signals
from coordinator.atlas.storage import store_results
from coordinator.db import open_writer
from coordinator.signals import SIGNAL_CLASSES

T = 1_641_380_400.0           # 2022-01-05 11:00 UTC (bucket-aligned for 600 s)
DAY = 86400.0


@pytest.fixture(autouse=True)
def default_thresholds() -> Iterator[None]:
    from coordinator.atlas import signals

    signals._configured.clear()      # another test's app may have configured its own
    signals._by_file.clear()
    yield
    signals._by_file.clear()


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    return open_writer(tmp_path)


def add_country(conn: sqlite3.Connection, cc: str, n: int, first_id: int, asns: int = 2) -> list[int]:
    ids = list(range(first_id, first_id + n))
    probes = [{"id": i, "country_code": cc, "asn_v4": 64000 + first_id // 1000 + i % asns,
               "status": {"name": "Connected", "since": "2021-12-01T00:00:00Z"}} for i in ids]
    storage.store_probes(conn, probes)
    storage.store_connection_events(conn, [{"prb_id": i, "timestamp": T - 10 * DAY, "event": "connect"} for i in ids])
    return ids


def events(conn: sqlite3.Connection, rows: list[tuple[int, float, str]]) -> None:
    infos = storage.probe_infos(conn)
    storage.store_connection_events(conn, [{"prb_id": p, "timestamp": ts, "event": e} for p, ts, e in rows],
                                    probes=infos)


def fired(conn: sqlite3.Connection, scope: str, state: str = "down") -> list[float]:
    return [s.start_ts for s in atlas_signals(conn, T - 3600, T + 3600)
            if s.scope == scope and s.state == state and s.signal_class == "atlas_disconnect"]


def test_binomial_tail() -> None:
    assert binom_sf(0, 10, 0.1) == 1.0
    assert binom_sf(11, 10, 0.1) == 0.0
    assert binom_sf(1, 1, 0.25) == pytest.approx(0.25)
    assert binom_sf(2, 3, 0.5) == pytest.approx(0.5)


def test_sparse_country_burst_fires(conn: sqlite3.Connection) -> None:
    ids = add_country(conn, "KZ", 4, 1000)
    events(conn, [(i, T + 60 + j, "disconnect") for j, i in enumerate(ids[:3])])
    sig = [s for s in atlas_signals(conn, T - 3600, T + 3600) if s.scope == "KZ"]
    assert sig and sig[0].state == "down" and sig[0].start_ts == T and sig[0].signal_class == "atlas_disconnect"
    assert len(sig[0].evidence) == 3 and all(e.startswith("atlas:7000:") for e in sig[0].evidence)
    assert sig[0].cc == "KZ" and 0 < sig[0].strength <= 1
    # the burst stays "down" while the probes stay disconnected
    assert fired(conn, "KZ") == [T + 600 * i for i in range(6)]


def test_single_probe_dying_never_fires(conn: sqlite3.Connection) -> None:
    sparse = add_country(conn, "KZ", 4, 1000)
    dense = add_country(conn, "DE", 300, 5000, asns=10)
    events(conn, [(sparse[0], T + 60, "disconnect"), (dense[0], T + 60, "disconnect")])
    assert [s for s in atlas_signals(conn, T - 3600, T + 3600) if s.state == "down"] == []


def test_dense_country_needs_many(conn: sqlite3.Connection) -> None:
    ids = add_country(conn, "DE", 300, 5000, asns=10)
    rng = random.Random(7)
    flaps = []   # background: a few probes drop for ~15 minutes every hour for a week
    for h in range(7 * 24):
        for p in rng.sample(ids, 3):
            start = T - 7 * DAY + h * 3600 + rng.uniform(0, 3000)
            flaps += [(p, start, "disconnect"), (p, start + 900, "connect")]
    events(conn, flaps)
    # four probes down at once: a sure blackout in a 4-probe country, ordinary here
    events(conn, [(i, T + 100 + j, "disconnect") for j, i in enumerate(ids[100:104])])
    assert fired(conn, "DE") == []
    # sixty down: fires
    events(conn, [(i, T + 1300 + j, "disconnect") for j, i in enumerate(ids[150:210])])
    assert fired(conn, "DE")[0] == T + 1200


def test_asn_scope_and_restoration(conn: sqlite3.Connection) -> None:
    ids = add_country(conn, "KZ", 20, 1000, asns=2)
    same_asn = [i for i in ids if i % 2 == 0]
    events(conn, [(i, T + 30, "disconnect") for i in same_asn])
    asn = f"AS{64000 + 1 + 0}"
    assert fired(conn, asn) and fired(conn, "KZ")
    assert fired(conn, f"AS{64000 + 1 + 1}") == []
    events(conn, [(i, T + 1830, "connect") for i in same_asn])
    ups = fired(conn, "KZ", "up")
    assert ups == [T + 1800]
    assert fired(conn, "KZ") == [T, T + 600, T + 1200]


def test_configured_thresholds(conn: sqlite3.Connection) -> None:
    from coordinator.atlas.settings import Settings
    ids = add_country(conn, "KZ", 4, 1000)
    events(conn, [(i, T + 60, "disconnect") for i in ids[:2]])
    assert disconnect_signals(conn, T, T + 600, Settings(min_disconnects=2))
    assert not disconnect_signals(conn, T, T + 600, Settings(min_disconnects=3))
    assert not disconnect_signals(conn, T, T + 600, Settings(min_disconnects=2, min_fraction=0.6))


def test_reachability_towards_country(conn: sqlite3.Connection) -> None:
    def ping(prb: int, ts: int, ok: bool) -> dict[str, object]:
        return {"fw": 5080, "msm_id": 90000001, "prb_id": prb, "timestamp": ts, "type": "ping", "af": 4,
                "dst_addr": "198.18.1.10", "dst_name": "198.18.1.10", "sent": 3, "rcvd": 3 if ok else 0,
                "min": 10 if ok else -1, "max": 12 if ok else -1, "avg": 11 if ok else -1,
                "result": [{"rtt": 10.0}] if ok else [{"x": "*"}]}
    probes = {7: ProbeInfo(7, "DE", 3320), 8: ProbeInfo(8, "NL", 1136), 9: ProbeInfo(9, "FR", 3215)}
    before = [ping(p, int(T - 1200 + p), True) for p in probes]
    during = [ping(p, int(T + 100 + p), False) for p in probes]
    store_results(conn, before + during, probes=probes, target_cc={"198.18.1.10": "KZ"}.get)
    sig = [s for s in atlas_signals(conn, T - 3600, T + 3600) if s.signal_class == "atlas_reachability"]
    assert [(s.scope, s.start_ts, s.state) for s in sig if s.scope == "KZ"] == [("KZ", T - 1200, "up"), ("KZ", T, "down")]
    assert all(s.signal_class in SIGNAL_CLASSES for s in sig)
    down = next(s for s in sig if s.state == "down")
    assert len(down.evidence) == 3 and all(e.startswith("atlas-90000001-") for e in down.evidence)


def test_thresholds_from_the_data_directorys_config(tmp_path: Path) -> None:
    (tmp_path / "coordinator.toml").write_text("[atlas]\nmin_disconnects = 2\nbucket_s = 300.0\n")
    conn = open_writer(tmp_path)
    ids = add_country(conn, "KZ", 4, 1000)
    events(conn, [(i, T + 60, "disconnect") for i in ids[:2]])
    sig = [s for s in atlas_signals(conn, T, T + 300) if s.scope == "KZ"]
    assert [(s.start_ts, s.end_ts, s.state) for s in sig] == [(T, T + 300, "down")]


def test_a_lone_probe_going_down_is_degraded_but_a_long_dead_one_is_nothing(conn: sqlite3.Connection) -> None:
    storage.store_probes(conn, [{"id": 9001, "country_code": "KG", "asn_v4": 65001,
                                 "status": {"name": "Connected", "since": "2021-12-01T00:00:00Z"}},
                                {"id": 9002, "country_code": "TJ", "asn_v4": 65002,
                                 "status": {"name": "Disconnected", "since": "2021-11-01T00:00:00Z"}}])
    events(conn, [(9001, T - 10 * DAY, "connect"), (9001, T + 60, "disconnect"),
                  (9002, T - 30 * DAY, "disconnect")])
    assert fired(conn, "AS65001", "degraded")[0] == T and fired(conn, "AS65001") == []   # never "down" alone
    assert fired(conn, "AS65002", "degraded") == [] and fired(conn, "TJ", "degraded") == []
