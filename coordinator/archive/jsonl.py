"""The JSONL export path: few columns from SQLite, cached envelope segments, a gzip thread per file.

A line is the stored record exactly as :func:`coordinator.store.record_from_row` rebuilds it (same
keys, same order, same values).  Per row SQLite hands over five values: ``measurement_id``,
``start_time``, ``runtime_s``, the stored ``test_keys`` JSON as bytes (spliced in as it is) and
``json_array(...)`` of the other envelope columns, ``annotations`` and the Atlas ``msm_id``: the
row's *shape*.  Shapes repeat (one per probe, test, target, campaign, outcome and annotations), so
each distinct shape is turned into its pre-rendered pieces of the line once (:class:`Formatter`); a
line is then three ``orjson.dumps`` of scalars and one ``bytes.join``.  Every Python object made per
row costs about as much as the SQL that would avoid it, so the row is kept to these five values:
the probe ids and Atlas measurement ids of the manifest come from the shapes, ``first``/``last``
from two index look-ups after the pass.

A private key in ``test_keys`` (:data:`formats.PRIVATE_KEYS`, at any depth) is removed and the line
counted in ``scrubbed``: cut out of the text when it is a top-level member (:func:`drop_top_level`),
else by parsing.  Two substring tests that every private key name passes (:data:`NEEDLES`) keep the
regex off most rows.

Measured alternatives (kept out): building the whole line in SQL (``json_quote``/``json_object``/
``printf`` and ``||``) costs more CPU per row than fetching the columns and concatenating in Python
(SQLite 3.40: 7.4-8.4 against 5.3 µs/row for the 20-column fetch alone), and SQLite prints floats
with 15 significant digits, which does not always round-trip ``runtime_s``; removing private keys
with SQLite's ``json_remove`` costs as much as orjson's parse and dump (5.0 against 6.4 µs a row).

Embargoed rows are left out by the query itself (:func:`where`).  Rows are fetched ``CHUNK_ROWS``
at a time; each test's file is gzipped by its own thread (:class:`formats.GzipWriter`: ISA-L and
zlib release the GIL, so the files compress in parallel with the fetching) through a bounded
queue, and the shape cache holds at most ``MAX_SHAPES`` entries: memory is bounded whatever the
range.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from coordinator.archive import formats
from coordinator.store import filter_conditions

CHUNK_ROWS = 5000         # rows per fetchmany
MAX_SHAPES = 20_000       # cached envelope shapes; the cache starts afresh when full

# An Atlas record's msm_id, read only for source = 'atlas' rows (the manifest lists them).
MSM_SQL = ("CASE WHEN source = 'atlas' AND json_type(test_keys, '$.msm_id') = 'integer' "
           "THEN json_extract(test_keys, '$.msm_id') END")
HEAD = ("schema_version", "test_name", "test_version", "target", "probe_id", "source")   # between id and start_time
TAIL = ("success", "failure")                                                          # after runtime_s
OPTIONAL = ("campaign_id", "task_id", "probe_cc", "probe_asn", "probe_access")          # left out when null
# annotations (a JSON text, or null) comes last in the line, msm_id is for the manifest only
SHAPE_SQL = f"json_array({', '.join((*HEAD, *TAIL, *OPTIONAL))}, annotations, {MSM_SQL})"
SELECT = f"measurement_id, start_time, runtime_s, {SHAPE_SQL}, CAST(test_keys AS BLOB)"

_PRIVATE_B = re.compile(formats._PRIVATE_RE.pattern.encode())
# Every private key, as it appears in JSON text ("key"), contains one of these: a row without both
# skips the regex.  Checked here so that a new private key cannot slip past the pre-test.
NEEDLES = (b"addr", b'_ip"')
if not all(any(n in f'"{key}"'.encode() for n in NEEDLES) for key in formats.PRIVATE_KEYS):
    raise RuntimeError("jsonl.NEEDLES must cover every name in formats.PRIVATE_KEYS")


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


def scrub_keys(text: bytes, found: list[tuple[int, int]] | None = None) -> bytes:
    """``test_keys`` JSON without private keys; ``found``: the spans of the regex matches in
    ``text`` (searched when not given).  Each regex match is a key (inside a JSON string a quote is
    escaped).  Top-level members with a string or scalar value are cut out of the text
    (:func:`drop_top_level`); otherwise, when every match is a top-level key, they are dropped from
    the parsed top object alone, else every object at every depth is walked (:func:`formats._scrub`)."""
    spans = [m.span() for m in _PRIVATE_B.finditer(text)] if found is None else found
    cut = drop_top_level(text, spans)
    if cut is not None:
        return cut
    keys = orjson.loads(text)
    top = [k for k in keys if k in formats.PRIVATE_KEYS]
    if len(top) == len(spans):
        for k in top:
            del keys[k]
        return orjson.dumps(keys)
    return orjson.dumps(formats._scrub(keys))


def drop_top_level(text: bytes, spans: list[tuple[int, int]]) -> bytes | None:
    """``text`` (a JSON object) without the members whose keys are at ``spans`` (the key's opening
    quote .. after its colon), cut out of the text: the same bytes as parsing, deleting and
    ``orjson.dumps`` for orjson's own compact output.  None (the caller parses instead) unless the
    text has no backslash (so every quote opens or closes a string), each key is a member of the
    top object, and each value is a string or a scalar followed directly by ``,`` or ``}``."""
    if b"\\" in text:
        return None
    for start, end in reversed(spans):          # from the last, so earlier spans stay valid
        outside = b"".join(text[:start].split(b'"')[::2])  # what precedes the key, strings left out
        if text.count(b'"', 0, start) % 2 or outside.count(b"{") - outside.count(b"}") != 1 or (
                outside.count(b"[") != outside.count(b"]")):
            return None
        first = text[end:end + 1]
        if first == b'"':
            stop = text.find(b'"', end + 1) + 1
        elif first and first not in b"{[ \t\r\n":
            commas, braces = text.find(b",", end), text.find(b"}", end)
            stop = braces if commas < 0 else min(commas, braces)
        else:
            return None
        after = text[stop:stop + 1]
        if after == b",":
            text = text[:start] + text[stop + 1:]
        elif after == b"}" and text[start - 1:start] in (b",", b"{"):
            text = text[:start - (text[start - 1:start] == b",")] + text[stop:]
        else:
            return None
    return text


def _clause(filters: Mapping[str, Any], embargo: Mapping[str, float], now: float,
            part: tuple[str, list[Any]] | None) -> tuple[str, list[Any]]:
    clause, params = where(filters, embargo, now)
    if part is not None:
        clause = f"{clause} AND {part[0]}" if clause else f" WHERE {part[0]}"
        params = [*params, *part[1]]
    return clause, params


def fetch(conn: sqlite3.Connection, filters: Mapping[str, Any], embargo: Mapping[str, float],
          now: float, part: tuple[str, list[Any]] | None = None) -> Iterator[list[tuple[Any, ...]]]:
    """Published rows (columns :data:`SELECT`) in ``start_ts`` order, ``CHUNK_ROWS`` at a time;
    ``part`` (SQL condition, parameters) narrows them to one sub-range (:mod:`parallel`)."""
    clause, params = _clause(filters, embargo, now, part)
    cur = conn.cursor()
    cur.row_factory = None
    cur.execute(f"SELECT {SELECT} FROM measurements{clause} ORDER BY start_ts, seq", params)
    try:
        while rows := cur.fetchmany(CHUNK_ROWS):
            yield rows
    finally:
        cur.close()


_OPEN, _RUNTIME = b'{"measurement_id":', b',"runtime_s":'


class Formatter:
    """Rows of :data:`SELECT` into JSONL lines (newline included, private keys removed).

    Each distinct shape becomes ``(head, tail, end, out)`` once: ``head`` the text from after the id
    to ``"start_time":``, ``tail`` from after ``runtime_s`` to ``"test_keys":``, ``end`` what follows
    the test keys (annotations, ``}`` and newline), ``out`` the list its lines go to - one per test
    when ``split`` (:attr:`blocks`), else one for all (:attr:`lines`).
    The probe ids and Atlas measurement ids of the shapes seen are gathered as they are made."""

    def __init__(self, split: bool = False):
        self.split = split
        self.lines: list[bytes] = []
        self.blocks: dict[str, list[bytes]] = {}
        self.scrubbed = 0
        self.probes: set[str] = set()
        self.atlas_ids: set[int] = set()
        self._shapes: dict[str, tuple[bytes, bytes, bytes, list[bytes]]] = {}

    def _shape(self, shape: str) -> tuple[bytes, bytes, bytes, list[bytes]]:
        v = orjson.loads(shape)
        n = len(HEAD)
        head = dict(zip(HEAD, v[:n], strict=True))
        tail: dict[str, Any] = {"success": bool(v[n]), "failure": v[n + 1]}
        tail.update((k, x) for k, x in zip(OPTIONAL, v[n + 2:-2], strict=True) if x is not None)
        test, probe, ann, msm = head["test_name"], head["probe_id"], v[-2], v[-1]
        if probe is not None:
            self.probes.add(probe)
        if msm is not None:
            self.atlas_ids.add(msm)
        out = self.blocks.setdefault(test, []) if self.split else self.lines
        if len(self._shapes) >= MAX_SHAPES:
            self._shapes.clear()
        end = b"}\n" if ann is None else b',"annotations":' + ann.encode() + b"}\n"   # the stored text
        entry = self._shapes[shape] = (b"," + orjson.dumps(head)[1:-1] + b',"start_time":',
                                       b"," + orjson.dumps(tail)[1:-1] + b',"test_keys":', end, out)
        return entry

    def add(self, rows: list[tuple[Any, ...]]) -> None:
        """Append the rows' lines to :attr:`blocks` (``split``) or :attr:`lines`, in row order."""
        get, make, dumps, finditer, join = self._shapes.get, self._shape, orjson.dumps, _PRIVATE_B.finditer, b"".join
        n1, n2 = NEEDLES
        scrubbed = 0
        for mid, start, runtime, shape, keys in rows:
            s = get(shape)
            if s is None:
                s = make(shape)
            if (n1 in keys or n2 in keys) and (found := [m.span() for m in finditer(keys)]):
                keys = scrub_keys(keys, found)
                scrubbed += 1
            s[3].append(join((_OPEN, dumps(mid), s[0], dumps(start), _RUNTIME, dumps(runtime), s[1], keys, s[2])))
        self.scrubbed += scrubbed


