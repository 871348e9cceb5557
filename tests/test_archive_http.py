"""Archives over HTTP: list, manifest, files with Range, streamed queries, and the download command."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from coordinator.app import CONFIG, DATA_DIR, STORE
from coordinator.archive import build, download, manifest, service, signing, synthetic
from coordinator.store import Store

DAY = "2022-01-05"


@pytest.fixture
async def server(tmp_path: Path, aiohttp_server: Any) -> AsyncIterator[tuple[TestServer, Path]]:
    store = Store(tmp_path / "data")
    store.write_sync(synthetic.fill, 3, 2.0)
    store.write_sync(synthetic.add_campaign, "kz-watch")
    store.write_sync(synthetic.add_scenario_events)
    store.write_sync(synthetic.add_campaign, "hidden", 10 * 365 * 86400.0)
    store.write_sync(lambda c: synthetic.fill(c, 1, 1.0, campaign_id="hidden", seed=9))
    build.build(tmp_path / "data", build.daily_spec(build.parse_day(DAY)))
    app = web.Application()
    app[STORE], app[CONFIG], app[DATA_DIR] = store, SimpleNamespace(), str(tmp_path / "data")
    service.setup(app)
    srv = await aiohttp_server(app)
    yield srv, tmp_path
    store.close()


async def test_list_key_manifest_and_range(server: tuple[TestServer, Path]) -> None:
    srv, tmp = server
    async with aiohttp.ClientSession() as http:
        base = str(srv.make_url("/api/v1/archives"))
        listed = await (await http.get(base)).json()
        assert [b["name"] for b in listed["archives"]] == [f"daily-{DAY}"]
        key = await (await http.get(base + "/key")).json()
        assert key["public_key"] == signing.public_key_b64(signing.load_or_create_key(tmp / "data"))
        m = await (await http.get(f"{base}/daily-{DAY}")).json()
        entry = next(f for f in m["files"] if f["path"] == "measurements/ping.parquet")
        part = await http.get(f"{base}/daily-{DAY}/{entry['path']}", headers={"Range": "bytes=100-"})
        assert part.status == 206 and len(await part.read()) == entry["bytes"] - 100
        for bad in ("../../tocsin.db", "measurements/nope.csv", "signing-ed25519.pem"):
            assert (await http.get(f"{base}/daily-{DAY}/{bad}")).status == 404
        assert (await http.get(f"{base}/nothing")).status == 404


async def test_download_resumes_and_verifies(server: tuple[TestServer, Path]) -> None:
    srv, tmp = server
    url = str(srv.make_url(f"/api/v1/archives/daily-{DAY}"))
    key = signing.public_key_b64(signing.load_or_create_key(tmp / "data"))
    src = build.archive_root(tmp / "data", build.Settings()) / f"daily-{DAY}"
    out = tmp / "out"
    partial = out / f"daily-{DAY}" / "measurements" / "ping.parquet.part"
    partial.parent.mkdir(parents=True)
    whole = (src / "measurements" / "ping.parquet").read_bytes()
    partial.write_bytes(whole[: len(whole) // 2])
    loop = asyncio.get_running_loop()
    root, stats, report = await loop.run_in_executor(None, lambda: download.fetch(url, out, key=key, progress=False))
    assert report.ok, report.problems
    total = sum(f["bytes"] for f in manifest.read_manifest(src)["files"])
    assert stats.resumed == 1 and stats.bytes_fetched == total - len(whole) // 2
    assert (root / "measurements" / "ping.parquet").read_bytes() == whole
    # again: nothing is fetched, everything verified
    _, again, report = await loop.run_in_executor(None, lambda: download.fetch(url, out, key=key, progress=False))
    assert report.ok and again.bytes_fetched == 0 and again.skipped == len(manifest.read_manifest(src)["files"])
    # a corrupt partial file is caught by its checksum and removed; the next run completes
    (root / "events.jsonl").unlink()
    (root / "events.jsonl.part").write_bytes(b"garbage")
    with pytest.raises(download.DownloadError, match=r"events\.jsonl: checksum mismatch"):
        await loop.run_in_executor(None, lambda: download.fetch(url, out, key=key, progress=False))
    assert not (root / "events.jsonl.part").exists()
    other = signing.public_key_b64(signing.load_or_create_key(tmp / "other"))
    with pytest.raises(download.DownloadError, match="signed by another key"):
        await loop.run_in_executor(None, lambda: download.fetch(url, tmp / "o2", key=other, progress=False))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "coordinator", "download", url, "--out", str(tmp / "cli"), "--key", key,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=Path(__file__).parent.parent)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stderr.decode()
    assert f"OK {tmp / 'cli' / f'daily-{DAY}'}" in stdout.decode()


async def test_streamed_queries(server: tuple[TestServer, Path]) -> None:
    srv, _ = server

    q = srv.make_url("/api/v1/archives/query")
    common = {"since": "2022-01-05T00:00:00Z", "until": "2022-01-05T01:00:00Z"}
    async with aiohttp.ClientSession() as http:
        body = await (await http.get(q, params={**common, "country": "KZ"})).read()
        lines = [json.loads(x) for x in body.splitlines()]
        assert len(lines) == 3 * 60 * 6 and len({x["measurement_id"] for x in lines}) == len(lines)
        assert all(x["campaign_id"] == "kz-watch" for x in lines)     # the embargoed campaign is left out
        assert [x["start_time"] for x in lines] == sorted(x["start_time"] for x in lines)
        resp = await http.get(q, params={**common, "test": "ping", "asn": "AS9198", "format": "csv"},
                              headers={"Accept-Encoding": "gzip"})
        assert resp.headers["Content-Type"].startswith("text/csv") and resp.headers.get("Content-Encoding") == "gzip"
        rows = list(csv.DictReader(io.StringIO((await resp.read()).decode())))
        assert len(rows) == 60 and {r["probe_asn"] for r in rows} == {"9198"}
        atlas = (await (await http.get(q, params={**common, "format": "atlas"})).read()).splitlines()
        assert len(atlas) == 3 * 60 * 2 and {json.loads(x)["type"] for x in atlas} == {"ping", "traceroute"}
        for params, msg in (({"until": "x"}, "since is required"), ({**common, "colour": "red"}, "unknown parameter"),
                            ({**common, "format": "xml"}, "format must be"),
                            ({"since": "2020-01-01T00:00:00Z", "until": "2022-01-01T00:00:00Z"}, "wider than"),
                            ({**common, "asn": "ASx"}, "is not a number")):
            resp = await http.get(q, params=params)
            assert resp.status == 400 and msg in await resp.text()
