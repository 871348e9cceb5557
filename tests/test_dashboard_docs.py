"""docs/dashboard.md lists every dashboard route."""

from __future__ import annotations

from pathlib import Path

from coordinator.dashboard import rollup, service

DOC = (Path(__file__).parent.parent / "docs" / "dashboard.md").read_text()


def test_routes_and_levels_documented() -> None:
    rows = {}
    for line in DOC.splitlines():
        if line.startswith("| `GET "):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0].strip("`")] = cells[1]
    assert rows == service.ROUTES
    assert ", ".join(f"{level} s" for level in rollup.LEVELS[:-1]) + f" and {rollup.LEVELS[-1]} s" in " ".join(
        DOC.split())
    assert f"{rollup.MAX_BUCKETS:,}" in DOC and f"{rollup.CHUNK_ROWS:,}" in DOC
