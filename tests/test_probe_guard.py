"""The address guard: every forbidden range in every spelling, allow_ranges, caps."""

from __future__ import annotations

import asyncio
import time

import pytest

from probe.config import ProbeConfig
from probe.guard import (
    RULE_NAMES,
    ByteBudget,
    Guard,
    TokenBucket,
    forbidden_reason,
    parse_ip,
    resolve_checked,
)
from probe.probers.base import TargetForbidden

FORBIDDEN = [
    # (spelling, rule)
    ("127.0.0.1", "loopback"), ("2130706433", "loopback"), ("0x7f000001", "loopback"),
    ("0x7f.0.0.1", "loopback"), ("0177.0.0.1", "loopback"), ("017700000001", "loopback"),
    ("127.1", "loopback"), ("127.0.1", "loopback"), ("::1", "loopback"), ("[::1]", "loopback"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:7f00:1", "loopback"), ("::127.0.0.1", "loopback"),
    ("0.0.0.0", "unspecified"), ("0", "unspecified"), ("::", "unspecified"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"),
    ("192.168.1.1", "private"), ("3232235777", "private"), ("0xc0a80101", "private"),
    ("fd12:3456::1", "private"), ("fc00::1", "private"), ("::ffff:10.0.0.1", "private"),
    ("2002:c0a8:0101::1", "private"),          # 6to4 around 192.168.1.1
    ("64:ff9b::a00:1", "private"),             # NAT64 around 10.0.0.1
    ("64:ff9b:1::a00:1", "private"),
    ("169.254.1.1", "link_local"), ("fe80::1", "link_local"), ("fe80::1%eth0", "link_local"),
    ("169.254.169.254", "cloud_metadata"), ("2852039166", "cloud_metadata"), ("0xa9fea9fe", "cloud_metadata"),
    ("::ffff:169.254.169.254", "cloud_metadata"), ("fd00:ec2::254", "cloud_metadata"),
    ("100.100.100.200", "cloud_metadata"), ("169.254.170.2", "cloud_metadata"),
    ("100.64.0.1", "cgnat"), ("100.127.255.254", "cgnat"),
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("ff02::1", "multicast"),
    ("255.255.255.255", "broadcast"), ("240.0.0.1", "reserved"), ("192.0.0.8", "reserved"),
    ("192.0.2.1", "documentation"), ("198.51.100.7", "documentation"), ("203.0.113.9", "documentation"),
    ("2001:db8::1", "documentation"), ("198.18.0.1", "benchmarking"), ("198.19.255.1", "benchmarking"),
    ("100::1", "discard"), ("fec0::1", "reserved"),
]

ALLOWED = ["8.8.8.8", "1.1.1.1", "134744072", "0x08080808", "2001:4860:4860::8888", "::ffff:8.8.8.8",
           "64:ff9b::808:808", "93.184.216.34", "100.63.255.255", "100.128.0.1", "172.32.0.1"]


@pytest.mark.parametrize(("spelling", "rule"), FORBIDDEN)
def test_forbidden_in_every_spelling(spelling: str, rule: str) -> None:
    reason = forbidden_reason(spelling)
    assert reason is not None and reason.split(" ")[0] == rule, reason
    with pytest.raises(TargetForbidden, match=rule):
        Guard().check_address(spelling)


@pytest.mark.parametrize("spelling", ALLOWED)
def test_public_addresses_pass(spelling: str) -> None:
    assert forbidden_reason(spelling) is None
    Guard().check_address(spelling)


def test_every_rule_has_a_case() -> None:
    assert {rule for _, rule in FORBIDDEN} == set(RULE_NAMES)


def test_parse_ip_names_and_spellings() -> None:
    assert str(parse_ip("0x7f.1")) == "127.0.0.1"
    assert parse_ip("example.org") is None
    assert parse_ip("127.0.0.1.example") is None
    assert parse_ip("") is None


def test_reason_names_the_address() -> None:
    with pytest.raises(TargetForbidden, match=r"loopback 127\.0\.0\.1 \(inside ::ffff:7f00:1\)"):
        Guard().check_address("::ffff:127.0.0.1")


def test_allow_ranges_lift_only_chosen_ranges() -> None:
    guard = Guard(ProbeConfig(allow_ranges=("198.18.0.0/15", "127.0.0.0/8")))
    guard.check_address("198.18.3.4")
    guard.check_address("::ffff:198.18.3.4")
    guard.check_address("2130706433")
    with pytest.raises(TargetForbidden, match="private"):
        guard.check_address("10.0.0.1")
    with pytest.raises(TargetForbidden, match="cloud_metadata"):
        guard.check_address("169.254.169.254")


def test_allow_private_lifts_the_guard_but_needs_an_address() -> None:
    guard = Guard(allow_private=True)
    guard.check_address("127.0.0.1")
    guard.check_address("169.254.169.254")
    with pytest.raises(TargetForbidden, match="not an IP address"):
        guard.check_address("example.org")


async def test_resolve_checked_checks_resolved_addresses() -> None:
    with pytest.raises(TargetForbidden, match="loopback"):
        await resolve_checked(Guard(), "localhost", 80)
    with pytest.raises(TargetForbidden, match="loopback"):
        await resolve_checked(Guard(), "0x7f000001", 80)
    assert await resolve_checked(Guard(ProbeConfig(allow_ranges=("127.0.0.0/8",))), "127.1", 80) == ["127.0.0.1"]


def test_token_bucket_paces_after_the_burst() -> None:
    bucket = TokenBucket(100)
    assert bucket.delay_for(100) == 0.0          # one second of burst
    wait = bucket.delay_for(50)
    assert 0.45 <= wait <= 0.5                    # then the rate: 50 packets at 100/s


async def test_guard_packets_waits_for_budget() -> None:
    guard = Guard(ProbeConfig(max_pps=20))
    await guard.packets(20)
    t0 = time.monotonic()
    await guard.packets(2)
    assert time.monotonic() - t0 >= 0.09


def test_byte_budget_per_hour() -> None:
    budget = ByteBudget(1000)
    assert budget.reserve(600) == 600
    assert budget.reserve(600) == 400
    assert budget.reserve(1) == 0
    assert budget.used() == 1000
    budget._grants[0] = (budget._grants[0][0] - 3601, budget._grants[0][1])   # an hour later
    assert budget.reserve(700) == 600


async def test_concurrency_slots() -> None:
    guard = Guard(ProbeConfig(max_concurrent_tests=2))
    running = 0
    peak = 0

    async def one() -> None:
        nonlocal running, peak
        async with guard.test_slot():
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.02)
            running -= 1

    await asyncio.gather(*(one() for _ in range(6)))
    assert peak == 2
