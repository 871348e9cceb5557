"""Read side and campaign admin: measurements (streamed JSONL/CSV), probes, campaigns."""

from __future__ import annotations

import asyncio
import csv
import io
import time
import tomllib
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from coordinator import auth, campaigns
from coordinator import db as dbmod
from coordinator.api import API, cfg, error, ok, require_admin
from coordinator.app import STORE
from coordinator.store import MEASUREMENT_COLUMNS, iter_measurements, record_from_row

# Query parameter -> iter_measurements filter (docs/coordinator.md lists these).
MEASUREMENT_QUERY = ("country", "asn", "probe", "test", "target", "source", "campaign", "since", "until")
FORMATS = ("jsonl", "csv")
CHUNK_ROWS = 2000


def parse_when(text: str) -> float:
    """ISO 8601 (``2022-01-05T10:30:00Z``) or epoch seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ValueError(f"{text!r} is neither ISO 8601 nor epoch seconds") from None


def measurement_filters(query: Any) -> dict[str, Any]:
    unknown = sorted(set(query) - {*MEASUREMENT_QUERY, "format", "limit"})
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(MEASUREMENT_QUERY)}, format, limit")
    filters: dict[str, Any] = {}
    for key in MEASUREMENT_QUERY:
        if key not in query:
            continue
        value = query[key]
        if key == "asn":
            filters[key] = int(value.upper().removeprefix("AS"))
        elif key in ("since", "until"):
            filters[key] = parse_when(value)
        else:
            filters[key] = value
    return filters


async def measurements(request: web.Request) -> web.StreamResponse:
    try:
        filters = measurement_filters(request.query)
        fmt = request.query.get("format", "jsonl")
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        limit = int(request.query.get("limit", "0"))
        if limit < 0:
            raise ValueError("limit must be >= 0 (0 = no limit)")
    except ValueError as exc:
        return error(400, str(exc))
    resp = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    path = request.app[STORE].path
    conn = await asyncio.to_thread(dbmod.connect, path, readonly=True)
    try:
        rows = iter_measurements(conn, batch=CHUNK_ROWS, **filters)
        if fmt == "csv":
            await resp.write(_csv_line(MEASUREMENT_COLUMNS))
        sent = 0
        while True:
            want = CHUNK_ROWS if not limit else min(CHUNK_ROWS, limit - sent)
            chunk = await asyncio.to_thread(_take, rows, want) if want > 0 else []
            if not chunk:
                break
            if fmt == "csv":
                data = b"".join(_csv_line([row[c] for c in MEASUREMENT_COLUMNS]) for row in chunk)
            else:
                data = b"".join(orjson.dumps(record_from_row(row)) + b"\n" for row in chunk)
            sent += len(chunk)
            await resp.write(data)
    finally:
        await asyncio.to_thread(conn.close)
    await resp.write_eof()
    return resp


def _take(rows: Any, n: int) -> list[Any]:
    out = []
    for row in rows:
        out.append(row)
        if len(out) >= n:
            break
    return out


def _csv_line(values: Any) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return buf.getvalue().encode()


def _probes(conn: Any, silent_after_s: float) -> list[dict[str, Any]]:
    now = time.time()
    out = []
    for row in conn.execute("SELECT * FROM probes ORDER BY created_ts"):
        eff = auth.effective(row)
        seen = row["last_seen_ts"]
        connected = seen is not None and now - seen <= silent_after_s and row["retired_ts"] is None
        out.append({
            "probe_id": row["probe_id"], "cc": eff["cc"], "asn": eff["asn"], "access": eff["access"],
            "tags": eff["tags"], "created_ts": row["created_ts"],
            "status": "retired" if row["retired_ts"] else "connected" if connected else "silent",
            "last_seen_ts": seen, "silent_since_ts": None if connected else seen,
            "last_upload_ts": row["last_upload_ts"], "buffered": row["buffered"],
            "buffered_since_ts": row["buffered_since_ts"], "software": row["software"],
        })
    return out


async def probes(request: web.Request) -> web.Response:
    """Probe list with status; no key, no name, no declared-vs-observed detail, no address."""
    return ok({"probes": await request.app[STORE].read(_probes, cfg(request.app).silent_after_s)})


async def campaign_list(request: web.Request) -> web.Response:
    found = await request.app[STORE].read(campaigns.list_campaigns)
    return ok({"campaigns": [campaigns.summary(c) for c in found]})


async def campaign_show(request: web.Request) -> web.Response:
    cid = request.match_info["campaign_id"]
    found = [c for c in await request.app[STORE].read(campaigns.list_campaigns) if c["campaign_id"] == cid]
    if not found:
        return error(404, f"no campaign {cid}")
    return ok({**campaigns.summary(found[0]), "spec": found[0]["spec"]})


async def campaign_add(request: web.Request) -> web.Response:
    try:
        require_admin(request)
    except auth.AuthError as exc:
        return error(exc.status, str(exc))
    body = await request.read()
    try:
        if request.content_type in ("application/toml", "text/toml"):
            doc = tomllib.loads(body.decode())
        else:
            doc = orjson.loads(body)
        spec = await asyncio.to_thread(campaigns.parse_campaign, doc)
    except (orjson.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return error(400, f"body is not a campaign document: {exc}")
    except campaigns.CampaignError as exc:
        return error(422, str(exc))
    cid = await request.app[STORE].write(campaigns.add_campaign, spec)
    return ok({"campaign_id": cid}, status=201)


async def campaign_stop(request: web.Request) -> web.Response:
    try:
        require_admin(request)
    except auth.AuthError as exc:
        return error(exc.status, str(exc))
    cid = request.match_info["campaign_id"]
    if not await request.app[STORE].write(campaigns.stop_campaign, cid):
        return error(404, f"no running campaign {cid}")
    return ok({"campaign_id": cid, "state": "stopped"})


def setup(app: web.Application) -> None:
    app.router.add_get(f"{API}/measurements", measurements)
    app.router.add_get(f"{API}/probes", probes)
    app.router.add_get(f"{API}/campaigns", campaign_list)
    app.router.add_post(f"{API}/campaigns", campaign_add)
    app.router.add_get(f"{API}/campaigns/{{campaign_id}}", campaign_show)
    app.router.add_post(f"{API}/campaigns/{{campaign_id}}/stop", campaign_stop)
