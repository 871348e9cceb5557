"""The dashboard at ``/``: pages, the timeline JSON, static assets (:mod:`coordinator.dashboard.assets`).

Routes (docs/dashboard.md is tested against :data:`ROUTES`).  A background task folds new
measurements into the rollup every :data:`REFRESH_S` seconds; the timeline also catches up first.
The assets are read, hashed and gzip-compressed once, off the event loop, at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator

from aiohttp import web

from coordinator.app import CONFIG, STORE
from coordinator.archive.query import QueryError, parse_time_param
from coordinator.dashboard import assets, pages, queries, rollup

log = logging.getLogger("tocsin.dashboard")
ROUTES = {
    "GET /": "overview of watched countries and their current state",
    "GET /country/{cc}": "a country's timeline: reachability and throughput by ASN and access type, with events",
    "GET /event/{event_id}": "one event: state changes, restorations, evidence measurements",
    "GET /probes": "probes: status, last heard, buffered results, country/ASN/access (no addresses)",
    "GET /campaigns": "campaigns and their measurement counts",
    "GET /dashboard/api/country/{cc}/timeline": "time-bucketed series and events as JSON (since, until optional)",
    "GET /dashboard/api/event/{event_id}": "one event with its evidence as JSON",
    "GET /static/{name}": "plotly.min.js, dashboard.js, style.css, each also under a content-hashed name",
}
REFRESH_S = 2.0
ASSETS = web.AppKey("dashboard_assets", dict[str, assets.Asset])
_CC = re.compile(r"^[A-Z]{2}$")


def _silent_after(app: web.Application) -> float:
    return float(getattr(app.get(CONFIG), "silent_after_s", 300.0))


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html")


def _cc(request: web.Request) -> str:
    cc = request.match_info["cc"].upper()
    if not _CC.match(cc):
        raise web.HTTPNotFound(text="a country is a two-letter ISO code, e.g. /country/KZ")
    return cc


async def overview(request: web.Request) -> web.Response:
    await request.app[STORE].write(rollup.refresh, 20)
    rows = await request.app[STORE].read(queries.countries, time.time(), _silent_after(request.app))
    return _html(pages.overview(rows))


async def country(request: web.Request) -> web.Response:
    cc = _cc(request)
    events = await request.app[STORE].read(queries.events_in, cc, 0.0, time.time())
    qs = request.query_string
    return _html(pages.country(cc, f"/dashboard/api/country/{cc}/timeline" + (f"?{qs}" if qs else ""), events,
                               assets.urls(request.app[ASSETS])))


async def timeline(request: web.Request) -> web.Response:
    cc = _cc(request)
    store = request.app[STORE]
    await store.write(rollup.refresh, 20)
    try:
        since = parse_time_param("since", request.query["since"]) if "since" in request.query else None
        until = parse_time_param("until", request.query["until"]) if "until" in request.query else None
    except QueryError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from exc
    if since is None or until is None:
        span = await store.read(queries.data_range, cc)
        if span is None:
            span = (time.time() - 86400, time.time())
        since = span[0] if since is None else since
        until = span[1] if until is None else until
    if until <= since:
        raise web.HTTPBadRequest(text="until must be after since")
    return web.json_response(await store.read(queries.timeline, cc, since, until))


async def event(request: web.Request) -> web.Response:
    ev = await request.app[STORE].read(queries.event_detail, request.match_info["event_id"])
    if ev is None:
        raise web.HTTPNotFound(text="no such event")
    return _html(pages.event(ev))


async def event_json(request: web.Request) -> web.Response:
    ev = await request.app[STORE].read(queries.event_detail, request.match_info["event_id"])
    if ev is None:
        raise web.HTTPNotFound(text="no such event")
    return web.json_response(ev)


async def probes(request: web.Request) -> web.Response:
    return _html(pages.probes(await request.app[STORE].read(queries.probes, time.time(), _silent_after(request.app))))


async def campaigns(request: web.Request) -> web.Response:
    return _html(pages.campaigns(await request.app[STORE].read(queries.campaigns)))


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    asset = request.app[ASSETS].get(name)
    if asset is None:
        raise web.HTTPNotFound()
    headers = {"Cache-Control": assets.HASHED_CACHE if name == asset.hashed else assets.PLAIN_CACHE,
               "ETag": asset.etag, "Vary": "Accept-Encoding"}
    if asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    body = asset.body
    if assets.accepts_gzip(request.headers.get("Accept-Encoding", "")):
        body, headers["Content-Encoding"] = asset.gzipped, "gzip"
    return web.Response(body=body, headers=headers, content_type=asset.content_type, charset="utf-8")


async def _assets(app: web.Application) -> AsyncIterator[None]:
    app[ASSETS] = await asyncio.get_running_loop().run_in_executor(None, assets.load)
    source = app[ASSETS]["plotly.min.js"].source
    log.info("dashboard serves plotly.js from %s (%d bytes)", source, len(app[ASSETS]["plotly.min.js"].body))
    yield


async def _refresher(app: web.Application) -> AsyncIterator[None]:
    async def loop() -> None:
        while True:
            try:
                await app[STORE].write(rollup.refresh, 20)
            except Exception:                       # keep the dashboard alive; the next round retries
                log.exception("dashboard rollup refresh failed")
            await asyncio.sleep(REFRESH_S)

    task = asyncio.create_task(loop(), name="dashboard rollup")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def setup(app: web.Application) -> None:
    app.router.add_get("/", overview)
    app.router.add_get("/country/{cc}", country)
    app.router.add_get("/event/{event_id}", event)
    app.router.add_get("/probes", probes)
    app.router.add_get("/campaigns", campaigns)
    app.router.add_get("/dashboard/api/country/{cc}/timeline", timeline)
    app.router.add_get("/dashboard/api/event/{event_id}", event_json)
    app.router.add_get("/static/{name}", static)
    app.cleanup_ctx.append(_assets)
    app.cleanup_ctx.append(_refresher)
