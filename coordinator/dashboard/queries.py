"""What the dashboard shows, read from the store (functions of a read-only connection)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

from coordinator.dashboard import rollup

SEVERITY = {"blackout": 5, "domestic_only": 4, "throttling": 3, "http_blocking": 2, "dns_tampering": 1}
EVIDENCE_SHOWN = 200


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _active_state(events: list[sqlite3.Row]) -> str:
    if not events:
        return "normal"
    worst = max(events, key=lambda e: (SEVERITY.get(e["kind"], 0), e["state"] == "confirmed"))
    return f"{worst['kind']} ({worst['state']})"


def probe_status(row: sqlite3.Row, now: float, silent_after_s: float) -> str:
    if row["retired_ts"]:
        return "retired"
    if row["last_seen_ts"] and now - row["last_seen_ts"] <= silent_after_s:
        return "connected"
    return "silent"


def countries(conn: sqlite3.Connection, now: float, silent_after_s: float) -> list[dict[str, Any]]:
    ccs = {r[0] for r in conn.execute("SELECT DISTINCT cc FROM dashboard_rollup WHERE bucket_s = 3600 AND cc != ''")}
    ccs |= {r[0] for r in conn.execute("SELECT DISTINCT cc FROM events WHERE cc IS NOT NULL")}
    ccs |= {r[0] for r in conn.execute("SELECT DISTINCT coalesce(observed_cc, declared_cc) FROM probes") if r[0]}
    out = []
    for cc in sorted(ccs):
        active = conn.execute("SELECT * FROM events WHERE cc = ? AND state != 'resolved'", (cc,)).fetchall()
        total = conn.execute("SELECT count(*) FROM events WHERE cc = ?", (cc,)).fetchone()[0]
        probes = conn.execute("SELECT * FROM probes WHERE coalesce(observed_cc, declared_cc) = ?", (cc,)).fetchall()
        lo, hi, n = conn.execute("SELECT min(bucket_ts), max(bucket_ts), sum(n) FROM dashboard_rollup "
                                 "WHERE bucket_s = 3600 AND cc = ?", (cc,)).fetchone()
        out.append({"cc": cc, "state": _active_state(active), "active_events": len(active), "events": total,
                    "probes": len(probes),
                    "connected": sum(probe_status(p, now, silent_after_s) == "connected" for p in probes),
                    "measurements": n or 0, "first": iso(lo), "last": iso(None if hi is None else hi + 3600)})
    return out


def data_range(conn: sqlite3.Connection, cc: str) -> tuple[float, float] | None:
    lo, hi = conn.execute("SELECT min(bucket_ts), max(bucket_ts) FROM dashboard_rollup WHERE bucket_s = 10 AND cc = ?",
                          (cc,)).fetchone()
    return None if lo is None else (float(lo), float(hi) + 10.0)


def events_in(conn: sqlite3.Connection, cc: str, since: float, until: float) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT * FROM events WHERE cc = ? AND start_ts < ? AND (resolved_ts IS NULL OR resolved_ts >= ?)"
                        " ORDER BY start_ts", (cc, until, since)).fetchall()
    return [{"event_id": r["event_id"], "kind": r["kind"], "state": r["state"], "scope": r["scope"],
             "scope_type": r["scope_type"], "confidence": r["confidence"], "start": iso(r["start_ts"]),
             "end": iso(r["resolved_ts"] if r["resolved_ts"] is not None else until),
             "open": r["resolved_ts"] is None, "suspected": iso(r["suspected_ts"]), "confirmed": iso(r["confirmed_ts"]),
             "restorations": [[iso(a), iso(b)] for a, b in json.loads(r["restorations"])]} for r in rows]


def timeline(conn: sqlite3.Connection, cc: str, since: float, until: float) -> dict[str, Any]:
    level = rollup.level_for(since, until)
    rows = conn.execute(
        "SELECT asn, access, bucket_ts, sum(CASE WHEN test_name != 'throughput' THEN n ELSE 0 END),"
        " sum(CASE WHEN test_name != 'throughput' THEN ok ELSE 0 END), sum(tput_n), sum(tput_sum), sum(n)"
        " FROM dashboard_rollup WHERE bucket_s = ? AND cc = ? AND bucket_ts >= ? AND bucket_ts < ?"
        " GROUP BY asn, access, bucket_ts ORDER BY asn, access, bucket_ts", (level, cc, since, until))
    series: dict[tuple[int, str], dict[str, Any]] = {}
    total = 0
    for asn, access, ts, n, ok, tput_n, tput_sum, all_n in rows:
        s = series.setdefault((asn, access), {"asn": asn, "access": access or "unknown",
                                              "label": f"AS{asn} {access or 'unknown'}", "t": [], "reach": [],
                                              "n": [], "tput_mbps": []})
        s["t"].append(iso(ts))
        s["reach"].append(round(ok / n, 4) if n else None)
        s["n"].append(n)
        s["tput_mbps"].append(round(tput_sum / tput_n / 1e6, 3) if tput_n else None)
        total += all_n
    return {"cc": cc, "bucket_s": level, "since": iso(since), "until": iso(until), "measurements": total,
            "series": list(series.values()), "events": events_in(conn, cc, since, until)}


def event_detail(conn: sqlite3.Connection, event_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM events WHERE event_id = ?", (event_id,)).fetchone()
    if row is None:
        return None
    event = dict(zip(row.keys(), tuple(row), strict=True))
    for key in ("signals", "restorations", "details"):
        event[key] = json.loads(event[key])
    event["transitions"] = [{"seq": t[0], "state": t[1], "at": iso(t[2]), "recorded": iso(t[3])} for t in conn.execute(
        "SELECT seq, state, at_ts, recorded_ts FROM event_transitions WHERE event_id = ? ORDER BY seq", (event_id,))]
    event["evidence_count"] = conn.execute("SELECT count(*) FROM event_evidence WHERE event_id = ?",
                                           (event_id,)).fetchone()[0]
    event["evidence"] = [dict(zip(("measurement_id", "test_name", "target", "probe_id", "probe_asn", "probe_access",
                                   "start_time", "success", "failure"), r, strict=True)) for r in conn.execute(
        "SELECT m.measurement_id, m.test_name, m.target, m.probe_id, m.probe_asn, m.probe_access, m.start_time,"
        " m.success, m.failure FROM event_evidence e JOIN measurements m ON m.measurement_id = e.measurement_id"
        " WHERE e.event_id = ? ORDER BY m.start_ts LIMIT ?", (event_id, EVIDENCE_SHOWN))]
    return event


def probes(conn: sqlite3.Connection, now: float, silent_after_s: float) -> list[dict[str, Any]]:
    out = []
    for r in conn.execute("SELECT * FROM probes ORDER BY probe_id"):
        out.append({"probe_id": r["probe_id"], "status": probe_status(r, now, silent_after_s),
                    "last_heard": iso(r["last_seen_ts"]), "last_upload": iso(r["last_upload_ts"]),
                    "buffered": r["buffered"], "buffered_since": iso(r["buffered_since_ts"]),
                    "cc": r["observed_cc"] or r["declared_cc"], "asn": r["observed_asn"] or r["declared_asn"],
                    "declared": f"{r['declared_cc'] or '?'} AS{r['declared_asn'] or '?'}",
                    "access": r["access"], "tags": ", ".join(json.loads(r["tags"] or "[]")), "software": r["software"]})
    return out


def campaigns(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    out = []
    for r in conn.execute("SELECT * FROM campaigns ORDER BY created_ts DESC"):
        spec = json.loads(r["spec"])
        n = conn.execute("SELECT count(*) FROM measurements WHERE campaign_id = ?", (r["campaign_id"],)).fetchone()[0]
        tests = spec.get("tests", [])
        out.append({"campaign_id": r["campaign_id"], "name": r["name"],
                    "tests": ", ".join(t if isinstance(t, str) else str(t.get("name", t)) for t in tests),
                    "interval_s": spec.get("interval_s"), "selector": json.dumps(spec.get("selector", {})),
                    "start": spec.get("start"), "end": spec.get("end"), "stopped": iso(r["stopped_ts"]),
                    "embargo_s": r["embargo_s"], "measurements": n})
    return out
