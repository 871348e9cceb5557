"""Campaign definitions and the tasks each probe gets (selector, vantage, annotations)."""

from __future__ import annotations

from typing import Any

import pytest

from coordinator.campaigns import CampaignError, parse_campaign, tasks_for_probe

BASE: dict[str, Any] = {"name": "c", "lists": ["kz", "international", "controls"], "tests": ["tcp", "http", "dns"],
                        "interval_s": 120}
KZ_PROBE = {"probe_id": "p-1", "cc": "KZ", "asn": 9198, "access": "mobile", "tags": ["pi"]}
DE_PROBE = {"probe_id": "p-2", "cc": "DE", "asn": 3320, "access": "fixed", "tags": []}


def test_tasks_carry_the_pinned_annotations() -> None:
    spec = parse_campaign(BASE)
    tasks = tasks_for_probe("c-1", spec, KZ_PROBE)
    assert tasks and all(set(t["annotations"]) == {"target_category", "target_cc", "target_group", "vantage"} for t in tasks)
    tw = [t for t in tasks if t["annotations"]["target_group"] == "twitter" and t["test"] == "http"]
    assert tw and tw[0]["annotations"] == {"target_category": "international", "target_cc": "US",
                                           "target_group": "twitter", "vantage": "outside"}
    kaspi = [t for t in tasks if t["target"] == "kaspi.kz:443"]
    assert kaspi[0]["annotations"]["vantage"] == "inside"
    assert len({t["task_id"] for t in tasks}) == len(tasks)
    assert tasks_for_probe("c-1", spec, KZ_PROBE) == tasks      # stable ids across polls


def test_selector_and_vantage() -> None:
    spec = parse_campaign({**BASE, "selector": {"cc": ["KZ"], "access": ["mobile"], "tags": ["pi"]}})
    assert tasks_for_probe("c", spec, KZ_PROBE) and not tasks_for_probe("c", spec, DE_PROBE)
    assert not tasks_for_probe("c", spec, {**KZ_PROBE, "tags": []})
    outside = parse_campaign({**BASE, "lists": ["kz"], "selector": {"vantage": "outside"}})
    assert not tasks_for_probe("c", outside, KZ_PROBE)
    assert {t["annotations"]["vantage"] for t in tasks_for_probe("c", outside, DE_PROBE)} == {"outside"}
    asn = parse_campaign({**BASE, "selector": {"asn": [9198]}})
    assert tasks_for_probe("c", asn, KZ_PROBE) and not tasks_for_probe("c", asn, DE_PROBE)


@pytest.mark.parametrize("change,needle", [
    ({"lists": ["nowhere"]}, "no target list 'nowhere'"),
    ({"tests": ["smoke"]}, "tests[0] (smoke)"),
    ({"tests": [{"name": "tcp", "params": {"colour": 1}}]}, "tests[0] (tcp)"),
    ({"interval_s": 0.5}, "interval_s must be"),
    ({"selector": {"vantage": "above"}}, "selector.vantage"),
    ({"selector": {"access": ["satellite"]}}, "selector.access"),
    ({"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "end must be after start"),
    ({"start": "tomorrow"}, "start must be ISO 8601"),
    ({"categories": ["local"]}, "categories: unknown local"),
    ({"lists": [], "target": []}, "no targets"),
])
def test_invalid_campaigns_say_why(change: dict[str, Any], needle: str) -> None:
    with pytest.raises(CampaignError) as info:
        parse_campaign({**BASE, **change})
    assert needle in str(info.value)


def test_inline_targets_and_window() -> None:
    spec = parse_campaign({"name": "lab", "country": "KZ", "tests": ["tcp"], "interval_s": 10,
                           "start": "2026-01-01T00:00:00Z", "end": "2036-01-01T00:00:00Z",
                           "target": [{"name": "lab-web", "address": "198.18.0.10", "port": 80, "category": "domestic"}]})
    (task,) = tasks_for_probe("c", spec, KZ_PROBE)
    assert task["target"] == "198.18.0.10:80" and task["annotations"]["target_cc"] == "KZ"
    assert task["start_ts"] == 1767225600.0
