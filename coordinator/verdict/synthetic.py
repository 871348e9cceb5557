"""Synthetic but realistic campaigns for tests, docs and benchmarks of the verdict engine.

A small country (KZ) like the lab's: fixed, two mobile and a datacenter ASN, an outside probe,
domestic, international and control targets, every test every ``interval_s``.  Faults are
:class:`Fault` rules over a time span; the records are made with :func:`probe.record.make_record`
exactly as the agent writes them (annotations included), and schedule polls as heartbeats.
Deterministic for a given seed.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from probe.record import make_record


@dataclass(frozen=True)
class SProbe:
    id: str
    cc: str
    asn: int
    access: str


@dataclass(frozen=True)
class STarget:
    name: str
    category: str
    group: str
    cc: str
    address: str
    tests: tuple[str, ...]


PROBES = (SProbe("fix-1", "KZ", 64601, "fixed"), SProbe("fix-2", "KZ", 64601, "fixed"),
          SProbe("mob1-1", "KZ", 64602, "mobile"), SProbe("mob1-2", "KZ", 64602, "mobile"),
          SProbe("mob2-1", "KZ", 64603, "mobile"), SProbe("mob2-2", "KZ", 64603, "mobile"),
          SProbe("dc-1", "KZ", 64610, "datacenter"), SProbe("out-1", "DE", 64720, "fixed"))
TARGETS = (STarget("news.kz.lab", "domestic", "news", "KZ", "198.19.20.10", ("ping", "tcp", "http", "dns")),
           STarget("bank.kz.lab", "domestic", "bank", "KZ", "198.19.20.11", ("tcp", "http")),
           STarget("gov.kz.lab", "domestic", "gov", "KZ", "198.19.20.12", ("tcp", "http")),
           STarget("speed.kz.lab", "domestic", "speed-kz", "KZ", "198.19.20.80", ("throughput",)),
           STarget("world.example.lab", "international", "world", "NL", "198.19.100.10", ("ping", "tcp", "http", "dns")),
           STarget("social.example.lab", "international", "social", "NL", "198.19.100.20", ("http", "throughput")),
           STarget("control.example.lab", "control", "control", "NL", "198.19.100.30", ("http", "throughput")))

Match = Callable[[SProbe, STarget, str], bool]


@dataclass(frozen=True)
class Fault:
    """From ``start`` to ``end`` (seconds from t0), matching (probe, target, test) results get
    ``effect``: ``fail`` (unreachable), ``slow`` (throughput times out), ``bogon`` (DNS answers a
    bogon), ``reset`` (HTTP reset), ``dead`` (no result, no poll: a dead probe), ``silent`` (no
    poll: cut off from the coordinator, results buffered and uploaded later)."""

    start: float
    end: float
    effect: str
    match: Match = field(default=lambda p, t, test: True)


def every(p: SProbe, t: STarget, test: str) -> bool:
    return True


def inside(p: SProbe, t: STarget, test: str) -> bool:
    return p.cc == "KZ"


@dataclass
class Campaign:
    t0: float = 1_700_000_000.0
    duration_s: float = 180.0
    interval_s: float = 3.0
    seed: int = 1
    noise: float = 0.01                      # share of ordinary random failures
    faults: list[Fault] = field(default_factory=list)
    probes: tuple[SProbe, ...] = PROBES
    coordinator_gaps: list[tuple[float, float]] = field(default_factory=list)

    def _effects(self, rel: float, p: SProbe, t: STarget | None, test: str) -> set[str]:
        return {f.effect for f in self.faults if f.start <= rel < f.end
                and ((t is None and f.effect in ("dead", "silent") and f.match(p, TARGETS[0], "poll"))
                     or (t is not None and f.match(p, t, test)))}

    def records(self) -> list[dict[str, Any]]:
        rng = random.Random(self.seed)
        out = []
        n = 0
        for p in self.probes:
            phase = rng.uniform(0, self.interval_s)
            k = 0
            while phase + k * self.interval_s < self.duration_s:
                base = phase + k * self.interval_s
                k += 1
                for t in TARGETS:
                    for test in t.tests:
                        rel = base + rng.uniform(0, 0.3 * self.interval_s)
                        fx = self._effects(rel, p, t, test)
                        if "dead" in fx:
                            continue
                        n += 1
                        out.append(self._record(rng, n, p, t, test, rel, fx))
        return out

    def _record(self, rng: random.Random, n: int, p: SProbe, t: STarget, test: str, rel: float,
                fx: set[str]) -> dict[str, Any]:
        fail = "fail" in fx or (rng.random() < self.noise and test != "dns")
        failure: str | None = "host_unreachable" if "fail" in fx else ("timeout" if fail else None)
        keys: dict[str, Any] = {}
        runtime = rng.uniform(0.01, 0.2)
        if test == "throughput":
            if "slow" in fx and not fail:
                failure, runtime = "timeout", 2.25
            elif not fail:
                gbps = rng.lognormvariate(17.7, 1.0)           # ~50 Mbit/s, wide spread
                runtime = 200_000 * 8 / gbps
                keys = {"goodput_bps": round(gbps, 1), "download": {"bytes": 200_000, "status": 200}}
        elif test == "dns":
            if "bogon" in fx:
                failure = "dns_bogon_answer"
                keys = {"answers": [{"type": "A", "value": "10.10.34.34"}], "rcode": "NOERROR"}
            elif not fail:
                keys = {"answers": [{"type": "A", "value": t.address}], "rcode": "NOERROR"}
        elif test == "http" and "reset" in fx and not fail:
            failure = "connection_reset"
        elif test == "http" and not fail:
            keys = {"redirects": [{"status": 200}]}
        ann = {"target_category": t.category, "target_cc": t.cc, "target_group": t.group,
               "vantage": "inside" if p.cc == t.cc else "outside"}
        target = {"ping": t.address, "tcp": f"{t.address}:80", "dns": t.name}.get(test, f"http://{t.name}/")
        start = datetime.fromtimestamp(self.t0 + rel, UTC)
        return make_record(test_name=test, test_version="1.0.0", target=target, start_time=start,
                           runtime_s=runtime, success=failure is None, failure=failure, test_keys=keys,
                           probe_id=p.id, measurement_id=f"syn-{self.seed}-{n:07d}", probe_cc=p.cc,
                           probe_asn=p.asn, probe_access=p.access, annotations=ann, campaign_id="c-syn")

    def heartbeats(self) -> list[tuple[str, float]]:
        out = []
        step = self.interval_s / 2
        for i, p in enumerate(self.probes):
            rel = i * step / len(self.probes)
            while rel < self.duration_s:
                gap = any(a <= rel < b for a, b in self.coordinator_gaps)
                if not gap and not self._effects(rel, p, None, "poll"):
                    out.append((p.id, self.t0 + rel))
                rel += step
        return out


def load(conn: sqlite3.Connection, records: list[dict[str, Any]], beats: list[tuple[str, float]]) -> None:
    """Store records (through the store's own insert) and polls into a migrated database."""
    from coordinator.store import insert_measurements

    out = insert_measurements(conn, records, received_ts=max((b for _, b in beats), default=0) + 1)
    if out.rejected:
        raise ValueError(f"synthetic records rejected: {out.rejected[:3]}")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO probe_heartbeats (probe_id, ts) VALUES (?, ?)", beats)
    conn.execute("COMMIT")
