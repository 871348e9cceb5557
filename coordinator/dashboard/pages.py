"""HTML pages of the dashboard (server-rendered tables; charts drawn by static/dashboard.js)."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import quote

BASE = Template((Path(__file__).parent / "templates" / "base.html").read_text())


def esc(value: Any) -> str:
    return "" if value is None else html.escape(str(value))


def page(title: str, body: str, scripts: str = "") -> str:
    return BASE.substitute(title=esc(title), body=body, scripts=scripts)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], table_id: str) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def link(href: str, text: Any) -> str:
    return f'<a href="{esc(href)}">{esc(text)}</a>'


def overview(countries: list[dict[str, Any]]) -> str:
    rows = [[link(f"/country/{c['cc']}", c["cc"]),
             f'<span class="state-{"normal" if c["state"] == "normal" else "alert"}">{esc(c["state"])}</span>',
             esc(c["active_events"]), esc(c["events"]), f"{c['connected']} / {c['probes']}", esc(c["measurements"]),
             esc(c["first"]), esc(c["last"])] for c in countries]
    body = table(["country", "state now", "active events", "events", "probes connected", "measurements",
                  "first data", "last data"], rows, "countries")
    if not countries:
        body += '<p class="note">No data yet.</p>'
    return page("Watched countries", body)


def country(cc: str, data_url: str, events: list[dict[str, Any]], urls: dict[str, str]) -> str:
    """The timeline page.  The inline script starts fetching the timeline at once, in parallel with the
    download and compilation of plotly.js; both scripts are ``defer`` so the tables paint first."""
    rows = [[link(f"/event/{quote(e['event_id'])}", e["event_id"]), esc(e["kind"]), esc(e["state"]), esc(e["scope"]),
             esc(e["start"]), esc(None if e["open"] else e["end"]),
             esc("; ".join(f"{a} to {b}" for a, b in e["restorations"]))] for e in events]
    body = ('<p id="summary" class="note">loading...</p>'
            '<h2>Reachability by ASN and access type</h2><div id="reach" class="chart"></div>'
            '<h2>Throughput by ASN and access type</h2><div id="tput" class="chart"></div>'
            '<p class="note">Shaded: events (colour by kind); green hatched: restoration intervals.</p>'
            "<h2>Events</h2>" + table(["event", "kind", "state", "scope", "start (UTC)", "resolved", "restorations"],
                                      rows, "events")
            + f'<p>{link(f"/feeds/{cc}.atom", "Atom feed")}</p>')
    scripts = (f'<script data-timeline="{esc(data_url)}">window.tocsinTimeline = '
               "fetch(document.currentScript.dataset.timeline); window.tocsinTimeline.catch(() => {});</script>"
               f'<script defer src="{esc(urls["plotly.min.js"])}"></script>'
               f'<script defer src="{esc(urls["dashboard.js"])}"></script>')
    return page(f"{cc}: timeline", body, scripts)


def event(ev: dict[str, Any]) -> str:
    facts = [("kind", ev["kind"]), ("scope", f"{ev['scope_type']} {ev['scope']}"), ("state", ev["state"]),
             ("confidence", f"{ev['confidence']:.2f}"), ("signals", ", ".join(ev["signals"])),
             ("detector version", ev["detector_version"]), ("details", json.dumps(ev["details"]))]
    body = table(["", ""], [[esc(k), esc(v)] for k, v in facts], "facts")
    body += "<h2>State changes (measurement time, UTC)</h2>" + table(
        ["seq", "state", "at", "recorded"], [[esc(t["seq"]), esc(t["state"]), esc(t["at"]), esc(t["recorded"])]
                                             for t in ev["transitions"]], "transitions")
    from coordinator.dashboard.queries import iso
    body += "<h2>Restoration intervals</h2>" + table(
        ["from", "to"], [[esc(iso(a)), esc(iso(b))] for a, b in ev["restorations"]], "restorations")
    shown = len(ev["evidence"])
    body += f"<h2>Evidence ({ev['evidence_count']} measurements, first {shown} shown)</h2>" + table(
        ["measurement", "test", "target", "probe", "ASN", "access", "start (UTC)", "success", "failure"],
        [[esc(m["measurement_id"]), esc(m["test_name"]), esc(m["target"]), esc(m["probe_id"]), esc(m["probe_asn"]),
          esc(m["probe_access"]), esc(m["start_time"]), "yes" if m["success"] else "no", esc(m["failure"])]
         for m in ev["evidence"]], "evidence")
    if ev.get("cc"):
        body += f"<p>{link('/country/' + ev['cc'], 'back to ' + ev['cc'])}</p>"
    return page(f"Event {ev['event_id']}", body)


def probes(items: list[dict[str, Any]]) -> str:
    rows = [[esc(p["probe_id"]), f'<span class="status-{esc(p["status"])}">{esc(p["status"])}</span>',
             esc(p["last_heard"]), esc(p["last_upload"]), esc(p["buffered"]), esc(p["buffered_since"]), esc(p["cc"]),
             esc(p["asn"]), esc(p["declared"]), esc(p["access"]), esc(p["tags"]), esc(p["software"])] for p in items]
    return page("Probes", table(["probe", "status", "last heard (UTC)", "last upload", "buffered", "buffered since",
                                 "country", "ASN", "declared", "access", "tags", "software"], rows, "probes"))


def campaigns(items: list[dict[str, Any]]) -> str:
    rows = [[esc(c["campaign_id"]), esc(c["name"]), esc(c["tests"]), esc(c["interval_s"]), esc(c["selector"]),
             esc(c["start"]), esc(c["end"]), esc(c["stopped"]), esc(c["embargo_s"]), esc(c["measurements"])]
            for c in items]
    return page("Campaigns", table(["campaign", "name", "tests", "interval (s)", "probes selected", "start", "end",
                                    "stopped", "embargo (s)", "measurements"], rows, "campaigns"))
