"""What is wrong at one tick: outage, throttling and per-target findings for one country.

Each function reads a :class:`Moment` (the probes' states and windows at tick ``h``) and returns
:class:`Finding` s; it also adds to ``observed`` every scope it had data for, so that the tracker
can tell "healthy" (observed, nothing found) from "unknown" (no data: hold the state).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coordinator.signals import Signal
from coordinator.verdict.baselines import Baselines
from coordinator.verdict.detectors import (
    ProbeInfo,
    ProbeState,
    ScopeHit,
    domestic_only_state,
    down_scopes,
    http_blocked,
    per_target,
    reachability_state,
    success_rate,
)
from coordinator.verdict.observations import REACHABILITY_TESTS, Obs
from coordinator.verdict.settings import Settings
from coordinator.verdict.signals_inside import Liveness, atlas_for

CLASS_WEIGHT = {"inside": 0.6, "outside": 0.5, "heartbeat": 0.4, "atlas_disconnect": 0.5, "atlas_reachability": 0.5}
RANK = {"country": 3, "access": 2, "asn": 1, "target": 0}
FAMILY = {"blackout": "outage", "domestic_only": "outage", "throttling": "throttling",
          "dns_tampering": "dns_tampering", "http_blocking": "http_blocking"}

Key = tuple[str, str, str]


@dataclass
class Finding:
    family: str                   # outage, throttling, dns_tampering, http_blocking
    kind: str | None              # None: an outage seen only as silence (kind decided by later data)
    scope_type: str
    scope: str
    cc: str
    classes: frozenset[str]
    confirmed: bool
    evidence: tuple[str, ...]
    onset: float
    asn: int | None = None
    access: str | None = None
    target: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> Key:
        return (self.family, self.scope_type, self.scope)

    @property
    def confidence(self) -> float:
        miss = 1.0
        for c in self.classes:
            miss *= 1 - CLASS_WEIGHT.get(c, 0.3)
        breadth = 0.05 * max(0, len(self.details.get("asns", [])) - 1)
        return round(min(0.99, 1 - miss + breadth + (0.1 if self.confirmed else 0)), 3)


@dataclass
class Moment:
    h: float
    interval: float
    probes: Mapping[str, ProbeInfo]
    states: Mapping[str, ProbeState]
    base: Baselines
    atlas: Sequence[Signal]
    inside: Mapping[str, list[Obs]]          # probe -> its inside results in the throughput window
    outside: Mapping[str, list[Obs]]         # country -> outside-in results towards it (same window)
    others: Callable[[str, str, float], list[Obs]]   # (group, cc, since) -> results by probes outside cc
    others_ever: Callable[[str, str], bool]  # (group, cc) -> probes outside cc ever measured it
    live: Liveness
    atlas_weak: Sequence[Signal] = ()        # a scope's only Atlas probe down: corroboration, never a start


def _scopes_of(fam: str, cc: str, info: ProbeInfo) -> list[Key]:
    return [(fam, "country", cc), (fam, "access", f"{cc}/{info.access}"), (fam, "asn", f"AS{info.asn}")]


def _country(m: Moment, cc: str) -> dict[str, ProbeInfo]:
    return {p: i for p, i in m.probes.items() if i.cc == cc}


def _finish_classes(m: Moment, cc: str, hit: ScopeHit, classes: set[str], *, outage: bool = False) -> set[str]:
    asns = None if hit.scope_type == "country" else set(hit.asns)
    out = classes | atlas_for(m.atlas, cc, asns)
    if outage and len(hit.probes) >= 2:   # two of our probes agree: a lone Atlas probe down there corroborates
        out |= atlas_for(m.atlas_weak, cc, asns)
    return out


def outage_findings(m: Moment, cc: str, s: Settings, observed: set[Key]) -> list[Finding]:
    probes = _country(m, cc)
    states = {p: _outage_state(m, p, s) for p in probes}
    states.update(_domestic_only_together(m, probes, states, s))
    states.update(_silent_together(m, probes, states, s))
    down: dict[str, bool | None] = {}
    for p, info in probes.items():
        st = states[p]
        # polling again but no fresh results yet is not health: its buffered results may still say
        # otherwise (and during a partial upload, half the probes would look up)
        down[p] = True if st.down else (False if st.status == "ok" and not _world_pending(m, p, s) else None)
        if down[p] is False:
            observed.update(_scopes_of("outage", cc, info))
    # one probe that measured failures may stand for its ASN - not a datacenter probe that still
    # reaches the domestic targets it hosts (that is just a datacenter with no way abroad)
    single_ok = {i.asn for p, i in probes.items() if states[p].measured and states[p].down and i.asn
                 and not (i.access == "datacenter" and states[p].status == "domestic_only")}
    single_ok |= {sg.asn for sg in m.atlas if sg.asn is not None}
    W = m.interval * s.window_intervals
    rate, n, out_failed = success_rate([o for o in m.outside.get(cc, []) if o.ts > m.h - W])
    outside_down = n >= s.min_observations and rate is not None and rate <= s.dark_max_success
    outside_up = n >= s.min_observations and rate is not None and rate >= 0.5
    out = []
    pending = {p for p in probes if states[p].status in ("alive", "unknown") and m.live.pending(p, m.h, 2 * W)}
    for hit in _decided(cc, probes, down, s, single_ok, pending):
        sts = {p: states[p] for p in hit.probes}
        measured = {p: st for p, st in sts.items() if st.measured}
        if hit.scope_type == "country" and not measured and outside_up and not atlas_for(m.atlas, cc, None):
            continue                  # silence alone while the country's targets answer: not a national cut
        n_dom = sum(1 for st in measured.values() if st.status == "domestic_only")
        kind = None if not measured else ("domestic_only" if n_dom * 2 > len(measured) else "blackout")
        classes: set[str] = set()
        if measured:
            classes.add("inside")
        silent = sorted(p for p, st in sts.items() if st.status == "silent")
        if silent:
            classes.add("heartbeat")
        evidence = [mid for st in measured.values() for mid in st.evidence]
        if hit.scope_type == "country" and outside_down:
            classes.add("outside")
            evidence += out_failed
        classes = _finish_classes(m, cc, hit, classes, outage=True)
        m_asns = {probes[p].asn for p in measured}
        by_count = len(hit.probes) >= s.confirm_min_probes and len(hit.asns) >= s.confirm_min_asns
        confirmed = (len(classes) >= 2 or (by_count and (bool(measured) or hit.scope_type != "country"))
                     or (len(measured) >= 2 and (len(m_asns) >= s.confirm_min_asns or hit.scope_type == "asn")))
        details: dict[str, Any] = {"probes_down": len(hit.probes), "asns": list(hit.asns), "silent_probes": silent,
                                   "probes_known": sum(1 for p in probes if down[p] is not None)}
        ups = {g for st in measured.values() for g in st.up_groups}
        downs = {g for st in measured.values() for g in st.down_groups} - ups
        if kind == "domestic_only" and ups and downs:
            details.update(allow_list=True, reachable_domestic=sorted(ups), unreachable_domestic=sorted(downs))
        if hit.scope_type == "country":
            dc = [states[p].status for p, i in probes.items() if i.access == "datacenter"]
            if dc:
                details["datacenter"] = "down" if all(x in ("dark", "domestic_only", "silent") for x in dc) else (
                    "up" if any(x in ("ok", "alive") for x in dc) else "unknown")
        onsets = [m.live.last_seen(p, m.h) or m.h for p in silent]
        onsets += [o.ts for p in measured for o in m.inside.get(p, []) if not o.ok and o.ts > m.h - W]
        out.append(Finding("outage", kind, hit.scope_type, hit.scope, cc, frozenset(classes), confirmed,
                           tuple(evidence), min(onsets, default=m.h), hit.asn, hit.access, None, details))
    return out


def _outage_state(m: Moment, p: str, s: Settings) -> ProbeState:
    """The probe's state for outages: its window's, or ``domestic_only`` when its window holds too
    few world results to say so but the quick domestic answers of the window and every world
    result of the (wider) throughput window say it - the world tests of the last round are still
    timing out.  A world result that answered in the wider window keeps the window's state."""
    st = m.states[p]
    if st.down:
        return st
    W = m.interval * s.window_intervals
    recent = [o for o in m.inside.get(p, []) if o.test in REACHABILITY_TESTS and (not o.domestic or o.ts > m.h - W)]
    if sum(1 for o in recent if not o.domestic and o.ts > m.h - W) >= 2:
        return st                                   # enough world results in the window: it decided
    wide = reachability_state(recent, s)
    return wide if wide.status == "domestic_only" else st


