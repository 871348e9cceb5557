"""Golden tests: every shared sample normalises to what ripe.atlas.sagan parses (expected.json);
malformed input is refused with a reason and never raises anything else."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.atlas import standin
from coordinator.atlas.normalize import ProbeInfo, measurement_id_for, normalize
from coordinator.atlas.parse import MalformedResult, parse_result
from coordinator.atlas.storage import probe_row
from probe.record import validate

SAMPLES = standin.default_samples()
EXPECTED = json.loads((SAMPLES / "expected.json").read_text())["samples"]
TYPES = ("ping", "traceroute", "dns", "http", "sslcert")


def samples(kind: str) -> list[tuple[str, dict[str, Any]]]:
    with (SAMPLES / f"{kind}.jsonl").open() as f:
        return [(f"{kind}.jsonl:{n}", json.loads(line)) for n, line in enumerate(f, 1)]


ALL = [item for kind in TYPES for item in samples(kind)]


def test_sample_counts() -> None:
    assert {k: len(samples(k)) for k in TYPES} == {"ping": 32, "traceroute": 37, "dns": 48, "http": 12,
                                                   "sslcert": 29}


@pytest.mark.parametrize(("key", "raw"), ALL, ids=[k for k, _ in ALL])
def test_golden(key: str, raw: dict[str, Any]) -> None:
    expected = {k: v for k, v in EXPECTED[key].items() if k != "note"}
    record = normalize(copy.deepcopy(raw), probes={raw["prb_id"]: ProbeInfo(raw["prb_id"], "KZ", 9198)},
                       target_cc=lambda t: "DE")
    assert json.loads(json.dumps(record["test_keys"])) == expected
    assert validate(record) is record
    assert record["source"] == "atlas" and record["probe_id"] == f"atlas:{raw['prb_id']}"
    assert record["probe_cc"] == "KZ" and record["probe_asn"] == 9198
    assert record["annotations"]["target_cc"] == "DE" and record["annotations"]["vantage"] == "outside"
    assert record["measurement_id"] == measurement_id_for(raw["msm_id"], raw["prb_id"], raw["timestamp"])
    assert record["start_time"].startswith(expected["created"][:19])
    again = normalize(copy.deepcopy(raw), probes={raw["prb_id"]: ProbeInfo(raw["prb_id"], "KZ", 9198)},
                      target_cc=lambda t: "DE")
    assert again == record                           # deterministic: same result, same record


@pytest.mark.parametrize("n", range(1, 25))
def test_probe_objects(n: int) -> None:
    line = (SAMPLES / "probes.jsonl").read_text().splitlines()[n - 1]
    obj = json.loads(line)
    exp = EXPECTED[f"probes.jsonl:{n}"]
    row = probe_row(obj, 0.0)
    assert row[0] == exp["id"] and row[1] == exp["country_code"] and row[2] == exp["asn_v4"]
    assert row[3] == exp["asn_v6"] and row[4] == exp["status"] and json.loads(row[6]) == exp["tag_slugs"]
    if exp["status_since"]:
        from datetime import datetime
        assert row[5] == datetime.fromisoformat(exp["status_since"].replace("Z", "+00:00")).timestamp()


def test_outcomes() -> None:
    ping = dict(samples("ping")[2][1])
    assert normalize(ping)["success"] is True
    lost = {**ping, "rcvd": 0, "avg": -1, "min": -1, "max": -1, "result": [{"x": "*"}] * 3}
    rec = normalize(lost)
    assert rec["success"] is False and rec["failure"] == "timeout" and rec["test_keys"]["rtt_average"] is None
    failures = {normalize(r)["failure"] for _, r in samples("traceroute")}
    assert {"network_unreachable", "host_unreachable", "timeout", None} <= failures
    assert {normalize(r)["failure"] for _, r in samples("dns")} >= {None, "dns_nxdomain", "timeout"}


BAD: list[tuple[Any, str]] = [
    ([1, 2], "must be a JSON object"),
    ({"type": "ping"}, "missing timestamp, msm_id, prb_id, fw"),
    ({"type": "ntp", "timestamp": 1, "msm_id": 1, "prb_id": 1, "fw": 4700}, "unsupported result type"),
    ({"type": "ping", "timestamp": 1, "msm_id": 1, "prb_id": 1, "fw": 4700, "result": [{"rtt": "fast"}]},
     "^ping: RTT \"fast\" does not appear to be a float$"),
    ({"type": "traceroute", "timestamp": 1, "msm_id": 1, "prb_id": 1, "fw": 4700, "result": ["x"]},
     "^traceroute: a hop is not an object$"),
    ({"type": "traceroute", "timestamp": 1, "msm_id": 1, "prb_id": 1, "fw": 4700, "result": [{"result": ["x"]}]},
     "^traceroute: a hop packet is not an object$"),
    ({"type": "ping", "timestamp": 1, "msm_id": 1, "prb_id": 1, "fw": 4700, "result": ["x"]}, "^ping: "),
    ({"type": "ping", "timestamp": "soon", "msm_id": 1, "prb_id": 1, "fw": 4700}, "ping:"),
    ({"type": "ping", "timestamp": 1, "msm_id": None, "prb_id": 1, "fw": 4700}, "must be integers"),
]


@pytest.mark.parametrize(("raw", "reason"), BAD)
def test_malformed_has_a_reason(raw: Any, reason: str) -> None:
    with pytest.raises(MalformedResult, match=reason):
        normalize(raw)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
                    | st.text(max_size=8), lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c,
                                                                                            max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, len(ALL) - 1), path=st.lists(st.text(max_size=6), min_size=1, max_size=3), value=JSON)
def test_mutated_samples_never_crash(index: int, path: list[str], value: Any) -> None:
    raw = copy.deepcopy(ALL[index][1])
    node: Any = raw
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            break
    else:
        node[path[-1]] = value
    if isinstance(raw.get("result"), list) and raw["result"] and isinstance(raw["result"][0], dict):
        raw["result"][0][path[0]] = value
    try:
        parse_result(raw)
        normalize(raw)
    except MalformedResult:
        pass


def test_samples_directory_found() -> None:
    assert (SAMPLES / "expected.json").is_file(), f"samples not found at {SAMPLES}"
    assert Path(standin.default_samples()) == SAMPLES


@pytest.mark.parametrize(("key", "raw"), samples("ping"), ids=[k for k, _ in samples("ping")])
def test_ping_values_from_sagans_instance_dict_are_its_attributes(key: str, raw: dict[str, Any]) -> None:
    """A ping's values copied from sagan's PingResult ``__dict__`` are exactly its attributes read by
    name (same keys, same values and types), so a sagan with other attributes fails here."""
    from ripe.atlas.sagan.ping import PingResult

    from coordinator.atlas import parse

    fast, slow = parse._ping_all(copy.deepcopy(raw)), parse._ping_by_name(copy.deepcopy(raw))
    assert fast == slow and list(map(type, fast.values())) == [type(slow[k]) for k in fast]
    assert set(fast) == {*parse._PING_ALL, "type", "created", "created_timestamp", "packets"}
    # and the copy is the way taken
    attrs = {k for k in vars(PingResult(copy.deepcopy(raw))) if k not in parse._PING_NOT_VALUES}
    assert attrs == {*parse._PING_ALL, "created", "packets"} and len(attrs) == parse._PING_DICT_LEN
