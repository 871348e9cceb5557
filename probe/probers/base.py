"""The contract every measurement module fulfils (one module per test, same signature).

A prober module defines::

    NAME = "tcp"                      # the test name, also the module name
    VERSION = "1.0.0"                 # version of its test_keys
    @dataclass(frozen=True)
    class TcpParams: ...              # every parameter with a default, unit in the name
    async def run(target: str, params: TcpParams, ctx: Context) -> Outcome

and one line in ``probe/probers/__init__.py``'s registry.  The runner (``probe/runner.py``), not
the prober, owns the overall timeout, timing, the record envelope and the classification of
exceptions into the failure vocabulary.  A network failure is data: return an Outcome with a
``failure`` string (and whatever keys were measured) rather than raising.  Raise only when the
test could not run at all (bad parameters, a target the guard refuses, missing privilege).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class TestCannotRun(Exception):
    """The test could not run at all (as opposed to: it ran and measured a failure)."""


class TargetForbidden(TestCannotRun):
    """The address guard refused the target (loopback, private, link-local, metadata, ...)."""


class ParamsError(TestCannotRun):
    """Parameters were unknown, of the wrong type or out of range."""


@dataclass
class Outcome:
    """What a prober returns: its test keys, and a failure string when the network failed."""

    test_keys: dict[str, Any]
    success: bool
    failure: str | None = None


class Guard(Protocol):
    """The probe's address guard and rate caps, handed to every prober through the context."""

    def check_address(self, address: str) -> None: ...          # raises TargetForbidden

    async def packets(self, n: int) -> None: ...                # waits for n packets of the pps budget

    def reserve_bytes(self, n: int) -> int: ...                 # throughput bytes/hour budget; returns granted


@dataclass
class Context:
    guard: Guard
    timeout_s: float                      # what the runner will allow; probers size their waits to it
    extra: dict[str, Any] = field(default_factory=dict)
