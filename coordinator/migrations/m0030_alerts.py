"""Alerts: one delivery cursor per webhook (the last event_transitions.seq it acknowledged)."""

from __future__ import annotations

from typing import Any


def apply(db: Any) -> None:
    db.execute(
        """
        CREATE TABLE alert_cursors (
            webhook TEXT PRIMARY KEY,          -- the webhook URL
            last_seq INTEGER NOT NULL,         -- every transition up to this seq was acknowledged (2xx)
            delivered INTEGER NOT NULL DEFAULT 0,
            updated_ts REAL NOT NULL
        )
        """
    )
