"""The verdict engine: evaluate every scope at regular measurement-time ticks, then build events.

Pure over its inputs (observations, heartbeats, Atlas signals, settings): the same data give the
same events, whatever the wall clock, so a backtest reproduces what a live run would have said
once every late upload was in.  :mod:`coordinator.verdict.findings` says what is wrong at one
tick; :mod:`coordinator.verdict.tracker` turns the ticks into lifecycles.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from coordinator.signals import Signal
from coordinator.verdict.baselines import Baselines
from coordinator.verdict.detectors import ProbeInfo, ProbeState, reachability_state, success_rate
from coordinator.verdict.findings import (
    Finding,
    Moment,
    outage_findings,
    target_findings,
    throttling_findings,
)
from coordinator.verdict.observations import Obs, derive_interval
from coordinator.verdict.settings import Settings
from coordinator.verdict.signals_inside import Liveness, atlas_down
from coordinator.verdict.tracker import Event, Tracker

_BY_TIME = attrgetter("ts", "mid")     # observations in measurement-time order (ties by id)
_TS = attrgetter("ts")


@dataclass
class Dataset:
    """Everything the engine reads: observations (any order), polls per probe, Atlas signals."""

    obs: list[Obs]
    heartbeats: dict[str, list[float]] = field(default_factory=dict)
    atlas: list[Signal] = field(default_factory=list)
    interval_s: float | None = None


class _Series:
    """One probe's (or one view's) observations, sorted, with a time index for windows."""

    def __init__(self, items: list[Obs]) -> None:
        self.items = sorted(items, key=_BY_TIME)
        self.ts = [o.ts for o in self.items]

    def window(self, a: float, b: float) -> list[Obs]:
        return self.items[bisect.bisect_right(self.ts, a):bisect.bisect_right(self.ts, b)]


def probe_directory(obs: Sequence[Obs]) -> dict[str, ProbeInfo]:
    """Probes that measure from inside a country, with their latest network."""
    latest: dict[str, tuple[str, int | None, str | None]] = {}
    for o in sorted(obs, key=_TS):    # stable: among equal times the last in input order wins
        if o.inside and o.cc and o.probe:
            latest[o.probe] = (o.cc, o.asn, o.access)
    return {p: ProbeInfo(p, cc, asn, access or "fixed") for p, (cc, asn, access) in latest.items()}


def detect(data: Dataset, since: float, until: float, s: Settings | None = None) -> list[Event]:
    """Events over [since, until] (ticks on a grid of the probe interval; data before ``since``
    only feeds baselines).  Deterministic."""
    s = s or Settings()
    obs = [o for o in data.obs if o.probe]
    interval = data.interval_s or derive_interval(obs)
    step = interval * s.tick_fraction
    W, TW = interval * s.window_intervals, interval * s.throughput_window_intervals
    probes = probe_directory(obs)
    inside: dict[str, list[Obs]] = defaultdict(list)
    outside: dict[str, list[Obs]] = defaultdict(list)
    activity: dict[str, list[float]] = defaultdict(list)
    groups: dict[str, list[Obs]] = defaultdict(list)
    firsts: dict[str, dict[str | None, float]] = defaultdict(dict)
    receipts: dict[str, list[float]] = defaultdict(list)     # uploads arriving: the probe reached us
    beating = data.heartbeats
    for o in obs:                                            # one pass over the observations
        activity[o.probe].append(o.ts)
        if o.probe in probes:
            inside[o.probe].append(o)      # everything a probe in a watched country measured
        elif o.vantage == "outside" and o.target_cc and o.cc != o.target_cc:
            outside[o.target_cc].append(o)
        groups[o.group].append(o)
        first = firsts[o.group]
        if o.ts < first.get(o.cc, math.inf):
            first[o.cc] = o.ts
        if o.received_ts is not None and o.probe in beating:
            receipts[o.probe].append(o.received_ts)
    series = {p: _Series(v) for p, v in inside.items()}
    group_series = {g: _Series(v) for g, v in groups.items()}
    out_series = {cc: _Series(v) for cc, v in outside.items()}
    live = Liveness(data.heartbeats, activity, interval, s.silence_factor, receipts)
    base = Baselines(s)
    feed = sorted(obs, key=_BY_TIME)
    fed = 0
    countries = sorted({p.cc for p in probes.values()})
    last_data = max([o.ts for o in obs] + [t for ts in data.heartbeats.values() for t in ts], default=since)
    end = min(until, last_data + W)
    tracker = Tracker(interval, s)
    reach = _Reach(series, s)
    h = math.ceil(since / step) * step
    while h <= end + 1e-9:
        while fed < len(feed) and feed[fed].ts <= h:
            base.feed(feed[fed])
            fed += 1
        dark_view = {cc for cc, ser in out_series.items() if _dark(ser.window(h - W, h), s)}
        states: dict[str, ProbeState] = {}
        for p, info in probes.items():
            st = reach.state(p, h - W, h) if p in series else ProbeState("unknown")
            if st.status == "unknown":
                st = ProbeState(live.status(p, h, info.cc in dark_view))
            states[p] = st
        active = atlas_down(data.atlas, h)
        weak = [sg for sg in atlas_down(data.atlas, h, "degraded") if sg.signal_class == "atlas_disconnect"]
        moment = Moment(h=h, interval=interval, probes=probes, states=states, base=base, atlas=active,
                        atlas_weak=weak,
                        inside={p: series[p].window(h - TW, h) for p in series},
                        outside={cc: out_series[cc].window(h - TW, h) for cc in out_series},
                        others=_others(group_series, h), others_ever=_others_ever(firsts, h), live=live)
        findings: list[Finding] = []
        observed: set[tuple[str, str, str]] = set()
        for cc in countries:
            findings += outage_findings(moment, cc, s, observed)
            findings += throttling_findings(moment, cc, s, observed)
            findings += target_findings(moment, cc, s, observed)
        tracker.tick(h, findings, observed)
        h += step
    return tracker.finish(live)


class _Reach:
    """Each probe's reachability state per tick, recomputed only when its window holds other rows
    than at the previous tick (ticks are a third of an interval apart, windows one interval wide):
    :func:`reachability_state` is pure over the window's observations."""

    def __init__(self, series: Mapping[str, _Series], s: Settings) -> None:
        self.series, self.s = series, s
        self.last: dict[str, tuple[int, int, ProbeState]] = {}

    def state(self, probe: str, a: float, b: float) -> ProbeState:
        ser = self.series[probe]
        i, j = bisect.bisect_right(ser.ts, a), bisect.bisect_right(ser.ts, b)
        memo = self.last.get(probe)
        if memo is not None and memo[0] == i and memo[1] == j:
            return memo[2]
        st = reachability_state(ser.items[i:j], self.s)
        self.last[probe] = (i, j, st)
        return st


def _dark(window: list[Obs], s: Settings) -> bool:
    rate, n, _ = success_rate(window)
    return n >= s.min_observations and rate is not None and rate <= s.dark_max_success


def _others(group_series: Mapping[str, _Series], h: float) -> Callable[[str, str, float], list[Obs]]:
    def others(group: str, cc: str, since: float) -> list[Obs]:
        ser = group_series.get(group)
        return [o for o in ser.window(since, h) if o.cc != cc] if ser else []
    return others


def _others_ever(firsts: Mapping[str, Mapping[str | None, float]], h: float) -> Callable[[str, str], bool]:
    def ever(group: str, cc: str) -> bool:
        return any(t <= h for pcc, t in firsts.get(group, {}).items() if pcc != cc)
    return ever


def summary(events: Sequence[Event]) -> dict[str, Any]:
    by: Mapping[str, int] = defaultdict(int)
    for e in events:
        by[e.kind] += 1  # type: ignore[index]
    return {"events": len(events), "by_kind": dict(by)}
