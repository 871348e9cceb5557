"""Baselines that an outage cannot drag down.

Observations are fed in measurement-time order.  Each throughput result is judged against the
baseline as it stood *before* it; only results judged healthy (not slow) enter the baseline, so a
throttling episode never lowers the norm it is measured against (the baseline is frozen while
the suspicion lasts).  The same holds for DNS answers: a tampered answer never becomes a
reference.  Robust statistics only: medians and low quantiles of the most recent samples.
"""

from __future__ import annotations

import statistics
from collections import defaultdict, deque

from coordinator.verdict.detectors import dns_tampered, goodput_estimate, is_slow
from coordinator.verdict.observations import Obs
from coordinator.verdict.settings import Settings


class Baselines:
    def __init__(self, s: Settings) -> None:
        self.s = s
        self._goodput: dict[tuple[str, str], deque[float]] = defaultdict(lambda: deque(maxlen=s.baseline_samples))
        self._pooled: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=4 * s.baseline_samples))
        self._bytes: dict[str, deque[int]] = defaultdict(lambda: deque(maxlen=s.baseline_samples))
        self._answers: dict[str, set[str]] = defaultdict(set)
        self.slow: dict[str, bool] = {}          # measurement id -> judged slow (throughput)
        self.ratio: dict[str, float] = {}        # measurement id -> goodput / baseline median
        self.tampered: dict[str, bool] = {}      # measurement id -> judged tampered (dns)

    def goodput_baseline(self, o: Obs) -> list[float]:
        """Healthy goodput to the target from every probe (a pooled low tail is robust to one
        probe's noise); the probe's own history when the pool is still short."""
        pooled = list(self._pooled[o.group])
        return pooled if len(pooled) >= self.s.min_baseline_samples else list(self._goodput[(o.probe, o.group)])

    def typical_bytes(self, group: str) -> float | None:
        values = self._bytes.get(group)
        return float(statistics.median(values)) if values else None

    def reference_answers(self, name: str) -> set[str]:
        return self._answers.get(name, set())

    def feed(self, o: Obs) -> None:
        """Judge one observation against the baseline so far, then let it in if it was healthy."""
        if o.test == "throughput":
            self._feed_throughput(o)
        elif o.test == "dns":
            ref = self.reference_answers(o.target)
            bad = dns_tampered(o, ref, self.s)
            self.tampered[o.mid] = bad
            if o.ok and not bad and o.answers and len(self._answers[o.target]) < 64:
                self._answers[o.target].update(o.answers)

    def _feed_throughput(self, o: Obs) -> None:
        g = goodput_estimate(o, self.typical_bytes(o.group))
        if g is None:
            return
        base = self.goodput_baseline(o)
        slow = is_slow(g, base, self.s)
        if slow is False and not (o.ok and o.goodput_bps is not None):
            slow = None          # an upper bound can show a download slow, never show it healthy
        if slow is not None:
            self.slow[o.mid] = slow
            med = statistics.median(base)
            self.ratio[o.mid] = g / med if med > 0 else 0.0
        if o.ok and o.goodput_bps is not None and not slow:
            self._goodput[(o.probe, o.group)].append(o.goodput_bps)
            self._pooled[o.group].append(o.goodput_bps)
            if o.bytes:
                self._bytes[o.group].append(o.bytes)
