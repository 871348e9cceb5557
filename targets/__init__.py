"""Per-country target lists: TOML data files beside this module, and their loader.

A list file ``targets/<name>.toml`` has a ``country`` (ISO alpha-2, ``ZZ`` for lists that span
countries), a ``description`` and ``[[target]]`` tables (format: docs/targets.md).  The coordinator
turns each (test, target) of a campaign into a task whose annotations carry the target's
``category``, ``cc`` and ``group``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

DIRECTORY = Path(__file__).parent
CATEGORIES = ("domestic", "international", "control")
TARGET_KEYS = ("name", "category", "group", "cc", "address", "port", "url", "tests", "note")
LIST_KEYS = ("country", "description", "target")
_CC_RE = re.compile(r"^[A-Z]{2}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,253}$")


class TargetListError(ValueError):
    """A target list is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class Target:
    name: str
    category: str
    group: str
    cc: str
    tests: tuple[str, ...]
    address: str | None = None
    port: int | None = None
    url: str | None = None

    def target_for(self, test: str) -> str | None:
        """What ``test`` measures for this target (None when the test does not suit it)."""
        host = self.address or self.name
        if test == "dns":
            return None if self.name.startswith("resolver-") else self.name
        if test in ("http", "throughput"):
            return self.url or (f"https://{self.name}/" if not self.name.startswith("resolver-") else None)
        if test == "tcp":
            return f"{host}:{self.port or 443}"
        if test in ("ping", "traceroute"):
            return host
        return host

    def annotations(self) -> dict[str, str]:
        return {"target_category": self.category, "target_cc": self.cc, "target_group": self.group}


def parse_targets(doc: dict[str, object], where: str, default_cc: str | None = None) -> list[Target]:
    """Targets from a parsed list (or a campaign's inline ``[[target]]`` tables)."""
    from probe.probers import REGISTRY

    out = []
    entries = doc.get("target", [])
    if not isinstance(entries, list):
        raise TargetListError(f"{where}: 'target' must be an array of tables [[target]]")
    for i, entry in enumerate(entries):
        here = f"{where} target #{i + 1}"
        if not isinstance(entry, dict):
            raise TargetListError(f"{here}: must be a table")
        unknown = sorted(set(entry) - set(TARGET_KEYS))
        if unknown:
            raise TargetListError(f"{here}: unknown key(s) {', '.join(unknown)}; known: {', '.join(TARGET_KEYS)}")
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise TargetListError(f"{here}: name must be a host name or label (letters, digits, . _ -)")
        here = f"{where} target {name}"
        category = entry.get("category")
        if category not in CATEGORIES:
            raise TargetListError(f"{here}: category must be one of {', '.join(CATEGORIES)}")
        cc = entry.get("cc", default_cc)
        if not isinstance(cc, str) or not _CC_RE.match(cc):
            raise TargetListError(f"{here}: cc must be two upper-case letters")
        tests = entry.get("tests", list(REGISTRY))
        if not isinstance(tests, list) or not tests:
            raise TargetListError(f"{here}: tests must be a non-empty list")
        for t in tests:
            if t not in REGISTRY:
                raise TargetListError(f"{here}: unknown test {t!r}; known tests: {', '.join(REGISTRY)}")
        port = entry.get("port")
        if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
            raise TargetListError(f"{here}: port must be 1-65535")
        group = entry.get("group", name)
        for key in ("address", "url", "group"):
            value = entry.get(key)
            if value is not None and not isinstance(value, str):
                raise TargetListError(f"{here}: {key} must be a string")
        out.append(Target(name=name, category=str(category), group=str(group), cc=cc, tests=tuple(tests),
                          address=entry.get("address"), port=port, url=entry.get("url")))
    return out


def load_list(name_or_path: str | Path) -> list[Target]:
    """Load ``targets/<name>.toml`` (by list name) or a file path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = DIRECTORY / f"{name_or_path}.toml"
    if not path.exists():
        raise TargetListError(f"no target list {name_or_path!r}; known lists: {', '.join(list_names())}")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise TargetListError(f"{path}: {exc}") from None
    unknown = sorted(set(doc) - set(LIST_KEYS))
    if unknown:
        raise TargetListError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(LIST_KEYS)}")
    country = doc.get("country")
    if not isinstance(country, str) or not _CC_RE.match(country):
        raise TargetListError(f"{path}: country must be two upper-case letters (ZZ for several)")
    return parse_targets(doc, str(path.name), default_cc=country)


def list_names() -> list[str]:
    return sorted(p.stem for p in DIRECTORY.glob("*.toml"))
