"""Scenario files parse against the topology; bad ones are refused; the scorecard scores right."""

from __future__ import annotations

import pytest

from lab import scenario
from lab.build import Lab
from lab.scorecard import render, score
from lab.topology import kazakhstan


def lab() -> Lab:
    return Lab(kazakhstan(), "tl")


def test_every_scenario_file_is_valid_and_has_the_shapes():
    names = scenario.names()
    for required in ("kazakhstan-2022", "iran-2019", "russia-2021", "myanmar-2021", "asn-outage",
                     "dns-tampering", "http-blocking", "ordinary", "probe-dies", "coordinator-restart", "slow-target"):
        assert required in names
    total = 0.0
    for name in names:
        sc = scenario.load(name, lab())
        assert (sc.interval_s <= 5 and sc.steps) or sc.name == "ordinary"
        total += sc.warmup_s + sc.duration_s + sc.tail_s
        for e in sc.expects:
            assert 0 <= e.fault < (e.repair or sc.duration_s) <= sc.duration_s
    negatives = {n for n in names if scenario.load(n).negative}
    assert negatives == {"ordinary", "probe-dies", "coordinator-restart", "slow-target"}
    assert total < 13 * 60          # the suite's timelines fit CI's 15 minutes (plus ~10 s setup each)


def test_kazakhstan_sequence():
    sc = scenario.load("kazakhstan-2022", lab())
    kinds = [s.action.KIND for s in sc.steps]
    assert kinds[0] == "throttle" and "allow_list" in kinds and "cut_access" in kinds
    assert [e.kind for e in sc.expects if not e.optional] == ["throttling", "blackout", "blackout", "domestic_only"]
    timeline = sc.timeline()
    assert [t for t, _, _ in timeline] == sorted(t for t, _, _ in timeline)
    # at equal times the undo comes first (restore, then the next phase)
    at24 = [what for t, what, _ in timeline if t == 24]
    assert at24 == sorted(at24, key=lambda w: w != "undo")


@pytest.mark.parametrize(("doc", "message"), [
    ({"name": "x", "duration_s": 10, "colour": 1}, "unknown key"),
    ({"name": "x", "duration_s": 10, "interval_s": 0.5}, "interval_s"),
    ({"name": "x", "duration_s": 10, "step": [{"at": 5, "until": 2, "action": "cut_border"}]}, "until"),
    ({"name": "x", "duration_s": 10, "step": [{"at": 50, "action": "cut_border"}]}, "within duration"),
    ({"name": "x", "duration_s": 10, "step": [{"at": 1, "action": "explode"}]}, "unknown action"),
    ({"name": "x", "duration_s": 10, "step": [{"at": 1, "action": "cut", "params": {"nodes": ["mars"]}}]}, "no node"),
    ({"name": "x", "duration_s": 10, "expect": [{"kind": "gloom", "fault": 1}]}, "kind"),
    ({"name": "x", "duration_s": 10, "expect": [{"kind": "blackout", "scope_type": "planet", "fault": 1}]}, "scope_type"),
    ({"duration_s": 10}, "name"),
])
def test_bad_scenarios_are_refused(doc, message):
    with pytest.raises(scenario.ScenarioError, match=message):
        scenario.parse(doc, "test.toml", lab())


def _event(eid, kind, scope_type, scope, start, transitions, resolved=None):
    return {"event_id": eid, "kind": kind, "scope_type": scope_type, "scope": scope, "state": transitions[-1][0],
            "start_ts": start, "resolved_ts": resolved,
            "transitions": [{"state": s, "at_ts": t, "recorded_ts": t} for s, t in transitions]}


