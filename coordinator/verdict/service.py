"""Continuous detection in the coordinator, and ``GET /api/v1/events``.

A background task looks for new measurements and polls every ``verdict.poll_s`` seconds.  The
engine reads on a reader thread and writes on the Store's writer thread; nothing blocking runs
on the event loop.  A failed step is logged and retried at the next poll (never kills the loop).

A step runs ``poll_s`` after the last one, or sooner when the ingest commits new results (its
:class:`coordinator.api_ingest.Committer` sets ``arrived``): a result that shows a fault is judged
when it arrives, not up to ``poll_s`` later.  Steps woken that way stay at least
:data:`WAKE_GAP_FRACTION` x ``poll_s`` apart, and twice as long as the last step took, so the live
steps take at most a third of the time under a steady stream of uploads.  Under load the pause after
a step is as long as the step took, when that is longer than ``poll_s``: the live steps then take
at most half of the time (a heavy ingest keeps its CPU, and the next step folds in everything that
arrived meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from coordinator.api_ingest import COMMITTER
from coordinator.app import CONFIG, STORE
from coordinator.verdict.queries import FilterError, get_event, list_events, parse_filters
from coordinator.verdict.run import LiveDetector
from coordinator.verdict.settings import Settings, from_config

log = logging.getLogger(__name__)
SETTINGS = web.AppKey("verdict_settings", Settings)
STATS = web.AppKey("verdict_stats", dict)


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.json_response(payload, status=status, dumps=lambda o: json.dumps(o, sort_keys=True))


async def events_handler(request: web.Request) -> web.Response:
    raw = {k: v for k, v in request.query.items()}
    limit_text = raw.pop("limit", "1000")
    try:
        filters = parse_filters(raw)
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 10000:
            raise FilterError("limit must be an integer between 1 and 10000")
    except FilterError as exc:
        return _json({"error": str(exc)}, 400)
    events = await request.app[STORE].read(list_events, filters, int(limit_text))
    return _json({"events": events, "count": len(events)})


async def event_handler(request: web.Request) -> web.Response:
    event = await request.app[STORE].read(get_event, request.match_info["event_id"])
    if event is None:
        return _json({"error": f"no event {request.match_info['event_id']}"}, 404)
    return _json(event)


async def step(app: web.Application, detector: LiveDetector) -> int:
    """One live step; returns the number of transitions written."""
    store = app[STORE]
    plan = await store.read(detector.plan)
    if plan is None:
        return 0
    events = await store.read(detector.compute, plan)
    result = await store.write(detector.save, plan, events)
    stats = app[STATS]
    stats["steps"] = stats.get("steps", 0) + 1
    stats["transitions"] = stats.get("transitions", 0) + result.transitions
    stats["horizon"] = plan.horizon
    return result.transitions


WAKE_GAP_FRACTION = 0.25    # steps woken by arriving results stay this share of poll_s apart, at least


def pause_after(step_s: float, poll_s: float) -> float:
    """Seconds to wait after a step that took ``step_s`` when nothing arrives: ``poll_s``, or the
    step's own length when that is longer (coalescing under load; see the module docstring)."""
    return max(poll_s, step_s)


def wake_gap(step_s: float, poll_s: float) -> float:
    """The shortest pause after a step that took ``step_s`` before arriving results may start the
    next: a quarter of ``poll_s``, twice the step (a third of the time at most), never more than
    :func:`pause_after`."""
    return min(pause_after(step_s, poll_s), max(WAKE_GAP_FRACTION * poll_s, 2 * step_s))


async def pause(arrived: asyncio.Event | None, step_s: float, poll_s: float) -> None:
    """Wait :func:`wake_gap`, then until results arrive or :func:`pause_after` has passed."""
    gap, most = wake_gap(step_s, poll_s), pause_after(step_s, poll_s)
    await asyncio.sleep(gap)
    if arrived is None:
        await asyncio.sleep(most - gap)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(arrived.wait(), most - gap)


async def detect_forever(app: web.Application) -> None:
    detector = LiveDetector(app[SETTINGS])
    loop = asyncio.get_running_loop()
    committer = app.get(COMMITTER)
    arrived = committer.arrived if committer is not None else None
    while True:
        started = loop.time()
        if arrived is not None:
            arrived.clear()            # what commits from here on wakes the next step
        try:
            await step(app, detector)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("verdict step failed; retrying at the next poll")
            app[STATS]["errors"] = app[STATS].get("errors", 0) + 1
        await pause(arrived, loop.time() - started, app[SETTINGS].poll_s)


async def _background(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(detect_forever(app), name="verdict")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def setup(app: web.Application) -> None:
    app[SETTINGS] = from_config(app.get(CONFIG, None))
    app[STATS] = {}
    app.router.add_get("/api/v1/events", events_handler)
    app.router.add_get("/api/v1/events/{event_id}", event_handler)
    app.cleanup_ctx.append(_background)
