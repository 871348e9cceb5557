"""Optional feature modules: absent ones are skipped, broken ones still fail loudly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from probe.plugins import build_command_line, import_optional


def test_absent_module_is_skipped() -> None:
    assert import_optional("coordinator.no_such_feature") is None
    assert import_optional("probe.plugins") is sys.modules["probe.plugins"]


def test_a_module_whose_own_import_fails_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tocsin_broken_feature.py").write_text("import tocsin_dependency_that_is_missing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="tocsin_dependency_that_is_missing"):
        import_optional("tocsin_broken_feature")


def test_command_line_from_present_modules_only() -> None:
    parser = build_command_line("x", "x", ["probe.cli_measure", "probe.no_such_commands"])
    args = parser.parse_args(["tests"])
    assert args.command == "tests" and callable(args.func)
