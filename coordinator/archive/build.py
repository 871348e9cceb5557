"""Building bundles: streaming passes over the measurements of a range, then events and probes.

Bundles are named ``daily-YYYY-MM-DD`` (measurements whose ``start_time`` falls on that UTC day),
``campaign-<id>`` (one campaign's measurements) or ``range-<since>-<until>``.  A bundle is built in
a hidden temporary folder and renamed into place, so readers never see half a bundle; building a
name again replaces it (late uploads make a day's bundle grow).

Embargo: a measurement of a campaign with ``embargo_s > 0`` is withheld until ``start_ts +
embargo_s <= now``; the manifest counts what was withheld and says until when.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from coordinator import db as dbmod
from coordinator.archive import formats, jsonl, manifest, parallel, signing
from coordinator.archive.settings import Settings
from probe.record import FIELD_NAMES, SCHEMA_VERSION

# Probe columns that are public; anything else in the probes table (keys, names) stays private.
PUBLIC_PROBE_COLUMNS = ("probe_id", "declared_cc", "declared_asn", "observed_cc", "observed_asn", "access",
                        "tags", "created_ts", "last_seen_ts", "retired_ts", "software")
EVENT_JSON_COLUMNS = ("signals", "restorations", "details")


class BuildError(ValueError):
    """The bundle cannot be built as asked (unknown campaign, empty range, bad name)."""


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str                   # daily, campaign, range
    since: float
    until: float
    campaign_id: str | None = None


def daily_spec(day: date) -> Spec:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    return Spec(f"daily-{day.isoformat()}", "daily", start, start + 86400.0)


def range_spec(since: float, until: float) -> Spec:
    if until <= since:
        raise BuildError("until must be after since")
    fmt = "%Y%m%dT%H%M%SZ"
    a, b = (datetime.fromtimestamp(t, UTC).strftime(fmt) for t in (since, until))
    return Spec(f"range-{a}-{b}", "range", since, until)


def campaign_spec(conn: sqlite3.Connection, campaign_id: str) -> Spec:
    if conn.execute("SELECT 1 FROM campaigns WHERE campaign_id = ?", (campaign_id,)).fetchone() is None:
        raise BuildError(f"no campaign {campaign_id!r}")
    lo, hi = conn.execute("SELECT min(start_ts), max(start_ts) FROM measurements WHERE campaign_id = ?",
                          (campaign_id,)).fetchone()
    if lo is None:
        lo = hi = 0.0
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in campaign_id)
    return Spec(f"campaign-{safe}", "campaign", float(lo), float(hi) + 1e-6, campaign_id)


def archive_root(data_dir: str | Path, settings: Settings) -> Path:
    path = Path(settings.dir)
    return path if path.is_absolute() else Path(data_dir) / path


def embargoes(conn: sqlite3.Connection) -> dict[str, float]:
    return {r[0]: float(r[1]) for r in conn.execute("SELECT campaign_id, embargo_s FROM campaigns WHERE embargo_s > 0")}


def _detector_info(versions: list[str]) -> dict[str, Any]:
    """Detector version and thresholds: the thresholds are filled in by :func:`build`, which knows
    the data directory whose configuration the verdict engine runs with."""
    info: dict[str, Any] = {"versions_in_events": versions, "version": None, "thresholds": None}
    try:
        settings_mod = importlib.import_module("coordinator.verdict.settings")
    except ImportError:
        return info
    info["version"] = getattr(settings_mod, "DETECTOR_VERSION", None)
    return info


def _verdict_thresholds(data_dir: str | Path) -> dict[str, Any] | None:
    """The ``[verdict]`` settings in force for ``data_dir`` (its coordinator.toml and environment)."""
    from coordinator.config import load_config

    try:
        section = load_config(data_dir=data_dir).section("verdict")
    except KeyError:
        return None
    result: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(section), default=str))
    return result


def _atlas_table_ids(conn: sqlite3.Connection) -> set[int]:
    cols = [r[1] for r in conn.execute("PRAGMA table_info(atlas_created_measurements)")]
    col = next((c for c in ("msm_id", "atlas_msm_id", "measurement_id") if c in cols), None)
    if col is None:
        return set()
    return {int(r[0]) for r in conn.execute(f"SELECT {col} FROM atlas_created_measurements") if r[0] is not None}


def _write_events(conn: sqlite3.Connection, root: Path, spec: Spec) -> tuple[int, int, list[str]]:
    path = root / "events.jsonl"
    n = links = 0
    versions: set[str] = set()
    rows = conn.execute("SELECT * FROM events WHERE start_ts < ? AND (resolved_ts IS NULL OR resolved_ts >= ?) "
                        "ORDER BY start_ts, event_id", (spec.until, spec.since)).fetchall()
    with open(path, "wb") as fh:
        for row in rows:
            event = dict(zip(row.keys(), tuple(row), strict=True))
            for key in EVENT_JSON_COLUMNS:
                event[key] = json.loads(event[key])
            event["evidence"] = [r[0] for r in conn.execute(
                "SELECT measurement_id FROM event_evidence WHERE event_id = ? ORDER BY measurement_id", (row["event_id"],))]
            event["transitions"] = [{"seq": r[0], "state": r[1], "at_ts": r[2]} for r in conn.execute(
                "SELECT seq, state, at_ts FROM event_transitions WHERE event_id = ? ORDER BY seq", (row["event_id"],))]
            links += len(event["evidence"])
            versions.add(row["detector_version"])
            fh.write(orjson.dumps(event) + b"\n")
            n += 1
    return n, links, sorted(versions)


def _write_probes(conn: sqlite3.Connection, root: Path, probe_ids: set[str]) -> int:
    cols = [c for c in PUBLIC_PROBE_COLUMNS if c in {r[1] for r in conn.execute("PRAGMA table_info(probes)")}]
    n = 0
    with open(root / "probes.jsonl", "wb") as fh:
        for pid in sorted(probe_ids):
            row = conn.execute(f"SELECT {', '.join(cols)} FROM probes WHERE probe_id = ?", (pid,)).fetchone()
            if row is None:
                continue
            probe = dict(zip(cols, row, strict=True))
            if "tags" in probe:
                probe["tags"] = json.loads(probe["tags"] or "[]")
            fh.write(orjson.dumps(probe) + b"\n")
            n += 1
    return n


def build(data_dir: str | Path, spec: Spec, settings: Settings | None = None, *,
          now: float | None = None, formats_: list[str] | None = None) -> Path:
    """Build (or rebuild) one bundle; returns its folder."""
    settings = settings or Settings()
    now = time.time() if now is None else now
    fmts = formats_ or settings.formats
    out_root = archive_root(data_dir, settings)
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = out_root / f".tmp-{spec.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    conn = dbmod.connect(dbmod.db_path(data_dir), readonly=True)
    try:
        conn.execute("BEGIN")            # one snapshot for measurements, events and probes
        body = _build_into(conn, dbmod.db_path(data_dir), tmp, spec, settings, fmts, now)
        conn.execute("COMMIT")
        body["detector"]["thresholds"] = _verdict_thresholds(data_dir)
        manifest.write_signed(tmp, body, signing.load_or_create_key(data_dir))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        conn.close()
    final = out_root / spec.name
    if final.exists():
        old = out_root / f".old-{spec.name}-{os.getpid()}"
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
    return final


def _other_formats(conn: sqlite3.Connection, root: Path, settings: Settings, fmts: list[str],
                   filters: dict[str, Any], embargo: dict[str, float], now: float) -> list[dict[str, Any]]:
    """Parquet, CSV and Atlas files: a second pass over the same published rows (same snapshot and
    WHERE clause as the JSONL pass), one row at a time into each format's sink."""
    sinks: dict[tuple[str, str], formats._Sink | None] = {}
    clause, params = jsonl.where(filters, embargo, now)
    try:
        for row in conn.execute(f"SELECT * FROM measurements{clause} ORDER BY start_ts, seq", params):
            keys_text, _ = formats.test_keys_text(row)
            test = row["test_name"]
            for fmt in fmts:
                key = (fmt, test)
                if key in sinks:
                    sink = sinks[key]
                else:
                    sink = sinks[key] = formats.open_sink(fmt, root, test, gzip_level=settings.gzip_level,
                                                          parquet_batch_rows=settings.parquet_batch_rows)
                if sink is not None:
                    sink.write(row, keys_text)
    finally:
        for sink in sinks.values():
            if sink is not None:
                sink.close()
    return [manifest.file_entry(root, formats.sink_path(fmt, test), fmt, sink.rows)
            for (fmt, test), sink in sorted(sinks.items()) if sink is not None]


