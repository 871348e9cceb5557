"""One place that maps exceptions to the closed failure vocabulary (``probe.record.FAILURES``).

Detectors read these strings, never exception text.  Anything not recognised here becomes
``unknown_failure: <short text>`` so that it is still recorded and can be added later.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

from probe.record import FAILURES, unknown_failure

# errno -> failure string (OSError, aiohttp's ClientOSError, dnspython's socket errors)
ERRNO_FAILURES: dict[int, str] = {
    errno.ECONNREFUSED: "connection_refused",
    errno.ECONNRESET: "connection_reset",
    errno.ECONNABORTED: "connection_reset",
    errno.EPIPE: "connection_reset",
    errno.ETIMEDOUT: "timeout",
    errno.EHOSTUNREACH: "host_unreachable",
    errno.EHOSTDOWN: "host_unreachable",
    errno.EACCES: "host_unreachable",        # ICMP administratively prohibited on connect
    errno.EPERM: "host_unreachable",         # a local firewall rejected the packet
    errno.ENETUNREACH: "network_unreachable",
    errno.ENETDOWN: "network_unreachable",
    errno.EADDRNOTAVAIL: "network_unreachable",
}

# getaddrinfo's own error codes (socket.gaierror)
_GAI_NXDOMAIN = {getattr(socket, n) for n in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, n)}
# the resolver itself unreachable or failing: typical inside a shutdown
_GAI_LOOKUP = {getattr(socket, n) for n in ("EAI_AGAIN", "EAI_FAIL") if hasattr(socket, n)}


def classify(exc: BaseException) -> str:
    """The failure string for ``exc``: a key of FAILURES or ``unknown_failure: <text>``."""
    for item in _chain(exc):
        found = _classify_one(item)
        if found is not None:
            assert found in FAILURES, found
            return found
    return unknown_failure(f"{type(exc).__name__}: {exc}")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` then what it wraps (``os_error``, ``__cause__``, ``__context__``), nearest first."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 8:
        item = todo.pop(0)
        if any(item is s for s in seen):
            continue
        seen.append(item)
        for attr in ("os_error", "certificate_error", "__cause__", "__context__"):
            inner = getattr(item, attr, None)
            if isinstance(inner, BaseException):
                todo.append(inner)
    return seen


def _classify_one(exc: BaseException) -> str | None:
    name = type(exc).__name__
    module = type(exc).__module__ or ""
    if module.startswith("dns."):
        return DNS_FAILURES.get(name)
    if name == "ClientPayloadError" and "ConnectionResetError" in str(exc):
        # aiohttp keeps the transport's error only in the message of an incomplete body: a reset in
        # the middle of a transfer (an injected RST) must not read as a plain early close.
        return "connection_reset"
    if module.startswith("aiohttp") and name in AIOHTTP_FAILURES:
        return AIOHTTP_FAILURES[name]
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "tls_certificate_error"
    if isinstance(exc, ssl.SSLError):
        return "tls_error"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, socket.gaierror):
        if exc.errno in _GAI_NXDOMAIN:
            return "dns_nxdomain"
        return "dns_lookup_error" if exc.errno in _GAI_LOOKUP else None
    if isinstance(exc, OSError) and exc.errno in ERRNO_FAILURES:
        return ERRNO_FAILURES[exc.errno]
    if isinstance(exc, ConnectionRefusedError):
        return "connection_refused"
    if isinstance(exc, ConnectionError):
        return "connection_reset"
    if isinstance(exc, EOFError | asyncio.IncompleteReadError):
        return "eof_error"
    return None


# aiohttp exceptions by class name (aiohttp is imported only by the tests that use it).
# ClientConnectorSSLError and ClientConnectorError are left to what they wrap.
AIOHTTP_FAILURES: dict[str, str] = {
    "ClientConnectorCertificateError": "tls_certificate_error",
    "ServerDisconnectedError": "eof_error",
    "ClientPayloadError": "eof_error",
    "TooManyRedirects": "redirect_loop",
    "ClientResponseError": "http_protocol_error",
    "ServerTimeoutError": "timeout",
    "ConnectionTimeoutError": "timeout",
    "SocketTimeoutError": "timeout",
    "ClientConnectionResetError": "connection_reset",
}

# dnspython exceptions by class name
DNS_FAILURES: dict[str, str] = {
    "NXDOMAIN": "dns_nxdomain",
    "NoAnswer": "dns_no_answer",
    "NoNameservers": "dns_servfail",
    "Timeout": "timeout",
    "LifetimeTimeout": "timeout",
    "UnexpectedEOF": "eof_error",
}
