"""Automatic daily bundles: built once a day is over, rebuilt on late uploads and when an embargo ends."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from coordinator import db as dbmod
from coordinator.archive import manifest, scheduler, synthetic
from coordinator.archive.settings import Settings
from coordinator.store import insert_measurements
from probe.record import make_record

DAY = synthetic.T0          # 2022-01-05 00:00 UTC


def names(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_daily_builds_late_uploads_and_embargo(tmp_path: Path) -> None:
    conn = dbmod.open_writer(tmp_path)
    synthetic.fill(conn, 2, 2.0)
    synthetic.fill(conn, 1, 1.0, campaign_id="quiet", seed=3)
    synthetic.add_campaign(conn, "quiet", embargo_s=2 * 86400)
    settings = Settings(formats=["jsonl"], daily_delay_s=3600, daily_backfill_days=3)
    # the day is not over (plus delay) yet: nothing to build
    assert scheduler.build_due(tmp_path, settings, now=DAY + 86400 + 1800) == []
    built = scheduler.build_due(tmp_path, settings, now=DAY + 86400 + 7200)
    assert names(built) == ["daily-2022-01-05"]
    m = manifest.read_manifest(built[0])
    assert m["counts"]["measurements"] == 2 * 120 * 6 and m["embargo"]["withheld"] == {"quiet": 360}
    assert scheduler.build_due(tmp_path, settings, now=DAY + 86400 + 9000) == []      # up to date
    late = make_record(test_name="tcp", test_version="1.0.0", target="198.18.0.1:443",
                       start_time=datetime.fromtimestamp(DAY + 600, UTC), runtime_s=0.1, success=False,
                       failure="timeout", test_keys={}, probe_id="late-probe", probe_cc="KZ")
    insert_measurements(conn, [late])
    rebuilt = scheduler.build_due(tmp_path, settings, now=DAY + 86400 + 9600)
    assert names(rebuilt) == ["daily-2022-01-05"]
    assert manifest.read_manifest(rebuilt[0])["counts"]["measurements"] == 2 * 120 * 6 + 1
    # the embargo ends 2 days after the last quiet measurement: then the day is rebuilt with them
    assert scheduler.build_due(tmp_path, settings, now=DAY + 2 * 86400) == []
    final = scheduler.build_due(tmp_path, settings, now=DAY + 3 * 86400 + 7200)
    assert names(final) == ["daily-2022-01-05"]
    m = manifest.read_manifest(final[0])
    assert m["counts"]["measurements"] == 2 * 120 * 6 + 1 + 360 and m["embargo"]["withheld"] == {}
    assert manifest.verify_bundle(final[0]).ok
    rows = conn.execute("SELECT name, withheld_until_ts FROM archive_builds").fetchall()
    assert [tuple(r) for r in rows] == [("daily-2022-01-05", None)]
    assert json.loads((final[0] / "manifest.json").read_text())["kind"] == "daily"
