"""The SQL of :func:`coordinator.atlas.bulk.store_results`: Atlas rows into ``measurements`` and
``atlas_raw`` in one transaction, many rows per ``INSERT`` statement.

- **Many rows a statement** (:mod:`coordinator.sqlbulk`).  ``executemany`` runs the insert once
  per row, and each run opens a cursor on the table and on each of its indexes, updates
  ``sqlite_sequence`` (the table's AUTOINCREMENT) and releases the GIL; one ``INSERT ... VALUES
  (...), (...), ...`` of up to :data:`coordinator.sqlbulk.ROWS_PER_INSERT` rows pays that once.  Such a statement that may stop half-way (an
  expression such as ``NULLIF(?, '')`` in it, or ``ON CONFLICT DO NOTHING``, which halts on a
  corrupt index) makes SQLite keep a statement journal, which spills to a temporary file: two more
  writes for each page touched again.  So the rows are plain ``?`` and the statement is ``INSERT OR
  IGNORE``; the only constraint an accepted record can meet is the unique ``measurement_id`` (the
  envelope fills every NOT NULL column), and a row ignored for another reason would be found out
  by the row counts (:func:`decide_and_write` raises).
- **NaN for NULL.**  Python's sqlite3 module looks for an adapter for every parameter that is not
  an exact int, float, str or bytearray; for ``None`` that search raises and discards an
  AttributeError, ~0.36 µs a parameter, and an Atlas row has four to seven of them.  The rows bind
  NaN (:data:`NULL`) instead: SQLite binds a NaN as NULL (``sqlite3_bind_double``), which is what
  is stored.  No column of the table holds a float that could be NaN (the envelope refuses it).
- **Optimistic first.**  :func:`insert_new` inserts a batch with ``OR IGNORE`` and commits only
  when every row was inserted into both tables, which is exactly when none of its ids was stored
  before or repeated in the batch.  Otherwise it rolls back and the
  caller decides each row with :func:`decide_and_write` (the look-ups of the store's rules).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from coordinator.sqlbulk import insert_rows, placeholders
from coordinator.store import MEASUREMENT_COLUMNS

if TYPE_CHECKING:  # storage imports bulk, which imports this module
    from coordinator.atlas.storage import Counts

CHUNK = 500             # ids per IN (...) look-up
NULL = float("nan")     # what the rows bind for NULL (see the module's docstring)
_ONE_ROW = placeholders(len(MEASUREMENT_COLUMNS))
_INSERT_HEAD = f"INSERT OR IGNORE INTO measurements ({', '.join(MEASUREMENT_COLUMNS)}) VALUES "
_RAW_HEAD = "INSERT OR IGNORE INTO atlas_raw VALUES "
_RAW_ROW = placeholders(6)


def _insert_both(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]], raw_rows: Sequence[tuple[Any, ...]]
                 ) -> tuple[int, int]:
    return (insert_rows(conn, _INSERT_HEAD, _ONE_ROW, rows),
            insert_rows(conn, _RAW_HEAD, _RAW_ROW, raw_rows))


def lookup(conn: sqlite3.Connection, sql: str, ids: Sequence[str]) -> dict[str, Any]:
    """``{id: value}`` of ``sql`` (``... WHERE measurement_id IN ({})``) over ``ids``."""
    found: dict[str, Any] = {}
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i:i + CHUNK]
        found.update(conn.execute(sql.format(",".join("?" * len(chunk))), chunk).fetchall())
    return found


def raw_stored(conn: sqlite3.Connection, mid: str) -> bool:
    """Whether the Atlas result of record ``mid`` is in ``atlas_raw``."""
    return conn.execute("SELECT 1 FROM atlas_raw WHERE measurement_id = ?", (mid,)).fetchone() is not None


def insert_new(conn: sqlite3.Connection, rows: list[tuple[Any, ...]], raw_rows: list[tuple[Any, ...]]) -> bool:
    """Store the batch when every row is new (one transaction); False, with nothing stored, when not."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if _insert_both(conn, rows, raw_rows) == (len(rows), len(raw_rows)):
            conn.execute("COMMIT")
            return True
        conn.execute("ROLLBACK")
        return False
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def decide_and_write(conn: sqlite3.Connection, pairs: list[tuple[tuple[Any, ...], tuple[Any, ...]]],
                     counts: Counts) -> list[str]:
    """Decide each (row, raw row) against the stored ``measurements`` and the batch itself, inside
    the write transaction (another process may be writing too), and store the new ones; the ids
    inserted.  Same id, same content hash: a duplicate (the raw result is still kept); same id,
    other content: a conflict, reported."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        stored = lookup(conn, "SELECT measurement_id, content_hash FROM measurements WHERE measurement_id IN ({})",
                        [r[0] for r, _ in pairs])
        seen: dict[str, tuple[str, str | None]] = {}    # id -> (hash, conflict of the first copy)
        fresh, raw_rows, inserted = [], [], []
        for r, raw_row in pairs:
            mid, digest = r[0], r[1]
            if mid in seen:
                # a second copy in the batch shares its first copy's fate (as in store.write_prepared)
                first, conflict = seen[mid]
                if first != digest:
                    counts.bad(f"conflict: measurement_id {mid} appears twice in the batch with different content")
                elif conflict:
                    counts.bad(conflict)
                else:
                    counts.duplicates += 1
                continue
            known = stored.get(mid)
            if known is not None and known != digest:
                conflict = f"conflict: measurement_id {mid} is already stored with different content"
                seen[mid] = (digest, conflict)
                counts.bad(conflict)
                continue
            seen[mid] = (digest, None)
            raw_rows.append(raw_row)
            if known is None:
                fresh.append(r)
                inserted.append(mid)
            else:
                counts.duplicates += 1
        if _insert_both(conn, fresh, raw_rows) != (len(fresh), len(raw_rows)):
            # the ids were looked up in this transaction: only a bug can make a row not go in
            raise sqlite3.IntegrityError("an Atlas row was not stored (a NULL in a NOT NULL column?)")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return inserted
