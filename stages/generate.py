"""Model dir + one task group's JSONL files -> OUT/generations.jsonl (one row per task item) + OUT/meta.json."""

from __future__ import annotations

import argparse

from stages.common import add_params_argument, load_optional_params, section

HELP = "greedy generations of a model (variant) for evaluation tasks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from expertlab.generate import backends

    parser.add_argument("model_dir", metavar="MODEL_DIR", help="Hugging Face model directory")
    parser.add_argument("--tasks-dir", required=True, metavar="DIR", help="directory holding <task>.jsonl files")
    tasks = parser.add_mutually_exclusive_group()
    tasks.add_argument("--tasks", metavar="T1,T2,...", help="comma-separated task names")
    tasks.add_argument("--group", metavar="NAME", help="the tasks of one group of study.tasks (needs --params)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--backend", choices=backends().names(), help="generation backend (default: generate.backend)")
    parser.add_argument("--batch-size", type=int, help="prompts per generate call (default: generate.batch_size)")
    parser.add_argument("--limit", type=int, help="first N items of each task (default: generate.limit)")
    parser.add_argument("--variant-meta", metavar="FILE.json", help="variant identity to record (default: MODEL_DIR/expertlab_variant.json, else the source model)")
    parser.add_argument("--partial-dir", default=".expertlab/partial", metavar="DIR", help="where finished tasks of an interrupted run are kept, so a re-run resumes")
    add_params_argument(parser)


def run(args: argparse.Namespace) -> int:
    from expertlab.generate.run import generate_group, parse_task_names

    params = load_optional_params(args)
    settings = section(params, "generate", backend=args.backend, batch_size=args.batch_size, limit=args.limit)
    if args.tasks:
        names = parse_task_names(args.tasks)
    elif params:
        names = params.study.tasks_of(args.group) if args.group else params.study.task_names
    else:
        raise ValueError("no tasks: pass --tasks, or --params (with --group for one group)")
    generate_group(args.model_dir, args.tasks_dir, names, args.out, settings, params, args.variant_meta, args.group or "", args.partial_dir)
    return 0
