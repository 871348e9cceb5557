"""Export formats, each a streaming writer fed one stored measurement row at a time.

* ``jsonl`` - ``measurements/<test>.jsonl.gz``: one Tocsin record per line, exactly as stored
  (``coordinator.store.record_from_row``), unless a privacy key had to be removed (see
  :data:`PRIVATE_KEYS`); written by :mod:`coordinator.archive.jsonl`, not by a sink here
  (:func:`record_line` is the row-at-a-time form the Atlas sink and its tests use).
* ``parquet`` - ``measurements/<test>.parquet``: one column per record field (:func:`parquet_schema`,
  built from ``probe.record.FIELDS``); ``test_keys`` and ``annotations`` are JSON text columns;
  an extra ``start_ts`` column holds ``start_time`` as a UTC timestamp (microseconds).
* ``csv`` - ``measurements/<test>.csv``: the same columns as Parquet (without ``start_ts``),
  booleans as ``true``/``false``, null as an empty cell, JSON columns as JSON text.
* ``atlas`` - ``atlas/<test>.jsonl.gz`` for ping and traceroute: RIPE Atlas result format
  (:mod:`coordinator.archive.atlas_format`).

Memory is bounded by the Parquet row group (``parquet_batch_rows``) and the gzip queues
(:class:`GzipWriter`), never by the range.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import queue
import re
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

try:   # ISA-L (PyPI ``isal``): standard gzip output, several times faster than zlib at levels 1-3
    from isal import igzip as _igzip
except ImportError:   # without it every level is zlib's (the standard library)
    _igzip = None  # type: ignore[assignment]

from coordinator.archive.atlas_format import ATLAS_TESTS, to_atlas
from probe.record import FIELD_NAMES, FIELDS

FORMATS = ("jsonl", "parquet", "csv", "atlas")

# Test-key names that could hold the probe's own (volunteer's) address; removed on export.
PRIVATE_KEYS = frozenset({"src_addr", "srcaddr", "source_address", "local_address", "local_addr",
                          "client_address", "client_ip", "probe_address", "public_ip", "my_ip", "from_addr"})


def trie_pattern(words: Iterable[str]) -> str:
    """A regular expression matching exactly ``words``, factored by common prefixes (``s(?:ource_address|
    rc_?addr)``): a failed attempt costs one character test instead of one per word."""
    rest: dict[str, set[str]] = {}
    for word in set(words) - {""}:
        rest.setdefault(word[0], set()).add(word[1:])
    alts = [re.escape(c) + trie_pattern(r) for c, r in sorted(rest.items())]
    if "" in set(words):
        return f"(?:{'|'.join(alts)})?" if alts else ""
    return alts[0] if len(alts) == 1 else f"(?:{'|'.join(alts)})"


# A private key as a JSON object key (inside a JSON string a quote is escaped, so each match is a key).
_PRIVATE_RE = re.compile('"' + trie_pattern(PRIVATE_KEYS) + r'"\s*:')
_OPTIONAL = ("campaign_id", "task_id", "probe_cc", "probe_asn", "probe_access")

Row = Any          # sqlite3.Row or a mapping with the measurements columns


def _arrow_type(types: tuple[type, ...]) -> Any:
    import pyarrow as pa

    kinds = {t for t in types if t is not type(None)}
    if kinds == {bool}:
        return pa.bool_()
    if kinds == {int}:
        return pa.int64()
    if float in kinds:
        return pa.float64()
    return pa.string()          # str, and dict as JSON text


PARQUET_COLUMNS = (*FIELD_NAMES, "start_ts")


@functools.cache
def parquet_schema() -> Any:
    """The Parquet schema, built from ``probe.record.FIELDS`` (pyarrow is imported only when needed)."""
    import pyarrow as pa

    return pa.schema(
        [pa.field(f.name, _arrow_type(f.types), nullable=not f.required or type(None) in f.types) for f in FIELDS]
        + [pa.field("start_ts", pa.timestamp("us", tz="UTC"), nullable=False)]
    )


CSV_COLUMNS = FIELD_NAMES


def _scrub(value: Any) -> Any:
    """``value`` without :data:`PRIVATE_KEYS` in any object at any depth (only containers recurse)."""
    if isinstance(value, dict):
        return {k: _scrub(v) if isinstance(v, (dict, list)) else v
                for k, v in value.items() if k not in PRIVATE_KEYS}
    if isinstance(value, list):
        return [_scrub(v) if isinstance(v, (dict, list)) else v for v in value]
    return value


def test_keys_text(row: Row) -> tuple[str, bool]:
    """The row's test_keys JSON text with private keys removed; and whether any was removed."""
    text: str = row["test_keys"]
    if _PRIVATE_RE.search(text) is None:
        return text, False
    return orjson.dumps(_scrub(orjson.loads(text))).decode(), True


_REQUIRED = ("measurement_id", "schema_version", "test_name", "test_version", "target", "probe_id", "source",
             "start_time", "runtime_s")


def record_line(row: Row, keys_text: str) -> bytes:
    """One JSONL line of the stored record, built without re-parsing test_keys."""
    env: dict[str, Any] = {key: row[key] for key in _REQUIRED}
    env["success"] = bool(row["success"])
    env["failure"] = row["failure"]
    for key in _OPTIONAL:
        value = row[key]
        if value is not None:
            env[key] = value
    annotations = row["annotations"]
    tail = b"}\n" if annotations is None else b',"annotations":' + annotations.encode() + b"}\n"
    return orjson.dumps(env)[:-1] + b',"test_keys":' + keys_text.encode() + tail


ISAL_MAX_LEVEL = 3      # ISA-L's levels are 0-3; ``gzip_level`` 4-9 is zlib's


