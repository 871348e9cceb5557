"""ICMP echo packets: building requests and parsing what comes back (stdlib only).

A request's payload starts with a 16-byte cookie: 8 bytes that identify this engine and the
8-byte number of the request.  In datagram mode the kernel rewrites the identifier, so replies
are matched on source address, sequence number and this cookie.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

ECHO_REQUEST = {socket.AF_INET: 8, socket.AF_INET6: 128}
ECHO_REPLY = {socket.AF_INET: 0, socket.AF_INET6: 129}
UNREACHABLE = {socket.AF_INET: 3, socket.AF_INET6: 1}
TIME_EXCEEDED = {socket.AF_INET: 11, socket.AF_INET6: 3}
COOKIE_BYTES = 16
HEADER_BYTES = 8


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build_echo(family: socket.AddressFamily, ident: int, seq: int, payload: bytes) -> bytes:
    """An echo request; the checksum is filled in for IPv4 (the kernel computes ICMPv6's)."""
    kind = ECHO_REQUEST[family]
    header = struct.pack("!BBHHH", kind, 0, 0, ident & 0xFFFF, seq & 0xFFFF)
    if family == socket.AF_INET:
        header = struct.pack("!BBHHH", kind, 0, checksum(header + payload), ident & 0xFFFF, seq & 0xFFFF)
    return header + payload


def make_payload(token: bytes, number: int, size_bytes: int) -> bytes:
    """Cookie (token + request number) padded to ``size_bytes`` (at least the cookie's 16 bytes)."""
    cookie = token + struct.pack("!Q", number)
    return cookie + bytes(max(0, size_bytes - COOKIE_BYTES))


@dataclass
class Parsed:
    """One received ICMP message as the engine needs it."""

    kind: str                  # "reply" or "error"
    ident: int
    seq: int
    dest: str                  # the address the request went to (the reply's source, or the quoted destination)
    cookie: bytes              # first 16 payload bytes (may be short for an error quoting only 8 bytes)
    icmp_type: int = 0
    icmp_code: int = 0
    responder: str = ""        # who sent the error
    ttl: int | None = None     # TTL / hop limit of the reply (from the IP header or ancillary data)


def parse_raw(family: socket.AddressFamily, data: bytes, source: str) -> Parsed | None:
    """Parse what a raw socket received (IPv4 with its IP header, ICMPv6 without)."""
    ttl: int | None = None
    if family == socket.AF_INET:
        if len(data) < 20:
            return None
        ihl = (data[0] & 0x0F) * 4
        ttl = data[8]
        data = data[ihl:]
    if len(data) < HEADER_BYTES:
        return None
    kind, code, _, ident, seq = struct.unpack("!BBHHH", data[:8])
    if kind == ECHO_REPLY[family]:
        return Parsed("reply", ident, seq, source, data[8:8 + COOKIE_BYTES], kind, code, source, ttl)
    if kind not in (UNREACHABLE[family], TIME_EXCEEDED[family]):
        return None
    quoted = data[8:]
    if family == socket.AF_INET:
        if len(quoted) < 28 or quoted[9] != socket.IPPROTO_ICMP:
            return None
        qihl = (quoted[0] & 0x0F) * 4
        dest = socket.inet_ntop(socket.AF_INET, quoted[16:20])
        inner = quoted[qihl:]
    else:
        if len(quoted) < 48 or quoted[6] != socket.IPPROTO_ICMPV6:
            return None
        dest = socket.inet_ntop(socket.AF_INET6, quoted[24:40])
        inner = quoted[40:]
    if len(inner) < 8 or inner[0] != ECHO_REQUEST[family]:
        return None
    qident, qseq = struct.unpack("!HH", inner[4:8])
    return Parsed("error", qident, qseq, dest, inner[8:8 + COOKIE_BYTES], kind, code, source, ttl)


def parse_datagram_reply(family: socket.AddressFamily, data: bytes, source: str, ttl: int | None) -> Parsed | None:
    """Parse an echo reply read from a datagram socket (no IP header)."""
    if len(data) < HEADER_BYTES:
        return None
    kind, code, _, ident, seq = struct.unpack("!BBHHH", data[:8])
    if kind != ECHO_REPLY[family]:
        return None
    return Parsed("reply", ident, seq, source, data[8:8 + COOKIE_BYTES], kind, code, source, ttl)


# struct sock_extended_err: errno u32, origin u8, type u8, code u8, pad u8, info u32, data u32
_EE = struct.Struct("=IBBBBII")
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3


def parse_errqueue(family: socket.AddressFamily, data: bytes, dest: str, ee: bytes) -> Parsed | None:
    """Parse an ICMP error from a datagram socket's error queue (``data`` is our own request)."""
    if len(ee) < _EE.size or len(data) < HEADER_BYTES:
        return None
    _errno, origin, icmp_type, icmp_code, _pad, _info, _data = _EE.unpack_from(ee)
    if origin not in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6):
        return None
    responder = ""
    offender = ee[_EE.size:]
    if len(offender) >= 8 and struct.unpack_from("=H", offender)[0] == socket.AF_INET:
        responder = socket.inet_ntop(socket.AF_INET, offender[4:8])
    elif len(offender) >= 24 and struct.unpack_from("=H", offender)[0] == socket.AF_INET6:
        responder = socket.inet_ntop(socket.AF_INET6, offender[8:24])
    ident, seq = struct.unpack("!HH", data[4:8])
    return Parsed("error", ident, seq, dest, data[8:8 + COOKIE_BYTES], icmp_type, icmp_code, responder, None)


def failure_of(family: socket.AddressFamily, icmp_type: int, icmp_code: int) -> str:
    """The failure string for an ICMP error about an echo request."""
    if icmp_type == TIME_EXCEEDED[family]:
        return "timeout"  # the echo died on the way (a loop or a too-low TTL): nothing came back from the target
    if family == socket.AF_INET:
        return "network_unreachable" if icmp_code in (0, 6, 11) else "host_unreachable"
    return "network_unreachable" if icmp_code == 0 else "host_unreachable"
