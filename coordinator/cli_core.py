"""Core coordinator commands: serve, invite, campaign add|list|show|stop, probes, quickstart."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

COMMANDS = ("serve", "invite", "campaign", "probes", "quickstart")
CAMPAIGN_COMMANDS = ("add", "list", "show", "stop")


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the coordinator's HTTP service")
    p.add_argument("--data", required=True, type=Path, help="data directory (SQLite file, admin token)")
    p.add_argument("--listen", help="HOST:PORT (default from config: 127.0.0.1:8470; port 0 = any free port)")
    p.add_argument("--config", type=Path, help="TOML config file (default DATA/coordinator.toml if present)")
    p.add_argument("--upstream", metavar="URL",
                   help="run as an in-country replica of the coordinator at URL (sets [replica] upstream; docs/replica.md)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("invite", help="make a one-use probe invite and print its token")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--config", type=Path)
    p.add_argument("--note", help="note kept with the invite (who it is for)")
    p.add_argument("--count", type=int, default=1, help="how many invites to make (one token per line)")
    p.set_defaults(func=cmd_invite)

    p = sub.add_parser("campaign", help="add, list, show or stop campaigns")
    csub = p.add_subparsers(dest="campaign_command", metavar="ACTION", required=True)
    a = csub.add_parser("add", help="add a campaign from a TOML file; prints its id")
    a.add_argument("file", type=Path)
    a = csub.add_parser("list", help="list campaigns")
    a.add_argument("--json", action="store_true")
    a = csub.add_parser("show", help="show one campaign as JSON")
    a.add_argument("campaign_id")
    a = csub.add_parser("stop", help="stop a campaign (probes drop its tasks at their next poll)")
    a.add_argument("campaign_id")
    for action in csub.choices.values():
        action.add_argument("--data", required=True, type=Path)
        action.set_defaults(func=cmd_campaign)

    p = sub.add_parser("probes", help="list probes with status (JSON)")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--config", type=Path)
    p.set_defaults(func=cmd_probes)

    from coordinator.quickstart import register_quickstart

    register_quickstart(sub)


def _config(args: argparse.Namespace) -> Any:
    from coordinator.config import load_config

    return load_config(getattr(args, "config", None), data_dir=args.data)


async def serve(data_dir: Path, config: Any, listen: str, stop: asyncio.Event,
                ready: Callable[[str], None] | None = None) -> None:
    """Serve until ``stop`` is set.  ``ready`` gets the base URL once the socket is bound."""
    from aiohttp import web

    from coordinator.app import make_app
    from coordinator.store import Store

    store = await asyncio.to_thread(Store, data_dir)
    try:
        app = make_app(store, config, str(data_dir))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, _, port = listen.rpartition(":")
        site = web.TCPSite(runner, host or "127.0.0.1", int(port), shutdown_timeout=5)
        await site.start()
        server = runner.server
        sockets = getattr(site._server, "sockets", None) or []
        bound = sockets[0].getsockname() if sockets else (host, port)
        url = config.public_url or f"http://{bound[0]}:{bound[1]}"
        if ready:
            ready(url)
        try:
            await stop.wait()
        finally:
            del server
            await runner.cleanup()
    finally:
        await asyncio.to_thread(store.close)


def cmd_serve(args: argparse.Namespace) -> int:
    from coordinator.config import ConfigError

    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    listen = args.listen or config.listen
    if args.upstream:
        config.section("replica").upstream = args.upstream
    args.data.mkdir(parents=True, exist_ok=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(args.data, config, listen, stop, ready=lambda url: print(f"listening on {url}", flush=True))

    asyncio.run(main())
    return 0


def cmd_invite(args: argparse.Namespace) -> int:
    from coordinator import auth
    from coordinator.store import Store

    if not 1 <= args.count <= 10_000:
        raise SystemExit("invite: --count must be between 1 and 10000")
    config = _config(args)
    store = Store(args.data)
    try:
        for _ in range(args.count):
            print(store.write_sync(auth.create_invite, config.invite_ttl_s, args.note))
    finally:
        store.close()
    return 0


def cmd_campaign(args: argparse.Namespace) -> int:
    from coordinator import campaigns
    from coordinator.store import Store

    store = Store(args.data)
    try:
        action = args.campaign_command
        if action == "add":
            try:
                spec = campaigns.parse_campaign(tomllib.loads(args.file.read_text()))
            except (OSError, tomllib.TOMLDecodeError, campaigns.CampaignError) as exc:
                print(f"error: {args.file}: {exc}", file=sys.stderr)
                return 2
            print(store.write_sync(campaigns.add_campaign, spec))
            return 0
        found = store.write_sync(campaigns.list_campaigns)
        if action == "list":
            if args.json:
                print(json.dumps([campaigns.summary(c) for c in found], indent=1))
            else:
                for c in found:
                    s = campaigns.summary(c)
                    print(f"{s['campaign_id']}\t{s['state']}\t{s['name']}\t{s['targets']} targets\t"
                          f"{','.join(s['tests'])}\tevery {s['interval_s']:.0f} s")
            return 0
        match = [c for c in found if c["campaign_id"] == args.campaign_id]
        if not match:
            print(f"error: no campaign {args.campaign_id}", file=sys.stderr)
            return 1
        if action == "show":
            print(json.dumps({**campaigns.summary(match[0]), "spec": match[0]["spec"]}, indent=1))
            return 0
        if not store.write_sync(campaigns.stop_campaign, args.campaign_id):
            print(f"error: campaign {args.campaign_id} is already stopped", file=sys.stderr)
            return 1
        print(f"stopped {args.campaign_id}")
        return 0
    finally:
        store.close()


def cmd_probes(args: argparse.Namespace) -> int:
    from coordinator.api_read import _probes
    from coordinator.store import Store

    config = _config(args)
    store = Store(args.data)
    try:
        print(json.dumps(store.write_sync(_probes, config.silent_after_s), indent=1))
    finally:
        store.close()
    return 0
