"""The JSONL export path: tuples straight from SQLite, one orjson call per line, a gzip thread per file.

A line is the stored record exactly as :func:`coordinator.store.record_from_row` rebuilds it (same
keys, same order, same values).  The envelope columns come as plain tuples (no ``sqlite3.Row``
lookups) and go through one ``orjson.dumps``; the stored ``test_keys``/``annotations`` JSON is
fetched as bytes and spliced in as it is, never parsed - except when ``test_keys`` holds a private
key (:data:`formats.PRIVATE_KEYS`, at any depth), which is removed.

Measured alternative (kept out): building the whole line in SQL (``json_quote``/``json_object``
and ``||``) costs more CPU per row than fetching the raw columns and calling orjson, and SQLite
prints floats with 15 significant digits, which does not always round-trip ``runtime_s``.

Embargoed rows are left out by the query itself (:func:`where`).  Rows are fetched ``CHUNK_ROWS``
at a time; each test's file is gzipped by its own thread (:class:`formats.GzipWriter`: zlib releases the
GIL, so the files compress in parallel with the fetching) through a bounded queue: memory is bounded
whatever the range.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from coordinator.archive import formats
from coordinator.store import filter_conditions

CHUNK_ROWS = 5000         # rows per fetchmany

# An Atlas record's msm_id, read only for source = 'atlas' rows (the manifest lists them).
MSM_SQL = ("CASE WHEN source = 'atlas' AND json_type(test_keys, '$.msm_id') = 'integer' "
           "THEN json_extract(test_keys, '$.msm_id') END")
SELECT = ("measurement_id, schema_version, test_name, test_version, target, probe_id, source, start_time, "
          "runtime_s, success, failure, campaign_id, task_id, probe_cc, probe_asn, probe_access, "
          f"CAST(test_keys AS BLOB), CAST(annotations AS BLOB), start_ts, {MSM_SQL}")
TEST, PROBE, KEYS, START_TS, MSM = 2, 5, 16, 18, 19     # positions in a fetched row

_PRIVATE_B = re.compile(formats._PRIVATE_RE.pattern.encode())


def embargo_condition(embargo: Mapping[str, float], now: float) -> tuple[str, list[Any]]:
    """SQL true for a row still under its campaign's embargo (``start_ts + embargo_s > now``)."""
    whens = " ".join("WHEN ? THEN ?" for _ in embargo)
    params: list[Any] = [x for item in sorted(embargo.items()) for x in item]
    return f"coalesce(start_ts + (CASE campaign_id {whens} END) > ?, 0)", [*params, now]


def where(filters: Mapping[str, Any], embargo: Mapping[str, float], now: float,
          withheld: bool = False) -> tuple[str, list[Any]]:
    """WHERE clause for ``filters`` (keys of :data:`coordinator.store.FILTERS`) and the embargo:
    the published rows, or with ``withheld`` the embargoed ones."""
    conds, params = filter_conditions(filters)
    if embargo:
        cond, eparams = embargo_condition(embargo, now)
        conds.append(cond if withheld else f"NOT {cond}")
        params += eparams
    elif withheld:
        conds.append("0")
    return (" WHERE " + " AND ".join(conds)) if conds else "", params


def scrub_keys(text: bytes) -> bytes:
    """``test_keys`` JSON without private keys.  Each regex match is a key (inside a JSON string a
    quote is escaped), so when every match is a top-level private key they are dropped from the top
    object alone; otherwise every object at every depth is walked (:func:`formats._scrub`)."""
    keys = orjson.loads(text)
    top = [k for k in keys if k in formats.PRIVATE_KEYS]
    if len(top) == len(_PRIVATE_B.findall(text)):
        for k in top:
            del keys[k]
        return orjson.dumps(keys)
    return orjson.dumps(formats._scrub(keys))


def fetch(conn: sqlite3.Connection, filters: Mapping[str, Any], embargo: Mapping[str, float],
          now: float, part: tuple[str, list[Any]] | None = None) -> Iterator[list[tuple[Any, ...]]]:
    """Published rows (columns :data:`SELECT`) in ``start_ts`` order, ``CHUNK_ROWS`` at a time;
    ``part`` (SQL condition, parameters) narrows them to one sub-range (:mod:`parallel`)."""
    clause, params = where(filters, embargo, now)
    if part is not None:
        clause = f"{clause} AND {part[0]}" if clause else f" WHERE {part[0]}"
        params = [*params, *part[1]]
    cur = conn.cursor()
    cur.row_factory = None
    cur.execute(f"SELECT {SELECT} FROM measurements{clause} ORDER BY start_ts, seq", params)
    try:
        while rows := cur.fetchmany(CHUNK_ROWS):
            yield rows
    finally:
        cur.close()


