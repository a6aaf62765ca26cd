"""Model dir + one task group's JSONL files -> OUT/generations.jsonl (one row per task item) + OUT/meta.json."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from stages.common import add_params_argument, load_optional_params, variant_record

HELP = "greedy generations of a model (variant) for evaluation tasks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="Hugging Face model directory")
    parser.add_argument("--tasks-dir", required=True, metavar="DIR", help="directory holding <task>.jsonl files")
    tasks = parser.add_mutually_exclusive_group()
    tasks.add_argument("--tasks", metavar="T1,T2,...", help="comma-separated task names")
    tasks.add_argument("--group", metavar="NAME", help="the tasks of one group of study.tasks (needs --params)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--backend", choices=("hf", "vllm"), help="generation backend (default hf or generate.backend)")
    parser.add_argument("--batch-size", type=int, help="prompts per generate call (default 32 or generate.batch_size)")
    parser.add_argument("--limit", type=int, help="first N items of each task (default all or generate.limit)")
    parser.add_argument(
        "--variant-meta",
        metavar="FILE.json",
        help="variant identity to record (default: MODEL_DIR/expertlab_variant.json, else the source model)",
    )
    parser.add_argument(
        "--partial-dir",
        default=".expertlab/partial",
        metavar="DIR",
        help="where finished tasks of an interrupted run are kept, so a re-run resumes (default .expertlab/partial)",
    )
    add_params_argument(parser)


def parse_task_names(text: str) -> list[str]:
    """Task names from a comma list, each checked against the registry (a miss lists the allowed names)."""
    from expertlab.tasks import TASKS

    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError("--tasks: no task names given")
    for name in names:
        if name not in TASKS:
            raise ValueError(f"--tasks: {TASKS.unknown_message(name)}")
    if len(set(names)) != len(names):
        raise ValueError(f"--tasks: a task is named twice in {names}")
    return names


def read_task_items(path: Path, limit: int | None = None, runner: str | None = None) -> list[dict[str, Any]]:
    """Task items of one task file (the item format of expertlab.tasks, as `runner` needs them), checked,
    the first `limit` of them."""
    from expertlab.io import read_jsonl
    from expertlab.tasks import TASKS, check_items

    if not path.is_file():
        raise FileNotFoundError(f"missing task file: {path}")
    items = read_jsonl(path)
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("id"), int):
            item["id"] = str(item["id"])
    name = path.name.removesuffix(".jsonl")
    if name in TASKS:
        check_items(TASKS[name], items, str(path), runner)  # type: ignore[arg-type]
    for item in items:
        item.setdefault("choices", None)
    return items if limit is None else items[:limit]


def budget(params: Any, variant: dict[str, Any], task: str) -> int:
    """A task's generation budget for this model: the model's own (models.<name>.max_new_tokens) or the
    task's, capped by generate.max_new_tokens."""
    from expertlab.tasks import TASKS

    tokens = TASKS[task].max_new_tokens
    if params is None:
        return tokens
    model = params.models.get(variant.get("model"))
    if model is not None:
        tokens = model.max_new_tokens.get(task, tokens)
    cap = params.generate.max_new_tokens
    return min(tokens, cap) if cap else tokens


