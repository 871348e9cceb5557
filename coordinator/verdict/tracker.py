"""Lifecycles: ticks of findings become events (suspected -> confirmed -> resolved).

* An episode opens at the first tick a scope is found wrong and is resolved once the scope has
  been *observed* healthy for ``resolve_intervals`` (ticks without data hold the state).  Shorter
  healthy spells are kept as restoration intervals of the same event; a longer one resolves it,
  and a new fault opens a new event (``details.previous_event`` links them) - never an "all clear"
  that hides the rest.
* A wider scope absorbs narrower open episodes of the same family (an ASN seen first at the onset
  of a national blackout); an outage over a throttled scope supersedes the throttling.
* An outage episode's kind is decided by measured ticks; ticks seen only as silence take the kind
  of the measured ticks around them, and a lasting change of kind (blackout -> domestic-only)
  splits the episode into consecutive events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from coordinator.verdict.findings import Finding, Key
from coordinator.verdict.settings import Settings
from coordinator.verdict.signals_inside import Liveness

RANK = {"country": 3, "access": 2, "asn": 1, "target": 0}


@dataclass
class Event:
    kind: str
    scope_type: str
    scope: str
    cc: str
    asn: int | None
    access: str | None
    target: str | None
    start_ts: float
    suspected_ts: float
    confirmed_ts: float | None
    resolved_ts: float | None
    restorations: list[list[float]]
    confidence: float
    signals: list[str]
    evidence: list[str]
    details: dict[str, Any]

    @property
    def state(self) -> str:
        return "resolved" if self.resolved_ts is not None else "confirmed" if self.confirmed_ts is not None else "suspected"

    @property
    def family(self) -> str:
        return "outage" if self.kind in ("blackout", "domestic_only") else self.kind


@dataclass
class _Episode:
    key: Key
    ticks: list[tuple[float, Finding]] = field(default_factory=list)
    healthy_since: float | None = None
    restorations: list[list[float]] = field(default_factory=list)
    resolved_ts: float | None = None
    ended_ts: float | None = None
    note: dict[str, Any] = field(default_factory=dict)

    @property
    def last(self) -> Finding:
        return self.ticks[-1][1]


def _covers(wide: Finding, narrow: Finding) -> bool:
    if wide.cc != narrow.cc or RANK[wide.scope_type] <= RANK[narrow.scope_type] or narrow.scope_type == "target":
        return False
    if wide.scope_type == "country":
        return True
    return narrow.access == wide.access or narrow.asn in wide.details.get("asns", [])


class Tracker:
    def __init__(self, interval: float, s: Settings) -> None:
        self.s = s
        self.step = interval * s.tick_fraction
        self.resolve_after = s.resolve_intervals * interval
        self.throttle_resolve_after = s.throttle_resolve_intervals * interval
        self.open: dict[Key, _Episode] = {}
        self.pending: dict[Key, list[tuple[float, Finding]]] = {}
        self.done: list[_Episode] = []

    def tick(self, h: float, findings: list[Finding], observed: set[Key]) -> None:
        findings = sorted(findings, key=lambda f: -RANK[f.scope_type])
        seen: set[Key] = set()
        held: set[Key] = set()
        for f in findings:
            wider = [ep.key for ep in self.open.values() if ep.key[0] == f.family and _covers(ep.last, f)]
            if wider:
                held.update(wider)                              # part of a wider open event: it holds
                continue
            seen.add(f.key)
            ep = self.open.get(f.key)
            if ep is None:
                pending = self.pending.setdefault(f.key, [])
                pending.append((h, f))
                if len(pending) < self.onset_ticks(f):
                    continue
                ep = self.open[f.key] = _Episode(f.key, ticks=pending[:-1])
                del self.pending[f.key]
                for key, other in list(self.open.items()):      # absorb narrower open episodes
                    if key != f.key and key[0] == f.family and _covers(f, other.last):
                        ep.ticks = other.ticks + ep.ticks
                        ep.restorations = other.restorations + ep.restorations
                        del self.open[key]
            elif ep.healthy_since is not None:
                ep.restorations.append([ep.healthy_since, h])
                ep.healthy_since = None
            ep.ticks.append((h, f))
        for key in [k for k in self.pending if k not in seen]:
            del self.pending[key]                               # a one-tick blip is not an onset
        outages = [f for f in findings if f.family == "outage"]
        for key, ep in list(self.open.items()):
            if key in seen:
                continue
            if key[0] == "throttling" and any(_covers(o, ep.last) or o.key[1:] == key[1:] for o in outages):
                self._close(ep, h, h, superseded_by="outage")
                continue
            if key not in observed or key in held:
                continue                                        # no data, or partly down: hold the state
            if ep.healthy_since is None:
                ep.healthy_since = h
            needed = self.throttle_resolve_after if key[0] == "throttling" else self.resolve_after
            if h - ep.healthy_since >= needed - 1e-9:
                self._close(ep, h, ep.healthy_since)

    def onset_ticks(self, f: Finding) -> int:
        """Ticks a finding must hold before its event opens.  An outage with independent support
        (several probes in several ASNs, or two signal classes) is not one vantage point's blip: it
        opens at once, and so does a general throttle slowing every download of probes in several
        ASNs.  Targeted throttling and per-target findings keep the longer onset (a slow target
        looks throttled for a moment to every probe that measures it at once, before the outside
        view has measured it again)."""
        general_throttle = f.family == "throttling" and f.details.get("targeted") is False
        if f.confirmed and (f.family == "outage" or general_throttle):
            return self.s.confirmed_onset_ticks
        return self.s.onset_ticks

    def _close(self, ep: _Episode, h: float, ended: float, **note: Any) -> None:
        ep.resolved_ts, ep.ended_ts = h, ended
        ep.note.update(note)
        self.done.append(ep)
        del self.open[ep.key]

    def finish(self, live: Liveness) -> list[Event]:
        events: list[Event] = []
        episodes = sorted(self.done + list(self.open.values()), key=lambda e: (e.ticks[0][0], e.key))
        for ep in episodes:
            events += self._events(ep, live)
        return [e for e in events if not any(_inside(e, w) for w in events)]

    def _segments(self, ep: _Episode) -> list[tuple[str, list[tuple[float, Finding]]]]:
        if ep.key[0] != "outage":
            return [(ep.last.kind or ep.key[0], ep.ticks)]
        kinds = [f.kind for _, f in ep.ticks]
        known = [k for k in kinds if k]
        fill = known[0] if known else "blackout"
        filled = []
        for k in kinds:
            fill = k or fill
            filled.append(fill)
        segs: list[tuple[str, list[tuple[float, Finding]]]] = []
        for k, t in zip(filled, ep.ticks, strict=True):
            if segs and segs[-1][0] == k:
                segs[-1][1].append(t)
            else:
                segs.append((k, [t]))
        merged: list[tuple[str, list[tuple[float, Finding]]]] = []
        for k, ts in segs:
            span = ts[-1][0] - ts[0][0] + self.step
            if merged and (span < self.resolve_after or merged[-1][0] == k):
                merged[-1][1].extend(ts)
            else:
                merged.append((k, ts))
        if len(merged) > 1 and merged[0][1][-1][0] - merged[0][1][0][0] + self.step < self.resolve_after:
            merged[1] = (merged[1][0], merged[0][1] + merged[1][1])
            merged.pop(0)
        return merged

    def _events(self, ep: _Episode, live: Liveness) -> list[Event]:
        segs = self._segments(ep)
        out: list[Event] = []
        confirmed_at = next((h for h, f in ep.ticks if f.confirmed), None)
        for i, (kind, ticks) in enumerate(segs):
            first_h = ticks[0][0]
            last_seg = i == len(segs) - 1
            end = ep.resolved_ts if last_seg else segs[i + 1][1][0][0]
            f = ticks[-1][1]
            onset = min(t.onset for _, t in ticks) if i == 0 else first_h
            start = max(onset, first_h - 2 * self.resolve_after)
            conf = None if confirmed_at is None else max(confirmed_at, first_h)
            if conf is not None and end is not None and conf > end:
                conf = None
            evidence: dict[str, None] = {}
            for _, t in ticks:
                for mid in t.evidence:
                    if len(evidence) < self.s.evidence_max:
                        evidence.setdefault(mid, None)
            signals = sorted({c for _, t in ticks for c in t.classes})
            details = dict(f.details)
            if not last_seg:
                details["became"] = segs[i + 1][0]
            elif ep.ended_ts is not None:
                details["ended_ts"] = ep.ended_ts
            details.update(ep.note if last_seg else {})
            if ep.key[0] == "outage":
                details["cause"] = _cause(ticks, live, end)
            rest = [r for r in ep.restorations if r[0] >= first_h and (end is None or r[1] <= end)]
            out.append(Event(kind, f.scope_type, f.scope, f.cc, f.asn, f.access, f.target, start, first_h, conf,
                             end, rest, max(t.confidence for _, t in ticks), signals, list(evidence), details))
        return out


def _inside(narrow: Event, wide: Event) -> bool:
    """A narrower outage or throttling event overlapping a wider one of the same family and country
    adds nothing to it (e.g. one ASN seen a moment before the whole country)."""
    if (narrow.family != wide.family or narrow.cc != wide.cc or narrow.scope_type == "target"
            or RANK[wide.scope_type] <= RANK[narrow.scope_type]):
        return False
    if wide.scope_type != "country" and narrow.access != wide.access and narrow.asn not in wide.details.get("asns", []):
        return False
    inf = float("inf")
    return narrow.start_ts <= (wide.resolved_ts or inf) and (narrow.resolved_ts or inf) >= wide.start_ts


def _cause(ticks: list[tuple[float, Finding]], live: Liveness, end: float | None) -> str:
    """network: probes alive but cut off measured failures; power_or_probe_failure: the probes were
    silent and came back with no buffered results covering the gap; unknown: not (yet) known."""
    if any("inside" in f.classes for _, f in ticks):
        return "network"
    silent = {p for _, f in ticks for p in f.details.get("silent_probes", [])}
    if end is not None and silent and all((live.last_seen(p, float("inf")) or 0) > end for p in silent):
        return "power_or_probe_failure"
    return "unknown"
