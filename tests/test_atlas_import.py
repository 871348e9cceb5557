"""``python -m coordinator atlas import``: files of results, connection events and probes; idempotent."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from coordinator.__main__ import main
from coordinator.atlas import standin
from coordinator.db import db_path
from coordinator.store import record_from_row

SAMPLES = standin.default_samples()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    rc = main(list(argv))
    out = capsys.readouterr().out.strip().splitlines()
    return rc, json.loads(out[-1]) if out else {}


def lines(kind: str) -> list[str]:
    return (SAMPLES / f"{kind}.jsonl").read_text().splitlines()


def test_import_is_idempotent_and_counts_bad_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    ping = tmp_path / "ping.jsonl"
    ping.write_text("\n".join([*lines("ping"), "{not json", '"a string"', '{"type": "ntp"}', ""]) + "\n")
    trace = tmp_path / "trace.json"          # a JSON array file
    trace.write_text("[" + ",".join(lines("traceroute")) + "]")
    rc, first = run(capsys, "atlas", "import", "--data", str(data), str(ping), str(trace))
    assert rc == 0
    assert first["inserted"] == 32 + 37 and first["duplicates"] == 0 and first["malformed"] == 3
    assert first["reasons"] == {"line 33: not valid JSON": 1,
                                "not an Atlas result, connection event or probe object": 2}
    rc, again = run(capsys, "atlas", "import", "--data", str(data), str(ping), str(trace))
    assert again["inserted"] == 0 and again["duplicates"] == 69 and again["malformed"] == 3
    conn = sqlite3.connect(db_path(data))
    conn.row_factory = sqlite3.Row
    assert conn.execute("SELECT COUNT(*) FROM measurements WHERE source = 'atlas'").fetchone()[0] == 69
    raws = {r["measurement_id"]: json.loads(r["raw"]) for r in conn.execute("SELECT * FROM atlas_raw")}
    originals = [json.loads(x) for x in lines("ping") + lines("traceroute")]
    assert sorted(map(json.dumps, raws.values())) == sorted(map(json.dumps, originals))
    row = conn.execute("SELECT * FROM measurements LIMIT 1").fetchone()
    assert record_from_row(row)["test_keys"]["type"] in ("ping", "traceroute")


def test_connection_events_and_probe_metadata(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    probes = tmp_path / "probes.jsonl"
    probes.write_text("\n".join(lines("probes")) + "\n")
    first = json.loads(lines("probes")[0])
    events = tmp_path / "events.json"
    evs = [{"msm_id": 7000, "timestamp": 1453256500 + i, "prb_id": first["id"], "asn": first["asn_v4"],
            "prefix": first["prefix_v4"], "type": "connection", "event": "disconnect" if i % 2 else "connect"}
           for i in range(10)]
    evs.append({"msm_id": 7000, "timestamp": "x", "prb_id": 1, "type": "connection", "event": "connect"})
    events.write_text(json.dumps(evs))
    results = tmp_path / "results.jsonl"
    results.write_text("\n".join(lines("ping") + lines("dns")) + "\n")
    # results first on the command line: the probe file is still imported first
    rc, out = run(capsys, "atlas", "import", "--data", str(data), str(results), str(events), str(probes))
    assert rc == 0 and out["probes"] == 24 and out["events_inserted"] == 10 and out["malformed"] == 2
    assert "connection event: prb_id and timestamp must be numbers" in out["reasons"]
    # two dns samples (edited sagan fixtures) share msm, probe and time but differ: a conflict, reported
    assert any(r.startswith("conflict: measurement_id atlas-1020268-96-") for r in out["reasons"])
    rc, out = run(capsys, "atlas", "import", "--data", str(data), str(events))
    assert out["events_inserted"] == 0 and out["events_duplicates"] == 10
    conn = sqlite3.connect(db_path(data))
    assert conn.execute("SELECT DISTINCT cc, asn FROM atlas_connection_events").fetchall() == [
        (first["country_code"], first["asn_v4"])]
    known = {json.loads(p)["id"]: json.loads(p)["country_code"] for p in lines("probes")}
    rows = conn.execute("SELECT probe_id, probe_cc FROM measurements WHERE probe_cc IS NOT NULL").fetchall()
    assert rows and all(known[int(pid.split(":")[1])] == cc for pid, cc in rows)


def test_target_country_annotations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    run(capsys, "atlas", "import", "--data", str(data), str(SAMPLES / "probes.jsonl"))
    conn = sqlite3.connect(db_path(data))
    raw = json.loads(lines("ping")[2])
    spec = {"targets": [{"name": raw["dst_name"], "address": raw["dst_addr"], "cc": "CH", "category": "domestic",
                         "group": "g", "tests": ["ping"]}]}
    conn.execute("INSERT INTO campaigns (campaign_id, name, spec, created_ts) VALUES ('c1', 'c', ?, ?)",
                 (json.dumps(spec), time.time()))
    conn.commit()
    f = tmp_path / "one.jsonl"
    f.write_text(lines("ping")[2] + "\n")
    run(capsys, "atlas", "import", "--data", str(data), str(f))
    ann = json.loads(conn.execute("SELECT annotations FROM measurements").fetchone()[0])
    assert ann["target_cc"] == "CH" and ann["atlas_msm_id"] == str(raw["msm_id"])


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["atlas", "import", "--data", str(tmp_path), str(tmp_path / "nope.json")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_raw_kept_as_read_batches_and_checkpoint_setting(tmp_path: Path) -> None:
    """The JSON-lines text is what atlas_raw keeps; small batches see a probe object read mid-file;
    the connection's WAL checkpoint setting is what it was before the import."""
    from coordinator.atlas.importer import import_paths
    from coordinator.db import open_writer

    ping = [json.loads(x) for x in lines("ping")[2:6]]
    probe = json.loads(lines("probes")[0])
    for p in ping:
        p["prb_id"] = probe["id"]
    spaced = json.dumps(ping[0], indent=None, separators=(" , ", " : "))   # not how orjson writes it
    f = tmp_path / "mixed.jsonl"
    f.write_text("\n".join([spaced, json.dumps(ping[1]), json.dumps(probe), *map(json.dumps, ping[2:])]) + "\n")
    conn = open_writer(tmp_path / "data")
    conn.execute("PRAGMA wal_autocheckpoint=777")
    counts = import_paths(conn, [f], batch=2)
    assert counts.inserted == 4 and counts.probes == 1 and counts.malformed == 0
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 777
    mid = f"atlas-{ping[0]['msm_id']}-{probe['id']}-{ping[0]['timestamp']}"
    assert conn.execute("SELECT raw FROM atlas_raw WHERE measurement_id = ?", (mid,)).fetchone()[0] == spaced
    ccs = [r[0] for r in conn.execute("SELECT probe_cc FROM measurements ORDER BY seq")]
    assert ccs == [None, None, probe["country_code"], probe["country_code"]]   # batches after the probe object
    assert import_paths(conn, [f], batch=3).duplicates == 4
    conn.close()


