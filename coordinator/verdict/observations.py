"""Measurement rows as small observations the pure detectors read, and the probe interval.

Only the fields the detectors need are kept.  The pinned annotations (``target_category``,
``target_cc``, ``target_group``, ``vantage``) come from the agent; records without them (e.g.
imported from elsewhere) fall back to ``vantage`` from the probe's and target's countries.
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

REACHABILITY_TESTS = ("ping", "tcp", "http")


@dataclass(frozen=True, slots=True)
class Obs:
    ts: float                   # start_ts, epoch seconds (measurement time)
    mid: str                    # measurement_id
    probe: str
    cc: str | None              # probe's country
    asn: int | None
    access: str | None
    test: str
    target: str
    ok: bool
    failure: str | None
    runtime_s: float
    category: str               # domestic, international, control ("" when unknown)
    target_cc: str | None
    group: str                  # target_group, else the target itself
    vantage: str                # inside, outside ("" when unknown)
    goodput_bps: float | None = None
    bytes: int | None = None
    http_status: int | None = None
    answers: tuple[str, ...] = ()
    received_ts: float | None = None    # coordinator clock when it arrived: the probe could reach us

    @property
    def inside(self) -> bool:
        return self.vantage == "inside"

    @property
    def domestic(self) -> bool:
        return self.category == "domestic"


def _keys(text: Any) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    try:
        value = orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def obs_from_row(row: Any) -> Obs:
    """``row``: a measurements row (sqlite3.Row or a mapping with the same keys)."""
    ann = _keys(row["annotations"])
    keys = _keys(row["test_keys"])
    test = str(row["test_name"])
    target_cc = ann.get("target_cc") if isinstance(ann.get("target_cc"), str) else None
    vantage = str(ann["vantage"]) if ann.get("vantage") in ("inside", "outside") else ""
    if not vantage and target_cc and row["probe_cc"]:
        vantage = "inside" if row["probe_cc"] == target_cc else "outside"
    goodput = keys.get("goodput_bps") if test == "throughput" else None
    nbytes = None
    if test == "throughput" and isinstance(keys.get("download"), dict):
        nbytes = keys["download"].get("bytes")
    status = None
    if test == "http":
        hops = keys.get("redirects")
        if isinstance(hops, list) and hops and isinstance(hops[-1], dict):
            status = hops[-1].get("status")
    answers: tuple[str, ...] = ()
    if test == "dns" and isinstance(keys.get("answers"), list):
        answers = tuple(sorted(str(a.get("value")) for a in keys["answers"]
                               if isinstance(a, dict) and a.get("type") in ("A", "AAAA")))
    return Obs(
        ts=float(row["start_ts"]), mid=str(row["measurement_id"]), probe=str(row["probe_id"] or ""),
        cc=row["probe_cc"], asn=row["probe_asn"], access=row["probe_access"], test=test,
        target=str(row["target"]), ok=bool(row["success"]), failure=row["failure"],
        runtime_s=float(row["runtime_s"]), category=str(ann.get("target_category") or ""),
        target_cc=target_cc, group=str(ann.get("target_group") or row["target"]), vantage=vantage,
        goodput_bps=float(goodput) if isinstance(goodput, (int, float)) else None,
        bytes=int(nbytes) if isinstance(nbytes, int) else None,
        http_status=int(status) if isinstance(status, int) else None, answers=answers,
        received_ts=_received(row),
    )


def _received(row: Any) -> float | None:
    try:
        value = row["received_ts"]
    except (KeyError, IndexError):
        return None
    return float(value) if value is not None else None


def derive_interval(obs: Iterable[Obs] | Iterable[tuple[Any, ...]], default: float = 300.0) -> float:
    """The campaign's probe interval: median spacing of one probe's measurements of one target.

    Rounded (to 0.1 s below a minute, to 1 s above) so that the value, and so every window and
    event id derived from it, does not wobble when a few more measurements arrive.
    """
    last: dict[tuple[str, str, str], float] = {}
    gaps: list[float] = []
    items = [(o.probe, o.test, o.target, o.ts) if isinstance(o, Obs) else tuple(o) for o in obs]
    for probe, test, target, ts in sorted(items, key=lambda x: x[3]):
        key = (probe, test, target)
        if key in last and ts - last[key] > 0.05:
            gaps.append(ts - last[key])
        last[key] = ts
    if len(gaps) < 3:
        return default
    med = statistics.median(gaps)
    return round(med, 1) if med < 60 else float(round(med))


def heartbeat_spacing(beats: Mapping[str, list[float]]) -> dict[str, float]:
    """Median spacing of each probe's schedule polls (probes with fewer than 3 polls are left out)."""
    out = {}
    for probe, ts in beats.items():
        gaps = [b - a for a, b in itertools.pairwise(ts) if b > a]
        if len(gaps) >= 2:
            out[probe] = statistics.median(gaps)
    return out


def group_by_probe(obs: Iterable[Obs]) -> dict[str, list[Obs]]:
    out: dict[str, list[Obs]] = defaultdict(list)
    for o in obs:
        out[o.probe].append(o)
    return out
