"""params.yaml -> validated, then `dvc repro`, then the headline and findings tables printed from the store."""

from __future__ import annotations

import argparse
import subprocess
import sys

from expertlab import layout, warm

HELP = "validate params.yaml, run `dvc repro` and print the headline and findings tables"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", metavar="FILE")
    parser.add_argument("--store", default=str(layout.STORE), metavar="FILE")
    parser.add_argument("--queries", default="queries", metavar="DIR", help="where report.print's tables are defined")
    parser.add_argument(
        "--cold", action="store_true",
        help="run each stage command in a process of its own instead of a fork of one warm process "
        "(same results, slower: every command imports torch and transformers again)",
    )
    parser.add_argument(
        "dvc_args", nargs=argparse.REMAINDER,
        help="arguments for `dvc repro` (default: the report stage and everything it needs)",
    )


def run(args: argparse.Namespace) -> int:
    from expertlab.study import check_study

    params, _ = check_study(args.params, args.queries)
    from expertlab.dispatch.worker import dvc_environment

    env = dvc_environment()  # stage commands call `expertlab`: the running interpreter's scripts dir first on PATH
    # `report` and its ancestors: the whole study, and the toy model only when study.models lists it
    repro = [sys.executable, "-m", "dvc", "repro", *(args.dvc_args or ["report"])]
    if args.cold:
        code = subprocess.call(repro, env=env)
    else:
        with warm.process(env) as (warm_env, log):
            code = subprocess.call(repro, env=warm_env)
            _say_how_commands_ran(warm.read_log(log), warm.read_log(warm.times_path(log)))
    if code != 0:
        print(f"expertlab run: dvc repro failed (exit {code})", file=sys.stderr)
        return code
    from expertlab.report import print_table

    for name in params.report.print:
        print()
        print_table(args.store, name, args.queries, params.report.variables())
    return 0


def _say_how_commands_ran(records: list[dict], times: list[dict]) -> None:
    """How many stage commands ran warm, which went cold and why, and where the warm ones' time went, by command."""
    refused = [record for record in records if "refused" in record]
    print(f"expertlab run: {len(records) - len(refused)} stage commands ran in the warm process", file=sys.stderr)
    for record in refused:
        print(f"expertlab run: cold: expertlab {' '.join(record['argv'])}: {record['refused']}", file=sys.stderr)
    spent: dict[str, list[float]] = {}
    for record in times:
        spent.setdefault(record["argv"][0], []).append(record["seconds"])
    if spent:
        by_command = sorted(spent.items(), key=lambda item: -sum(item[1]))
        print(
            "expertlab run: time by command: "
            + ", ".join(f"{name} {sum(spans):.0f} s ({len(spans)})" for name, spans in by_command),
            file=sys.stderr,
        )
