"""http: fetch a URL over HTTP or HTTPS, following redirects one guarded hop at a time.

Every hop's host is resolved by the probe, each address checked by the guard, and the
connection pinned to those addresses (no second lookup to rebind).  Per hop: status, the
selected headers and phase timings (dns, connect, tls, first byte) from aiohttp's tracing hooks;
for the last hop also the body's length and sha256 (bounded by ``max_body_bytes``) and its first
bytes for blockpage fingerprinting.  ``success`` means an HTTP answer came back, whatever its status.
"""

from __future__ import annotations

import base64
import codecs
import contextvars
import hashlib
import os
import socket
import ssl
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Literal

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from probe.classify import classify
from probe.guard import resolve_checked
from probe.probers.base import Context, Outcome, ParamsError, TargetForbidden

NAME = "http"
VERSION = "1.0.0"
DEFAULT_TIMEOUT_S = 30.0
USER_AGENT = "tocsin-probe/0.1"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_HEADERS = ("server", "content-type", "content-length", "location", "via", "x-cache", "cf-ray")


@dataclass(frozen=True)
class HttpParams:
    method: Literal["GET", "HEAD"] = field(default="GET", metadata={"help": "GET or HEAD"})
    max_redirects: int = field(default=10, metadata={"help": "redirects followed before redirect_loop (0-30)"})
    max_body_bytes: int = field(default=1_048_576, metadata={
        "help": "body bytes read at most; length and sha256 cover what was read (0-100000000)"})
    keep_body_bytes: int = field(default=2048, metadata={
        "help": "first body bytes kept in the record for blockpage fingerprinting (0-65536)"})
    headers: tuple[str, ...] = field(default=DEFAULT_HEADERS, metadata={
        "help": "response header names recorded for every hop (case-insensitive)"})
    verify_tls: bool = field(default=True, metadata={"help": "verify certificates; false still records the chain"})
    user_agent: str = field(default=USER_AGENT, metadata={"help": "User-Agent header sent"})

    def __post_init__(self) -> None:
        _check_range("max_redirects", self.max_redirects, 0, 30)
        _check_range("max_body_bytes", self.max_body_bytes, 0, 100_000_000)
        _check_range("keep_body_bytes", self.keep_body_bytes, 0, 65_536)
        if any(not h or not h.isascii() or ":" in h for h in self.headers):
            raise ParamsError("headers must be header names")


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ParamsError(f"{name} must be between {low} and {high}, not {value}")


def parse_url(target: str) -> URL:
    try:
        url = URL(target)
    except (ValueError, TypeError) as exc:
        raise ParamsError(f"target {target!r} is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ParamsError(f"target {target!r} must be an http:// or https:// URL with a host")
    return url


class PinnedResolver(AbstractResolver):
    """Hands aiohttp only the addresses the guard already checked for that host."""

    def __init__(self) -> None:
        self.pins: dict[str, list[str]] = {}

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET,
                      ) -> list[ResolveResult]:
        addresses = self.pins.get(host)
        if not addresses:
            raise OSError(f"{host} was not resolved through the address guard")
        return [ResolveResult(hostname=host, host=a, port=port, proto=0, flags=socket.AI_NUMERICHOST,
                              family=socket.AF_INET6 if ":" in a else socket.AF_INET) for a in addresses]

    async def close(self) -> None:
        return None


class TimedSSLContext(ssl.SSLContext):
    """Notes when a TLS handshake starts (asyncio calls ``wrap_bio`` once TCP is connected).

    One context is shared by every test of the process (building one costs ~60-90 ms of CPU for
    the trust store).  The start is written to the :class:`HopTimer` of the request being made,
    found through a context variable: asyncio runs ``wrap_bio`` in the context of the task that
    opened the connection, so concurrent tests never see each other's marks.
    """

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        started = time.perf_counter()
        obj = super().wrap_bio(*args, **kwargs)
        timer = _CURRENT_TIMER.get()
        if timer is not None:
            timer.tls_started, timer.tls_object = started, obj
        return obj


def load_system_trust(context: ssl.SSLContext) -> None:
    """The system's trust store, loaded lazily from the hashed directory when there is one
    (``SSL_CERT_FILE`` still wins when set)."""
    paths = ssl.get_default_verify_paths()
    capath = paths.capath
    if not os.environ.get(paths.openssl_cafile_env) and capath and os.path.isdir(capath) and any(
            name.endswith(".0") for name in os.listdir(capath)):
        context.load_verify_locations(capath=capath)
    else:
        context.load_default_certs()


_CONTEXTS: dict[tuple[bool, str | None, str | None, str | None], TimedSSLContext] = {}
_CURRENT_TIMER: contextvars.ContextVar[HopTimer | None] = contextvars.ContextVar("tocsin_http_timer", default=None)


