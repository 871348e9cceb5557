"""``python -m probe run``: poll the schedule, run its tasks, keep every result, upload.

Three loops share one outbox thread: the poller (the poll is the heartbeat; the schedule is kept
on disk and used as long as the coordinator cannot be reached), the task loop (tests through
``probe.runner.run_test`` under the volunteer's ``Guard``; each result goes to the outbox first)
and the uploader (oldest first, gzip batches, backoff with jitter).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from probe.agent import identity as ident
from probe.agent.client import Client, Unreachable
from probe.agent.metrics import Metrics
from probe.agent.outbox import DEFAULT_QUOTA_BYTES, Outbox
from probe.agent.schedule import Timetable, load_schedule, save_schedule
from probe.agent.status import OUTBOX_FILE, write_status
from probe.agent.uploader import Uploader, backoff

log = logging.getLogger("tocsin.agent")
SOFTWARE = "tocsin-probe/0.1.0"
SCHEDULE_PATH = "/api/v1/schedule"
DEFAULT_POLL_S = 60.0
UPLOAD_LINGER_S = 5.0      # after the first new result, wait this long so results travel in batches ...
LINGER_FRACTION = 0.1      # ... but never more than this share of the shortest task interval


def poll_timeout_s(poll_interval_s: float) -> float:
    """A poll that has not been answered within two poll intervals is given up and tried afresh:
    a connection attempt made during a cut would otherwise wait out TCP's SYN back-off (up to
    10 s) after the line is back, delaying the heartbeat that tells the coordinator so."""
    return min(30.0, max(3.0, 2 * poll_interval_s))


def recheck_s(poll_interval_s: float) -> float:
    """How long an endpoint that did not answer is tried after the others (docs/agent.md): about
    three polls, so a probe on its fallback (an in-country replica) is back on its primary soon
    after a cut, without paying a connection timeout on every request meanwhile."""
    return min(300.0, max(3.0, 3 * poll_interval_s))


def fallback_connect_s(poll_interval_s: float, connect_timeout_s: float) -> float:
    """The connection bound for an endpoint while a fallback remains: half a poll interval, at
    least 0.5 s and at most 3 s (the kernel answers a SYN without the server's help, so a sound
    coordinator connects far inside it; a cut one is left for the replica within a poll, before
    the replica's verdict engine could take the probe for silent)."""
    return min(connect_timeout_s, 3.0, max(0.5, poll_interval_s / 2))


def upload_linger_s(shortest_interval_s: float | None) -> float:
    """How long results gather before an upload: batches without holding a result back for a
    sizeable part of a measurement interval (a fast campaign is a fast campaign end to end)."""
    if shortest_interval_s is None:
        return UPLOAD_LINGER_S
    return max(0.0, min(UPLOAD_LINGER_S, LINGER_FRACTION * shortest_interval_s))


class Agent:
    def __init__(self, state: Path, *, quota_bytes: int = DEFAULT_QUOTA_BYTES, metrics_listen: str | None = None,
                 batch_items: int = 2000, poll_interval_s: float | None = None):
        self.state = Path(state)
        self.identity, key = ident.load(self.state)
        self.client = Client(list(self.identity.endpoints), key, self.identity.probe_id, timeout_s=30.0)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tocsin-outbox")
        self.outbox: Outbox = self._pool.submit(Outbox, self.state / OUTBOX_FILE, quota_bytes).result()
        self.uploader = Uploader(self.client, self.outbox, self.blocking, batch_items=batch_items)
        self.metrics = Metrics(metrics_listen)
        self.timetable = Timetable(salt=self.identity.probe_id)      # each probe its own phase
        self.poll_override = poll_interval_s
        self.schedule = load_schedule(self.state) or {}
        self.probe = dict(self.schedule.get("probe") or self.identity.probe)
        self.wake_upload = asyncio.Event()
        self.reconnected = asyncio.Event()
        self.urgent = False                 # a failed result is waiting: upload without the linger
        self.woken_at = 0.0                 # monotonic time a test's success last cut an upload backoff short
        self.rng = random.Random()
        self.status: dict[str, Any] = {"pid": os.getpid(), "started_ts": time.time(), "tests_run": 0, "tests_failed": 0,
                                       "tests_could_not_run": 0, "dropped_total": 0}
        self.running: set[asyncio.Task[None]] = set()

    async def blocking(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _save_status(self) -> None:
        self.status["clock_offset_s"] = self.client.clock_offset_s
        self.status["tasks"] = len(self.timetable.tasks)
        write_status(self.state, self.status)

    async def run(self, stop: asyncio.Event, max_runtime_s: float | None = None) -> None:
        from probe.config import load_config
        from probe.guard import Guard

        cfg_path = self.state / "probe.toml"
        config = load_config(cfg_path if cfg_path.exists() else None)
        self.guard = Guard(config)
        self.slots = asyncio.Semaphore(config.max_concurrent_tests)
        self.timetable.update(self.schedule.get("tasks", []), time.time())
        waiter: asyncio.Task[bool] | None = None
        loops = [asyncio.create_task(c) for c in (self.poll_loop(stop), self.task_loop(stop), self.upload_loop(stop))]
        try:
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait([waiter, *loops], timeout=max_runtime_s, return_when=asyncio.FIRST_COMPLETED)
            for t in loops:
                if t.done() and t.exception():
                    raise t.exception()  # type: ignore[misc]
        finally:
            stop.set()
            for t in loops:
                t.cancel()
            if waiter is not None:
                waiter.cancel()
            for t in list(self.running):  # let running tests finish writing to the outbox
                try:
                    await asyncio.wait_for(asyncio.shield(t), timeout=5)
                except (TimeoutError, asyncio.CancelledError):
                    t.cancel()
            await asyncio.gather(*loops, *([waiter] if waiter else []), return_exceptions=True)
            await self.client.close()
            self._save_status()
            await self.blocking(self.outbox.close)
            self._pool.shutdown(wait=True)
            self.metrics.close()

    async def poll_once(self) -> bool:
        stats = await self.blocking(self.outbox.stats)
        body = json.dumps({"buffered": stats["buffered"], "buffered_since_ts": stats["buffered_since_ts"],
                             "software": SOFTWARE}).encode()
        self.status["last_poll_ts"] = started = time.time()
        try:
            ans = await self.client.post(SCHEDULE_PATH, body, timeout_s=poll_timeout_s(self.poll_interval_s()))
        except Unreachable as exc:
            self.status["last_poll_outcome"] = "unreachable: " + str(exc)[:200]
            log.info("poll unreachable after %.2f s: %s", time.time() - started, str(exc)[:300])
            return False
        log.info("poll HTTP %d from %s in %.2f s", ans.status, ans.endpoint, time.time() - started)
        if ans.status != 200 or not isinstance(ans.doc.get("tasks"), list):
            self.status["last_poll_outcome"] = f"HTTP {ans.status} {ans.doc.get('error', '')}"[:200]
            return False
        self.schedule = ans.doc
        self.probe = dict(ans.doc.get("probe") or self.probe)
        await asyncio.to_thread(save_schedule, self.state, ans.doc)
        self.timetable.update(ans.doc["tasks"], time.time())
        self.status.update(last_poll_outcome="ok", endpoint=ans.endpoint)
        if self.uploader.failures:  # the coordinator is back: do not sit out the upload backoff
            self.uploader.failures = 0
            self.reconnected.set()
        return True

    def poll_interval_s(self) -> float:
        return self.poll_override or float(self.schedule.get("poll_interval_s") or DEFAULT_POLL_S)

    async def poll_loop(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            ok = await self.poll_once()
            failures = 0 if ok else failures + 1
            interval = self.poll_interval_s()
            # a connection attempt (poll or upload) made during a cut is given up as quickly, not
            # left in TCP's SYN back-off after the line is back
            self.client.connect_timeout_s = min(10.0, poll_timeout_s(interval))
            # an upload stuck on a connection the cut left dangling waits no longer than a poll would
            self.client.fallback_after_s = self.client.connect_timeout_s
            self.client.fallback_connect_s = fallback_connect_s(interval, self.client.connect_timeout_s)
            self.client.recheck_s = recheck_s(interval)
            wait = interval * self.rng.uniform(0.9, 1.1) if ok else min(interval, backoff(failures, self.rng))
            self._save_status()
            await _sleep_or_stop(stop, wait)

    async def task_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = time.time()
            for task in self.timetable.take_due(now, now + self.client.clock_offset_s):
                t = asyncio.create_task(self.run_task(task))
                self.running.add(t)
                t.add_done_callback(self.running.discard)
            nxt = self.timetable.next_due()
            await _sleep_or_stop(stop, 1.0 if nxt is None else max(0.01, min(1.0, nxt - time.time())))

    async def run_task(self, task: dict[str, Any]) -> None:
        from probe.probers.base import TestCannotRun
        from probe.runner import run_test

        envelope = {"probe_id": self.identity.probe_id, "campaign_id": task["campaign_id"], "task_id": task["task_id"],
                    "probe_cc": self.probe.get("cc"), "probe_asn": self.probe.get("asn"),
                    "probe_access": self.probe.get("access"), "annotations": dict(task.get("annotations") or {})}
        async with self.slots:
            try:
                record = await run_test(task["test"], task["target"], task.get("params") or {}, guard=self.guard,
                                        timeout_s=task.get("timeout_s"), envelope=envelope)
            except TestCannotRun as exc:
                self.status["tests_could_not_run"] += 1
                self.metrics.test(task["test"], "could_not_run")
                log.warning("task %s (%s %s) could not run: %s", task["task_id"], task["test"], task["target"], exc)
                return
        evicted = await self.blocking(self.outbox.append, record)   # first: the result is safe on disk
        self.status["tests_run"] += 1
        outcome = "success" if record["success"] else "failure"
        self.status["tests_failed"] += 0 if record["success"] else 1
        self.urgent = self.urgent or not record["success"]
        if record["success"] and self.uploader.failures and time.monotonic() - self.woken_at >= self.poll_interval_s():
            # a test got through after uploads failed: the line may be back - do not sit out the
            # upload backoff until the next poll (at most once per poll interval)
            self.woken_at = time.monotonic()
            self.reconnected.set()
        self.metrics.test(task["test"], outcome)
        if evicted:
            self.status["dropped_total"] += len(evicted)
            self.metrics.dropped(len(evicted))
            log.error("outbox quota: evicted %d oldest results (reported to the coordinator)", len(evicted))
        self.wake_upload.set()

    async def upload_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.time()
            self.urgent = False
            result = await self.uploader.upload_once()
            if result.outcome != "empty":
                log.info("upload %s: %d items to %s in %.2f s", result.outcome[:300], result.items,
                         result.endpoint or "-", time.time() - started)
                self.status.update(last_upload_ts=time.time(), last_upload_outcome=result.outcome,
                                   last_upload_accepted=result.accepted, last_upload_rejected=result.rejected)
                if result.outcome == "ok":
                    self.metrics.uploaded(time.time())
                self.metrics.outbox(await self.blocking(self.outbox.count))
                self._save_status()
            if result.outcome == "ok":
                continue
            self.wake_upload.clear()
            if result.outcome == "empty":
                await _wait_event_or_stop(stop, self.wake_upload, 5.0)
                # gather what else finishes shortly: one signed batch instead of one request per
                # result - unless a test failed: news of a failure travels at once
                if not self.urgent:
                    await _sleep_or_stop(stop, upload_linger_s(self.timetable.shortest_interval_s()))
            else:
                self.reconnected.clear()
                await _wait_event_or_stop(stop, self.reconnected, result.wait_s)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
    except TimeoutError:
        pass


async def _wait_event_or_stop(stop: asyncio.Event, event: asyncio.Event, timeout: float) -> None:
    waits = [asyncio.create_task(stop.wait()), asyncio.create_task(event.wait())]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
