"""Migrations that reshape a table keep every row (m0003: the upload chain keyed by hash)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils

from coordinator import db
from coordinator.migrations import m0002_probe_service, m0003_upload_chain_keyed


def test_upload_chain_rows_survive_the_rekeying() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    m0002_probe_service.apply(sqlite_utils.Database(conn))
    rows = [(f"h{i}", f"h{i - 1}", "p-1" if i % 2 else "p-2", None if i == 3 else f"m{i}", 1000.0 + i) for i in range(10)]
    conn.executemany("INSERT INTO upload_chain VALUES (?, ?, ?, ?, ?)", rows)
    m0003_upload_chain_keyed.apply(sqlite_utils.Database(conn))
    assert conn.execute("SELECT * FROM upload_chain ORDER BY received_ts").fetchall() == rows
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'upload_chain'").fetchone()[0]
    assert "WITHOUT ROWID" in sql
    assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'upload_chain' "
                        "AND sql IS NOT NULL").fetchall() == []
    # the one read the ingest path makes is still a key lookup
    plan = " ".join(str(r) for r in conn.execute("EXPLAIN QUERY PLAN SELECT 1 FROM upload_chain WHERE hash = ?", ("h3",)))
    assert "PRIMARY KEY" in plan


def test_a_fresh_store_gets_the_keyed_table(tmp_path: Path) -> None:
    conn = db.open_writer(tmp_path)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY number")]
        assert "coordinator.migrations.m0003_upload_chain_keyed" in names
        with_dup = conn.execute("INSERT OR IGNORE INTO upload_chain VALUES ('a', 'g', 'p', 'm', 1.0)")
        assert with_dup.rowcount == 1
        assert conn.execute("INSERT OR IGNORE INTO upload_chain VALUES ('a', 'g', 'p', 'm', 2.0)").rowcount == 0
    finally:
        conn.close()
