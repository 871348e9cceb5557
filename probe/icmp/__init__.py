"""The single-socket ICMP engine used by the ``ping`` test (and sweeps of many targets).

One socket per address family, per network namespace and per event loop is shared by every
concurrent ping and sweep of the process; replies are demultiplexed to the waiting requests by
source address, sequence number and a payload cookie (and the identifier, in raw mode).  See
``docs/tests/ping.md``.
"""

from probe.icmp.engine import EchoResult, IcmpEngine, close_engines, shared_engine
from probe.icmp.sockets import IcmpSocket, NoIcmpSocketError, open_icmp_socket

__all__ = [
    "EchoResult",
    "IcmpEngine",
    "IcmpSocket",
    "NoIcmpSocketError",
    "close_engines",
    "open_icmp_socket",
    "shared_engine",
]
