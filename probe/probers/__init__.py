"""The registry of measurement tests: one line per test, modules imported only when used.

``scapy`` (traceroute) costs ~80 MB and ~1 s to import, so no prober module is imported until a
test of that name runs or its parameters are listed.
"""

from __future__ import annotations

import importlib
from types import ModuleType

REGISTRY: dict[str, str] = {
    "ping": "probe.probers.ping",
    "traceroute": "probe.probers.traceroute",
    "dns": "probe.probers.dns",
    "http": "probe.probers.http",
    "tcp": "probe.probers.tcp",
    "throughput": "probe.probers.throughput",
}


def names() -> list[str]:
    return list(REGISTRY)


def load(name: str) -> ModuleType:
    """The prober module for test ``name``; KeyError with the known names if there is none."""
    try:
        module_name = REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown test {name!r}; known tests: {', '.join(REGISTRY)}") from None
    return importlib.import_module(module_name)
