"""docs/archives.md agrees with the code: commands, options, routes, settings, formats, manifest keys."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
from pathlib import Path

from coordinator import db as dbmod
from coordinator.archive import build, cli, formats, service
from coordinator.archive.settings import Settings

DOC = (Path(__file__).parent.parent / "docs" / "archives.md").read_text()


def table_rows(heading_cell: str) -> dict[str, list[str]]:
    """Rows of the markdown table whose header row starts with ``| heading_cell |``: first cell -> rest."""
    lines = DOC.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {heading_cell} |"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_commands_and_options() -> None:
    assert {k: v[0] for k, v in table_rows("command").items()} == cli.COMMANDS
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli.register(sub)
    parsers = [sub.choices["download"], *sub.choices["archive"]._subparsers._group_actions[0].choices.values()]  # type: ignore[union-attr]
    for p in parsers:
        for action in p._actions:
            for opt in action.option_strings:
                if opt not in ("-h", "--help"):
                    assert f"`{opt}`" in DOC, opt


def test_routes_settings_formats() -> None:
    assert {k: v[0] for k, v in table_rows("route").items()} == service.ROUTES
    rows = table_rows("key")   # the first "| key |" table is the manifest; settings come later
    settings_rows = {}
    lines = DOC[DOC.index("## Settings"):].splitlines()
    for line in lines[4:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        settings_rows[cells[0].strip("`")] = cells[1].strip("`")
    defaults = Settings()
    assert set(settings_rows) == {f.name for f in dataclasses.fields(Settings)}
    for name, text in settings_rows.items():
        if name == "export_workers":         # depends on the machine: the doc gives the rule
            assert text == "min(2, os.cpu_count())" and defaults.export_workers == min(2, os.cpu_count() or 1)
            continue
        assert json.loads(text) == getattr(defaults, name), name
    for fmt in formats.FORMATS:
        assert f"| `{fmt}` |" in DOC
    for key in formats.PRIVATE_KEYS:
        assert f"`{key}`" in DOC
    assert ", ".join(f"`{c}`" for c in formats.FIELD_NAMES) in re.sub(r"\s+", " ", DOC)
    assert rows  # manifest table present


def test_manifest_keys_documented(tmp_path: Path) -> None:
    dbmod.open_writer(tmp_path).close()
    path = build.build(tmp_path, build.daily_spec(build.parse_day("2022-01-05")))
    keys = set(json.loads((path / "manifest.json").read_text()))
    documented = set()
    for cell in table_rows("key"):
        documented |= {k.strip().strip("`") for k in cell.split(",")}
    assert keys == documented
