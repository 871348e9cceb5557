"""The Atlas-format export parses with ripe.atlas.sagan with no error and the same values."""

from __future__ import annotations

import gzip
import json
import statistics
from datetime import UTC, datetime
from pathlib import Path

from ripe.atlas.sagan import Result

from coordinator import db as dbmod
from coordinator.archive import atlas_format, build, synthetic
from coordinator.store import insert_measurements, record_from_row
from probe.record import make_record, time_to_epoch


def _parse(line: bytes) -> Result:
    return Result.get(line.decode(), on_error=Result.ACTION_FAIL, on_malformation=Result.ACTION_FAIL)


def test_bundle_atlas_files_parse_with_the_same_values(tmp_path: Path) -> None:
    conn = dbmod.open_writer(tmp_path)
    synthetic.fill(conn, 4, 3.0)        # includes the blackout: lost packets and broken paths
    records = {r["measurement_id"]: record_from_row(r) for r in conn.execute("SELECT * FROM measurements")}
    conn.close()
    bundle = build.build(tmp_path, build.daily_spec(build.parse_day("2022-01-05")), formats_=["atlas"])
    counts = {"ping": 0, "traceroute": 0}
    for kind in counts:
        with gzip.open(bundle / "atlas" / f"{kind}.jsonl.gz", "rb") as fh:
            for line in fh:
                result = _parse(line)
                assert not result.is_error and not result.is_malformed
                rec = records[json.loads(line)["tocsin"]["measurement_id"]]
                assert result.type == kind
                assert result.created_timestamp == int(time_to_epoch(rec["start_time"]))
                assert result.probe_id == atlas_format.atlas_int(rec["probe_id"])
                assert result.origin is None          # the probe's own address is never written
                keys = rec["test_keys"]
                if kind == "ping":
                    _check_ping(result, rec, keys)
                else:
                    _check_traceroute(result, rec, keys)
                counts[kind] += 1
    assert counts == {"ping": 4 * 180, "traceroute": 4 * 180}


def _check_ping(result: Result, rec: dict, keys: dict) -> None:
    assert result.destination_address == keys["resolved_address"] and result.destination_name == rec["target"]
    assert result.af == 4 and result.protocol == "ICMP"
    assert result.packets_sent == keys["sent"] and result.packets_received == keys["received"]
    assert [p.rtt for p in result.packets] == [p["rtt_ms"] for p in keys["packets"]]
    assert [p.ttl for p in result.packets] == [p["ttl"] for p in keys["packets"]]
    assert result.rtt_min == keys["min_rtt_ms"] and result.rtt_max == keys["max_rtt_ms"]
    assert result.rtt_median == keys["median_rtt_ms"]
    if keys["received"]:
        assert result.rtt_average == round(statistics.fmean(p["rtt_ms"] for p in keys["packets"]), 3)
    else:
        assert result.rtt_average is None


def _check_traceroute(result: Result, rec: dict, keys: dict) -> None:
    assert result.destination_address == keys["resolved_address"] and result.protocol == "UDP"
    assert result.total_hops == len(keys["hops"])
    assert [h.index for h in result.hops] == [h["ttl"] for h in keys["hops"]]
    assert result.ip_path == [[h["address"]] for h in keys["hops"]]
    assert [[p.rtt for p in h.packets] for h in result.hops] == [[h["rtt_ms"]] for h in keys["hops"]]
    assert result.end_time_timestamp == int(time_to_epoch(rec["start_time"]) + rec["runtime_s"])


def test_edge_cases_unreachable_ipv6_and_no_packet_list(tmp_path: Path) -> None:
    t = datetime(2022, 1, 5, 11, 0, tzinfo=UTC)
    trace = make_record(test_name="traceroute", test_version="1.0.0", target="2001:db8::1", start_time=t,
                        runtime_s=1.0, success=False, failure="host_unreachable", probe_id="p-1",
                        test_keys={"protocol": "icmp", "hops": [
                            {"ttl": 1, "responses": [{"address": "2001:db8:1::1", "rtt_ms": 0.5}]},
                            {"ttl": 2, "responses": [{"address": "2001:db8:2::1", "rtt_ms": 1.25,
                                                      "icmp_type": 3, "icmp_code": 13}]}]})
    ping = make_record(test_name="ping", test_version="1.0.0", target="example.kz", start_time=t, runtime_s=1.0,
                       success=True, failure=None, probe_id="p-1",
                       test_keys={"resolved_address": "198.18.5.5", "sent": 5, "received": 4,
                                  "min_rtt_ms": 1.0, "mean_rtt_ms": 2.0, "max_rtt_ms": 3.0})
    conn = dbmod.open_writer(tmp_path)
    insert_measurements(conn, [trace, ping])
    conn.close()
    # an ICMP "administratively prohibited" answer is an error in sagan's terms, as in real Atlas data
    t_result = Result.get(json.dumps(atlas_format.to_atlas(trace)), on_error=Result.ACTION_IGNORE,
                          on_malformation=Result.ACTION_FAIL)
    assert t_result.af == 6 and t_result.protocol == "ICMP" and not t_result.is_success
    assert t_result.last_hop_errors == ["Administratively prohibited"]
    p_result = _parse(json.dumps(atlas_format.to_atlas(ping)).encode())
    assert (p_result.packets_sent, p_result.packets_received, p_result.rtt_min, p_result.rtt_average,
            p_result.rtt_max) == (5, 4, 1.0, 2.0, 3.0)
    assert p_result.destination_name == "example.kz" and p_result.packets == []
    assert atlas_format.to_atlas({**ping, "test_name": "dns"}) is None