def make_ssl_context(verify: bool, cafile: str | None) -> TimedSSLContext:
    """The process's shared client context for (verify, cafile, trust environment), built on first use."""
    key = (verify, cafile, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    context = _CONTEXTS.get(key)
    if context is None:
        context = TimedSSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if verify:
            if cafile:
                context.load_verify_locations(cafile=cafile)
            else:
                load_system_trust(context)
        else:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        _CONTEXTS[key] = context
    return context


def _ms(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round((end - start) * 1000, 3)


class HopTimer:
    """Phase marks of one request (one hop of a redirect chain)."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self.tls_started: float | None = None
        self.tls_object: ssl.SSLObject | None = None

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, time.perf_counter())

    def phases(self) -> dict[str, Any]:
        m = self.marks
        tls_start = self.tls_started
        connected = tls_start if tls_start is not None else m.get("connect_end")
        tls_object = self.tls_object
        return {"connect_ms": _ms(m.get("connect_start"), connected),
                "tls_ms": _ms(tls_start, m.get("connect_end")),
                "tls_version": tls_object.version() if tls_object is not None else None,
                "first_byte_ms": _ms(m.get("headers_sent"), m.get("headers_received"))}


def _trace_config() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()

    def hook(name: str) -> Any:
        async def on_event(_session: aiohttp.ClientSession, ctx: SimpleNamespace, _params: Any) -> None:
            timer = ctx.trace_request_ctx
            if isinstance(timer, HopTimer):
                timer.mark(name)
        return on_event

    trace.on_request_start.append(hook("request_start"))
    trace.on_connection_create_start.append(hook("connect_start"))
    trace.on_connection_create_end.append(hook("connect_end"))
    trace.on_request_headers_sent.append(hook("headers_sent"))
    trace.on_request_end.append(hook("headers_received"))
    return trace


class GuardedClient:
    """An aiohttp session whose every connection goes to guard-checked, pinned addresses."""

    def __init__(self, ctx: Context, *, verify_tls: bool = True, user_agent: str = USER_AGENT) -> None:
        self.ctx = ctx
        self.resolver = PinnedResolver()
        self.tls = make_ssl_context(verify_tls, ctx.extra.get("ssl_cafile"))
        self.user_agent = user_agent
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> GuardedClient:
        connector = aiohttp.TCPConnector(resolver=self.resolver, ssl=self.tls, use_dns_cache=False, force_close=True)
        self.session = aiohttp.ClientSession(connector=connector, trace_configs=[_trace_config()],
                                             timeout=aiohttp.ClientTimeout(total=None), auto_decompress=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    async def follow(self, url: URL, *, method: str, max_redirects: int, hops: list[dict[str, Any]],
                     header_names: tuple[str, ...] = DEFAULT_HEADERS, **request: Any,
                     ) -> tuple[aiohttp.ClientResponse | None, str | None]:
        """Request ``url`` and its redirects; the last response (unread) or the failure that stopped it.

        Each hop is appended to ``hops`` as soon as it starts, so a failure keeps what was seen.
        TargetForbidden is raised for the first URL, recorded as ``redirect_forbidden`` after it.
        """
        assert self.session is not None
        for index in range(max_redirects + 1):
            hop: dict[str, Any] = {"url": str(url)}
            hops.append(hop)
            t0 = time.perf_counter()
            try:
                addresses = await resolve_checked(self.ctx.guard, url.host or "", url.port or 0)
            except TargetForbidden as exc:
                if index == 0:
                    raise
                hop["failure"] = "redirect_forbidden"
                hop["refused"] = str(exc)
                return None, "redirect_forbidden"
            hop["dns_ms"] = _ms(t0, time.perf_counter())
            hop["addresses"] = addresses
            self.resolver.pins[url.host or ""] = addresses
            timer = HopTimer()
            token = _CURRENT_TIMER.set(timer)
            try:
                headers = {"User-Agent": self.user_agent, **request.pop("headers", {})}
                resp = await self.session.request(method, url, allow_redirects=False, trace_request_ctx=timer,
                                                  headers=headers, **request)
            finally:
                _CURRENT_TIMER.reset(token)
                hop.update(timer.phases())
            hop["status"] = resp.status
            hop["http_version"] = f"{resp.version.major}.{resp.version.minor}" if resp.version else None
            wanted = {h.lower() for h in header_names}
            hop["headers"] = {k.lower(): v for k, v in resp.headers.items() if k.lower() in wanted}
            location = resp.headers.get("Location")
            if resp.status not in REDIRECT_STATUSES or not location:
                return resp, None
            resp.release()
            try:
                url = url.join(URL(location))
            except ValueError:
                return None, "http_protocol_error"
            if url.scheme not in ("http", "https"):
                return None, "http_protocol_error"
        return None, "redirect_loop"


async def run(target: str, params: HttpParams, ctx: Context) -> Outcome:
    url = parse_url(target)
    hops: list[dict[str, Any]] = []
    keys: dict[str, Any] = {"url": str(url), "method": params.method, "redirects": hops}
    ctx.extra["partial_keys"] = keys
    async with GuardedClient(ctx, verify_tls=params.verify_tls, user_agent=params.user_agent) as client:
        try:
            resp, failure = await client.follow(url, method=params.method, max_redirects=params.max_redirects,
                                                hops=hops, header_names=params.headers)
            if resp is None:
                return Outcome(keys, success=False, failure=failure)
            t_body = time.perf_counter()
            body, truncated = await _read_bounded(resp, params.max_body_bytes)
            hops[-1]["transfer_ms"] = _ms(t_body, time.perf_counter())
            resp.release()
        except TargetForbidden:
            raise
        except Exception as exc:
            failure = classify(exc)
            if hops:
                hops[-1]["failure"] = failure
            return Outcome(keys, success=False, failure=failure)
    last = hops[-1]
    keys.update({"status": last["status"], "final_url": last["url"], "headers": last["headers"],
                 "body_length_bytes": len(body), "body_truncated": truncated,
                 "body_sha256": hashlib.sha256(body).hexdigest()})
    keys.update(keep_head(body, params.keep_body_bytes))
    return Outcome(keys, success=True)


def keep_head(body: bytes, n: int) -> dict[str, Any]:
    """The first ``n`` bytes as text when they are UTF-8 (a character cut at the end is left out),
    base64 otherwise."""
    head = body[:n]
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return {"body_head": text, "body_head_encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"body_head": base64.b64encode(head).decode(), "body_head_encoding": "base64"}


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await resp.content.read(min(65_536, limit - size))
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    more = await resp.content.read(1) if limit == size else b""
    return b"".join(chunks), bool(more)
