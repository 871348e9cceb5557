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


def _plan(conn: sqlite3.Connection, sql: str, args: tuple[object, ...]) -> str:
    return " ".join(str(r[3]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args))


def test_dropping_two_measurement_indexes_keeps_every_row(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from coordinator.migrations import m0001_core, m0004_measurement_indexes
    from coordinator.store import insert_measurements, iter_measurements
    from probe.record import make_record

    conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    conn.row_factory = sqlite3.Row
    m0001_core.apply(sqlite_utils.Database(conn))
    recs = [make_record(test_name=("tcp", "dns", "http")[i % 3], test_version="1", target=f"t{i % 7}",
                        start_time=datetime.fromtimestamp(1.7e9 + i, UTC), runtime_s=0.1, success=bool(i % 2),
                        failure=None if i % 2 else "timeout", test_keys={"i": i}, probe_id=f"p{i % 4}", probe_cc="KZ",
                        source="tocsin" if i % 5 else "atlas") for i in range(300)]
    assert len(insert_measurements(conn, recs, received_ts=1.7e9).inserted) == 300
    before = conn.execute("SELECT * FROM measurements ORDER BY seq").fetchall()
    conn.execute("BEGIN")
    m0004_measurement_indexes.apply(sqlite_utils.Database(conn))
    conn.execute("COMMIT")
    assert [tuple(r) for r in conn.execute("SELECT * FROM measurements ORDER BY seq")] == [tuple(r) for r in before]
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'measurements'")}
    assert not names & set(m0004_measurement_indexes.DROPPED) and len(names) == 7
    # the filters still answer, in time order, from the time index
    assert [r["test_name"] for r in iter_measurements(conn, test="dns")] == ["dns"] * 100
    assert len(list(iter_measurements(conn, source="atlas", since=1.7e9, until=1.7e9 + 100))) == 20
    for sql in ("SELECT * FROM measurements WHERE test_name = ? AND start_ts >= ? ORDER BY start_ts, seq",
                "SELECT * FROM measurements WHERE source = ? AND start_ts >= ? AND start_ts < ?"):
        assert "idx_measurements_start_ts" in _plan(conn, sql, ("x", 1.0, 2.0)[:sql.count("?")])
    # the other filters keep their own index
    assert "idx_measurements_probe_cc_start_ts" in _plan(
        conn, "SELECT * FROM measurements WHERE probe_cc = ? ORDER BY start_ts, seq", ("KZ",))
    conn.close()


def test_a_fresh_store_has_seven_measurement_indexes(tmp_path: Path) -> None:
    conn = db.open_writer(tmp_path)
    try:
        n = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'measurements'").fetchone()[0]
        assert n == 7      # unique measurement_id; start_ts; cc, asn, probe, target, campaign (each with start_ts)
    finally:
        conn.close()
