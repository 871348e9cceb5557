"""Atlas signals for the verdict engine: probe disconnection bursts and reachability.

``atlas_signals(conn, since_ts, until_ts) -> list[Signal]`` (pinned) reads stored rows only.

``atlas_disconnect`` - per country and per ASN, in buckets of ``bucket_s``: the number of probes
*down* at the bucket's end (last connection event a disconnect) is compared with the scope's own
baseline (the share of probe-time spent down over ``baseline_s`` before, smoothed toward
``baseline_rate``) by a one-sided binomial test.  The rule is density-aware by construction: with
4 probes, 3 down is already wildly unlikely; with 400, it takes dozens.  It fires only when the
tail probability is below ``alpha``, at least ``min(min_disconnects, N)`` (and never fewer than 2)
probes are down and they are at least ``min_fraction`` of the scope - so one probe dying never
fires.  An ``up`` signal is given when at least that many down probes reconnect in a bucket.
A scope with a single Atlas probe never fires alone; when that probe is down, the bucket gets a
``degraded`` signal (only if that probe was up at least half of ``baseline_s`` before the bucket:
a long-dead probe says nothing about now), which the verdict engine uses only to corroborate an
outage that at least two of our own probes already show in that scope.

``atlas_reachability`` - per country and bucket, Atlas ping/traceroute results towards targets in
the country (``target_cc``) or from probes in it (``probe_cc``): ``down`` when at most 20% of at
least 3 results succeeded, ``up`` at 80% or more, ``degraded`` between.
"""

from __future__ import annotations

import bisect
import json
import math
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from coordinator.atlas.settings import Settings
from coordinator.signals import Signal

SMOOTHING = 100.0  # pseudo probe-buckets of prior behind the baseline estimate
EVIDENCE_MAX = 50


def binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space (exact, no scipy)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    p = min(max(p, 1e-12), 1 - 1e-12)
    lp, lq = math.log(p), math.log1p(-p)
    total = 0.0
    for i in range(k, n + 1):
        total += math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq)
    return min(1.0, total)


@dataclass
class Probe:
    prb_id: int
    cc: str | None
    asn: int | None
    times: list[float] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def down_at(self, t: float) -> bool:
        i = bisect.bisect_right(self.times, t)
        return i > 0 and self.events[i - 1] == "disconnect"

    def down_time(self, a: float, b: float) -> float:
        """Seconds spent down in [a, b)."""
        total, state, since = 0.0, self.down_at(a), a
        lo, hi = bisect.bisect_right(self.times, a), bisect.bisect_left(self.times, b)
        for t, ev in zip(self.times[lo:hi], self.events[lo:hi], strict=True):
            if state:
                total += t - since
            state, since = ev == "disconnect", t
        return total + (b - since if state else 0.0)


def _load(conn: sqlite3.Connection, start: float, until: float) -> dict[int, Probe]:
    probes: dict[int, Probe] = {}
    for prb, cc, asn in conn.execute("SELECT prb_id, cc, asn_v4 FROM atlas_probes WHERE status IS NULL OR "
                                     "status NOT IN ('Abandoned', 'Never Connected', 'Archived')"):
        probes[prb] = Probe(prb, cc, asn)
    rows = conn.execute("SELECT prb_id, asn, cc, event, ts FROM atlas_connection_events WHERE ts < ? AND "
                        "(ts >= ? OR ts = (SELECT MAX(ts) FROM atlas_connection_events e2 WHERE "
                        "e2.prb_id = atlas_connection_events.prb_id AND e2.ts < ?)) ORDER BY ts, event DESC",
                        (until, start, start))
    for prb, asn, cc, event, ts in rows:
        p = probes.get(prb)
        if p is None:
            p = probes[prb] = Probe(prb, cc, asn)
        p.cc = p.cc or cc
        p.asn = p.asn or asn
        p.times.append(ts)
        p.events.append(event)
    return probes


def _scopes(probes: dict[int, Probe]) -> dict[tuple[str, str], list[Probe]]:
    out: dict[tuple[str, str], list[Probe]] = defaultdict(list)
    for p in probes.values():
        if p.cc:
            out[("country", p.cc)].append(p)
        if p.asn:
            out[("asn", f"AS{p.asn}")].append(p)
    return out


