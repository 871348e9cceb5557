"""``[verdict]`` settings: every threshold of the verdict engine, in one dataclass.

Durations are in units of the campaign's probe interval (``*_intervals``), derived from the data
(median spacing of one probe's measurements of one target), so the same settings suit a lab
campaign measuring every 3 s and a field campaign measuring every 5 minutes.  Each field's
comment is its documentation (docs/verdicts.md is tested against these names).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

DETECTOR_VERSION = "verdict-1.0"


@dataclass
class Settings:
    tick_fraction: float = 1 / 3           # evaluation step, as a fraction of the probe interval
    window_intervals: float = 1.0          # trailing window a probe's reachability state is computed over
    throughput_window_intervals: float = 1.5   # trailing window for throughput (throttling) judgements
    min_observations: int = 3              # reachability results a probe needs in a window to have a state
    dark_max_success: float = 0.1          # success rate at or below which a probe (or the outside view) is dark
    domestic_min_success: float = 0.25     # domestic success rate at or above which a cut-off probe is domestic-only
    silence_factor: float = 2.0            # a probe is silent after this many of its median heartbeat spacings
    scope_fraction: float = 0.66           # share of a scope's probes that must be down (or slow) for the scope
    confirm_min_probes: int = 3            # probes that, across confirm_min_asns ASNs, confirm on their own
    confirm_min_asns: int = 2              # ASNs that must agree for single-class confirmation
    onset_ticks: int = 2                   # consecutive ticks a finding needs before an event is suspected
    confirmed_onset_ticks: int = 1         # ... an outage finding that already has independent support
    resolve_intervals: float = 1.0         # a scope must look healthy this long before its event is resolved
    throttle_resolve_intervals: float = 1.5    # the same for throttling (sparser, noisier evidence)
    throttle_median_ratio: float = 0.1     # goodput at or below this share of the baseline median is slow (OONI floor)
    throttle_low_ratio: float = 0.5        # ... and at or below this share of the baseline's low quantile
    baseline_low_quantile: float = 0.05    # the low quantile of healthy goodput ordinary noise stays above
    slow_fraction: float = 0.66            # share of a probe's judged throughput results that must be slow
    control_max_slow: float = 0.34         # targeted: the control's slow share on the same probes stays below this
    outside_max_slow: float = 0.5          # probes outside the country slow this often too: not a throttle
    baseline_samples: int = 30             # recent healthy goodput samples kept per probe and target (x4 pooled)
    min_baseline_samples: int = 8          # healthy samples needed before goodput is judged at all
    target_min_probes: int = 2             # probes that must see a per-target problem (DNS, HTTP)
    targeted_min_probes: int = 3           # probes that must see one target slow while the control is fine
    target_max_fraction: float = 0.34      # a probe failing more than this share of its targets is not per-target
    lookback_intervals: float = 40.0       # history loaded before a re-evaluated range (baselines, open events)
    evidence_max: int = 200                # measurement ids linked to one event at most
    poll_s: float = 1.0                    # how often the service looks for new data (sooner when uploads commit)
    dns_tamper_failures: list[str] = field(default_factory=lambda: ["dns_nxdomain", "dns_bogon_answer"])
    # add "timeout" to also catch silent drops after the handshake (noisy on congested links)
    http_block_failures: list[str] = field(default_factory=lambda: [
        "connection_reset", "eof_error", "http_protocol_error"])

    def __post_init__(self) -> None:
        for name in ("tick_fraction", "window_intervals", "throughput_window_intervals", "silence_factor",
                     "resolve_intervals", "throttle_resolve_intervals", "lookback_intervals", "poll_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"verdict.{name} must be > 0")
        for name in ("dark_max_success", "domestic_min_success", "scope_fraction", "throttle_median_ratio",
                     "throttle_low_ratio", "baseline_low_quantile", "target_max_fraction", "slow_fraction", "control_max_slow",
                     "outside_max_slow"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"verdict.{name} must be between 0 and 1")
        for name in ("min_observations", "confirm_min_probes", "confirm_min_asns", "baseline_samples",
                     "min_baseline_samples", "target_min_probes", "targeted_min_probes", "evidence_max",
                     "onset_ticks", "confirmed_onset_ticks"):
            if getattr(self, name) < 1:
                raise ValueError(f"verdict.{name} must be >= 1")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def from_config(config: object) -> Settings:
    try:
        section = config.section("verdict")  # type: ignore[attr-defined]
    except (AttributeError, KeyError):
        section = None
    return section if isinstance(section, Settings) else Settings()
