"""``python -m coordinator archive build|list|verify|key`` and ``python -m coordinator download``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# Sub-command -> help line; docs/archives.md is tested against this table.
COMMANDS = {
    "archive build": "build a daily, campaign or range bundle and sign it",
    "archive list": "list the bundles in the data dir",
    "archive verify": "check a bundle's signature, checksums and row counts",
    "archive key": "print the coordinator's public signing key (base64)",
    "download": "download a bundle over HTTP with resume, then verify it",
}


def register(sub: Any) -> None:
    archive = sub.add_parser("archive", help="researchers' archives")
    asub = archive.add_subparsers(dest="archive_command", metavar="ARCHIVE_COMMAND", required=True)

    b = asub.add_parser("build", help=COMMANDS["archive build"])
    b.add_argument("--data", required=True, help="coordinator data dir")
    which = b.add_mutually_exclusive_group(required=True)
    which.add_argument("--day", help="UTC day YYYY-MM-DD (daily bundle)")
    which.add_argument("--yesterday", action="store_true", help="the daily bundle of yesterday (UTC)")
    which.add_argument("--campaign", help="campaign id (per-campaign bundle)")
    which.add_argument("--since", help="ISO start of a range bundle (with --until)")
    b.add_argument("--until", help="ISO end of a range bundle")
    b.add_argument("--formats", help="comma list of jsonl,parquet,csv,atlas (default: the [archive] setting)")
    b.set_defaults(func=cmd_build)

    ls = asub.add_parser("list", help=COMMANDS["archive list"])
    ls.add_argument("--data", required=True)
    ls.add_argument("--json", action="store_true", help="one JSON object per bundle")
    ls.set_defaults(func=cmd_list)

    v = asub.add_parser("verify", help=COMMANDS["archive verify"])
    v.add_argument("bundle", help="a bundle folder, or a bundle name with --data")
    v.add_argument("--data", help="coordinator data dir (to name a bundle and pin the coordinator's key)")
    v.add_argument("--key", help="expected public key: base64, PEM, or a file holding either")
    v.add_argument("--quick", action="store_true", help="checksums and signature only, no row counts")
    v.set_defaults(func=cmd_verify)

    k = asub.add_parser("key", help=COMMANDS["archive key"])
    k.add_argument("--data", required=True)
    k.set_defaults(func=cmd_key)

    d = sub.add_parser("download", help=COMMANDS["download"])
    d.add_argument("url", help="bundle URL: http://HOST:PORT/api/v1/archives/NAME")
    d.add_argument("--out", required=True, help="folder to download into (the bundle goes in OUT/NAME)")
    d.add_argument("--key", help="expected public key (base64, PEM or file); strongly recommended")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_download)


def _settings(data: str) -> Any:
    """The ``[archive]`` section of ``DATA/coordinator.toml`` (and environment), or the defaults."""
    from coordinator.archive.settings import from_config

    try:
        from coordinator.config import load_config
    except ImportError:
        return from_config(None)
    return from_config(load_config(data_dir=data))


def _epoch(text: str) -> float:
    from datetime import UTC, datetime

    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def cmd_build(args: argparse.Namespace) -> int:
    from coordinator import db as dbmod
    from coordinator.archive import build

    settings = _settings(args.data)
    fmts = args.formats.split(",") if args.formats else None
    try:
        if fmts:
            type(settings)(formats=fmts)          # validates the names
        if args.day or args.yesterday:
            spec = build.daily_spec(build.parse_day(args.day) if args.day else build.yesterday())
        elif args.campaign:
            conn = dbmod.connect(dbmod.db_path(args.data), readonly=True)
            try:
                spec = build.campaign_spec(conn, args.campaign)
            finally:
                conn.close()
        else:
            if not args.until:
                raise build.BuildError("--since needs --until")
            spec = build.range_spec(_epoch(args.since), _epoch(args.until))
        path = build.build(args.data, spec, settings, formats_=fmts)
    except (build.BuildError, ValueError) as exc:
        print(f"archive build: {exc}", file=sys.stderr)
        return 2
    m = json.loads((path / "manifest.json").read_text())
    print(f"built {path} - {m['counts']['measurements']} measurements, {m['counts']['events']} events, "
          f"{len(m['files'])} files, withheld by embargo: {sum(m['embargo']['withheld'].values())}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from coordinator.archive.build import list_bundles

    bundles = list_bundles(args.data, _settings(args.data))
    if args.json:
        for b in bundles:
            print(json.dumps(b, sort_keys=True))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "kind", "since", "until", "measurements", "events", "MB", "key")
    for b in bundles:
        table.add_row(b["name"], b["kind"], b["time_range"]["since"], b["time_range"]["until"],
                      str(b["counts"]["measurements"]), str(b["counts"]["events"]), f"{b['bytes'] / 1e6:.1f}",
                      b["key_id"])
    Console().print(table)
    return 0


def read_key_arg(value: str | None) -> str | None:
    if value is None:
        return None
    path = Path(value)
    return path.read_text() if len(value) < 4096 and path.is_file() else value


def cmd_verify(args: argparse.Namespace) -> int:
    from coordinator.archive import manifest, signing
    from coordinator.archive.build import archive_root

    root = Path(args.bundle)
    key = read_key_arg(args.key)
    if args.data:
        if not root.is_dir():
            root = archive_root(args.data, _settings(args.data)) / args.bundle
        if key is None:
            key = signing.public_key_b64(signing.load_or_create_key(args.data))
    try:
        report = manifest.verify_bundle(root, key, deep=not args.quick)
    except signing.SignatureError as exc:
        print(f"archive verify: {exc}", file=sys.stderr)
        return 2
    for problem in report.problems:
        print(f"FAIL {problem}")
    if report.ok:
        note = "" if report.pinned else " (signature checked against the key in the manifest only: pin it with --key)"
        print(f"OK {root}: {report.files_checked} files, {report.measurements} measurements, key {report.key_id}{note}")
        return 0
    return 1


def cmd_key(args: argparse.Namespace) -> int:
    from coordinator.archive import signing

    print(signing.public_key_b64(signing.load_or_create_key(args.data)))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from coordinator.archive import download

    try:
        return download.download(args.url, Path(args.out), key=read_key_arg(args.key), progress=not args.quiet)
    except download.DownloadError as exc:
        print(f"download: {exc}", file=sys.stderr)
        return 2
