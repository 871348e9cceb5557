"""Closed loop: when an event becomes *suspected*, create one-off Atlas pings and traceroutes to
the country's targets from in-country and outside Atlas probes, within a credit budget; record
every created id, fetch the results while they come in, and fold them into the event's evidence.

Blocking (cousteau + store): run :func:`run_once` in an executor.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from coordinator.atlas import storage
from coordinator.atlas.client import AtlasAPIError, Client
from coordinator.atlas.settings import Settings
from coordinator.store import Store

log = logging.getLogger("tocsin.atlas.closedloop")
CURSOR = "closed_loop_seq"
# Estimated credits per result of a one-off (one-offs cost double the periodic price).
CREDITS_PER_RESULT = {"ping": 2 * 3, "traceroute": 2 * 20}
KINDS = ("ping", "traceroute")


@dataclass
class LoopReport:
    created: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    results: int = 0
    credits: float = 0.0


def suspected_since(conn: sqlite3.Connection, after_seq: int) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT t.seq, t.event_id, e.cc FROM event_transitions t JOIN events e USING (event_id) "
                        "WHERE t.seq > ? AND t.state = 'suspected' ORDER BY t.seq", (after_seq,))
    return [{"seq": r[0], "event_id": r[1], "cc": r[2]} for r in rows]


def country_targets(conn: sqlite3.Connection, cc: str) -> list[str]:
    out: list[str] = []
    for (spec,) in conn.execute("SELECT spec FROM campaigns WHERE stopped_ts IS NULL ORDER BY created_ts"):
        for t in json.loads(spec).get("targets", []):
            if t.get("cc") == cc and {"ping", "traceroute"} & set(t.get("tests") or KINDS):
                host = t.get("address") or t.get("name")
                if host and host not in out:
                    out.append(host)
    return out


def spent_24h(conn: sqlite3.Connection, now: float) -> float:
    row = conn.execute("SELECT COALESCE(SUM(credits), 0) FROM atlas_created_measurements WHERE created_ts > ?",
                       (now - 86400,)).fetchone()
    return float(row[0])


def outside_sources(s: Settings, cc: str) -> list[dict[str, Any]]:
    """Atlas picks connected probes itself: ``requested`` per outside country, ``probes_outside`` in all."""
    countries = [c for c in s.outside_countries if c != cc] or ["DE"]
    share = -(-s.probes_outside // len(countries))
    return [{"type": "country", "value": c, "requested": share} for c in countries]


def create_for_event(store: Store, client: Client, s: Settings, ev: dict[str, Any], now: float,
                     report: LoopReport) -> None:
    cc = ev["cc"]
    done = store.write_sync(lambda c: c.execute("SELECT 1 FROM atlas_created_measurements WHERE event_id = ?",
                                                (ev["event_id"],)).fetchone())
    if done or not cc:
        report.skipped.append(f"{ev['event_id']}: {'already measured' if done else 'no country'}")
        return
    targets = store.write_sync(country_targets, cc)[: s.targets_per_event]
    if not targets:
        report.skipped.append(f"{ev['event_id']}: no ping/traceroute targets for {cc}")
        return
    vantages: list[tuple[str, list[dict[str, Any]], int]] = [
        ("inside", [{"type": "country", "value": cc, "requested": s.probes_inside}], s.probes_inside),
        ("outside", outside_sources(s, cc), s.probes_outside)]
    for target in targets:
        for kind in KINDS:
            for vantage, sources, n in vantages:
                cost = CREDITS_PER_RESULT[kind] * n
                spent = store.write_sync(spent_24h, now)
                if spent + cost > s.credit_budget:
                    report.skipped.append(f"{ev['event_id']}: {kind} {target} {vantage}: credit budget "
                                          f"({spent:.0f} + {cost} > {s.credit_budget})")
                    continue
                try:
                    ids = client.create_oneoff(kind, target, sources,
                                               description=f"tocsin {ev['event_id']} {vantage} {cc}")
                except AtlasAPIError as exc:
                    report.skipped.append(f"{ev['event_id']}: {kind} {target} {vantage}: {exc}"[:200])
                    continue
                rows = [(i, ev["event_id"], ev["seq"], cc, kind, target, vantage, n, cost / len(ids), now)
                        for i in ids]
                store.write_sync(lambda c, rows=rows: c.executemany(
                    "INSERT OR IGNORE INTO atlas_created_measurements (msm_id, event_id, transition_seq, cc, type, "
                    "target, vantage, probes_requested, credits, created_ts) VALUES (?,?,?,?,?,?,?,?,?,?)", rows))
                report.created.extend(ids)
                report.credits += cost


def fetch_created(store: Store, client: Client, s: Settings, now: float, report: LoopReport) -> None:
    rows = store.write_sync(lambda c: c.execute(
        "SELECT msm_id, event_id, cc, target, created_ts FROM atlas_created_measurements WHERE done = 0").fetchall())
    infos = store.write_sync(storage.probe_infos)
    for msm, event_id, cc, target, created in rows:
        try:
            got = client.results(msm, int(created) - 60, int(now))
        except AtlasAPIError as exc:
            report.skipped.append(f"results of {msm}: {exc}"[:200])
            continue
        counts = store.write_sync(lambda c, got=got, cc=cc, target=target: storage.store_results(
            c, got, probes=infos, target_cc=lambda t: cc if t == target else None))
        report.results += counts.inserted
        ids = list(counts.inserted_ids)
        finished = 1 if now - created >= s.result_wait_s else 0

        def fold(c: sqlite3.Connection, msm: int = msm, event_id: str = event_id, ids: list[str] = ids,
                 n: int = len(got), finished: int = finished) -> None:
            c.executemany("INSERT OR IGNORE INTO event_evidence (event_id, measurement_id) VALUES (?, ?)",
                          [(event_id, i) for i in ids])
            c.execute("UPDATE atlas_created_measurements SET fetched_ts = ?, results = ?, done = ? WHERE msm_id = ?",
                      (now, n, finished, msm))

        store.write_sync(fold)


def run_once(store: Store, client: Client, s: Settings, *, now: float | None = None) -> LoopReport:
    """Read new suspected transitions, create one-offs for them, fetch pending one-offs' results."""
    started = time.time() if now is None else now
    report = LoopReport()
    cursor = store.write_sync(lambda c: storage.get_state(c, CURSOR, 0))
    for ev in store.write_sync(suspected_since, cursor):
        create_for_event(store, client, s, ev, started, report)
        store.write_sync(lambda c, seq=ev["seq"]: storage.set_state(c, CURSOR, seq))
    # the results window ends when the fetch starts, not when the pass did: one-offs created a second
    # into this pass already have results stamped after `started`
    fetch_created(store, client, s, time.time() if now is None else now, report)
    return report
