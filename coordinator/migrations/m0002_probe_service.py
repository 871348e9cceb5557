"""Core service tables: heartbeats, replay protection, upload chain, outbox drops, probe networks."""

from __future__ import annotations

from typing import Any


def apply(db: Any) -> None:
    # One row per schedule poll; read by the verdict engine's heartbeat signal.
    db.execute("CREATE TABLE probe_heartbeats (probe_id TEXT NOT NULL, ts REAL NOT NULL)")
    db.execute("CREATE INDEX idx_probe_heartbeats ON probe_heartbeats (probe_id, ts)")
    db.execute("CREATE INDEX idx_probe_heartbeats_ts ON probe_heartbeats (ts)")
    # Nonces of signed requests seen within the clock window (replay protection across restarts).
    db.execute("CREATE TABLE request_nonces (nonce TEXT PRIMARY KEY, probe_id TEXT NOT NULL, ts REAL NOT NULL)")
    db.execute("CREATE INDEX idx_request_nonces_ts ON request_nonces (ts)")
    # The probe's outbox hash chain, one link per uploaded item (record or drop report).
    db.execute(
        """
        CREATE TABLE upload_chain (
            hash TEXT PRIMARY KEY,
            prev_hash TEXT NOT NULL,
            probe_id TEXT NOT NULL,
            measurement_id TEXT,          -- NULL for a drop report
            received_ts REAL NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX idx_upload_chain_probe ON upload_chain (probe_id)")
    # A chain link whose predecessor the coordinator has never seen (gap or change in the outbox).
    db.execute(
        """
        CREATE TABLE chain_gaps (
            probe_id TEXT NOT NULL, prev_hash TEXT NOT NULL, first_hash TEXT NOT NULL,
            detected_ts REAL NOT NULL, PRIMARY KEY (probe_id, prev_hash)
        )
        """
    )
    # What a probe's outbox had to evict under its disk quota, exactly as it reported it.
    db.execute(
        """
        CREATE TABLE probe_drops (
            drop_id TEXT PRIMARY KEY,
            probe_id TEXT NOT NULL,
            dropped_count INTEGER NOT NULL,
            dropped_bytes INTEGER NOT NULL,
            first_start_time TEXT, last_start_time TEXT,
            measurement_ids TEXT NOT NULL,   -- JSON list
            reported_ts REAL NOT NULL,       -- probe clock when it dropped
            received_ts REAL NOT NULL
        )
        """
    )
    # Every (cc, asn, access) the coordinator has given a probe: uploaded records must carry one.
    db.execute(
        """
        CREATE TABLE probe_networks (
            probe_id TEXT NOT NULL,
            network TEXT NOT NULL,           -- "cc|asn|access" (empty for unknown), the key
            cc TEXT, asn INTEGER, access TEXT NOT NULL,
            first_ts REAL NOT NULL, last_ts REAL NOT NULL,
            PRIMARY KEY (probe_id, network)
        )
        """
    )
