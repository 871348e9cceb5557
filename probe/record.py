"""The Tocsin result record: one versioned envelope shared by probe and coordinator.

Standard library only: the coordinator, the archive readers and researchers' scripts import
this module without pulling in any probe dependency.

A record is a plain JSON object.  The envelope keys are described by :data:`FIELDS` (the single
source of truth: ``docs/record.md`` is tested against it); each test puts its own keys under
``test_keys``.  Numeric fields carry their unit in their name (``runtime_s``, ``rtt_ms``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SCHEMA_VERSION = 1

SOURCES = ("tocsin", "atlas")
ACCESS_TYPES = ("fixed", "mobile", "datacenter")

# The closed failure vocabulary.  Detectors read these strings, never exception text.  Anything
# outside it is written as ``unknown_failure: <short text>``.
FAILURES: dict[str, str] = {
    "timeout": "no answer within the test's timeout",
    "connection_refused": "the target answered the TCP SYN with a reset (port closed)",
    "connection_reset": "an established connection was reset by the peer or a middlebox",
    "eof_error": "the peer closed the connection before a complete answer",
    "host_unreachable": "an ICMP host/administratively-prohibited unreachable came back, or no route",
    "network_unreachable": "the probe's own stack or a router reported the network unreachable",
    "dns_nxdomain": "the resolver said the name does not exist",
    "dns_servfail": "the resolver answered SERVFAIL",
    "dns_refused": "the resolver answered REFUSED",
    "dns_lookup_error": "the system resolver could not be reached or failed temporarily (EAI_AGAIN, EAI_FAIL)",
    "dns_no_answer": "the resolver answered NOERROR with no record of the asked type",
    "dns_bogon_answer": "an answer points into bogon, private or reserved space (tampering sign)",
    "tls_error": "the TLS handshake failed for a reason other than the certificate",
    "tls_certificate_error": "the server's certificate did not verify (untrusted, expired, wrong name)",
    "http_protocol_error": "the server's answer was not valid HTTP",
    "redirect_forbidden": "a redirect pointed at an address the probe's guard refuses",
    "redirect_loop": "too many redirects",
}
UNKNOWN_FAILURE_PREFIX = "unknown_failure: "
_UNKNOWN_MAX = 120


def unknown_failure(text: str) -> str:
    """Return the vocabulary string for an error the classifier does not know."""
    text = " ".join(str(text).split())[:_UNKNOWN_MAX] or "no detail"
    return UNKNOWN_FAILURE_PREFIX + text


def is_known_failure(value: str) -> bool:
    return value in FAILURES or value.startswith(UNKNOWN_FAILURE_PREFIX)


@dataclass(frozen=True)
class Field:
    name: str
    types: tuple[type, ...]
    required: bool
    description: str


_STR = (str,)
_OPT_STR = (str, type(None))
_OPT_INT = (int, type(None))

FIELDS: tuple[Field, ...] = (
    Field("measurement_id", _STR, True, "unique id made where the measurement ran; the idempotency key"),
    Field("schema_version", (int,), True, "version of this envelope (currently 1)"),
    Field("test_name", _STR, True, "ping, traceroute, dns, http, tcp or throughput"),
    Field("test_version", _STR, True, "version of the test's own keys (semver)"),
    Field("target", _STR, True, "what was measured: address, host name, host:port or URL"),
    Field("probe_id", _OPT_STR, True, "id the coordinator assigned to the probe (null in a one-off run)"),
    Field("campaign_id", _OPT_STR, False, "campaign that scheduled the measurement, if any"),
    Field("task_id", _OPT_STR, False, "task of that campaign, if any"),
    Field("source", _STR, True, "tocsin (our probes) or atlas (RIPE Atlas, normalised)"),
    Field("probe_cc", _OPT_STR, False, "ISO 3166 alpha-2 country of the probe's network"),
    Field("probe_asn", _OPT_INT, False, "autonomous system number of the probe's network"),
    Field("probe_access", _OPT_STR, False, "access type of the probe: fixed, mobile or datacenter"),
    Field("start_time", _STR, True, "UTC start, ISO 8601 with microseconds and a Z suffix"),
    Field("runtime_s", (int, float), True, "wall time of the test in seconds"),
    Field("success", (bool,), True, "true when the test reached its target as the test defines it"),
    Field("failure", _OPT_STR, True, "null, a string of the failure vocabulary, or unknown_failure: <text>"),
    Field("test_keys", (dict,), True, "the test's own results (see docs/tests/<test>.md)"),
    Field("annotations", (dict,), False, "free-form string annotations: probe software version, platform"),
)
FIELD_NAMES = tuple(f.name for f in FIELDS)
_FIELDS_BY_NAME = {f.name: f for f in FIELDS}

_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{8,80}$")
_CC_RE = re.compile(r"^[A-Z]{2}$")
_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


class RecordError(ValueError):
    """A record failed validation; ``str(error)`` is the reason given back to the sender."""


def new_measurement_id(now_s: float | None = None) -> str:
    """A time-ordered UUID (version-7 layout): 48-bit millisecond clock then 74 random bits."""
    ms = int((time.time() if now_s is None else now_s) * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 68) & 0xFFF) << 64 | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def format_time(dt: datetime) -> str:
    """ISO 8601 UTC with microseconds and ``Z``; naive datetimes are refused."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime: pass an aware UTC datetime")
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    if not isinstance(text, str) or not _TIME_RE.match(text):
        raise RecordError(f"start_time {text!r} is not ISO 8601 UTC like 2022-01-05T10:30:00.000000Z")
    return _from_iso(text).replace(tzinfo=UTC)


