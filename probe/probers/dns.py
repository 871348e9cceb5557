"""dns: ask a resolver for any record type over UDP, TCP, DNS-over-TLS or DNS-over-HTTPS.

The target is the name asked for.  ``resolver`` unset means the system's resolver: the first
``nameserver`` of /etc/resolv.conf, asked directly (it is the volunteer's own resolver, so the
address guard does not apply to it).  A named resolver is checked by the guard like any target.
UDP answers with the TC bit are asked again over TCP (``retried_over_tcp``).

``success`` means the name resolved to a usable answer: NXDOMAIN, SERVFAIL, REFUSED, an empty
answer, or an A/AAAA answer into bogon, private or reserved space (``dns_bogon_answer``, the
classic tampering signature) are failures, with the rcode and every answer still recorded.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver

from probe.classify import classify
from probe.guard import forbidden_reason, resolve_checked
from probe.probers.base import Context, Outcome, ParamsError
from probe.record import unknown_failure

NAME = "dns"
VERSION = "1.0.0"
DEFAULT_TIMEOUT_S = 20.0
DEFAULT_PORTS = {"udp": 53, "tcp": 53, "dot": 853}
RCODE_FAILURES = {"NXDOMAIN": "dns_nxdomain", "SERVFAIL": "dns_servfail", "REFUSED": "dns_refused"}


@dataclass(frozen=True)
class DnsParams:
    query_type: str = field(default="A", metadata={"help": "record type: A, AAAA, CNAME, MX, TXT, NS, SOA, ANY..."})
    resolver: str | None = field(default=None, metadata={
        "help": "resolver address (udp, tcp, dot) or https:// URL (doh); unset: the system resolver"})
    transport: Literal["udp", "tcp", "dot", "doh"] = field(default="udp", metadata={"help": "udp, tcp, dot or doh"})
    port: int | None = field(default=None, metadata={"help": "resolver port; unset: 53 (udp, tcp) or 853 (dot)"})
    tls_server_name: str | None = field(default=None, metadata={
        "help": "DoT: name the resolver's certificate must carry; unset: encrypted but unauthenticated"})
    query_timeout_s: float = field(default=5.0, metadata={"help": "seconds to wait for the answer (0.1-60)"})
    recursion_desired: bool = field(default=True, metadata={"help": "set the RD flag"})

    def __post_init__(self) -> None:
        try:
            dns.rdatatype.from_text(self.query_type)
        except dns.exception.DNSException:
            raise ParamsError(f"query_type {self.query_type!r} is not a DNS record type") from None
        if not 0.1 <= self.query_timeout_s <= 60:
            raise ParamsError(f"query_timeout_s must be between 0.1 and 60, not {self.query_timeout_s}")
        if self.port is not None and not 1 <= self.port <= 65535:
            raise ParamsError(f"port must be 1-65535, not {self.port}")
        if self.transport == "doh" and not (self.resolver or "").startswith("https://"):
            raise ParamsError("transport doh needs resolver set to an https:// URL")
        if self.transport != "doh" and self.resolver is not None and "/" in self.resolver:
            raise ParamsError(f"resolver {self.resolver!r} must be an address or host name for {self.transport}")


def system_resolver(filename: str = "/etc/resolv.conf") -> str:
    """The first nameserver of the system's resolver configuration."""
    try:
        servers = dns.resolver.Resolver(filename=filename, configure=True).nameservers
    except dns.exception.DNSException as exc:
        raise OSError(f"no system resolver: {exc}") from None
    if not servers:
        raise OSError("no system resolver: /etc/resolv.conf names no nameserver")
    return str(servers[0])


def answers_of(response: dns.message.Message) -> list[dict[str, Any]]:
    return [{"name": rrset.name.to_text(), "type": dns.rdatatype.to_text(rrset.rdtype), "ttl": rrset.ttl,
             "value": rdata.to_text()} for rrset in response.answer for rdata in rrset]


def bogons_of(answers: list[dict[str, Any]], ctx: Context) -> list[dict[str, str]]:
    allowed = getattr(ctx.guard, "allow_networks", ())
    out = []
    for answer in answers:
        if answer["type"] in ("A", "AAAA"):
            reason = forbidden_reason(answer["value"], allowed)
            if reason is not None:
                out.append({"value": answer["value"], "reason": reason.split(" ", 1)[0]})
    return out


