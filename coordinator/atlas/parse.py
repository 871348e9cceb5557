"""Atlas result -> the values ``ripe.atlas.sagan`` parses out of it, as a plain dict.

``ping`` and ``traceroute`` (the high-volume types) are parsed here directly, mirroring sagan
2.0.1's rules field for field (the golden tests compare every sample with sagan's own output);
``dns``, ``http`` and ``sslcert`` go through sagan itself (abuf decoding, certificates) and its
objects are flattened.  A result that sagan would refuse raises :class:`MalformedResult`.
"""

from __future__ import annotations

import warnings
from calendar import timegm
from datetime import UTC, datetime
from typing import Any

from ripe.atlas.sagan import Result
from ripe.atlas.sagan.base import ParsingDict

PROTOCOLS = {"ICMP": "ICMP", "I": "ICMP", "UDP": "UDP", "U": "UDP", "TCP": "TCP", "T": "TCP"}
PACKET_ERRORS = {"N": "Network unreachable", "H": "Destination unreachable",
                 "A": "Administratively prohibited", "P": "Protocol unreachable", "p": "Port unreachable"}
REQUIRED = ("timestamp", "msm_id", "prb_id", "fw", "type")
TYPES = ("ping", "traceroute", "dns", "http", "sslcert")


class MalformedResult(ValueError):
    """The result cannot be parsed at all; ``str(error)`` is the reason counted by imports."""


def _ensure(data: dict[str, Any], key: str, kind: Any, default: Any = None) -> Any:
    try:
        return kind(data[key])
    except (TypeError, ValueError, KeyError):
        return default


def _int(data: dict[str, Any], key: str) -> Any:
    value = data.get(key)
    return value if type(value) is int else _ensure(data, key, int)


def _float(data: dict[str, Any], key: str) -> Any:
    value = data.get(key)
    return value if type(value) is float else _ensure(data, key, float)


