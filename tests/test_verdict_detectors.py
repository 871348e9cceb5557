"""Pure detector functions on synthetic windows: no database, no network, no clock."""

from __future__ import annotations

from coordinator.verdict.baselines import Baselines
from coordinator.verdict.detectors import (
    ProbeInfo,
    dns_tampered,
    down_scopes,
    goodput_estimate,
    http_blocked,
    is_slow,
    per_target,
    quantile,
    reachability_state,
)
from coordinator.verdict.observations import Obs, derive_interval, heartbeat_spacing
from coordinator.verdict.settings import Settings
from coordinator.verdict.signals_inside import Liveness

S = Settings()
_n = 0


def obs(test: str = "tcp", ok: bool = True, category: str = "domestic", group: str = "news", ts: float = 0.0,
        probe: str = "p1", failure: str | None = None, goodput: float | None = None, runtime: float = 0.1,
        answers: tuple[str, ...] = (), status: int | None = None, target: str = "t") -> Obs:
    global _n
    _n += 1
    return Obs(ts=ts, mid=f"m{_n}", probe=probe, cc="KZ", asn=1, access="fixed", test=test, target=target, ok=ok,
               failure=failure if failure or ok else "timeout", runtime_s=runtime, category=category,
               target_cc="KZ", group=group, vantage="inside", goodput_bps=goodput,
               bytes=200_000 if goodput else None, http_status=status, answers=answers)


def test_reachability_states() -> None:
    healthy = [obs(group=g) for g in ("news", "bank", "gov")] + [obs(category="international", group="world")]
    assert reachability_state(healthy, S).status == "ok"
    dark = [obs(ok=False, group=g) for g in ("news", "bank", "gov", "world")]
    st = reachability_state(dark, S)
    assert st.status == "dark" and st.down and len(st.evidence) == 4
    border = [obs(group=g) for g in ("news", "bank")] + [obs(ok=False, category="international", group=g)
                                                          for g in ("world", "social")]
    assert reachability_state(border, S).status == "domestic_only"
    allow = ([obs(group="news"), obs(group="bank"), obs(ok=False, group="gov"), obs(ok=False, group="shop")]
             + [obs(ok=False, category="international", group=g) for g in ("world", "social")])
    st = reachability_state(allow, S)
    assert st.status == "domestic_only" and st.up_groups == ("bank", "news") and st.down_groups == ("gov", "shop")
    assert reachability_state(healthy[:2], S).status == "unknown"          # too few results
    # DNS and throughput never make a probe dark: a tampered name or a slow download is not an outage
    assert reachability_state([obs("dns", ok=False)] * 5 + healthy, S).status == "ok"


def test_goodput_and_slowness() -> None:
    base = [50e6 * (1 + i / 10) for i in range(20)]
    assert is_slow(0.5e6, base, S) is True
    assert is_slow(30e6, base, S) is False
    assert is_slow(0.5e6, base[:3], S) is None                             # baseline too short to judge
    done = obs("throughput", goodput=10e6)
    assert goodput_estimate(done, None) == 10e6
    cut_short = obs("throughput", ok=False, failure="timeout", runtime=2.0)
    assert goodput_estimate(cut_short, 200_000) == 800_000                 # an upper bound
    assert goodput_estimate(obs("throughput", ok=False, failure="host_unreachable"), 200_000) is None
    assert quantile([1, 2, 3, 4, 5], 0.5) == 3 and quantile([1.0, 2.0], 0.25) == 1.25


def test_baseline_is_not_dragged_down_by_slow_results() -> None:
    b = Baselines(S)
    healthy = [obs("throughput", goodput=40e6 + i * 1e6, group="speed", ts=i) for i in range(12)]
    for o in healthy:
        b.feed(o)
    before = sorted(b.goodput_baseline(healthy[0]))
    slow = [obs("throughput", ok=False, failure="timeout", runtime=2.3, group="speed", ts=20 + i) for i in range(30)]
    for o in slow:
        b.feed(o)
    assert all(b.slow[o.mid] for o in slow)
    assert sorted(b.goodput_baseline(healthy[0])) == before                # frozen while it is slow


def test_an_upper_bound_never_judges_a_download_healthy() -> None:
    """A download cut off by its own time cap before the body (typical bytes / runtime is then far
    above any throttle) is not evidence of health: it stays unjudged instead of counting as fast."""
    b = Baselines(S)
    for i in range(12):
        b.feed(obs("throughput", goodput=20e6 + i * 1e5, group="speed", ts=i))
    b.feed(obs("throughput", goodput=18e6, group="speed", ts=12))          # a healthy bound-free result
    capped = obs("throughput", ok=False, failure="timeout", runtime=0.5, group="speed", ts=13)
    b.feed(capped)                                  # bound 200_000 B x 8 / 0.5 s = 3.2 Mbit/s: not slow
    assert capped.mid not in b.slow
    slow_bound = obs("throughput", ok=False, failure="timeout", runtime=2.7, group="speed", ts=14)
    b.feed(slow_bound)                              # bound 0.59 Mbit/s: slow whatever the truth below it
    assert b.slow[slow_bound.mid] is True


