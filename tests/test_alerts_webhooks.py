"""A webhook receiver on loopback sees each event state change exactly once, across coordinator restarts.

The coordinator is the real ``python -m coordinator serve`` process; transitions are written into its
SQLite file the way the verdict engine writes them.  One restart is a SIGKILL while deliveries are
failing (the receiver answers 503), one is a clean SIGTERM.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from coordinator import db as dbmod
from coordinator.alerts import webhooks
from coordinator.archive import signing, synthetic

ROOT = Path(__file__).parent.parent
SECRET = "s3cret-for-tests"


class Receiver:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.accepted: list[dict[str, Any]] = []
        self.refused = 0
        self.fail = False

    async def handle(self, request: web.Request) -> web.Response:
        data = await request.read()
        stamp = request.headers["X-Tocsin-Timestamp"]
        signed = stamp.encode() + b"." + data
        pub = signing.public_key_b64(signing.load_or_create_key(self.data_dir))
        signing.verify(pub, signed, request.headers["X-Tocsin-Signature"].removeprefix("ed25519="))
        mac = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
        assert request.headers["X-Tocsin-Signature-256"] == f"sha256={mac}"
        if self.fail:
            self.refused += 1
            return web.Response(status=503)
        body = json.loads(data)
        assert body["delivery_id"] == request.headers["X-Tocsin-Delivery"]
        self.accepted.append(body)
        return web.Response(text="ok")


async def start_coordinator(data: Path) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "coordinator", "serve", "--data", str(data), "--listen", "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    seen = b""
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        seen += line
        if line.startswith(b"listening on "):
            return proc, line.split()[-1].decode()
        if not line:
            break
    raise AssertionError(f"coordinator did not start: {seen.decode()}")


async def wait_for(pred: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def write(data: Path, fn: Any, *args: Any, **kwargs: Any) -> None:
    conn = dbmod.connect(dbmod.db_path(data))
    try:
        fn(conn, *args, **kwargs)
    finally:
        conn.close()


def transitions(data: Path) -> list[tuple[int, str, str]]:
    conn = sqlite3.connect(dbmod.db_path(data))
    try:
        return list(conn.execute("SELECT seq, event_id, state FROM event_transitions ORDER BY seq"))
    finally:
        conn.close()


async def test_each_state_change_exactly_once_across_restarts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    receiver = Receiver(data)
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    (data / "coordinator.toml").write_text(
        f'[alerts]\nwebhooks = ["http://127.0.0.1:{port}/hook"]\nwebhook_secret = "{SECRET}"\n'
        "poll_interval_s = 0.1\nretry_initial_s = 0.1\nretry_max_s = 0.5\n")
    t0 = synthetic.T0
    proc, url = await start_coordinator(data)
    try:
        write(data, synthetic.add_event, "ev-a", "blackout", "country", "KZ", [("suspected", t0), ("confirmed", t0 + 60)])
        await wait_for(lambda: len(receiver.accepted) == 2)
        # deliveries fail; the coordinator dies hard while retrying
        receiver.fail = True
        write(data, synthetic.add_event, "ev-b", "throttling", "access", "KZ/mobile",
              [("suspected", t0 + 100), ("confirmed", t0 + 160), ("resolved", t0 + 400)], access="mobile")
        await wait_for(lambda: receiver.refused >= 3)
        async with aiohttp.ClientSession() as http:
            text = await (await http.get(f"{url}/metrics")).text()
        assert f'tocsin_alert_webhook_pending{{webhook="http://127.0.0.1:{port}/hook"}} 3.0' in text
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        write(data, synthetic.add_event, "ev-a", "blackout", "country", "KZ", [("resolved", t0 + 900)])
        receiver.fail = False
        proc, url = await start_coordinator(data)
        await wait_for(lambda: len(receiver.accepted) == 6)
        # a clean restart, then one more change
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        proc, url = await start_coordinator(data)
        write(data, synthetic.add_event, "ev-c", "dns_tampering", "target", "KZ|gov.kz", [("suspected", t0 + 1000)])
        await wait_for(lambda: len(receiver.accepted) == 7)
        await asyncio.sleep(1.0)          # time for any duplicate to show up
        stored = transitions(data)
        got = [(b["seq"], b["event_id"], b["state"]) for b in receiver.accepted]
        assert got == stored                          # each once, in order
        assert len({b["delivery_id"] for b in receiver.accepted}) == 7
        assert receiver.accepted[0]["event"]["kind"] == "blackout" and receiver.accepted[0]["at"] == "2022-01-05T00:00:00Z"
        async with aiohttp.ClientSession() as http:
            text = await (await http.get(f"{url}/metrics")).text()
        assert f'tocsin_alert_webhook_pending{{webhook="http://127.0.0.1:{port}/hook"}} 0.0' in text
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
        await runner.cleanup()


def test_body_and_headers_are_signed(tmp_path: Path) -> None:
    key = signing.load_or_create_key(tmp_path)
    row = (7, "ev-x", "confirmed", synthetic.T0, synthetic.T0 + 5, json.dumps({"kind": "blackout"}))
    data = webhooks.body("http://127.0.0.1:9/h", row)
    hdrs = webhooks.headers(data, key, "", now=1000)
    assert "X-Tocsin-Signature-256" not in hdrs and hdrs["X-Tocsin-Timestamp"] == "1000"
    signing.verify(signing.public_key_b64(key), b"1000." + data, hdrs["X-Tocsin-Signature"][8:])
    body = json.loads(data)
    assert body["seq"] == 7 and body["delivery_id"].endswith(":7") and body["event"] == {"kind": "blackout"}
