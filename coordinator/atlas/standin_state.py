"""The stand-in's data: sample results, probes (samples + the lab's emulated ones), connection
events with their history, created one-offs.  Pure data; the HTTP/stream layer is standin.py.
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONNECTION_MSM = 7000
BUILTIN_PING_MSM = 1001
FIRST_CREATED_MSM = 90_000_000
TYPES = ("ping", "traceroute", "dns", "http", "sslcert")
BUILTINS = ((1001, "ping", "193.0.14.129"), (5001, "traceroute", "193.0.14.129"))  # k-root, like Atlas


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass
class Emulated:
    id: int
    asn_v4: int | None
    country_code: str | None
    address_v4: str | None
    connected: bool
    since: float


@dataclass
class State:
    samples: Path
    probes_file: Path | None = None
    clock: Callable[[], float] = time.time
    results: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    measurements: dict[int, dict[str, Any]] = field(default_factory=dict)
    sample_probes: list[dict[str, Any]] = field(default_factory=list)
    emulated: dict[int, Emulated] = field(default_factory=dict)
    unreachable: set[str] = field(default_factory=set)
    events: list[dict[str, Any]] = field(default_factory=list)     # connection events, in emission order
    listeners: list[Callable[[str, dict[str, Any]], None]] = field(default_factory=list)
    _mtime: float = -1.0
    _ids: Any = field(default_factory=lambda: itertools.count(FIRST_CREATED_MSM))

    def load_samples(self) -> None:
        for msm, kind, target in BUILTINS:
            self.measurements[msm] = {"id": msm, "type": kind, "af": 4, "is_oneoff": False, "status": {"id": 2},
                                      "target": target, "target_ip": target, "description": "built-in"}
            self.results.setdefault(msm, [])
        for kind in TYPES:
            for raw in read_jsonl(self.samples / f"{kind}.jsonl"):
                self.add_result(raw, notify=False)
        self.sample_probes = read_jsonl(self.samples / "probes.jsonl")

    def add_result(self, raw: dict[str, Any], *, notify: bool = True) -> None:
        msm = int(raw["msm_id"])
        self.results.setdefault(msm, []).append(raw)
        if msm not in self.measurements:
            self.measurements[msm] = {
                "id": msm, "type": raw.get("type"), "af": raw.get("af", 4), "is_oneoff": False, "status": {"id": 2},
                "target_ip": raw.get("dst_addr") or raw.get("addr"), "target": raw.get("dst_name") or raw.get("name"),
                "description": "stand-in: real sample results" if not notify else "stand-in",
            }
        if notify:
            self.emit("result", raw)

    def emit(self, channel: str, payload: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener(channel, payload)

    # -- probes ------------------------------------------------------------------------------
    def probe_objects(self) -> list[dict[str, Any]]:
        out = [dict(p) for p in self.sample_probes]
        for p in self.emulated.values():
            out.append({"id": p.id, "country_code": p.country_code, "asn_v4": p.asn_v4, "asn_v6": None,
                        "address_v4": p.address_v4, "is_anchor": False, "is_public": True, "type": "Probe",
                        "status": {"id": 1 if p.connected else 2, "name": "Connected" if p.connected else "Disconnected",
                                   "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(p.since))},
                        "tags": [{"name": "stand-in", "slug": "stand-in"}]})
        return out

    def reload_probes(self, *, force: bool = False) -> int:
        """Re-read the probes file when it changed; emit one connection event per change."""
        if self.probes_file is None:
            return 0
        try:
            mtime = self.probes_file.stat().st_mtime
            if mtime == self._mtime and not force:
                return 0
            doc = json.loads(self.probes_file.read_text())
        except (OSError, ValueError):
            return 0  # being rewritten; read again on the next tick
        self._mtime = mtime
        now = self.clock()
        emitted = 0
        self.unreachable = set(doc.get("unreachable", []))
        for p in doc.get("probes", []):
            pid, connected = int(p["id"]), bool(p.get("connected", True))
            old = self.emulated.get(pid)
            self.emulated[pid] = Emulated(pid, p.get("asn_v4"), p.get("country_code"), p.get("address_v4"),
                                          connected, now if old is None or old.connected != connected else old.since)
            if old is None and connected:
                continue  # first sight of a connected probe: it was already there
            if old is None or old.connected != connected:
                self.connection_event(pid, "connect" if connected else "disconnect", now)
                emitted += 1
        return emitted

    def connection_event(self, pid: int, event: str, ts: float) -> dict[str, Any]:
        p = self.emulated.get(pid)
        ev = {"msm_id": CONNECTION_MSM, "timestamp": int(ts), "prb_id": pid, "asn": p.asn_v4 if p else None,
              "prefix": f"{p.address_v4}/24" if p and p.address_v4 else None, "type": "connection", "event": event,
              "country_code": p.country_code if p else None}
        self.events.append(ev)
        self.emit("probestatus", ev)
        return ev

    def connected(self, pid: int) -> bool:
        p = self.emulated.get(pid)
        return bool(p and p.connected)

    # -- one-offs ----------------------------------------------------------------------------
    def select_probes(self, spec: dict[str, Any]) -> list[Emulated]:
        kind, value, wanted = spec.get("type"), str(spec.get("value", "")), int(spec.get("requested", 1))
        pool = [p for p in self.emulated.values() if p.connected]
        if kind == "country":
            pool = [p for p in pool if p.country_code == value.upper()]
        elif kind == "asn":
            pool = [p for p in pool if str(p.asn_v4) == value]
        elif kind == "probes":
            ids = {int(v) for v in value.split(",") if v.strip()}
            pool = [p for p in pool if p.id in ids]
        return sorted(pool, key=lambda p: p.id)[:wanted]

    def create(self, body: dict[str, Any]) -> list[int]:
        ids = []
        probes: list[Emulated] = []
        for spec in body.get("probes", []):
            probes.extend(p for p in self.select_probes(spec) if p not in probes)
        for definition in body.get("definitions", []):
            msm = next(self._ids)
            target = str(definition.get("target"))
            self.measurements[msm] = {"id": msm, "type": definition.get("type"), "af": definition.get("af", 4),
                                      "is_oneoff": True, "status": {"id": 4}, "target": target,
                                      "target_ip": target, "description": definition.get("description", "")}
            self.results.setdefault(msm, [])
            for p in probes:
                self.add_result(self.one_off_result(msm, definition, p))
            ids.append(msm)
        return ids

    def one_off_result(self, msm: int, definition: dict[str, Any], p: Emulated) -> dict[str, Any]:
        ok = definition.get("target") not in self.unreachable
        ts = int(self.clock())
        base = {"fw": 5080, "msm_id": msm, "prb_id": p.id, "timestamp": ts, "af": 4, "dst_addr": definition["target"],
                "dst_name": definition["target"], "from": p.address_v4, "src_addr": p.address_v4, "lts": 10,
                "proto": "ICMP", "size": 48, "group_id": msm, "msm_name": definition["type"].capitalize()}
        if definition["type"] == "ping":
            n = int(definition.get("packets", 3))
            rtts = [{"rtt": 10.0 + i} for i in range(n)] if ok else [{"x": "*"} for _ in range(n)]
            extra = ({"min": 10.0, "max": 10.0 + n - 1, "avg": 10.0 + (n - 1) / 2} if ok
                     else {"min": -1, "max": -1, "avg": -1})
            return copy.deepcopy({**base, "type": "ping", "sent": n, "rcvd": n if ok else 0, "dup": 0, "ttl": 60,
                                  "step": None, "result": rtts, **extra})
        last = ([{"from": definition["target"], "rtt": 12.5, "size": 68, "ttl": 60}] if ok
                else [{"x": "*"}, {"x": "*"}, {"x": "*"}])
        hops = [{"hop": 1, "result": [{"from": "198.18.0.1", "rtt": 0.5, "size": 76, "ttl": 64}]},
                {"hop": 2, "result": last}]
        return {**base, "type": "traceroute", "paris_id": 1, "endtime": ts + 3, "result": hops}

    def tick_builtin(self) -> int:
        """Connected emulated probes report a built-in ping (msm 1001); disconnected ones do not."""
        made = 0
        for p in self.emulated.values():
            if p.connected:
                self.add_result(self.one_off_result(BUILTIN_PING_MSM, {"type": "ping", "target": "193.0.14.129"}, p))
                made += 1
        return made
