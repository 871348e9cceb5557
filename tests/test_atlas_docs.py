"""docs/atlas.md and the code agree: settings, commands, stand-in options, routes, failure strings."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

from coordinator.atlas import cli, normalize, standin
from coordinator.atlas.settings import Settings

DOC = (Path(__file__).resolve().parents[1] / "docs" / "atlas.md").read_text()


def table(heading: str) -> list[list[str]]:
    part = DOC.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in part.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in r.strip("|").split("|")] for r in rows[1:] if not set(r) <= set("|- ")]


def test_settings_documented_with_defaults() -> None:
    rows = {r[0].strip("`"): r[1].strip("`") for r in table("## Settings")}
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    assert set(rows) == set(fields)
    defaults = Settings()
    for name, text in rows.items():
        assert ast.literal_eval(text) == getattr(defaults, name), name


def test_commands_documented() -> None:
    for name in cli.COMMANDS:
        assert f"python -m coordinator atlas {name} --data DIR" in DOC, name


def test_standin_options_documented() -> None:
    options = {o for a in standin.build_parser()._actions for o in a.option_strings if o.startswith("--")}
    documented = {r[0].strip("`") for r in table("## Stand-in")}
    assert options - {"--help"} == documented


def test_routes_documented() -> None:
    app = standin.make_app(standin.default_samples())
    for resource in app.router.resources():
        path = resource.canonical.replace("{msm}", "{id}").replace("{action}", "")
        assert path.rstrip("/") in DOC or path in DOC, path
    assert "GET /api/v1/atlas/status" in DOC


def test_failure_strings_and_signal_classes_documented() -> None:
    for failure in {f for _, f in normalize._ERROR_WORDS} | set(normalize._RCODE_FAILURES.values()):
        assert f"`{failure}`" in DOC, failure
    for name in ("atlas_disconnect", "atlas_reachability", "dns_no_answer", "http_protocol_error", "tls_error"):
        assert f"`{name}`" in DOC
    assert re.search(r"`atlas-<msm_id>-<prb_id>-<timestamp>`", DOC)
