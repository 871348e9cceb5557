"""``python -m coordinator`` / ``tocsin-coordinator``: one parser, sub-commands from feature modules.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)`` which adds its commands,
each with ``set_defaults(func=callable(args) -> int)``.  Modules keep heavy imports inside their
functions so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from probe.plugins import build_command_line, run_command_line

COMMAND_MODULES = (
    "coordinator.cli_core",      # serve, invite, campaign, probes, measurements, quickstart
    "coordinator.verdict.cli",   # events, detect, import
    "coordinator.atlas.cli",     # atlas ...
    "coordinator.archive.cli",   # archive ..., download
)


def build_parser() -> argparse.ArgumentParser:
    return build_command_line("tocsin-coordinator", "Tocsin coordinator", COMMAND_MODULES)


def main(argv: list[str] | None = None) -> int:
    return run_command_line(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
