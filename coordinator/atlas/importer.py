"""Read Atlas files (a JSON array or one object per line) and store what they hold.

A file may mix results, connection events (msm 7000 / probestatus) and probe objects; the kind
of each item is recognised by its keys.  Bad lines and bad items are counted with a reason; they
never stop the import.  Running the same import twice stores nothing the second time.
"""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from coordinator.atlas import storage
from coordinator.atlas.normalize import ProbeInfo
from coordinator.atlas.storage import Counts

# Items per batch (one transaction, after the batch is parsed).  Before the cyclic GC was paused for
# imports, larger batches kept more objects alive for its full passes (with 5000 traceroutes a batch
# those took ~18% of the import) and 500 measured best.  Paused, 2000 writes a quarter less WAL than
# 500 (fewer index pages written again per commit: 61 vs 80 MB for 30,000 pings) for ~1 µs less
# system time a ping, and no more CPU for traceroutes.
BATCH = 2000
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
    with _bulk_checkpoints(conn), _young_collections() as collect:
        for path in sorted(paths, key=lambda p: not _holds_probes(p)):
            pending: list[tuple[Any, str | None]] = []
            for pair in iter_items(path, counts):
                pending.append(pair)
                if len(pending) >= batch:
                    store_items(conn, pending, counts, lookups)
                    pending = []
                    collect()
            if pending:
                store_items(conn, pending, counts, lookups)
                pending = []
                collect()
    return counts


def _collect_young(was_on: bool) -> None:
    if was_on:
        gc.collect(0)


@contextmanager
def _young_collections() -> Iterator[Callable[[], None]]:
    """The cyclic garbage collector paused for the import; what it does is a young collection after
    each batch (the call yielded), when it was on.

    Reading and parsing a result makes dozens of small objects (orjson's, sagan's), none in a
    reference cycle: reference counting frees them all.  With the collector on, the batch read but
    not yet stored survived its young collections into the older generations, whose passes found
    nothing while taking ~2% of a ping import's instructions (~10% of its time before it was paused
    while storing).  Every object made during a batch is still in the young generation when the
    batch is done, so a cycle made anyway is freed by that collection.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield lambda: _collect_young(was_on)
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
