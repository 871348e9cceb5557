"""Which traceroute probe to send next: Doubletree stop sets and per-responder pacing (pure logic).

Routers answer only about one TTL-exceeded per second to one source after a burst of ~6 (the
kernel's default ``icmp_ratelimit``), so probing every hop of every path of many destinations
loses most answers.  The planner therefore

* finds each destination's distance first (one probe at ``max_ttl``; the reply's TTL gives an
  estimate, then probes down to the first hop that is not the destination);
* probes *backwards* from the hop before the destination and stops at the first hop whose
  (responder, ttl) pair is in the stop set: a responder seen at the same TTL on an already
  finished trace has the same path prefix, which is copied (``source: "stop_set"``) instead of
  probed again.  The stop set is local to one destination's trace (its own hops) and global
  across the destinations of the run (every finished trace adds its hops);
* destinations that never answer are traced forwards from TTL 1 until an unreachable, the
  destination, ``gap_limit`` silent hops in a row, or ``max_ttl``;
* paces probes per *expected responder* with a token bucket (``responder_pps``, burst
  ``responder_burst``): the responder expected at (destination, ttl) is predicted from other
  traces (the router seen before the same next hop, or a sibling destination in the same /24),
  and a lost probe empties that bucket, so a retry waits for the router's limiter to refill;
* retries a silent hop up to ``attempts`` times before recording it as silent.

The planner sends nothing itself: ``probe.icmp.tracer`` does the input and output.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

DESTINATION = "destination"
TIME_EXCEEDED = "time_exceeded"
UNREACHABLE = "unreachable"


@dataclass
class Answer:
    address: str
    kind: str                     # destination, time_exceeded or unreachable
    rtt_ms: float | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    reply_ttl: int | None = None
    source: str = "probed"        # probed, or stop_set when copied from another destination's trace


@dataclass
class PlanParams:
    max_ttl: int = 30
    attempts: int = 3
    wait_s: float = 1.0
    gap_limit: int = 3
    responder_pps: float = 1.0
    responder_burst: float = 5.0
    stop_sets: bool = True


class Bucket:
    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def take(self, now: float) -> bool:
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def debit(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1.0

    def empty(self, now: float) -> None:
        self._refill(now)
        self.tokens = min(self.tokens, 0.0)


@dataclass
class Trace:
    dest: str
    phase: str = "distance"       # distance, down, up, back, wait, done
    next_ttl: int = 0
    hops: dict[int, Answer | None] = field(default_factory=dict)
    dist: int | None = None
    attempts: int = 0
    last_sent: float = -1e9
    in_flight: bool = False
    silent_run: int = 0
    probes_sent: int = 0
    complete: bool = False
    estimate: int | None = None    # distance estimated from the TTL of the destination's first answer
    estimate_rechecked: bool = False

    @property
    def reached(self) -> bool:
        return self.dist is not None


def _group(addr: str) -> str:
    ip = ipaddress.ip_address(addr)
    return str(ipaddress.ip_network(f"{addr}/{24 if ip.version == 4 else 48}", strict=False))


def _estimate_distance(reply_ttl: int | None, max_ttl: int) -> int:
    if reply_ttl is None:
        return max_ttl
    initial = next((i for i in (32, 64, 128, 255) if i >= reply_ttl), 255)
    return max(1, min(max_ttl, initial - reply_ttl + 1))


class Planner:
    def __init__(self, dests: list[str], params: PlanParams, now: float) -> None:
        self.p = params
        self.traces = {d: Trace(d, next_ttl=params.max_ttl) for d in dests}
        self.buckets: dict[str, Bucket] = {}
        self.stop_set: dict[tuple[str, int], str] = {}     # (responder, ttl) -> destination that saw it
        self.prev: dict[tuple[str, int], str] = {}         # (responder at ttl+1, ttl+1) -> responder at ttl
        self.groups = {d: _group(d) for d in dests}         # destination -> its /24 (/48)
        self.group_hops: dict[tuple[str, int], str] = {}    # (group, ttl) -> a router seen there
        self.now = now

    # --- choosing probes ----------------------------------------------------------------------
    def done(self) -> bool:
        return all(t.phase == "done" for t in self.traces.values())

    def ready(self, now: float, limit: int = 1 << 30) -> list[tuple[str, int]]:
        """Up to ``limit`` probes to send now, (destination, ttl); each is charged to its expected responder."""
        out: list[tuple[str, int]] = []
        for t in self.traces.values():
            if len(out) >= limit:
                break
            if t.phase == "wait":
                self._try_copy(t)
            if t.phase in ("done", "wait") or t.in_flight:
                continue
            key = self.expected_responder(t, t.next_ttl)
            bucket = self.buckets.setdefault(key, Bucket(self.p.responder_pps, self.p.responder_burst, now))
            if bucket.take(now):
                t.in_flight, t.last_sent = True, now
                t.attempts += 1
                t.probes_sent += 1
                out.append((t.dest, t.next_ttl))
        return out

    def expected_responder(self, t: Trace, ttl: int) -> str:
        """The bucket a probe is charged to: the router expected to answer it, or a stand-in key."""
        if t.phase == "distance" or (t.phase == "down" and not t.hops):
            return "dst:" + t.dest
        above = t.hops.get(ttl + 1)
        if above is not None and (above.address, ttl + 1) in self.prev:
            return self.prev[(above.address, ttl + 1)]
        known = self.group_hops.get((self.groups[t.dest], ttl))
        if known is not None:
            return known
        return f"?{self.groups[t.dest]}:{ttl}"

    # --- outcomes -----------------------------------------------------------------------------
    def answered(self, dest: str, ttl: int, answer: Answer, now: float) -> None:
        t = self.traces[dest]
        if ttl in t.hops and t.hops[ttl] is None and t.phase != "distance" and answer.kind != DESTINATION:
            return self._late(t, ttl, answer)
        if t.phase in ("done", "wait") or ttl != t.next_ttl or (t.phase != "distance" and ttl in t.hops):
            return None  # a late or duplicate answer for a hop already decided
        key = self.expected_responder(t, ttl)
        if answer.address != key and not key.startswith("dst:"):
            self.buckets.setdefault(answer.address, Bucket(self.p.responder_pps, self.p.responder_burst,
                                                           now)).debit(now)
        t.in_flight, t.attempts = False, 0
        if t.phase == "distance":
            if answer.kind == DESTINATION:
                t.estimate = _estimate_distance(answer.reply_ttl, self.p.max_ttl)
                t.phase, t.next_ttl = "down", t.estimate
            else:
                t.phase, t.next_ttl = "up", 1
            return None
        t.hops[ttl] = answer
        below = t.hops.get(ttl - 1)
        if ttl > 1 and below is not None and below.kind != DESTINATION and answer.kind != DESTINATION:
            self.prev.setdefault((answer.address, ttl), below.address)
        above = t.hops.get(ttl + 1)
        if above is not None and answer.kind != DESTINATION:
            self.prev.setdefault((above.address, ttl + 1), answer.address)
        if answer.kind == TIME_EXCEEDED:
            self.group_hops.setdefault((self.groups[dest], ttl), answer.address)
            if self.p.stop_sets:
                self.stop_set.setdefault((answer.address, ttl), dest)
        self._advance(t, ttl, answer)
        return None

    def _late(self, t: Trace, ttl: int, answer: Answer) -> None:
        """An answer for a hop already given up as silent (e.g. an unreachable sent after ARP failed)."""
        t.hops[ttl] = answer
        if answer.kind == UNREACHABLE and t.dist is None:
            for k in [k for k in t.hops if k > ttl]:
                del t.hops[k]
            t.in_flight = False
            self._finish(t, dist=None)

    def lost(self, dest: str, ttl: int, now: float) -> None:
        """The probe got no answer within ``wait_s``."""
        t = self.traces[dest]
        if t.phase in ("done", "wait") or not t.in_flight or ttl != t.next_ttl:
            return
        t.in_flight = False
        self.buckets.setdefault(self.expected_responder(t, ttl),
                                Bucket(self.p.responder_pps, self.p.responder_burst, now)).empty(now)
        # Probes that expect the destination itself (the distance probe; the probe at the estimated
        # distance, after the destination answered once) get twice the attempts: a destination
        # that answers with an ICMP error (udp) is rate-limited like a router.
        expecting_destination = t.phase == "distance" or (t.phase == "down" and not t.hops)
        if t.attempts < self.p.attempts * (2 if expecting_destination else 1):
            return
        t.attempts = 0
        if t.phase == "distance":
            t.phase, t.next_ttl = "up", 1
            return
        t.hops[ttl] = None
        self._advance(t, ttl, None)

    def _advance(self, t: Trace, ttl: int, answer: Answer | None) -> None:
        reached = answer is not None and answer.kind == DESTINATION
        if t.phase == "down":
            if reached:
                if ttl == 1:
                    return self._finish(t, dist=1)
                t.next_ttl = ttl - 1
                return None
            above = t.hops.get(ttl + 1)
            if above is not None and above.kind == DESTINATION:
                t.dist = ttl + 1
                return self._back_from(t, ttl)
            t.phase, t.next_ttl, t.silent_run = "up", ttl + 1, 0
            return None
        if t.phase == "up":
            if reached and t.hops.get(ttl - 1, 0) is None and ttl - 1 == t.estimate and not t.estimate_rechecked:
                # silence at the estimated distance, then the destination one hop further: that
                # silence was most likely the destination's own rate limiter; ask again, once
                t.estimate_rechecked = True
                del t.hops[ttl - 1]
                t.phase, t.next_ttl = "down", ttl - 1
                return None
            if reached:
                t.dist = min(k for k, h in t.hops.items() if h is not None and h.kind == DESTINATION)
                return self._back_from(t, t.dist - 1)
            if answer is not None and answer.kind == UNREACHABLE:
                return self._finish(t, dist=None)
            t.silent_run = t.silent_run + 1 if answer is None else 0
            if t.silent_run >= self.p.gap_limit or ttl >= self.p.max_ttl:
                return self._finish(t, dist=None)
            t.next_ttl = ttl + 1
            return None
        if t.phase == "back":
            if reached:  # an asymmetric path: the destination is nearer than estimated
                t.dist = ttl
            return self._back_from(t, ttl)
        return None

    def _back_from(self, t: Trace, ttl: int) -> None:
        """Continue backwards from ``ttl``: skip known hops, stop at a hop in the stop set."""
        while ttl >= 1:
            hop = t.hops.get(ttl)
            if self.p.stop_sets and hop is not None and hop.kind == TIME_EXCEEDED:
                owner = self.stop_set.get((hop.address, ttl))
                if owner is not None and owner != t.dest:
                    t.phase, t.next_ttl = "wait", ttl
                    self._try_copy(t)
                    return
            if ttl not in t.hops:
                t.phase, t.next_ttl = "back", ttl
                return
            ttl -= 1
        self._finish(t, dist=t.dist)

    def _try_copy(self, t: Trace) -> None:
        hop = t.hops[t.next_ttl]
        assert hop is not None
        owner = self.traces[self.stop_set[(hop.address, t.next_ttl)]]
        if owner.phase != "done":
            return
        if not owner.complete:          # the owner could not finish its prefix: probe ourselves
            t.phase, t.next_ttl = "back", t.next_ttl - 1
            if t.next_ttl < 1 or t.next_ttl in t.hops:
                self._back_from(t, t.next_ttl)
            return
        for ttl in range(1, t.next_ttl):
            if ttl not in t.hops:
                src = owner.hops.get(ttl)
                t.hops[ttl] = None if src is None else Answer(src.address, src.kind, src.rtt_ms, src.icmp_type,
                                                               src.icmp_code, src.reply_ttl, "stop_set")
        self._finish(t, dist=t.dist)

    def _finish(self, t: Trace, dist: int | None) -> None:
        t.phase, t.dist, t.in_flight = "done", dist, False
        top = dist if dist is not None else max(t.hops, default=0)
        if dist is not None:
            for ttl in [k for k in t.hops if k > dist]:
                del t.hops[ttl]
        t.complete = all(k in t.hops for k in range(1, top + 1))
        if t.complete:
            for ttl, hop in t.hops.items():
                if hop is not None and hop.kind == TIME_EXCEEDED:
                    self.stop_set.setdefault((hop.address, ttl), t.dest)

    def hop_list(self, dest: str) -> list[tuple[int, Answer | None]]:
        t = self.traces[dest]
        top = t.dist if t.dist is not None else max(t.hops, default=0)
        return [(ttl, t.hops.get(ttl)) for ttl in range(1, top + 1)]

    def give_up(self) -> None:
        """The time budget is spent: end every trace with what it has."""
        for t in self.traces.values():
            if t.phase != "done":
                t.phase, t.in_flight, t.complete = "done", False, False
