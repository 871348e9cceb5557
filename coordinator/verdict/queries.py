"""Read side of events: filtered listing and one event with its evidence and transitions."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from probe.record import time_to_epoch

EVENT_KINDS = ("blackout", "domestic_only", "throttling", "dns_tampering", "http_blocking")
EVENT_STATES = ("suspected", "confirmed", "resolved")
SCOPE_TYPES = ("country", "access", "asn", "target")
FILTERS = ("country", "asn", "kind", "state", "since", "until")


class FilterError(ValueError):
    """A filter value is invalid; the message says which and why."""


def parse_time_arg(value: str, name: str) -> float:
    """ISO 8601 UTC (``2022-01-05T10:30:00Z``, fraction optional) or epoch seconds."""
    try:
        return float(value)
    except ValueError:
        pass
    text = value if "." in value else value.replace("Z", ".0Z")
    try:
        return time_to_epoch(text)
    except ValueError as exc:
        raise FilterError(f"{name}: {value!r} is not ISO 8601 UTC like 2022-01-05T10:30:00Z or epoch seconds") from exc


def parse_filters(raw: Mapping[str, str | None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    unknown = sorted(k for k in raw if k not in FILTERS)
    if unknown:
        raise FilterError(f"unknown filter(s) {', '.join(unknown)}; known: {', '.join(FILTERS)}")
    for key, value in raw.items():
        if value is None or value == "":
            continue
        if key == "country":
            if len(value) != 2 or not value.isalpha():
                raise FilterError("country must be a two-letter ISO 3166 code")
            out[key] = value.upper()
        elif key == "asn":
            text = value.upper().removeprefix("AS")
            if not text.isdigit():
                raise FilterError("asn must be a number like 9198 or AS9198")
            out[key] = int(text)
        elif key == "kind":
            if value not in EVENT_KINDS:
                raise FilterError(f"kind must be one of {', '.join(EVENT_KINDS)}")
            out[key] = value
        elif key == "state":
            if value not in EVENT_STATES:
                raise FilterError(f"state must be one of {', '.join(EVENT_STATES)}")
            out[key] = value
        else:
            out[key] = parse_time_arg(value, key)
    return out


def _event(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    for key in ("signals", "restorations", "details"):
        d[key] = json.loads(d[key])
    return d


def list_events(conn: sqlite3.Connection, filters: dict[str, Any], limit: int = 1000) -> list[dict[str, Any]]:
    conds, params = [], []
    for key, sql in (("country", "cc = ?"), ("asn", "asn = ?"), ("kind", "kind = ?"), ("state", "state = ?"),
                     ("until", "start_ts < ?"), ("since", "(resolved_ts IS NULL OR resolved_ts >= ?)")):
        if key in filters:
            conds.append(sql)
            params.append(filters[key])
    where = (" WHERE " + " AND ".join(conds)) if conds else ""
    rows = conn.execute(f"SELECT e.*, (SELECT COUNT(*) FROM event_evidence v WHERE v.event_id = e.event_id) AS "
                        f"evidence_count FROM events e{where} ORDER BY start_ts, event_id LIMIT ?", [*params, limit])
    return [_event(r) for r in rows]


def get_event(conn: sqlite3.Connection, event_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM events WHERE event_id = ?", (event_id,)).fetchone()
    if row is None:
        return None
    ev = _event(row)
    ev["evidence"] = [r[0] for r in conn.execute(
        "SELECT measurement_id FROM event_evidence WHERE event_id = ? ORDER BY measurement_id", (event_id,))]
    ev["transitions"] = [{"seq": r[0], "state": r[1], "at_ts": r[2], "recorded_ts": r[3]} for r in conn.execute(
        "SELECT seq, state, at_ts, recorded_ts FROM event_transitions WHERE event_id = ? ORDER BY seq", (event_id,))]
    return ev