def _records() -> list[dict[str, Any]]:
    from coordinator.atlas.normalize import ProbeInfo, normalize

    out = []
    for kind in ("ping", "traceroute", "dns", "http", "sslcert"):
        for line in lines(kind):
            raw = json.loads(line)
            out.append(normalize(raw, probes={raw["prb_id"]: ProbeInfo(raw["prb_id"], "KZ", 9198)},
                                 target_cc=lambda t: "DE"))
    return out


def test_bulk_rows_are_the_store_rows() -> None:
    """Every sample's row from the Atlas bulk writer is the store's own row (test_keys text: same JSON)."""
    from coordinator.atlas import bulk
    from coordinator.store import row_from_record

    for rec in _records():
        for received in (time.time(), 1e9):                  # also a flagged (future) start time
            mine, theirs = bulk.row(rec, received), row_from_record(rec, received)
            assert len(mine) == len(theirs)
            assert mine[:18] == theirs[:18] and mine[19:] == theirs[19:], rec["measurement_id"]
            assert json.loads(mine[18]) == json.loads(theirs[18])


@pytest.mark.parametrize("value", [1e-5, 5e-5, -3e-7, 1e16, 2.5e17, 0.0001, 123.456, 0.0, -0.0, 7])
def test_bulk_hash_with_floats_either_library_writes_differently(value: float) -> None:
    from coordinator.atlas import bulk
    from probe.record import content_hash

    rec = _records()[2]
    rec["test_keys"] = {**rec["test_keys"], "rtt_min": value, "packets": [{"rtt": value, "x": [value, {"y": value}]}]}
    rec["runtime_s"] = abs(value) if abs(value) < 86400 else 1.0
    assert bulk.hash_and_texts(rec)[0] == content_hash(rec)
    for odd in (float("nan"), float("inf")):                 # orjson would write these as null
        rec["test_keys"]["packets"][0]["x"][1]["y"] = odd
        assert bulk.hash_and_texts(rec)[0] == content_hash(rec)