def task_options(tasks_dir: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """Each task's resolved options: as prepare-tasks recorded them beside the items, else the task's defaults."""
    from expertlab.io import read_json
    from expertlab.tasks import TASKS

    recorded = read_json(tasks_dir / "meta.json").get("options", {}) if (tasks_dir / "meta.json").is_file() else {}
    return {name: dict(recorded[name]) if name in recorded else dict(TASKS[name].options) for name in names}


def default_variant(model_dir: Path) -> dict[str, Any]:
    """The variant a model directory is: the record `expertlab prune` left in it, else the source model."""
    from expertlab.io import read_json
    from expertlab.moe.prune import load_variant

    recorded = load_variant(model_dir)
    if recorded is not None:
        return recorded
    config = read_json(model_dir / "config.json")
    top_k = config.get("num_experts_per_tok", (config.get("text_config") or {}).get("num_experts_per_tok"))
    return variant_record(model_dir.name, top_k=top_k)


def run(args: argparse.Namespace) -> int:
    params = load_optional_params(args)
    batch_size = args.batch_size if args.batch_size is not None else (params.generate.batch_size if params else 32)
    limit = args.limit if args.limit is not None else (params.generate.limit if params else None)
    if batch_size < 1 or (limit is not None and limit < 1):
        raise ValueError(f"--batch-size and --limit must be positive, got {batch_size} and {limit}")
    backend_name = args.backend or (params.generate.backend if params else "hf")

    from tqdm import tqdm

    from expertlab.io import OutputDir, read_json, read_jsonl, write_json, write_jsonl
    from expertlab.tasks import TASKS

    model_dir = Path(args.model_dir)
    output = OutputDir(args.out, "generate", inputs=[model_dir, args.tasks_dir, args.variant_meta])
    output.check()
    if args.tasks:
        names = parse_task_names(args.tasks)
    elif params and args.group:
        if args.group not in params.study.tasks:
            raise ValueError(f"--group: {args.group!r} is not a group of study.tasks ({', '.join(params.study.tasks)})")
        names = params.study.tasks[args.group]
    elif params:
        names = params.study.task_names
    else:
        raise ValueError("no tasks: pass --tasks, or --params (with --group for one group)")
    tasks_dir = Path(args.tasks_dir)
    options = task_options(tasks_dir, names)
    items = {
        name: read_task_items(tasks_dir / f"{name}.jsonl", limit, TASKS[name].runner_for(options[name])) for name in names
    }
    fewshot = {
        name: read_jsonl(tasks_dir / f"{name}.fewshot.jsonl") if (tasks_dir / f"{name}.fewshot.jsonl").is_file() else []
        for name in names
    }
    variant = read_json(args.variant_meta) if args.variant_meta else default_variant(model_dir)
    if not isinstance(variant, dict):
        raise ValueError(f"{args.variant_meta}: expected a JSON object")

    from expertlab.evaluate import generation_rows
    from expertlab.generate import open_backend

    backend_options: dict[str, Any] = {"batch_size": batch_size}
    if params and backend_name == "hf":
        backend_options["device"] = params.generate.device
    elif params:
        backend_options["max_model_len"] = params.generate.max_model_len
    tasks = {name: replace(TASKS[name], max_new_tokens=budget(params, variant, name)) for name in names}
    from expertlab.evaluate import PartialResults

    partial = PartialResults(args.partial_dir, model_dir, variant, backend_name, args.out)
    backend = None
    with output.writing() as tmp:
        rows = []
        for name in tqdm(names, desc=f"generate {variant.get('variant_id')}", unit="task"):
            key = {"items": items[name], "fewshot": fewshot[name], "options": options[name], "max_new_tokens": tasks[name].max_new_tokens}
            task_rows = partial.load(name, key)
            if task_rows is None:
                if backend is None:
                    backend = open_backend(backend_name, model_dir, **backend_options)
                task_rows = generation_rows(backend, tasks[name], items[name], options[name], fewshot[name])
                partial.save(name, key, task_rows)
                print(f"generate: {name}: {len(task_rows)} items")
            else:
                print(f"generate: {name}: {len(task_rows)} items (resumed from {partial.directory})")
            rows += task_rows
        if backend is not None:
            backend.close()
        write_jsonl(tmp / "generations.jsonl", rows)
        meta = {
            "kind": "generations",
            "variant": variant,
            "group": args.group or "",
            "tasks": names,
            "backend": backend_name,
            "max_new_tokens": {name: tasks[name].max_new_tokens for name in names},
            "options": options,
        }
        write_json(tmp / "meta.json", meta)
    partial.clear()
    print(f"generate: {variant.get('variant_id')}: {len(rows)} generations -> {args.out}")
    return 0
