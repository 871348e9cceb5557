"""Dashboard: measurement counts rolled up into time buckets per country, ASN, access type and test.

Kept up to date incrementally by arrival order (``seq``), so late uploads land in their old buckets.
"""

from __future__ import annotations

from typing import Any


def apply(db: Any) -> None:
    db.execute(
        """
        CREATE TABLE dashboard_rollup (
            bucket_s INTEGER NOT NULL,         -- bucket width: 10, 60, 600 or 3600 s
            cc TEXT NOT NULL,                  -- '' when unknown
            bucket_ts REAL NOT NULL,           -- bucket start, epoch seconds of start_ts
            asn INTEGER NOT NULL,              -- 0 when unknown
            access TEXT NOT NULL,              -- '' when unknown
            test_name TEXT NOT NULL,
            n INTEGER NOT NULL,                -- measurements
            ok INTEGER NOT NULL,               -- of which success
            tput_n INTEGER NOT NULL,           -- throughput measurements with throughput_bps
            tput_sum REAL NOT NULL,            -- sum of their throughput_bps
            PRIMARY KEY (bucket_s, cc, bucket_ts, asn, access, test_name)
        ) WITHOUT ROWID
        """
    )
    db.execute("CREATE TABLE dashboard_rollup_cursor (id INTEGER PRIMARY KEY CHECK (id = 1), last_seq INTEGER NOT NULL)")
    db.execute("INSERT INTO dashboard_rollup_cursor VALUES (1, 0)")
