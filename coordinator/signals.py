"""The common currency between signal providers and the verdict engine.

Our own probes' results, outside-in results, heartbeats and RIPE Atlas all become
:class:`Signal` observations.  Providers are pure functions over stored rows; the engine in
``coordinator/verdict/`` fuses them.  An Atlas provider lives in ``coordinator/atlas/signals.py``
with the signature ``atlas_signals(conn, since_ts: float, until_ts: float) -> list[Signal]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SIGNAL_CLASSES = (
    "inside",              # in-country Tocsin probes' own results
    "outside",             # outside vantage points' results towards in-country targets
    "heartbeat",           # probes falling silent (schedule polls stop)
    "atlas_disconnect",    # RIPE Atlas probe disconnection bursts (built-in measurement 7000)
    "atlas_reachability",  # RIPE Atlas ping/traceroute results towards or from the country
)


@dataclass(frozen=True)
class Signal:
    signal_class: str                 # one of SIGNAL_CLASSES
    scope_type: str                   # country, asn, access, target
    scope: str                        # "KZ", "AS9198", "KZ/mobile", "KZ|example.kz"
    start_ts: float                   # measurement time the observation covers
    end_ts: float
    state: str                        # "down", "up" or "degraded"
    strength: float                   # 0..1, how sure this one source is
    cc: str | None = None
    asn: int | None = None
    evidence: tuple[str, ...] = field(default_factory=tuple)   # measurement ids / atlas refs
