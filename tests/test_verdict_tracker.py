"""The tracker's onset rule on hand-made findings (pure, no store): a lone signal must hold for
``onset_ticks`` ticks, an outage or a general throttle with independent support (confirmed) for
``confirmed_onset_ticks``."""

from __future__ import annotations

import pytest

from coordinator.verdict.findings import Finding
from coordinator.verdict.settings import Settings
from coordinator.verdict.tracker import Tracker


def finding(confirmed: bool, family: str = "outage") -> Finding:
    return Finding(family=family, kind="blackout" if family == "outage" else family, scope_type="country",
                   scope="KZ", cc="KZ",
                   classes=frozenset({"inside", "outside"} if confirmed else {"inside"}), confirmed=confirmed,
                   evidence=("m-1",), onset=0.0, details={"asns": [64601, 64602] if confirmed else [64601]})


@pytest.mark.parametrize(("confirmed", "ticks_to_open"), [(True, 1), (False, 2)])
def test_a_finding_opens_an_event_after_its_onset_ticks(confirmed: bool, ticks_to_open: int) -> None:
    tracker = Tracker(3.0, Settings())
    f = finding(confirmed)
    for i in range(ticks_to_open):
        assert f.key not in tracker.open
        tracker.tick(float(i), [f], {f.key})
    assert f.key in tracker.open
    assert tracker.open[f.key].ticks[0][0] == 0.0       # the event starts at the first tick it was seen


@pytest.mark.parametrize("targeted", [True, None])
def test_confirmed_targeted_throttling_still_needs_the_full_onset(targeted: bool | None) -> None:
    tracker = Tracker(3.0, Settings())
    f = finding(True, family="throttling")
    if targeted is not None:
        f.details["targeted"] = targeted
    tracker.tick(0.0, [f], {f.key})
    assert f.key not in tracker.open                    # one tick of a slow target is not an event
    tracker.tick(1.0, [f], {f.key})
    assert f.key in tracker.open


@pytest.mark.parametrize(("confirmed", "ticks_to_open"), [(True, 1), (False, 2)])
def test_a_general_throttle_in_several_asns_opens_at_once(confirmed: bool, ticks_to_open: int) -> None:
    tracker = Tracker(3.0, Settings())
    f = finding(confirmed, family="throttling")
    f.details["targeted"] = False                       # every download of the probes is slow
    for i in range(ticks_to_open):
        assert f.key not in tracker.open
        tracker.tick(float(i), [f], {f.key})
    assert f.key in tracker.open


def test_a_one_tick_blip_of_a_lone_signal_opens_nothing() -> None:
    tracker = Tracker(3.0, Settings())
    f = finding(False)
    tracker.tick(0.0, [f], {f.key})
    tracker.tick(1.0, [], {f.key})
    tracker.tick(2.0, [f], {f.key})
    assert f.key not in tracker.open and not tracker.done


def test_the_confirmed_onset_can_be_set_back_to_the_lone_signal_s() -> None:
    tracker = Tracker(3.0, Settings(confirmed_onset_ticks=2))
    f = finding(True)
    tracker.tick(0.0, [f], {f.key})
    assert f.key not in tracker.open
    tracker.tick(1.0, [f], {f.key})
    assert f.key in tracker.open
    with pytest.raises(ValueError, match="confirmed_onset_ticks must be >= 1"):
        Settings(confirmed_onset_ticks=0)
