"""docs/replica.md against the code: settings, routes, status keys and refusal texts."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from coordinator import api as api_mod
from coordinator import replica, replica_api
from coordinator.app import make_app
from coordinator.config import ReplicaSettings, load_config
from coordinator.store import Store

DOC = (Path(__file__).resolve().parents[1] / "docs" / "replica.md").read_text()
FLAT = " ".join(DOC.split())     # prose wraps lines; texts are compared with single spaces


def test_every_setting_is_documented_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", DOC, re.M))
    for f in dataclasses.fields(ReplicaSettings):
        assert f.name in rows, f.name
        default = rows[f.name].strip()
        assert default == (str(f.default) if f.default != "" else "empty"), (f.name, default)
        assert "TOCSIN_REPLICA__" in DOC


def test_every_route_is_documented_and_every_documented_route_exists(tmp_path: Path) -> None:
    config = load_config(None, environ={"TOCSIN_ADMIN_TOKEN": "a", "TOCSIN_REPLICA__TOKEN": "t",
                                        "TOCSIN_REPLICA__UPSTREAM": "http://127.0.0.1:9",
                                        "TOCSIN_REPLICA__UPSTREAM_TOKEN": "t"})
    store = Store(tmp_path)
    try:
        app = make_app(store, config, str(tmp_path))
        code = {f"{m} {p}" for m, p in api_mod.routes(app) if p.startswith(replica_api.REPLICA_API)}
    finally:
        store.close()
    documented = set(re.findall(r"`((?:GET|POST) /api/v1/replica/[^`]*)`", DOC))
    assert code == documented, (code - documented, documented - code)
    assert {f"{m} {p}" for m, p in replica_api.ROUTES} <= code


def test_status_keys_and_refusals_are_documented() -> None:
    status_row = next(line for line in DOC.splitlines() if line.startswith("| `GET /api/v1/replica/status`"))
    source = Path(replica.__file__).read_text()
    keys = set(re.findall(r'status\["(\w+)"\]', source)) | {"queued", "upstream"}
    for line in source.splitlines():
        if "status.update(" in line:
            keys |= set(re.findall(r"\b(\w+)=(?!=)", line.split("status.update(", 1)[1]))
    assert {"last_error", "upstream_reachable", "forwarded", "pulled_records"} <= keys
    for key in keys:
        assert f"`{key}`" in status_row, key
    api_source = Path(replica_api.__file__).read_text()
    for text in re.findall(r'AuthError\(\d+, f?"([^"{]{12,})', api_source):
        assert text.strip() in FLAT, text
    for text in ("this coordinator is a replica of", "replica could not queue the data for its upstream",
                 "upstream is set but neither upstream_token nor upstream_token_file"):
        assert text in source and text in FLAT
