"""docs/verdicts.md names every event kind, state, scope type, signal class, setting, command
option, route and cause the code has."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

from coordinator.signals import SIGNAL_CLASSES
from coordinator.verdict import cli
from coordinator.verdict.queries import EVENT_KINDS, EVENT_STATES, SCOPE_TYPES
from coordinator.verdict.settings import DETECTOR_VERSION, Settings

DOC = (Path(__file__).resolve().parents[1] / "docs" / "verdicts.md").read_text()


def test_vocabularies_are_documented() -> None:
    for word in (*EVENT_KINDS, *EVENT_STATES, *SCOPE_TYPES, *SIGNAL_CLASSES, DETECTOR_VERSION,
                 "network", "power_or_probe_failure", "allow_list", "retracted", "reclassified_from"):
        assert f"`{word}`" in DOC, word


def test_every_setting_has_a_row_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", DOC, re.M))
    names = [f.name for f in dataclasses.fields(Settings)]
    assert sorted(n for n in rows if n in names) == sorted(names)
    defaults = Settings()
    for name in names:
        value = getattr(defaults, name)
        if isinstance(value, list):
            assert all(f"`{v}`" in rows[name] for v in value), name
        elif name != "tick_fraction":
            assert float(rows[name]) == value, name


def test_every_command_and_option_is_documented() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli.register(sub)
    for name in cli.COMMANDS:
        assert f"python -m coordinator {name}" in DOC, name
        for action in sub.choices[name]._actions:
            for opt in action.option_strings:
                if opt not in ("-h", "--help"):
                    assert opt in DOC, (name, opt)


def test_routes_and_filters_are_documented() -> None:
    from coordinator.verdict.queries import FILTERS

    assert "GET /api/v1/events`" in DOC and "GET /api/v1/events/{event_id}`" in DOC
    for f in (*FILTERS, "limit"):
        assert f"`{f}`" in DOC, f
