"""``python -m lab up | down | run SCENARIO [--live] [--keep] | list | scorecard [SCENARIO ...]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lab import netns
from lab.runner import RESULTS_DIR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab", description="Tocsin's emulated country")
    parser.add_argument("--prefix", default="tl", help="name prefix of namespaces and veths (default tl)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("up", help="bring the topology up (with target services) and leave it running")
    sub.add_parser("down", help="remove everything of the prefix: processes, namespaces, veths, state")
    sub.add_parser("list", help="list the scenarios")
    r = sub.add_parser("run", help="run one scenario: topology, coordinator, probes, timeline, teardown")
    r.add_argument("scenario", help="scenario name (lab/scenarios/NAME.toml) or a .toml path")
    r.add_argument("--live", action="store_true", help="print the verdict timeline as it unfolds")
    r.add_argument("--keep", action="store_true", help="leave the lab up after the run")
    r.add_argument("--no-atlas", action="store_true", help="run without the RIPE Atlas stand-in (Tocsin's own signals only)")
    r.add_argument("--replica", action=argparse.BooleanOptionalAction, default=True,
                   help="run the in-country coordinator replica (docs/replica.md; default on, --no-replica leaves it out)")
    r.add_argument("--results", type=Path, default=RESULTS_DIR, help=f"results directory (default {RESULTS_DIR})")
    s = sub.add_parser("scorecard", help="run scenarios (default: all) and print expected vs found events")
    s.add_argument("scenarios", nargs="*", help="scenario names (default: every scenario)")
    s.add_argument("--no-run", action="store_true", help="only score results already in --results")
    s.add_argument("--results", type=Path, default=RESULTS_DIR, help=f"results directory (default {RESULTS_DIR})")
    s.add_argument("--json", action="store_true", help="print the scorecard as JSON")
    s.add_argument("--replica", action=argparse.BooleanOptionalAction, default=True,
                   help="run the in-country coordinator replica (docs/replica.md; default on, --no-replica leaves it out)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except netns.LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    from lab import scenario

    if args.command == "list":
        for name in scenario.names():
            sc = scenario.load(name)
            kind = "negative" if sc.negative else f"{len(sc.expects)} expected"
            print(f"{name:<24} {sc.duration_s:>5.0f} s  {kind:<12} {sc.description}")
        return 0
    netns.check_prefix(args.prefix)
    if args.command == "down":
        netns.require_root()
        print(json.dumps(netns.cleanup(args.prefix)))
        return 0
    if args.command == "up":
        from lab.build import Lab
        from lab.procs import Procs
        from lab.services import start_services
        from lab.topology import kazakhstan

        lab = Lab(kazakhstan(), args.prefix)
        lab.up()
        start_services(lab, Procs(args.prefix, lab.workdir))
        print(f"lab up: {len(lab.topo.nodes)} namespaces {args.prefix}-*; `python -m lab down` removes it")
        return 0
    if args.command == "run":
        from lab.build import Lab
        from lab.runner import Run
        from lab.topology import kazakhstan

        sc = scenario.load(args.scenario, Lab(kazakhstan(), args.prefix))
        result = Run(sc, prefix=args.prefix, live=args.live, keep=args.keep, results_dir=args.results,
                     with_atlas=not args.no_atlas, with_replica=args.replica).execute()
        from lab.scorecard import render, score

        print(render([score(result)]))
        return 0
    from lab.scorecard import run_scorecard

    return run_scorecard(args.scenarios or scenario.names(), prefix=args.prefix, results_dir=args.results,
                         run=not args.no_run, as_json=args.json, with_replica=args.replica)


if __name__ == "__main__":
    sys.exit(main())
