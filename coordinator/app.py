"""The coordinator's aiohttp application, assembled from feature modules.

Each module in :data:`FEATURES` exposes ``setup(app: web.Application) -> None`` that adds its
routes under ``/api/v1/`` (or ``/`` for the dashboard), its background tasks (via
``app.cleanup_ctx``) and its metrics.  Shared state lives under the AppKeys below.
"""

from __future__ import annotations

from aiohttp import web

from coordinator.config import Config
from coordinator.store import Store
from probe.plugins import import_optional

STORE = web.AppKey("store", Store)
CONFIG = web.AppKey("config", Config)
DATA_DIR = web.AppKey("data_dir", str)

FEATURES = (
    "coordinator.api",                # probes, invites, ingest, campaigns, measurements (core)
    "coordinator.verdict.service",    # continuous detection, /api/v1/events
    "coordinator.atlas.service",      # Atlas polling, stream, closed loop
    "coordinator.archive.service",    # archives over HTTP
    "coordinator.dashboard.service",  # / dashboard, assets
    "coordinator.alerts.service",     # webhooks, Atom feeds, /metrics
)


def make_app(store: Store, config: Config, data_dir: str) -> web.Application:
    app = web.Application(client_max_size=config.ingest_max_bytes)
    app[STORE] = store
    app[CONFIG] = config
    app[DATA_DIR] = data_dir
    for name in FEATURES:
        module = import_optional(name)
        if module is not None:
            module.setup(app)
    return app
