"""params.yaml -> validated, then `dvc repro`, then the headline and findings tables printed from the store."""

from __future__ import annotations

import argparse

from expertlab import layout
import os
import subprocess
import sys

HELP = "validate params.yaml, run `dvc repro` and print the headline and findings tables"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", metavar="FILE")
    parser.add_argument("--store", default=str(layout.STORE), metavar="FILE")
    parser.add_argument("--queries", default="queries", metavar="DIR", help="where report.print's tables are defined")
    parser.add_argument(
        "dvc_args", nargs=argparse.REMAINDER,
        help="arguments for `dvc repro` (default: the report stage and everything it needs)",
    )


def run(args: argparse.Namespace) -> int:
    from expertlab.study import check_study

    params, _ = check_study(args.params, args.queries)
    # stage commands call `expertlab`: make the running interpreter's scripts dir visible to them
    env = dict(os.environ, PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    # `report` and its ancestors: the whole study, and the toy model only when study.models lists it
    code = subprocess.call([sys.executable, "-m", "dvc", "repro", *(args.dvc_args or ["report"])], env=env)
    if code != 0:
        print(f"expertlab run: dvc repro failed (exit {code})", file=sys.stderr)
        return code
    from expertlab.report import print_table

    for name in params.report.print:
        print()
        print_table(args.store, name, args.queries, params.report.variables())
    return 0