def gzip_engine(level: int) -> str:
    """The compressor of ``.gz`` files at ``level`` (1-9): ``isal`` (ISA-L) for 1-3 when the ``isal``
    package is installed, else ``zlib``.  Both write a standard gzip file (RFC 1952)."""
    return "isal" if _igzip is not None and level <= ISAL_MAX_LEVEL else "zlib"


def open_gzip(path: Path, level: int) -> gzip.GzipFile:
    """``path`` opened for writing as gzip at ``level`` by :func:`gzip_engine`'s compressor."""
    if gzip_engine(level) == "isal":
        return _igzip.IGzipFile(path, "wb", compresslevel=level, mtime=0)
    return gzip.GzipFile(path, "wb", compresslevel=level, mtime=0)


class GzipWriter:
    """One ``.gz`` file written by its own thread (ISA-L and zlib release the GIL, so files compress
    in parallel with the reading and with each other).  Blocks wait in a queue of at most ``depth``:
    memory is bounded whatever the range."""

    def __init__(self, path: Path, level: int, depth: int = 4):
        self.path = path
        self._fh = open_gzip(path, level)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"archive-gzip-{path.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while (block := self._queue.get()) is not None:
                self._fh.write(block)
            self._fh.close()
        except BaseException as exc:  # handed to the writer's caller on its next call
            self._error = exc
            self._fh.close()
            while self._queue.get() is not None:  # keep draining so the caller never blocks
                pass

    def write(self, block: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(block)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


class _Sink:
    path: Path
    rows: int = 0

    def write(self, row: Row, keys_text: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class ParquetSink(_Sink):
    def __init__(self, path: Path, batch_rows: int):
        self.path, self.rows, self._batch = path, 0, batch_rows
        import pyarrow.parquet as pq

        self._cols: dict[str, list[Any]] = {name: [] for name in PARQUET_COLUMNS}
        self._writer = pq.ParquetWriter(path, parquet_schema(), compression="zstd")

    def write(self, row: Row, keys_text: str) -> None:
        cols = self._cols
        for name in FIELD_NAMES:
            if name == "test_keys":
                cols[name].append(keys_text)
            elif name == "success":
                cols[name].append(bool(row[name]))
            else:
                cols[name].append(row[name])
        cols["start_ts"].append(round(row["start_ts"] * 1_000_000))
        self.rows += 1
        if len(cols["start_ts"]) >= self._batch:
            self._flush()

    def _flush(self) -> None:
        if self._cols["start_ts"]:
            import pyarrow as pa

            self._writer.write_batch(pa.record_batch(self._cols, schema=parquet_schema()))
            self._cols = {name: [] for name in PARQUET_COLUMNS}

    def close(self) -> None:
        self._flush()
        self._writer.close()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return value


class CsvSink(_Sink):
    def __init__(self, path: Path):
        self.path, self.rows = path, 0
        self._fh = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._csv = csv.writer(self._fh)
        self._csv.writerow(CSV_COLUMNS)

    def write(self, row: Row, keys_text: str) -> None:
        cells = []
        for name in CSV_COLUMNS:
            if name == "test_keys":
                cells.append(keys_text)
            elif name == "success":
                cells.append("true" if row[name] else "false")
            else:
                cells.append(_cell(row[name]))
        self._csv.writerow(cells)
        self.rows += 1

    def close(self) -> None:
        self._fh.close()


class AtlasSink(_Sink):
    BLOCK_ROWS = 2000

    def __init__(self, path: Path, level: int):
        self.path, self.rows = path, 0
        self._gz = GzipWriter(path, level)
        self._buf: list[bytes] = []

    def write(self, row: Row, keys_text: str) -> None:
        record = orjson.loads(record_line(row, keys_text))
        atlas = to_atlas(record)
        if atlas is not None:
            self._buf.append(orjson.dumps(atlas) + b"\n")
            self.rows += 1
            if len(self._buf) >= self.BLOCK_ROWS:
                self._gz.write(b"".join(self._buf))
                self._buf = []

    def close(self) -> None:
        self._gz.write(b"".join(self._buf))
        self._gz.close()


def sink_path(fmt: str, test: str) -> str:
    """Path of a format's file for one test, relative to the bundle."""
    return {"jsonl": f"measurements/{test}.jsonl.gz", "parquet": f"measurements/{test}.parquet",
            "csv": f"measurements/{test}.csv", "atlas": f"atlas/{test}.jsonl.gz"}[fmt]


def open_sink(fmt: str, root: Path, test: str, *, gzip_level: int, parquet_batch_rows: int) -> _Sink | None:
    """A row-at-a-time sink for ``parquet``, ``csv`` or ``atlas`` (``jsonl`` is written by
    :mod:`coordinator.archive.jsonl`); None when the format has no file for this test."""
    if fmt == "atlas" and test not in ATLAS_TESTS:
        return None
    path = root / sink_path(fmt, test)
    path.parent.mkdir(parents=True, exist_ok=True)
    makers: dict[str, Callable[[], _Sink]] = {
        "parquet": lambda: ParquetSink(path, parquet_batch_rows),
        "csv": lambda: CsvSink(path),
        "atlas": lambda: AtlasSink(path, gzip_level),
    }
    return makers[fmt]()


def csv_header() -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerow(CSV_COLUMNS)
    return buf.getvalue().encode()


def csv_line(row: Row, keys_text: str) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerow([keys_text if n == "test_keys" else ("true" if row[n] else "false")
                              if n == "success" else _cell(row[n]) for n in CSV_COLUMNS])
    return buf.getvalue().encode()


def utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
