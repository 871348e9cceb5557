"""The traceroute planner against a simulated network of rate-limited routers (virtual time).

The network is faked at the seam only (who answers a probe of TTL t to destination d, and when):
routers answer TTL-exceeded through the kernel's default limiter (burst 6, then 1 per second per
source); destinations answer echo without limit.  The planner itself is the real code.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import pytest

from probe.icmp.doubletree import DESTINATION, TIME_EXCEEDED, UNREACHABLE, Answer, Planner, PlanParams


class KernelLimiter:
    """Linux icmpv4_xrlim_allow: a token per 1000 ms, at most 6 banked."""

    def __init__(self) -> None:
        self.tokens, self.at = 6000.0, 0.0

    def allow(self, now: float) -> bool:
        self.tokens = min(6000.0, self.tokens + (now - self.at) * 1000)
        self.at = now
        if self.tokens >= 1000:
            self.tokens -= 1000
            return True
        return False


@dataclass
class SimNet:
    paths: dict[str, list[str | None]]          # destination -> routers at TTL 1..n (None: never answers)
    unreachable_at: dict[str, int]              # destination -> TTL whose router answers unreachable

    def __post_init__(self) -> None:
        self.limiters: dict[str, KernelLimiter] = {}
        self.sent = 0

    def probe(self, dest: str, ttl: int, now: float) -> Answer | None:
        self.sent += 1
        path = self.paths[dest]
        if dest in self.unreachable_at and ttl >= self.unreachable_at[dest]:
            router = path[self.unreachable_at[dest] - 2]
            assert router is not None
            ok = self.limiters.setdefault(router, KernelLimiter()).allow(now)
            return Answer(router, UNREACHABLE, 0.1, 3, 1) if ok else None
        if ttl > len(path):
            return Answer(dest, DESTINATION, 0.1, 0, 0, reply_ttl=64 - len(path))
        router = path[ttl - 1]
        if router is None or not self.limiters.setdefault(router, KernelLimiter()).allow(now):
            return None
        return Answer(router, TIME_EXCEEDED, 0.1, 11, 0)


def tree(edges: int = 10, per_edge: int = 10) -> SimNet:
    paths: dict[str, list[str | None]] = {}
    for i in range(edges):
        for n in range(per_edge):
            paths[f"198.18.{110 + i}.{n + 1}"] = ["r1", "r2", f"a{i // 2}", f"e{i}"]
    return SimNet(paths, {})


def drive(net: SimNet, params: PlanParams, limit_s: float = 600.0) -> tuple[Planner, float]:
    """Run the planner in virtual time: answers come back after 1 ms, losses after wait_s."""
    now = 0.0
    planner = Planner(list(net.paths), params, now)
    events: list[tuple[float, int, str, int, Answer | None]] = []
    n = 0
    while not planner.done() and now < limit_s:
        for dest, ttl in planner.ready(now):
            answer = net.probe(dest, ttl, now)
            n += 1
            heapq.heappush(events, (now + (0.001 if answer else params.wait_s), n, dest, ttl, answer))
        now += 0.01
        while events and events[0][0] <= now:
            _, _, dest, ttl, answer = heapq.heappop(events)
            if answer is None:
                planner.lost(dest, ttl, now)
            else:
                planner.answered(dest, ttl, answer, now)
    return planner, now


def exact(planner: Planner, net: SimNet) -> int:
    good = 0
    for dest, path in net.paths.items():
        got = [None if h is None else h.address for _, h in planner.hop_list(dest)]
        good += got == [*path, dest]
    return good


def test_hundred_destinations_behind_rate_limited_routers_all_exact() -> None:
    net = tree()
    planner, elapsed = drive(net, PlanParams())
    assert exact(planner, net) == 100
    assert net.sent < 400            # 100 distance + 100 confirmations + ~1 per edge router per destination
    assert elapsed < 30


def test_probing_every_hop_at_once_is_what_fails() -> None:
    """Without stop sets and without pacing most paths come back with holes (the peers' failure)."""
    net = tree()
    planner, _ = drive(net, PlanParams(stop_sets=False, responder_pps=1000, responder_burst=1000, attempts=2))
    assert exact(planner, net) < 60


def test_stop_sets_save_probes() -> None:
    with_sets, without = tree(), tree()
    drive(with_sets, PlanParams())
    drive(without, PlanParams(stop_sets=False))
    assert with_sets.sent < without.sent


def test_silent_hop_and_unreachable() -> None:
    net = SimNet({"198.18.1.1": ["r1", "r2", None, "r4"], "198.18.1.2": ["r1", "r2", None, "r4"],
                  "198.18.9.9": ["r1", "r2", "r3"]}, {"198.18.9.9": 4})
    planner, _ = drive(net, PlanParams())
    for dest in ("198.18.1.1", "198.18.1.2"):
        assert [None if h is None else h.address for _, h in planner.hop_list(dest)] == ["r1", "r2", None, "r4", dest]
        assert planner.traces[dest].reached
    missing = planner.hop_list("198.18.9.9")
    assert [None if h is None else h.address for _, h in missing] == ["r1", "r2", "r3", "r3"]
    assert missing[-1][1] is not None and missing[-1][1].kind == UNREACHABLE
    assert not planner.traces["198.18.9.9"].reached


def test_stop_set_copies_are_marked() -> None:
    net = tree(edges=1, per_edge=5)
    planner, _ = drive(net, PlanParams())
    sources = [h.source for d in net.paths for _, h in planner.hop_list(d) if h is not None]
    assert sources.count("stop_set") >= 4 * 3     # four of five destinations copied hops 1-3


@pytest.mark.parametrize("reply_ttl,expected", [(60, 5), (64, 1), (124, 5), (250, 6), (None, 30)])
def test_distance_estimate(reply_ttl: int | None, expected: int) -> None:
    from probe.icmp.doubletree import _estimate_distance

    assert _estimate_distance(reply_ttl, 30) == expected


def test_give_up_ends_every_trace() -> None:
    net = tree(edges=2, per_edge=3)
    planner = Planner(list(net.paths), PlanParams(), 0.0)
    planner.ready(0.0)
    planner.give_up()
    assert planner.done() and not any(t.complete for t in planner.traces.values())
