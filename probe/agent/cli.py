"""``python -m probe register | run | status`` (docs/agent.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

REGISTER_PATH = "/api/v1/register"


def register(sub: Any) -> None:
    p = sub.add_parser("register", help="register this probe with a coordinator (one-use invite)")
    p.add_argument("--coordinator", required=True, action="append",
                   help="coordinator URL; repeat for fallbacks (names or literal addresses), tried in order")
    p.add_argument("--invite", required=True, help="invite token from `python -m coordinator invite`")
    p.add_argument("--state", required=True, type=Path, help="state directory (key, outbox, schedule)")
    p.add_argument("--cc", help="country you believe the probe is in (ISO alpha-2); the coordinator also observes it")
    p.add_argument("--asn", type=int, help="your network's AS number, if you know it")
    p.add_argument("--access", default="fixed", choices=("fixed", "mobile", "datacenter"), help="access type")
    p.add_argument("--tag", action="append", default=[], help="free tag (repeatable), e.g. --tag battery")
    p.add_argument("--name", help="a name for the probe, seen only by the coordinator's operators")
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("run", help="run the probe agent: schedule, tests, outbox, uploads")
    p.add_argument("--state", required=True, type=Path, help="state directory made by `register`")
    p.add_argument("--outbox-quota-bytes", type=int, default=512 * 2**20, help="outbox disk quota (oldest evicted first)")
    p.add_argument("--batch-items", type=int, default=2000, help="most items per upload batch")
    p.add_argument("--poll-interval", type=float, default=None, help="override the coordinator's poll interval (s)")
    p.add_argument("--metrics-listen", default=None, help="HOST:PORT for Prometheus /metrics (needs prometheus-client)")
    p.add_argument("--max-runtime", type=float, default=None, help="stop after this many seconds")
    p.add_argument("-v", "--verbose", action="store_true", help="log each poll and upload, and tests that could not run")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("endpoints", help="show or change the coordinator endpoints (primary first, then fallbacks)")
    p.add_argument("--state", required=True, type=Path, help="state directory")
    p.add_argument("--add", action="append", default=[], metavar="URL",
                   help="append a fallback endpoint, e.g. an in-country replica (repeatable)")
    p.add_argument("--remove", action="append", default=[], metavar="URL", help="remove an endpoint (repeatable)")
    p.set_defaults(func=cmd_endpoints)

    p = sub.add_parser("status", help="what is buffered, since when, the last upload and its outcome")
    p.add_argument("--state", required=True, type=Path, help="state directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_status)


async def do_register(endpoints: list[str], invite: str, state: Path, declared: dict[str, Any]) -> dict[str, Any]:
    """Register (or, if ``state`` already holds an identity, refuse); returns the identity document."""
    from probe import signing
    from probe.agent import identity as ident
    from probe.agent.client import Client

    if (state / ident.IDENTITY_FILE).exists():
        raise ident.IdentityError(f"{state} is already registered; use another --state directory")
    key = ident.ensure_key(state)
    body = json.dumps({"invite": invite, "public_key": signing.public_key_b64(key), **declared}).encode()
    async with Client(endpoints, key) as client:
        ans = await client.post(REGISTER_PATH, body)
    if ans.status != 201:
        raise ident.IdentityError(f"registration refused (HTTP {ans.status}): {ans.doc.get('error', ans.doc)}")
    probe = ans.doc["probe"]
    # kept in the order given: the first is the primary, the others fallbacks (docs/agent.md)
    identity = ident.Identity(probe_id=probe["probe_id"], endpoints=list(dict.fromkeys(e.rstrip("/") for e in endpoints)),
                              probe=probe, registered_ts=time.time())
    identity.save(state)
    return {"probe_id": identity.probe_id, "probe": probe, "state": str(state)}


def cmd_register(args: argparse.Namespace) -> int:
    from probe.agent.client import Unreachable
    from probe.agent.identity import IdentityError

    declared = {k: v for k, v in (("cc", args.cc), ("asn", args.asn), ("access", args.access), ("tags", args.tag),
                                  ("name", args.name), ("software", "tocsin-probe/0.1.0")) if v is not None}
    try:
        doc = asyncio.run(do_register(args.coordinator, args.invite, args.state, declared))
    except (IdentityError, Unreachable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(doc))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from probe.agent.identity import IdentityError
    from probe.agent.service import Agent

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    async def main() -> None:
        agent = Agent(args.state, quota_bytes=args.outbox_quota_bytes, metrics_listen=args.metrics_listen,
                      batch_items=args.batch_items, poll_interval_s=args.poll_interval)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await agent.run(stop, max_runtime_s=args.max_runtime)

    try:
        asyncio.run(main())
    except IdentityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from probe.agent.status import read_status, render

    doc = read_status(args.state)
    print(json.dumps(doc, indent=1, sort_keys=True) if args.json else render(doc))
    return 0 if doc.get("probe_id") else 1


def cmd_endpoints(args: argparse.Namespace) -> int:
    """Print the endpoints (one a line, primary first) after applying --add/--remove; a running
    agent takes the change at its next start."""
    from probe.agent import identity as ident

    try:
        identity, _ = ident.load(args.state)
    except ident.IdentityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    endpoints = [e for e in identity.endpoints if e not in {r.rstrip("/") for r in args.remove}]
    for url in args.add:
        if not url.startswith(("http://", "https://")):
            print(f"error: {url} is not an http(s) URL", file=sys.stderr)
            return 2
        endpoints.append(url.rstrip("/"))
    endpoints = list(dict.fromkeys(endpoints))
    if not endpoints:
        print("error: a probe needs at least one endpoint", file=sys.stderr)
        return 2
    if endpoints != identity.endpoints:
        identity.endpoints = endpoints
        identity.save(args.state)
    print("\n".join(endpoints))
    return 0
