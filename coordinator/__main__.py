"""``python -m coordinator`` / ``tocsin-coordinator``: one parser, sub-commands from feature modules.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)`` which adds its commands,
each with ``set_defaults(func=callable(args) -> int)``.  Modules keep heavy imports inside their
functions so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = (
    "coordinator.cli_core",      # serve, invite, campaign, probes, measurements, quickstart
    "coordinator.verdict.cli",   # events, detect, import
    "coordinator.atlas.cli",     # atlas ...
    "coordinator.archive.cli",   # archive ..., download
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tocsin-coordinator", description="Tocsin coordinator")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # that feature is not installed in this tree
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
