"""Outage findings at one tick, on hand-made moments: a probe whose window looks fine only because
its world results are still in flight is not counted as up.  Pure: no database, no network."""

from __future__ import annotations

import dataclasses

from coordinator.verdict.baselines import Baselines
from coordinator.verdict.detectors import ProbeInfo, ProbeState, reachability_state
from coordinator.verdict.findings import Moment, outage_findings
from coordinator.verdict.observations import Obs
from coordinator.verdict.settings import Settings
from coordinator.verdict.signals_inside import Liveness

S = Settings()
IV = 3.0
PROBES = {p: ProbeInfo(p, "KZ", asn, access) for p, asn, access in (
    ("fix-1", 64601, "fixed"), ("fix-2", 64601, "fixed"), ("mob1-1", 64602, "mobile"),
    ("mob1-2", 64602, "mobile"), ("mob2-1", 64603, "mobile"))}
_n = 0


def o(probe: str, ts: float, ok: bool, world: bool, group: str = "") -> Obs:
    global _n
    _n += 1
    info = PROBES[probe]
    return Obs(ts=ts, mid=f"m{_n}", probe=probe, cc="KZ", asn=info.asn, access=info.access, test="http",
               target=group or ("world" if world else "news"), ok=ok, failure=None if ok else "timeout",
               runtime_s=0.1 if ok else 2.7, category="international" if world else "domestic",
               target_cc="NL" if world else "KZ", group=group or ("world" if world else "news"), vantage="inside")


def allow_list_window(probe: str, h: float, world_in: bool) -> list[Obs]:
    """Before h - 3.5: an allow-list's results (world failing, news up, gov down); in the last
    interval the domestic answers only, plus the world failures when ``world_in``."""
    out = [o(probe, h - 4.2, False, True), o(probe, h - 3.9, False, True), o(probe, h - 4.0, True, False),
           o(probe, h - 3.6, False, False, "gov")]
    out += [o(probe, h - 2.5, True, False), o(probe, h - 1.5, True, False, "bank"), o(probe, h - 0.5, True, False)]
    if world_in:
        out += [o(probe, h - 2.8, False, True), o(probe, h - 1.9, False, True)]
    return out


def moment(h: float, world_in: set[str]) -> Moment:
    inside = {p: allow_list_window(p, h, p in world_in) for p in PROBES}
    states = {p: reachability_state([x for x in obs if x.ts > h - IV], S) for p, obs in inside.items()}
    beats = {p: [h - 3 + 0.5 * i for i in range(7)] for p in PROBES}
    live = Liveness(beats, {p: [x.ts for x in v] for p, v in inside.items()}, IV, S.silence_factor)
    return Moment(h=h, interval=IV, probes=PROBES, states=states, base=Baselines(S), atlas=[],
                  inside={p: [x for x in v if x.ts > h - IV * S.throughput_window_intervals] for p, v in inside.items()},
                  outside={}, others=lambda g, cc, since: [], others_ever=lambda g, cc: False, live=live)


def test_world_results_in_flight_are_not_health() -> None:
    h = 100.0
    settled = moment(h, set(PROBES))
    found = outage_findings(settled, "KZ", S, set())
    assert [(f.kind, f.scope_type, f.scope) for f in found] == [("domestic_only", "country", "KZ")]
    # fix-2 and mob2-1: their last world results (timeouts) are not in yet; the window shows the
    # quick domestic answers only.  They look "ok" by the window alone, but are not counted as up:
    early = moment(h, set(PROBES) - {"fix-2", "mob2-1"})
    assert early.states["fix-2"].status == "ok"
    observed: set[tuple[str, str, str]] = set()
    found = outage_findings(early, "KZ", S, observed)
    assert [(f.kind, f.scope_type, f.scope) for f in found] == [("domestic_only", "country", "KZ")]
    assert ("outage", "asn", "AS64603") not in observed          # not "observed healthy": the state holds


def test_a_probe_whose_world_answers_is_up() -> None:
    """World results that answered (before the window) are health: the probe counts as up."""
    h = 100.0
    m = moment(h, set(PROBES) - {"fix-2", "mob2-1"})
    for p in ("fix-2", "mob2-1"):
        m.inside[p][:] = [x if x.category != "international" else o(p, x.ts, True, True) for x in m.inside[p]]
    observed: set[tuple[str, str, str]] = set()
    outage_findings(m, "KZ", S, observed)
    assert ("outage", "asn", "AS64603") in observed


