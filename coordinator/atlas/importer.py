"""Read Atlas files (a JSON array or one object per line) and store what they hold.

A file may mix results, connection events (msm 7000 / probestatus) and probe objects; the kind
of each item is recognised by its keys.  Bad lines and bad items are counted with a reason; they
never stop the import.  Running the same import twice stores nothing the second time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from coordinator.atlas import storage
from coordinator.atlas.storage import Counts

BATCH = 5000


def iter_items(path: Path, counts: Counts) -> Iterator[Any]:
    """Items of one file; undecodable lines are counted in ``counts``."""
    with path.open("rb") as f:
        head = f.read(4096).lstrip()
        f.seek(0)
        if head.startswith(b"["):
            try:
                doc = orjson.loads(f.read())
            except orjson.JSONDecodeError as exc:
                counts.bad(f"{path.name}: not valid JSON: {exc}"[:200])
                return
            yield from doc
            return
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                counts.bad(f"line {number}: not valid JSON")


def store_items(conn: sqlite3.Connection, items: list[Any], counts: Counts) -> None:
    """Store one batch of mixed items (probe objects first, so results of those probes get cc/ASN)."""
    by_kind: dict[str, list[Any]] = {"probe": [], "connection": [], "result": []}
    for item in items:
        kind = storage.kind_of(item)
        if not kind:
            counts.bad("not an Atlas result, connection event or probe object")
            continue
        by_kind[kind].append(item)
    if by_kind["probe"]:
        counts.add(storage.store_probes(conn, by_kind["probe"]))
    if by_kind["connection"] or by_kind["result"]:
        probes = storage.probe_infos(conn)
        if by_kind["connection"]:
            counts.add(storage.store_connection_events(conn, by_kind["connection"], probes=probes))
        if by_kind["result"]:
            targets = storage.target_countries(conn)
            counts.add(storage.store_results(conn, by_kind["result"], probes=probes, target_cc=targets.get))


def _holds_probes(path: Path) -> bool:
    for item in iter_items(path, Counts()):
        return storage.kind_of(item) == "probe"
    return False


def import_paths(conn: sqlite3.Connection, paths: list[Path], batch: int = BATCH) -> Counts:
    """Import ``paths``; files of probe objects go first so results get their probes' country/ASN."""
    counts = Counts()
    for path in sorted(paths, key=lambda p: not _holds_probes(p)):
        pending: list[Any] = []
        for item in iter_items(path, counts):
            pending.append(item)
            if len(pending) >= batch:
                store_items(conn, pending, counts)
                pending = []
        if pending:
            store_items(conn, pending, counts)
    return counts
