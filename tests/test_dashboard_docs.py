"""docs/dashboard.md lists every dashboard route and how the assets are installed and served."""

from __future__ import annotations

import hashlib
import re
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


def test_assets_documented_as_installed() -> None:
    """The npm bundle named in the docs is the one install-deps.sh fetches, into the directory served."""
    from coordinator.dashboard import assets

    root = Path(__file__).parent.parent
    script = (root / "scripts" / "install-deps.sh").read_text()
    settings = dict(re.findall(r'^(PLOTLY_JS_\w+)="?([^"\n]+)"?$', script, re.M))
    assert root / settings["PLOTLY_JS_DIR"] == assets.VENDOR
    assert f"package/{assets.SMALL_PLOTLY}" in script and f"`{settings['PLOTLY_JS_PKG']}`" in DOC
    text = " ".join(DOC.split())
    for needle in (assets.HASHED_CACHE, assets.PLAIN_CACHE, assets.SMALL_PLOTLY, "`coordinator/dashboard/vendor/`",
                   *(f"`{name}`" for name in assets.NAMES)):
        assert needle in text, needle
    small = assets.VENDOR / assets.SMALL_PLOTLY
    if small.is_file():                      # installed: the documented size is the pinned file's
        assert hashlib.sha256(small.read_bytes()).hexdigest() == settings["PLOTLY_JS_SHA256"]
        assert f"{small.stat().st_size:,} bytes" in text
