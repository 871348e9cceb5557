"""docs/lab.md and the code agree: commands, options, actions and their parameters, scenarios, nodes."""

from __future__ import annotations

import argparse
import re

from lab import scenario
from lab.__main__ import build_parser
from lab.actions import ACTIONS
from lab.netns import REPO
from lab.topology import kazakhstan

DOC = (REPO / "docs" / "lab.md").read_text()


def _table_rows(heading: str) -> dict[str, str]:
    section = DOC.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"^\| `([^`]+)` \|(.*)$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def test_every_command_and_option_is_documented():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = _table_rows("Commands")
    for name, p in sub.choices.items():
        assert any(c.startswith(f"python -m lab {name}") for c in commands), name
        for action in p._actions:
            for opt in action.option_strings:
                if opt not in ("-h", "--help"):
                    assert f"`{opt}`" in DOC or opt in next(c for c in commands if c.startswith(f"python -m lab {name}")), opt
    assert "`--prefix`" in DOC


def test_every_action_and_parameter_is_documented():
    rows = _table_rows("Actions")
    assert set(rows) == set(ACTIONS)
    for kind, cls in ACTIONS.items():
        for param in cls.PARAMS:
            assert f"`{param}`" in rows[kind], (kind, param)


def test_every_scenario_and_node_is_documented():
    assert set(_table_rows("Scenario files")) == set(scenario.names())
    nodes = {k.split()[0] for k in re.findall(r"^\| (\w+) \|", DOC.split("## Topology", 1)[1].split("\n## ", 1)[0], re.M)} - {"node"}
    assert nodes == set(kazakhstan().nodes)
    for key in (*scenario.SCENARIO_KEYS, *scenario.STEP_KEYS, *scenario.EXPECT_KEYS, *scenario.EVENT_KINDS):
        assert f"`{key}`" in DOC, key
