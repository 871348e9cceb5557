"""Alerts in the coordinator: webhook delivery tasks, Atom feeds and ``/metrics``.

Routes (docs/alerts.md is tested against :data:`ROUTES`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from coordinator.alerts import atom, metrics, webhooks
from coordinator.alerts.settings import Settings, from_config
from coordinator.app import CONFIG, DATA_DIR, STORE
from coordinator.archive import signing

ROUTES = {
    "GET /metrics": "Prometheus metrics of the coordinator",
    "GET /feeds/all.atom": "Atom feed of every event state change",
    "GET /feeds/{cc}.atom": "Atom feed of one country's event state changes (ISO alpha-2, e.g. KZ)",
}
SETTINGS = web.AppKey("alerts_settings", Settings)
REGISTRY = web.AppKey("alerts_registry", CollectorRegistry)
STATS = web.AppKey("alerts_stats", webhooks.Stats)
_CC = re.compile(r"^[A-Za-z]{2}$")


async def metrics_handler(request: web.Request) -> web.Response:
    loop = asyncio.get_running_loop()
    data = await loop.run_in_executor(None, generate_latest, request.app[REGISTRY])
    return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def feed_handler(request: web.Request) -> web.Response:
    which = request.match_info["which"]
    if which != "all" and not _CC.match(which):
        raise web.HTTPNotFound(text="feeds are /feeds/all.atom and /feeds/CC.atom (two-letter country code)")
    cc = None if which == "all" else which.upper()
    limit = request.app[SETTINGS].feed_entries
    rows = await request.app[STORE].read(atom.transitions, cc, limit)
    base = f"{request.scheme}://{request.host}"
    body = atom.render(rows, feed_id=f"tag:tocsin,2022:feed:{cc or 'all'}",
                       feed_title=f"Tocsin events: {cc or 'all countries'}", base_url=base,
                       self_url=f"{base}/feeds/{which}.atom")
    return web.Response(body=body, content_type="application/atom+xml")


async def _deliveries(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    tasks: list[asyncio.Task[None]] = []
    session = None
    if settings.webhooks:
        loop = asyncio.get_running_loop()
        key = await loop.run_in_executor(None, signing.load_or_create_key, app[DATA_DIR])
        # Cursors exist before the service answers: a transition written once the coordinator
        # is up is never mistaken for history that a new webhook skips.
        for url in settings.webhooks:
            await app[STORE].write(webhooks.cursor, url)
        session = aiohttp.ClientSession()
        wake = asyncio.Event()
        tasks = [asyncio.create_task(webhooks.deliver_forever(app[STORE], settings, url, key, session, app[STATS],
                                                              wake), name=f"webhook {url}")
                 for url in settings.webhooks]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if session is not None:
        await session.close()


def setup(app: web.Application) -> None:
    config = app.get(CONFIG)
    settings = from_config(config)
    app[SETTINGS] = settings
    app[STATS] = webhooks.Stats()
    registry = CollectorRegistry(auto_describe=False)
    silent = float(getattr(config, "silent_after_s", 300.0) if config is not None else 300.0)
    registry.register(metrics.StoreCollector(app[STORE].path, app[STATS], settings.webhooks, silent,
                                             metrics.writer_depth_of(app[STORE])))
    app[REGISTRY] = registry
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/feeds/{which}.atom", feed_handler)
    app.cleanup_ctx.append(_deliveries)