def disconnect_signals(conn: sqlite3.Connection, since_ts: float, until_ts: float,
                       s: Settings | None = None) -> list[Signal]:
    s = s or Settings()
    bucket = s.bucket_s
    first = math.floor(since_ts / bucket) * bucket
    probes = _load(conn, first - s.baseline_s, until_ts)
    out: list[Signal] = []
    for (scope_type, scope), members in sorted(_scopes(probes).items()):
        n = len(members)
        need = max(2, min(s.min_disconnects, n))
        b0 = first
        while b0 < until_ts:
            b1 = b0 + bucket
            base_a = b0 - s.baseline_s
            down_time = sum(p.down_time(base_a, b0) for p in members)
            q = (down_time / bucket + s.baseline_rate * SMOOTHING) / (n * s.baseline_s / bucket + SMOOTHING)
            down = [p for p in members if p.down_at(b1 - 1e-6)]
            back = [p for p in members if p.down_at(b0 - 1e-6) and not p.down_at(b1 - 1e-6)]
            k = len(down)
            tail = binom_sf(k, n, q)
            cc = members[0].cc if scope_type == "country" else None
            asn = int(scope[2:]) if scope_type == "asn" else None
            if n == 1 and k == 1 and members[0].down_time(base_a, b0) <= 0.5 * s.baseline_s:
                # the scope's only Atlas probe went down (it was mostly up before: a long-dead one
                # says nothing about now): too thin alone, but it can corroborate an outage other
                # classes already see (docs/atlas.md, "degraded")
                out.append(Signal("atlas_disconnect", scope_type, scope, b0, b1, "degraded", 0.25, cc=cc,
                                  asn=asn, evidence=(f"atlas:7000:{down[0].prb_id}:{int(_last_disconnect(down[0], b1))}",)))
            elif k >= need and k / n >= s.min_fraction and tail < s.alpha:
                refs = tuple(f"atlas:7000:{p.prb_id}:{int(_last_disconnect(p, b1))}" for p in down[:EVIDENCE_MAX])
                strength = round(min(1.0, (k / n) / 0.5) * (1.0 - tail), 4)
                out.append(Signal("atlas_disconnect", scope_type, scope, b0, b1, "down", strength, cc=cc,
                                  asn=asn, evidence=refs))
            elif len(back) >= need and k / n < s.min_fraction:
                refs = tuple(f"atlas:7000:{p.prb_id}:connect" for p in back[:EVIDENCE_MAX])
                out.append(Signal("atlas_disconnect", scope_type, scope, b0, b1, "up",
                                  round(min(1.0, len(back) / n), 4), cc=cc, asn=asn, evidence=refs))
            b0 = b1
    return out


def _last_disconnect(p: Probe, before: float) -> float:
    i = bisect.bisect_right(p.times, before)
    while i > 0:
        i -= 1
        if p.events[i] == "disconnect":
            return p.times[i]
    return before


def reachability_signals(conn: sqlite3.Connection, since_ts: float, until_ts: float,
                         s: Settings | None = None, min_results: int = 3) -> list[Signal]:
    s = s or Settings()
    groups: dict[tuple[str, float], list[tuple[str, bool]]] = defaultdict(list)
    rows = conn.execute("SELECT measurement_id, start_ts, success, probe_cc, annotations FROM measurements "
                        "WHERE source = 'atlas' AND test_name IN ('ping', 'traceroute') AND start_ts >= ? "
                        "AND start_ts < ?", (since_ts, until_ts))
    for mid, ts, success, probe_cc, ann_text in rows:
        ann = json.loads(ann_text) if ann_text else {}
        ccs = {c for c in (ann.get("target_cc"), probe_cc) if c}
        b0 = math.floor(ts / s.bucket_s) * s.bucket_s
        for cc in ccs:
            groups[(cc, b0)].append((mid, bool(success)))
    out = []
    for (cc, b0), results in sorted(groups.items()):
        if len(results) < min_results:
            continue
        rate = sum(ok for _, ok in results) / len(results)
        state = "down" if rate <= 0.2 else "up" if rate >= 0.8 else "degraded"
        strength = round(min(1.0, len(results) / 10) * (1 - rate if state != "up" else rate), 4)
        refs = tuple(mid for mid, ok in results if ok == (state == "up"))[:EVIDENCE_MAX]
        out.append(Signal("atlas_reachability", "country", cc, b0, b0 + s.bucket_s, state, strength, cc=cc,
                          evidence=refs))
    return out


_configured: list[Settings] = []
_by_file: dict[str, Settings] = {}


def use_settings(settings: Settings) -> None:
    """Make :func:`atlas_signals` use these ``[atlas]`` thresholds (the service and CLI call this)."""
    _configured[:] = [settings]


def settings_for(conn: sqlite3.Connection) -> Settings:
    """Thresholds set by :func:`use_settings`, else the ``[atlas]`` section of the coordinator.toml
    (and ``TOCSIN_ATLAS__*``) beside the database file, else the defaults."""
    if _configured:
        return _configured[0]
    try:
        path = next((r[2] for r in conn.execute("PRAGMA database_list") if r[1] == "main"), "")
    except sqlite3.Error:
        path = ""
    if path not in _by_file:
        from coordinator.config import ConfigError, load_config

        try:
            section = load_config(None, data_dir=Path(path).parent).section("atlas") if path else Settings()
        except (ConfigError, KeyError):
            section = Settings()
        _by_file[path] = section if isinstance(section, Settings) else Settings()
    return _by_file[path]


def atlas_signals(conn: sqlite3.Connection, since_ts: float, until_ts: float) -> list[Signal]:
    """Every Atlas signal for measurement time [since_ts, until_ts) (pinned interface)."""
    settings = settings_for(conn)
    return disconnect_signals(conn, since_ts, until_ts, settings) + reachability_signals(conn, since_ts, until_ts,
                                                                                         settings)
