"""Helpers for tests that use the lab: the root rule (CI must never skip the netns tests)."""

from __future__ import annotations

import os


def need_root() -> None:
    """Skip locally without root; fail in CI, where the tests run as root and must not skip."""
    import pytest

    if os.geteuid() == 0:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true but not root: the lab's network-namespace tests must run in CI")
    pytest.skip("needs root (network namespaces)")