def _domestic_only_together(m: Moment, probes: Mapping[str, ProbeInfo], states: Mapping[str, ProbeState],
                            s: Settings) -> dict[str, ProbeState]:
    """With ``confirm_min_probes`` probes in ``confirm_min_asns`` ASNs domestic-only, one world
    result that failed is enough for another probe whose window shows nothing else from the world
    and its domestic targets answering: its next world results are still timing out."""
    dom = {p for p, st in states.items() if st.status == "domestic_only"}
    if len(dom) < s.confirm_min_probes or len({probes[p].asn for p in dom}) < s.confirm_min_asns:
        return {}
    W = m.interval * s.window_intervals
    out = {}
    for p, st in states.items():
        if st.down:
            continue
        recent = [o for o in m.inside.get(p, []) if o.test in REACHABILITY_TESTS and o.ts > m.h - W]
        world = [o for o in recent if not o.domestic]
        dom_obs = [o for o in recent if o.domestic]
        rate = sum(1 for o in dom_obs if o.ok) / len(dom_obs) if dom_obs else 0.0
        if world and not any(o.ok for o in world) and len(dom_obs) >= 2 and rate >= s.domestic_min_success:
            out[p] = domestic_only_state(recent, s)
    return out


def _silent_together(m: Moment, probes: Mapping[str, ProbeInfo], states: Mapping[str, ProbeState],
                     s: Settings) -> dict[str, ProbeState]:
    """Probes that fell silent together corroborate each other: when at least
    ``confirm_min_probes`` probes in ``confirm_min_asns`` ASNs have been silent for the plain
    ``silence_factor`` x their median poll spacing (polls and uploads both stopped), each of them
    is silent at that bound, not only at the longer bound a probe with irregular polls gets on its
    own (as when the outside view of the country is dark).  A coordinator that was away is never
    silence (:meth:`Liveness.status`)."""
    quiet = {p for p in probes if not states[p].measured and states[p].status != "silent"
             and m.live.status(p, m.h, corroborated=True) == "silent"}
    together = quiet | {p for p in probes if states[p].status == "silent"}
    if not quiet or len(together) < s.confirm_min_probes or len({probes[p].asn for p in together}) < s.confirm_min_asns:
        return {}
    return {p: ProbeState("silent") for p in quiet}


