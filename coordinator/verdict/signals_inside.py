"""Liveness from heartbeats, and the Atlas signals seen at one moment.

A probe is *silent* at time ``h`` when neither a schedule poll nor a measurement of it falls in
the last ``silence_factor`` x its median poll spacing, *and* the coordinator was demonstrably
listening all that time (some probe, anywhere, polled throughout).  A gap in everyone's polls is
a coordinator (or data) gap, never an outage.  Times are heartbeat and measurement times only.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping, Sequence

from coordinator.signals import Signal
from coordinator.verdict.observations import heartbeat_spacing


class Liveness:
    def __init__(self, beats: Mapping[str, list[float]], activity: Mapping[str, list[float]], interval: float,
                 silence_factor: float, receipts: Mapping[str, list[float]] | None = None) -> None:
        polls = {p: sorted(ts) for p, ts in beats.items()}
        spacing = heartbeat_spacing(polls)
        # silent after silence_factor x the median poll spacing, or 1.5 x the probe's own 90th
        # percentile gap, whichever is longer: a probe whose polls stall under load is not cut off
        plain = {p: silence_factor * spacing.get(p, interval) for p in set(polls) | set(activity)}
        self.gap = {p: max(g, 1.5 * _p90_gap(polls.get(p, []))) for p, g in plain.items()}
        # reaching the coordinator: polls, and uploads arriving (their received time)
        self.beats = {p: sorted([*ts, *(receipts or {}).get(p, [])]) for p, ts in polls.items()}
        # corroborated: the plain bound - or, for a probe whose polls lag (a throttled link) while
        # its uploads keep arriving, silence_factor x the spacing of both, at least one interval
        both = heartbeat_spacing(self.beats)
        self.fast_gap = {p: min(g, max(interval, silence_factor * both[p])) if p in both else g
                         for p, g in plain.items()}
        # every moment the probe showed itself: polls and measurement start times
        self.seen: dict[str, list[float]] = {}
        for p in set(self.beats) | set(activity):
            self.seen[p] = sorted([*self.beats.get(p, []), *activity.get(p, [])])
        # measurement times alone: results that arrived (a poll says nothing about what was measured)
        self.results = {p: sorted(ts) for p, ts in activity.items()}
        self.last_result = max((ts[-1] for ts in self.results.values() if ts), default=float("-inf"))
        allbeats = sorted(t for ts in polls.values() for t in ts)
        self.all = allbeats
        med = sorted(spacing.values())[len(spacing) // 2] if spacing else interval
        self.global_gap = 1.5 * med
        # spans during which nobody polled: the coordinator (or our data) was away
        self.dark_spans = [(a, b) for a, b in itertools.pairwise(allbeats) if b - a > self.global_gap]

    def coordinator_listening(self, a: float, b: float) -> bool:
        """Polls arrived throughout [a, b] (from any probe)."""
        if not self.all:
            return False
        i = bisect.bisect_right(self.all, b)
        if i == 0 or self.all[i - 1] < b - self.global_gap or self.all[0] > a:
            return False
        return not any(x < b and y > a for x, y in self.dark_spans)

    def last_seen(self, probe: str, h: float) -> float | None:
        ts = self.seen.get(probe, [])
        i = bisect.bisect_right(ts, h)
        return ts[i - 1] if i else None

    def status(self, probe: str, h: float, corroborated: bool = False) -> str:
        """``alive``, ``silent`` or ``unknown`` at time h, from polls only: a poll is the probe
        reaching the coordinator; results it buffered say it was powered, not that it was connected.
        ``corroborated`` (the outside view of the probe's country is down) uses the plain
        silence_factor x median spacing; otherwise also 1.5 x the probe's 90th percentile gap."""
        beats = self.beats.get(probe)
        if not beats or beats[0] > h:
            return "unknown"
        gap = (self.fast_gap if corroborated else self.gap)[probe]
        i = bisect.bisect_right(beats, h)
        if i and beats[i - 1] > h - gap:
            return "alive"
        return "silent" if self.coordinator_listening(h - gap, h) else "unknown"

    def pending(self, probe: str, h: float, margin: float) -> bool:
        """No result of the probe after ``h`` is in, and its results stop more than ``margin``
        before the latest anyone's results reach: its results for that time may still be on their
        way (buffered by a probe that was cut off, or not yet pulled by a coordinator that was cut
        off itself).  A probe that uploads as usual is never pending, not even at the horizon."""
        ts = self.results.get(probe, [])
        last = ts[-1] if ts else float("-inf")
        return last <= h and self.last_result - last > margin

    def seen_between(self, probe: str, a: float, b: float) -> bool:
        ts = self.seen.get(probe, [])
        i = bisect.bisect_left(ts, a)
        return i < len(ts) and ts[i] <= b


def _p90_gap(ts: list[float]) -> float:
    gaps = sorted(b - a for a, b in itertools.pairwise(ts) if b > a)
    return gaps[int(0.9 * (len(gaps) - 1))] if len(gaps) >= 5 else 0.0


def atlas_down(signals: Sequence[Signal], h: float, state: str = "down") -> list[Signal]:
    return [sg for sg in signals if sg.state == state and sg.start_ts <= h <= sg.end_ts]


def atlas_for(active: Sequence[Signal], cc: str, asns: set[int] | None = None) -> set[str]:
    """Atlas signal classes that say down for country cc (asns None) or for any of asns."""
    out = set()
    for sg in active:
        if asns is None:
            if (sg.scope_type == "country" and sg.scope == cc) or (sg.scope_type == "country" and sg.cc == cc):
                out.add(sg.signal_class)
        elif sg.asn in asns or (sg.scope_type == "asn" and sg.scope.removeprefix("AS").isdigit()
                                and int(sg.scope.removeprefix("AS")) in asns):
            out.add(sg.signal_class)
    return out