def lines(rows: list[tuple[Any, ...]]) -> tuple[list[bytes], int]:
    """The rows' JSONL lines (newline included, private keys removed), and how many were scrubbed."""
    f = Formatter()
    f.add(rows)
    return f.lines, f.scrubbed


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
    fmt = Formatter(split=True)
    try:
        for rows in fetch(conn, filters, embargo, now, part):
            fmt.add(rows)
            for test, block in fmt.blocks.items():
                if not block:
                    continue
                out.by_test[test] += len(block)
                if root is not None:
                    if test not in out.files:
                        path = root / formats.sink_path("jsonl", test)
                        path.parent.mkdir(parents=True, exist_ok=True)
                        out.files[test] = formats.GzipWriter(path, level)
                    out.files[test].write(b"".join(block))
                block.clear()
    finally:
        errors = []
        for writer in out.files.values():
            try:
                writer.close()
            except BaseException as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
    out.probes, out.atlas_ids, out.scrubbed = fmt.probes, fmt.atlas_ids, fmt.scrubbed
    if out.by_test:       # the first and last published start_ts, two look-ups on the start_ts index
        clause, params = _clause(filters, embargo, now, part)
        (out.first,), (out.last,) = (conn.execute(
            f"SELECT start_ts FROM measurements{clause} ORDER BY start_ts {d}, seq {d} LIMIT 1", params).fetchone()
            for d in ("ASC", "DESC"))
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
