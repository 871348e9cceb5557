"""The agent's optional Prometheus endpoint serves the documented metrics."""

from __future__ import annotations

import socket
import urllib.request

from probe.agent.metrics import METRICS, Metrics


def test_metrics_endpoint_serves_documented_names() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m = Metrics(f"127.0.0.1:{port}")
    try:
        assert m.enabled
        m.test("http", "success")
        m.test("dns", "failure")
        m.outbox(42)
        m.uploaded(1700000000.0)
        m.dropped(3)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    finally:
        m.close()
    for name in METRICS:
        assert name in text, name
    assert 'tocsin_probe_tests_total{outcome="success",test="http"} 1.0' in text
    assert "tocsin_probe_outbox_items 42.0" in text and "tocsin_probe_dropped_total 3.0" in text


def test_metrics_off_without_listen() -> None:
    m = Metrics(None)
    m.test("http", "success")
    assert not m.enabled
