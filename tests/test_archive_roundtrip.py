"""Archives: build, verify, read back every measurement once; tampering fails; embargo; privacy."""

from __future__ import annotations

import csv
import gzip
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from coordinator import db as dbmod
from coordinator.archive import build, formats, manifest, signing, synthetic
from coordinator.store import record_from_row

N_PROBES, HOURS = 6, 4.0
DAY = "2022-01-05"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("archive-data")
    conn = dbmod.open_writer(d)
    synthetic.fill(conn, N_PROBES, HOURS)
    synthetic.add_probes(conn, N_PROBES, time.time())
    synthetic.add_campaign(conn, "kz-watch")
    synthetic.add_scenario_events(conn)
    conn.close()
    yield d


@pytest.fixture(scope="module")
def bundle(data_dir: Path) -> Path:
    return build.build(data_dir, build.daily_spec(build.parse_day(DAY)))


def stored(data_dir: Path) -> dict[str, dict]:
    conn = dbmod.connect(dbmod.db_path(data_dir), readonly=True)
    try:
        return {r["measurement_id"]: record_from_row(r) for r in conn.execute("SELECT * FROM measurements")}
    finally:
        conn.close()


def test_round_trip_every_measurement_once_in_every_format(data_dir: Path, bundle: Path) -> None:
    report = manifest.verify_bundle(bundle)
    assert report.ok, report.problems
    records = stored(data_dir)
    assert len(records) == int(N_PROBES * HOURS * 60 * 6)
    m = manifest.read_manifest(bundle)
    assert m["counts"]["measurements"] == len(records) == report.measurements
    seen: dict[str, int] = {}
    for entry in (e for e in m["files"] if e["format"] == "jsonl"):
        with gzip.open(bundle / entry["path"], "rt") as fh:
            for line in fh:
                rec = json.loads(line)
                seen[rec["measurement_id"]] = seen.get(rec["measurement_id"], 0) + 1
                assert rec == formats._scrub(records[rec["measurement_id"]])
    assert seen == dict.fromkeys(records, 1)
    pq_ids: list[str] = []
    for entry in (e for e in m["files"] if e["format"] == "parquet"):
        table = pq.read_table(bundle / entry["path"])
        assert table.schema.names == [*formats.FIELD_NAMES, "start_ts"]
        assert table.num_rows == entry["rows"]
        pq_ids += table.column("measurement_id").to_pylist()
        first = table.slice(0, 1).to_pylist()[0]
        rec = records[first["measurement_id"]]
        assert json.loads(first["test_keys"]) == formats._scrub(rec["test_keys"])
        assert first["start_ts"].timestamp() == pytest.approx(
            time.mktime(time.strptime(rec["start_time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
            + float("0." + rec["start_time"][20:-1]), abs=1e-6)
    assert sorted(pq_ids) == sorted(records)
    csv_ids: list[str] = []
    for entry in (e for e in m["files"] if e["format"] == "csv"):
        with open(bundle / entry["path"], newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert list(rows[0]) == list(formats.CSV_COLUMNS)
        csv_ids += [r["measurement_id"] for r in rows]
        assert rows[0]["success"] in ("true", "false")
    assert sorted(csv_ids) == sorted(records)


def test_manifest_contents(bundle: Path) -> None:
    m = manifest.read_manifest(bundle)
    assert m["schema_version"] == 1 and m["record_fields"] == list(formats.FIELD_NAMES)
    assert m["time_range"]["since"] == "2022-01-05T00:00:00Z" and m["time_range"]["until"] == "2022-01-06T00:00:00Z"
    assert m["counts"]["events"] == 2 and m["counts"]["evidence_links"] == 50 and m["counts"]["probes"] == N_PROBES
    assert m["detector"]["versions_in_events"] == ["synthetic-1"]
    assert m["detector"]["version"] == "verdict-1.0"
    assert m["detector"]["thresholds"]["scope_fraction"] == 0.66  # the [verdict] settings in force
    assert m["signing_key"]["algorithm"] == "ed25519"
    assert {f["path"] for f in m["files"]} >= {"events.jsonl", "probes.jsonl", "measurements/ping.jsonl.gz",
                                               "atlas/ping.jsonl.gz", "atlas/traceroute.jsonl.gz"}
    events = [json.loads(line) for line in (bundle / "events.jsonl").read_text().splitlines()]
    blackout = next(e for e in events if e["kind"] == "blackout")
    assert len(blackout["evidence"]) == 50 and [t["state"] for t in blackout["transitions"]] == [
        "suspected", "confirmed", "resolved"]
    assert blackout["restorations"] and isinstance(blackout["signals"], list)
    probes = [json.loads(line) for line in (bundle / "probes.jsonl").read_text().splitlines()]
    assert set(probes[0]) == set(build.PUBLIC_PROBE_COLUMNS)   # no name, no key


def _copy(bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / bundle.name
    shutil.copytree(bundle, dst)
    return dst


def test_tampered_file_fails_verify(bundle: Path, tmp_path: Path) -> None:
    copy = _copy(bundle, tmp_path)
    target = copy / "measurements" / "dns.parquet"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    report = manifest.verify_bundle(copy)
    assert report.problems == ["measurements/dns.parquet: sha256 mismatch"]


def test_changed_manifest_extra_file_and_wrong_key_fail(bundle: Path, tmp_path: Path) -> None:
    copy = _copy(bundle, tmp_path)
    text = (copy / "manifest.json").read_text().replace('"events": 2', '"events": 3')
    (copy / "manifest.json").write_text(text)
    assert "manifest signature: bad signature" in manifest.verify_bundle(copy).problems
    copy2 = _copy(bundle, tmp_path / "b")
    (copy2 / "measurements" / "extra.jsonl.gz").write_bytes(b"x")
    assert manifest.verify_bundle(copy2).problems == ["measurements/extra.jsonl.gz: not in the manifest"]
    other = signing.public_key_b64(signing.load_or_create_key(tmp_path / "otherkey"))
    assert manifest.verify_bundle(bundle, other).problems == ["signed by another key than the one given"]
    (copy2 / "measurements" / "extra.jsonl.gz").unlink()
    lines = gzip.decompress((copy2 / "measurements" / "tcp.jsonl.gz").read_bytes()).splitlines(keepends=True)
    # a duplicated line with checksums fixed up still fails: the signature covers the checksums
    (copy2 / "measurements" / "tcp.jsonl.gz").write_bytes(gzip.compress(b"".join([*lines, lines[0]])))
    problems = manifest.verify_bundle(copy2).problems
    assert len(problems) == 1 and problems[0].startswith("measurements/tcp.jsonl.gz: size")


def test_embargo_withholds_recent_campaign_measurements(tmp_path: Path) -> None:
    conn = dbmod.open_writer(tmp_path)
    synthetic.fill(conn, 2, 1.0, campaign_id="secret")
    synthetic.fill(conn, 2, 1.0, campaign_id="open", seed=2)
    synthetic.add_campaign(conn, "secret", embargo_s=7 * 86400)
    synthetic.add_campaign(conn, "open")
    conn.close()
    day = build.daily_spec(build.parse_day(DAY))
    early = synthetic.T0 + 3 * 86400                      # 3 days after: still embargoed
    m = manifest.read_manifest(build.build(tmp_path, day, now=early))
    assert m["counts"]["measurements"] == 2 * 60 * 6 and m["embargo"]["withheld"] == {"secret": 2 * 60 * 6}
    path = build.build(tmp_path, day, now=synthetic.T0 + 8 * 86400)
    m = manifest.read_manifest(path)
    assert m["counts"]["measurements"] == 2 * 2 * 60 * 6 and m["embargo"]["withheld"] == {}
    assert manifest.verify_bundle(path).ok
    camp = build.build(tmp_path, build.campaign_spec(dbmod.connect(dbmod.db_path(tmp_path), readonly=True), "open"))
    assert manifest.read_manifest(camp)["counts"]["measurements"] == 2 * 60 * 6


ADDRESS_RE = re.compile(r"(?<![\d.])127\.0\.\d{1,3}\.\d{1,3}(?![\d.])")


def _texts(path: Path) -> Iterator[str]:
    if path.suffix == ".parquet":
        yield json.dumps(pq.read_table(path).to_pylist(), default=str)
        yield path.read_bytes().decode("latin-1")
    elif path.suffix == ".gz":
        yield gzip.decompress(path.read_bytes()).decode()
    else:
        yield path.read_bytes().decode("latin-1")


def test_no_probe_address_in_any_archive_file(data_dir: Path, bundle: Path) -> None:
    addresses = {synthetic.probe_address(i) for i in range(N_PROBES)}
    conn = sqlite3.connect(dbmod.db_path(data_dir))
    dump = "\n".join(conn.iterdump())
    conn.close()
    assert addresses & set(ADDRESS_RE.findall(dump)), "the test data must hold the addresses to be meaningful"
    files = [p for p in bundle.rglob("*") if p.is_file()]
    assert len(files) >= 20
    for path in files:
        for text in _texts(path):
            found = set(ADDRESS_RE.findall(text)) & addresses
            assert not found, f"{path.relative_to(bundle)} contains {found}"
    assert manifest.read_manifest(bundle)["counts"]["scrubbed_private_keys"] > 0


def test_cli_build_list_verify_and_tamper(data_dir: Path, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "coordinator", *args], capture_output=True, text=True,
                              timeout=120, cwd=Path(__file__).parent.parent)

    out = run("archive", "build", "--data", str(data_dir), "--since", "2022-01-05T01:00:00Z",
              "--until", "2022-01-05T02:00:00Z", "--formats", "jsonl,atlas")
    assert out.returncode == 0, out.stderr
    assert "built" in out.stdout and f"{N_PROBES * 60 * 6} measurements" in out.stdout
    listed = [json.loads(line) for line in run("archive", "list", "--data", str(data_dir), "--json").stdout.splitlines()]
    name = "range-20220105T010000Z-20220105T020000Z"
    assert name in {b["name"] for b in listed}
    ok = run("archive", "verify", name, "--data", str(data_dir))
    assert ok.returncode == 0 and ok.stdout.startswith("OK"), ok.stdout + ok.stderr
    key = run("archive", "key", "--data", str(data_dir)).stdout.strip()
    copy = _copy(build.archive_root(data_dir, build.Settings()) / name, tmp_path)
    with gzip.open(copy / "measurements" / "ping.jsonl.gz", "ab") as fh:
        fh.write(b"{}\n")
    bad = run("archive", "verify", str(copy), "--key", key)
    assert bad.returncode == 1 and "FAIL measurements/ping.jsonl.gz: size" in bad.stdout
    assert run("archive", "build", "--data", str(data_dir), "--day", "2022-13-01").returncode == 2
    assert run("archive", "build", "--data", str(data_dir), "--campaign", "nope").stderr.startswith(
        "archive build: no campaign 'nope'")
