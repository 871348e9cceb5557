"""Realistic synthetic data for tests, benchmarks and demos of archives, dashboard and alerts.

A Kazakhstan-like country: probes in fixed, mobile and datacenter ASNs running ping, traceroute,
dns, http, tcp and throughput every ``interval_s``; a mobile throttling phase, then a national
blackout with one short restoration, then recovery.  Records go through ``probe.record.make_record``
and ``coordinator.store.insert_measurements``; events through the tables of migration 0001.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from coordinator.store import insert_measurements
from probe.record import make_record

NETWORKS = ((9198, "fixed"), (48503, "mobile"), (29355, "mobile"), (21299, "datacenter"))
TESTS = ("ping", "traceroute", "dns", "http", "tcp", "throughput")
T0 = datetime(2022, 1, 5, 0, 0, tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class Phases:
    """Measurement-time phases, offsets in seconds from ``start``."""

    start: float = T0
    throttle: tuple[float, float] = (3600.0, 7200.0)     # mobile ASNs slowed 20x
    blackout: tuple[float, float] = (7200.0, 14400.0)     # every ASN down
    restoration: tuple[float, float] = (9000.0, 9600.0)  # a short return inside the blackout


def probe_ids(n: int) -> list[str]:
    return [f"probe-kz-{i:04d}" for i in range(n)]


def probe_address(i: int) -> str:
    """The loopback address probe ``i`` connects from in tests (never stored, never archived)."""
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


def _keys(test: str, rng: random.Random, up: bool, slow: bool, i: int, tgt: str) -> dict[str, Any]:
    rtt = rng.uniform(5, 40) * (8 if slow else 1)
    if test == "ping":
        rtts = [round(rtt + rng.random(), 3) for _ in range(3)]
        packets = [{"seq": s, "rtt_ms": rtts[s] if up else None, "ttl": 57 if up else None,
                    "failure": None if up else "timeout"} for s in range(3)]
        return {"resolved_address": tgt, "family": "ipv4", "src_addr": probe_address(i), "packets": packets,
                "sent": 3, "received": 3 if up else 0, "min_rtt_ms": min(rtts) if up else None,
                "median_rtt_ms": sorted(rtts)[1] if up else None,
                "mean_rtt_ms": round(sum(rtts) / 3, 3) if up else None, "max_rtt_ms": max(rtts) if up else None}
    if test == "traceroute":      # the keys of probe/probers/traceroute.py
        hops = [{"ttl": h, "address": f"198.18.{h}.1", "rtt_ms": round(rtt * h / 4, 3), "icmp_type": 11,
                 "icmp_code": 0, "kind": "time_exceeded", "source": "probed"} for h in range(1, 5 if up else 3)]
        if not up:
            hops.append({"ttl": 3, "address": None, "rtt_ms": None, "icmp_type": None, "icmp_code": None,
                         "kind": None, "source": "probed"})
        return {"protocol": "udp", "resolved_address": tgt, "dst_port": 33434, "hops": hops,
                "hop_count": len(hops), "destination_reached": up, "complete": True, "probes_sent": len(hops)}
    if test == "dns":
        return {"query": "gov.kz", "rcode": "NOERROR" if up else None, "response_ms": round(rtt, 3)}
    if test == "http":
        return {"status": 200 if up else None, "body_bytes": 5120 if up else 0, "local_address": probe_address(i)}
    if test == "tcp":
        return {"connect_ms": round(rtt, 3) if up else None}
    bps = rng.uniform(40e6, 90e6) / (20 if slow else 1)
    return {"goodput_bps": round(bps, 1) if up else None, "bytes": int(bps / 8) if up else 0}


TARGETS = {"ping": "198.18.100.10", "traceroute": "198.18.100.10", "dns": "198.18.100.53",
           "http": "https://gov.kz/", "tcp": "198.18.100.10:443", "throughput": "https://speed.kz/100M"}


def records(n_probes: int, hours: float, interval_s: float = 60.0, *, phases: Phases = Phases(),
            seed: int = 1, campaign_id: str | None = "kz-watch") -> Iterator[dict[str, Any]]:
    """Every probe runs every test each ``interval_s`` for ``hours``, in time order."""
    rng = random.Random(seed)
    ids = probe_ids(n_probes)
    steps = int(hours * 3600 / interval_s)
    for step in range(steps):
        t = phases.start + step * interval_s
        off = t - phases.start
        in_blackout = phases.blackout[0] <= off < phases.blackout[1] and not (
            phases.restoration[0] <= off < phases.restoration[1])
        for i, pid in enumerate(ids):
            asn, access = NETWORKS[i % len(NETWORKS)]
            slow = access == "mobile" and phases.throttle[0] <= off < phases.throttle[1]
            for k, test in enumerate(TESTS):
                up = not in_blackout and rng.random() > 0.01
                start = datetime.fromtimestamp(t + i * 0.01 + k * 0.001, UTC)
                yield make_record(
                    test_name=test, test_version="1.0.0", target=TARGETS[test], start_time=start,
                    runtime_s=round(rng.uniform(0.01, 2.0), 3), success=up, failure=None if up else "timeout",
                    test_keys=_keys(test, rng, up, slow, i, TARGETS[test].split("/")[0]),
                    probe_id=pid, probe_cc="KZ", probe_asn=asn, probe_access=access, campaign_id=campaign_id,
                    task_id=f"{campaign_id}-{test}" if campaign_id else None,
                    annotations={"target_category": "domestic", "target_cc": "KZ", "vantage": "inside"},
                )


def fill(conn: sqlite3.Connection, n_probes: int, hours: float, interval_s: float = 60.0, *,
         phases: Phases = Phases(), seed: int = 1, chunk: int = 5000, campaign_id: str | None = "kz-watch") -> int:
    """Insert synthetic records through ``insert_measurements``; returns how many were stored."""
    total, batch = 0, []
    for rec in records(n_probes, hours, interval_s, phases=phases, seed=seed, campaign_id=campaign_id):
        batch.append(rec)
        if len(batch) >= chunk:
            total += len(insert_measurements(conn, batch).inserted)
            batch = []
    if batch:
        total += len(insert_measurements(conn, batch).inserted)
    return total


def add_probes(conn: sqlite3.Connection, n_probes: int, now: float) -> None:
    for i, pid in enumerate(probe_ids(n_probes)):
        asn, access = NETWORKS[i % len(NETWORKS)]
        conn.execute(
            "INSERT OR REPLACE INTO probes (probe_id, public_key, name, created_ts, declared_cc, declared_asn,"
            " observed_cc, observed_asn, access, tags, last_seen_ts, last_upload_ts, buffered, buffered_since_ts,"
            " software) VALUES (?, ?, ?, ?, 'KZ', ?, 'KZ', ?, ?, '[\"synthetic\"]', ?, ?, ?, ?, 'tocsin-probe 0.1.0')",
            (pid, f"key-{pid}", f"volunteer {i}", now - 86400, asn, asn, access, now - 30 * i, now - 60 * i,
             i % 3 * 10, None if i % 3 == 0 else now - 600))


def add_campaign(conn: sqlite3.Connection, campaign_id: str, embargo_s: float = 0.0, now: float = T0) -> None:
    spec = {"targets": list(TARGETS.values()), "tests": list(TESTS), "interval_s": 60,
            "selector": {"cc": "KZ"}, "start": "2022-01-05T00:00:00Z", "end": None}
    conn.execute("INSERT OR REPLACE INTO campaigns (campaign_id, name, spec, created_ts, embargo_s) VALUES (?,?,?,?,?)",
                 (campaign_id, f"Watch {campaign_id}", json.dumps(spec), now, embargo_s))


def add_event(conn: sqlite3.Connection, event_id: str, kind: str, scope_type: str, scope: str,
              states: list[tuple[str, float]], *, cc: str = "KZ", asn: int | None = None,
              access: str | None = None, restorations: list[list[float]] | None = None,
              evidence: list[str] | None = None) -> None:
    """An event row plus one event_transitions row per (state, measurement time)."""
    times = dict(states)
    state = states[-1][0]
    conn.execute(
        "INSERT OR REPLACE INTO events (event_id, kind, scope_type, scope, cc, asn, access, target, state, confidence,"
        " signals, start_ts, suspected_ts, confirmed_ts, resolved_ts, restorations, details, detector_version,"
        " updated_ts) VALUES (?,?,?,?,?,?,?,NULL,?,?,?,?,?,?,?,?,?,?,?)",
        (event_id, kind, scope_type, scope, cc, asn, access, state, 0.9, json.dumps(["inside", "outside"]),
         states[0][1], times.get("suspected"), times.get("confirmed"), times.get("resolved"),
         json.dumps(restorations or []), json.dumps({"ratio": 0.02}), "synthetic-1", states[-1][1]))
    for mid in evidence or []:
        conn.execute("INSERT OR IGNORE INTO event_evidence VALUES (?, ?)", (event_id, mid))
    for st, at in states:
        payload = {"event_id": event_id, "kind": kind, "scope": scope, "state": st, "cc": cc, "at_ts": at}
        conn.execute("INSERT INTO event_transitions (event_id, state, at_ts, recorded_ts, payload) VALUES (?,?,?,?,?)",
                     (event_id, st, at, at, json.dumps(payload)))


def add_scenario_events(conn: sqlite3.Connection, phases: Phases = Phases()) -> list[str]:
    """The throttling and blackout events of :func:`records`' timeline; returns their ids."""
    s = phases.start
    ev = [r[0] for r in conn.execute(
        "SELECT measurement_id FROM measurements WHERE start_ts >= ? AND start_ts < ? AND success = 0 LIMIT 50",
        (s + phases.blackout[0], s + phases.blackout[1]))]
    add_event(conn, "ev-kz-throttle", "throttling", "access", "KZ/mobile",
              [("suspected", s + phases.throttle[0] + 120), ("confirmed", s + phases.throttle[0] + 300),
               ("resolved", s + phases.throttle[1])], access="mobile")
    add_event(conn, "ev-kz-blackout", "blackout", "country", "KZ",
              [("suspected", s + phases.blackout[0] + 60), ("confirmed", s + phases.blackout[0] + 180),
               ("resolved", s + phases.blackout[1] + 120)],
              restorations=[[s + phases.restoration[0], s + phases.restoration[1]]], evidence=ev)
    return ["ev-kz-throttle", "ev-kz-blackout"]