def _from_iso(text: str) -> datetime:
    """The naive datetime of a ``start_time`` that matched the pattern (month 13 is still refused)."""
    try:
        return datetime.fromisoformat(text[:-1])
    except ValueError as exc:
        raise RecordError(f"start_time {text!r} is not a valid time: {exc}") from None


def time_to_epoch(text: str) -> float:
    return parse_time(text).timestamp()


def epoch_to_time(ts: float) -> str:
    return format_time(datetime.fromtimestamp(ts, UTC))


def canonical_json(record: dict[str, Any]) -> bytes:
    """Canonical bytes of a record: sorted keys, compact, UTF-8.  The basis of content hashes."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(record)).hexdigest()


_FIELD_SET = frozenset(FIELD_NAMES)
# (name, types, required, booleans allowed) once, so validation is a single cheap loop
_CHECKS = tuple((f.name, f.types, f.required, bool in f.types) for f in FIELDS)
# The fast path: the exact classes each key may hold, and the keys every record must have.
_CLASSES = {f.name: frozenset(f.types) for f in FIELDS}
_REQUIRED = frozenset(f.name for f in FIELDS if f.required)
_EPOCH = datetime(1970, 1, 1)


def validate(record: Any) -> dict[str, Any]:
    """Check a record against the envelope; return it unchanged or raise :class:`RecordError`.

    Unknown envelope keys are refused (a typo must not silently lose a field); optional keys
    may be missing.
    """
    validate_epoch(record)
    return record


def validate_epoch(record: Any) -> float:
    """:func:`validate`, returning the epoch seconds of ``start_time`` (the store needs it)."""
    if record.__class__ is not dict or not _REQUIRED <= record.keys() <= _FIELD_SET:
        _check_keys_and_types(record)
    else:
        for name, value in record.items():
            if value.__class__ not in _CLASSES[name]:   # subclasses too: the careful check decides
                _check_keys_and_types(record)
                break
    if record["schema_version"] != SCHEMA_VERSION:
        raise RecordError(f"schema_version {record['schema_version']} is not supported (this is {SCHEMA_VERSION})")
    if not _ID_RE.match(record["measurement_id"]):
        raise RecordError("measurement_id must be 8-80 characters of letters, digits and . _ : -")
    if not record["test_name"] or len(record["test_name"]) > 40:
        raise RecordError("test_name must be 1-40 characters")
    if not record["target"] or len(record["target"]) > 2048:
        raise RecordError("target must be 1-2048 characters")
    if record["source"] not in SOURCES:
        raise RecordError(f"source must be one of {', '.join(SOURCES)}")
    cc = record.get("probe_cc")
    if cc is not None and not _CC_RE.match(cc):
        raise RecordError("probe_cc must be two upper-case letters (ISO 3166 alpha-2)")
    asn = record.get("probe_asn")
    if asn is not None and not 0 <= asn < 2**32:
        raise RecordError("probe_asn must be between 0 and 4294967295")
    access = record.get("probe_access")
    if access is not None and access not in ACCESS_TYPES:
        raise RecordError(f"probe_access must be one of {', '.join(ACCESS_TYPES)}")
    epoch = _epoch(record["start_time"])
    runtime = record["runtime_s"]
    if not 0 <= runtime < 86400:
        raise RecordError("runtime_s must be between 0 and 86400")
    failure = record["failure"]
    if failure is not None and failure not in FAILURES and not failure.startswith(UNKNOWN_FAILURE_PREFIX):
        raise RecordError(f"failure {failure!r} is not in the failure vocabulary")
    return epoch


def _check_keys_and_types(record: Any) -> None:
    """Raise the first key or type error in :data:`FIELDS` order (the reason the sender gets)."""
    if not isinstance(record, dict):
        raise RecordError(f"a record must be a JSON object, not {type(record).__name__}")
    if not record.keys() <= _FIELD_SET:
        unknown = sorted(set(record) - _FIELD_SET)
        raise RecordError(f"unknown envelope key(s): {', '.join(unknown)}")
    for name, types, required, bool_ok in _CHECKS:
        if name not in record:
            if required:
                raise RecordError(f"missing required key {name}")
            continue
        value = record[name]
        # bool is an int subclass: refuse True where an int is expected and vice versa.
        if value.__class__ is bool and not bool_ok:
            raise RecordError(f"{name} must be {_type_names(types)}, not a boolean")
        if not isinstance(value, types):
            raise RecordError(f"{name} must be {_type_names(types)}, not {type(value).__name__}")


def _epoch(text: Any) -> float:
    """Epoch seconds of a ``start_time`` (the same float as ``parse_time(text).timestamp()``)."""
    if not isinstance(text, str) or not _TIME_RE.match(text):
        raise RecordError(f"start_time {text!r} is not ISO 8601 UTC like 2022-01-05T10:30:00.000000Z")
    return (_from_iso(text) - _EPOCH).total_seconds()


def _type_names(types: tuple[type, ...]) -> str:
    names = ["null" if t is type(None) else {"str": "a string", "int": "an integer", "float": "a number",
             "bool": "a boolean", "dict": "an object"}[t.__name__] for t in types]
    return " or ".join(names)


def make_record(
    *,
    test_name: str,
    test_version: str,
    target: str,
    start_time: datetime,
    runtime_s: float,
    success: bool,
    failure: str | None,
    test_keys: dict[str, Any],
    probe_id: str | None = None,
    source: str = "tocsin",
    measurement_id: str | None = None,
    **optional: Any,
) -> dict[str, Any]:
    """Build and validate a record.  ``optional`` takes the optional envelope keys."""
    record: dict[str, Any] = {
        "measurement_id": measurement_id or new_measurement_id(start_time.timestamp()),
        "schema_version": SCHEMA_VERSION,
        "test_name": test_name,
        "test_version": test_version,
        "target": target,
        "probe_id": probe_id,
        "source": source,
        "start_time": format_time(start_time),
        "runtime_s": round(float(runtime_s), 6),
        "success": success,
        "failure": failure,
        "test_keys": test_keys,
    }
    for key, value in optional.items():
        if key not in _FIELDS_BY_NAME:
            raise RecordError(f"unknown envelope key {key}")
        if value is not None or key in ("campaign_id", "task_id"):
            record[key] = value
    return validate(record)
