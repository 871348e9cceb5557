"""docs/coordinator.md and docs/agent.md against the code's own tables."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from coordinator import api as api_mod
from coordinator import campaigns, config
from coordinator.api_read import MEASUREMENT_QUERY
from coordinator.app import make_app
from coordinator.store import Store
from probe.agent import cli as agent_cli
from probe.agent.metrics import METRICS
from probe.agent.status import STATUS_KEYS

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_route_is_documented_and_every_documented_route_exists(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        cfg = config.load_config(None, environ={"TOCSIN_ADMIN_TOKEN": "x"})
        from aiohttp import web
        app = web.Application()
        from coordinator.app import CONFIG, DATA_DIR, STORE
        app[STORE], app[CONFIG], app[DATA_DIR] = store, cfg, str(tmp_path)
        api_mod.setup(app)
        code = {f"{m} {p}" for m, p in api_mod.routes(app)}
        assert make_app(store, cfg, str(tmp_path))  # the full app assembles with the core routes
    finally:
        store.close()
    text = (DOCS / "coordinator.md").read_text()
    documented = set(re.findall(r"`((?:GET|POST|PUT|DELETE) /api/v1/[^`]*)`", text))
    assert code == documented, (code - documented, documented - code)


def test_settings_commands_and_campaign_keys_are_documented() -> None:
    text = (DOCS / "coordinator.md").read_text()
    for key in config.documented_keys()["coordinator"]:
        assert f"| `{key}` |" in text, key
    for _section, module in config.SECTION_MODULES:
        assert f"`{module}`" in text
    for cmd in ("serve", "invite", "campaign add", "campaign list", "campaign show", "campaign stop", "probes", "quickstart"):
        assert f"`python -m coordinator {cmd}" in text, cmd
    for key in (*campaigns.CAMPAIGN_KEYS, *campaigns.SELECTOR_KEYS, *MEASUREMENT_QUERY):
        assert f"`{key}`" in text, key


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [s for a in parser._actions for s in a.option_strings if s.startswith("--") and s != "--help"]


def test_agent_commands_options_metrics_and_status_keys_are_documented() -> None:
    text = (DOCS / "agent.md").read_text()
    parser = argparse.ArgumentParser()
    sub: Any = parser.add_subparsers()
    agent_cli.register(sub)
    for name, p in sub.choices.items():
        assert f"`python -m probe {name}" in text, name
        for opt in _options(p):
            assert f"`{opt}" in text, f"{name} {opt}"
    for metric in METRICS:
        assert f"`{metric}`" in text
    for key in STATUS_KEYS:
        assert f"`{key}`" in text, key