async def run(target: str, params: DnsParams, ctx: Context) -> Outcome:
    try:
        qname = dns.name.from_text(target)
    except dns.exception.DNSException as exc:
        raise ParamsError(f"target {target!r} is not a DNS name: {exc}") from None
    rdtype = dns.rdatatype.from_text(params.query_type)
    query = dns.message.make_query(qname, rdtype)
    if not params.recursion_desired:
        query.flags &= ~dns.flags.RD
    keys: dict[str, Any] = {"query_name": qname.to_text(), "query_type": dns.rdatatype.to_text(rdtype),
                            "transport": params.transport, "resolver": params.resolver,
                            "resolver_source": "named" if params.resolver else "system", "port": None,
                            "rcode": None, "answers": [], "response_time_ms": None, "retried_over_tcp": False}
    ctx.extra["partial_keys"] = keys
    try:
        response = await _ask(query, params, ctx, keys)
        if isinstance(response, str):
            return Outcome(keys, success=False, failure=response)
    except ParamsError:
        raise
    except (OSError, dns.exception.DNSException, ssl.SSLError, TimeoutError) as exc:
        return Outcome(keys, success=False, failure=classify(exc))
    return judge(response, rdtype, keys, ctx)


def judge(response: dns.message.Message, rdtype: dns.rdatatype.RdataType, keys: dict[str, Any], ctx: Context) -> Outcome:
    rcode = dns.rcode.to_text(response.rcode())
    answers = answers_of(response)
    bogons = bogons_of(answers, ctx)
    keys.update({"rcode": rcode, "answers": answers, "bogon_answers": bogons,
                 "flags": dns.flags.to_text(response.flags).split()})
    if rcode != "NOERROR":
        return Outcome(keys, success=False, failure=RCODE_FAILURES.get(rcode, unknown_failure(f"rcode {rcode}")))
    if bogons:
        return Outcome(keys, success=False, failure="dns_bogon_answer")
    if rdtype != dns.rdatatype.ANY and not any(a["type"] == dns.rdatatype.to_text(rdtype) for a in answers):
        return Outcome(keys, success=False, failure="dns_no_answer")
    return Outcome(keys, success=True)


async def _ask(query: dns.message.Message, params: DnsParams, ctx: Context,
               keys: dict[str, Any]) -> dns.message.Message | str:
    """The resolver's answer, or a failure string when a DoH request went nowhere."""
    timeout = params.query_timeout_s
    if params.transport == "doh":
        return await _ask_doh(query, params, ctx, keys)
    port = params.port or DEFAULT_PORTS[params.transport]
    if params.resolver is None:
        where = system_resolver()
    else:
        where = (await resolve_checked(ctx.guard, params.resolver, port))[0]
    keys.update({"resolver_address": where, "port": port})
    await ctx.guard.packets(1)
    t0 = time.perf_counter()
    try:
        if params.transport == "udp":
            response, used_tcp = await dns.asyncquery.udp_with_fallback(query, where, timeout=timeout, port=port)
            keys["retried_over_tcp"] = used_tcp
        elif params.transport == "tcp":
            response = await dns.asyncquery.tcp(query, where, timeout=timeout, port=port)
        else:
            context = _tls_context(params.tls_server_name, ctx.extra.get("ssl_cafile"))
            keys["tls_verified"] = params.tls_server_name is not None
            response = await dns.asyncquery.tls(query, where, timeout=timeout, port=port, ssl_context=context,
                                                server_hostname=params.tls_server_name)
    finally:
        keys["response_time_ms"] = round((time.perf_counter() - t0) * 1000, 3)
    return response


def _tls_context(server_name: str | None, cafile: str | None) -> ssl.SSLContext:
    """The process's shared client context (built once: loading the trust store costs 60-90 ms of
    CPU); verification only when a server name was given."""
    from probe.probers.http import make_ssl_context

    return make_ssl_context(server_name is not None, cafile)


async def _ask_doh(query: dns.message.Message, params: DnsParams, ctx: Context,
                   keys: dict[str, Any]) -> dns.message.Message | str:
    """RFC 8484 POST through the probe's guarded HTTP client (every hop checked by the guard)."""
    from probe.probers.http import GuardedClient, parse_url

    url = parse_url(params.resolver or "")
    hops: list[dict[str, Any]] = []
    keys.update({"port": url.port, "redirects": hops})
    query.id = 0  # RFC 8484 4.1: cache-friendly
    headers = {"Content-Type": "application/dns-message", "Accept": "application/dns-message"}
    t0 = time.perf_counter()
    async with GuardedClient(ctx) as client:
        try:
            resp, failure = await client.follow(url, method="POST", max_redirects=3, hops=hops,
                                                data=query.to_wire(), headers=headers,
                                                timeout=_client_timeout(params.query_timeout_s))
            if resp is None:
                return failure or "http_protocol_error"
            body = await resp.read()
        finally:
            keys["response_time_ms"] = round((time.perf_counter() - t0) * 1000, 3)
    keys["resolver_address"] = hops[-1].get("addresses", [None])[0] if hops else None
    keys["http_status"] = resp.status
    if resp.status != 200:
        return unknown_failure(f"DoH answer has HTTP status {resp.status}")
    return dns.message.from_wire(body)


def _client_timeout(seconds: float) -> Any:
    import aiohttp

    return aiohttp.ClientTimeout(total=seconds)
