"""docs/alerts.md agrees with the code: routes, metrics, settings and their defaults."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from coordinator.alerts import metrics, service
from coordinator.alerts.settings import Settings

DOC = (Path(__file__).parent.parent / "docs" / "alerts.md").read_text()


def rows(prefix: str) -> dict[str, str]:
    out = {}
    for line in DOC.splitlines():
        if line.startswith(prefix):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[cells[0].strip("`")] = cells[1]
    return out


def test_routes_metrics_settings() -> None:
    assert rows("| `GET ") == service.ROUTES
    assert rows("| `tocsin_") == metrics.METRICS
    settings = {k: v.strip("`") for k, v in rows("| `").items() if not k.startswith(("GET ", "tocsin_", "X-"))}
    assert set(settings) == {f.name for f in dataclasses.fields(Settings)}
    for name, text in settings.items():
        assert json.loads(text) == getattr(Settings(), name), name
    for header in ("X-Tocsin-Delivery", "X-Tocsin-Timestamp", "X-Tocsin-Signature", "X-Tocsin-Signature-256"):
        assert f"| `{header}` |" in DOC
