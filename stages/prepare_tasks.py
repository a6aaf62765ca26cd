"""One task group's items, from local copies of the official files (or the toy world) -> OUT/<task>.jsonl
(+ <task>.fewshot.jsonl for lm-eval's shots) + OUT/meta.json (item counts, sources, resolved task options)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "materialise one task group's items from the benchmarks' local files (or the toy world) as JSONL"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", metavar="FILE", help="study params (default params.yaml)")
    parser.add_argument("--group", required=True, metavar="NAME", help="task group of study.tasks")
    parser.add_argument("--toy-tasks", default="data/toy/tasks", metavar="DIR", help="toy-world task files (prepare's)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory, e.g. data/tasks/<group>")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from expertlab.io import atomic_dir, read_jsonl, write_json, write_jsonl
    from expertlab.params import load_params
    from expertlab.tasks import TASKS, check_items

    params = load_params(args.params)
    if args.group not in params.study.tasks:
        raise ValueError(f"--group: {args.group!r} is not a group of study.tasks ({', '.join(params.study.tasks)})")
    evaluation = params.evaluation
    counts: dict[str, int] = {}
    sources: dict[str, str] = {}
    resolved: dict[str, dict] = {}
    with atomic_dir(args.out, owner="prepare-tasks", inputs=[args.params, args.toy_tasks, evaluation.data_dir]) as tmp:
        for name in tqdm(params.study.tasks[args.group], desc=f"prepare {args.group}", unit="task"):
            task = TASKS[name]
            options = evaluation.task_options(name)
            runner = task.runner_for(options)
            resolved[name] = options
            if task.source == "toy":
                where = Path(args.toy_tasks) / f"{name}.jsonl"
                items = read_jsonl(where)
            else:
                source_dir = evaluation.source_dir(task.source)
                if not source_dir.is_dir():
                    raise FileNotFoundError(
                        f"task {name}: no local copy of source {task.source!r} at {source_dir} "
                        f"(place the official files there, or set evaluation.sources.{task.source})"
                    )
                context = task.context(evaluation.seed, evaluation.options.get(name))
                items = task.load(source_dir, context)  # type: ignore[misc]
                if task.fewshot is not None and runner == "lm_eval":
                    pool = check_items(task, task.fewshot(source_dir, context), f"{name} few-shot pool", runner)
                    write_jsonl(tmp / f"{name}.fewshot.jsonl", pool)
                where = source_dir
                sources[name] = str(source_dir)
            if not items:
                raise ValueError(f"task {name}: no items in {where}")
            write_jsonl(tmp / f"{name}.jsonl", check_items(task, items, f"task {name} ({where})", runner))
            counts[name] = len(items)
        # The options travel with the items, so a change reaches only the generate stages of this group.
        meta = {"kind": "task_items", "group": args.group, "items": counts, "sources": sources, "options": resolved}
        write_json(tmp / "meta.json", meta)
    listing = ", ".join(f"{name} {count}" for name, count in counts.items())
    print(f"prepare-tasks: {args.group}: {listing} -> {args.out}")
    return 0