def test_bulk_duplicate_and_conflict_with_a_row_stored_by_another_path(tmp_path: Path) -> None:
    """A record stored without its Atlas result (e.g. a Tocsin-record import): the same content is a
    duplicate (and the raw result is kept), other content a conflict - as store.insert_measurements."""
    from coordinator.atlas.importer import import_paths
    from coordinator.atlas.normalize import normalize
    from coordinator.db import open_writer
    from coordinator.store import insert_measurements

    conn = open_writer(tmp_path / "data")
    same, other = json.loads(lines("ping")[2]), json.loads(lines("ping")[3])
    assert insert_measurements(conn, [normalize(same)]).inserted
    changed = normalize(other)
    changed["runtime_s"] = 1.5
    assert insert_measurements(conn, [changed]).inserted
    f = tmp_path / "two.jsonl"
    f.write_text("\n".join([lines("ping")[2], lines("ping")[3], lines("ping")[2]]) + "\n")
    counts = import_paths(conn, [f])
    assert counts.inserted == 0 and counts.duplicates == 2 and counts.malformed == 1
    assert list(counts.reasons) == [f"conflict: measurement_id {changed['measurement_id']} is already stored "
                                    "with different content"]
    assert [r[0] for r in conn.execute("SELECT measurement_id FROM atlas_raw")] == [normalize(same)["measurement_id"]]
    again = import_paths(conn, [f])
    assert again.duplicates == 2 and again.malformed == 1
    conn.close()


def test_built_records_take_the_cheap_envelope_check_with_the_store_rows() -> None:
    """The cheap check of a ping/traceroute record the normaliser built gives the epoch the envelope
    gives, and the row with it (and the float check on the rtts alone) is the store's row."""
    from coordinator.atlas import bulk
    from coordinator.store import row_from_record
    from probe.record import validate_epoch

    checked = 0
    for rec in _records():
        ts = int(rec["measurement_id"].rsplit("-", 1)[1])
        epoch = bulk.built_epoch(rec, ts)
        if rec["test_name"] not in ("ping", "traceroute"):
            assert epoch is None
            continue
        assert epoch == validate_epoch(rec)
        assert rec["test_name"] != "ping" or bulk.plain_ping(rec)
        mine, theirs = bulk.row(rec, 1e9, epoch, rec["test_name"] == "ping"), row_from_record(rec, 1e9)
        assert mine[:18] == theirs[:18] and mine[19:] == theirs[19:]
        assert json.loads(mine[18]) == json.loads(theirs[18])
        checked += 1
    assert checked >= 4
    rec = next(r for r in _records() if r["test_name"] == "ping")
    for odd in (-1, 253402300800, 1.5e9, True, "1641000000"):       # not a plain in-range integer
        assert bulk.built_epoch(rec, odd) is None
    for key, value in (("probe_cc", "1A"), ("probe_cc", "kz"), ("probe_asn", 2**32), ("probe_asn", "9198"),
                       ("target", "x" * 2049), ("measurement_id", "atlas-" + "9" * 80)):
        assert bulk.built_epoch({**rec, key: value}, 1641000000) is None, (key, value)


