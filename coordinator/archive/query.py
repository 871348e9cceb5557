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

from coordinator.archive import formats, jsonl
from coordinator.archive.atlas_format import to_atlas
from coordinator.archive.build import embargoes
from coordinator.archive.settings import Settings

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
    for line in _jsonl_lines(conn, filters, embargo, now) if fmt == "jsonl" else _row_lines(
            conn, filters, embargo, now, fmt):
        buf.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            yield b"".join(buf)
            buf, size = [], 0
    if buf:
        yield b"".join(buf)


def _jsonl_lines(conn: sqlite3.Connection, filters: dict[str, Any], embargo: dict[str, float],
                 now: float) -> Iterator[bytes]:
    fmt = jsonl.Formatter()          # one for the whole answer: its shape cache carries over
    for rows in jsonl.fetch(conn, filters, embargo, now):
        fmt.add(rows)
        yield from fmt.lines
        fmt.lines.clear()


def _row_lines(conn: sqlite3.Connection, filters: dict[str, Any], embargo: dict[str, float], now: float,
               fmt: str) -> Iterator[bytes]:
    clause, params = jsonl.where(filters, embargo, now)
    cur = conn.cursor()
    cur.row_factory = sqlite3.Row
    try:
        cur.execute(f"SELECT * FROM measurements{clause} ORDER BY start_ts, seq", params)
        while rows := cur.fetchmany(1000):
            for row in rows:
                keys_text, _ = formats.test_keys_text(row)
                if fmt == "csv":
                    yield formats.csv_line(row, keys_text)
                    continue
                atlas = to_atlas(orjson.loads(formats.record_line(row, keys_text)))
                if atlas is not None:
                    yield orjson.dumps(atlas) + b"\n"
    finally:
        cur.close()
