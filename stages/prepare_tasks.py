"""One task group's items, from local copies of the official files (or the toy world) -> OUT/<task>.jsonl
(+ <task>.fewshot.jsonl for lm-eval's shots) + OUT/meta.json (item counts, sources, resolved task options)."""

from __future__ import annotations

import argparse

from expertlab import layout

HELP = "materialise one task group's items from the benchmarks' local files (or the toy world) as JSONL"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", metavar="FILE", help="study params (default params.yaml)")
    parser.add_argument("--group", required=True, metavar="NAME", help="task group of study.tasks")
    parser.add_argument("--toy-tasks", default=str(layout.TOY_TASKS), metavar="DIR", help="toy-world task files (prepare's)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory, e.g. data/tasks/<group>")


def run(args: argparse.Namespace) -> int:
    from expertlab.params import load_params
    from expertlab.tasks.prepare import prepare_group

    counts = prepare_group(load_params(args.params), args.params, args.group, args.toy_tasks, args.out)
    listing = ", ".join(f"{name} {count}" for name, count in counts.items())
    print(f"prepare-tasks: {args.group}: {listing} -> {args.out}")
    return 0
