"""Model dir + task JSONL files -> OUT/generations.jsonl (one line per task item) + OUT/meta.json."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from stages.common import add_params_argument, load_optional_params, variant_record

HELP = "greedy generations of a model (variant) for evaluation tasks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="Hugging Face model directory")
    parser.add_argument("--tasks-dir", required=True, metavar="DIR", help="directory holding <task>.jsonl files")
    parser.add_argument("--tasks", metavar="T1,T2,...", help="comma-separated task names (default: study.tasks)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--batch-size", type=int, help="prompts per generate call (default 32 or generate.batch_size)")
    parser.add_argument("--limit", type=int, help="first N items of each task (default all or generate.limit)")
    parser.add_argument(
        "--variant-meta",
        metavar="FILE.json",
        help="variant identity to record (default: MODEL_DIR/expertlab_variant.json, else the source model)",
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


def read_task_items(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Task items {"id", "prompt", "target", "choices"}, checked, ids unique, the first `limit` of them."""
    from expertlab.io import read_jsonl

    if not path.is_file():
        raise FileNotFoundError(f"missing task file: {path}")
    items = read_jsonl(path)
    seen: set[str] = set()
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict) or not all(isinstance(item.get(key), str) for key in ("prompt", "target")):
            raise ValueError(f'{path}:{number}: expected an object with "id", "prompt" and "target" strings')
        if "id" not in item:
            raise ValueError(f'{path}:{number}: missing "id"')
        item["id"] = str(item["id"])
        if item["id"] in seen:
            raise ValueError(f"{path}:{number}: duplicate id {item['id']!r}")
        seen.add(item["id"])
        item.setdefault("choices", None)
    return items if limit is None else items[:limit]


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

    from expertlab.io import atomic_dir, read_json, write_json, write_jsonl
    from expertlab.tasks import TASKS

    model_dir = Path(args.model_dir)
    if args.tasks:
        names = parse_task_names(args.tasks)
    elif params:
        names = params.study.tasks
    else:
        raise ValueError("no tasks: pass --tasks or --params")
    items = {name: read_task_items(Path(args.tasks_dir) / f"{name}.jsonl", limit) for name in names}
    variant = read_json(args.variant_meta) if args.variant_meta else default_variant(model_dir)
    if not isinstance(variant, dict):
        raise ValueError(f"{args.variant_meta}: expected a JSON object")

    from expertlab.generate import generate, load_model

    model, tokenizer = load_model(model_dir)
    max_new_tokens = {name: TASKS[name].max_new_tokens for name in names}
    with atomic_dir(args.out) as tmp:
        rows = []
        for name in names:
            prompts = [item["prompt"] for item in items[name]]
            outputs = generate(model, tokenizer, prompts, max_new_tokens[name], batch_size)
            rows += [
                {
                    "task": name,
                    "sample_id": item["id"],
                    "prompt": item["prompt"],
                    "output": output,
                    "target": item["target"],
                    "choices": item["choices"],
                }
                for item, output in zip(items[name], outputs)
            ]
            print(f"generate: {name}: {len(outputs)} items")
        write_jsonl(tmp / "generations.jsonl", rows)
        meta = {"kind": "generations", "variant": variant, "tasks": names, "max_new_tokens": max_new_tokens}
        write_json(tmp / "meta.json", meta)
    print(f"generate: {variant.get('variant_id')}: {len(rows)} generations -> {args.out}")
    return 0