def _world_pending(m: Moment, p: str, s: Settings) -> bool:
    """The probe looks fine in its window only because its world results there are too few to say
    otherwise, while every world result of its throughput window failed: its tests towards the
    world are still timing out (an allow-list or a border cut keeps the domestic answers quick,
    and a connection timing out is the last result of a round to arrive).  Not health: hold."""
    W = m.interval * s.window_intervals
    world = [o for o in m.inside.get(p, []) if o.test in REACHABILITY_TESTS and not o.domestic]
    return (bool(world) and not any(o.ok for o in world)
            and sum(1 for o in world if o.ts > m.h - W) < 2)


def _decided(cc: str, probes: Mapping[str, ProbeInfo], down: Mapping[str, bool | None], s: Settings,
             single_ok: set[int], unknown: set[str]) -> list[ScopeHit]:
    """The down scopes, less the narrow ones that a wider scope would cover if the ``pending``
    probes were down too: probes with no measured state at this tick whose results for it are not
    in yet although later data are (:meth:`Liveness.pending`; e.g. a coordinator that was cut off
    itself gets a blackout's results late and in pieces).  Those narrow scopes wait for the rest
    of the data - one ASN's late piece of a national blackout is not an ASN outage - and are
    decided once the other probes' results show them up (or down).  Never at the data's horizon:
    live verdicts are not delayed."""
    hits = down_scopes(cc, probes, down, s, single_ok)
    if not unknown or all(h.scope_type == "country" for h in hits):
        return hits
    could = down_scopes(cc, probes, {p: True if p in unknown else d for p, d in down.items()}, s, single_ok)
    return [h for h in hits if not any(_hit_covers(w, h) for w in could)]


def _hit_covers(wide: ScopeHit, narrow: ScopeHit) -> bool:
    if RANK[wide.scope_type] <= RANK[narrow.scope_type]:
        return False
    return wide.scope_type == "country" or narrow.access == wide.access or narrow.asn in wide.asns


def _judged(m: Moment, obs: Sequence[Obs]) -> list[tuple[Obs, bool]]:
    """Judged throughput results; a download cut short by its timeout only counts when the probe
    reached that target (or, if it only downloads from it, a target of the same category) while it
    ran: a download that never connected is unreachability, not slowness."""
    out = []
    for o in obs:
        if o.test != "throughput" or o.mid not in m.base.slow:
            continue
        if o.failure == "timeout":
            same = [x for x in obs if x.test in REACHABILITY_TESTS and x.group == o.group]
            near = same or [x for x in obs if x.test in REACHABILITY_TESTS and x.category == o.category]
            if not any(x.ok and o.ts - m.interval / 2 <= x.ts <= o.ts + o.runtime_s for x in near):
                continue
        out.append((o, m.base.slow[o.mid]))
    return out


