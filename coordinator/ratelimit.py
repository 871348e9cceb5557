"""Per-probe token buckets: requests and records, refilled continuously."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class Bucket:
    rate: float          # tokens per second
    burst: float         # capacity
    tokens: float
    stamp: float

    def take(self, n: float, now: float) -> float:
        """Take ``n`` tokens; return 0 on success, else the seconds to wait before retrying."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if n > self.burst:
            n = self.burst  # a batch larger than the burst passes once the bucket is full
        if self.tokens >= n:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate if self.rate > 0 else 3600.0


class RateLimiter:
    """One request bucket and one record bucket per key (the probe id)."""

    def __init__(self, requests_per_s: float, burst_requests: int, records_per_s: float, burst_records: int):
        self.req = (requests_per_s, float(burst_requests))
        self.rec = (records_per_s, float(burst_records))
        self._buckets: dict[str, tuple[Bucket, Bucket]] = {}

    def _pair(self, key: str, now: float) -> tuple[Bucket, Bucket]:
        pair = self._buckets.get(key)
        if pair is None:
            pair = (Bucket(self.req[0], self.req[1], self.req[1], now), Bucket(self.rec[0], self.rec[1], self.rec[1], now))
            self._buckets[key] = pair
        return pair

    def request(self, key: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        return self._pair(key, now)[0].take(1, now)

    def records(self, key: str, n: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        return self._pair(key, now)[1].take(n, now)
