"""params.yaml (+ queries/) -> validated grid summary, and with --out a record that the params passed.
Runs as the DAG's first stage too: `dvc repro` after any edit of params.yaml re-runs it, fails naming
a bad key, and otherwise writes the same record, so no other stage re-runs on its account.
"""

from __future__ import annotations

import argparse

HELP = "validate params.yaml against the registries and print the grid it declares"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", metavar="FILE")
    parser.add_argument("--queries", default="queries", metavar="DIR", help="where report.print's tables are defined")
    parser.add_argument("--out", metavar="FILE", help="write a record that the params passed (the DAG's check stage)")


def run(args: argparse.Namespace) -> int:
    from expertlab.errors import ExpertlabError
    from expertlab.io import write_json
    from expertlab.study import check_study, grid_lines, grid_summary, not_there_yet

    params, missing = check_study(args.params, args.queries, allow_missing=True)
    print(f"{args.params}: ok — {grid_summary(params)}")
    for line in grid_lines(params):
        print(f"  {line}")
    for line in missing:
        print(f"  not there yet: {line}")
    if missing:
        raise ExpertlabError(not_there_yet(args.params, missing))
    if args.out:  # the same bytes for every valid params file: stages downstream re-run only for the keys they track
        write_json(args.out, {"params": args.params, "valid": True})
    return 0
