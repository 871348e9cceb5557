"""The upload chain keyed by its hash alone (WITHOUT ROWID), without the per-probe index.

Every uploaded item adds one link, and the only reads are by hash (is this batch's first ``prev``
known?), so one b-tree keyed by the hash is enough: the rowid table plus its primary-key index
plus a per-probe index that nothing read cost about half as much as the measurement insert itself
(measured in the ingest benchmark's profile).
"""

from __future__ import annotations

from typing import Any


def apply(db: Any) -> None:
    db.execute(
        """
        CREATE TABLE upload_chain_new (
            hash TEXT PRIMARY KEY,
            prev_hash TEXT NOT NULL,
            probe_id TEXT NOT NULL,
            measurement_id TEXT,          -- NULL for a drop report
            received_ts REAL NOT NULL
        ) WITHOUT ROWID
        """
    )
    db.execute("INSERT INTO upload_chain_new SELECT hash, prev_hash, probe_id, measurement_id, received_ts "
               "FROM upload_chain")
    db.execute("DROP TABLE upload_chain")      # its index goes with it
    db.execute("ALTER TABLE upload_chain_new RENAME TO upload_chain")
