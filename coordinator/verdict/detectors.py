"""Pure detector functions over windows of observations.  No SQL, no clock, no I/O.

A probe's *state* in a window says what it could reach (``ok``, ``dark``, ``domestic_only``);
``silent``/``alive`` come from heartbeats (see :mod:`coordinator.verdict.signals_inside`).
:func:`down_scopes` turns a set of down (or slow) probes into the widest scopes they cover:
country, access type, ASN - never a lower scope inside a wider one.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from coordinator.verdict.observations import REACHABILITY_TESTS, Obs
from coordinator.verdict.settings import Settings

STATES = ("ok", "dark", "domestic_only", "silent", "alive", "unknown")
DOWN_STATES = ("dark", "domestic_only", "silent")


@dataclass(frozen=True)
class ProbeState:
    status: str                               # one of STATES
    domestic_rate: float | None = None
    international_rate: float | None = None
    observations: int = 0
    up_groups: tuple[str, ...] = ()           # domestic target groups still reached (allow-list shape)
    down_groups: tuple[str, ...] = ()         # domestic target groups not reached
    evidence: tuple[str, ...] = ()            # failed measurement ids

    @property
    def down(self) -> bool:
        return self.status in DOWN_STATES

    @property
    def measured(self) -> bool:
        return self.status in ("ok", "dark", "domestic_only")


def _rate(items: Sequence[Obs]) -> float | None:
    return sum(1 for o in items if o.ok) / len(items) if items else None


def reachability_state(window: Iterable[Obs], s: Settings) -> ProbeState:
    """What one probe could reach in one window, from its ping/tcp/http results."""
    reach = [o for o in window if o.test in REACHABILITY_TESTS]
    if len(reach) < s.min_observations:
        return ProbeState("unknown", observations=len(reach))
    dom = [o for o in reach if o.domestic]
    intl = [o for o in reach if not o.domestic]
    overall, drate, irate = _rate(reach), _rate(dom), _rate(intl)
    assert overall is not None
    failed = tuple(o.mid for o in reach if not o.ok)
    if overall <= s.dark_max_success:
        return ProbeState("dark", drate, irate, len(reach), evidence=failed)
    if (irate is not None and drate is not None and len(intl) >= 2 and len(dom) >= 2
            and irate <= s.dark_max_success and drate >= s.domestic_min_success):
        return domestic_only_state(reach, s)
    if ambiguous(dom, intl, s):
        return ProbeState("unknown", drate, irate, len(reach))
    return ProbeState("ok", drate, irate, len(reach))


def domestic_only_state(reach: Sequence[Obs], s: Settings) -> ProbeState:
    """The ``domestic_only`` state of a window whose shape is known to be that (the domestic
    groups still reached and those not: the allow-list shape)."""
    dom = [o for o in reach if o.domestic]
    by_group: dict[str, list[bool]] = defaultdict(list)
    for o in dom:
        by_group[o.group].append(o.ok)
    up = tuple(sorted(g for g, oks in by_group.items() if any(oks)))
    down = tuple(sorted(g for g, oks in by_group.items() if not any(oks)))
    return ProbeState("domestic_only", _rate(dom), _rate([o for o in reach if not o.domestic]), len(reach), up, down,
                      tuple(o.mid for o in reach if not o.ok))


def ambiguous(dom: Sequence[Obs], intl: Sequence[Obs], s: Settings) -> bool:
    """Neither dark, nor domestic-only, nor evidence of health: the world does not answer and
    domestic targets fail too, though not all of them, with too few world results to call it
    domestic-only.  A window straddling a change (a blackout giving way to an allow-list) or one
    whose slow failures are still in flight (a connection timing out is the last result to
    arrive) - not health.  A probe that measures no world target is judged on what it measures."""
    if not intl or any(o.ok for o in intl) or all(o.ok for o in dom):
        return False
    drate = _rate(dom)
    return len(intl) < 2 or (drate is not None and drate < s.domestic_min_success)


def success_rate(window: Iterable[Obs]) -> tuple[float | None, int, tuple[str, ...]]:
    """Success rate of reachability results (e.g. the outside view of a country), count, failed ids."""
    reach = [o for o in window if o.test in REACHABILITY_TESTS]
    return _rate(reach), len(reach), tuple(o.mid for o in reach if not o.ok)


# --- throughput --------------------------------------------------------------------------------

def goodput_estimate(o: Obs, typical_bytes: float | None) -> float | None:
    """Goodput of a throughput result; for a download cut short by the timeout, an upper bound."""
    if o.goodput_bps is not None and o.ok:
        return o.goodput_bps
    if o.failure == "timeout" and typical_bytes and o.runtime_s > 0:
        return typical_bytes * 8 / o.runtime_s
    return None


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def is_slow(goodput: float, baseline: Sequence[float], s: Settings) -> bool | None:
    """True when goodput is far below the baseline: <= throttle_median_ratio x median (the OONI
    ">= 10x slower" floor) and <= throttle_low_ratio x the baseline's low quantile (below ordinary noise).
    None when the baseline is too short to judge."""
    if len(baseline) < s.min_baseline_samples:
        return None
    return (goodput <= s.throttle_median_ratio * statistics.median(baseline)
            and goodput <= s.throttle_low_ratio * quantile(baseline, s.baseline_low_quantile))


# --- per-target tampering ----------------------------------------------------------------------

def dns_tampered(o: Obs, reference: set[str] | frozenset[str], s: Settings) -> bool:
    """NXDOMAIN or a bogon for a name, or answers that share nothing with what it resolves to elsewhere."""
    if o.failure in s.dns_tamper_failures:
        return True
    return bool(o.ok and o.answers and reference and not set(o.answers) & set(reference))


def http_blocked(o: Obs, s: Settings) -> bool:
    """A reset, premature close, protocol garbage, timeout or HTTP 451 where a page was expected."""
    return (not o.ok and o.failure in s.http_block_failures) or o.http_status == 451


def per_target(failing_groups: set[str], measured_groups: set[str], s: Settings) -> bool:
    """True when a probe's failures are few enough to be about those targets, not about the probe."""
    return bool(failing_groups) and len(measured_groups) >= 3 and (
        len(failing_groups) / len(measured_groups) <= s.target_max_fraction)


