"""Atlas inside ``serve``: periodic fetch, the live stream, the closed loop (``[atlas] enabled``).

Every blocking part (cousteau, websocket-client, SQLite) runs on executor threads or the store's
writer thread; the event loop only schedules.  Status is served at ``GET /api/v1/atlas/status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from coordinator.app import CONFIG, STORE
from coordinator.atlas import closedloop, fetch, signals, storage
from coordinator.atlas.client import Client
from coordinator.atlas.settings import Settings
from coordinator.atlas.stream import run_stream
from coordinator.store import Store

log = logging.getLogger("tocsin.atlas.service")
STREAM_CURSOR = "stream_last_ts"


@dataclass
class Status:
    fetches: int = 0
    last_fetch: dict[str, Any] = field(default_factory=dict)
    stream_events: int = 0
    stream_connects: int = 0
    created: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


STATUS = web.AppKey("atlas_status", Status)


def settings_of(app: web.Application) -> Settings | None:
    config: Any = app.get(CONFIG)
    try:
        section = config.section("atlas") if config is not None else None
    except (KeyError, AttributeError):
        return None
    return section if isinstance(section, Settings) else None


def stream_handler(store: Store, status: Status) -> Callable[[str, list[dict[str, Any]]], None]:
    def handle(kind: str, items: list[dict[str, Any]]) -> None:
        def write(conn: Any) -> None:
            infos = storage.probe_infos(conn)
            if kind == "connection":
                storage.store_connection_events(conn, items, probes=infos)
            else:
                storage.store_results(conn, items, probes=infos, target_cc=storage.target_countries(conn).get)
            newest = max(float(i.get("timestamp") or 0) for i in items)
            if newest > (storage.get_state(conn, STREAM_CURSOR) or 0):
                storage.set_state(conn, STREAM_CURSOR, newest)
        store.write_sync(write)
        status.stream_events += len(items)
    return handle


async def _every(seconds: float, job: Callable[[], Awaitable[None]]) -> None:
    while True:
        try:
            await job()
        except Exception as exc:  # a failed pass is logged and retried on the next tick
            log.exception("atlas background job failed: %s", exc)
        await asyncio.sleep(seconds)


def setup(app: web.Application) -> None:
    settings = settings_of(app)
    status = Status()
    app[STATUS] = status
    app.router.add_get("/api/v1/atlas/status", status_route)
    if settings is None or not settings.enabled:
        return
    signals.use_settings(settings)

    async def background(app: web.Application) -> AsyncIterator[None]:
        store = app[STORE]
        loop = asyncio.get_running_loop()
        client = Client(settings)

        async def poll() -> None:
            counts = await loop.run_in_executor(None, lambda: fetch.fetch_once(store, client, settings))
            status.fetches += 1
            status.last_fetch = counts.as_dict()

        async def close_loop() -> None:
            report = await loop.run_in_executor(None, lambda: closedloop.run_once(store, client, settings))
            status.created.extend(report.created)
            status.skipped = (status.skipped + report.skipped)[-100:]

        tasks = [asyncio.create_task(_every(settings.poll_interval_s, poll))]
        if settings.closed_loop:
            tasks.append(asyncio.create_task(_every(settings.closed_loop_interval_s, close_loop)))
        stop = threading.Event()
        stream_future = None
        if settings.stream:
            resume = await store.read(lambda c: storage.get_state(c, STREAM_CURSOR))
            stream_future = loop.run_in_executor(None, lambda: run_stream(
                settings, stream_handler(store, status), stop=stop, resume_ts=resume))
        yield
        stop.set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if stream_future is not None:
            stats = await stream_future
            status.stream_connects = stats.connects

    app.cleanup_ctx.append(background)


async def status_route(request: web.Request) -> web.Response:
    status = request.app[STATUS]
    return web.json_response({"fetches": status.fetches, "last_fetch": status.last_fetch,
                              "stream_events": status.stream_events, "created": status.created,
                              "skipped": status.skipped[-20:], "now": time.time()})
