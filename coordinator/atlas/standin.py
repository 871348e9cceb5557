"""A local stand-in for the RIPE Atlas service: the real API paths cousteau uses and the stream's
wire format, serving the real samples and (in the lab) emulated probes from a probes file.

    python -m coordinator.atlas.standin --listen HOST:PORT --cert PEM --key PEM --samples DIR [--probes FILE]

It emulates the external service (paging with ``next``, filters, time windows, one-off creation,
``/stream/`` WebSocket with ``atlas_subscribe``/``startTime`` replay).  Test hooks that a real
server lacks live under ``/_standin/`` (inject failures, drop stream connections, request log).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import WSMsgType, web

from coordinator.atlas.standin_state import CONNECTION_MSM, State

STATE = web.AppKey("state", State)
FAULTS = web.AppKey("faults", list[dict[str, Any]])
LOG = web.AppKey("log", list[dict[str, Any]])
SOCKETS = web.AppKey("sockets", set[web.WebSocketResponse])
DEFAULT_PAGE = 50


def _page(request: web.Request, items: list[dict[str, Any]]) -> web.Response:
    q = request.query
    size = max(1, min(int(q.get("page_size", DEFAULT_PAGE)), 1000))
    page = max(1, int(q.get("page", 1)))
    chunk = items[(page - 1) * size: page * size]
    nxt = None
    if page * size < len(items):
        params = dict(q)
        params["page"] = str(page + 1)
        nxt = str(request.url.with_query(None)) + "?" + urlencode(params)
    return web.json_response({"count": len(items), "next": nxt, "previous": None, "results": chunk})


def _ids(text: str) -> set[int]:
    return {int(v) for v in text.split(",") if v.strip().isdigit()}


async def probes(request: web.Request) -> web.Response:
    q = request.query
    items = request.app[STATE].probe_objects()
    if "country_code" in q:
        items = [p for p in items if (p.get("country_code") or "").upper() == q["country_code"].upper()]
    for key in ("asn_v4", "asn"):
        if key in q:
            items = [p for p in items if str(p.get("asn_v4")) == q[key]]
    if "id__in" in q:
        wanted = _ids(q["id__in"])
        items = [p for p in items if p["id"] in wanted]
    if "status" in q:
        items = [p for p in items if str((p.get("status") or {}).get("id", p.get("status_id"))) == q["status"]]
    return _page(request, sorted(items, key=lambda p: p["id"]))


async def measurements(request: web.Request) -> web.Response:
    q = request.query
    items = list(request.app[STATE].measurements.values())
    if "id__in" in q:
        wanted = _ids(q["id__in"])
        items = [m for m in items if m["id"] in wanted]
    for key in ("type", "target_ip", "target"):
        if key in q:
            items = [m for m in items if str(m.get(key)) == q[key]]
    return _page(request, sorted(items, key=lambda m: m["id"]))


async def measurement(request: web.Request) -> web.Response:
    m = request.app[STATE].measurements.get(int(request.match_info["msm"]))
    if m is None:
        return web.json_response({"error": {"status": 404, "title": "Not found"}}, status=404)
    return web.json_response(m)


async def results(request: web.Request) -> web.Response:
    state = request.app[STATE]
    msm = int(request.match_info["msm"])
    q = request.query
    items = state.events if msm == CONNECTION_MSM else state.results.get(msm)
    if items is None:
        return web.json_response({"error": {"status": 404, "title": "Not found"}}, status=404)
    start = float(q.get("start", "-inf"))
    stop = float(q.get("stop", "inf"))
    wanted = _ids(q["probe_ids"]) if "probe_ids" in q else None
    out = [r for r in items if start <= r["timestamp"] <= stop and (wanted is None or r["prb_id"] in wanted)]
    if msm == CONNECTION_MSM:
        out = [{k: v for k, v in r.items() if k != "country_code"} for r in out]
    return web.json_response(out)


async def create(request: web.Request) -> web.Response:
    if not request.headers.get("Authorization", "").startswith("Key "):
        return web.json_response({"error": {"status": 403, "title": "Forbidden",
                                            "detail": "Authentication credentials were not provided."}}, status=403)
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": {"status": 400, "title": "Bad Request"}}, status=400)
    if not body.get("definitions") or not body.get("probes"):
        return web.json_response({"error": {"status": 400, "title": "Bad Request",
                                            "detail": "definitions and probes are required"}}, status=400)
    return web.json_response({"measurements": request.app[STATE].create(body)}, status=201)


async def stream(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=20)
    await ws.prepare(request)
    state = request.app[STATE]
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    subs: list[dict[str, Any]] = []

    def matches(channel: str, payload: dict[str, Any], sub: dict[str, Any]) -> bool:
        if sub.get("stream_type") == "probestatus":
            return channel == "probestatus"
        if channel == "probestatus":
            return sub.get("stream_type") == "result" and str(sub.get("msm")) == str(CONNECTION_MSM)
        return "msm" not in sub or str(sub["msm"]) == str(payload.get("msm_id"))

    def listener(channel: str, payload: dict[str, Any]) -> None:
        for sub in subs:
            if matches(channel, payload, sub):
                name = "atlas_probestatus" if sub.get("stream_type") == "probestatus" else "atlas_result"
                queue.put_nowait((name, payload))
                return

    async def pump() -> None:
        while True:
            name, payload = await queue.get()
            await ws.send_str(json.dumps([name, payload]))

    state.listeners.append(listener)
    request.app[SOCKETS].add(ws)
    sender = asyncio.create_task(pump())
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                kind, params = json.loads(msg.data)
            except (ValueError, TypeError):
                await ws.send_str(json.dumps(["atlas_error", "could not parse message"]))
                continue
            if kind == "atlas_subscribe" and isinstance(params, dict):
                await ws.send_str(json.dumps(["atlas_subscribed", params]))
                start = params.get("startTime")
                if start is not None:  # replay history from startTime, like the real stream
                    replay = [("probestatus", e) for e in state.events]
                    if params.get("stream_type") == "result" and str(params.get("msm")) != str(CONNECTION_MSM):
                        replay = [("result", r) for rs in state.results.values() for r in rs]
                    for channel, payload in replay:
                        if payload["timestamp"] >= float(start) and matches(channel, payload, params):
                            n = "atlas_probestatus" if params.get("stream_type") == "probestatus" else "atlas_result"
                            queue.put_nowait((n, payload))
                subs.append(params)
    finally:
        state.listeners.remove(listener)
        request.app[SOCKETS].discard(ws)
        sender.cancel()
    return ws


@web.middleware
async def faults(request: web.Request, handler: Any) -> web.StreamResponse:
    """Apply injected faults (status codes, delays) to matching API requests; log every request."""
    app = request.app
    status = 0
    if request.path.startswith("/api/"):
        injected = app[FAULTS]
        for fault in list(injected):
            if request.path.startswith(fault.get("path", "/api/")) and fault["count"] > 0:
                fault["count"] -= 1
                if fault.get("delay_s"):
                    await asyncio.sleep(float(fault["delay_s"]))
                if fault.get("status"):
                    status = int(fault["status"])
                    app[LOG].append({"method": request.method, "path": request.path,
                                     "query": dict(request.query), "status": status})
                    headers = {"Retry-After": str(fault["retry_after"])} if "retry_after" in fault else None
                    return web.json_response({"error": {"status": status}}, status=status, headers=headers)
                break
    response = await handler(request)
    if request.path.startswith("/api/"):
        app[LOG].append({"method": request.method, "path": request.path, "query": dict(request.query),
                         "status": response.status})
    return response


async def control(request: web.Request) -> web.Response:
    app = request.app
    action = request.match_info["action"]
    if action == "log":
        return web.json_response(app[LOG])
    body = await request.json() if request.can_read_body else {}
    if action == "fail":
        app[FAULTS].append({"count": 1, **body})
    elif action == "drop":
        sockets = app[SOCKETS]
        for ws in list(sockets):
            await ws.close()
    elif action == "reload":
        return web.json_response({"events": app[STATE].reload_probes(force=True)})
    elif action == "tick":
        return web.json_response({"results": app[STATE].tick_builtin()})
    else:
        raise web.HTTPNotFound()
    return web.json_response({"ok": True})


async def _watch(app: web.Application, poll_s: float, result_interval_s: float) -> None:
    state = app[STATE]
    loop = asyncio.get_running_loop()
    next_tick = loop.time() + result_interval_s
    while True:
        state.reload_probes()
        if result_interval_s > 0 and loop.time() >= next_tick:
            state.tick_builtin()
            next_tick = loop.time() + result_interval_s
        await asyncio.sleep(poll_s)


def make_app(samples: Path, probes_file: Path | None = None, *, poll_s: float = 0.2,
             result_interval_s: float = 60.0) -> web.Application:
    app = web.Application(middlewares=[faults])
    state = State(samples=samples, probes_file=probes_file)
    state.load_samples()
    state.reload_probes()
    app[STATE], app[FAULTS], app[LOG], app[SOCKETS] = state, [], [], set()
    app.router.add_get("/api/v2/probes/", probes)
    app.router.add_get("/api/v2/measurements/", measurements)
    app.router.add_post("/api/v2/measurements/", create)
    app.router.add_get("/api/v2/measurements/{msm:\\d+}/", measurement)
    app.router.add_get("/api/v2/measurements/{msm:\\d+}/results/", results)
    app.router.add_get("/api/v2/measurements/{msm:\\d+}/results", results)
    app.router.add_get("/stream/", stream)
    app.router.add_route("*", "/_standin/{action}", control)

    async def watcher(app: web.Application) -> Any:
        task = asyncio.create_task(_watch(app, poll_s, result_interval_s))
        yield
        task.cancel()
        sockets = app[SOCKETS]
        for ws in list(sockets):
            await ws.close()

    if probes_file is not None:
        app.cleanup_ctx.append(watcher)
    return app


def default_samples() -> Path:
    """``$TOCSIN_ATLAS_SAMPLES``, else ``../shared/atlas-samples`` beside the repository (CI keeps
    shared/ next to the clone)."""
    env = os.environ.get("TOCSIN_ATLAS_SAMPLES")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "atlas-samples"


async def start(app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext) -> tuple[web.AppRunner, int]:
    """Serve ``app`` (from :func:`make_app`) in the running loop; returns the runner and the bound port."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    bound = port
    for address in runner.addresses:
        bound = int(address[1])
    return runner, bound


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m coordinator.atlas.standin", description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", required=True, help="HOST:PORT to bind (loopback or a lab namespace)")
    p.add_argument("--cert", required=True, help="TLS certificate chain (PEM)")
    p.add_argument("--key", required=True, help="TLS private key (PEM)")
    p.add_argument("--samples", type=Path, default=None, help="atlas-samples directory (default ../shared/atlas-samples)")
    p.add_argument("--probes", type=Path, default=None, help="lab probes file, re-read when it changes")
    p.add_argument("--poll-s", type=float, default=0.2, help="how often the probes file is checked")
    p.add_argument("--result-interval-s", type=float, default=60.0,
                   help="built-in ping (msm 1001) from each connected emulated probe every this many seconds")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    samples = args.samples or default_samples()
    if not samples.is_dir():
        print(f"standin: samples directory {samples} not found (give --samples)", file=sys.stderr)
        return 2
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    app = make_app(samples, args.probes, poll_s=args.poll_s, result_interval_s=args.result_interval_s)
    web.run_app(app, host=host.strip("[]"), port=int(port), ssl_context=ctx, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
