"""probe/record.py: validation, ids, hashes (with hypothesis for the properties)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probe.record import (
    FAILURES,
    RecordError,
    canonical_json,
    content_hash,
    epoch_to_time,
    format_time,
    make_record,
    new_measurement_id,
    time_to_epoch,
    unknown_failure,
    validate,
)

START = datetime(2022, 1, 5, 10, 30, tzinfo=UTC)


def good(**changes: Any) -> dict[str, Any]:
    record = make_record(test_name="tcp", test_version="1.0.0", target="192.0.2.1:443", start_time=START,
                         runtime_s=0.25, success=False, failure="connection_refused", test_keys={"port": 443},
                         probe_id="probe-0001", probe_cc="KZ", probe_asn=9198, probe_access="mobile")
    record.update(changes)
    return record


def test_make_record_is_valid_and_complete() -> None:
    record = good()
    assert validate(record) is record
    assert record["start_time"] == "2022-01-05T10:30:00.000000Z" and record["schema_version"] == 1
    assert "campaign_id" not in record and record["probe_asn"] == 9198


@pytest.mark.parametrize(("changes", "message"), [
    ({"extra": 1}, "unknown envelope key(s): extra"),
    ({"schema_version": 2}, "schema_version 2 is not supported"),
    ({"schema_version": True}, "schema_version must be an integer, not a boolean"),
    ({"runtime_s": "1"}, "runtime_s must be an integer or a number"),
    ({"runtime_s": -1}, "runtime_s must be between 0 and 86400"),
    ({"success": 1}, "success must be a boolean"),
    ({"measurement_id": "short"}, "measurement_id must be 8-80 characters"),
    ({"measurement_id": "has space in it"}, "measurement_id must be 8-80 characters"),
    ({"source": "ooni"}, "source must be one of tocsin, atlas"),
    ({"probe_cc": "kz"}, "probe_cc must be two upper-case letters"),
    ({"probe_asn": 2**32}, "probe_asn must be between"),
    ({"probe_access": "satellite"}, "probe_access must be one of"),
    ({"start_time": "2022-01-05 10:30:00"}, "is not ISO 8601 UTC"),
    ({"failure": "connection_exploded"}, "is not in the failure vocabulary"),
    ({"target": ""}, "target must be 1-2048 characters"),
    ({"test_keys": []}, "test_keys must be an object"),
])
def test_validate_refuses_with_a_reason(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(RecordError) as info:
        validate(good(**changes))
    assert message in str(info.value)


def test_missing_required_key() -> None:
    record = good()
    del record["success"]
    with pytest.raises(RecordError, match="missing required key success"):
        validate(record)
    with pytest.raises(RecordError, match="must be a JSON object"):
        validate([record])


def test_unknown_failure_is_in_the_vocabulary() -> None:
    text = unknown_failure("weird\n  thing " + "x" * 300)
    assert text.startswith("unknown_failure: weird thing") and validate(good(failure=text))
    assert unknown_failure("") == "unknown_failure: no detail"
    for failure in FAILURES:
        assert validate(good(failure=failure))["failure"] == failure


def test_measurement_ids_are_uuid7_time_ordered_and_unique() -> None:
    ids = [new_measurement_id(1_700_000_000 + i / 1000) for i in range(200)]
    assert len(set(ids)) == 200 and ids == sorted(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert int(parsed.hex[:12], 16) == 1_700_000_000_000


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2022, 1, 5))


records = st.builds(
    good,
    target=st.text(min_size=1, max_size=60),
    runtime_s=st.floats(min_value=0, max_value=86_399, allow_nan=False),
    success=st.booleans(),
    failure=st.one_of(st.none(), st.sampled_from(sorted(FAILURES)), st.text(max_size=40).map(unknown_failure)),
    test_keys=st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=10), st.none(),
                                                             st.lists(st.integers(), max_size=3)), max_size=5),
)


@settings(max_examples=80, deadline=None)
@given(records)
def test_valid_records_survive_json(record: dict[str, Any]) -> None:
    again = json.loads(json.dumps(record))
    assert validate(again) == record
    assert content_hash(again) == content_hash(record)


@settings(max_examples=60, deadline=None)
@given(records, st.randoms(use_true_random=False))
def test_hash_ignores_key_order_but_not_values(record: dict[str, Any], rnd: Any) -> None:
    items = list(record.items())
    rnd.shuffle(items)
    assert content_hash(dict(items)) == content_hash(record)
    assert canonical_json(dict(items)) == canonical_json(record)
    changed = dict(record, runtime_s=record["runtime_s"] + 1)
    assert content_hash(changed) != content_hash(record)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from([*good().keys(), "junk"]),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.floats())))
def test_garbage_is_refused_not_crashing(data: dict[str, Any]) -> None:
    try:
        validate(data)
    except RecordError:
        pass


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_time_round_trip(moment: datetime) -> None:
    text = format_time(moment)
    assert abs(time_to_epoch(text) - moment.timestamp()) < 1e-6
    assert epoch_to_time(time_to_epoch(text)) == text
    assert format_time(moment.astimezone(UTC) + timedelta(0)) == text