def test_a_single_failed_world_result_in_the_window_is_not_health_either() -> None:
    h = 100.0
    m = moment(h, set(PROBES) - {"fix-2", "mob2-1"})
    for p in ("fix-2", "mob2-1"):
        m.inside[p].append(o(p, h - 2.9, False, True))          # one world timeout is in, the next is not
    st = reachability_state([x for x in m.inside["fix-2"] if x.ts > h - IV], S)
    assert st.status == "ok"                                     # by the window alone
    observed: set[tuple[str, str, str]] = set()
    found = outage_findings(m, "KZ", S, observed)
    assert [(f.kind, f.scope) for f in found] == [("domestic_only", "KZ")]
    assert ("outage", "asn", "AS64603") not in observed


def test_probes_that_fall_silent_together_corroborate_each_other() -> None:
    """A national blackout seen from abroad: every probe's polls and uploads stop at t=20.  The
    fixed probes poll regularly; the mobile ones' polls lagged (their own bound is long).  Three
    probes in two ASNs silent at the plain bound make each of them silent at it: the country."""
    h = 24.0

    def found_at(stopped: set[str]) -> list[tuple[str, str, str]]:
        beats = {p: [i * 1.5 for i in range(14)] if p.startswith("fix") else [0.0, 1.5, 3.0, 9.0, 10.5, 12.0, 18.0, 19.5]
                 for p in PROBES}
        receipts = {p: [i * 0.5 for i in range(41 if p in stopped else 49)] for p in PROBES}
        beats["out-1"] = [i * 1.5 for i in range(17)]            # the coordinator kept hearing from abroad
        live = Liveness(beats, {p: [] for p in PROBES}, IV, S.silence_factor, receipts)
        states = {p: ProbeState(live.status(p, h)) for p in PROBES}
        m = Moment(h=h, interval=IV, probes=PROBES, states=states, base=Baselines(S), atlas=[], inside={},
                   outside={}, others=lambda g, cc, since: [], others_ever=lambda g, cc: False, live=live)
        return [(f.family, f.scope_type, f.scope) for f in outage_findings(m, "KZ", S, set())]

    assert found_at(set(PROBES)) == [("outage", "country", "KZ")]
    assert found_at({"fix-1"}) == []                              # one silent probe corroborates nothing


def test_a_probe_whose_latest_downloads_are_slow_joins_two_slow_probes() -> None:
    """Mobile throttling: two probes of AS64602 slow on every download; mob2-1 (AS64603) has two
    healthy downloads from before the change and two slow ones since.  Its share (0.5) alone would
    keep it out, and with it the access type; its latest results and the others' make it slow."""
    from coordinator.verdict.findings import throttling_findings

    h = 100.0
    base = Baselines(S)
    inside: dict[str, list[Obs]] = {p: [] for p in PROBES}

    def dl(p: str, ts: float, slow: bool) -> None:
        x = Obs(ts=ts, mid=f"tp-{p}-{ts}", probe=p, cc="KZ", asn=PROBES[p].asn, access=PROBES[p].access,
                test="throughput", target="speed", ok=True, failure=None, runtime_s=1.5, category="domestic",
                target_cc="KZ", group="speed", vantage="inside", goodput_bps=1e5 if slow else 2e7)
        inside[p].append(x)
        base.slow[x.mid] = slow
        base.ratio[x.mid] = 0.01 if slow else 1.0

    for p in ("mob1-1", "mob1-2"):
        for ts in (96.0, 97.5, 99.0):
            dl(p, ts, True)
    for ts, slow in ((95.8, False), (96.5, False), (97.9, True), (99.2, True)):
        dl("mob2-1", ts, slow)
    for p in ("fix-1", "fix-2"):
        for ts in (96.0, 97.5, 99.0):
            dl(p, ts, False)
    live = Liveness({p: [h - 3 + 0.5 * i for i in range(7)] for p in PROBES}, {}, IV, S.silence_factor)
    m = Moment(h=h, interval=IV, probes=PROBES, states={p: ProbeState("ok") for p in PROBES}, base=base, atlas=[],
               inside=inside, outside={}, others=lambda g, cc, since: [], others_ever=lambda g, cc: False, live=live)
    found = throttling_findings(m, "KZ", S, set())
    assert [(f.scope_type, f.scope) for f in found] == [("access", "KZ/mobile")]
    inside["mob1-2"][:] = [x for x in inside["mob1-2"] if x.ts < 97]       # one slow probe is not strong evidence
    found = throttling_findings(m, "KZ", S, set())
    assert [(f.scope_type, f.scope) for f in found] == []


