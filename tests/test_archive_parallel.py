"""The JSONL export over several processes gives exactly the single-process export (real SQLite, real
spawned workers): same decompressed bytes per test, every measurement once, the builder's snapshot."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest

from coordinator import db as dbmod
from coordinator.archive import build, jsonl, manifest, parallel, synthetic
from coordinator.archive.settings import Settings
from coordinator.store import insert_measurements

NOW = synthetic.T0 + 4 * 3600


def make_data(data: Path) -> None:
    conn = dbmod.open_writer(data)
    try:
        synthetic.add_campaign(conn, "kz-watch")
        synthetic.add_campaign(conn, "late", embargo_s=3 * 3600)        # partly withheld at NOW
        synthetic.fill(conn, 4, 2.0)
        # Late uploads: higher seq, start_ts equal to rows already stored (ties across any cut).
        synthetic.fill(conn, 2, 2.0, seed=2, campaign_id="late")
    finally:
        conn.close()


def files(root: Path) -> dict[str, bytes]:
    return {p.name: gzip.decompress(p.read_bytes()) for p in sorted((root / "measurements").glob("*.jsonl.gz"))}


def run(data: Path, root: Path, workers: int, embargo: dict[str, float]) -> jsonl.Export:
    conn = dbmod.connect(dbmod.db_path(data), readonly=True)
    try:
        conn.execute("BEGIN")
        out = parallel.export(conn, dbmod.db_path(data), root, {"since": synthetic.T0, "until": NOW},
                              embargo, NOW, 3, workers, min_rows=0)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return out


def published_ids(data: Path, embargo: dict[str, float]) -> list[str]:
    conn = dbmod.connect(dbmod.db_path(data), readonly=True)
    try:
        clause, params = jsonl.where({}, embargo, NOW)
        return [r[0] for r in conn.execute(f"SELECT measurement_id FROM measurements{clause}", params)]
    finally:
        conn.close()


@pytest.mark.parametrize("workers", [2, 3])
def test_parallel_export_equals_single_process(tmp_path: Path, workers: int) -> None:
    make_data(tmp_path / "data")
    embargo = {"late": 3 * 3600.0}
    single = run(tmp_path / "data", tmp_path / "one", 1, embargo)
    conn = dbmod.connect(dbmod.db_path(tmp_path / "data"), readonly=True)
    try:
        parts = parallel.plan(conn, {"since": synthetic.T0, "until": NOW}, workers, min_rows=0)
    finally:
        conn.close()
    assert len(parts) == workers and all(a.hi == b.lo for a, b in itertools.pairwise(parts))
    multi = run(tmp_path / "data", tmp_path / "many", workers, embargo)
    one, many = files(tmp_path / "one"), files(tmp_path / "many")
    assert set(one) == {f"{t}.jsonl.gz" for t in synthetic.TESTS}
    assert many == one                                             # decompressed bytes identical
    members = (tmp_path / "many" / "measurements" / "ping.jsonl.gz").read_bytes().count(b"\x1f\x8b\x08")
    assert members >= workers                                      # really several gzip members
    assert not (tmp_path / "many" / parallel.PARTS_DIR).exists()
    assert (multi.by_test, multi.probes, multi.atlas_ids, multi.scrubbed, multi.first, multi.last) == (
        single.by_test, single.probes, single.atlas_ids, single.scrubbed, single.first, single.last)
    assert single.scrubbed > 0
    ids = [orjson.loads(line)["measurement_id"] for text in many.values() for line in text.splitlines()]
    want = published_ids(tmp_path / "data", embargo)
    assert len(ids) == len(set(ids)) == len(want) and set(ids) == set(want)   # every measurement once
    assert sum(multi.by_test.values()) == len(want) < 6 * 4 * 120 + 6 * 2 * 120  # some withheld


def test_workers_keep_the_builders_snapshot(tmp_path: Path) -> None:
    """Rows committed after the builder's snapshot began (late uploads inside every sub-range) are in
    neither the builder's part nor the workers'."""
    data = tmp_path / "data"
    make_data(data)
    conn = dbmod.connect(dbmod.db_path(data), readonly=True)
    try:
        conn.execute("BEGIN")
        before = conn.execute("SELECT count(*) FROM measurements").fetchone()[0]
        writer = dbmod.open_writer(data)
        try:
            extra: list[dict[str, Any]] = list(synthetic.records(3, 2.0, seed=3, campaign_id="kz-watch"))
            assert len(insert_measurements(writer, extra).inserted) == len(extra)
        finally:
            writer.close()
        out = parallel.export(conn, dbmod.db_path(data), tmp_path / "many", {"since": synthetic.T0, "until": NOW},
                              {}, NOW, 3, 2, min_rows=0)
        single = jsonl.export(conn, tmp_path / "one", {"since": synthetic.T0, "until": NOW}, {}, NOW, 3)
        conn.execute("COMMIT")
    finally:
        conn.close()
    assert sum(out.by_test.values()) == sum(single.by_test.values()) == before
    assert files(tmp_path / "many") == files(tmp_path / "one")
    new = {r["measurement_id"] for r in extra}
    got = {orjson.loads(line)["measurement_id"] for text in files(tmp_path / "many").values()
           for line in text.splitlines()}
    assert not new & got


def test_bundle_built_by_two_workers_verifies_and_matches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_data(tmp_path / "data")
    spec = build.range_spec(synthetic.T0, NOW)
    one = build.build(tmp_path / "data", spec, Settings(dir=str(tmp_path / "a1"), export_workers=1),
                      now=NOW, formats_=["jsonl"])
    monkeypatch.setattr(parallel, "PARALLEL_MIN_ROWS", 0)          # this small range, split anyway
    two = build.build(tmp_path / "data", spec, Settings(dir=str(tmp_path / "a2"), export_workers=2),
                      now=NOW, formats_=["jsonl"])
    assert manifest.verify_bundle(two).ok
    m1, m2 = manifest.read_manifest(one), manifest.read_manifest(two)
    assert m2["counts"] == m1["counts"] and m2["time_range"] == m1["time_range"]
    assert [f["path"] for f in m2["files"]] == [f["path"] for f in m1["files"]]
    assert files(two) == files(one)
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    with gzip.open(two / "measurements" / "dns.jsonl.gz") as fh:                 # read whole by Python's gzip
        assert sum(1 for _ in fh) == m2["counts"]["by_test"]["dns"]


def test_small_range_stays_in_one_process(tmp_path: Path) -> None:
    make_data(tmp_path / "data")
    conn = dbmod.connect(dbmod.db_path(tmp_path / "data"), readonly=True)
    try:
        assert len(parallel.plan(conn, {"since": synthetic.T0, "until": NOW}, 2)) == 1   # < 200k rows
        assert len(parallel.plan(conn, {}, 1, min_rows=0)) == 1
    finally:
        conn.close()


def test_export_workers_setting() -> None:
    with pytest.raises(ValueError, match=r"archive\.export_workers must be 1\.\.16"):
        Settings(export_workers=0)
    assert 1 <= Settings().export_workers <= 2


def test_a_failing_worker_fails_the_export_and_leaves_nothing(tmp_path: Path) -> None:
    make_data(tmp_path / "data")
    conn = dbmod.connect(dbmod.db_path(tmp_path / "data"), readonly=True)
    root = tmp_path / "out"
    try:
        conn.execute("BEGIN")
        with pytest.raises(RuntimeError, match=r"(?s)archive export worker failed \(exit 1\): .*unable to open"):
            parallel.export(conn, tmp_path / "missing.db", root, {}, {}, NOW, 3, 2, min_rows=0)
    finally:
        conn.close()
    assert not (root / parallel.PARTS_DIR).exists()
    doc = (Path(__file__).parent.parent / "docs" / "archives.md").read_text()
    assert "`archive export worker failed (exit N): <its last stderr" in doc


def test_workers_ignore_a_coordinator_package_in_the_working_directory(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers import the builder's own source tree: an export run from inside another checkout
    (or any directory holding a ``coordinator`` package) must not pick that one up."""
    make_data(tmp_path / "data")
    decoy = tmp_path / "cwd" / "coordinator"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise SystemExit('decoy coordinator imported')\n")
    monkeypatch.chdir(tmp_path / "cwd")
    single = run(tmp_path / "data", tmp_path / "one", 1, {})
    split = run(tmp_path / "data", tmp_path / "two", 2, {})
    assert split.by_test == single.by_test
    assert files(tmp_path / "one") == files(tmp_path / "two")
