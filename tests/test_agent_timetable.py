"""The agent's timetable and upload pacing (pure parts of probe/agent/schedule.py and service.py)."""

from __future__ import annotations

import random
from itertools import pairwise

from probe.agent.schedule import JITTER_FRACTION, Timetable
from probe.agent.service import UPLOAD_LINGER_S, upload_linger_s


def task(tid: str, interval: float, **kw: float) -> dict[str, object]:
    return {"task_id": tid, "interval_s": interval, **kw}


def test_tasks_start_at_a_stable_phase_and_repeat_with_bounded_jitter() -> None:
    tt = Timetable(random.Random(1))
    tt.update([task("a", 10.0), task("b", 60.0)], now=1000.0)
    first = dict(tt.due)
    assert all(1000.0 <= d < 1000.0 + iv for d, iv in zip(first.values(), (10.0, 60.0), strict=True))
    again = Timetable(random.Random(2))
    again.update([task("a", 10.0), task("b", 60.0)], now=1000.0)
    assert again.due == first                                  # the phase comes from the task id, not chance
    ran = tt.take_due(first["a"], server_now=first["a"])
    assert [t["task_id"] for t in ran] == ["a"]
    assert abs(tt.due["a"] - (first["a"] + 10.0)) <= JITTER_FRACTION * 10.0 + 1e-9
    tt.update([task("b", 60.0)], now=1001.0)                   # a task the coordinator dropped is forgotten
    assert set(tt.due) == {"b"} and tt.shortest_interval_s() == 60.0


def test_probes_of_one_campaign_run_a_task_at_their_own_phase() -> None:
    """The phase is the probe's and the task's: stable for one probe, spread across probes."""
    tasks = [task("a", 10.0), task("b", 10.0)]
    phases = {}
    for probe in (f"p-{i:04d}" for i in range(40)):
        tt = Timetable(random.Random(1), salt=probe)
        tt.update(tasks, now=0.0)
        again = Timetable(random.Random(2), salt=probe)
        again.update(tasks, now=0.0)
        assert again.due == tt.due                             # a restarted probe keeps its rhythm
        phases[probe] = tt.due["a"]
        assert tt.due["a"] != tt.due["b"]
    values = sorted(phases.values())
    assert len(set(values)) == 40 and all(0.0 <= v < 10.0 for v in values)
    assert max(b - a for a, b in pairwise(values)) < 2.5                  # spread over the interval


def test_campaign_window_is_judged_on_the_coordinators_clock() -> None:
    tt = Timetable(random.Random(1))
    tt.update([task("w", 5.0, start_ts=2000.0, end_ts=3000.0)], now=1000.0)
    due = tt.due["w"]
    assert tt.take_due(due, server_now=1500.0) == []           # not started yet (coordinator's clock)
    assert [t["task_id"] for t in tt.take_due(tt.due["w"], server_now=2500.0)] == ["w"]
    assert tt.take_due(tt.due["w"], server_now=3000.0) == []   # over


def test_upload_linger_is_at_most_a_tenth_of_the_shortest_interval() -> None:
    assert upload_linger_s(None) == UPLOAD_LINGER_S == 5.0      # nothing scheduled yet
    assert upload_linger_s(300.0) == 5.0                        # field campaigns: batches of 5 s
    assert abs(upload_linger_s(3.0) - 0.3) < 1e-9                # the lab's 3 s campaigns
    assert upload_linger_s(0.0) == 0.0
    tt = Timetable()
    assert tt.shortest_interval_s() is None
    tt.update([task("a", 30.0), task("b", 3.0)], now=0.0)
    assert upload_linger_s(tt.shortest_interval_s()) < 0.31
