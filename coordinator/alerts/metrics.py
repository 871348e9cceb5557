"""Prometheus metrics for the coordinator, read from the store at scrape time.

:data:`METRICS` lists every metric (docs/alerts.md is tested against it).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from coordinator import db as dbmod
from coordinator.alerts.webhooks import Stats

METRICS = {
    "tocsin_measurements_stored_total": "measurements stored since the database was made (by arrival seq)",
    "tocsin_ingest_rate_per_second": "measurements committed per second over the last window (label window)",
    "tocsin_ingest_last_received_timestamp_seconds": "coordinator clock of the newest stored measurement",
    "tocsin_store_writer_queue_depth": "jobs waiting for the store's single writer thread",
    "tocsin_probes": "registered probes by status (connected, silent, retired)",
    "tocsin_probe_buffered_results": "results the probes last reported waiting in their outboxes",
    "tocsin_events": "events by kind and state",
    "tocsin_event_transitions_total": "event state changes recorded",
    "tocsin_alert_webhook_pending": "state changes not yet acknowledged by a webhook",
    "tocsin_alert_webhook_attempts_total": "webhook delivery attempts by outcome (ok, http_NNN, error)",
    "tocsin_alert_webhook_last_success_timestamp_seconds": "when a webhook last acknowledged a delivery",
}
RATE_WINDOWS_S = (60, 300)


def _seq_at(conn: sqlite3.Connection, since: float, lo: int, hi: int) -> int:
    """Smallest seq whose received_ts >= since (received_ts grows with seq); binary search on the key."""
    while lo < hi:
        mid = (lo + hi) // 2
        row = conn.execute("SELECT received_ts FROM measurements WHERE seq >= ? ORDER BY seq LIMIT 1", (mid,)).fetchone()
        if row is None or row[0] >= since:
            hi = mid
        else:
            lo = mid + 1
    return lo


class StoreCollector(Collector):
    def __init__(self, db_path: Path, stats: Stats, webhooks: list[str], silent_after_s: float,
                 writer_depth: Callable[[], int]):
        self.db_path, self.stats, self.webhooks = db_path, stats, webhooks
        self.silent_after_s, self.writer_depth = silent_after_s, writer_depth

    def collect(self) -> Iterator[Metric]:
        conn = dbmod.connect(self.db_path, readonly=True)
        try:
            yield from self._collect(conn, time.time())
        finally:
            conn.close()

    def _collect(self, conn: sqlite3.Connection, now: float) -> Iterator[Metric]:
        top, last = conn.execute("SELECT seq, received_ts FROM measurements ORDER BY seq DESC LIMIT 1").fetchone() or (0, None)
        yield CounterMetricFamily("tocsin_measurements_stored", METRICS["tocsin_measurements_stored_total"], value=top)
        rate = GaugeMetricFamily("tocsin_ingest_rate_per_second", METRICS["tocsin_ingest_rate_per_second"],
                                 labels=["window"])
        for window in RATE_WINDOWS_S:
            first = _seq_at(conn, now - window, 1, top + 1) if top else 1
            rate.add_metric([f"{window}s"], (top - first + 1) / window if top else 0.0)
        yield rate
        yield GaugeMetricFamily("tocsin_ingest_last_received_timestamp_seconds",
                                METRICS["tocsin_ingest_last_received_timestamp_seconds"], value=last or 0.0)
        yield GaugeMetricFamily("tocsin_store_writer_queue_depth", METRICS["tocsin_store_writer_queue_depth"],
                                value=self.writer_depth())
        probes = GaugeMetricFamily("tocsin_probes", METRICS["tocsin_probes"], labels=["status"])
        counts = dict.fromkeys(("connected", "silent", "retired"), 0)
        buffered = 0
        for last_seen, retired, buf in conn.execute("SELECT last_seen_ts, retired_ts, buffered FROM probes"):
            status = "retired" if retired else "connected" if last_seen and now - last_seen <= self.silent_after_s \
                else "silent"
            counts[status] += 1
            buffered += buf or 0
        for status, n in counts.items():
            probes.add_metric([status], n)
        yield probes
        yield GaugeMetricFamily("tocsin_probe_buffered_results", METRICS["tocsin_probe_buffered_results"], value=buffered)
        events = GaugeMetricFamily("tocsin_events", METRICS["tocsin_events"], labels=["kind", "state"])
        for kind, state, n in conn.execute("SELECT kind, state, count(*) FROM events GROUP BY kind, state"):
            events.add_metric([kind, state], n)
        yield events
        tmax = conn.execute("SELECT coalesce(max(seq), 0) FROM event_transitions").fetchone()[0]
        yield CounterMetricFamily("tocsin_event_transitions", METRICS["tocsin_event_transitions_total"], value=tmax)
        yield from self._webhooks(conn, tmax)

    def _webhooks(self, conn: sqlite3.Connection, tmax: int) -> Iterator[Metric]:
        cursors = dict(conn.execute("SELECT webhook, last_seq FROM alert_cursors").fetchall())
        pend = GaugeMetricFamily("tocsin_alert_webhook_pending", METRICS["tocsin_alert_webhook_pending"],
                                 labels=["webhook"])
        for url in self.webhooks:
            pend.add_metric([url], tmax - cursors.get(url, tmax))
        yield pend
        attempts = CounterMetricFamily("tocsin_alert_webhook_attempts", METRICS["tocsin_alert_webhook_attempts_total"],
                                       labels=["webhook", "outcome"])
        for (url, outcome), n in sorted(self.stats.attempts.items()):
            attempts.add_metric([url, outcome], n)
        yield attempts
        last = GaugeMetricFamily("tocsin_alert_webhook_last_success_timestamp_seconds",
                                 METRICS["tocsin_alert_webhook_last_success_timestamp_seconds"], labels=["webhook"])
        for url, ts in sorted(self.stats.last_success.items()):
            last.add_metric([url], ts)
        yield last


def writer_depth_of(store: Any) -> Callable[[], int]:
    """Queue depth of the store's writer thread pool (0 when it cannot be read)."""
    def depth() -> int:
        queue = getattr(getattr(store, "_writer_pool", None), "_work_queue", None)
        return int(queue.qsize()) if queue is not None else 0
    return depth
