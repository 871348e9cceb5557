"""Read the verdict engine's output from the coordinator's SQLite file (read-only).

The ``events`` and ``event_transitions`` tables are the pinned contract (migration 0001), so the
lab needs no running verdict code to read them; ``event_transitions.recorded_ts`` (wall clock when
written) tells when a verdict was actually reached, ``at_ts`` the measurement time it refers to.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

DB_FILENAME = "tocsin.db"


def _connect(data_dir: Path) -> sqlite3.Connection | None:
    path = data_dir / DB_FILENAME
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


def read_events(data_dir: Path) -> list[dict[str, Any]]:
    """Every event with its transitions (list of {state, at_ts, recorded_ts}), oldest first."""
    conn = _connect(data_dir)
    if conn is None:
        return []
    try:
        events = [dict(r) for r in conn.execute("SELECT * FROM events ORDER BY start_ts")]
        trans: dict[str, list[dict[str, Any]]] = {}
        for r in conn.execute("SELECT event_id, state, at_ts, recorded_ts, payload FROM event_transitions ORDER BY seq"):
            try:
                payload = json.loads(r["payload"])
            except (TypeError, ValueError):
                payload = {}
            # the kind and scope at that moment: an event may be re-classified as data arrives
            trans.setdefault(r["event_id"], []).append({"state": r["state"], "at_ts": r["at_ts"],
                                                        "recorded_ts": r["recorded_ts"], "kind": payload.get("kind"),
                                                        "scope": payload.get("scope")})
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()
    for e in events:
        for key in ("signals", "restorations", "details"):
            try:
                e[key] = json.loads(e[key]) if isinstance(e.get(key), str) else e.get(key)
            except ValueError:
                pass
        e["transitions"] = trans.get(e["event_id"], [])
    return events


def new_transitions(data_dir: Path, after_seq: int) -> list[dict[str, Any]]:
    """Transitions with ``seq`` > after_seq, with their event's kind and scope."""
    conn = _connect(data_dir)
    if conn is None:
        return []
    try:
        rows = conn.execute(
            "SELECT t.seq, t.event_id, t.state, t.at_ts, t.recorded_ts, t.payload FROM event_transitions t "
            "WHERE t.seq > ? ORDER BY t.seq", (after_seq,)).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()
    out = []
    for r in rows:
        try:
            payload = json.loads(r["payload"])
        except ValueError:
            payload = {}
        out.append({**dict(r), "kind": payload.get("kind"), "scope": payload.get("scope"),
                    "scope_type": payload.get("scope_type"), "confidence": payload.get("confidence"),
                    "signals": payload.get("signals")})
    return out


def format_transition(t: dict[str, Any], t0: float) -> str:
    signals = t.get("signals")
    sig = ",".join(signals) if isinstance(signals, list) else ""
    conf = t.get("confidence")
    conf_text = f" confidence {conf:.2f}" if isinstance(conf, (int, float)) else ""
    return (f"[{t['recorded_ts'] - t0:+7.1f}s] {t['state']:<9} {t.get('kind') or '?':<14} "
            f"{t.get('scope_type') or ''} {t.get('scope') or ''}{conf_text} {sig}".rstrip())
