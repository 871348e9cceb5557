"""The README's promises hold: its two set-up commands exist and CI runs the test one; every
command of both command lines is documented; every page the README links to exists."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from coordinator.__main__ import build_parser as coordinator_parser
from probe.__main__ import build_parser as probe_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = README + "".join(p.read_text() for p in sorted((ROOT / "docs").rglob("*.md")))


def test_two_setup_commands_exist_and_ci_runs_the_test_one() -> None:
    block = README.split("## Set-up", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make run", "make check"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^check:", makefile, re.M)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make check" in ci and "scripts/install-deps.sh" in ci


def _commands(parser: argparse.ArgumentParser) -> list[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


@pytest.mark.parametrize(("module", "parser"), [("coordinator", coordinator_parser), ("probe", probe_parser)])
def test_every_command_is_documented(module: str, parser: object) -> None:
    assert callable(parser)
    missing = [c for c in _commands(parser()) if f"python -m {module} {c}" not in DOCS]
    assert missing == [], f"undocumented: {missing}"


def test_readme_links_exist() -> None:
    for link in re.findall(r"\]\(([^)#]+)\)", README):
        if "://" not in link:
            assert (ROOT / link).exists(), link
