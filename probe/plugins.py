"""Optional feature modules: import one if it is in this installation, and build a command line
from the ones that are.  Used by both command lines and by the coordinator's app and config."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterable
from types import ModuleType


def import_optional(name: str) -> ModuleType | None:
    """The module ``name``, or None when that module itself is not installed (a probe-only
    install has no coordinator features).  An import error *inside* the module still raises."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            return None
        raise


def build_command_line(prog: str, description: str, modules: Iterable[str]) -> argparse.ArgumentParser:
    """One parser whose sub-commands come from ``modules``: each exposes ``register(subparsers)``,
    adding commands with ``set_defaults(func=callable(args) -> int)``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        module = import_optional(name)
        if module is not None:
            module.register(sub)
    return parser


def run_command_line(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result
