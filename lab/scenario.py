"""Scenario files (``lab/scenarios/<name>.toml``): settings, a timeline of actions, expected events.

Times are seconds from the start of the timeline, which begins after ``warmup_s`` seconds of
normal operation (the baseline).  A step with ``until`` is undone at that time.  ``[[expect]]``
lists the events the verdict engine should raise; a scenario without any is a negative one:
every event it raises is a false event.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.actions import Action, ActionError, make_action
from lab.build import Lab

DIRECTORY = Path(__file__).with_name("scenarios")
SCENARIO_KEYS = ("name", "description", "shape", "interval_s", "warmup_s", "duration_s", "tail_s",
                 "tests", "step", "expect")
STEP_KEYS = ("at", "until", "action", "params", "note")
EXPECT_KEYS = ("kind", "scope_type", "scope", "fault", "repair", "optional", "note")
EVENT_KINDS = ("blackout", "domestic_only", "throttling", "dns_tampering", "http_blocking")
SCOPE_TYPES = ("country", "asn", "access", "target")


class ScenarioError(ValueError):
    """A scenario file is invalid; the message names the file and the key."""


@dataclass
class Step:
    at: float
    until: float | None
    action: Action
    note: str = ""


@dataclass
class Expect:
    kind: str
    scope_type: str | None
    scope: list[str]
    fault: float
    repair: float | None
    note: str = ""
    optional: bool = False     # may or may not be raised: never missed, never false


@dataclass
class Scenario:
    name: str
    description: str
    shape: str
    interval_s: float
    warmup_s: float
    duration_s: float
    tail_s: float
    tests: list[str]
    steps: list[Step] = field(default_factory=list)
    expects: list[Expect] = field(default_factory=list)

    @property
    def negative(self) -> bool:
        return not any(not e.optional for e in self.expects)

    def timeline(self) -> list[tuple[float, str, Step]]:
        """(time, "apply"|"undo", step), in time order (undo before apply at equal times)."""
        items = [(s.at, "apply", s) for s in self.steps]
        items += [(s.until, "undo", s) for s in self.steps if s.until is not None]
        return sorted(items, key=lambda x: (x[0], x[1] != "undo"))


def _num(doc: dict[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ScenarioError(f"{where}: {key} must be a number >= 0")
    return float(value)


def _unknown(doc: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    bad = sorted(set(doc) - set(known))
    if bad:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(bad)}; known: {', '.join(known)}")


def parse(doc: dict[str, Any], where: str, lab: Lab | None = None) -> Scenario:
    _unknown(doc, SCENARIO_KEYS, where)
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise ScenarioError(f"{where}: name must be a non-empty string")
    interval = _num(doc, "interval_s", where, 4)
    if interval < 1:
        raise ScenarioError(f"{where}: interval_s must be at least 1")
    sc = Scenario(name=name, description=str(doc.get("description", "")), shape=str(doc.get("shape", "")),
                  interval_s=interval, warmup_s=_num(doc, "warmup_s", where, 4 * interval),
                  duration_s=_num(doc, "duration_s", where), tail_s=_num(doc, "tail_s", where, 2 * interval),
                  tests=list(doc.get("tests", ["http", "tcp", "ping", "dns", "throughput"])))
    for i, s in enumerate(doc.get("step", [])):
        here = f"{where} step {i + 1}"
        _unknown(s, STEP_KEYS, here)
        at = _num(s, "at", here)
        until = None if s.get("until") is None else _num(s, "until", here)
        if until is not None and until <= at:
            raise ScenarioError(f"{here}: until must be after at")
        if max(at, until or 0) > sc.duration_s:
            raise ScenarioError(f"{here}: times must be within duration_s ({sc.duration_s:g})")
        try:
            action = make_action(f"a{i + 1}", str(s.get("action")), dict(s.get("params", {})), lab)
        except ActionError as exc:
            raise ScenarioError(f"{here}: {exc}") from None
        sc.steps.append(Step(at, until, action, str(s.get("note", ""))))
    for i, e in enumerate(doc.get("expect", [])):
        here = f"{where} expect {i + 1}"
        _unknown(e, EXPECT_KEYS, here)
        if e.get("kind") not in EVENT_KINDS:
            raise ScenarioError(f"{here}: kind must be one of {', '.join(EVENT_KINDS)}")
        if e.get("scope_type") is not None and e["scope_type"] not in SCOPE_TYPES:
            raise ScenarioError(f"{here}: scope_type must be one of {', '.join(SCOPE_TYPES)}")
        scope = e.get("scope", [])
        scope = [scope] if isinstance(scope, str) else scope
        if not isinstance(scope, list) or not all(isinstance(x, str) for x in scope):
            raise ScenarioError(f"{here}: scope must be a string or a list of accepted strings")
        fault = _num(e, "fault", here)
        repair = None if e.get("repair") is None else _num(e, "repair", here)
        if not isinstance(e.get("optional", False), bool):
            raise ScenarioError(f"{here}: optional must be true or false")
        sc.expects.append(Expect(str(e["kind"]), e.get("scope_type"), list(scope), fault, repair,
                                 str(e.get("note", "")), bool(e.get("optional", False))))
    return sc


def names() -> list[str]:
    return sorted(p.stem for p in DIRECTORY.glob("*.toml"))


def load(name_or_path: str, lab: Lab | None = None) -> Scenario:
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = DIRECTORY / f"{name_or_path}.toml"
    if not path.exists():
        raise ScenarioError(f"no scenario {name_or_path!r}; known: {', '.join(names())}")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    return parse(doc, path.name, lab)
