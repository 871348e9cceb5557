"""Opening the one ICMP socket: raw with CAP_NET_RAW, else an unprivileged datagram socket.

Both kinds get a large receive buffer (sweeps burst thousands of replies), kernel receive
timestamps (``SO_TIMESTAMPNS``), the reply's TTL or hop limit as ancillary data, and are
non-blocking.  Datagram sockets also get ``IP_RECVERR`` so that ICMP errors (unreachable, time
exceeded) arrive on the socket's error queue.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass

MODES = ("auto", "raw", "datagram")

# Linux constants that the socket module does not export on every Python version.
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
IP_RECVERR = 11
IP_RECVTTL = 12
IPV6_RECVERR = 25
IPV6_RECVHOPLIMIT = 51
SOL_RAW = 255
ICMP_FILTER = 1
ICMP6_FILTER = 1

RCVBUF_BYTES = 8 * 1024 * 1024

HOW_TO_ENABLE = (
    "neither a raw ICMP socket (needs CAP_NET_RAW) nor an unprivileged ICMP datagram socket "
    "(needs the process's group in net.ipv4.ping_group_range) could be opened. Either allow "
    "datagram ICMP sockets: sysctl -w net.ipv4.ping_group_range=\"0 2147483647\", or give the "
    "interpreter the capability: setcap cap_net_raw+ep $(readlink -f $(which python3))"
)


class NoIcmpSocketError(PermissionError):
    """No ICMP socket of the wanted kind can be opened; the message says what to change."""


@dataclass
class IcmpSocket:
    sock: socket.socket
    family: socket.AddressFamily
    mode: str                  # "raw" or "datagram"
    rcvbuf_bytes: int          # what the kernel granted (as getsockopt reports it)


def _open(family: socket.AddressFamily, mode: str) -> socket.socket:
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    kind = socket.SOCK_RAW if mode == "raw" else socket.SOCK_DGRAM
    return socket.socket(family, kind, proto)


def open_icmp_socket(family: socket.AddressFamily = socket.AF_INET, mode: str = "auto",
                     rcvbuf_bytes: int = RCVBUF_BYTES) -> IcmpSocket:
    """Open and configure the ICMP socket; ``mode`` is ``auto`` (raw, else datagram), ``raw`` or ``datagram``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise ValueError("family must be AF_INET or AF_INET6")
    tried = ["raw", "datagram"] if mode == "auto" else [mode]
    sock: socket.socket | None = None
    used = ""
    for m in tried:
        try:
            sock = _open(family, m)
            used = m
            break
        except PermissionError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EACCES, errno.EPROTONOSUPPORT):
                raise
    if sock is None:
        what = "" if mode == "auto" else f" ({mode} mode was asked for)"
        raise NoIcmpSocketError(HOW_TO_ENABLE + what)
    try:
        granted = _configure(sock, family, used, rcvbuf_bytes)
    except BaseException:
        sock.close()
        raise
    return IcmpSocket(sock, family, used, granted)


def _configure(sock: socket.socket, family: socket.AddressFamily, mode: str, rcvbuf_bytes: int) -> int:
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
    if os.geteuid() == 0:
        try:  # root may exceed net.core.rmem_max
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf_bytes)
        except OSError:
            pass
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    if family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        if mode == "datagram":
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        else:  # keep only echo reply (0), unreachable (3), time exceeded (11)
            wanted = (1 << 0) | (1 << 3) | (1 << 11)
            sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", ~wanted & 0xFFFFFFFF))
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
        if mode == "datagram":
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        else:  # block every ICMPv6 type but unreachable (1), time exceeded (3), echo reply (129)
            words = [0xFFFFFFFF] * 8
            for t in (1, 3, 129):
                words[t >> 5] &= ~(1 << (t & 31))
            sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("8I", *words))
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