def test_impossible_results_are_still_rejected_with_their_reason(tmp_path: Path) -> None:
    """Through the import's cheap path: an impossible timestamp, a missing or null probe id, and a
    probe country the envelope refuses are each rejected with a reason; nothing of them is stored."""
    from coordinator.atlas.importer import import_paths
    from coordinator.db import open_writer

    base = json.loads(lines("ping")[0])
    bad: list[tuple[dict[str, Any], str]] = [({"timestamp": 10**13}, "ping: ValueError: year 318857 is out of range"),
           ({"timestamp": 253402300800}, "ping: ValueError: year 10000 is out of range"),
           ({"timestamp": -10**12}, "ping: ValueError: year -29719 is out of range"),
           ({"prb_id": None}, "ping: msm_id and prb_id must be integers"),
           ({"prb_id": 4242, "timestamp": 1641000001}, "probe_cc must be two upper-case letters (ISO 3166 alpha-2)")]
    items = [json.dumps({**base, **change}) for change, _ in bad]
    items.append(json.dumps({k: v for k, v in base.items() if k != "prb_id"}))
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps({"id": 4242, "country_code": "1a", "asn_v4": 1}) + "\n" + "\n".join(items) + "\n")
    conn = open_writer(tmp_path / "data")
    counts = import_paths(conn, [f])
    assert counts.inserted == 0 and counts.malformed == len(items)
    assert dict(counts.reasons) == {**{reason: 1 for _, reason in bad}, "not an Atlas result: missing prb_id": 1}
    assert conn.execute("SELECT count(*) FROM measurements").fetchone()[0] == 0
    conn.close()


@pytest.mark.parametrize("rtt", ["NaN", "-inf", "1e999", " Infinity", "1e-7", "0.00005", "1e20", 1e-7, 5e-5, 3e17, 1e308])
def test_imported_hash_is_the_content_hash_whatever_floats_sagan_makes(tmp_path: Path, rtt: Any) -> None:
    """sagan's float() reads strings ("NaN", "1e999") and its medians are sums: the import's hash (the
    rtts' sum check, then one regex over orjson's bytes) is still probe.record.content_hash."""
    import orjson

    from coordinator.atlas.importer import import_paths
    from coordinator.atlas.normalize import normalize
    from coordinator.db import open_writer
    from probe.record import content_hash

    pings = [json.loads(x) for x in lines("ping")]
    base = next(p for p in pings if p.get("result") and "rtt" in p["result"][0])
    texts = []
    for i, avg in enumerate((rtt, 1.5)):
        raw = {**base, "timestamp": base["timestamp"] + i, "avg": avg,
               "result": [{"rtt": rtt}, {"rtt": rtt}, *base["result"][1:]]}
        texts.append(json.dumps(raw, allow_nan=False))
    trace = json.loads(lines("traceroute")[0])
    hop = {"hop": 1, "result": [{"from": "192.0.2.1", "rtt": rtt, "size": 28, "ttl": 255}] * 2}
    texts.append(json.dumps({**trace, "result": [hop, *trace["result"]]}, allow_nan=False))
    f = tmp_path / "floats.jsonl"
    f.write_text("\n".join(texts) + "\n")
    conn = open_writer(tmp_path / "data")
    assert import_paths(conn, [f]).inserted == len(texts)
    for text in texts:
        rec = normalize(orjson.loads(text))
        stored = conn.execute("SELECT content_hash FROM measurements WHERE measurement_id = ?",
                              (rec["measurement_id"],)).fetchone()
        assert stored[0] == content_hash(rec), (rtt, rec["measurement_id"])
    conn.close()


