"""docs/tests/ping.md and docs/tests/traceroute.md agree with the code's tables."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from probe.probers import ping, traceroute
from probe.record import FAILURES

DOCS = Path(__file__).resolve().parent.parent / "docs" / "tests"


def table(doc: str, heading: str) -> dict[str, list[str]]:
    """First-column names (in backticks) of the table under ``## heading`` -> the other cells."""
    section = doc.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"^\| `([^`]+)` \|(.*)\|$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split("|")]
    return rows


@pytest.mark.parametrize("module,page,params_cls,extra", [
    (ping, "ping.md", ping.PingParams, {"Per-packet keys": ping.PACKET_KEYS}),
    (traceroute, "traceroute.md", traceroute.TracerouteParams, {"Per-hop keys": traceroute.HOP_KEYS}),
])
def test_doc_tables_match_code(module: object, page: str, params_cls: type, extra: dict[str, tuple[str, ...]]) -> None:
    doc = (DOCS / page).read_text()
    params = table(doc, "Parameters")
    fields = {f.name: f.default for f in dataclasses.fields(params_cls)}
    assert set(params) == set(fields)
    for name, default in fields.items():
        assert json.loads(params[name][0].strip("`")) == default, name
    assert set(table(doc, "Keys")) == set(module.KEYS)  # type: ignore[attr-defined]
    for heading, names in extra.items():
        assert set(table(doc, heading)) == set(names)
    failures = table(doc, "Failures")
    assert set(failures) == set(module.FAILURES_USED)  # type: ignore[attr-defined]
    assert all(f in FAILURES for f in failures)


def test_ping_doc_names_the_fix_for_missing_privileges() -> None:
    from probe.icmp.sockets import HOW_TO_ENABLE

    doc = (DOCS / "ping.md").read_text()
    assert 'net.ipv4.ping_group_range="0 2147483647"' in doc and 'ping_group_range="0 2147483647"' in HOW_TO_ENABLE
    assert "setcap cap_net_raw+ep $(readlink -f $(which python3))" in doc
    assert "setcap cap_net_raw+ep $(readlink -f $(which python3))" in HOW_TO_ENABLE
