"""Streamed queries over any time range: JSONL, CSV or Atlas format, never the whole range in memory.

Parameters (HTTP query string of ``GET /api/v1/archives/query``): ``since`` and ``until`` (ISO 8601
or epoch seconds; required), ``country``, ``asn``, ``access``, ``probe``, ``test``, ``target``,
``source``, ``campaign`` and ``format`` (``jsonl`` default, ``csv``, ``atlas``).  Embargoed
measurements are left out exactly as in bundles.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from coordinator.archive import formats
from coordinator.archive.atlas_format import to_atlas
from coordinator.archive.build import embargoes
from coordinator.archive.settings import Settings
from coordinator.store import iter_measurements

QUERY_FILTERS = ("country", "asn", "access", "probe", "test", "target", "source", "campaign")
QUERY_FORMATS = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8", "atlas": "application/x-ndjson"}
CHUNK_BYTES = 256 * 1024


class QueryError(ValueError):
    """A query parameter is missing or malformed; the text is the 400 answer."""


def parse_time_param(name: str, text: str | None) -> float:
    if not text:
        raise QueryError(f"{name} is required (ISO 8601 like 2022-01-05T00:00:00Z, or epoch seconds)")
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise QueryError(f"{name}={text!r} is not ISO 8601 or epoch seconds") from exc
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def parse_query(params: Mapping[str, str], settings: Settings) -> tuple[dict[str, Any], str]:
    unknown = sorted(set(params) - {"since", "until", "format", *QUERY_FILTERS})
    if unknown:
        raise QueryError(f"unknown parameter(s): {', '.join(unknown)}")
    since = parse_time_param("since", params.get("since"))
    until = parse_time_param("until", params.get("until"))
    if until <= since:
        raise QueryError("until must be after since")
    if until - since > settings.query_max_days * 86400:
        raise QueryError(f"the range is wider than {settings.query_max_days:g} days; split it")
    fmt = params.get("format", "jsonl")
    if fmt not in QUERY_FORMATS:
        raise QueryError(f"format must be one of {', '.join(QUERY_FORMATS)}")
    filters: dict[str, Any] = {"since": since, "until": until}
    for key in QUERY_FILTERS:
        if key in params:
            value: Any = params[key]
            if key == "asn":
                try:
                    value = int(str(value).upper().removeprefix("AS"))
                except ValueError as exc:
                    raise QueryError(f"asn={value!r} is not a number") from exc
            filters[key] = value
    return filters, fmt


def stream(conn: sqlite3.Connection, filters: dict[str, Any], fmt: str, now: float) -> Iterator[bytes]:
    """Chunks of about :data:`CHUNK_BYTES` of the answer, in ``start_time`` order."""
    embargo = embargoes(conn)
    buf: list[bytes] = [formats.csv_header()] if fmt == "csv" else []
    size = 0
    for row in iter_measurements(conn, **filters):
        cid = row["campaign_id"]
        if cid in embargo and row["start_ts"] + embargo[cid] > now:
            continue
        keys_text, _ = formats.test_keys_text(row)
        if fmt == "csv":
            line = formats.csv_line(row, keys_text)
        elif fmt == "jsonl":
            line = formats.record_line(row, keys_text)
        else:
            atlas = to_atlas(orjson.loads(formats.record_line(row, keys_text)))
            if atlas is None:
                continue
            line = orjson.dumps(atlas) + b"\n"
        buf.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            yield b"".join(buf)
            buf, size = [], 0
    if buf:
        yield b"".join(buf)
