"""Tocsin ``ping`` and ``traceroute`` records in the RIPE Atlas result format.

The output parses with ``ripe.atlas.sagan`` unchanged (``Result.get(line)``).  Mapping:

* ``fw`` is ``ATLAS_FW`` (the modern, 5000-series layout; sagan applies no legacy fix-ups),
* ``prb_id`` / ``msm_id`` are stable integers derived from the Tocsin probe id / campaign id
  (:func:`atlas_int`); the Tocsin ids themselves are kept under the extra key ``tocsin``,
  which sagan ignores,
* ``timestamp`` is the record's ``start_time`` in whole seconds,
* RTTs are rounded to 3 decimals (as Atlas probes report them),
* ``from`` and ``src_addr`` (the probe's own address) are never written.

Test keys read (aliases in brackets): ping (``probe/probers/ping.py``) - ``packets`` [``replies``]
list of ``{rtt_ms, ttl}`` (``rtt_ms`` null for a lost packet), ``resolved_address`` [``address``,
``dst_addr``, ``ip``], ``size_bytes`` [``size``, ``packet_size``], and when there is no packet
list ``sent``/``received`` and ``min_rtt_ms``/``mean_rtt_ms``/``max_rtt_ms``; traceroute
(``probe/probers/traceroute.py``) - ``protocol``, ``resolved_address``, ``hops`` list of ``{ttl,
address, rtt_ms, icmp_type, icmp_code}`` (one answer per hop), or hops holding several answers
under ``responses`` [``replies``, ``probes``, ``packets``], and ``paris_id`` [``flow_id``].
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

from probe.record import time_to_epoch

ATLAS_FW = 5120
ATLAS_TESTS = ("ping", "traceroute")
_UNREACH: dict[tuple[Any, Any], str] = {(3, 0): "N", (3, 1): "H", (3, 13): "A", (3, 2): "P", (3, 3): "p"}


def atlas_int(text: str | None) -> int:
    """A stable positive 28-bit integer for a Tocsin id (0 for none)."""
    if not text:
        return 0
    return int(hashlib.sha256(text.encode()).hexdigest()[:7], 16)


def _pick(d: dict[str, Any], *names: str) -> Any:
    for name in names:
        if d.get(name) is not None:
            return d[name]
    return None


def _rtt(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return round(float(value), 3)
    except (TypeError, ValueError):
        return None


def _af(address: str | None) -> int | None:
    if not address:
        return None
    try:
        return ipaddress.ip_address(address).version
    except ValueError:
        return None


def _dest(record: dict[str, Any]) -> tuple[str | None, str]:
    keys = record["test_keys"]
    address = _pick(keys, "resolved_address", "address", "dst_addr", "ip", "destination_address")
    name = record["target"]
    if address is None and _af(name):
        address = name
    return (str(address) if address is not None else None), name


def _common(record: dict[str, Any], kind: str) -> dict[str, Any]:
    address, name = _dest(record)
    out: dict[str, Any] = {
        "fw": ATLAS_FW,
        "type": kind,
        "timestamp": int(time_to_epoch(record["start_time"])),
        "prb_id": atlas_int(record.get("probe_id")),
        "msm_id": atlas_int(record.get("campaign_id")),
        "dst_name": name,
        "tocsin": {k: record.get(k) for k in ("measurement_id", "probe_id", "campaign_id", "start_time",
                                              "probe_cc", "probe_asn", "probe_access", "failure")},
    }
    if address is not None:
        out["dst_addr"] = address
    af = _af(address)
    if af:
        out["af"] = af
    return out


def ping_to_atlas(record: dict[str, Any]) -> dict[str, Any]:
    keys = record["test_keys"]
    out = _common(record, "ping")
    out["proto"] = "ICMP"
    packets = _pick(keys, "packets", "replies")
    result: list[dict[str, Any]] = []
    rtts: list[float] = []
    if isinstance(packets, list):
        for packet in packets:
            rtt = _rtt(packet.get("rtt_ms")) if isinstance(packet, dict) else None
            if rtt is None:
                result.append({"x": "*"})
                continue
            item: dict[str, Any] = {"rtt": rtt}
            ttl = packet.get("ttl")
            if isinstance(ttl, int) and not isinstance(ttl, bool):
                item["ttl"] = ttl
            result.append(item)
            rtts.append(rtt)
        sent, received = len(result), len(rtts)
    else:
        sent = int(_pick(keys, "sent", "packets_sent") or 0)
        received = int(_pick(keys, "received", "packets_received") or 0)
    out["result"] = result
    out["sent"], out["rcvd"], out["dup"] = sent, received, int(keys.get("duplicates") or 0)
    size = _pick(keys, "size_bytes", "size", "packet_size")
    if isinstance(size, int):
        out["size"] = size
    if rtts:
        out["min"], out["max"] = min(rtts), max(rtts)
        out["avg"] = round(sum(rtts) / len(rtts), 3)
    else:
        lo = _rtt(_pick(keys, "min_rtt_ms", "rtt_min_ms", "min_ms"))
        avg = _rtt(_pick(keys, "mean_rtt_ms", "rtt_mean_ms", "avg_ms", "mean_ms"))
        hi = _rtt(_pick(keys, "max_rtt_ms", "rtt_max_ms", "max_ms"))
        out["min"], out["avg"], out["max"] = (lo, avg, hi) if avg is not None else (-1, -1, -1)
    return out


def _reply(reply: dict[str, Any]) -> dict[str, Any]:
    address = _pick(reply, "address", "from", "ip")
    rtt = _rtt(reply.get("rtt_ms"))
    if address is None and rtt is None:
        return {"x": "*"}
    item: dict[str, Any] = {}
    if address is not None:
        item["from"] = str(address)
    if rtt is not None:
        item["rtt"] = rtt
    for src, dst in (("size", "size"), ("ttl", "ttl"), ("reply_ttl", "ttl")):
        value = reply.get(src)
        if isinstance(value, int) and not isinstance(value, bool):
            item[dst] = value
    code = _UNREACH.get((reply.get("icmp_type"), reply.get("icmp_code")))
    if code:
        item["err"] = code
    return item


def traceroute_to_atlas(record: dict[str, Any]) -> dict[str, Any]:
    keys = record["test_keys"]
    out = _common(record, "traceroute")
    proto = str(keys.get("protocol") or "udp").upper()
    out["proto"] = "TCP" if proto.startswith("TCP") else proto
    paris = _pick(keys, "paris_id", "flow_id")
    if isinstance(paris, int):
        out["paris_id"] = paris
    if isinstance(keys.get("size"), int):
        out["size"] = keys["size"]
    hops_out = []
    for index, hop in enumerate(keys.get("hops") or [], start=1):
        if not isinstance(hop, dict):
            continue
        replies = _pick(hop, "responses", "replies", "probes", "packets")
        if not isinstance(replies, list):
            replies = [hop]
        hop_no = _pick(hop, "ttl", "hop")
        results = [_reply(r) for r in replies if isinstance(r, dict)] or [{"x": "*"}]
        hops_out.append({"hop": int(hop_no) if isinstance(hop_no, int) else index, "result": results})
    out["result"] = hops_out
    out["endtime"] = int(time_to_epoch(record["start_time"]) + float(record.get("runtime_s") or 0))
    return out


def to_atlas(record: dict[str, Any]) -> dict[str, Any] | None:
    """The Atlas form of a ping or traceroute record; ``None`` for other tests."""
    if record["test_name"] == "ping":
        return ping_to_atlas(record)
    if record["test_name"] == "traceroute":
        return traceroute_to_atlas(record)
    return None