def test_created_text_is_sagans_isoformat() -> None:
    """parse's ``created`` of an integer timestamp (no isoformat call) is the text sagan's datetime gives."""
    import random
    from datetime import UTC, datetime

    from coordinator.atlas.parse import _utc_iso

    rng = random.Random(5)
    stamps = [0, -1, -86401, 86399, 951782400, 1641000000, -62135596800, 253402300799]
    for ts in stamps + [rng.randrange(-62135596800, 253402300800) for _ in range(5000)]:
        assert _utc_iso(ts) == datetime.fromtimestamp(ts, UTC).isoformat(), ts


def test_one_pass_hash_with_a_nested_test_keys_key() -> None:
    """The one-pass hash slices test_keys' text out of the sorted record; a nested "test_keys" key (or
    the text in a string) must not move the slice."""
    import orjson

    from coordinator.atlas import bulk
    from probe.record import content_hash

    rec = _records()[0]
    for extra in ({"test_keys": {"a": 1}}, {"note": '","test_keys":{"x":'}):
        changed = {**rec, "test_keys": {**rec["test_keys"], **extra}}
        digest, keys, _ = bulk.hash_and_texts(changed, True)
        assert digest == content_hash(changed)
        assert keys == orjson.dumps(changed["test_keys"], option=orjson.OPT_SORT_KEYS).decode()


def test_ping_float_check_reads_the_annotations_too(tmp_path: Path) -> None:
    """A campaign's target country is whatever its spec holds: a float there takes the exact hash."""
    from coordinator.atlas import storage
    from coordinator.atlas.normalize import normalize
    from coordinator.db import open_writer
    from probe.record import content_hash

    raw = json.loads(lines("ping")[0])
    rec = normalize(raw, target_cc=lambda t: 1e-05)   # type: ignore[arg-type, return-value]
    assert rec["annotations"]["target_cc"] == 1e-05
    from coordinator.atlas import bulk
    assert not bulk.plain_ping(rec)
    conn = open_writer(tmp_path / "data")
    counts = storage.store_results(conn, [raw], target_cc=lambda t: 1e-05, texts=[lines("ping")[0]])  # type: ignore
    assert counts.inserted == 1
    assert conn.execute("SELECT content_hash FROM measurements").fetchone()[0] == content_hash(rec)
    conn.close()


def test_stored_rows_are_the_store_rows_with_nulls(tmp_path: Path) -> None:
    """Every sample imported (NaN bound for NULL, many rows a statement): each stored row is the row
    store.row_from_record makes of the same record, NULL where it has None, and nothing else."""
    from coordinator.atlas.importer import import_paths
    from coordinator.atlas.normalize import ProbeInfo, normalize
    from coordinator.db import open_writer
    from coordinator.store import MEASUREMENT_COLUMNS, row_from_record

    texts = [line for kind in ("ping", "traceroute", "dns", "http", "sslcert") for line in lines(kind)]
    f = tmp_path / "all.jsonl"
    f.write_text("\n".join([*lines("probes"), *texts]) + "\n")
    conn = open_writer(tmp_path / "data")
    counts = import_paths(conn, [f], batch=70)
    conflicts = len(texts) - counts.inserted                 # two pairs of samples share an id (a dns, an sslcert)
    assert conflicts == counts.malformed == 2
    assert all("appears twice in the batch with different content" in r for r in counts.reasons)
    probes = {json.loads(p)["id"]: ProbeInfo(json.loads(p)["id"], json.loads(p)["country_code"],
                                             json.loads(p)["asn_v4"]) for p in lines("probes")}
    cols = ", ".join(MEASUREMENT_COLUMNS)
    stored = {r[0]: r for r in conn.execute(f"SELECT {cols} FROM measurements")}
    seen = 0
    for text in texts:
        rec = normalize(json.loads(text), probes=probes)
        got = stored.get(rec["measurement_id"])
        if got is None or got[1] != row_from_record(rec, 0.0)[1]:
            continue                                          # the second of a conflicting pair
        expected = row_from_record(rec, got[20])             # received_ts as stored
        got = tuple(got)
        assert got[:18] == expected[:18] and got[19:] == expected[19:], rec["measurement_id"]
        assert json.loads(got[18]) == json.loads(expected[18])   # test_keys: ours has sorted keys
        seen += 1
    assert seen == counts.inserted
    nulls = conn.execute("SELECT COUNT(*) FROM measurements WHERE campaign_id IS NULL AND task_id IS NULL "
                         "AND probe_access IS NULL").fetchone()[0]
    assert nulls == seen
    assert conn.execute("SELECT COUNT(*) FROM measurements WHERE typeof(failure) = 'real' OR "
                        "typeof(probe_cc) = 'real' OR typeof(flags) = 'real'").fetchone()[0] == 0
    conn.close()


