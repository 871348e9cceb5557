"""Uploads: the outbox's oldest items, in gzip batches, signed; removed only once acknowledged.

After a failure the next attempt waits ``min(cap, base * 2**failures)`` scaled by a random factor
in [0.5, 1.0] ("equal jitter"), so probes coming back after a blackout do not stampede.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from probe.agent.client import Client, Unreachable
from probe.agent.outbox import Item, Outbox

INGEST_PATH = "/api/v1/measurements"
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 300.0


@dataclass
class UploadResult:
    outcome: str           # ok, empty, unreachable, retry, refused
    accepted: int = 0
    rejected: int = 0
    wait_s: float = 0.0    # how long to wait before the next attempt
    endpoint: str = ""     # the endpoint that answered
    items: int = 0         # items in the batch


def backoff(failures: int, rng: random.Random, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S) -> float:
    return min(cap, base * 2 ** min(failures, 30)) * rng.uniform(0.5, 1.0)


def encode(batch: list[Item]) -> bytes:
    """The wire body: each item's payload travels as the exact canonical JSON text its hash covers."""
    return gzip.compress(json.dumps({"items": [i.wire() for i in batch]}, separators=(",", ":")).encode(), compresslevel=5)


class Uploader:
    def __init__(self, client: Client, outbox: Outbox, run_blocking: Callable[..., Any],
                 batch_items: int = 2000, batch_bytes: int = 4 * 2**20, rng: random.Random | None = None):
        self.client, self.outbox, self.run_blocking = client, outbox, run_blocking
        self.batch_items, self.batch_bytes = batch_items, batch_bytes
        self.failures = 0
        self.rng = rng or random.Random()

    async def upload_once(self) -> UploadResult:
        batch: list[Item] = await self.run_blocking(self.outbox.peek, self.batch_items, self.batch_bytes)
        if not batch:
            return UploadResult("empty")
        body = await asyncio.to_thread(encode, batch)
        try:
            # recheck=False: results go where the last answer came from; polls re-probe the primary
            ans = await self.client.post(INGEST_PATH, body, content_type="application/gzip", recheck=False)
        except Unreachable as exc:
            return self._fail("unreachable: " + str(exc)[:300])
        if ans.status in (200, 409, 422) and ans.doc.get("committed"):
            rejected = {r["measurement_id"]: r.get("reason", "rejected") for r in ans.doc.get("results", [])
                        if r.get("status") == "rejected" and isinstance(r.get("measurement_id"), str)}
            await self.run_blocking(self.outbox.acknowledge, batch, rejected)
            self.failures = 0
            accepted = ans.doc.get("inserted", 0) + ans.doc.get("duplicates", 0)
            return UploadResult("ok", accepted=accepted, rejected=len(rejected), endpoint=ans.endpoint,
                                items=len(batch))
        reason = str(ans.doc.get("error", ans.doc))[:300]
        if ans.status == 413 and self.batch_items > 1:
            self.batch_items = max(1, self.batch_items // 2)
            return UploadResult(f"retry: HTTP 413 {reason}; batch size now {self.batch_items}")
        if ans.status == 429:
            wait = float(ans.doc.get("retry_after_s", 1.0))
            return UploadResult(f"retry: HTTP 429 {reason}", wait_s=min(wait, BACKOFF_CAP_S) * self.rng.uniform(1.0, 1.5))
        return self._fail(f"HTTP {ans.status} {reason}")

    def _fail(self, outcome: str) -> UploadResult:
        self.failures += 1
        return UploadResult(outcome if outcome.startswith(("unreachable", "HTTP")) else "retry: " + outcome,
                            wait_s=backoff(self.failures, self.rng))

    @staticmethod
    def now() -> float:
        return time.time()