# --- scopes ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProbeInfo:
    probe: str
    cc: str
    asn: int | None
    access: str


@dataclass(frozen=True)
class ScopeHit:
    scope_type: str             # country, access, asn
    scope: str                  # "KZ", "KZ/mobile", "AS64602"
    asn: int | None
    access: str | None
    probes: tuple[str, ...]     # the down (or slow) probes in it
    asns: tuple[int, ...]


def _hit(scope_type: str, scope: str, probes: Iterable[ProbeInfo], asn: int | None = None,
         access: str | None = None) -> ScopeHit:
    ps = sorted(probes, key=lambda p: p.probe)
    return ScopeHit(scope_type, scope, asn, access, tuple(p.probe for p in ps),
                    tuple(sorted({p.asn for p in ps if p.asn is not None})))


def down_scopes(cc: str, probes: Mapping[str, ProbeInfo], down: Mapping[str, bool | None], s: Settings,
                single_ok: set[int] | frozenset[int] = frozenset()) -> list[ScopeHit]:
    """The widest scopes of country ``cc`` whose known probes are (mostly) down.

    ``down[p]`` is True (down), False (up) or None (unknown: not counted).  An ASN needs two down
    probes, or one whose ASN is in ``single_ok`` (measured dark, or Atlas agrees): one silent
    Raspberry Pi is not an outage.  The country needs ``scope_fraction`` of every end-user access type.  An access type needs two down probes and every one of its
    (at least two) ASNs mostly down.  The country level counts end-user networks (not datacenters).
    """
    every = [p for p in probes.values() if p.cc == cc]
    known = [p for p in every if down.get(p.probe) is not None]
    if not known:
        return []
    enduser = [p for p in known if p.access != "datacenter"] or known
    all_enduser = [p for p in every if p.access != "datacenter"] or every
    d_end = [p for p in enduser if down[p.probe]]
    every_kind = all(any(p.access == k for p in enduser)           # known, and mostly down
                     and sum(1 for p in d_end if p.access == k)
                     >= s.scope_fraction * sum(1 for p in enduser if p.access == k)
                     for k in {p.access for p in all_enduser})
    if (len(d_end) >= 2 and len(d_end) / len(enduser) >= s.scope_fraction and every_kind
            and 2 * len(enduser) >= len(all_enduser)            # we know about most of the country
            and len({p.asn for p in d_end}) >= min(2, len({p.asn for p in all_enduser}))):
        return [_hit("country", cc, d_end)]
    by_asn: dict[int | None, list[ProbeInfo]] = defaultdict(list)
    for p in known:
        by_asn[p.asn].append(p)

    def mostly(asn: int | None) -> bool:
        members = by_asn[asn]
        return sum(1 for p in members if down[p.probe]) / len(members) >= s.scope_fraction

    def asn_down(asn: int | None) -> bool:
        d = [p for p in by_asn[asn] if down[p.probe]]
        return mostly(asn) and (len(d) >= 2 or (asn is not None and asn in single_ok))

    hits: list[ScopeHit] = []
    covered: set[int | None] = set()
    for access in sorted({p.access for p in known}):
        asns = sorted({p.asn for p in known if p.access == access}, key=lambda a: a or 0)
        n_down = sum(1 for p in known if p.access == access and down[p.probe])
        if len(asns) >= 2 and n_down >= 2 and all(mostly(a) for a in asns):
            hits.append(_hit("access", f"{cc}/{access}", [p for p in known if p.access == access and down[p.probe]],
                             access=access))
            covered.update(asns)
    for asn in sorted(by_asn, key=lambda a: a or 0):
        if asn not in covered and asn is not None and asn_down(asn):
            members = by_asn[asn]
            hits.append(_hit("asn", f"AS{asn}", [p for p in members if down[p.probe]], asn=asn,
                             access=members[0].access))
    return hits
