"""The tcp test against real loopback sockets: connected, refused, timed out, bad targets."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from probe.config import ProbeConfig
from probe.guard import Guard
from probe.probers.base import ParamsError, TargetForbidden
from probe.probers.tcp import split_host_port
from probe.runner import run_test

LAB = Guard(ProbeConfig(allow_ranges=("127.0.0.0/8",)))


@pytest.fixture
def listener() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A listener whose accept queue is full: further SYNs are dropped, so connects hang."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)
    port = sock.getsockname()[1]
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        fillers.append(c)
    yield port
    for c in fillers:
        c.close()
    sock.close()


async def test_connects(listener: int) -> None:
    record = await run_test("tcp", f"127.0.0.1:{listener}", guard=LAB)
    keys = record["test_keys"]
    assert record["success"] is True and record["failure"] is None
    assert keys["address"] == "127.0.0.1" and keys["port"] == listener and keys["connect_ms"] >= 0


async def test_refused(listener: int) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    record = await run_test("tcp", f"127.0.0.1:{port}", guard=LAB)
    assert record["success"] is False and record["failure"] == "connection_refused"
    assert "connect_ms" not in record["test_keys"]


async def test_timeout(full_backlog: int) -> None:
    record = await run_test("tcp", f"127.0.0.1:{full_backlog}", {"connect_timeout_s": 0.3}, guard=LAB)
    assert record["failure"] == "timeout" and record["test_keys"]["failed_after_ms"] >= 300


async def test_guard_refuses_every_spelling(listener: int) -> None:
    for host in ("127.0.0.1", "2130706433", "0x7f.1", "[::ffff:127.0.0.1]", "localhost"):
        with pytest.raises(TargetForbidden):
            await run_test("tcp", f"{host}:{listener}", guard=Guard())


async def test_unresolvable_name_is_a_failure() -> None:
    record = await run_test("tcp", "no-such-host.invalid:80", guard=LAB)
    assert record["success"] is False and record["failure"] == "dns_nxdomain"


@pytest.mark.parametrize("target", ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "::1:80", "[::1:80",
                                    ":80", "host:http"])
def test_bad_targets(target: str) -> None:
    with pytest.raises(ParamsError):
        split_host_port(target)


def test_ipv6_target() -> None:
    assert split_host_port("[2001:db8::1]:443") == ("2001:db8::1", 443)