def test_scorecard_found_missed_false_and_latencies():
    t0 = 1000.0
    result = {
        "scenario": "demo", "interval_s": 3.0, "t0": t0, "duration_s": 60,
        "steps": [{"at": 0, "ts": t0 + 0.5}, {"at": 30, "ts": t0 + 30.2}],
        "expects": [
            {"kind": "blackout", "scope_type": "country", "scope": ["KZ"], "fault": 0, "repair": 30},
            {"kind": "throttling", "scope_type": "access", "scope": ["KZ/mobile"], "fault": 40, "repair": None},
        ],
        "events": [
            _event("e1", "blackout", "country", "KZ", t0 + 1,
                   [("suspected", t0 + 6.5), ("confirmed", t0 + 9.5), ("resolved", t0 + 36.2)], resolved=t0 + 33),
            _event("e2", "http_blocking", "target", "KZ|world", t0 + 10, [("suspected", t0 + 12)]),
        ],
    }
    card = score(result)
    found, missed = card["rows"]
    assert found["found"]["suspected_s"] == pytest.approx(6.0)     # from the step's real time, +0.5
    assert found["found"]["confirmed_s"] == pytest.approx(9.0)
    assert found["found"]["resolved_s"] == pytest.approx(6.0)
    assert missed["found"] is None
    assert [f["event_id"] for f in card["false"]] == ["e2"]
    assert card["recall"] == (1, 2)
    text = render([card])
    assert "MISSED" in text and "FALSE" in text and "(2.0 iv)" in text
    assert text.splitlines()[-1].startswith("TOTAL  recall 1/2 (50%)  false events 1")


def test_scorecard_scope_and_kind_must_match():
    t0 = 0.0
    base = {"scenario": "s", "interval_s": 3.0, "t0": t0, "duration_s": 30, "steps": [],
            "expects": [{"kind": "throttling", "scope_type": "target", "scope": ["KZ|social"], "fault": 0, "repair": 20}]}
    wrong_scope = {**base, "events": [_event("e", "throttling", "target", "KZ|control", 1, [("suspected", 4)])]}
    wrong_kind = {**base, "events": [_event("e", "blackout", "target", "KZ|social", 1, [("suspected", 4)])]}
    too_late = {**base, "events": [_event("e", "throttling", "target", "KZ|social", 40, [("suspected", 41)])]}
    right = {**base, "events": [_event("e", "throttling", "target", "KZ|social", 1, [("suspected", 4)])]}
    for bad in (wrong_scope, wrong_kind, too_late):
        assert score(bad)["recall"] == (0, 1) and len(score(bad)["false"]) == 1
    assert score(right)["recall"] == (1, 1) and score(right)["false"] == []


def test_optional_expectations_are_neither_missed_nor_false():
    base = {"scenario": "s", "interval_s": 3.0, "t0": 0.0, "duration_s": 30, "steps": [],
            "expects": [{"kind": "blackout", "scope_type": "access", "scope": ["KZ/fixed", "KZ/mobile"],
                         "fault": 5, "repair": 20, "optional": True}]}
    absent = score({**base, "events": []})
    present = score({**base, "events": [_event("e", "blackout", "access", "KZ/mobile", 6, [("suspected", 8)])]})
    assert absent["recall"] == (0, 0) and absent["false"] == [] and absent["negative"]
    assert present["false"] == [] and present["rows"][0]["found"]["scope"] == "KZ/mobile"
    assert "(optional)" in render([absent])


def test_negative_scenario_scores_every_event_false():
    result = {"scenario": "ordinary", "interval_s": 3.0, "t0": 0.0, "duration_s": 30, "steps": [], "expects": [],
              "events": [_event("e", "blackout", "asn", "AS64601", 5, [("suspected", 6)])]}
    card = score(result)
    assert card["negative"] and len(card["false"]) == 1 and card["recall"] == (0, 0)


def test_latency_counts_from_the_transition_with_the_expected_kind():
    ev = _event("e", "domestic_only", "country", "KZ", 1, [("suspected", 5), ("confirmed", 20)])
    ev["transitions"][0]["kind"] = "blackout"          # first called a blackout, re-classified later
    ev["transitions"][1]["kind"] = "domestic_only"
    ev["details"] = {"retracted": False}
    result = {"scenario": "s", "interval_s": 3.0, "t0": 0.0, "duration_s": 40, "steps": [],
              "expects": [{"kind": "domestic_only", "scope_type": "country", "scope": ["KZ"], "fault": 0, "repair": 30}],
              "events": [ev]}
    row = score(result)["rows"][0]
    assert row["found"]["suspected_s"] == 20 and row["found"]["confirmed_s"] == 20
    assert row["found"]["noticed_s"] == 5 and row["found"]["noticed_kind"] == "blackout"
    assert row["found"]["late"] == ["suspected", "confirmed", "resolved"]     # 20 s > 2 and 3 iv; never resolved
    text = render([score(result)])
    assert "first seen as blackout +5.0s (1.7 iv)" in text and "over the latency target: suspected" in text
    assert text.splitlines()[-1].endswith("within latency targets 0/1")