def _build_into(conn: sqlite3.Connection, db_path: Path, root: Path, spec: Spec, settings: Settings,
                fmts: list[str], now: float) -> dict[str, Any]:
    embargo = embargoes(conn)
    filters: dict[str, Any] = {"since": spec.since, "until": spec.until, "campaign": spec.campaign_id}
    run = parallel.export(conn, db_path, root if "jsonl" in fmts else None, filters, embargo, now,
                          settings.gzip_level, settings.export_workers)
    files = [manifest.file_entry(root, formats.sink_path("jsonl", test), "jsonl", run.by_test[test])
             for test in (sorted(run.by_test) if "jsonl" in fmts else [])]
    other = [f for f in fmts if f != "jsonl"]
    if other:
        files += _other_formats(conn, root, settings, other, filters, embargo, now)
    files.sort(key=lambda f: (f["format"], f["path"]))
    withheld, withheld_until = jsonl.withheld(conn, filters, embargo, now)
    atlas_ids = _atlas_table_ids(conn) | run.atlas_ids
    by_test, probes, scrubbed, first, last = run.by_test, run.probes, run.scrubbed, run.first, run.last
    n_events, n_links, versions = _write_events(conn, root, spec)
    files.append(manifest.file_entry(root, "events.jsonl", "events", n_events))
    n_probes = _write_probes(conn, root, probes)
    files.append(manifest.file_entry(root, "probes.jsonl", "probes", n_probes))
    iso = formats.utc_iso
    return {
        "format": "tocsin-archive", "format_version": manifest.ARCHIVE_FORMAT_VERSION,
        "name": spec.name, "kind": spec.kind, "campaign_id": spec.campaign_id,
        "schema_version": SCHEMA_VERSION, "record_fields": list(FIELD_NAMES),
        "parquet_columns": list(formats.PARQUET_COLUMNS),
        "time_range": {"since": iso(spec.since), "until": iso(spec.until),
                       "first_start_time": None if first is None else iso(first),
                       "last_start_time": None if last is None else iso(last)},
        "built_at": iso(now),
        "counts": {"measurements": sum(by_test.values()), "by_test": dict(sorted(by_test.items())),
                   "events": n_events, "evidence_links": n_links, "probes": n_probes,
                   "scrubbed_private_keys": scrubbed},
        "embargo": {"campaigns": {c: e for c, e in sorted(embargo.items())},
                    "withheld": dict(sorted(withheld.items())), "evaluated_at": iso(now),
                    "withheld_until_ts": withheld_until},
        "detector": _detector_info(versions),
        "atlas_measurement_ids": sorted(atlas_ids),
        "files": files,
    }


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise BuildError(f"--day {text!r} is not YYYY-MM-DD") from exc


def yesterday(now: float | None = None) -> date:
    return (datetime.fromtimestamp(time.time() if now is None else now, UTC) - timedelta(days=1)).date()


def list_bundles(data_dir: str | Path, settings: Settings | None = None) -> list[dict[str, Any]]:
    root = archive_root(data_dir, settings or Settings())
    out = []
    for path in sorted(root.glob("*/" + manifest.MANIFEST)):
        if path.parent.name.startswith("."):
            continue
        m = manifest.read_manifest(path.parent)
        out.append({"name": m["name"], "kind": m["kind"], "campaign_id": m.get("campaign_id"),
                    "time_range": m["time_range"], "built_at": m["built_at"], "counts": m["counts"],
                    "bytes": sum(f["bytes"] for f in m["files"]), "files": len(m["files"]),
                    "key_id": m["signing_key"]["key_id"]})
    return out
