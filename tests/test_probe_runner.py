"""The runner (params, envelope, timeout, classification, concurrency) and the failure classifier."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import socket
import ssl
import subprocess
import sys
import types
from typing import Any

import aiohttp
import dns.exception
import dns.resolver
import pytest

from probe import probers
from probe.classify import AIOHTTP_FAILURES, DNS_FAILURES, ERRNO_FAILURES, classify
from probe.config import ProbeConfig
from probe.guard import Guard
from probe.probers.base import Context, Outcome, ParamsError
from probe.record import FAILURES, validate
from probe.runner import describe_params, params_class, parse_param_text, run_test, validate_params

MINE = ("dns", "http", "tcp", "throughput")


@dataclasses.dataclass(frozen=True)
class PluginParams:
    sleep_s: float = 0.0
    raise_text: str | None = None


def install_plugin(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """A small real prober module registered like any test (no project code is replaced)."""
    state = {"running": 0, "peak": 0}

    async def run(target: str, params: PluginParams, ctx: Context) -> Outcome:
        state["running"] += 1
        state["peak"] = max(state["peak"], state["running"])
        try:
            ctx.extra["partial_keys"] = {"stage": "sleeping"}
            await asyncio.sleep(params.sleep_s)
            if params.raise_text:
                raise RuntimeError(params.raise_text)
            return Outcome({"target_seen": target}, success=True)
        finally:
            state["running"] -= 1

    module = types.ModuleType("ta_plugin_prober")
    module.__dict__.update(NAME="plugin", VERSION="0.1.0", PluginParams=PluginParams, run=run)
    PluginParams.__module__ = module.__name__
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(probers.REGISTRY, "plugin", module.__name__)
    return state


async def test_unknown_exception_becomes_unknown_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(monkeypatch)
    record = await run_test("plugin", "x", {"raise_text": "disk on fire"}, guard=Guard())
    assert record["success"] is False
    assert record["failure"] == "unknown_failure: RuntimeError: disk on fire"
    assert record["test_keys"] == {"stage": "sleeping"}


async def test_timeout_keeps_partial_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(monkeypatch)
    record = await run_test("plugin", "x", {"sleep_s": 5.0}, guard=Guard(), timeout_s=0.2)
    assert record["failure"] == "timeout" and record["test_keys"] == {"stage": "sleeping"}
    assert 0.2 <= record["runtime_s"] < 1.0


async def test_envelope_and_record(monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(monkeypatch)
    envelope = {"probe_id": "probe-0001", "campaign_id": "c1", "task_id": "t1", "probe_cc": "KZ",
                "probe_asn": 9198, "probe_access": "mobile", "annotations": {"target_category": "control"}}
    record = await run_test("plugin", "example.org", guard=Guard(), envelope=envelope)
    assert validate(record) is record
    assert {k: record[k] for k in envelope} == envelope
    assert record["test_name"] == "plugin" and record["test_version"] == "0.1.0" and record["source"] == "tocsin"
    assert record["start_time"].endswith("Z") and record["test_keys"] == {"target_seen": "example.org"}
    with pytest.raises(ParamsError, match="unknown envelope key"):
        await run_test("plugin", "x", guard=Guard(), envelope={"probe_ip": "1.2.3.4"})


async def test_concurrency_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    state = install_plugin(monkeypatch)
    guard = Guard(ProbeConfig(max_concurrent_tests=2))
    records = await asyncio.gather(*(run_test("plugin", f"t{i}", {"sleep_s": 0.05}, guard=guard)
                                     for i in range(6)))
    assert state["peak"] == 2 and all(r["success"] for r in records)
    assert len({r["measurement_id"] for r in records}) == 6


async def test_bad_calls_cannot_run() -> None:
    with pytest.raises(ParamsError, match="unknown test 'nope'"):
        await run_test("nope", "x", guard=Guard())
    with pytest.raises(ParamsError, match="target must be"):
        await run_test("tcp", "", guard=Guard())
    with pytest.raises(ParamsError, match="timeout must be"):
        await run_test("tcp", "192.0.2.1:80", guard=Guard(), timeout_s=0)


@pytest.mark.parametrize(("test", "params", "message"), [
    ("http", {"max_redirect": 3}, "unknown parameter(s) max_redirect; known: method"),
    ("http", {"max_redirects": "3"}, "parameter max_redirects must be integer, not '3'"),
    ("http", {"max_redirects": True}, "parameter max_redirects must be integer"),
    ("http", {"max_redirects": 99}, "max_redirects must be between 0 and 30, not 99"),
    ("http", {"method": "POST"}, "method must be one of 'GET', 'HEAD'"),
    ("http", {"headers": "server"}, "headers must be list of string"),
    ("tcp", {"connect_timeout_s": 0}, "connect_timeout_s must be between 0.1 and 120"),
    ("throughput", {"max_seconds": 600}, "max_seconds must be between 0.5 and 60"),
    ("throughput", {"control_url": "ftp://x"}, "must be an http:// or https:// URL"),
    ("dns", {"query_timeout_s": None}, "query_timeout_s must be number"),
])
def test_validate_params_refuses(test: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamsError) as info:
        validate_params(test, params)
    assert message in str(info.value) and str(info.value).startswith(f"{test}: ")


def test_validate_params_converts() -> None:
    http = validate_params("http", {"headers": ["server"], "max_body_bytes": 10})
    assert http.headers == ("server",) and http.max_body_bytes == 10
    assert validate_params("tcp", {"connect_timeout_s": 3}).connect_timeout_s == 3.0
    assert validate_params("dns", None) == params_class("dns")()
    with pytest.raises(ParamsError, match="must be an object"):
        validate_params("dns", ["A"])  # type: ignore[arg-type]


def test_param_text_from_the_command_line() -> None:
    assert parse_param_text("http", ["max_redirects=3", "headers=server,via", "verify_tls=false"]) == \
        {"max_redirects": 3, "headers": ["server", "via"], "verify_tls": False}
    assert parse_param_text("dns", ["resolver=none", "port=853"]) == {"resolver": None, "port": 853}
    assert validate_params("dns", parse_param_text("dns", ["resolver=192.0.2.53"])).resolver == "192.0.2.53"
    with pytest.raises(ParamsError, match="must be integer, not 'x'"):
        validate_params("http", parse_param_text("http", ["max_redirects=x"]))
    with pytest.raises(ParamsError, match="expected KEY=VALUE"):
        parse_param_text("http", ["max_redirects"])
    with pytest.raises(ParamsError, match="unknown parameter"):
        parse_param_text("http", ["nope=1"])


@pytest.mark.parametrize("test", MINE)
def test_describe_params_covers_every_field(test: str) -> None:
    described = describe_params(test)
    assert [p["name"] for p in described] == [f.name for f in dataclasses.fields(params_class(test))]
    assert all(p["help"] for p in described)
    cls = params_class(test)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cls(), described[0]["name"], None)


def test_runner_and_params_import_no_scapy() -> None:
    code = ("import sys, probe.runner as r\n"
            "from probe import probers\n"
            "for n in probers.names(): r.validate_params(n, {})\n"
            "assert 'scapy' not in sys.modules, 'scapy imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- the classifier -----------------------------------------------------------------------------

def test_classifier_tables_stay_in_the_vocabulary() -> None:
    for table in (ERRNO_FAILURES, AIOHTTP_FAILURES, DNS_FAILURES):
        assert set(table.values()) <= set(FAILURES)
    for name in AIOHTTP_FAILURES:
        assert hasattr(aiohttp, name), name
    for name in DNS_FAILURES:
        assert hasattr(dns.exception, name) or hasattr(dns.resolver, name) or name == "UnexpectedEOF", name


@pytest.mark.parametrize(("exc", "failure"), [
    (TimeoutError(), "timeout"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "connection_refused"),
    (ConnectionResetError(errno.ECONNRESET, "reset"), "connection_reset"),
    (OSError(errno.EHOSTUNREACH, "no route"), "host_unreachable"),
    (OSError(errno.ENETUNREACH, "net"), "network_unreachable"),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "dns_nxdomain"),
    (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), "dns_lookup_error"),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), "tls_certificate_error"),
    (ssl.SSLError(1, "wrong version number"), "tls_error"),
    (dns.exception.Timeout(), "timeout"),
    (dns.resolver.NXDOMAIN(), "dns_nxdomain"),
    (asyncio.IncompleteReadError(b"", 10), "eof_error"),
    (aiohttp.ServerDisconnectedError(), "eof_error"),
    (aiohttp.ClientPayloadError("short"), "eof_error"),
])
def test_classify(exc: BaseException, failure: str) -> None:
    assert classify(exc) == failure


def test_classify_follows_the_cause() -> None:
    try:
        try:
            raise ConnectionResetError(errno.ECONNRESET, "reset")
        except ConnectionResetError as inner:
            raise ValueError("wrapped") from inner
    except ValueError as outer:
        assert classify(outer) == "connection_reset"


def test_unknown_is_short_and_prefixed() -> None:
    text = classify(KeyError("x" * 500))
    assert text.startswith("unknown_failure: KeyError: ") and len(text) <= len("unknown_failure: ") + 120
