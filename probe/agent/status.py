"""What ``python -m probe status`` shows: outbox depth, since when, last upload and its outcome."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from probe.agent.identity import IDENTITY_FILE, write_json_atomic
from probe.agent.outbox import Outbox

STATUS_FILE = "status.json"
OUTBOX_FILE = "outbox.db"
STATUS_KEYS = ("pid", "started_ts", "last_poll_ts", "last_poll_outcome", "last_upload_ts", "last_upload_outcome",
               "last_upload_accepted", "last_upload_rejected", "clock_offset_s", "endpoint", "tests_run",
               "tests_failed", "tests_could_not_run", "dropped_total", "tasks")


def write_status(state: Path, status: dict[str, Any]) -> None:
    write_json_atomic(state / STATUS_FILE, status)


def read_status(state: Path) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    try:
        doc.update(json.loads((state / STATUS_FILE).read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        pass
    try:
        ident = json.loads((state / IDENTITY_FILE).read_text())
        doc["probe_id"] = ident["probe_id"]
        doc["endpoints"] = ident["endpoints"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        doc["probe_id"] = None
    if (state / OUTBOX_FILE).exists():
        box = Outbox(state / OUTBOX_FILE)
        try:
            doc.update(box.stats())
        finally:
            box.close()
    return doc


def _when(ts: Any) -> str:
    if not isinstance(ts, (int, float)):
        return "never"
    ago = time.time() - ts
    return f"{datetime.fromtimestamp(ts, UTC).strftime('%Y-%m-%d %H:%M:%S')}Z ({ago:.0f} s ago)"


def render(doc: dict[str, Any]) -> str:
    lines = [
        f"probe id:        {doc.get('probe_id') or 'not registered'}",
        f"buffered:        {doc.get('buffered', 0)} results ({doc.get('buffered_bytes', 0)} bytes)"
        + (f" since {_when(doc.get('buffered_since_ts'))}" if doc.get("buffered") else ""),
        f"last upload:     {_when(doc.get('last_upload_ts'))} - {doc.get('last_upload_outcome', 'none yet')}",
        f"last poll:       {_when(doc.get('last_poll_ts'))} - {doc.get('last_poll_outcome', 'none yet')}",
        f"tests run:       {doc.get('tests_run', 0)} (failed {doc.get('tests_failed', 0)}, "
        f"could not run {doc.get('tests_could_not_run', 0)})",
        f"rejected:        {doc.get('rejected', 0)} records kept aside with the coordinator's reason",
        f"dropped (quota): {doc.get('dropped_total', 0)} results; drop reports pending: {doc.get('pending_drop_reports', 0)}",
        f"clock offset:    {doc.get('clock_offset_s', 0.0):+.1f} s",
    ]
    return "\n".join(lines)
