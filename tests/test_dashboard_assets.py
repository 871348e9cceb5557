"""Dashboard assets: which plotly.js is served, hashed names, caching, gzip, the country page's scripts."""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from coordinator.app import CONFIG, DATA_DIR, STORE
from coordinator.dashboard import assets, service
from coordinator.store import Store


def test_plotly_source_prefers_the_small_bundle(tmp_path: Path) -> None:
    assert assets.plotly_source(tmp_path) == assets.FULL_PLOTLY          # nothing installed: the full bundle
    (tmp_path / assets.SMALL_PLOTLY).write_text("/* plotly.js (basic - minified) v4.1.1 */\n")
    assert assets.plotly_source(tmp_path) == tmp_path / assets.SMALL_PLOTLY
    loaded = assets.load(tmp_path)
    plotly_js = loaded["plotly.min.js"]
    assert plotly_js.source == tmp_path / assets.SMALL_PLOTLY and loaded[plotly_js.hashed] is plotly_js
    digest = hashlib.sha256(plotly_js.body).hexdigest()
    assert plotly_js.hashed == f"plotly.min.{digest[:12]}.js" and plotly_js.etag == f'"{digest}"'
    assert gzip.decompress(plotly_js.gzipped) == plotly_js.body
    assert loaded["style.css"].content_type == "text/css" and loaded["dashboard.js"].content_type == "text/javascript"
    assert sorted({a.name for a in loaded.values()}) == sorted(assets.NAMES) and len(loaded) == 2 * len(assets.NAMES)


def test_full_bundle_fallback_is_plotly_js() -> None:
    head = assets.FULL_PLOTLY.read_bytes()[:200].decode()
    assert "plotly.js v" in head


@pytest.mark.parametrize(("header", "gz"), [("gzip, deflate, br", True), ("br;q=1.0, GZip;q=0.5", True),
                                            ("x-gzip", True), ("gzip;q=0", False), ("gzip;q=0.0", False),
                                            ("identity", False), ("", False), ("deflate, br", False)])
def test_accepts_gzip(header: str, gz: bool) -> None:
    assert assets.accepts_gzip(header) is gz


@pytest.fixture
async def server(tmp_path: Path, aiohttp_server: Any) -> AsyncIterator[TestServer]:
    store = Store(tmp_path)
    app = web.Application()
    app[STORE], app[CONFIG], app[DATA_DIR] = store, None, str(tmp_path)
    service.setup(app)
    yield await aiohttp_server(app)
    store.close()


async def test_hashed_assets_cached_and_gzipped(server: TestServer) -> None:
    served = assets.load()
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        html = await (await http.get(server.make_url("/country/KZ"))).text()
        for name in ("plotly.min.js", "dashboard.js"):
            assert f'<script defer src="/static/{served[name].hashed}"></script>' in html
        for name in assets.NAMES:
            asset = served[name]
            hashed = await http.get(server.make_url(f"/static/{asset.hashed}"), headers={"Accept-Encoding": "gzip"})
            assert hashed.status == 200 and hashed.headers["Content-Encoding"] == "gzip"
            assert hashed.headers["Cache-Control"] == assets.HASHED_CACHE and hashed.headers["ETag"] == asset.etag
            assert hashed.headers["Content-Type"].startswith(asset.content_type)
            assert gzip.decompress(await hashed.read()) == asset.body
            plain = await http.get(server.make_url(f"/static/{name}"), headers={"Accept-Encoding": "identity"})
            assert plain.status == 200 and "Content-Encoding" not in plain.headers
            assert plain.headers["Cache-Control"] == assets.PLAIN_CACHE and await plain.read() == asset.body
            again = await http.get(server.make_url(f"/static/{asset.hashed}"), headers={"If-None-Match": asset.etag})
            assert again.status == 304 and await again.read() == b""
        refused = await http.get(server.make_url("/static/style.css"), headers={"Accept-Encoding": "gzip;q=0"})
        assert "Content-Encoding" not in refused.headers and await refused.read() == served["style.css"].body
        for bad in ("plotly.min.000000000000.js", "base.html", "..%2Fassets.py", "plotly-basic.min.js"):
            assert (await http.get(server.make_url(f"/static/{bad}"))).status == 404


async def test_country_page_escapes_the_timeline_url(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        resp = await http.get(server.make_url("/country/kz"), params={"since": '"><script>alert(1)</script>'})
        html = await resp.text()
    assert resp.status == 200 and "<script>alert" not in html
    url = re.search(r'<script data-timeline="([^"]*)">', html)
    assert url is not None and url.group(1).startswith("/dashboard/api/country/KZ/timeline?since=")
