"""Atom feeds of event state changes: ``/feeds/all.atom`` and one per country ``/feeds/{CC}.atom``."""

from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET
from typing import Any

from coordinator.archive.formats import utc_iso

ATOM_NS = "http://www.w3.org/2005/Atom"


def transitions(conn: sqlite3.Connection, cc: str | None, limit: int) -> list[dict[str, Any]]:
    sql = ("SELECT t.seq, t.event_id, t.state, t.at_ts, t.recorded_ts, t.payload, e.kind, e.scope, e.scope_type, e.cc,"
           " e.confidence FROM event_transitions t LEFT JOIN events e ON e.event_id = t.event_id")
    params: list[Any] = []
    if cc is not None:
        sql += " WHERE e.cc = ?"
        params.append(cc)
    sql += " ORDER BY t.seq DESC LIMIT ?"
    params.append(limit)
    return [dict(zip(("seq", "event_id", "state", "at_ts", "recorded_ts", "payload", "kind", "scope", "scope_type",
                      "cc", "confidence"), row, strict=True)) for row in conn.execute(sql, params)]


def title(t: dict[str, Any]) -> str:
    payload = json.loads(t["payload"])
    kind = t["kind"] or payload.get("kind", "event")
    scope = t["scope"] or payload.get("scope", "?")
    return f"{kind.replace('_', ' ')} {t['state']}: {scope}"


def render(rows: list[dict[str, Any]], *, feed_id: str, feed_title: str, base_url: str, self_url: str) -> bytes:
    ET.register_namespace("", ATOM_NS)
    feed = ET.Element(f"{{{ATOM_NS}}}feed")

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
        if text is not None:
            el.text = text
        return el

    sub(feed, "id", feed_id)
    sub(feed, "title", feed_title)
    sub(feed, "updated", utc_iso(rows[0]["recorded_ts"]) if rows else "1970-01-01T00:00:00Z")
    sub(feed, "link", rel="self", href=self_url)
    sub(sub(feed, "author"), "name", "Tocsin coordinator")
    for t in rows:
        entry = sub(feed, "entry")
        sub(entry, "id", f"{feed_id}:transition:{t['seq']}")
        sub(entry, "title", title(t))
        sub(entry, "updated", utc_iso(t["recorded_ts"]))
        sub(entry, "published", utc_iso(t["at_ts"]))
        sub(entry, "link", rel="alternate", href=f"{base_url}/event/{t['event_id']}")
        conf = "" if t["confidence"] is None else f", confidence {t['confidence']:.2f}"
        sub(entry, "summary", f"{title(t)} at {utc_iso(t['at_ts'])} (measurement time){conf}. Event {t['event_id']}.")
        sub(entry, "category", term=t["state"])
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(feed, encoding="utf-8")
