"""Archives over HTTP: list, download (with Range), the signing key, and streamed queries.

Routes (docs/archives.md is tested against :data:`ROUTES`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from coordinator import db as dbmod
from coordinator.app import CONFIG, DATA_DIR, STORE
from coordinator.archive import build, manifest, query, scheduler, signing
from coordinator.archive.settings import Settings, from_config

ROUTES = {
    "GET /api/v1/archives": "list bundles (JSON)",
    "GET /api/v1/archives/key": "the coordinator's public signing key",
    "GET /api/v1/archives/query": "streamed measurements over a time range (jsonl, csv, atlas)",
    "GET /api/v1/archives/{name}": "a bundle's manifest",
    "GET /api/v1/archives/{name}/{path}": "a file of a bundle (manifest.json, manifest.json.sig or a listed file; Range supported)",
}
SETTINGS = web.AppKey("archive_settings", Settings)
log = logging.getLogger("tocsin.archive")


def _settings(request: web.Request) -> Settings:
    return request.app[SETTINGS]


def _bundle_dir(request: web.Request, name: str) -> Path:
    root = build.archive_root(request.app[DATA_DIR], _settings(request))
    if not name or name.startswith(".") or "/" in name:
        raise web.HTTPNotFound(text=f"no bundle {name!r}")
    path = root / name
    if not (path / manifest.MANIFEST).is_file():
        raise web.HTTPNotFound(text=f"no bundle {name!r}")
    return path


async def list_archives(request: web.Request) -> web.Response:
    loop = asyncio.get_running_loop()
    bundles = await loop.run_in_executor(None, build.list_bundles, request.app[DATA_DIR], _settings(request))
    return web.json_response({"archives": bundles})


async def public_key(request: web.Request) -> web.Response:
    loop = asyncio.get_running_loop()
    key = await loop.run_in_executor(None, signing.load_or_create_key, request.app[DATA_DIR])
    pub = signing.public_key_b64(key)
    return web.json_response({"algorithm": "ed25519", "public_key": pub, "key_id": signing.key_id(pub)})


async def get_manifest(request: web.Request) -> web.StreamResponse:
    path = _bundle_dir(request, request.match_info["name"]) / manifest.MANIFEST
    return web.FileResponse(path, headers={"Content-Type": "application/json"})


async def get_file(request: web.Request) -> web.StreamResponse:
    root = _bundle_dir(request, request.match_info["name"])
    rel = request.match_info["path"]
    loop = asyncio.get_running_loop()
    m = await loop.run_in_executor(None, manifest.read_manifest, root)
    allowed = {manifest.MANIFEST, manifest.SIGNATURE} | {f["path"] for f in m["files"]}
    if rel not in allowed:
        raise web.HTTPNotFound(text=f"{rel!r} is not a file of bundle {m['name']}")
    return web.FileResponse(root / rel)     # honours Range / If-Range


async def run_query(request: web.Request) -> web.StreamResponse:
    try:
        filters, fmt = query.parse_query(request.query, _settings(request))
    except query.QueryError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from exc
    loop = asyncio.get_running_loop()
    path = request.app[STORE].path
    conn = await loop.run_in_executor(None, lambda: dbmod.connect(path, readonly=True))
    resp = web.StreamResponse(headers={"Content-Type": query.QUERY_FORMATS[fmt]})
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        resp.enable_compression()
    try:
        chunks = query.stream(conn, filters, fmt, time.time())
        await resp.prepare(request)
        while True:
            chunk = await loop.run_in_executor(None, next, chunks, None)
            if chunk is None:
                break
            await resp.write(chunk)
        await resp.write_eof()
    finally:
        await loop.run_in_executor(None, conn.close)
    return resp


async def _daily_builder(app: web.Application) -> AsyncIterator[None]:
    settings, store = app[SETTINGS], app[STORE]

    async def loop() -> None:
        ev_loop = asyncio.get_running_loop()
        while True:
            try:
                await ev_loop.run_in_executor(None, lambda: scheduler.build_due(
                    app[DATA_DIR], settings, record=store.write_sync))
            except Exception:                   # logged; the next round tries again
                log.exception("daily archive build failed")
            await asyncio.sleep(settings.daily_check_s)

    task = asyncio.create_task(loop(), name="daily archives") if settings.daily_build else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def setup(app: web.Application) -> None:
    app[SETTINGS] = from_config(app.get(CONFIG))
    app.cleanup_ctx.append(_daily_builder)
    app.router.add_get("/api/v1/archives", list_archives)
    app.router.add_get("/api/v1/archives/key", public_key)
    app.router.add_get("/api/v1/archives/query", run_query)
    app.router.add_get("/api/v1/archives/{name}", get_manifest)
    app.router.add_get("/api/v1/archives/{name}/{path:.+}", get_file)

