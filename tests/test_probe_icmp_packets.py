"""ICMP packet building and parsing, parameters and statistics (no network)."""

from __future__ import annotations

import socket
import struct

import pytest

from probe.icmp import packets
from probe.probers import ping, traceroute
from probe.probers.base import ParamsError


def test_checksum_known_value() -> None:
    # RFC 1071's example words sum to 0xddf2 -> checksum 0x220d
    assert packets.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    data = packets.build_echo(socket.AF_INET, 0x1234, 7, b"abcdefgh")
    assert packets.checksum(data) == 0                 # a correct checksum sums to zero


def test_echo_round_trip_raw_ipv4() -> None:
    payload = packets.make_payload(b"T" * 8, 42, 56)
    request = packets.build_echo(socket.AF_INET, 0x1234, 9, payload)
    assert len(payload) == 56 and payload[:16] == b"T" * 8 + struct.pack("!Q", 42)
    reply = bytes([0, 0]) + request[2:]                # echo reply with the same id/seq/payload
    ip_header = bytes([0x45, 0, 0, 84, 0, 0, 0, 0, 61, 1, 0, 0]) + socket.inet_aton("198.18.20.1") * 2
    parsed = packets.parse_raw(socket.AF_INET, ip_header + reply, "198.18.20.1")
    assert parsed is not None and parsed.kind == "reply"
    assert (parsed.ident, parsed.seq, parsed.ttl, parsed.cookie) == (0x1234, 9, 61, payload[:16])


def test_error_quoting_the_request_ipv4() -> None:
    request = packets.build_echo(socket.AF_INET, 0x1234, 9, packets.make_payload(b"T" * 8, 42, 56))
    quoted_ip = bytes([0x45, 0, 0, 84, 0, 0, 0, 0, 1, 1, 0, 0]) + socket.inet_aton("198.18.10.1") \
        + socket.inet_aton("198.18.30.1")
    error = bytes([3, 0, 0, 0, 0, 0, 0, 0]) + quoted_ip + request[:8]   # a router quoting only 8 bytes
    outer = bytes([0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0]) + socket.inet_aton("198.18.10.2") * 2
    parsed = packets.parse_raw(socket.AF_INET, outer + error, "198.18.10.2")
    assert parsed is not None and parsed.kind == "error"
    assert (parsed.dest, parsed.seq, parsed.responder, parsed.cookie) == ("198.18.30.1", 9, "198.18.10.2", b"")
    assert packets.failure_of(socket.AF_INET, 3, 0) == "network_unreachable"
    assert packets.failure_of(socket.AF_INET, 3, 1) == "host_unreachable"
    assert packets.failure_of(socket.AF_INET, 3, 13) == "host_unreachable"
    assert packets.failure_of(socket.AF_INET6, 1, 0) == "network_unreachable"
    assert packets.failure_of(socket.AF_INET6, 1, 3) == "host_unreachable"


def test_errqueue_entry() -> None:
    request = packets.build_echo(socket.AF_INET, 77, 5, packets.make_payload(b"T" * 8, 3, 16))
    offender = struct.pack("=HH4s8x", socket.AF_INET, 0, socket.inet_aton("198.18.10.2"))
    ee = struct.pack("=IBBBBII", 113, 2, 3, 1, 0, 0, 0) + offender
    parsed = packets.parse_errqueue(socket.AF_INET, request, "198.18.12.99", ee)
    assert parsed is not None
    assert (parsed.kind, parsed.seq, parsed.icmp_type, parsed.icmp_code, parsed.responder) == \
        ("error", 5, 3, 1, "198.18.10.2")


def test_garbage_is_ignored() -> None:
    assert packets.parse_raw(socket.AF_INET, b"\x45\x00", "198.18.1.1") is None
    assert packets.parse_raw(socket.AF_INET6, bytes([135, 0, 0, 0, 0, 0, 0, 0]), "fe80::1") is None
    assert packets.parse_datagram_reply(socket.AF_INET, b"\x08\x00\x00\x00\x00\x01\x00\x01", "x", 3) is None


def test_summary_statistics() -> None:
    s = ping.summarize([1.0, 3.0, 2.0, 6.0])
    assert s == {"min_rtt_ms": 1.0, "median_rtt_ms": 2.5, "mean_rtt_ms": 3.0, "max_rtt_ms": 6.0,
                 "stddev_rtt_ms": 1.871, "jitter_ms": 2.333}  # |2|,|1|,|4|
    assert ping.summarize([4.25])["jitter_ms"] == 0.0
    assert ping.summarize([])["median_rtt_ms"] is None
    assert ping.overall_failure(["timeout", "host_unreachable", "host_unreachable"], 0) == "host_unreachable"
    assert ping.overall_failure(["timeout", None], 1) is None
    assert ping.overall_failure(["timeout"], 0) == "timeout"


@pytest.mark.parametrize("kwargs,fragment", [
    ({"count": 0}, "count must be between"), ({"count": 2.5}, "count must be an integer"),
    ({"interval_s": 0.001}, "interval_s"), ({"timeout_s": True}, "timeout_s must be a number"),
    ({"size_bytes": 8}, "size_bytes"), ({"family": "ipv5"}, "family must be one of"),
    ({"socket_mode": "rawest"}, "socket_mode must be one of"),
])
def test_ping_params_refused(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ParamsError, match=fragment):
        ping.PingParams(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs,fragment", [
    ({"protocol": "sctp"}, "protocol must be one of"), ({"max_ttl": 0}, "max_ttl"),
    ({"attempts": 11}, "attempts"), ({"wait_s": "1"}, "wait_s must be a number"),
    ({"stop_sets": 1}, "stop_sets"), ({"dst_port": 70000}, "dst_port"),
])
def test_traceroute_params_refused(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ParamsError, match=fragment):
        traceroute.TracerouteParams(**kwargs)  # type: ignore[arg-type]


def test_traceroute_ports() -> None:
    assert traceroute.TracerouteParams(protocol="udp").port == 33434
    assert traceroute.TracerouteParams(protocol="tcp").port == 80
    assert traceroute.TracerouteParams(protocol="tcp", dst_port=443).port == 443
    assert traceroute.TracerouteParams().port == 0


def test_paris_icmp_checksum_is_constant() -> None:
    pytest.importorskip("scapy")
    from scapy.layers.inet import ICMP, IP

    from probe.icmp.tracer import build_probe

    sums = {IP(build_probe("icmp", "198.18.10.1", "198.18.20.1", ttl, pid, 0))[ICMP].chksum
            for ttl, pid in ((1, 1), (2, 2), (3, 999), (9, 65535))}
    assert len(sums) == 1
    flows = {IP(build_probe("udp", "198.18.10.1", "198.18.20.1", ttl, pid, 33434)).payload.chksum
             for ttl, pid in ((1, 1), (5, 77))}
    assert len(flows) == 1
