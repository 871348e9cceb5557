"""``python -m coordinator quickstart``: coordinator + one local probe + the default campaign.

Everything runs in this one process on loopback: the HTTP service, an invite, a registered probe
(state in DATA/probe), the default campaign (targets/kz.toml, international.toml, controls.toml),
and the probe agent.  Offline machines get failures recorded as data.  Ctrl-C stops cleanly; a
second run reuses the probe and the campaign.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sqlite3
from pathlib import Path
from typing import Any

DEFAULT_CAMPAIGN: dict[str, Any] = {
    "name": "quickstart",
    "country": "KZ",
    "lists": ["kz", "international", "controls"],
    "tests": [{"name": "dns", "params": {}}, {"name": "tcp", "params": {}}, {"name": "http", "params": {}}],
    "interval_s": 300,
    "timeout_s": 30,
}


def register_quickstart(sub: Any) -> None:
    p = sub.add_parser("quickstart", help="start a coordinator, register a local probe, run the default campaign")
    p.add_argument("--data", required=True, type=Path, help="data directory (created if missing)")
    p.add_argument("--listen", default="127.0.0.1:8470", help="HOST:PORT (a free port is used if this one is busy)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--cc", default=None, help="country the local probe declares (ISO alpha-2)")
    p.set_defaults(func=cmd_quickstart)


def _free(listen: str) -> str:
    host, _, port = listen.rpartition(":")
    with socket.socket() as s:
        try:
            s.bind((host, int(port)))
        except OSError:
            return f"{host}:0"
    return listen


def _existing_campaign(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT campaign_id FROM campaigns WHERE name = 'quickstart' AND stopped_ts IS NULL").fetchone()
    return row[0] if row else None


async def quickstart(data: Path, listen: str, duration: float | None, cc: str | None, stop: asyncio.Event) -> dict[str, Any]:
    from coordinator import auth, campaigns
    from coordinator.cli_core import serve
    from coordinator.config import load_config
    from coordinator.store import Store
    from probe.agent.cli import do_register
    from probe.agent.identity import IDENTITY_FILE
    from probe.agent.service import Agent

    data.mkdir(parents=True, exist_ok=True)
    config = load_config(None, data_dir=data)
    urls: list[str] = []
    server_stop = asyncio.Event()
    server = asyncio.create_task(serve(data, config, _free(listen), server_stop, ready=urls.append))
    while not urls:
        if server.done():
            server.result()
        await asyncio.sleep(0.05)
    url = urls[0]
    state = data / "probe"
    store = Store(data)  # a second writer connection; SQLite serialises it with the server's
    try:
        if not (state / IDENTITY_FILE).exists():
            invite = await store.write(auth.create_invite, 3600.0, "quickstart")
            declared = {"access": "fixed", "software": "tocsin-probe/0.1.0", "name": "quickstart"}
            if cc:
                declared["cc"] = cc
            await do_register([url], invite, state, declared)
        else:
            from probe.agent import identity as ident
            ident_doc, _ = ident.load(state)
            ident_doc.endpoints = [url] + [e for e in ident_doc.endpoints if e != url]
            ident_doc.save(state)
        cid = await store.read(_existing_campaign)
        if cid is None:
            spec = await asyncio.to_thread(campaigns.parse_campaign, DEFAULT_CAMPAIGN)
            cid = await store.write(campaigns.add_campaign, spec)
    finally:
        store.close()
    auth.admin_token(config.admin_token, data)
    print(f"""
Tocsin is running.
  coordinator      {url}   (SQLite: {data / 'tocsin.db'})
  measurements     {url}/api/v1/measurements?format=jsonl   (or format=csv; filters: country, asn, probe, test, ...)
  probes           {url}/api/v1/probes
  campaigns        {url}/api/v1/campaigns   (default campaign {cid})
  probe state      {state}   (outbox: {state / 'outbox.db'})
  probe status     python -m probe status --state {state}
  admin token      {'from TOCSIN_ADMIN_TOKEN' if config.admin_token else data / 'admin_token'}
Press Ctrl-C to stop.
""", flush=True)
    agent = Agent(state, poll_interval_s=15.0)
    try:
        await agent.run(stop, max_runtime_s=duration)
    finally:
        server_stop.set()
        await server
    from probe.agent.status import read_status
    return read_status(state)


def cmd_quickstart(args: argparse.Namespace) -> int:
    async def main() -> dict[str, Any]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await quickstart(args.data, args.listen, args.duration, args.cc, stop)

    status = asyncio.run(main())
    print(f"stopped: {status.get('tests_run', 0)} tests run, {status.get('buffered', 0)} results still buffered, "
          f"last upload: {status.get('last_upload_outcome', 'none')}")
    return 0