def _slow_share(items: Sequence[tuple[Obs, bool]]) -> float | None:
    return sum(1 for _, b in items if b) / len(items) if items else None


def clean(m: Moment, p: str, since: float) -> bool:
    """Every target the probe pinged or TCP-connected to answered at least once: slow downloads
    from it are slowness, not unreachability (an allow-list also makes downloads time out)."""
    by: dict[str, bool] = defaultdict(bool)
    for o in m.inside.get(p, []):
        if o.test in ("ping", "tcp") and o.ts > since:
            by[o.group] |= o.ok
    return all(by.values())


def throttling_findings(m: Moment, cc: str, s: Settings, observed: set[Key]) -> list[Finding]:
    probes = _country(m, cc)
    since = m.h - m.interval * s.throughput_window_intervals
    slow: dict[str, bool | None] = {}
    judged: dict[str, list[tuple[Obs, bool]]] = {}
    world: dict[str, float | None] = {}              # group -> slow share seen by probes outside cc
    for p, info in probes.items():
        ok = m.states[p].status == "ok" and clean(m, p, since)
        judged[p] = _judged(m, m.inside.get(p, [])) if ok else []
        share = _slow_share(judged[p])
        slow[p] = None if share is None or len(judged[p]) < 2 else share >= s.slow_fraction
        if slow[p] is not None:
            observed.update(_scopes_of("throttling", cc, info))
    # strong evidence elsewhere: with at least two probes slow, a probe whose latest judged results
    # (its last two, or its only one) are slow counts as slow - its healthy downloads from before the
    # change would hold it back for most of the window
    if sum(1 for v in slow.values() if v) >= 2:
        for p, items in judged.items():
            latest = sorted(items, key=lambda x: x[0].ts)[-2:]
            if not slow[p] and latest and all(b for _, b in latest):
                slow[p] = True
    for g in sorted({o.group for items in judged.values() for o, _ in items}):
        world[g] = _slow_share(_judged(m, m.others(g, cc, since)))
    out = []
    general: set[str] = set()
    for hit in down_scopes(cc, probes, slow, s):
        ev = [o for p in hit.probes for o, b in judged[p] if b]
        if any((world.get(o.group) or 0) >= s.outside_max_slow for o in ev):
            continue                                 # everyone is slow: the targets' side, not this network
        general.update(hit.probes)
        ratio = statistics.median([m.base.ratio.get(o.mid, 0.0) for o in ev]) if ev else None
        out.append(Finding("throttling", "throttling", hit.scope_type, hit.scope, cc,
                           frozenset(_finish_classes(m, cc, hit, {"inside"})), len(hit.asns) >= s.confirm_min_asns,
                           tuple(o.mid for o in ev), min((o.ts for o in ev), default=m.h), hit.asn, hit.access, None,
                           {"targeted": False, "asns": list(hit.asns), "slow_probes": list(hit.probes),
                            "goodput_ratio": None if ratio is None else round(ratio, 4)}))
    cand: dict[str, list[tuple[str, Obs]]] = defaultdict(list)
    late: dict[str, list[tuple[str, Obs]]] = defaultdict(list)   # latest download slow, older ones not
    for p, items in judged.items():
        if p in general or not items:
            continue
        control = _slow_share([(o, b) for o, b in items if o.category == "control"])
        by_group: dict[str, list[tuple[Obs, bool]]] = defaultdict(list)
        for o, b in items:
            if o.category != "control":
                by_group[o.group].append((o, b))
                if not b:
                    observed.add(("throttling", "target", f"{cc}|{o.group}"))
        for g, pairs in by_group.items():
            share = _slow_share(pairs)
            if control is None or control > s.control_max_slow or share is None:
                continue
            if share >= s.slow_fraction:
                cand[g] += [(p, o) for o, b in pairs if b]
            elif (newest := max(pairs, key=lambda x: x[0].ts))[1] and any(
                    o.category == "control" and not b and o.ts >= newest[0].ts for o, b in items):
                # only its newest download is slow: that says "targeted" only beside a control measured
                # fine after it (at a throttle's onset the control's last result is from before it)
                late[g] += [(p, o) for o, b in pairs if b]
    for g, extra in late.items():      # its latest download of g is slow, and two others are: it is too
        if len({p for p, _ in cand.get(g, [])}) >= 2:
            cand[g] += extra
    for g, found in sorted(cand.items()):
        f = _per_target_finding(m, cc, g, found, "throttling", s, None)
        if (f is None or len(f.details["probes"]) < s.targeted_min_probes
                or (world.get(g) or 0) >= s.outside_max_slow):
            continue
        if world.get(g) is not None:
            f = _with_outside(f, s)
        elif m.others_ever(g, cc):
            continue                                 # outside measures it but has not yet: wait for its view
        ratios = [m.base.ratio.get(o.mid, 0.0) for _, o in found]
        f.details.update(targeted=True, goodput_ratio=round(statistics.median(ratios), 4))
        out.append(f)
    return out