def _str(data: dict[str, Any], key: str) -> Any:
    value = data.get(key)
    return value if type(value) is str else _ensure(data, key, str)


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    values = sorted(values)
    n = len(values)
    if n % 2:
        return values[n // 2]
    return (values[n // 2] + values[n // 2 - 1]) / 2.0


def _common(raw: dict[str, Any], kind: str) -> dict[str, Any]:
    ts = raw["timestamp"]
    created = datetime.fromtimestamp(ts, UTC)
    fw = _int(raw, "fw")
    lts = _int(raw, "lts")
    out = {
        "type": kind, "firmware": fw, "measurement_id": _int(raw, "msm_id"),
        "probe_id": _int(raw, "prb_id"), "created": created.isoformat(),
        "created_timestamp": ts if type(ts) is int else timegm(created.timetuple()), "origin": _str(raw, "from"),
        "seconds_since_sync": None if lts is not None and lts < 0 else lts,
        "group_id": _int(raw, "group_id"), "is_error": False, "error_message": None,
        "is_malformed": fw == 0,
    }
    for key in ("dnserr", "err"):
        if key in raw:
            out["is_error"] = True
            out["error_message"] = raw[key]
    return out


def _protocol(raw: dict[str, Any], out: dict[str, Any]) -> str | None:
    proto = _ensure(raw, "proto", str)
    if proto is None:
        return None
    if proto not in PROTOCOLS:
        out["is_malformed"] = True
        return None
    return PROTOCOLS[proto]


def parse_ping(raw: dict[str, Any]) -> dict[str, Any]:
    out = _common(raw, "ping")
    fw = out["firmware"] or 0
    af = _int(raw, "af")
    avg, mx, mn = _float(raw, "avg"), _float(raw, "max"), _float(raw, "min")
    size = _int(raw, "size")
    dst_name, dst_addr = _str(raw, "dst_name"), _str(raw, "dst_addr")
    if avg is None or avg < 0:
        avg = mx = mn = None
    if 0 < fw < 4460:
        af = _ensure(raw, "pf", int)
    protocol = _protocol(raw, out)
    if 0 < fw < 4460:
        dst_addr, dst_name, size = _ensure(raw, "addr", str), _ensure(raw, "name", str), None
    elif 0 < fw < 4570 and protocol == "ICMP":
        if size is None:
            raise MalformedResult("ping: ICMP result of an old firmware without size")
        size -= 8
    if af is None and dst_addr:
        af = 6 if ":" in dst_addr else 4
    if avg:
        avg = round(avg, 3)
    default_ttl = _int(raw, "ttl")
    default_src = raw.get("src_addr", raw.get("srcaddr"))
    packets = []
    rtts = []
    for p in _ensure(raw, "result", list, []):
        if not isinstance(p, dict):
            raise MalformedResult("ping: a packet is not an object")
        rtt = ttl = None
        if "rtt" in p:
            try:
                rtt = round(float(p["rtt"]), 3)
            except (TypeError, ValueError):
                raise MalformedResult(f"ping: rtt {p['rtt']!r} is not a number") from None
        if rtt:
            ttl = default_ttl
            if "ttl" in p:
                try:
                    ttl = int(p["ttl"])
                except (TypeError, ValueError):
                    raise MalformedResult(f"ping: ttl {p['ttl']!r} is not an integer") from None
        dup = "dup" in p
        if rtt is not None and not dup:
            rtts.append(rtt)
        packets.append({"rtt": rtt, "ttl": ttl, "dup": dup,
                        "source_address": p.get("src_addr", p.get("srcaddr", default_src))})
    out.update({
        "af": af, "protocol": protocol, "destination_address": dst_addr, "destination_name": dst_name,
        "packets_sent": _int(raw, "sent"), "packets_received": _int(raw, "rcvd"),
        "packet_size": size, "duplicates": _int(raw, "dup"), "rtt_min": mn,
        "rtt_median": _median(rtts), "rtt_max": mx, "rtt_average": avg, "step": _int(raw, "step"),
        "packets": packets,
    })
    return out


def _trace_packet(p: dict[str, Any]) -> dict[str, Any]:
    # Inline fast paths for well-typed values; anything else takes sagan's ``kind(value)`` rule.
    rtt = p.get("rtt")
    if type(rtt) is not float:
        rtt = _ensure(p, "rtt", float)
    if rtt:
        rtt = round(rtt, 3)
    origin = p.get("from")
    if type(origin) is not str:
        origin = _ensure(p, "from", str)
    ttl = p.get("ttl")
    if type(ttl) is not int:
        ttl = _ensure(p, "ttl", int)
    size = p.get("size")
    if type(size) is not int:
        size = _ensure(p, "size", int)
    ittl = p.get("ittl", 1)
    if type(ittl) is not int:
        ittl = _ensure(p, "ittl", int, 1)
    err = _str(p, "err") if "err" in p else None
    icmp = _ensure(p, "icmpext", dict) if "icmpext" in p else None
    return {
        "origin": origin, "rtt": rtt, "ttl": ttl, "size": size, "is_error": bool(err),
        "error_message": PACKET_ERRORS.get(err, err) if err else None,
        "arrived_late_by": 0,  # packets carrying "late" are left out of the hop, as sagan does
        "internal_ttl": ittl, "mpls": _ensure(icmp, "obj", list) if icmp else None,
    }


def _hop(raw_hop: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(raw_hop, dict):
        raise MalformedResult("traceroute: a hop is not an object")
    error = _ensure(raw_hop, "error", str)
    packets = []
    rtts = []
    for rp in raw_hop.get("result") or ():
        if not isinstance(rp, dict):
            raise MalformedResult("traceroute: a hop packet is not an object")
        if "late" in rp:
            continue
        packet = _trace_packet(rp)
        if packet["rtt"]:
            rtts.append(packet["rtt"])
        packets.append(packet)
    return {"index": _ensure(raw_hop, "hop", int), "median_rtt": _median(rtts), "is_error": bool(error),
            "error_message": error or None, "packets": packets}


def parse_traceroute(raw: dict[str, Any]) -> dict[str, Any]:
    out = _common(raw, "traceroute")
    fw = out["firmware"] or 0
    af = _ensure(raw, "pf", int) if 0 < fw < 4460 else _ensure(raw, "af", int)
    try:
        end = datetime.fromtimestamp(raw["endtime"], UTC).isoformat()
    except (TypeError, ValueError, KeyError, OverflowError, OSError):
        end = None
    dst = _ensure(raw, "dst_addr", str)
    out.update({"af": af, "protocol": _protocol(raw, out), "destination_address": dst,
                "destination_name": _ensure(raw, "dst_name", str), "source_address": _ensure(raw, "src_addr", str),
                "paris_id": _ensure(raw, "paris_id", int), "size": _ensure(raw, "size", int), "end_time": end})
    hops_raw = raw.get("result")
    hops: list[dict[str, Any]] = []
    state: dict[str, Any] = {"total_hops": 0, "last_median_rtt": None, "destination_ip_responded": False,
             "last_hop_responded": False, "is_success": False, "last_hop_errors": []}
    if not isinstance(hops_raw, list):
        out["is_malformed"] = True
    else:
        hops = [_hop(h) for h in hops_raw]
        state["total_hops"] = len(hops)
        for hop in reversed(hops):
            if hop["median_rtt"]:
                state["last_median_rtt"] = hop["median_rtt"]
                break
        if hops:
            _last_hop(hops[-1], dst, state)
    out.update(state)
    out["hops"] = hops
    return out


def _last_hop(last: dict[str, Any], dst: str | None, state: dict[str, Any]) -> None:
    packets = last["packets"]
    state["destination_ip_responded"] = bool(dst) and any(p["origin"] and p["origin"] == dst for p in packets)
    state["last_hop_responded"] = any(p["rtt"] for p in packets)
    state["is_success"] = any(p["rtt"] and not p["is_error"] for p in packets)
    if not state["is_success"]:
        if last["is_error"]:
            state["last_hop_errors"] = [last["error_message"]]
        else:
            state["last_hop_errors"] = [p["error_message"] for p in packets if p["is_error"]]


_ANSWER_ATTRS = ("address", "target", "algorithm", "type_covered", "signer_name", "key", "flags", "preference",
                 "mail_exchanger", "mname", "rname", "serial", "data", "tag")
_COMMON = ("firmware", "measurement_id", "probe_id", "origin", "seconds_since_sync", "group_id",
           "is_error", "error_message", "is_malformed")


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _answer(ans: Any) -> dict[str, Any]:
    out = {"section_class": type(ans).__name__, "name": ans.name, "ttl": ans.ttl, "type": ans.type,
           "klass": ans.klass}
    for attr in _ANSWER_ATTRS:
        if hasattr(ans, attr):
            out[attr] = getattr(ans, attr)
    return out


def _abuf(abuf: Any) -> dict[str, Any] | None:
    if abuf is None:
        return None
    h = abuf.header
    edns = abuf.edns0
    return {
        "return_code": h.return_code if h else None, "id": h.id if h else None,
        "flags": {k: getattr(h, k) for k in ("qr", "aa", "tc", "rd", "ra", "ad", "cd")} if h else None,
        "questions": [{"name": q.name, "type": q.type, "klass": q.klass} for q in abuf.questions],
        "answers": [_answer(a) for a in abuf.answers],
        "authorities": [_answer(a) for a in abuf.authorities],
        "additionals": [_answer(a) for a in abuf.additionals],
        "edns0": None if edns is None else {
            "udp_size": edns.udp_size, "do": edns.do,
            "options": [{"code": o.code, "name": o.name, "nsid": o.nsid} for o in edns.options]},
        "is_error": abuf.is_error, "error_message": abuf.error_message, "is_malformed": abuf.is_malformed,
    }


def _fields(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: _iso(getattr(obj, n)) for n in names}


def _via_sagan(raw: dict[str, Any]) -> dict[str, Any]:
    try:
        with warnings.catch_warnings():  # sagan reads cryptography's deprecated naive datetimes
            warnings.simplefilter("ignore")
            r = Result.get(raw, on_error=ParsingDict.ACTION_IGNORE, on_malformation=ParsingDict.ACTION_IGNORE)
            out = _flatten(r)
    except Exception as exc:  # sagan raises many kinds on bad input; all mean "cannot parse"
        raise MalformedResult(f"{raw.get('type')}: {type(exc).__name__}: {exc}"[:200]) from None
    return out


def _flatten(r: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": r.type}
    out.update(_fields(r, _COMMON[:3]))
    out["created"] = r.created.isoformat()
    out["created_timestamp"] = r.created_timestamp
    out.update(_fields(r, _COMMON[3:]))
    if r.type == "dns":
        out["responses_total"] = r.responses_total
        out["responses"] = [dict(_fields(x, ("af", "destination_address", "source_address", "protocol",
                                             "response_time", "response_size", "response_id")),
                                 abuf=_abuf(x.abuf), is_error=x.is_error, error_message=x.error_message)
                            for x in r.responses]
    elif r.type == "http":
        out.update(_fields(r, ("uri", "method")))
        out["responses"] = [_fields(x, ("af", "code", "response_time", "head_size", "body_size", "version",
                                        "destination_address", "source_address", "is_error", "error_message"))
                            for x in r.responses]
    else:
        out.update(_fields(r, ("af", "destination_address", "destination_name", "source_address", "port",
                               "method", "version", "response_time", "time_to_connect", "is_self_signed",
                               "alert")))
        if out["alert"] is not None:
            out["alert"] = _fields(r.alert, ("level", "description"))
        out["certificates"] = [_fields(c, ("subject_cn", "subject_o", "subject_c", "issuer_cn", "issuer_o",
                                           "issuer_c", "valid_from", "valid_until", "checksum_sha256"))
                               for c in r.certificates]
    return out


def parse_result(raw: Any) -> dict[str, Any]:
    """The sagan values of one raw Atlas result (a decoded JSON object)."""
    if not isinstance(raw, dict):
        raise MalformedResult(f"a result must be a JSON object, not {type(raw).__name__}")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise MalformedResult(f"not an Atlas result: missing {', '.join(missing)}")
    kind = raw["type"].lower() if isinstance(raw["type"], str) else None
    if kind not in TYPES:
        raise MalformedResult(f"unsupported result type {raw['type']!r}")
    try:
        if kind == "ping":
            return parse_ping(raw)
        if kind == "traceroute":
            return parse_traceroute(raw)
    except MalformedResult:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError, OSError) as exc:
        raise MalformedResult(f"{kind}: {type(exc).__name__}: {exc}"[:200]) from None
    return _via_sagan(raw)
