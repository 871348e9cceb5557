"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from coordinator.app import CONFIG, DATA_DIR, STORE
from coordinator.archive import synthetic
from coordinator.dashboard import assets, service
from coordinator.store import Store

pytestmark = pytest.mark.browser
ROOT = Path(__file__).parent.parent
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
N_PROBES = 8
ADDRESS = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")


@pytest.fixture
async def server(tmp_path: Path, aiohttp_server: Any) -> AsyncIterator[TestServer]:
    store = Store(tmp_path)
    store.write_sync(synthetic.fill, N_PROBES, 5.0)
    store.write_sync(synthetic.add_probes, N_PROBES, time.time())
    store.write_sync(synthetic.add_campaign, "kz-watch")
    store.write_sync(synthetic.add_scenario_events)
    store.write_sync(lambda c: synthetic.add_event(c, "ev-kz-dns", "dns_tampering", "target", "KZ|gov.kz",
                                                   [("suspected", synthetic.T0 + 16000)]))
    app = web.Application()
    app[STORE], app[CONFIG], app[DATA_DIR] = store, None, str(tmp_path)
    service.setup(app)
    yield await aiohttp_server(app)
    store.close()


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 1000})
        try:
            yield await context.new_page()
        finally:
            await context.close()


async def test_dashboard_pages_render_with_events(server: TestServer, page: Any) -> None:
    base = str(server.make_url("")).rstrip("/")
    errors: list[str] = []
    urls: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: urls.append(r.url))

    await page.goto(base + "/")
    row = page.locator("#countries tbody tr")
    assert await row.count() == 1
    assert "dns_tampering (suspected)" in await row.inner_text()

    await page.click("text=KZ")
    await page.wait_for_selector('body[data-rendered="1"]', timeout=20000)
    chart = await page.evaluate("""() => {
        const r = document.getElementById('reach'), t = document.getElementById('tput');
        return {traces: r.data.length, shapes: r.layout.shapes.map(s => s.name), tputTraces: t.data.length,
                drawnShapes: document.querySelectorAll('#reach .shapelayer path').length,
                points: r.data.reduce((a, d) => a + d.x.length, 0),
                minReach: Math.min(...r.data.flatMap(d => d.y.filter(v => v !== null)))};
    }""")
    assert chart["traces"] == 4 and chart["tputTraces"] == 4
    assert sorted(chart["shapes"]) == sorted(["event ev-kz-throttle", "event ev-kz-blackout",
                                              "restoration ev-kz-blackout", "event ev-kz-dns"])
    assert chart["drawnShapes"] >= 4 and chart["minReach"] == 0.0
    assert 0 < chart["points"] <= 4 * 1500            # buckets, never raw rows
    assert "events" in await page.inner_text("#summary")
    # every trace type dashboard.js asks for exists in the plotly.js bundle actually served (small or full)
    served = assets.load()["plotly.min.js"]
    assert base + f"/static/{served.hashed}" in urls and base + "/static/plotly.min.js" not in urls
    bundle = await page.evaluate("""() => ({version: Plotly.version, traces: Object.keys(Plotly.PlotSchema.get().traces),
        drawn: [...document.querySelectorAll('.js-plotly-plot')].flatMap(g => g.data.map(d => d.type))})""")
    asked = set(re.findall(r'type: "(\w+)"', (ROOT / "coordinator/dashboard/static/dashboard.js").read_text()))
    asked -= {"rect", "date"}                               # a shape's and an axis's type, not trace types
    assert asked and asked <= set(bundle["traces"]) and set(bundle["drawn"]) <= asked
    assert f"v{bundle['version']}" in served.body[:200].decode()
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard-country-KZ.png"), full_page=True)

    await page.click("text=ev-kz-blackout")
    await page.wait_for_selector("#evidence")
    assert await page.locator("#evidence tbody tr").count() == 50
    assert await page.locator("#transitions tbody tr").count() == 3
    assert await page.locator("#restorations tbody tr").count() == 1
    await page.screenshot(path=str(ARTIFACTS / "dashboard-event.png"), full_page=True)

    await page.click("text=Probes")
    await page.wait_for_selector("#probes")
    assert await page.locator("#probes tbody tr").count() == N_PROBES
    probes_text = await page.inner_text("main")
    assert "connected" in probes_text and not ADDRESS.findall(probes_text)
    await page.screenshot(path=str(ARTIFACTS / "dashboard-probes.png"), full_page=True)

    await page.click("text=Campaigns")
    await page.wait_for_selector("#campaigns")
    assert "kz-watch" in await page.inner_text("#campaigns")
    assert errors == []
    assert all(u.startswith(base) for u in urls), [u for u in urls if not u.startswith(base)]