def _with_outside(f: Finding, s: Settings) -> Finding:
    f.classes = f.classes | {"outside"}
    f.confirmed = True
    return f


def _per_target_finding(m: Moment, cc: str, group: str, pairs: list[tuple[str, Obs]], kind: str, s: Settings,
                        bad_elsewhere: Callable[[Obs], bool] | None) -> Finding | None:
    """A per-target finding, unless probes outside the country see the same problem (the target's own)."""
    probes = sorted({p for p, _ in pairs})
    if len(probes) < s.target_min_probes:
        return None
    classes = {"inside"}
    if bad_elsewhere is not None:
        window = m.interval * s.throughput_window_intervals
        seen = [o for o in m.others(group, cc, m.h - window) if o.test == pairs[0][1].test
                and (kind != "throttling" or o.mid in m.base.slow)]
        if any(bad_elsewhere(o) for o in seen):
            return None                      # slow or failing from outside too: the target's own problem
        if seen:
            classes.add("outside")
        elif m.others_ever(group, cc):
            return None                      # outside measures it but has not yet: wait for its view
    asns = sorted({a for p in probes if (a := m.probes[p].asn) is not None})
    target = Counter(o.target for _, o in pairs).most_common(1)[0][0]
    return Finding(kind, kind, "target", f"{cc}|{group}", cc, frozenset(classes),
                   len(classes) >= 2 or len(asns) >= s.confirm_min_asns, tuple(o.mid for _, o in pairs),
                   min(o.ts for _, o in pairs), None, None, target,
                   {"group": group, "probes": probes, "asns": asns})


def target_findings(m: Moment, cc: str, s: Settings, observed: set[Key]) -> list[Finding]:
    """DNS tampering and HTTP blocking of chosen targets while the same probes reach others."""
    W = m.interval * s.window_intervals
    dns: dict[str, list[tuple[str, Obs]]] = defaultdict(list)
    http: dict[str, list[tuple[str, Obs]]] = defaultdict(list)
    fine: dict[Key, set[str]] = defaultdict(set)     # per-target scope -> probes that saw it healthy
    for p in _country(m, cc):
        if m.states[p].status not in ("ok", "alive"):
            continue
        recent = [o for o in m.inside.get(p, []) if o.ts > m.h - W]
        for o in recent:
            if o.test == "dns" and o.mid in m.base.tampered:
                if m.base.tampered[o.mid] and m.base.reference_answers(o.target):
                    dns[o.group].append((p, o))
                elif not m.base.tampered[o.mid]:
                    fine[("dns_tampering", "target", f"{cc}|{o.group}")].add(p)
        if any(m.base.slow.get(o.mid) for o in m.inside.get(p, [])):
            continue                                 # a saturated or throttled link times out on anything
        web = [o for o in recent if o.test == "http"]
        tcp_ok = {o.group for o in m.inside.get(p, []) if o.test == "tcp" and o.ok}
        measured = {o.group for o in web}
        blocked = {g for g in measured if all(http_blocked(o, s) and (o.failure != "timeout" or g in tcp_ok)
                                              for o in web if o.group == g)}
        for g in measured - blocked:
            if any(o.ok for o in web if o.group == g):
                fine[("http_blocking", "target", f"{cc}|{g}")].add(p)
        if per_target(blocked, measured, s):
            for o in web:
                if o.group in blocked:
                    http[o.group].append((p, o))
    observed.update(k for k, ps in fine.items() if len(ps) >= s.target_min_probes)
    out = []
    for g, pairs in sorted(dns.items()):
        f = _per_target_finding(m, cc, g, pairs, "dns_tampering", s, None)
        if f is not None:
            f.details["failures"] = sorted({o.failure or "inconsistent_answer" for _, o in pairs})
            out.append(f)
    for g, pairs in sorted(http.items()):
        f = _per_target_finding(m, cc, g, pairs, "http_blocking", s, lambda o: http_blocked(o, s))
        if f is not None:
            f.details["failures"] = sorted({o.failure or f"http_{o.http_status}" for _, o in pairs})
            out.append(f)
    return out
