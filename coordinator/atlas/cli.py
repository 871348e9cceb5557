"""``python -m coordinator atlas import|fetch|stream|signals|loop`` (docs/atlas.md)."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import Any

COMMANDS = {
    "import": "import Atlas result, connection-event and probe files (JSON array or JSON lines), idempotently",
    "fetch": "fetch once from the Atlas API: watched countries' probes, connection events, results",
    "stream": "follow the live Atlas stream for a while, storing connection events and results",
    "signals": "print the Atlas signals for a time range (JSON lines)",
    "loop": "run the closed loop once: one-offs for new suspected events, fetch their results",
}


def register(sub: Any) -> None:
    p = sub.add_parser("atlas", help="RIPE Atlas: import, fetch, stream, signals, closed loop")
    asub = p.add_subparsers(dest="atlas_command", metavar="ATLAS_COMMAND", required=True)
    for name, text in COMMANDS.items():
        a = asub.add_parser(name, help=text, description=text)
        a.add_argument("--data", required=True, type=Path, help="data directory")
        a.add_argument("--config", type=Path, help="TOML config file (default DATA/coordinator.toml if present)")
        a.set_defaults(func=globals()[f"cmd_{name}"])
        if name == "import":
            a.add_argument("files", nargs="+", type=Path, metavar="FILE")
        if name == "fetch":
            a.add_argument("--since", help="ISO time or epoch to fetch from (default: the stored cursor)")
        if name == "stream":
            a.add_argument("--seconds", type=float, default=60.0, help="how long to follow the stream")
        if name == "signals":
            a.add_argument("--since", required=True, help="ISO time or epoch")
            a.add_argument("--until", required=True, help="ISO time or epoch")


def _epoch(text: str) -> float:
    from datetime import UTC, datetime

    try:
        return float(text)
    except ValueError:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _settings(args: argparse.Namespace) -> Any:
    from coordinator.config import load_config

    return load_config(args.config, data_dir=args.data).section("atlas")


def _print(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")


def cmd_import(args: argparse.Namespace) -> int:
    from coordinator.atlas.importer import import_paths
    from coordinator.store import Store

    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        print(f"atlas import: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    store = Store(args.data)
    try:
        counts = store.write_sync(import_paths, list(args.files))
    finally:
        store.close()
    _print(counts.as_dict())
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from coordinator.atlas.client import Client
    from coordinator.atlas.fetch import fetch_once
    from coordinator.store import Store

    settings = _settings(args)
    store = Store(args.data)
    try:
        counts = fetch_once(store, Client(settings), settings, since=_epoch(args.since) if args.since else None)
    finally:
        store.close()
    _print(counts.as_dict())
    return 1 if any(r.startswith("fetch ") for r in counts.reasons) else 0


def cmd_stream(args: argparse.Namespace) -> int:
    from coordinator.atlas.service import STREAM_CURSOR, Status, stream_handler
    from coordinator.atlas.storage import get_state
    from coordinator.atlas.stream import run_stream
    from coordinator.store import Store

    settings = _settings(args)
    store = Store(args.data)
    status = Status()
    try:
        resume = store.write_sync(lambda c: get_state(c, STREAM_CURSOR))
        stats = run_stream(settings, stream_handler(store, status), stop=threading.Event(), resume_ts=resume,
                           max_seconds=args.seconds)
    finally:
        store.close()
    _print({"connects": stats.connects, "received": stats.received, "stored": stats.delivered,
            "duplicates_dropped": stats.duplicates_dropped, "errors": stats.errors})
    return 0


def cmd_signals(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from coordinator.atlas import signals
    from coordinator.store import Store

    signals.use_settings(_settings(args))
    store = Store(args.data)
    try:
        found = signals.atlas_signals(store.reader(), _epoch(args.since), _epoch(args.until))
    finally:
        store.close()
    for sig in found:
        _print(asdict(sig))
    return 0


def cmd_loop(args: argparse.Namespace) -> int:
    from coordinator.atlas.client import Client
    from coordinator.atlas.closedloop import run_once
    from coordinator.store import Store

    settings = _settings(args)
    store = Store(args.data)
    try:
        report = run_once(store, Client(settings), settings)
    finally:
        store.close()
    _print({"created": report.created, "results": report.results, "credits": report.credits,
            "skipped": report.skipped})
    return 0