def test_one_failed_world_result_is_enough_beside_three_domestic_only_probes() -> None:
    """A border cut: three probes in two ASNs are domestic-only; fix-2 has one world result in its
    window so far (a timeout), its domestic targets answer.  It is domestic-only too - so the
    country is, not only the ASNs whose probes happened to measure the world first."""
    h = 100.0
    m = moment(h, set(PROBES) - {"fix-1", "fix-2"})
    for p in ("fix-1", "fix-2"):
        m.inside[p][:] = [x for x in m.inside[p] if x.domestic] + [o(p, h - 2.0, False, True), o(p, h - 4.0, True, True)]
    m.states = {p: reachability_state([x for x in m.inside[p] if x.ts > h - IV], S) for p in PROBES}
    assert m.states["fix-2"].status == "ok"
    found = outage_findings(m, "KZ", S, set())
    assert [(f.kind, f.scope_type, f.scope) for f in found] == [("domestic_only", "country", "KZ")]
    # without domestic-only peers, one failed world result (after a success) decides nothing
    for p in ("mob1-1", "mob1-2", "mob2-1"):
        m.inside[p][:] = list(m.inside["fix-1"])
    m.states = {p: reachability_state([x for x in m.inside[p] if x.ts > h - IV], S) for p in PROBES}
    assert outage_findings(m, "KZ", S, set()) == []


def test_targeted_throttle_counts_a_probe_whose_latest_download_of_the_target_is_slow() -> None:
    """One service throttled: two probes' downloads of it are all slow since the change; a third has
    one healthy download from before and a slow one since (share 0.5).  With the two, it is the
    third probe the targeted rule needs (three probes), while the control stays fast everywhere."""
    from coordinator.verdict.findings import throttling_findings

    h = 100.0
    base = Baselines(S)
    inside: dict[str, list[Obs]] = {p: [] for p in PROBES}

    def dl(p: str, ts: float, group: str, slow: bool) -> None:
        cat = "control" if group == "control" else "international"
        x = Obs(ts=ts, mid=f"tp-{p}-{group}-{ts}", probe=p, cc="KZ", asn=PROBES[p].asn, access=PROBES[p].access,
                test="throughput", target=group, ok=True, failure=None, runtime_s=1.5, category=cat,
                target_cc="NL", group=group, vantage="inside", goodput_bps=1e5 if slow else 2e7)
        inside[p].append(x)
        base.slow[x.mid] = slow
        base.ratio[x.mid] = 0.01 if slow else 1.0

    for p in PROBES:
        dl(p, 96.5, "control", False)
        dl(p, 98.5, "control", False)
    for p in ("fix-1", "mob1-1"):
        dl(p, 96.0, "social", True)
        dl(p, 98.0, "social", True)
    dl("mob2-1", 96.2, "social", False)
    dl("mob2-1", 98.2, "social", True)
    live = Liveness({p: [h - 3 + 0.5 * i for i in range(7)] for p in PROBES}, {}, IV, S.silence_factor)
    m = Moment(h=h, interval=IV, probes=PROBES, states={p: ProbeState("ok") for p in PROBES}, base=base, atlas=[],
               inside=inside, outside={}, others=lambda g, cc, since: [], others_ever=lambda g, cc: False, live=live)
    found = throttling_findings(m, "KZ", S, set())
    assert [(f.scope_type, f.scope, f.details["probes"]) for f in found] == [
        ("target", "KZ|social", ["fix-1", "mob1-1", "mob2-1"])]
    # its control last measured before that slow download (a general throttle's onset looks like
    # this): the control says nothing about the same time, so it is not counted
    ctl = next(i for i, x in enumerate(inside["mob2-1"]) if x.ts == 98.5)
    inside["mob2-1"][ctl] = dataclasses.replace(inside["mob2-1"][ctl], ts=97.9)
    assert throttling_findings(m, "KZ", S, set()) == []
    inside["mob2-1"][ctl] = dataclasses.replace(inside["mob2-1"][ctl], ts=98.5)
    assert len(throttling_findings(m, "KZ", S, set())) == 1
    inside["mob2-1"][-1:] = []                                # its latest download of social was fast: not it
    assert throttling_findings(m, "KZ", S, set()) == []
