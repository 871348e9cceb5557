"""``events``, ``detect`` and ``import`` commands of ``python -m coordinator``."""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

COMMANDS = ("events", "detect", "import")
IMPORT_BATCH = 5000
SHOWN_REJECTIONS = 20


def register(sub: Any) -> None:
    p = sub.add_parser("events", help="list detected events (shutdowns, throttling, tampering)")
    p.add_argument("--data", required=True, type=Path, help="data directory")
    p.add_argument("--json", action="store_true", help="print JSON (one object with an events list)")
    p.add_argument("--country", help="two-letter country code")
    p.add_argument("--asn", help="AS number (9198 or AS9198)")
    p.add_argument("--kind", help="blackout, domestic_only, throttling, dns_tampering or http_blocking")
    p.add_argument("--state", help="suspected, confirmed or resolved")
    p.add_argument("--since", help="events still going on at or after this time (ISO 8601 UTC or epoch)")
    p.add_argument("--until", help="events that started before this time (ISO 8601 UTC or epoch)")
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("detect", help="re-compute events over a stored period (backtest; idempotent)")
    p.add_argument("--data", required=True, type=Path, help="data directory")
    p.add_argument("--since", required=True, help="start, ISO 8601 UTC or epoch seconds")
    p.add_argument("--until", required=True, help="end, ISO 8601 UTC or epoch seconds")
    p.add_argument("--config", type=Path, help="TOML config file ([verdict] settings)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("import", help="load Tocsin records from a JSONL or JSONL.gz file (idempotent)")
    p.add_argument("--data", required=True, type=Path, help="data directory")
    p.add_argument("file", type=Path, help="JSONL file, gzip-compressed or not ('-' reads stdin)")
    p.set_defaults(func=cmd_import)


def _open_db(data: Path) -> Any:
    from coordinator import db

    return db.open_writer(data)


def _settings(args: argparse.Namespace) -> Any:
    from coordinator.verdict.settings import Settings

    if getattr(args, "config", None) is None and not (args.data / "coordinator.toml").exists():
        return Settings()
    from coordinator.config import load_config
    from coordinator.verdict.settings import from_config

    return from_config(load_config(getattr(args, "config", None), data_dir=args.data))


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _when(ts: float | None) -> str:
    from probe.record import epoch_to_time

    return "-" if ts is None else epoch_to_time(ts)[:19] + "Z"


def cmd_events(args: argparse.Namespace) -> int:
    from coordinator.verdict.queries import FilterError, list_events, parse_filters

    try:
        filters = parse_filters({k: getattr(args, k) for k in ("country", "asn", "kind", "state", "since", "until")})
    except FilterError as exc:
        return _fail(str(exc))
    if not (args.data / "tocsin.db").exists():
        return _fail(f"no database in {args.data}")
    conn = _open_db(args.data)
    try:
        events = list_events(conn, filters, limit=100000)
    finally:
        conn.close()
    if args.json:
        print(json.dumps({"events": events, "count": len(events)}, indent=1, sort_keys=True))
        return 0
    for e in events:
        print(f"{e['event_id']}  {e['kind']:<13} {e['scope_type']:<7} {e['scope']:<18} {e['state']:<9} "
              f"conf {e['confidence']:.2f}  {_when(e['start_ts'])} -> {_when(e['resolved_ts'])}  "
              f"{','.join(e['signals'])}  evidence {e['evidence_count']}")
    print(f"{len(events)} event(s)")
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from coordinator.verdict.queries import FilterError, parse_time_arg
    from coordinator.verdict.run import detect_range

    try:
        since, until = parse_time_arg(args.since, "since"), parse_time_arg(args.until, "until")
        settings = _settings(args)
    except (FilterError, ValueError) as exc:
        return _fail(str(exc))
    if until <= since:
        return _fail("--until must be after --since")
    conn = _open_db(args.data)
    try:
        events, result = detect_range(conn, since, until, settings)
    finally:
        conn.close()
    summary = {"events": len(events), **result.as_dict(),
               "by_kind": {k: sum(1 for e in events if e.kind == k) for k in sorted({e.kind for e in events})}}
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(f"{summary['events']} event(s) in range: {summary['created']} new, {summary['updated']} matched, "
              f"{summary['transitions']} transition(s) written, {summary['retracted']} retracted")
    return 0


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a JSONL file, gzip or plain (by its magic bytes)."""
    if str(path) == "-":
        yield from enumerate((line for line in sys.stdin), 1)
        return
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    with opener(path, "rt", encoding="utf-8") as fh:
        yield from enumerate(fh, 1)


def cmd_import(args: argparse.Namespace) -> int:
    from coordinator.store import insert_measurements

    if str(args.file) != "-" and not args.file.is_file():
        return _fail(f"{args.file}: no such file")
    conn = _open_db(args.data)
    counts = {"inserted": 0, "duplicate": 0, "rejected": 0}
    reasons: list[str] = []

    def flush(batch: list[tuple[int, Any]]) -> None:
        out = insert_measurements(conn, [r for _, r in batch])
        counts["inserted"] += len(out.inserted)
        counts["duplicate"] += len(out.duplicates)
        counts["rejected"] += len(out.rejected)
        for index, reason in out.rejected:
            line = batch[index][0] if index >= 0 else "?"
            reasons.append(f"line {line}: {reason}")

    try:
        batch: list[tuple[int, Any]] = []
        for number, text in read_lines(args.file):
            if not text.strip():
                continue
            try:
                batch.append((number, json.loads(text)))
            except ValueError as exc:
                counts["rejected"] += 1
                reasons.append(f"line {number}: invalid JSON: {exc}")
                continue
            if len(batch) >= IMPORT_BATCH:
                flush(batch)
                batch = []
        if batch:
            flush(batch)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        return _fail(f"{args.file}: {exc}")
    finally:
        conn.close()
    print(json.dumps({**counts, "reasons": reasons[:SHOWN_REJECTIONS]}, sort_keys=True))
    for reason in reasons[:SHOWN_REJECTIONS]:
        print(f"rejected {reason}", file=sys.stderr)
    return 1 if counts["rejected"] else 0
