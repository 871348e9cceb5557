"""Property test: whatever the ingest body, the coordinator answers with a 2xx or 4xx, never 5xx."""

from __future__ import annotations

import asyncio
import gzip
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_e2e_helpers import run, start_coordinator

from probe import signing
from probe.agent.cli import do_register
from probe.agent.identity import load

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20)
RECORD_KEYS = ("measurement_id", "schema_version", "test_name", "test_version", "target", "probe_id", "source",
               "start_time", "runtime_s", "success", "failure", "test_keys", "probe_cc", "probe_asn", "annotations")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data = tmp_path_factory.mktemp("fuzz")
    proc, url = start_coordinator(data, env={"TOCSIN_RATE_REQUESTS_PER_S": "100000", "TOCSIN_RATE_BURST_REQUESTS": "100000"})
    try:
        invite = run(["-m", "coordinator", "invite", "--data", str(data)]).strip()
        asyncio.run(do_register([url], invite, data / "probe", {"cc": "KZ", "asn": 9198}))
        ident, key = load(data / "probe")
        yield {"url": url, "key": key, "id": ident.probe_id, "probe": ident.probe}
    finally:
        proc.kill()


def post(live: dict[str, Any], body: bytes, path: str = "/api/v1/measurements", key: Any = None,
         probe_id: str | None = None) -> int:
    headers = signing.sign_headers(key or live["key"], "POST", path, probe_id or live["id"], body)
    req = urllib.request.Request(live["url"] + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def base_record(live: dict[str, Any], i: int) -> dict[str, Any]:
    p = live["probe"]
    return {"measurement_id": f"fuzz-{i:012d}", "schema_version": 1, "test_name": "tcp", "test_version": "1.0.0",
            "target": "192.0.2.1:443", "probe_id": live["id"], "source": "tocsin", "probe_cc": p["cc"],
            "probe_asn": p["asn"], "probe_access": p["access"], "start_time": "2026-01-05T10:30:00.000000Z",
            "runtime_s": 0.1, "success": True, "failure": None, "test_keys": {}}


def chain(records: list[Any]) -> dict[str, Any]:
    head, items = signing.GENESIS, []
    for r in records:
        h = signing.chain_hash(head, r) if isinstance(r, dict) else "0" * 64
        items.append({"prev": head, "hash": h, "record": r})
        head = h
    return {"items": items}


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])


@FUZZ
@given(raw=st.binary(max_size=400), gz=st.booleans())
def test_random_bytes_never_5xx(live: dict[str, Any], raw: bytes, gz: bool) -> None:
    status = post(live, gzip.compress(raw) if gz else raw)
    assert 400 <= status < 500


@FUZZ
@given(doc=json_values)
def test_random_json_never_5xx(live: dict[str, Any], doc: Any) -> None:
    assert post(live, gzip.compress(json.dumps(doc).encode())) < 500


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(RECORD_KEYS), json_values, min_size=1, max_size=3),
       drop=st.lists(st.sampled_from(RECORD_KEYS), max_size=2), n=st.integers(0, 10**9))
def test_mutated_records_never_5xx(live: dict[str, Any], changes: dict[str, Any], drop: list[str], n: int) -> None:
    rec = {**base_record(live, n), **changes}
    for k in drop:
        rec.pop(k, None)
    status = post(live, gzip.compress(json.dumps(chain([rec, base_record(live, n + 1)])).encode()))
    assert status < 500


DROP_KEYS = ("drop_id", "dropped_count", "dropped_bytes", "first_start_time", "last_start_time", "measurement_ids", "ts")


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(DROP_KEYS), json_values, min_size=1, max_size=3), n=st.integers(0, 10**9))
def test_mutated_drop_reports_never_5xx(live: dict[str, Any], changes: dict[str, Any], n: int) -> None:
    drop = {"drop_id": f"drop-{n}", "dropped_count": 1, "dropped_bytes": 10, "measurement_ids": ["x" * 10],
            "first_start_time": None, "last_start_time": None, "ts": 1.0, **changes}
    h = signing.chain_hash(signing.GENESIS, drop)
    body = {"items": [{"prev": signing.GENESIS, "hash": h, "drop": drop}]}
    assert post(live, gzip.compress(json.dumps(body).encode())) < 500


REGISTER_KEYS = ("invite", "public_key", "cc", "asn", "access", "tags", "name", "software")


@FUZZ
@given(doc=st.dictionaries(st.sampled_from(REGISTER_KEYS), json_values, max_size=6), own_key=st.booleans())
def test_registration_bodies_never_5xx(live: dict[str, Any], doc: dict[str, Any], own_key: bool) -> None:
    key = signing.new_key()
    if own_key:
        doc["public_key"] = signing.public_key_b64(key)
    status = post(live, json.dumps(doc).encode(), "/api/v1/register", key=key, probe_id="-")
    assert 400 <= status < 500


@FUZZ
@given(doc=json_values)
def test_schedule_bodies_never_5xx(live: dict[str, Any], doc: Any) -> None:
    assert post(live, json.dumps(doc).encode(), "/api/v1/schedule") < 500


def test_fuzz_server_still_healthy(live: dict[str, Any], tmp_path: Path) -> None:
    with urllib.request.urlopen(live["url"] + "/api/v1/health", timeout=10) as resp:
        assert resp.status == 200
