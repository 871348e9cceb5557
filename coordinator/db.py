"""SQLite access: connections, pragmas and numbered migrations.

One writer connection (owned by :class:`coordinator.store.Store`'s writer thread) and readers on
their own connections.  WAL mode, so readers never block the writer; ``synchronous=NORMAL`` in WAL
is durable against a crash of the coordinator process (a COMMIT that returned is on disk).
"""

from __future__ import annotations

import importlib
import pkgutil
import sqlite3
import time
from pathlib import Path

import sqlite_utils

DB_FILENAME = "tocsin.db"


def db_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / DB_FILENAME


def connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open a connection with the project's pragmas.  Readers open with ``mode=ro``."""
    path = Path(path)
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=30)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.row_factory = sqlite3.Row
    return conn


def migrations() -> list[tuple[int, str]]:
    """All migration modules, as (number, module name), in order.  Files are ``mNNNN_name.py``."""
    from coordinator import migrations as pkg

    found = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("m") and info.name[1:5].isdigit():
            found.append((int(info.name[1:5]), f"coordinator.migrations.{info.name}"))
    found.sort()
    numbers = [n for n, _ in found]
    if len(numbers) != len(set(numbers)):
        raise RuntimeError(f"two migrations share a number: {numbers}")
    return found


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply every migration not yet applied, each in its own transaction.  Returns their names."""
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (number INTEGER PRIMARY KEY, name TEXT, applied_ts REAL)")
    done = {row[0] for row in conn.execute("SELECT number FROM _migrations")}
    applied = []
    for number, name in migrations():
        if number in done:
            continue
        module = importlib.import_module(name)
        conn.execute("BEGIN IMMEDIATE")
        try:
            module.apply(sqlite_utils.Database(conn))
            conn.execute("INSERT INTO _migrations VALUES (?, ?, ?)", (number, name, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


WRITER_CACHE_KIB = 16384   # the writer's page cache: the random-keyed b-trees (measurement ids, chain
                           # hashes) stay in memory instead of being re-read page by page (default 2 MiB)


def open_writer(data_dir: str | Path) -> sqlite3.Connection:
    conn = connect(db_path(data_dir))
    conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
    migrate(conn)
    return conn