def test_dns_and_http_judgements() -> None:
    ref = {"198.19.100.10"}
    assert dns_tampered(obs("dns", ok=False, failure="dns_nxdomain"), ref, S)
    assert dns_tampered(obs("dns", failure="dns_bogon_answer", answers=("10.10.34.34",)), ref, S)
    assert dns_tampered(obs("dns", answers=("203.0.113.9",)), ref, S)       # inconsistent with elsewhere
    assert not dns_tampered(obs("dns", answers=("198.19.100.10",)), ref, S)
    assert not dns_tampered(obs("dns", ok=False, failure="timeout"), ref, S)
    assert http_blocked(obs("http", ok=False, failure="connection_reset"), S)
    assert http_blocked(obs("http", status=451), S)
    assert not http_blocked(obs("http", ok=False, failure="timeout"), S)    # too noisy by default
    assert per_target({"world"}, {"world", "news", "bank"}, S)
    assert not per_target({"world", "news"}, {"world", "news", "bank"}, S)  # most targets failing: not per-target


PROBES = {p: ProbeInfo(p, "KZ", asn, access) for p, asn, access in (
    ("f1", 1, "fixed"), ("f2", 1, "fixed"), ("m1", 2, "mobile"), ("m2", 2, "mobile"), ("n1", 3, "mobile"),
    ("d1", 9, "datacenter"))}


def scopes(down: set[str], unknown: frozenset[str] = frozenset(), single_ok: frozenset[int] = frozenset()) -> list[str]:
    state = {p: (None if p in unknown else p in down) for p in PROBES}
    return [h.scope for h in down_scopes("KZ", PROBES, state, S, single_ok)]


def test_scopes_widest_first() -> None:
    assert scopes({"f1", "f2", "m1", "m2", "n1"}) == ["KZ"]               # datacenter up: still national
    assert scopes({"m1", "m2", "n1"}) == ["KZ/mobile"]
    assert scopes({"m1", "m2"}) == ["AS2"]
    assert scopes({"f2"}) == []                                           # one dead probe is not an outage
    assert scopes({"n1"}) == []                                           # nor a lone one, uncorroborated
    assert scopes({"n1"}, single_ok=frozenset({3})) == ["AS3"]            # ... unless measured or Atlas agrees
    assert scopes(set(), unknown=frozenset(PROBES)) == []


def test_interval_and_liveness() -> None:
    series = [obs(ts=10 + 3 * i, probe="a") for i in range(10)] + [obs(ts=11 + 3 * i, probe="b") for i in range(10)]
    assert derive_interval(series) == 3.0
    beats = {"a": [float(t) for t in range(0, 100)], "b": [float(t) for t in range(0, 50)]}
    assert heartbeat_spacing(beats) == {"a": 1.0, "b": 1.0}
    live = Liveness(beats, {}, 3.0, 2.5)
    assert live.status("b", 40) == "alive"
    assert live.status("b", 60) == "silent"                               # a went on polling: we were listening
    gap = {"a": [t for t in range(0, 100) if not 50 <= t < 70], "b": [float(t) for t in range(0, 50)]}
    assert Liveness(gap, {}, 3.0, 2.5).status("b", 60) == "unknown"       # nobody polled: a coordinator gap


def test_an_ambiguous_window_is_not_health() -> None:
    """The world fails and some domestic targets too, but not enough world results to call it
    domestic-only (or too few domestic successes): unknown, never ``ok`` - such a window straddles
    a change, or its slow failures (connections timing out) are still on their way."""
    world_fail = obs(ok=False, category="international", group="world")
    allow_list_early = [obs(group="news"), obs(group="bank"), obs(group="news"), obs(ok=False, group="gov"), world_fail]
    assert reachability_state(allow_list_early, S).status == "unknown"     # one world result, and it failed
    straddle = ([obs(ok=False, group=g) for g in ("news", "bank", "gov", "shop", "news")] + [obs(group="bank")]
                + [obs(ok=False, category="international", group=g) for g in ("world", "social", "world")])
    st = reachability_state(straddle, S)
    assert st.status == "unknown" and not st.down                         # 1 of 9 answered: neither dark nor ok
    # health stays health: a world answer, or domestic answers all fine
    assert reachability_state([*allow_list_early[:-1], obs(category="international", group="world")], S).status == "ok"
    assert reachability_state([obs(group="news"), obs(group="bank"), obs(group="gov"), world_fail], S).status == "ok"
    # a probe that measures no world target is judged on what it measures
    assert reachability_state([obs(group="news"), obs(group="bank"), obs(ok=False, group="gov")], S).status == "ok"


def test_a_probe_whose_polls_lag_but_uploads_flow_is_silent_after_an_interval_when_corroborated() -> None:
    """Polls every 2.5 s (a throttled link delays them), uploads arriving every 0.5 s: once both
    stop, the corroborated bound is one interval (3 s), not 2 x 2.5 s; uncorroborated it stays long."""
    polls = {"p": [i * 2.5 for i in range(9)], "q": [i * 1.0 for i in range(30)]}     # q keeps the coordinator busy
    receipts = {"p": [i * 0.5 for i in range(41)]}                                       # last at 20.0
    live = Liveness(polls, {"p": [i * 0.5 for i in range(41)]}, 3.0, S.silence_factor, receipts)
    assert live.status("p", 23.5, corroborated=True) == "silent"
    assert live.status("p", 23.5) == "alive"
    assert live.status("p", 22.5, corroborated=True) == "alive"
    plain = Liveness(polls, {"p": []}, 3.0, S.silence_factor)                            # no uploads known
    assert plain.status("p", 23.5, corroborated=True) == "alive"
