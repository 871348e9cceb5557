"""The measurement store: one writer thread, readers on their own connections.

SQL about measurements lives here.  Everything that writes measurements - probe ingest, RIPE
Atlas imports, Tocsin-record imports - goes through :func:`insert_measurements`, so idempotency
(same id and content: duplicate; same id, other content: conflict) is decided in one place.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

from coordinator import db as dbmod
from coordinator.sqlbulk import insert_rows, placeholders
from probe.record import RecordError, canonical_json, content_hash, time_to_epoch, validate_epoch

T = TypeVar("T")

# Timestamps further than this from the coordinator's clock are flagged, never rewritten.
FUTURE_TOLERANCE_S = 300.0
PAST_TOLERANCE_S = 400 * 86400.0

MEASUREMENT_COLUMNS = (
    "measurement_id", "content_hash", "schema_version", "test_name", "test_version", "target",
    "probe_id", "campaign_id", "task_id", "source", "probe_cc", "probe_asn", "probe_access",
    "start_time", "start_ts", "runtime_s", "success", "failure", "test_keys", "annotations",
    "received_ts", "flags",
)
_INSERT_HEAD = f"INSERT OR IGNORE INTO measurements ({', '.join(MEASUREMENT_COLUMNS)}) VALUES "
_ONE_ROW = placeholders(len(MEASUREMENT_COLUMNS))
_INSERT_SQL = (   # one row at a time (executemany): the benchmarks' ceiling
    f"INSERT INTO measurements ({', '.join(MEASUREMENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in MEASUREMENT_COLUMNS)}) ON CONFLICT(measurement_id) DO NOTHING"
)


@dataclass
class Outcome:
    """What happened to each record of a batch, by index in the batch."""

    inserted: list[str] = field(default_factory=list)      # measurement ids newly stored
    duplicates: list[str] = field(default_factory=list)    # same id, same content: acknowledged
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index, reason)
    flagged: list[tuple[str, str]] = field(default_factory=list)   # (measurement id, flags)

    @property
    def accepted(self) -> list[str]:
        return self.inserted + self.duplicates


def _plain_floats(values: Iterable[Any]) -> bool:
    """True when no float among ``values`` (nested) is one Python's repr writes in exponent notation.

    Python's repr uses an exponent below 1e-4 and from 1e16 up; orjson below 1e-5 and from 1e16
    up, so 1e-05 is ``1e-05`` to one and ``0.00001`` to the other.  Between 1e-4 and 1e16 both
    write the same shortest digits.  NaN and Infinity answer False (the stdlib path handles them).
    """
    for v in values:
        c = v.__class__
        if c is str or c is int or c is bool or v is None:
            continue
        if isinstance(v, float):
            if not (1e-4 <= abs(v) < 1e16 or v == 0.0):
                return False
        elif isinstance(v, dict):
            if not _plain_floats(v.values()):
                return False
        elif isinstance(v, (list, tuple)) and not _plain_floats(v):
            return False
    return True


def fast_content_hash(record: dict[str, Any]) -> str:
    """:func:`probe.record.content_hash`, computed with orjson when that gives the same bytes.

    orjson with sorted keys writes the same canonical text as the standard library (compact, UTF-8,
    keys in code-point order, the same shortest float digits) except for floats Python writes in
    exponent notation (see :func:`_plain_floats`); those records, and anything orjson refuses (ints
    beyond 64 bits, keys that are not strings), take the standard-library path.  The equality is a
    tested property (tests/test_store_core.py) for every JSON value.
    """
    if not _plain_floats(record.values()):
        return content_hash(record)
    try:
        raw = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return content_hash(record)
    return hashlib.sha256(raw).hexdigest()


# In orjson's output, the only text where its floats and the standard library's may differ: a number
# with an exponent, or a float in [1e-5, 1e-4) written 0.0000ddd (see _plain_floats).  In compact
# JSON a number follows ':', ',' or '['; a string that merely looks like one (hex ids such as
# "727e" do not) only sends its record down the exact, slower path.
_FLOAT_TEXT_MAY_DIFFER = re.compile(rb"[:,\[]-?(?:\d+(?:\.\d+)?[eE]|0\.0000)")


def parsed_content_hash(record: dict[str, Any]) -> str:
    """:func:`fast_content_hash` of a record that ``orjson.loads`` made, without the Python walk.

    orjson never parses NaN or Infinity (it refuses them and out-of-range numbers), so the only
    floats that could be written differently are the ones the pattern above finds in orjson's own
    text: one regex over the bytes instead of a walk over the nested values."""
    try:
        raw = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return content_hash(record)
    if _FLOAT_TEXT_MAY_DIFFER.search(raw):
        return content_hash(record)
    return hashlib.sha256(raw).hexdigest()


def timestamp_flag(start_ts: float, received_ts: float) -> str | None:
    """``future_timestamp`` / ``past_timestamp`` when the measurement time is beyond the tolerances."""
    if start_ts > received_ts + FUTURE_TOLERANCE_S:
        return "future_timestamp"
    if start_ts < received_ts - PAST_TOLERANCE_S:
        return "past_timestamp"
    return None


def _row_head(record: dict[str, Any], start_ts: float, hasher: Callable[[dict[str, Any]], str] = fast_content_hash
              ) -> tuple[Any, ...]:
    """The measurements row of a validated record without its last two columns (received_ts, flags)."""
    annotations = record.get("annotations")
    return (
        record["measurement_id"], hasher(record), record["schema_version"], record["test_name"],
        record["test_version"], record["target"], record.get("probe_id"), record.get("campaign_id"),
        record.get("task_id"), record["source"], record.get("probe_cc"), record.get("probe_asn"),
        record.get("probe_access"), record["start_time"], start_ts, record["runtime_s"],
        1 if record["success"] else 0, record["failure"],
        orjson.dumps(record["test_keys"]).decode(),
        None if annotations is None else orjson.dumps(annotations).decode(),
    )


def row_from_record(record: dict[str, Any], received_ts: float, start_ts: float | None = None) -> tuple[Any, ...]:
    """The measurements row of a validated record.  ``test_keys``/``annotations`` are stored as
    orjson text (storage only: the content hash is over :func:`probe.record.canonical_json`)."""
    if start_ts is None:
        start_ts = time_to_epoch(record["start_time"])
    return (*_row_head(record, start_ts), received_ts, timestamp_flag(start_ts, received_ts))


def record_from_row(row: sqlite3.Row | dict[str, Any]) -> dict[str, Any]:
    """Rebuild the exact record that was stored (its content hash matches ``content_hash``)."""
    rec: dict[str, Any] = {
        "measurement_id": row["measurement_id"],
        "schema_version": row["schema_version"],
        "test_name": row["test_name"],
        "test_version": row["test_version"],
        "target": row["target"],
        "probe_id": row["probe_id"],
        "source": row["source"],
        "start_time": row["start_time"],
        "runtime_s": row["runtime_s"],
        "success": bool(row["success"]),
        "failure": row["failure"],
        "test_keys": orjson.loads(row["test_keys"]),
    }
    for key in ("campaign_id", "task_id", "probe_cc", "probe_asn", "probe_access"):
        if row[key] is not None:
            rec[key] = row[key]
    if row["annotations"] is not None:
        rec["annotations"] = orjson.loads(row["annotations"])
    return rec


@dataclass
class Prepared:
    """A batch validated and turned into rows, ready for :func:`write_prepared`.

    Made by :func:`prepare_measurements`, which needs no connection: the ingest runs it off the
    writer thread, so the writer only runs SQL.
    """

    heads: list[tuple[Any, ...]] = field(default_factory=list)   # rows without received_ts, flags
    indices: list[int] = field(default_factory=list)              # each head's index in the batch
    rejected: list[tuple[int, str]] = field(default_factory=list)
    duplicates: list[tuple[int, str]] = field(default_factory=list)   # (index, id) repeated in the batch, same content


def prepare_measurements(records: Iterable[Any], *,
                         check: Callable[[dict[str, Any]], str | None] | None = None,
                         parsed: bool = False) -> Prepared:
    """Validate ``records`` and build their rows; every refusal with its reason and batch index.

    ``parsed``: every record came from ``orjson.loads`` (the ingest), so its content hash can skip
    the float walk (:func:`parsed_content_hash`); the hash is the same either way."""
    prep = Prepared()
    hasher = parsed_content_hash if parsed else fast_content_hash
    hashes: dict[str, str] = {}
    for index, record in enumerate(records):
        try:
            start_ts = validate_epoch(record)
            reason = check(record) if check else None
            if reason:
                raise RecordError(reason)
            head = _row_head(record, start_ts, hasher)
        except RecordError as exc:
            prep.rejected.append((index, str(exc)))
            continue
        mid = head[0]
        if mid in hashes:
            if hashes[mid] == head[1]:
                prep.duplicates.append((index, mid))
            else:
                prep.rejected.append((index, f"conflict: measurement_id {mid} appears twice in the batch with different content"))
            continue
        hashes[mid] = head[1]
        prep.heads.append(head)
        prep.indices.append(index)
    return prep


def write_prepared(conn: sqlite3.Connection, prep: Prepared, received_ts: float) -> Outcome:
    """Store a prepared batch inside the caller's open transaction (``BEGIN IMMEDIATE`` ...
    ``COMMIT`` around it); nothing is committed here.  Idempotency as :func:`insert_measurements`."""
    out = Outcome(rejected=list(prep.rejected))
    if not prep.heads:
        return out
    existing: dict[str, str] = {}
    ids = [h[0] for h in prep.heads]
    for chunk_start in range(0, len(ids), 500):
        chunk = ids[chunk_start:chunk_start + 500]
        q = f"SELECT measurement_id, content_hash FROM measurements WHERE measurement_id IN ({','.join('?' * len(chunk))})"
        existing.update((r[0], r[1]) for r in conn.execute(q, chunk))
    fresh = []
    conflicts: dict[str, str] = {}
    for index, head in zip(prep.indices, prep.heads, strict=True):
        mid = head[0]
        known = existing.get(mid)
        if known is not None and known != head[1]:
            conflicts[mid] = f"conflict: measurement_id {mid} is already stored with different content"
            out.rejected.append((index, conflicts[mid]))
            continue
        flags = timestamp_flag(head[14], received_ts)
        if flags:
            out.flagged.append((mid, flags))
        if known is not None:
            out.duplicates.append(mid)
        else:
            fresh.append((*head, received_ts, flags))
            out.inserted.append(mid)
    # many rows a statement (coordinator.sqlbulk); the ids were looked up in this transaction and
    # the batch's second copies removed, so a row not inserted means a bug: raise, storing nothing
    if insert_rows(conn, _INSERT_HEAD, _ONE_ROW, fresh) != len(fresh):
        raise sqlite3.IntegrityError("a measurement row was not stored although its id was new")
    # a second copy in the batch shares its first copy's fate: a conflict with the stored row is
    # refused for both (acknowledging the copy would let the probe drop it from its outbox)
    for index, mid in prep.duplicates:
        if mid in conflicts:
            out.rejected.append((index, conflicts[mid]))
        else:
            out.duplicates.append(mid)
    return out


def insert_measurements(
    conn: sqlite3.Connection,
    records: Iterable[Any],
    *,
    received_ts: float | None = None,
    check: Callable[[dict[str, Any]], str | None] | None = None,
) -> Outcome:
    """Validate and store records in one transaction; committed when this returns.

    ``check`` may refuse a record for a caller-specific reason (e.g. its probe_id is not the
    uploader's) by returning the reason.  A bad record never blocks the others.
    """
    now = time.time() if received_ts is None else received_ts
    prep = prepare_measurements(records, check=check)
    if not prep.heads:
        return Outcome(rejected=prep.rejected)     # no first copy, so no second copy either
    conn.execute("BEGIN IMMEDIATE")
    try:
        out = write_prepared(conn, prep, now)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return out


# Query filters accepted by iter_measurements, each mapped to its SQL condition.
FILTERS: dict[str, str] = {
    "country": "probe_cc = ?",
    "asn": "probe_asn = ?",
    "probe": "probe_id = ?",
    "test": "test_name = ?",
    "target": "target = ?",
    "source": "source = ?",
    "campaign": "campaign_id = ?",
    "access": "probe_access = ?",
    "since": "start_ts >= ?",
    "until": "start_ts < ?",
    "after_seq": "seq > ?",
}


def filter_conditions(filters: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
    """SQL conditions and their parameters for ``filters`` (keys of :data:`FILTERS`; None skipped)."""
    conds, params = [], []
    for key, value in filters.items():
        if value is None:
            continue
        if key not in FILTERS:
            raise ValueError(f"unknown filter {key}")
        conds.append(FILTERS[key])
        params.append(value)
    return conds, params


def iter_measurements(
    conn: sqlite3.Connection, *, order: str = "start_ts", batch: int = 5000, **filters: Any
) -> Iterator[sqlite3.Row]:
    """Stream measurement rows matching ``filters`` (keys of :data:`FILTERS`), ``batch`` at a time."""
    if order not in ("start_ts", "seq"):
        raise ValueError("order must be start_ts or seq")
    conds, params = filter_conditions(filters)
    where = (" WHERE " + " AND ".join(conds)) if conds else ""
    cur = conn.execute(f"SELECT * FROM measurements{where} ORDER BY {order}, seq", params)
    while True:
        rows = cur.fetchmany(batch)
        if not rows:
            return
        yield from rows


class Store:
    """Owns the SQLite file: one writer thread with one connection; readers get their own."""

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir)
        self.path = dbmod.db_path(self.data_dir)
        self._writer_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tocsin-writer")
        self._reader_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tocsin-reader")
        self._local = threading.local()
        self._writer: sqlite3.Connection = self._writer_pool.submit(dbmod.open_writer, self.data_dir).result()

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on the writer thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer_pool, lambda: fn(self._writer, *args))

    def write_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return self._writer_pool.submit(lambda: fn(self._writer, *args)).result()

    def reader(self) -> sqlite3.Connection:
        """A read-only connection of the calling thread's own."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = dbmod.connect(self.path, readonly=True)
            self._local.conn = conn
        return conn

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on a reader thread with a read-only connection."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader_pool, lambda: fn(self.reader(), *args))

    def close(self) -> None:
        self._writer_pool.submit(self._writer.close).result()
        self._writer_pool.shutdown(wait=True)
        self._reader_pool.shutdown(wait=True)


__all__ = ["FILTERS", "Outcome", "Prepared", "Store", "canonical_json", "insert_measurements", "iter_measurements",
           "prepare_measurements", "record_from_row", "row_from_record", "write_prepared"]