def lines(rows: list[tuple[Any, ...]]) -> tuple[list[bytes], int]:
    """The rows' JSONL lines (newline included, private keys removed), and how many were scrubbed."""
    dumps, search = orjson.dumps, _PRIVATE_B.search
    out = []
    scrubbed = 0
    for r in rows:
        env = {"measurement_id": r[0], "schema_version": r[1], "test_name": r[2], "test_version": r[3],
               "target": r[4], "probe_id": r[5], "source": r[6], "start_time": r[7], "runtime_s": r[8],
               "success": bool(r[9]), "failure": r[10]}
        if r[11] is not None:
            env["campaign_id"] = r[11]
        if r[12] is not None:
            env["task_id"] = r[12]
        if r[13] is not None:
            env["probe_cc"] = r[13]
        if r[14] is not None:
            env["probe_asn"] = r[14]
        if r[15] is not None:
            env["probe_access"] = r[15]
        keys = r[16]
        if search(keys) is not None:
            keys = scrub_keys(keys)
            scrubbed += 1
        ann = r[17]
        out.append(dumps(env)[:-1] + b',"test_keys":' + keys
                   + (b"}\n" if ann is None else b',"annotations":' + ann + b"}\n"))
    return out, scrubbed


@dataclass
class Export:
    """What one pass saw: the manifest's counts and the files written."""

    by_test: Counter[str] = field(default_factory=Counter)
    probes: set[str] = field(default_factory=set)
    atlas_ids: set[int] = field(default_factory=set)
    scrubbed: int = 0
    first: float | None = None
    last: float | None = None
    files: dict[str, formats.GzipWriter] = field(default_factory=dict)


def export(conn: sqlite3.Connection, root: Path | None, filters: Mapping[str, Any],
           embargo: Mapping[str, float], now: float, level: int,
           part: tuple[str, list[Any]] | None = None) -> Export:
    """One pass over the published rows (of one sub-range if ``part``, see :func:`fetch`):
    ``measurements/<test>.jsonl.gz`` under ``root`` (none when ``root`` is None) and the counts.
    Every file is closed when this returns or raises."""
    out = Export()
    probes: set[str | None] = set()
    atlas_ids: set[int | None] = set()
    try:
        for rows in fetch(conn, filters, embargo, now, part):
            chunk, scrubbed = lines(rows)
            out.scrubbed += scrubbed
            blocks: dict[str, list[bytes]] = {}
            for line, test in zip(chunk, map(itemgetter(TEST), rows), strict=True):
                if test in blocks:
                    blocks[test].append(line)
                else:
                    blocks[test] = [line]
            for test, block in blocks.items():
                out.by_test[test] += len(block)
                if root is not None:
                    if test not in out.files:
                        path = root / formats.sink_path("jsonl", test)
                        path.parent.mkdir(parents=True, exist_ok=True)
                        out.files[test] = formats.GzipWriter(path, level)
                    out.files[test].write(b"".join(block))
            probes.update(map(itemgetter(PROBE), rows))
            atlas_ids.update(map(itemgetter(MSM), rows))
            if out.first is None:
                out.first = rows[0][START_TS]
            out.last = rows[-1][START_TS]
    finally:
        errors = []
        for writer in out.files.values():
            try:
                writer.close()
            except BaseException as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
    out.probes = {p for p in probes if p is not None}
    out.atlas_ids = {m for m in atlas_ids if m is not None}
    return out


def withheld(conn: sqlite3.Connection, filters: Mapping[str, Any], embargo: Mapping[str, float],
             now: float) -> tuple[Counter[str], float | None]:
    """Embargoed rows per campaign, and when the last of them becomes publishable."""
    if not embargo:
        return Counter(), None
    clause, params = where(filters, embargo, now, withheld=True)
    whens = " ".join("WHEN ? THEN ?" for _ in embargo)
    eparams = [x for item in sorted(embargo.items()) for x in item]
    counts: Counter[str] = Counter()
    until: float | None = None
    for cid, n, last in conn.execute(
            f"SELECT campaign_id, count(*), max(start_ts + (CASE campaign_id {whens} END)) FROM measurements"
            f"{clause} GROUP BY campaign_id", [*eparams, *params]):
        counts[cid] = n
        until = last if until is None else max(until, last)
    return counts, until
