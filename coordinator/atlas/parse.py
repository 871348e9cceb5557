"""Atlas result -> the values ``ripe.atlas.sagan`` parses out of it, as a plain dict.

Every result is parsed by sagan itself (the class ``Result.get`` picks for its type, on the decoded
object: no second JSON decode) and the attributes of sagan's objects are copied into plain dicts,
with sagan's names (the golden tests compare every shared sample with sagan's own output).  A
result that sagan refuses raises :class:`MalformedResult`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from ripe.atlas.sagan.base import ParsingDict, ResultParseError
from ripe.atlas.sagan.dns import DnsResult
from ripe.atlas.sagan.http import HttpResult
from ripe.atlas.sagan.ping import PingResult
from ripe.atlas.sagan.ssl import SslResult
from ripe.atlas.sagan.traceroute import TracerouteResult

REQUIRED = ("timestamp", "msm_id", "prb_id", "fw", "type")
_REQUIRED = frozenset(REQUIRED)
TYPES = ("ping", "traceroute", "dns", "http", "sslcert")


class MalformedResult(ValueError):
    """The result cannot be parsed at all; ``str(error)`` is the reason counted by imports."""


_PING_NAMES = ("af", "protocol", "destination_address", "destination_name", "packets_sent", "packets_received",
               "packet_size", "duplicates", "rtt_min", "rtt_median", "rtt_max", "rtt_average", "step")


_RAW = attrgetter("raw_data")
_DICT = {dict}


def _all_objects(parsed: list[Any]) -> bool:
    """Whether every sagan object in ``parsed`` was made from a JSON object (C-level: no loop frames)."""
    return set(map(type, map(_RAW, parsed))) <= _DICT


def _trace_packets(packets: list[Any]) -> list[dict[str, Any]]:
    if not _all_objects(packets):
        raise MalformedResult("a hop packet is not an object")  # sagan would make it all None
    return [{"origin": p.origin, "rtt": p.rtt, "ttl": p.ttl, "size": p.size, "is_error": p.is_error,
             "error_message": p.error_message, "arrived_late_by": p.arrived_late_by,
             "internal_ttl": p.internal_ttl,
             "mpls": None if p.icmp_header is None else p.icmp_header.objects}
            for p in packets]


def _traceroute(r: Any) -> dict[str, Any]:
    if not _all_objects(r.hops):
        raise MalformedResult("a hop is not an object")  # sagan would make it an empty hop
    end = r.end_time
    return {
        "af": r.af, "protocol": r.protocol, "destination_address": r.destination_address,
        "destination_name": r.destination_name, "source_address": r.source_address, "paris_id": r.paris_id,
        "size": r.size, "end_time": None if end is None else end.isoformat(), "total_hops": r.total_hops,
        "last_median_rtt": r.last_median_rtt, "destination_ip_responded": r.destination_ip_responded,
        "last_hop_responded": r.last_hop_responded, "is_success": r.is_success,
        "last_hop_errors": list(r.last_hop_errors),
        "hops": [{"index": h.index, "median_rtt": h.median_rtt, "is_error": h.is_error,
                  "error_message": h.error_message, "packets": _trace_packets(h.packets)} for h in r.hops],
    }


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


_COMMON_VALUES = attrgetter(*_COMMON)
# sagan's ``type`` property (the class name, computed on every read) of each type's class
_SAGAN_TYPE = {"ping": "ping", "traceroute": "traceroute", "dns": "dns", "http": "http", "sslcert": "ssl"}


_TWO_DIGITS = [f"{i:02d}" for i in range(60)]
_DAYS: dict[int, str] = {}   # day number -> "YYYY-MM-DDT"


def _utc_iso(ts: int) -> str:
    """``datetime.fromtimestamp(ts, UTC).isoformat()`` of an integer timestamp (sagan's ``created``),
    without isoformat's printf: the day's text is kept, the time of day is looked up."""
    day, sec = divmod(ts, 86400)
    date = _DAYS.get(day)
    if date is None:
        if len(_DAYS) >= 4096:
            _DAYS.clear()
        date = _DAYS[day] = datetime.fromtimestamp(day * 86400, UTC).isoformat()[:11]
    hour, sec = divmod(sec, 3600)
    minute, sec = divmod(sec, 60)
    return f"{date}{_TWO_DIGITS[hour]}:{_TWO_DIGITS[minute]}:{_TWO_DIGITS[sec]}+00:00"


def _common(r: Any, ts: Any, kind: str) -> dict[str, Any]:
    out = dict(zip(_COMMON, _COMMON_VALUES(r), strict=True))
    out["type"] = _SAGAN_TYPE[kind]
    if type(ts) is int:   # sagan made ``created`` of this integer (it refuses years it cannot make)
        out["created"] = _utc_iso(ts)
        # sagan's property is timegm(created.timetuple()): the timestamp itself
        out["created_timestamp"] = ts
    else:
        out["created"] = r.created.isoformat()
        out["created_timestamp"] = r.created_timestamp
    return out


def _dns(r: Any) -> dict[str, Any]:
    return {"responses_total": r.responses_total,
            "responses": [dict(_fields(x, ("af", "destination_address", "source_address", "protocol",
                                           "response_time", "response_size", "response_id")),
                               abuf=_abuf(x.abuf), is_error=x.is_error, error_message=x.error_message)
                          for x in r.responses]}


def _http(r: Any) -> dict[str, Any]:
    out = _fields(r, ("uri", "method"))
    out["responses"] = [_fields(x, ("af", "code", "response_time", "head_size", "body_size", "version",
                                    "destination_address", "source_address", "is_error", "error_message"))
                        for x in r.responses]
    return out


def _sslcert(r: Any) -> dict[str, Any]:
    out = _fields(r, ("af", "destination_address", "destination_name", "source_address", "port", "method",
                      "version", "response_time", "time_to_connect", "is_self_signed", "alert"))
    if out["alert"] is not None:
        out["alert"] = _fields(r.alert, ("level", "description"))
    out["certificates"] = [_fields(c, ("subject_cn", "subject_o", "subject_c", "issuer_cn", "issuer_o",
                                       "issuer_c", "valid_from", "valid_until", "checksum_sha256"))
                           for c in r.certificates]
    return out


# each type's values besides _common's (a ping's are both at once: _ping_all)
_TYPE_VALUES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "traceroute": _traceroute, "dns": _dns, "http": _http, "sslcert": _sslcert}


# The class ``Result.get`` picks for each type, called directly (``Result.get`` runs an import
# statement on every call).
_CLASSES: dict[str, type] = {"ping": PingResult, "traceroute": TracerouteResult, "dns": DnsResult,
                             "http": HttpResult, "sslcert": SslResult}


_PING_ALL = _COMMON + _PING_NAMES
_PING_ALL_VALUES = attrgetter(*_PING_ALL)
# PingResult's instance attributes that are not values (created and packets are replaced)
_PING_NOT_VALUES = ("raw_data", "_on_error", "_on_malformation", "bundle")
_PING_DICT_LEN = len(_PING_ALL) + 2


def _ping_all(raw: dict[str, Any]) -> dict[str, Any]:
    """The sagan values of a ping.  Every value is an instance attribute of sagan's PingResult (no
    property among them), so its ``__dict__`` copied is one C call, ~2 µs less than getting the 22
    attributes into a new dict; when the attributes are not the expected ones (another sagan), they
    are read one by one (the tests compare the two ways on every sample)."""
    r = PingResult(raw, on_error=ParsingDict.ACTION_IGNORE, on_malformation=ParsingDict.ACTION_IGNORE)
    out = r.__dict__.copy()
    for name in _PING_NOT_VALUES:
        out.pop(name, None)
    if len(out) != _PING_DICT_LEN or "created" not in out or "packets" not in out:
        out = dict(zip(_PING_ALL, _PING_ALL_VALUES(r), strict=True))
    return _ping_rest(r, raw, out)


def _ping_by_name(raw: dict[str, Any]) -> dict[str, Any]:
    """:func:`_ping_all`, every attribute read by name (what the tests compare it with)."""
    r = PingResult(raw, on_error=ParsingDict.ACTION_IGNORE, on_malformation=ParsingDict.ACTION_IGNORE)
    return _ping_rest(r, raw, dict(zip(_PING_ALL, _PING_ALL_VALUES(r), strict=True)))


def _ping_rest(r: Any, raw: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    out["type"] = "ping"
    ts = raw["timestamp"]
    if ts.__class__ is int:   # as in _common
        out["created"] = _utc_iso(ts)
        out["created_timestamp"] = ts
    else:
        out["created"] = r.created.isoformat()
        out["created_timestamp"] = r.created_timestamp
    out["packets"] = [{"rtt": p.rtt, "ttl": p.ttl, "dup": p.dup, "source_address": p.source_address}
                      for p in r.packets]
    return out


def _sagan(raw: dict[str, Any], kind: str) -> dict[str, Any]:
    if kind == "ping":
        return _ping_all(raw)
    if kind == "traceroute":  # no warnings to silence: skip the (per-call) filter copy
        r = _CLASSES[kind](raw, on_error=ParsingDict.ACTION_IGNORE, on_malformation=ParsingDict.ACTION_IGNORE)
    else:
        with warnings.catch_warnings():  # sagan reads cryptography's deprecated naive datetimes
            warnings.simplefilter("ignore")
            r = _CLASSES[kind](raw, on_error=ParsingDict.ACTION_IGNORE, on_malformation=ParsingDict.ACTION_IGNORE)
    out = _common(r, raw["timestamp"], kind)
    out.update(_TYPE_VALUES[kind](r))
    return out


def parse_result(raw: Any) -> dict[str, Any]:
    """The sagan values of one raw Atlas result (a decoded JSON object, which sagan parses as is)."""
    if not isinstance(raw, dict):
        raise MalformedResult(f"a result must be a JSON object, not {type(raw).__name__}")
    if not raw.keys() >= _REQUIRED:
        missing = [k for k in REQUIRED if k not in raw]
        raise MalformedResult(f"not an Atlas result: missing {', '.join(missing)}")
    kind = raw["type"].lower() if isinstance(raw["type"], str) else None
    if kind not in TYPES:
        raise MalformedResult(f"unsupported result type {raw['type']!r}")
    try:
        return _sagan(raw, kind)
    except (MalformedResult, ResultParseError) as exc:  # sagan's own reasons are clear as they are
        raise MalformedResult(f"{kind}: {exc}"[:200]) from None
    except Exception as exc:  # sagan raises many kinds on bad input; all mean "cannot parse"
        raise MalformedResult(f"{kind}: {type(exc).__name__}: {exc}"[:200]) from None
