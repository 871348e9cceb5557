"""throughput: download a URL for at most ``max_bytes`` or ``max_seconds`` and report goodput.

Cumulative bytes are sampled about every ``sample_interval_s``.  With ``control_url`` the same
download is then made from a control target in the same task, so targeted throttling (one
service slowed, others not) shows in one record as ``goodput_ratio``.  Bytes count against the
probe's local ``max_throughput_bytes_per_hour``; when it runs out the download stops
(``stopped_by: "budget"``), and a test that cannot get a single byte of budget does not run.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from probe.classify import classify
from probe.probers.base import Context, Outcome, ParamsError, TargetForbidden, TestCannotRun
from probe.probers.http import GuardedClient, parse_url

NAME = "throughput"
VERSION = "1.0.0"
DEFAULT_TIMEOUT_S = 150.0
CHUNK = 65_536
RESERVE = 262_144


@dataclass(frozen=True)
class ThroughputParams:
    max_bytes: int = field(default=10_000_000, metadata={"help": "bytes downloaded at most per URL (1-1000000000)"})
    max_seconds: float = field(default=10.0, metadata={"help": "seconds of transfer at most per URL (0.5-60)"})
    sample_interval_s: float = field(default=0.25, metadata={"help": "seconds between samples (0.05-5)"})
    control_url: str | None = field(default=None, metadata={
        "help": "a control URL downloaded right after the target, in the same task"})
    max_redirects: int = field(default=5, metadata={"help": "redirects followed (0-30)"})
    verify_tls: bool = field(default=True, metadata={"help": "verify certificates"})

    def __post_init__(self) -> None:
        for name, low, high in (("max_bytes", 1, 1_000_000_000), ("max_seconds", 0.5, 60),
                                ("sample_interval_s", 0.05, 5), ("max_redirects", 0, 30)):
            value = getattr(self, name)
            if not low <= value <= high:
                raise ParamsError(f"{name} must be between {low} and {high}, not {value}")
        if self.control_url is not None:
            parse_url(self.control_url)


async def run(target: str, params: ThroughputParams, ctx: Context) -> Outcome:
    url = parse_url(target)
    granted = ctx.guard.reserve_bytes(min(RESERVE, params.max_bytes))
    if granted == 0:
        raise TestCannotRun("the local throughput budget (max_throughput_bytes_per_hour) is used up")
    keys: dict[str, Any] = {}
    ctx.extra["partial_keys"] = keys
    async with GuardedClient(ctx, verify_tls=params.verify_tls) as client:
        main, failure = await download(client, str(url), params, ctx, first=True, granted=granted)
        keys.update({"download": main, "goodput_bps": main["goodput_bps"]})
        if params.control_url is not None:
            control, _ = await download(client, params.control_url, params, ctx, first=False)
            keys.update({"control": control, "control_goodput_bps": control["goodput_bps"],
                         "goodput_ratio": _ratio(main["goodput_bps"], control["goodput_bps"])})
    return Outcome(keys, success=failure is None and _is_2xx(main["status"]), failure=failure)


def _is_2xx(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 6) if a is not None and b else None


async def download(client: GuardedClient, target: str, params: ThroughputParams, ctx: Context, *,
                   first: bool, granted: int = 0) -> tuple[dict[str, Any], str | None]:
    """One bounded download: keys and the failure string (None when bytes came with a 2xx status)."""
    hops: list[dict[str, Any]] = []
    keys: dict[str, Any] = {"url": target, "status": None, "bytes": 0, "transfer_s": None,
                            "goodput_bps": None, "samples": [], "stopped_by": None, "redirects": hops}
    received = 0
    t_body: float | None = None
    deadline = asyncio.get_running_loop().time() + params.max_seconds
    failure: str | None = None
    resp = None
    try:
        async with asyncio.timeout_at(deadline):
            resp, failure = await client.follow(parse_url(target), method="GET", hops=hops,
                                                max_redirects=params.max_redirects)
            if resp is None:
                return keys, failure
            keys["status"] = resp.status
            t_body = t0 = time.perf_counter()
            next_sample = t0 + params.sample_interval_s
            samples: list[list[float]] = [[0.0, 0]]
            keys["samples"] = samples
            while True:
                if received >= params.max_bytes:
                    keys["stopped_by"] = "max_bytes"
                    break
                if granted <= received:
                    granted += ctx.guard.reserve_bytes(min(RESERVE, params.max_bytes - granted))
                    if granted <= received:
                        keys["stopped_by"] = "budget"
                        break
                chunk = await resp.content.read(min(CHUNK, granted - received, params.max_bytes - received))
                now = time.perf_counter()
                if not chunk:
                    keys["stopped_by"] = "eof"
                    break
                received += len(chunk)
                if now >= next_sample:
                    samples.append([round((now - t0) * 1000, 3), received])
                    next_sample = now + params.sample_interval_s
    except TimeoutError:
        keys["stopped_by"] = "max_seconds"
        if received == 0:
            failure = "timeout"
    except TargetForbidden:
        if first:
            raise
        failure = "redirect_forbidden"
    except (aiohttp.ClientError, OSError) as exc:
        failure = classify(exc)
        keys["stopped_by"] = "error"
    finally:
        if resp is not None:
            resp.close()        # also when max_seconds cut the body short (no "Unclosed connection")
    _finish(keys, received, t_body)
    keys["failure"] = failure
    return keys, failure


def _finish(keys: dict[str, Any], received: int, t_body: float | None) -> None:
    """Close the sample list and work out goodput over the body's transfer time."""
    samples = keys["samples"]
    keys["bytes"] = received
    if not samples or t_body is None:
        return
    elapsed_ms = round((time.perf_counter() - t_body) * 1000, 3)
    if samples[-1][1] != received:
        samples.append([elapsed_ms, received])
    transfer_s = samples[-1][0] / 1000
    keys["transfer_s"] = round(transfer_s, 6)
    keys["goodput_bps"] = round(received * 8 / transfer_s, 1) if transfer_s > 0 else None
