"""Core tables shared by every part of the coordinator."""

from __future__ import annotations

from typing import Any


def apply(db: Any) -> None:
    db.execute(
        """
        CREATE TABLE measurements (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- arrival order (late uploads have high seq, old start_ts)
            measurement_id TEXT NOT NULL UNIQUE,
            content_hash TEXT NOT NULL,              -- sha256 of the canonical record; same id + other hash = conflict
            schema_version INTEGER NOT NULL,
            test_name TEXT NOT NULL,
            test_version TEXT NOT NULL,
            target TEXT NOT NULL,
            probe_id TEXT,
            campaign_id TEXT,
            task_id TEXT,
            source TEXT NOT NULL,
            probe_cc TEXT,
            probe_asn INTEGER,
            probe_access TEXT,
            start_time TEXT NOT NULL,
            start_ts REAL NOT NULL,                  -- epoch seconds of start_time, for range queries
            runtime_s REAL NOT NULL,
            success INTEGER NOT NULL,
            failure TEXT,
            test_keys TEXT NOT NULL,                 -- JSON
            annotations TEXT,                        -- JSON or NULL
            received_ts REAL NOT NULL,               -- coordinator clock when committed
            flags TEXT                               -- comma list: future_timestamp, past_timestamp
        )
        """
    )
    for cols in ("start_ts", "probe_cc, start_ts", "probe_asn, start_ts", "probe_id, start_ts",
                 "test_name, start_ts", "target, start_ts", "source, start_ts", "campaign_id, start_ts"):
        name = "idx_measurements_" + cols.replace(", ", "_")
        db.execute(f"CREATE INDEX {name} ON measurements ({cols})")

    db.execute(
        """
        CREATE TABLE probes (
            probe_id TEXT PRIMARY KEY,
            public_key TEXT NOT NULL UNIQUE,         -- Ed25519, raw 32 bytes, base64
            name TEXT,
            created_ts REAL NOT NULL,
            declared_cc TEXT, declared_asn INTEGER,  -- what the volunteer said
            observed_cc TEXT, observed_asn INTEGER,  -- what the prefix table says of the connecting address
            access TEXT NOT NULL DEFAULT 'fixed',    -- fixed, mobile, datacenter
            tags TEXT NOT NULL DEFAULT '[]',         -- JSON list
            last_seen_ts REAL,                       -- last schedule poll (heartbeat)
            last_upload_ts REAL,
            buffered INTEGER,                        -- outbox depth the probe last reported
            buffered_since_ts REAL,
            software TEXT,
            retired_ts REAL
        )
        """
    )  # no IP address column, on purpose
    db.execute(
        """
        CREATE TABLE invites (
            token_sha256 TEXT PRIMARY KEY,
            created_ts REAL NOT NULL,
            expires_ts REAL,
            used_ts REAL,
            probe_id TEXT,
            note TEXT
        )
        """
    )
    db.execute(
        """
        CREATE TABLE campaigns (
            campaign_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            spec TEXT NOT NULL,                      -- JSON: targets, tests, interval_s, selector, start, end
            created_ts REAL NOT NULL,
            stopped_ts REAL,
            embargo_s REAL NOT NULL DEFAULT 0        -- publication delay for archives
        )
        """
    )
    db.execute(
        """
        CREATE TABLE events (
            event_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,                      -- blackout, domestic_only, throttling, dns_tampering, http_blocking
            scope_type TEXT NOT NULL,                -- country, asn, access, target
            scope TEXT NOT NULL,                     -- e.g. KZ, AS9198, KZ/mobile, KZ|twitter.com
            cc TEXT, asn INTEGER, access TEXT, target TEXT,
            state TEXT NOT NULL,                     -- suspected, confirmed, resolved
            confidence REAL NOT NULL,
            signals TEXT NOT NULL,                   -- JSON list of signal classes
            start_ts REAL NOT NULL,                  -- measurement time of the fault's first evidence
            suspected_ts REAL, confirmed_ts REAL, resolved_ts REAL,
            restorations TEXT NOT NULL DEFAULT '[]', -- JSON list of [from_ts, to_ts]
            details TEXT NOT NULL DEFAULT '{}',      -- JSON: targeted?, ratio, counts
            detector_version TEXT NOT NULL,
            updated_ts REAL NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX idx_events_cc ON events (cc, start_ts)")
    db.execute(
        """
        CREATE TABLE event_evidence (
            event_id TEXT NOT NULL REFERENCES events(event_id) ON DELETE CASCADE,
            measurement_id TEXT NOT NULL,
            PRIMARY KEY (event_id, measurement_id)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE event_transitions (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- alerts deliver each row once, in order
            event_id TEXT NOT NULL,
            state TEXT NOT NULL,
            at_ts REAL NOT NULL,                     -- measurement time of the change
            recorded_ts REAL NOT NULL,               -- wall clock when written
            payload TEXT NOT NULL                    -- JSON snapshot of the event
        )
        """
    )
