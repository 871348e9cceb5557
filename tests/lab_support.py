"""Shared fixtures' helpers for the lab tests: root check (CI must not skip) and a lab up once."""

from __future__ import annotations

import os

import pytest


def need_root() -> None:
    """Skip locally without root; fail in CI, where the tests run as root and must not skip."""
    if os.geteuid() == 0:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true but not root: the lab's network-namespace tests must run in CI")
    pytest.skip("needs root (network namespaces)")
