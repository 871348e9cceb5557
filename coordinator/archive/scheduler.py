"""Automatic daily bundles: each finished UTC day with data is built once ``daily_delay_s`` after it
ends, and rebuilt when late uploads for it arrive (rows with a higher ``seq`` than at the last
build and a ``start_ts`` in that day).  Only the last ``daily_backfill_days`` days are considered.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from coordinator import db as dbmod
from coordinator.archive import build
from coordinator.archive.settings import Settings


def due_days(conn: sqlite3.Connection, settings: Settings, now: float) -> list[build.Spec]:
    """Daily bundles to build or rebuild now."""
    last_end = (now - settings.daily_delay_s) // 86400 * 86400          # end of the last finished day
    due = []
    for k in range(1, settings.daily_backfill_days + 1):
        since = last_end - k * 86400
        spec = build.daily_spec(datetime.fromtimestamp(since, UTC).date())
        row = conn.execute("SELECT built_seq, withheld_until_ts FROM archive_builds WHERE name = ?",
                           (spec.name,)).fetchone()
        if row is not None and row[1] is not None and row[1] <= now:
            due.append(spec)                # the embargo on some of its rows has ended
            continue
        if row is None:
            has = conn.execute("SELECT 1 FROM measurements WHERE start_ts >= ? AND start_ts < ? LIMIT 1",
                               (spec.since, spec.until)).fetchone()
        else:
            has = conn.execute("SELECT 1 FROM measurements WHERE seq > ? AND start_ts >= ? AND start_ts < ? LIMIT 1",
                               (row[0], spec.since, spec.until)).fetchone()
        if has:
            due.append(spec)
    return due


def record_build(conn: sqlite3.Connection, spec: build.Spec, built_seq: int, now: float,
                 withheld_until: float | None) -> None:
    conn.execute("INSERT INTO archive_builds VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                 "built_seq = excluded.built_seq, built_ts = excluded.built_ts, "
                 "withheld_until_ts = excluded.withheld_until_ts",
                 (spec.name, spec.since, spec.until, built_seq, now, withheld_until))


def build_due(data_dir: str | Path, settings: Settings, now: float | None = None,
              record: Callable[..., object] | None = None) -> list[Path]:
    """Build every due daily bundle (blocking; run it off the event loop).  Returns their folders.

    ``record(fn, *args)`` runs ``fn(conn, *args)`` on the store's writer (``Store.write_sync``); by
    default a connection of its own is used (the command line)."""
    now = time.time() if now is None else now
    path = dbmod.db_path(data_dir)
    conn = dbmod.connect(path, readonly=True)
    try:
        specs = due_days(conn, settings, now)
    finally:
        conn.close()
    built = []
    for spec in specs:
        top = _max_seq(path)
        folder = build.build(data_dir, spec, settings, now=now)
        built.append(folder)
        until = json.loads((folder / "manifest.json").read_text())["embargo"].get("withheld_until_ts")
        if record is not None:
            record(record_build, spec, top, now, until)
        else:
            writer = dbmod.connect(path)
            try:
                record_build(writer, spec, top, now, until)
            finally:
                writer.close()
    return built


def _max_seq(path: Path) -> int:
    conn = dbmod.connect(path, readonly=True)
    try:
        return int(conn.execute("SELECT coalesce(max(seq), 0) FROM measurements").fetchone()[0])
    finally:
        conn.close()
