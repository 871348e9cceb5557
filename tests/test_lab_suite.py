"""The scenario suite: every expected event found with the right kind and scope, nothing raised on
negatives.  Slow (~15 minutes for all twelve scenarios): marked ``scenario``; runs as root in CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import scenario
from lab.build import Lab
from lab.runner import Run
from lab.scorecard import render, score
from lab.testing import need_root
from lab.topology import kazakhstan

pytestmark = [pytest.mark.netns, pytest.mark.scenario]
RESULTS = Path("/tmp/tocsin-lab-results-tests")


@pytest.mark.parametrize("name", scenario.names())
def test_scenario(name):
    need_root()
    sc = scenario.load(name, Lab(kazakhstan(), "tls"))
    result = Run(sc, prefix="tls", results_dir=RESULTS, say=lambda _m: None).execute()
    card = score(result)
    text = render([card])
    assert card["errors"] == [], text
    missed = [r["expected"] for r in card["rows"] if r["found"] is None]
    assert missed == [], text
    assert card["false"] == [], text
    assert result["events"] or sc.negative
