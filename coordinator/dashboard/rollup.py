"""Incremental time-bucket rollups of the measurements, so no page ever reads raw rows.

:func:`refresh` folds measurements with ``seq`` above the cursor into ``dashboard_rollup`` at every
level of :data:`LEVELS`, in chunks, each chunk one transaction on the store's writer.  The
timeline picks the finest level that gives at most :data:`MAX_BUCKETS` buckets over the range.
"""

from __future__ import annotations

import sqlite3

LEVELS = (10, 60, 600, 3600)
MAX_BUCKETS = 1500
CHUNK_ROWS = 50_000
THROUGHPUT_KEY = "$.goodput_bps"          # probe/probers/throughput.py

# One pass over the new measurements into finest-level buckets, then every level from those.
_CHUNK = f"""
INSERT INTO temp.dashboard_chunk
SELECT coalesce(probe_cc, ''), CAST(start_ts / {LEVELS[0]} AS INTEGER) * {LEVELS[0]}, coalesce(probe_asn, 0),
       coalesce(probe_access, ''), test_name, count(*), sum(success),
       sum(CASE WHEN test_name = 'throughput' AND json_extract(test_keys, '{THROUGHPUT_KEY}') IS NOT NULL THEN 1 ELSE 0 END),
       coalesce(sum(CASE WHEN test_name = 'throughput' THEN json_extract(test_keys, '{THROUGHPUT_KEY}') END), 0)
FROM measurements WHERE seq > :lo AND seq <= :hi
GROUP BY 1, 2, 3, 4, 5
"""
_UPSERT = """
INSERT INTO dashboard_rollup (bucket_s, cc, bucket_ts, asn, access, test_name, n, ok, tput_n, tput_sum)
SELECT :level, cc, CAST(bucket_ts / :level AS INTEGER) * :level, asn, access, test_name, sum(n), sum(ok), sum(tput_n),
       sum(tput_sum)
FROM temp.dashboard_chunk WHERE true
GROUP BY 1, 2, 3, 4, 5, 6
ON CONFLICT (bucket_s, cc, bucket_ts, asn, access, test_name) DO UPDATE SET
    n = n + excluded.n, ok = ok + excluded.ok, tput_n = tput_n + excluded.tput_n, tput_sum = tput_sum + excluded.tput_sum
"""


def refresh(conn: sqlite3.Connection, max_chunks: int = 1000) -> int:
    """Fold new measurements into the rollup (on the writer connection); returns how many rows."""
    done = 0
    for _ in range(max_chunks):
        conn.execute("BEGIN IMMEDIATE")
        try:
            lo = conn.execute("SELECT last_seq FROM dashboard_rollup_cursor WHERE id = 1").fetchone()[0]
            top = conn.execute("SELECT coalesce(max(seq), 0) FROM measurements").fetchone()[0]
            hi = min(top, lo + CHUNK_ROWS)
            if hi <= lo:
                conn.execute("COMMIT")
                return done
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS dashboard_chunk (cc TEXT, bucket_ts REAL, asn INTEGER,"
                         " access TEXT, test_name TEXT, n INTEGER, ok INTEGER, tput_n INTEGER, tput_sum REAL)")
            conn.execute("DELETE FROM temp.dashboard_chunk")
            conn.execute(_CHUNK, {"lo": lo, "hi": hi})
            for level in LEVELS:
                conn.execute(_UPSERT, {"level": level})
            conn.execute("UPDATE dashboard_rollup_cursor SET last_seq = ? WHERE id = 1", (hi,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        done += hi - lo
    return done


def lag(conn: sqlite3.Connection) -> int:
    """Measurements not yet in the rollup."""
    lo = conn.execute("SELECT last_seq FROM dashboard_rollup_cursor WHERE id = 1").fetchone()[0]
    top = conn.execute("SELECT coalesce(max(seq), 0) FROM measurements").fetchone()[0]
    return int(top - lo)


def level_for(since: float, until: float) -> int:
    for level in LEVELS:
        if (until - since) / level <= MAX_BUCKETS:
            return level
    return LEVELS[-1]
