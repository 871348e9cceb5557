"""Sagan values -> Tocsin records (``source = "atlas"``).

The record's ``test_keys`` are exactly what ``ripe.atlas.sagan`` parses out of the result (see
:mod:`coordinator.atlas.parse`); the envelope adds the probe's country/ASN (from Atlas probe
objects, when known), a deterministic ``measurement_id`` built from (msm_id, prb_id, timestamp) so
that every import of the same result is a duplicate, a success flag and a failure string from the
project's vocabulary, and ``target_cc``/``vantage`` annotations when the target's country is known.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coordinator.atlas.parse import MalformedResult, parse_result
from probe.record import SCHEMA_VERSION, RecordError, unknown_failure, validate

TEST_VERSION = "1.0.0"
TEST_NAMES = {"ping": "ping", "traceroute": "traceroute", "dns": "dns", "http": "http", "ssl": "sslcert"}
_RCODE_FAILURES = {"NXDOMAIN": "dns_nxdomain", "SERVFAIL": "dns_servfail", "REFUSED": "dns_refused"}
_ERROR_WORDS = (
    ("timeout", "timeout"), ("timed out", "timeout"), ("refused", "connection_refused"),
    ("reset", "connection_reset"), ("network unreachable", "network_unreachable"),
    ("network is unreachable", "network_unreachable"), ("no route", "host_unreachable"),
    ("destination unreachable", "host_unreachable"), ("host unreachable", "host_unreachable"),
    ("administratively prohibited", "host_unreachable"), ("protocol unreachable", "host_unreachable"),
    ("port unreachable", "connection_refused"),
)


@dataclass(frozen=True)
class ProbeInfo:
    prb_id: int
    cc: str | None
    asn: int | None


TargetCountry = Callable[[str], "str | None"]


def measurement_id_for(msm_id: Any, prb_id: Any, timestamp: Any) -> str:
    """The record id of an Atlas result: same result, same id, whoever imports it and when."""
    ts = int(timestamp) if float(timestamp).is_integer() else timestamp
    return f"atlas-{int(msm_id)}-{int(prb_id)}-{ts}"


def classify_error(message: Any) -> str:
    text = str(message).lower()
    for word, failure in _ERROR_WORDS:
        if word in text:
            return failure
    return unknown_failure(str(message))


def _outcome(v: dict[str, Any]) -> tuple[bool, str | None, float]:
    """(success, failure, runtime_s) of the sagan values ``v``."""
    kind = v["type"]
    if kind == "ping":
        if (v["packets_received"] or 0) > 0:
            return True, None, 0.0
        return False, classify_error(v["error_message"]) if v["is_error"] else "timeout", 0.0
    if kind == "traceroute":
        runtime = 0.0
        if v["end_time"]:
            runtime = max(0.0, min(86399.0, datetime.fromisoformat(v["end_time"]).timestamp() - v["created_timestamp"]))
        if v["is_success"] or v["destination_ip_responded"]:
            return True, None, runtime
        errors = v["last_hop_errors"]
        if v["is_error"]:
            errors = [v["error_message"], *errors]
        return False, classify_error(errors[0]) if errors else "timeout", runtime
    if kind == "dns":
        return _dns_outcome(v)
    if kind == "http":
        for r in v["responses"]:
            if r["code"] is not None and 200 <= r["code"] < 400:
                return True, None, (r["response_time"] or 0.0) / 1000.0
        errs = [r["error_message"] for r in v["responses"] if r["error_message"]]
        if v["is_error"]:
            errs.insert(0, v["error_message"])
        if errs:
            return False, classify_error(errs[0]), 0.0
        return False, "http_protocol_error" if v["responses"] else "timeout", 0.0
    runtime = (v["response_time"] or 0.0) / 1000.0
    if v["certificates"] and not v["is_error"]:
        return True, None, runtime
    if v["alert"] is not None:
        return False, "tls_error", runtime
    return False, classify_error(v["error_message"]) if v["is_error"] else "tls_error", runtime


def _dns_outcome(v: dict[str, Any]) -> tuple[bool, str | None, float]:
    failure: str | None = classify_error(v["error_message"]) if v["is_error"] else None
    for r in v["responses"]:
        abuf = r["abuf"]
        rt = (r["response_time"] or 0.0) / 1000.0
        if abuf is not None and abuf["return_code"] == "NOERROR":
            return (True, None, rt) if abuf["answers"] else (False, "dns_no_answer", rt)
        if abuf is not None and abuf["return_code"]:
            failure = _RCODE_FAILURES.get(abuf["return_code"], unknown_failure("rcode " + abuf["return_code"]))
        elif r["is_error"] and failure is None:
            failure = classify_error(r["error_message"])
        elif abuf is None and not r["is_error"] and r["response_size"]:
            return True, None, rt  # an answer came back but its buffer was not included
    return False, failure or "timeout", 0.0


def _target(v: dict[str, Any]) -> str:
    for key in ("destination_name", "destination_address", "uri"):
        value = v.get(key)
        if value and value != "None":
            return str(value)[:2048]
    for r in v.get("responses") or ():
        if r.get("destination_address"):
            return str(r["destination_address"])
    return f"msm:{v['measurement_id']}"


def normalize(raw: dict[str, Any], *, probes: Mapping[int, ProbeInfo] | None = None,
              target_cc: TargetCountry | None = None, mid: str | None = None, check: bool = True) -> dict[str, Any]:
    """One Tocsin record from one raw Atlas result; :class:`MalformedResult` when it cannot be."""
    values = parse_result(raw)
    try:
        return record_from_values(raw, values, probes=probes, target_cc=target_cc, mid=mid, check=check)
    except (ValueError, OverflowError, OSError) as exc:
        raise MalformedResult(f"{values['type']}: {exc}"[:200]) from None


def record_from_values(raw: dict[str, Any], v: dict[str, Any], *, probes: Mapping[int, ProbeInfo] | None = None,
                       target_cc: TargetCountry | None = None, mid: str | None = None,
                       check: bool = True) -> dict[str, Any]:
    """The record (built like ``probe.record.make_record``); ``check=False`` leaves validation to
    the store (``prepare_measurements``), which validates every record anyway."""
    prb = v["probe_id"]
    if prb is None or v["measurement_id"] is None:
        raise MalformedResult("msm_id and prb_id must be integers")
    info = probes.get(prb) if probes else None
    success, failure, runtime = _outcome(v)
    target = _target(v)
    annotations = {"atlas_msm_id": str(v["measurement_id"])}
    tcc = target_cc(target) if target_cc else None
    if tcc is None and target_cc and v.get("destination_address"):
        tcc = target_cc(v["destination_address"])
    if tcc:
        annotations["target_cc"] = tcc
        if info is not None and info.cc:
            annotations["vantage"] = "inside" if info.cc == tcc else "outside"
    created = v["created"]  # sagan's aware UTC datetime of the timestamp, isoformat(): ...[.ffffff]+00:00
    record: dict[str, Any] = {
        "measurement_id": mid or measurement_id_for(v["measurement_id"], prb, raw["timestamp"]),
        "schema_version": SCHEMA_VERSION, "test_name": TEST_NAMES[v["type"]], "test_version": TEST_VERSION,
        "target": target, "probe_id": f"atlas:{prb}", "source": "atlas",
        "start_time": created[:-6] + ("Z" if "." in created else ".000000Z"),
        "runtime_s": round(float(runtime), 6), "success": success, "failure": failure, "test_keys": v,
    }
    if info is not None and info.cc:
        record["probe_cc"] = info.cc
    if info is not None and info.asn is not None:
        record["probe_asn"] = info.asn
    record["annotations"] = annotations
    if check:
        try:
            validate(record)
        except RecordError as exc:
            raise MalformedResult(f"{v['type']}: {exc}"[:200]) from None
    return record