def test_latency_targets_met_are_counted():
    ev = _event("e", "blackout", "country", "KZ", 1, [("suspected", 4), ("confirmed", 7), ("resolved", 36)], resolved=35)
    result = {"scenario": "s", "interval_s": 3.0, "t0": 0.0, "duration_s": 40, "steps": [],
              "expects": [{"kind": "blackout", "scope_type": "country", "scope": ["KZ"], "fault": 0, "repair": 30}],
              "events": [ev]}
    card = score(result)
    assert card["rows"][0]["found"]["late"] == []
    text = render([card])
    assert "over the latency target" not in text and "first seen" not in text
    assert text.splitlines()[-1].endswith("within latency targets 1/1")


def test_replica_and_coordinator_events_merge_earliest_wins_and_false_from_both():
    abroad = _event("c", "domestic_only", "country", "KZ", 1, [("suspected", 5), ("confirmed", 28), ("resolved", 33)],
                    resolved=32)
    abroad["transitions"][0]["kind"] = "blackout"       # abroad: a blackout until the buffered results came
    inside = _event("r", "domestic_only", "country", "KZ", 1, [("suspected", 4), ("confirmed", 7), ("resolved", 35)],
                    resolved=34)
    stray = _event("x", "blackout", "asn", "AS64602", 10, [("suspected", 12)])
    base = {"scenario": "s", "interval_s": 3.0, "t0": 0.0, "duration_s": 40, "steps": [],
            "expects": [{"kind": "domestic_only", "scope_type": "country", "scope": ["KZ"], "fault": 0, "repair": 30}],
            "events": [abroad]}
    alone = score(base)["rows"][0]["found"]
    assert alone["suspected_s"] == 28 and alone["late"] == ["suspected", "confirmed"]
    # the replica's events count only when the run had a replica
    assert score({**base, "replica_events": [inside]})["rows"][0]["found"]["suspected_s"] == 28
    card = score({**base, "replica": True, "replica_events": [inside, stray]})
    found = card["rows"][0]["found"]
    assert (found["suspected_s"], found["confirmed_s"], found["resolved_s"]) == (4, 7, 3)
    assert found["first_at"]["suspected_s"] == "replica" and found["first_at"]["resolved_s"] == "coordinator"
    assert found["by_source"]["coordinator"]["suspected_s"] == 28 and found["late"] == []
    assert [(f["event_id"], f["source"]) for f in card["false"]] == [("x", "replica")]
    text = render([card])
    assert "first at the in-country replica: confirmed, suspected; the coordinator alone: suspected +28.0s" in text
    assert "(at the replica)" in text


def test_latency_counts_from_the_transition_with_the_expected_scope():
    """An event first raised for one ASN and widened to the country: the country's latency counts
    from the transition that named the country; the narrower sighting is shown beside it."""
    ev = _event("e", "blackout", "country", "KZ", 1, [("suspected", 5), ("confirmed", 5), ("confirmed", 8)])
    for t, scope in zip(ev["transitions"], ("AS64601", "AS64601", "KZ"), strict=True):
        t["kind"], t["scope"] = "blackout", scope
    result = {"scenario": "s", "interval_s": 3.0, "t0": 0.0, "duration_s": 40, "steps": [],
              "expects": [{"kind": "blackout", "scope_type": "country", "scope": ["KZ"], "fault": 0, "repair": None}],
              "events": [ev]}
    row = score(result)["rows"][0]
    assert row["found"]["suspected_s"] == 8 and row["found"]["confirmed_s"] == 8
    assert row["found"]["noticed_s"] == 5 and row["found"]["noticed_kind"] == "blackout AS64601"
    assert "first seen as blackout AS64601 +5.0s (1.7 iv)" in render([score(result)])
