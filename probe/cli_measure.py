"""``python -m probe measure`` and ``python -m probe tests``: a stable scripting interface.

    measure TEST TARGET [--param KEY=VALUE ...] [--json] [--allow-private] [--timeout S] [--config PATH]
    tests [--json]

Exit codes of ``measure`` (see docs/probe-cli.md): 0 the test ran and produced a record (even if
the network failed), 2 usage, parameter or configuration error, 3 the address guard refused the
target, 4 the test could not run (no privilege, budget used up).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_MEASURED = 0
EXIT_USAGE = 2
EXIT_FORBIDDEN = 3
EXIT_CANNOT_RUN = 4
EXIT_CODES = {EXIT_MEASURED: "measured (a record was produced, even if the network failed)",
              EXIT_USAGE: "usage, parameter or configuration error",
              EXIT_FORBIDDEN: "the address guard refused the target",
              EXIT_CANNOT_RUN: "the test could not run (no privilege, budget used up)"}


def register(sub: Any) -> None:
    from probe.probers import names

    measure = sub.add_parser("measure", help="run one test now and print its result",
                             description="Run one measurement test now and print its record.")
    measure.add_argument("test", metavar="TEST", choices=names(), help="test name: " + ", ".join(names()))
    measure.add_argument("target", metavar="TARGET", help="address, host name, host:port or URL, per test")
    measure.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                         help="a test parameter (repeatable); lists are comma-separated")
    measure.add_argument("--json", action="store_true", help="print the record as one line of JSON")
    measure.add_argument("--allow-private", action="store_true",
                         help="lift the address guard for this run only (labs and tests)")
    measure.add_argument("--timeout", type=float, default=None, metavar="S",
                         help="overall timeout in seconds (default: the test's own)")
    measure.add_argument("--config", default=None, metavar="PATH",
                         help="the local probe.toml with the guard's ranges and the caps (default: built-in)")
    measure.set_defaults(func=cmd_measure)

    tests = sub.add_parser("tests", help="list the tests and their parameters",
                           description="List the measurement tests and their parameters.")
    tests.add_argument("--json", action="store_true", help="print the list as JSON")
    tests.set_defaults(func=cmd_tests)


def _error(text: str) -> None:
    print(f"tocsin-probe: {text}", file=sys.stderr)


def cmd_measure(args: argparse.Namespace) -> int:
    import asyncio

    from probe.config import ConfigError, load_config
    from probe.guard import Guard
    from probe.probers.base import ParamsError, TargetForbidden, TestCannotRun
    from probe.runner import parse_param_text, run_test

    try:
        config = load_config(args.config)
        params = parse_param_text(args.test, args.param)
        guard = Guard(config, allow_private=args.allow_private)
        record = asyncio.run(run_test(args.test, args.target, params, guard=guard, timeout_s=args.timeout))
    except ConfigError as exc:
        _error(f"configuration: {exc}")
        return EXIT_USAGE
    except ParamsError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except TargetForbidden as exc:
        _error(f"{exc} (use --allow-private in a lab, or allow_ranges in probe.toml)")
        return EXIT_FORBIDDEN
    except TestCannotRun as exc:
        _error(f"cannot run: {exc}")
        return EXIT_CANNOT_RUN
    if args.json:
        print(json.dumps(record, separators=(",", ":"), ensure_ascii=False))
    else:
        print(summary(record))
    return EXIT_MEASURED


def summary(record: dict[str, Any]) -> str:
    """A readable digest of a record: the verdict line, then the test's top-level keys."""
    verdict = "ok" if record["success"] else f"FAILED {record['failure'] or ''}".rstrip()
    lines = [f"{record['test_name']} {record['target']}: {verdict} ({record['runtime_s']:.3f} s, "
             f"{record['start_time']})"]
    for key, value in record["test_keys"].items():
        plain = isinstance(value, str) and value.isprintable()
        text = value if plain else json.dumps(value, ensure_ascii=False)
        if len(text) > 100:
            text = text[:97] + "..."
        lines.append(f"  {key}: {text}")
    return "\n".join(lines)


def list_tests() -> list[dict[str, Any]]:
    from probe.probers import names
    from probe.runner import describe_test

    out = []
    for name in names():
        try:
            out.append(describe_test(name))
        except ImportError as exc:
            out.append({"name": name, "error": f"not available: {exc}"})
    return out


def cmd_tests(args: argparse.Namespace) -> int:
    tests = list_tests()
    if args.json:
        print(json.dumps(tests, indent=2, ensure_ascii=False))
        return EXIT_MEASURED
    for test in tests:
        if "error" in test:
            print(f"{test['name']}: {test['error']}\n")
            continue
        print(f"{test['name']} {test['version']} - {test['summary']} (timeout {test['default_timeout_s']} s)")
        for p in test["params"]:
            print(f"  {p['name']} ({p['type']}, default {json.dumps(p['default'])}): {p['help']}")
        print()
    return EXIT_MEASURED
