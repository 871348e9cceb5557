"""The last schedule the coordinator sent, kept on disk, and when each task is next due."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from probe.agent.identity import write_json_atomic

SCHEDULE_FILE = "schedule.json"
JITTER_FRACTION = 0.1   # each run moves by up to ±10% of the task's interval


def load_schedule(state: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((state / SCHEDULE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def save_schedule(state: Path, doc: dict[str, Any]) -> None:
    write_json_atomic(state / SCHEDULE_FILE, doc)


class Timetable:
    """Next due time of every task; new tasks start at a stable offset within their interval.

    The offset is a hash of the probe's id (``salt``) and the task's id: stable for one probe (a
    restart keeps its rhythm), different from probe to probe.  All probes of a campaign share its
    task ids, so an offset from the task id alone ran every probe's test of a target in the same
    second: a burst on the target and the coordinator each interval, and a fault that began just
    after that second was seen by no probe for a whole interval."""

    def __init__(self, rng: random.Random | None = None, salt: str = ""):
        self.tasks: dict[str, dict[str, Any]] = {}
        self.due: dict[str, float] = {}
        self.rng = rng or random.Random()
        self.salt = salt

    def update(self, tasks: list[dict[str, Any]], now: float) -> None:
        fresh = {t["task_id"]: t for t in tasks}
        for tid in list(self.due):
            if tid not in fresh:
                del self.due[tid]
        for tid, task in fresh.items():
            if tid not in self.due:
                interval = float(task["interval_s"])
                phase = int(hashlib.sha256(f"{self.salt}/{tid}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
                self.due[tid] = now + phase * interval
        self.tasks = fresh

    def shortest_interval_s(self) -> float | None:
        """The shortest interval of any task (None with no tasks)."""
        return min((float(t["interval_s"]) for t in self.tasks.values()), default=None)

    def take_due(self, now: float, server_now: float) -> list[dict[str, Any]]:
        """Tasks due at ``now`` (inside their campaign window, judged on the coordinator's clock)."""
        out = []
        for tid, due in self.due.items():
            if due > now:
                continue
            task = self.tasks[tid]
            interval = float(task["interval_s"])
            self.due[tid] = max(due + interval, now) + self.rng.uniform(-JITTER_FRACTION, JITTER_FRACTION) * interval
            start, end = task.get("start_ts"), task.get("end_ts")
            if (start is not None and server_now < start) or (end is not None and server_now >= end):
                continue
            out.append(task)
        return out

    def next_due(self) -> float | None:
        return min(self.due.values()) if self.due else None
