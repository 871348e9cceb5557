"""``python -m probe`` / ``tocsin-probe``: one parser, sub-commands from feature modules.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)`` which adds its commands,
each with ``set_defaults(func=callable(args) -> int)``.  Modules keep heavy imports inside their
functions so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from probe.plugins import build_command_line, run_command_line

COMMAND_MODULES = (
    "probe.cli_measure",         # measure, tests
    "probe.agent.cli",           # register, run, status
)


def build_parser() -> argparse.ArgumentParser:
    return build_command_line("tocsin-probe", "Tocsin probe", COMMAND_MODULES)


def main(argv: list[str] | None = None) -> int:
    return run_command_line(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
