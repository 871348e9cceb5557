"""End to end: probes upload to a real coordinator from distinct loopback addresses; no address
appears in any archive file, in the streamed query, or on the dashboard's probes page."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import signal
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from probe import signing
from probe.agent.outbox import Outbox
from probe.agent.uploader import encode
from probe.record import make_record

ROOT = Path(__file__).parent.parent
ADDRESSES = [f"127.0.0.{20 + i}" for i in range(3)]
ADDRESS_RE = re.compile(r"(?<![\d.])127\.0\.0\.\d{1,3}(?![\d.])")


async def run(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "coordinator", *args, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def signed_post(session: aiohttp.ClientSession, url: str, path: str, key: Ed25519PrivateKey, probe_id: str,
                      body: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
    headers = signing.sign_headers(key, "POST", path, probe_id, body)
    headers["Content-Type"] = content_type
    async with session.post(url + path, data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def probe_uploads(url: str, address: str, tmp: Path, n: int) -> str:
    admin = (tmp / "data" / "admin_token").read_text().strip()
    async with aiohttp.ClientSession() as http:
        resp = await http.post(url + "/api/v1/invites", headers={"Authorization": f"Bearer {admin}"})
        assert resp.status == 201, await resp.text()
        token = (await resp.json())["invite"]
    key = Ed25519PrivateKey.generate()
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        body = orjson.dumps({"invite": token, "public_key": signing.public_key_b64(key), "cc": "KZ", "asn": 9198,
                             "access": "mobile", "name": f"volunteer at {address}"})
        status, doc = await signed_post(session, url, "/api/v1/register", key, signing.UNREGISTERED, body,
                                        "application/json")
        assert status == 201, doc
        probe = doc["probe"]
        outbox = Outbox(tmp / f"outbox-{address}.db")
        now = datetime.now(UTC)
        records = [make_record(test_name=test, test_version="1.0.0", target="198.18.100.10", start_time=now,
                               runtime_s=0.1, success=True, failure=None, probe_id=probe["probe_id"],
                               probe_cc=probe["cc"], probe_asn=probe["asn"], probe_access=probe["access"],
                               test_keys={"resolved_address": "198.18.100.10", "src_addr": address,
                                          "nested": {"local_address": address},
                                          "packets": [{"seq": 0, "rtt_ms": 1.5, "ttl": 60}]})
                   for test in ("ping", "tcp") for _ in range(n)]
        outbox.append_many(records)
        batch = outbox.peek(10_000, 16 * 2**20)
        status, doc = await signed_post(session, url, "/api/v1/measurements", key, probe["probe_id"], encode(batch),
                                        "application/gzip")
        assert status == 200 and doc["inserted"] == 2 * n, doc
        outbox.close()
    return str(probe["probe_id"])


async def test_no_probe_address_anywhere(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "coordinator", "serve", "--data", str(data), "--listen", "127.0.0.1:0", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    try:
        line = b""
        deadline = time.monotonic() + 30
        while not line.startswith(b"listening on ") and time.monotonic() < deadline:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, "coordinator exited"
        url = line.split()[-1].decode()
        ids = [await probe_uploads(url, address, tmp_path, 20) for address in ADDRESSES]
        day = datetime.now(UTC).date().isoformat()
        await run("archive", "build", "--data", str(data), "--day", day)
        bundle = data / "archives" / f"daily-{day}"
        manifest = json.loads((bundle / "manifest.json").read_text())
        assert manifest["counts"]["measurements"] == 3 * 40 and manifest["counts"]["probes"] == 3
        assert manifest["counts"]["scrubbed_private_keys"] == 3 * 40
        texts: dict[str, str] = {}
        for path in bundle.rglob("*"):
            if path.is_file():
                raw = path.read_bytes()
                texts[str(path)] = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("latin-1")
                if path.suffix == ".parquet":
                    texts[str(path) + " (decoded)"] = json.dumps(pq.read_table(path).to_pylist(), default=str)
        probes = [json.loads(x) for x in (bundle / "probes.jsonl").read_text().splitlines()]
        assert sorted(p["probe_id"] for p in probes) == sorted(ids) and "name" not in probes[0]
        async with aiohttp.ClientSession() as http:
            q = await http.get(f"{url}/api/v1/archives/query", params={"since": str(time.time() - 86400), "until": str(time.time() + 60)})
            texts["query"] = await q.text()
            assert len(texts["query"].splitlines()) == 120
            texts["probes page"] = await (await http.get(f"{url}/probes")).text()
            texts["metrics"] = await (await http.get(f"{url}/metrics")).text()
        conn = sqlite3.connect(data / "tocsin.db")
        stored = conn.execute("SELECT count(*) FROM measurements WHERE test_keys LIKE ?", (f"%{ADDRESSES[0]}%",))
        assert stored.fetchone()[0] == 40          # stored inside test_keys: the export must scrub it
        conn.close()
        for where, text in texts.items():
            assert not ADDRESS_RE.findall(text), f"{where} contains {ADDRESS_RE.findall(text)[:3]}"
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
