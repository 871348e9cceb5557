"""RIPE Atlas tables: connection events (pinned), probes, raw results, closed-loop measurements."""

from __future__ import annotations

from typing import Any


def apply(db: Any) -> None:
    db.execute(
        """
        CREATE TABLE atlas_connection_events (
            prb_id INTEGER NOT NULL,
            asn INTEGER,
            cc TEXT,
            event TEXT NOT NULL CHECK (event IN ('connect', 'disconnect')),
            ts REAL NOT NULL,                        -- Atlas timestamp (epoch seconds, UTC)
            PRIMARY KEY (prb_id, ts, event)
        )
        """
    )
    db.execute("CREATE INDEX idx_atlas_ce_ts ON atlas_connection_events (ts)")
    db.execute("CREATE INDEX idx_atlas_ce_cc ON atlas_connection_events (cc, ts)")
    db.execute("CREATE INDEX idx_atlas_ce_asn ON atlas_connection_events (asn, ts)")
    db.execute(
        """
        CREATE TABLE atlas_probes (
            prb_id INTEGER PRIMARY KEY,
            cc TEXT,
            asn_v4 INTEGER,
            asn_v6 INTEGER,
            status TEXT,                             -- Connected, Disconnected, Abandoned, Never Connected
            status_since REAL,                       -- epoch seconds
            tags TEXT NOT NULL DEFAULT '[]',         -- JSON list of tag slugs
            is_anchor INTEGER NOT NULL DEFAULT 0,
            updated_ts REAL NOT NULL,
            raw TEXT NOT NULL                        -- the probe object as Atlas sent it
        )
        """
    )
    db.execute("CREATE INDEX idx_atlas_probes_cc ON atlas_probes (cc)")
    db.execute(
        """
        CREATE TABLE atlas_raw (
            measurement_id TEXT PRIMARY KEY,         -- the Tocsin record made from it
            msm_id INTEGER NOT NULL,
            prb_id INTEGER NOT NULL,
            ts REAL NOT NULL,
            type TEXT NOT NULL,
            raw TEXT NOT NULL                        -- the original Atlas result, unchanged
        )
        """
    )
    db.execute("CREATE INDEX idx_atlas_raw_msm ON atlas_raw (msm_id, ts)")
    db.execute(
        """
        CREATE TABLE atlas_created_measurements (
            msm_id INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL,
            transition_seq INTEGER NOT NULL,         -- event_transitions row that caused it
            cc TEXT,
            type TEXT NOT NULL,                      -- ping, traceroute
            target TEXT NOT NULL,
            vantage TEXT NOT NULL,                   -- inside, outside
            probes_requested INTEGER NOT NULL,
            credits REAL NOT NULL,                   -- estimated credits spent
            created_ts REAL NOT NULL,
            fetched_ts REAL,                         -- last results fetch
            results INTEGER NOT NULL DEFAULT 0,
            done INTEGER NOT NULL DEFAULT 0
        )
        """
    )
    db.execute("CREATE INDEX idx_atlas_created_event ON atlas_created_measurements (event_id)")
    db.execute(
        """
        CREATE TABLE atlas_state (
            key TEXT PRIMARY KEY,                    -- cursors: last fetch windows, last transition seq
            value TEXT NOT NULL
        )
        """
    )
