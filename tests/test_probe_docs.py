"""The probe's docs agree with the code: record fields, failures, CLI, settings, guard rules, tests."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dns.message
import dns.rrset
import pytest
from aiohttp import web

from probe import cli_measure, probers
from probe.config import SETTINGS, ProbeConfig
from probe.guard import RULES, Guard
from probe.probers import dns as dns_test
from probe.probers.base import Context
from probe.record import FAILURES, FIELDS
from probe.runner import params_class, run_test

DOCS = Path(__file__).resolve().parent.parent / "docs"
LAB = ProbeConfig(allow_ranges=("127.0.0.0/8",))


def section(text: str, heading: str) -> str:
    match = re.search(rf"^#+ {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no section {heading!r}"
    return match.group(1)


def rows(text: str) -> list[list[str]]:
    """The body rows of the markdown tables in ``text`` (header rows left out), cells stripped of backticks."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        is_header = i + 1 < len(lines) and lines[i + 1].startswith("| ---")
        if line.startswith("| ") and not line.startswith("| ---") and not is_header:
            out.append([c.strip().strip("`") for c in line.strip().strip("|").split(" | ")])
    return out


def type_name(types: tuple[type, ...]) -> str:
    if set(types) == {int, float}:
        return "number"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", type(None): "null"}
    return " or ".join(names[t] for t in types)


def test_record_fields_match_the_code() -> None:
    documented = rows(section((DOCS / "record.md").read_text(), "Envelope"))
    expected = [[f.name, type_name(f.types), "yes" if f.required else "no", f.description] for f in FIELDS]
    assert documented == expected


def test_failure_vocabulary_matches_the_code() -> None:
    documented = rows(section((DOCS / "record.md").read_text(), "Failure vocabulary"))
    assert documented == [[k, v] for k, v in FAILURES.items()]


def test_annotation_keys_are_documented() -> None:
    documented = [r[0] for r in rows(section((DOCS / "record.md").read_text(), "Annotations"))]
    assert documented == ["target_category", "target_cc", "target_group", "vantage"]


@pytest.mark.parametrize("test", probers.names())
def test_every_test_has_a_page_with_every_parameter(test: str) -> None:
    page = DOCS / "tests" / f"{test}.md"
    assert page.exists(), f"docs/tests/{test}.md is missing"
    text = page.read_text()
    for f in dataclasses.fields(params_class(test)):
        assert f"`{f.name}`" in text, f"parameter {f.name} of {test} is not in {page.name}"


def _parser() -> dict[str, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli_measure.register(sub)
    return dict(sub.choices)


def test_cli_options_and_exit_codes_are_documented() -> None:
    text = (DOCS / "probe-cli.md").read_text()
    for command, parser in _parser().items():
        body = section(text, f"`{command}`")
        assert f"python -m probe {command}" in body
        for action in parser._actions:
            for flag in action.option_strings or [str(action.metavar or action.dest)]:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in body or f"{flag}`" in body, f"{command} {flag} undocumented"
    codes = rows(section(text, "`measure`").split("### Exit codes")[1])
    assert {int(r[0]) for r in codes} == set(cli_measure.EXIT_CODES)


def test_settings_are_documented_with_their_defaults() -> None:
    documented = rows(section((DOCS / "probe-cli.md").read_text(), "The local configuration: `probe.toml`"))
    defaults = ProbeConfig()
    assert [r[0] for r in documented] == list(SETTINGS)
    for name, default, _meaning in documented:
        value = getattr(defaults, name)
        assert json.loads(default) == (list(value) if isinstance(value, tuple) else value), name


def test_guard_rules_are_documented() -> None:
    documented = rows(section((DOCS / "probe-cli.md").read_text(), "The address guard"))
    expected: dict[str, list[str]] = {}
    for name, net in RULES:
        expected.setdefault(name, []).append(str(net))
    assert {r[0]: r[1].split(", ") for r in documented} == expected


# -- test keys of real records are documented ----------------------------------------------------

def documented_keys(test: str) -> set[str]:
    return set(re.findall(r"^\| `([a-z_0-9]+)` \|", (DOCS / "tests" / f"{test}.md").read_text(), re.M))


def all_keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() if not isinstance(v, str) for k in all_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in all_keys(v)}
    return set()


@pytest.fixture
async def web_server() -> AsyncIterator[str]:
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="x" * 5000)

    async def hop(_request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    app = web.Application()
    app.add_routes([web.get("/ok", ok), web.get("/hop", hop)])
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_test_keys_of_real_records_are_documented(web_server: str) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        tcp = await run_test("tcp", f"127.0.0.1:{port}", guard=Guard(LAB))
    finally:
        listener.close()
    refused = await run_test("tcp", f"127.0.0.1:{port}", guard=Guard(LAB))
    http = await run_test("http", web_server + "/hop", guard=Guard(LAB))
    tput = await run_test("throughput", web_server + "/hop", {"control_url": web_server + "/ok"}, guard=Guard(LAB))
    query = dns.message.make_query("bogon.test", "A")
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text("bogon.test.", 60, "IN", "A", "10.0.0.1"))
    keys = {"query_name": "bogon.test.", "response_time_ms": 1.0}
    dns_keys = dns_test.judge(response, dns.rdatatype.A, keys, Context(Guard(), 5)).test_keys
    for test, found in (("tcp", all_keys(tcp["test_keys"]) | all_keys(refused["test_keys"])),
                        ("http", all_keys(http["test_keys"])), ("throughput", all_keys(tput["test_keys"])),
                        ("dns", all_keys(dns_keys))):
        hops = documented_keys("http") if test in ("throughput", "dns") else set()   # "hops as in the http test"
        missing = found - documented_keys(test) - hops - {"server", "content-type", "content-length", "location"}
        assert not missing, f"{test}: undocumented test keys {sorted(missing)}"


def test_record_example_is_valid() -> None:
    from probe.record import validate

    text = (DOCS / "record.md").read_text()
    example = text.split("```json", 1)[1].split("```", 1)[0]
    assert validate(json.loads(example))["test_name"] == "tcp"
