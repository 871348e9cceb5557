"""Read Atlas files (a JSON array or one object per line) and store what they hold.

A file may mix results, connection events (msm 7000 / probestatus) and probe objects; the kind
of each item is recognised by its keys.  Bad lines and bad items are counted with a reason; they
never stop the import.  Running the same import twice stores nothing the second time.
"""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from coordinator.atlas import storage
from coordinator.atlas.normalize import ProbeInfo
from coordinator.atlas.storage import Counts

# Items per transaction.  Larger batches keep more objects alive for the cyclic GC's full passes: with
# 5000 traceroutes a batch, those passes took ~18% of the import; 500 measured best for traceroute and
# no worse for ping (bench/bench_atlas_import.py, 250-5000).
BATCH = 500
WAL_PAGES = 65536  # pages (256 MiB at 4 KiB) between WAL checkpoints during an import


def iter_items(path: Path, counts: Counts) -> Iterator[tuple[Any, str | None]]:
    """(item, its JSON text as read, or None inside a JSON array) of one file; undecodable lines are
    counted in ``counts``."""
    with path.open("rb") as f:
        head = f.read(4096).lstrip()
        f.seek(0)
        if head.startswith(b"["):
            try:
                doc = orjson.loads(f.read())
            except orjson.JSONDecodeError as exc:
                counts.bad(f"{path.name}: not valid JSON: {exc}"[:200])
                return
            for item in doc:
                yield item, None
            return
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError:
                counts.bad(f"line {number}: not valid JSON")
                continue
            yield item, line.decode()  # orjson accepted it: valid UTF-8


@dataclass
class _Lookups:
    """Probe metadata and target countries, read once per import (again after probe objects)."""

    probes: dict[int, ProbeInfo] | None = None
    targets: dict[str, str] | None = None


def store_items(conn: sqlite3.Connection, items: list[tuple[Any, str | None]], counts: Counts,
                lookups: _Lookups | None = None) -> None:
    """Store one batch of mixed items (probe objects first, so results of those probes get cc/ASN)."""
    lookups = lookups or _Lookups()
    results: list[Any] = []
    texts: list[str | None] = []
    others: dict[str, list[Any]] = {"probe": [], "connection": []}
    for item, text in items:
        kind = storage.kind_of(item)
        if kind == "result":
            results.append(item)
            texts.append(text)
        elif kind:
            others[kind].append(item)
        else:
            counts.bad("not an Atlas result, connection event or probe object")
    if others["probe"]:
        counts.add(storage.store_probes(conn, others["probe"]))
        lookups.probes = None
    if others["connection"] or results:
        if lookups.probes is None:
            lookups.probes = storage.probe_infos(conn)
        if others["connection"]:
            counts.add(storage.store_connection_events(conn, others["connection"], probes=lookups.probes))
        if results:
            if lookups.targets is None:
                lookups.targets = storage.target_countries(conn)
            counts.add(storage.store_results(conn, results, probes=lookups.probes, target_cc=lookups.targets.get,
                                             texts=texts))


def _holds_probes(path: Path) -> bool:
    for item, _ in iter_items(path, Counts()):
        return storage.kind_of(item) == "probe"
    return False


def import_paths(conn: sqlite3.Connection, paths: list[Path], batch: int = BATCH) -> Counts:
    """Import ``paths``; files of probe objects go first so results get their probes' country/ASN."""
    counts = Counts()
    lookups = _Lookups()
    with _bulk_checkpoints(conn):
        for path in sorted(paths, key=lambda p: not _holds_probes(p)):
            pending: list[tuple[Any, str | None]] = []
            for pair in iter_items(path, counts):
                pending.append(pair)
                if len(pending) >= batch:
                    _store_batch(conn, pending, counts, lookups)
                    pending = []
            if pending:
                _store_batch(conn, pending, counts, lookups)
    return counts


def _store_batch(conn: sqlite3.Connection, items: list[tuple[Any, str | None]], counts: Counts,
                 lookups: _Lookups) -> None:
    """:func:`store_items` with the cyclic garbage collector paused for the batch.

    Parsing a result makes dozens of small objects (sagan's), none in a reference cycle: reference
    counting frees them all, and the collector's passes over them found nothing while taking ~10% of
    an import.  It is switched back on after each batch (if it was on), so a cycle made anyway is
    collected then.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        store_items(conn, items, counts, lookups)
    finally:
        if was_on:
            gc.enable()


@contextmanager
def _bulk_checkpoints(conn: sqlite3.Connection) -> Iterator[None]:
    """WAL checkpoints every ``WAL_PAGES`` pages instead of SQLite's default 1000 for the import.

    Each batch writes more than 1000 pages, so the default would copy the WAL back into the database
    (and sync it) after every commit, and copy index pages that the next batch rewrites again.  The
    import ends with a checkpoint of its own, so it leaves no more WAL behind than it found.
    """
    before = int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    if 0 < before < WAL_PAGES:  # 0: checkpoints are off on this connection; leave them off
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA wal_autocheckpoint={before}")
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
