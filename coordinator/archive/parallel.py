"""The JSONL export split across processes (``[archive] export_workers``).

One process fetches and formats a row holding the GIL for most of ~9 µs (about 14 before the shapes of
:mod:`jsonl`), so a second process still helps when a second core is free.
With ``export_workers`` = N > 1 and at least :data:`PARALLEL_MIN_ROWS` rows in the range, the range
is cut into N sub-ranges of about equal row counts, by ``start_ts`` (a cut falls between two
``start_ts`` values, never inside one, so rows with equal ``start_ts`` stay together and in ``seq``
order).  The building process exports the first sub-range itself, on its own connection and
snapshot; N-1 worker processes (``python -m coordinator.archive.parallel``, fresh interpreters: not
:mod:`multiprocessing`, whose spawn re-runs the caller's main script) export the others, each into
its own hidden folder, and hand back their counts as JSON.  Then each
test's gzip members are appended, in range order, to the first sub-range's file: a gzip file of
several members decompresses to the concatenation of their data (RFC 1952; ``gzip -dc`` and
Python's :mod:`gzip` read it whole), so the decompressed bytes are exactly the single-process
export's.  The compressed bytes differ (one member per sub-range), so the sha256 in the manifest is
that of the final, concatenated file.

Snapshot: a worker cannot share the builder's read transaction, so it opens its own (later) one and
is held to the builder's snapshot by ``seq <= max_seq``, ``max_seq`` read in the builder's snapshot.
This is exact because measurements are only ever inserted (never updated or deleted) and ``seq`` is
``AUTOINCREMENT`` given under SQLite's single writer lock: every row committed after the builder's
snapshot has a larger ``seq``.  Embargo is evaluated against the same ``now`` in every process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from coordinator import db as dbmod
from coordinator.archive import formats, jsonl

PARALLEL_MIN_ROWS = 200_000      # smaller ranges are exported in one process (no spawn cost)
PARTS_DIR = ".parts"             # workers' folders under the bundle's temporary folder


@dataclass(frozen=True)
class Part:
    """One sub-range: ``lo <= start_ts < hi`` (None: open) and ``seq <= max_seq``."""

    index: int
    lo: float | None
    hi: float | None
    max_seq: int

    def condition(self) -> tuple[str, list[Any]]:
        conds = ["seq <= ?"]
        params: list[Any] = [self.max_seq]
        if self.lo is not None:
            conds.append("start_ts >= ?")
            params.append(self.lo)
        if self.hi is not None:
            conds.append("start_ts < ?")
            params.append(self.hi)
        return " AND ".join(conds), params


def plan(conn: sqlite3.Connection, filters: Mapping[str, Any], workers: int,
         min_rows: int = PARALLEL_MIN_ROWS) -> list[Part]:
    """The sub-ranges for ``workers`` processes, read in ``conn``'s snapshot; one part (the whole
    range) when ``workers`` is 1 or the range holds fewer than ``min_rows`` rows.  Rows are counted
    before the embargo, which only makes a part smaller."""
    max_seq = conn.execute("SELECT coalesce(max(seq), 0) FROM measurements").fetchone()[0]
    whole = [Part(0, None, None, max_seq)]
    if workers < 2:
        return whole
    clause, params = jsonl.where(filters, {}, 0.0)
    clause = f"{clause} AND seq <= ?" if clause else " WHERE seq <= ?"
    params = [*params, max_seq]
    n = conn.execute(f"SELECT count(*) FROM measurements{clause}", params).fetchone()[0]
    if n < min_rows:
        return whole
    cuts: list[float] = []
    for k in range(1, workers):
        row = conn.execute(f"SELECT start_ts FROM measurements{clause} ORDER BY start_ts LIMIT 1 OFFSET ?",
                           [*params, n * k // workers]).fetchone()
        if row is not None and (not cuts or row[0] > cuts[-1]):
            cuts.append(row[0])
    edges: list[float | None] = [None, *cuts, None]
    return [Part(i, edges[i], edges[i + 1], max_seq) for i in range(len(edges) - 1)]


def run_part(db_path: str, root: str | None, filters: dict[str, Any], embargo: dict[str, float],
             now: float, level: int, part: Part) -> jsonl.Export:
    """One sub-range into ``root`` on its own read-only connection (files closed)."""
    conn = dbmod.connect(db_path, readonly=True)
    try:
        conn.execute("BEGIN")
        out = jsonl.export(conn, None if root is None else Path(root), filters, embargo, now, level,
                           part.condition())
        conn.execute("COMMIT")
    finally:
        conn.close()
    return dataclasses.replace(out, files={})     # writers hold threads: only the counts go back


def _start(db_path: str, root: str | None, filters: dict[str, Any], embargo: dict[str, float],
           now: float, level: int, part: Part, errlog: IO[bytes]) -> subprocess.Popen[bytes]:
    """A worker process: ``python -P -m coordinator.archive.parallel`` with the job on its stdin (a
    fresh interpreter that imports only this package, whatever the caller's ``__main__`` is, from
    this same source tree: ``-P`` keeps the working directory off ``sys.path``; the job goes on
    stdin, so no embargo list can outgrow the command line)."""
    job = {"db": db_path, "root": root, "filters": filters, "embargo": embargo, "now": now, "level": level,
           "part": dataclasses.asdict(part)}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                      env.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, "-P", "-m", "coordinator.archive.parallel"],
                            stdout=subprocess.PIPE, stderr=errlog, stdin=subprocess.PIPE, env=env)
    assert proc.stdin is not None
    try:
        proc.stdin.write(json.dumps(job).encode())
        proc.stdin.close()
    except BrokenPipeError:   # the worker died at start-up: _result reports its exit and stderr
        pass
    proc.stdin = None         # written and closed: communicate() must not touch it again
    return proc


def _result(proc: subprocess.Popen[bytes], errlog: IO[bytes]) -> jsonl.Export:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        errlog.seek(0)
        tail = errlog.read()[-2000:].decode(errors="replace").strip()
        raise RuntimeError(f"archive export worker failed (exit {proc.returncode}): {tail}")
    d = json.loads(out)
    return jsonl.Export(by_test=Counter(d["by_test"]), probes=set(d["probes"]), atlas_ids=set(d["atlas_ids"]),
                        scrubbed=d["scrubbed"], first=d["first"], last=d["last"])


def main(argv: list[str]) -> None:
    job = json.loads(argv[0] if argv else sys.stdin.read())
    out = run_part(job["db"], job["root"], job["filters"], job["embargo"], job["now"], job["level"],
                   Part(**job["part"]))
    sys.stdout.write(json.dumps({"by_test": dict(out.by_test), "probes": sorted(out.probes),
                                 "atlas_ids": sorted(out.atlas_ids), "scrubbed": out.scrubbed,
                                 "first": out.first, "last": out.last}))


def _append(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, open(dst, "ab") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def merge(head: jsonl.Export, tails: list[jsonl.Export]) -> jsonl.Export:
    """The counts of consecutive sub-ranges, as one pass over the whole range would give them."""
    out = dataclasses.replace(head, by_test=head.by_test.copy(), probes=set(head.probes),
                              atlas_ids=set(head.atlas_ids), files={})
    for t in tails:
        out.by_test.update(t.by_test)
        out.probes |= t.probes
        out.atlas_ids |= t.atlas_ids
        out.scrubbed += t.scrubbed
        if out.first is None:
            out.first = t.first
        if t.last is not None:
            out.last = t.last
    return out


def export(conn: sqlite3.Connection, db_path: str | Path, root: Path | None, filters: Mapping[str, Any],
           embargo: Mapping[str, float], now: float, level: int, workers: int,
           min_rows: int | None = None) -> jsonl.Export:
    """:func:`jsonl.export` over ``workers`` processes (see the module's text); ``conn`` is the
    builder's connection, inside its read transaction.  ``Export.files`` is empty: the written
    files are ``measurements/<test>.jsonl.gz`` for each test of ``Export.by_test``."""
    parts = plan(conn, filters, workers, PARALLEL_MIN_ROWS if min_rows is None else min_rows)
    if len(parts) == 1:
        out = jsonl.export(conn, root, filters, embargo, now, level)
        return dataclasses.replace(out, files={})
    dirs = [None if root is None else root / PARTS_DIR / str(p.index) for p in parts[1:]]
    with contextlib.ExitStack() as stack:
        procs: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []
        try:
            for p, d in zip(parts[1:], dirs, strict=True):
                errlog = stack.enter_context(tempfile.TemporaryFile())
                procs.append((_start(str(db_path), None if d is None else str(d), dict(filters), dict(embargo), now,
                                     level, p, errlog), errlog))
            head = jsonl.export(conn, root, filters, embargo, now, level, parts[0].condition())
            tails = [_result(proc, errlog) for proc, errlog in procs]
            if root is not None:
                for test in sorted(set().union(*(t.by_test for t in tails))):
                    for d in dirs:
                        assert d is not None
                        src = d / formats.sink_path("jsonl", test)
                        if src.exists():
                            _append(src, root / formats.sink_path("jsonl", test))
                            src.unlink()
        finally:
            for proc, _ in procs:
                if proc.poll() is None:          # only when this pass failed: stop the others
                    proc.kill()
                proc.wait()
            if root is not None:
                shutil.rmtree(root / PARTS_DIR, ignore_errors=True)
    return merge(head, tails)


if __name__ == "__main__":
    main(sys.argv[1:])
