"""Many rows per ``INSERT`` statement: the bulk writes of the ingest and of the Atlas import.

``executemany`` runs an insert once per row: each run opens cursors on the table and each of its
indexes, and releases and re-takes the GIL around ``sqlite3_step``.  One ``INSERT ... VALUES (...),
(...), ...`` of up to :data:`ROWS_PER_INSERT` rows pays that once.  In the coordinator the GIL hand
-off is the larger cost: every release lets another thread in (request handling, validation, the
verdict reader), and on two cores each hand-off moves the interpreter between cores.

Callers use ``INSERT OR IGNORE`` with plain ``?`` parameters: a statement that may stop half-way
(an expression, or ``ON CONFLICT DO NOTHING``) makes SQLite keep a statement journal, which spills
to a temporary file.  A row ignored for a reason the caller did not expect shows up in the count
this returns, and the caller raises.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import chain
from typing import Any

ROWS_PER_INSERT = 100   # cachegrind, 3,000 Atlas pings: 50 and 100 alike, 250 +2k instructions a row
_SQL: dict[tuple[str, int], str] = {}


def placeholders(columns: int) -> str:
    """``(?, ?, ...)``: one row of ``columns`` parameters."""
    return "(" + ", ".join("?" * columns) + ")"


def statement(head: str, one: str, n: int) -> str:
    """``head`` followed by ``n`` copies of ``one``, kept (the same string object: its hash is
    computed once, and sqlite3's statement cache finds it)."""
    text = _SQL.get((head, n))
    if text is None:
        text = _SQL[head, n] = head + ", ".join([one] * n)
    return text


def insert_rows(conn: sqlite3.Connection, head: str, one: str, rows: Sequence[tuple[Any, ...]]) -> int:
    """Insert ``rows`` :data:`ROWS_PER_INSERT` at a time with ``head`` (``INSERT OR IGNORE INTO t
    (...) VALUES ``); the number of rows inserted."""
    done = 0
    for i in range(0, len(rows), ROWS_PER_INSERT):
        part = rows[i:i + ROWS_PER_INSERT]
        done += conn.execute(statement(head, one, len(part)), list(chain.from_iterable(part))).rowcount
    return done
