"""Optional Prometheus metrics for the agent (only when prometheus-client is importable)."""

from __future__ import annotations

from typing import Any

METRICS = {
    "tocsin_probe_tests_total": "tests run, by test and outcome (success, failure, could_not_run)",
    "tocsin_probe_outbox_items": "items waiting in the outbox",
    "tocsin_probe_last_upload_timestamp_seconds": "when the coordinator last acknowledged an upload",
    "tocsin_probe_dropped_total": "results evicted from the outbox by its disk quota",
}


class Metrics:
    """No-op when prometheus-client is missing; otherwise serves /metrics on ``listen``."""

    def __init__(self, listen: str | None):
        self.enabled = False
        self._tests: Any = None
        if not listen:
            return
        try:
            import prometheus_client as pc
        except ImportError:
            return
        host, _, port = listen.rpartition(":")
        registry = pc.CollectorRegistry()
        self._tests = pc.Counter("tocsin_probe_tests", METRICS["tocsin_probe_tests_total"], ["test", "outcome"],
                                 registry=registry)
        self._outbox = pc.Gauge("tocsin_probe_outbox_items", METRICS["tocsin_probe_outbox_items"], registry=registry)
        self._upload = pc.Gauge("tocsin_probe_last_upload_timestamp_seconds",
                                METRICS["tocsin_probe_last_upload_timestamp_seconds"], registry=registry)
        self._dropped = pc.Counter("tocsin_probe_dropped", METRICS["tocsin_probe_dropped_total"], registry=registry)
        self.server, self.thread = pc.start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
        self.enabled = True

    def test(self, name: str, outcome: str) -> None:
        if self.enabled:
            self._tests.labels(name, outcome).inc()

    def outbox(self, n: int) -> None:
        if self.enabled:
            self._outbox.set(n)

    def uploaded(self, ts: float) -> None:
        if self.enabled:
            self._upload.set(ts)

    def dropped(self, n: int) -> None:
        if self.enabled and n:
            self._dropped.inc(n)

    def close(self) -> None:
        if self.enabled:
            self.server.shutdown()
            self.server.server_close()