def test_a_batch_with_some_stored_results_is_decided_one_by_one(tmp_path: Path) -> None:
    """The first result of the batch is new, later ones are stored already (the same, or another
    Atlas result under the same id) or repeated: nothing of the optimistic insert is kept, and
    each result gets the outcome the store's rules give it."""
    from coordinator.atlas.importer import import_paths
    from coordinator.db import open_writer

    pings = lines("ping")
    first = tmp_path / "first.jsonl"
    first.write_text("\n".join(pings[2:6]) + "\n")
    conn = open_writer(tmp_path / "data")
    assert import_paths(conn, [first]).inserted == 4
    changed = json.loads(pings[4])
    changed["avg"] = 99.5
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join([pings[10], pings[3], json.dumps(changed), pings[11], pings[10]]) + "\n")
    counts = import_paths(conn, [mixed])
    assert (counts.inserted, counts.duplicates, counts.malformed) == (2, 2, 1)
    mid = f"atlas-{changed['msm_id']}-{changed['prb_id']}-{changed['timestamp']}"
    assert dict(counts.reasons) == {
        f"conflict: measurement_id {mid} is already stored with a different Atlas result": 1}
    assert conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 6
    assert conn.execute("SELECT COUNT(*) FROM atlas_raw").fetchone()[0] == 6
    assert conn.execute("SELECT raw FROM atlas_raw WHERE measurement_id = ?", (mid,)).fetchone()[0] == pings[4]
    conn.close()


def test_many_rows_a_statement_and_the_remainder(tmp_path: Path) -> None:
    """Batches larger than one statement's rows, with a remainder, store every row once."""
    from coordinator import sqlbulk
    from coordinator.atlas.importer import import_paths
    from coordinator.db import open_writer

    base = [json.loads(x) for x in lines("ping")]
    n = sqlbulk.ROWS_PER_INSERT * 2 + 7
    texts = [json.dumps({**base[i % len(base)], "prb_id": 100000 + i}) for i in range(n)]
    f = tmp_path / "many.jsonl"
    f.write_text("\n".join(texts) + "\n")
    conn = open_writer(tmp_path / "data")
    assert import_paths(conn, [f], batch=n).inserted == n
    assert tuple(conn.execute("SELECT COUNT(DISTINCT measurement_id), COUNT(*) FROM measurements").fetchone()) == (n, n)
    assert conn.execute("SELECT COUNT(*) FROM atlas_raw").fetchone()[0] == n
    again = import_paths(conn, [f], batch=n)
    assert again.inserted == 0 and again.duplicates == n
    conn.close()


def test_measurement_id_of_a_raw_result_is_measurement_id_for() -> None:
    """The import's id of a raw result (a shortcut for plain integers) is normalize's own id."""
    from coordinator.atlas import bulk
    from coordinator.atlas.normalize import measurement_id_for

    for msm, prb, ts in ((1001, 6001, 1641000000), (7, 1, 0), (1, 2, -5), (1, 2, 1641000000.0), (1, 2, 1.5),
                         (1, 2, 2**1000 - 1), (1, 2, 2**1100), ("3", 4, 5), (True, 4, 5), (1, None, 5)):
        try:
            expected: str | None = measurement_id_for(msm, prb, ts)
        except (TypeError, ValueError, OverflowError):
            expected = None
        assert bulk._mid({"msm_id": msm, "prb_id": prb, "timestamp": ts}) == expected, (msm, prb, ts)
    assert bulk._mid({"msm_id": 1}) is None and bulk._mid("x") is None
