"""The JSONL export path writes every stored record back exactly: same keys, order, values and types."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator import db as dbmod
from coordinator.archive import build, formats, jsonl, manifest
from coordinator.store import insert_measurements, record_from_row
from probe.record import ACCESS_TYPES, FAILURES, SCHEMA_VERSION

TEXT = st.text(st.characters(codec="utf-8"), max_size=12)   # any unicode but surrogates; controls, quotes
KEY = st.one_of(TEXT, st.sampled_from(sorted(formats.PRIVATE_KEYS)))
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                   st.floats(allow_nan=False, allow_infinity=False), TEXT)
JSON = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                    st.dictionaries(KEY, inner, max_size=4)), max_leaves=12)
T0 = datetime(2022, 1, 5, tzinfo=UTC)


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    start = T0 + timedelta(microseconds=draw(st.integers(0, 86400 * 10**6 - 1)))
    rec: dict[str, Any] = {
        "measurement_id": "m", "schema_version": SCHEMA_VERSION,
        "test_name": draw(st.sampled_from(["ping", "dns", "tést-ü"])),
        "test_version": draw(st.sampled_from(["1.0.0", "2.1.0-β"])),
        "target": draw(TEXT.filter(bool)),
        "probe_id": draw(st.one_of(st.none(), TEXT)),
        "source": draw(st.sampled_from(["tocsin", "atlas"])),
        "start_time": start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "runtime_s": draw(st.one_of(st.floats(0, 86399.99), st.integers(0, 86399), st.sampled_from([0.1 + 0.2, 1e-7]))),
        "success": draw(st.booleans()),
        "failure": draw(st.one_of(st.none(), st.sampled_from(sorted(FAILURES)), TEXT.map("unknown_failure: ".__add__))),
        "test_keys": draw(st.dictionaries(KEY, JSON, max_size=5)),
    }
    optional = {"campaign_id": TEXT, "task_id": TEXT, "probe_cc": st.sampled_from(["KZ", "IR"]),
                "probe_asn": st.integers(0, 2**32 - 1), "probe_access": st.sampled_from(ACCESS_TYPES),
                "annotations": st.dictionaries(TEXT, st.one_of(TEXT, JSON), max_size=3)}
    for key, strategy in optional.items():
        if draw(st.booleans()):
            rec[key] = draw(st.one_of(st.none(), strategy)) if key in ("campaign_id", "task_id") else draw(strategy)
    return rec


def canonical(value: Any, ordered: bool = False) -> bytes:
    """Text that tells 1, 1.0 and true apart (== would not); keys sorted unless ``ordered``."""
    return orjson.dumps(value, option=0 if ordered else orjson.OPT_SORT_KEYS)


def insert(data: Path, recs: list[dict[str, Any]]) -> None:
    for i, rec in enumerate(recs):
        rec["measurement_id"] = f"meas-{i:06d}"
    conn = dbmod.open_writer(data)
    try:
        outcome = insert_measurements(conn, recs)
        assert not outcome.rejected, outcome.rejected
    finally:
        conn.close()


def stored(data: Path) -> dict[str, Any]:
    conn = dbmod.connect(dbmod.db_path(data), readonly=True)
    try:
        return {r["measurement_id"]: r for r in conn.execute("SELECT * FROM measurements")}
    finally:
        conn.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), min_size=1, max_size=12))
def test_lines_equal_record_from_row_for_every_field_type(recs: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        insert(Path(tmp), recs)
        rows = stored(Path(tmp))
        conn = dbmod.connect(dbmod.db_path(tmp), readonly=True)
        try:
            lines = [line for chunk in jsonl.fetch(conn, {}, {}, 0.0) for line in jsonl.lines(chunk)[0]]
        finally:
            conn.close()
    assert len(lines) == len(recs) and all(line.endswith(b"}\n") and line.count(b"\n") == 1 for line in lines)
    for line in lines:
        got = orjson.loads(line)
        row = rows[got["measurement_id"]]
        want = record_from_row(row)
        want["test_keys"] = formats._scrub(want["test_keys"])
        assert canonical(got) == canonical(want)                  # same keys, values and types
        old_line = formats.record_line(row, formats.test_keys_text(row)[0])
        assert canonical(got, True) == canonical(orjson.loads(old_line), True)   # key order of the earlier lines
        assert line == old_line                                  # byte for byte the row-at-a-time writer's line
        original = next(r for r in recs if r["measurement_id"] == got["measurement_id"])
        assert got["test_keys"] == formats._scrub(original["test_keys"])


def test_round_trip_through_a_bundle_with_private_keys_and_unicode(tmp_path: Path) -> None:
    recs: list[dict[str, Any]] = []
    for i in range(30):
        recs.append({
            "measurement_id": "x", "schema_version": SCHEMA_VERSION, "test_name": ("ping", "dns", "http")[i % 3],
            "test_version": "1.0.0", "target": f'quote" backslash\\ tab\t ü 漢字 🚫 {i}', "probe_id": None,
            "source": "tocsin", "start_time": (T0 + timedelta(seconds=i, microseconds=7)).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ"), "runtime_s": 0.1 + 0.2 * i, "success": i % 2 == 0,
            "failure": None if i % 2 == 0 else "timeout", "probe_asn": 9198 if i % 4 else None,
            "test_keys": {"nested": {"deep": [{"src_addr": "127.0.1.1", "rtt_ms": 1e-7}], "v": None},
                          "client_ip": "127.0.1.2", "note": "src_addr", "n": 2**62, "f": 1e16},
            "annotations": {"src_addr": "annotations are not scrubbed", "u": "é"} if i % 5 == 0 else None})
        if recs[-1]["annotations"] is None:
            del recs[-1]["annotations"]
        if recs[-1]["probe_asn"] is None:
            del recs[-1]["probe_asn"]
    insert(tmp_path, recs)
    path = build.build(tmp_path, build.daily_spec(build.parse_day("2022-01-05")), formats_=["jsonl"])
    assert manifest.verify_bundle(path).ok
    m = manifest.read_manifest(path)
    assert m["counts"]["measurements"] == 30 and m["counts"]["scrubbed_private_keys"] == 30
    assert m["counts"]["by_test"] == {"dns": 10, "http": 10, "ping": 10}
    assert [f["path"] for f in m["files"] if f["format"] == "jsonl"] == [
        "measurements/dns.jsonl.gz", "measurements/http.jsonl.gz", "measurements/ping.jsonl.gz"]
    rows = stored(tmp_path)
    seen = 0
    for test in ("dns", "http", "ping"):
        for line in gzip.decompress((path / f"measurements/{test}.jsonl.gz").read_bytes()).splitlines():
            got = orjson.loads(line)
            want = record_from_row(rows[got["measurement_id"]])
            want["test_keys"] = formats._scrub(want["test_keys"])
            assert canonical(got) == canonical(want) and got["test_name"] == test
            assert got["test_keys"] == {"nested": {"deep": [{"rtt_ms": 1e-7}], "v": None}, "note": "src_addr",
                                        "n": 2**62, "f": 1e16}
            seen += 1
    assert seen == 30


def test_embargo_in_sql_matches_the_rule(tmp_path: Path) -> None:
    """Withheld exactly when start_ts + embargo_s > now (a row at the boundary is published)."""
    recs: list[dict[str, Any]] = [{"measurement_id": "x", "schema_version": SCHEMA_VERSION, "test_name": "dns", "test_version": "1.0.0",
             "target": "t", "probe_id": "p", "source": "tocsin", "campaign_id": cid,
             "start_time": (T0 + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "runtime_s": 1.0,
             "success": True, "failure": None, "test_keys": {}}
            for cid in ("secret", "open", None) for s in range(10)]
    insert(tmp_path, recs)
    embargo = {"secret": 100.0, "other": 5.0}
    now = T0.timestamp() + 100.0 + 4                         # secret rows at s <= 4 are published
    conn = dbmod.connect(dbmod.db_path(tmp_path), readonly=True)
    try:
        published = [orjson.loads(line) for chunk in jsonl.fetch(conn, {}, embargo, now)
                     for line in jsonl.lines(chunk)[0]]
        withheld, until = jsonl.withheld(conn, {}, embargo, now)
    finally:
        conn.close()
    rule = [r for r in recs if not (r.get("campaign_id") in embargo and T0.timestamp() + int(
        r["start_time"][17:19]) + embargo[r["campaign_id"]] > now)]
    assert sorted(r["measurement_id"] for r in published) == sorted(r["measurement_id"] for r in rule)
    assert len(published) == 25 and withheld == {"secret": 5} and until == T0.timestamp() + 9 + 100.0
    conn = dbmod.connect(dbmod.db_path(tmp_path), readonly=True)
    try:
        conn.execute("BEGIN")
        out = jsonl.export(conn, None, {"since": T0.timestamp() + 1}, embargo, now, 1)
        conn.execute("COMMIT")
    finally:
        conn.close()
    kept = [r for r in rule if r["start_time"][17:19] != "00"]
    assert sum(out.by_test.values()) == len(kept) and out.probes == {"p"}
    assert (out.first, out.last) == (T0.timestamp() + 1, T0.timestamp() + 9)      # published rows only


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(sorted(formats.PRIVATE_KEYS)), st.sampled_from(['"', ":", " ", "_", "\\"]),
                          st.text("abcdeilmnoprsu_", max_size=6)), max_size=12))
def test_factored_private_key_regex_matches_the_plain_alternation(parts: list[str]) -> None:
    plain = re.compile(r'"(?:' + "|".join(map(re.escape, sorted(formats.PRIVATE_KEYS))) + r')"\s*:')
    text = "".join(parts)
    assert formats._PRIVATE_RE.findall(text) == plain.findall(text)
    assert all(any(n in f'"{k}"'.encode() for n in jsonl.NEEDLES) for k in formats.PRIVATE_KEYS)


def test_gzip_engine_and_zlib_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Levels 1-3 are ISA-L's when the isal package is there, 4-9 zlib's; without isal every level is
    zlib's.  Either way the file is a standard gzip file: gzip -t, Python's gzip and a concatenation."""
    data = b"".join(b'{"n":%d,"pad":"%s"}\n' % (i, b"x" * (i % 50)) for i in range(20000))
    engines, have_isal = {}, formats._igzip is not None
    for isal in ("present", "absent"):
        if isal == "absent":
            monkeypatch.setattr(formats, "_igzip", None)
        for level in (1, 3, 4, 9):
            path = tmp_path / f"{isal}-{level}.jsonl.gz"
            writer = formats.GzipWriter(path, level)
            writer.write(data[:len(data) // 2])
            writer.write(data[len(data) // 2:])
            writer.close()
            assert gzip.decompress(path.read_bytes()) == data
            if shutil.which("gzip"):
                subprocess.run(["gzip", "-t", str(path)], check=True)
            engines[isal, level] = formats.gzip_engine(level)
    assert engines["absent", 1] == engines["absent", 9] == engines["present", 4] == "zlib"
    if have_isal:
        assert engines["present", 1] == engines["present", 3] == "isal"
    both = tmp_path / "both.gz"                    # one member of each engine, read whole
    both.write_bytes((tmp_path / "present-1.jsonl.gz").read_bytes() + (tmp_path / "absent-9.jsonl.gz").read_bytes())
    with gzip.open(both) as fh:
        assert fh.read() == data + data


def test_shape_cache_is_bounded_and_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from coordinator.archive import synthetic

    conn = dbmod.open_writer(tmp_path)
    try:
        synthetic.fill(conn, 3, 0.5)
    finally:
        conn.close()
    conn = dbmod.connect(dbmod.db_path(tmp_path), readonly=True)
    try:
        chunks = list(jsonl.fetch(conn, {}, {}, 0.0))
        whole = jsonl.Formatter()
        for chunk in chunks:
            whole.add(chunk)
        monkeypatch.setattr(jsonl, "MAX_SHAPES", 2)
        small = jsonl.Formatter()
        for chunk in chunks:
            small.add(chunk)
            assert len(small._shapes) <= 2
    finally:
        conn.close()
    assert small.lines == whole.lines and len(whole._shapes) > 2
    assert small.probes == whole.probes == set(synthetic.probe_ids(3)) and small.scrubbed == whole.scrubbed > 0


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(KEY, JSON, max_size=6), st.booleans())
def test_scrub_keys_cuts_text_exactly_as_parsing_would(doc: dict[str, Any], spaced: bool) -> None:
    """The text cut of top-level private members gives orjson's bytes of the scrubbed object (and, for
    text that is not orjson's compact form, the same value); no private key is left at any depth."""
    import json

    text = json.dumps(doc, ensure_ascii=False).encode() if spaced else orjson.dumps(doc)
    want = formats._scrub(orjson.loads(text))
    got = jsonl.scrub_keys(text)
    assert not jsonl._PRIVATE_B.search(got)
    if spaced:
        assert canonical(orjson.loads(got), True) == canonical(want, True)
    else:
        assert got == orjson.dumps(want)
