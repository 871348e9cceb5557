"""Archives: which bundles the coordinator built automatically, and up to which arrival seq."""

from __future__ import annotations

from typing import Any


def apply(db: Any) -> None:
    db.execute(
        """
        CREATE TABLE archive_builds (
            name TEXT PRIMARY KEY,            -- bundle name, e.g. daily-2022-01-05
            since_ts REAL NOT NULL,
            until_ts REAL NOT NULL,
            built_seq INTEGER NOT NULL,       -- max(measurements.seq) when it was built
            built_ts REAL NOT NULL,
            withheld_until_ts REAL            -- embargoed rows left out become publishable then: rebuild
        )
        """
    )
