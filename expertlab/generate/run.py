"""Model dir + one task group's JSONL files -> OUT/generations.jsonl (one row per task item) + OUT/meta.json.

Finished tasks are kept under a partial directory as they complete, so a killed run resumes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from expertlab.params import Generate, Params
    from expertlab.records import VariantRecord


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


def budget(params: Params | None, model_name: str, task: str) -> int:
    """A task's generation budget for this model: the model's own (models.<name>.max_new_tokens) or the
    task's, capped by generate.max_new_tokens."""
    from expertlab.tasks import TASKS

    tokens = TASKS[task].max_new_tokens
    if params is None:
        return tokens
    model = params.models.get(model_name)
    if model is not None:
        tokens = model.max_new_tokens.get(task, tokens)
    cap = params.generate.max_new_tokens
    return min(tokens, cap) if cap else tokens


def context(params: Params | None, task: str) -> int:
    """A task's context (prompt + generated tokens): the task's own (Task.max_model_len), capped by
    generate.max_model_len."""
    from expertlab.tasks import TASKS

    tokens = TASKS[task].max_model_len
    cap = params.generate.max_model_len if params is not None else None
    return min(tokens, cap) if cap else tokens


def group_context(params: Params | None, names: list[str]) -> int:
    """The context one engine serving these tasks needs: the largest of theirs."""
    return max(context(params, name) for name in names)


def task_options(tasks_dir: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """Each task's resolved options: as prepare-tasks recorded them beside the items, else the task's defaults."""
    from expertlab.records import TaskItemsMeta, read_meta
    from expertlab.tasks import TASKS

    recorded = read_meta(tasks_dir, TaskItemsMeta).options if (tasks_dir / "meta.json").is_file() else {}
    return {name: dict(recorded[name]) if name in recorded else dict(TASKS[name].options) for name in names}


def default_variant(model_dir: Path) -> VariantRecord:
    """The variant a model directory is: the record `expertlab prune` left in it, else the source model."""
    from expertlab.io import read_json
    from expertlab.moe.prune import load_variant
    from expertlab.records import VariantRecord
    from expertlab.variants import Variant

    recorded = load_variant(model_dir)
    if recorded is not None:
        return recorded.variant_record()
    config = read_json(model_dir / "config.json")
    top_k = config.get("num_experts_per_tok", (config.get("text_config") or {}).get("num_experts_per_tok"))
    return VariantRecord.of(Variant(model=model_dir.name), None, top_k)


def generate_group(
    model_dir: str | Path, tasks_dir: str | Path, names: list[str], out: str | Path, settings: Generate,
    params: Params | None, variant_meta: str | Path | None, group: str, partial_dir: str | Path,
) -> list[dict[str, Any]]:
    """Greedy generations of a model for the items of `names` (the first `settings.limit` of each task);
    returns the rows written."""
    from tqdm import tqdm

    from expertlab.evaluate import PartialResults, generation_rows
    from expertlab.generate import open_backend
    from expertlab.io import OutputDir, read_json, read_jsonl, write_json, write_jsonl
    from expertlab.records import GenerationsMeta, VariantRecord, parse_meta
    from expertlab.tasks import TASKS

    model_dir, tasks_dir = Path(model_dir), Path(tasks_dir)
    output = OutputDir(out, "generate", inputs=[model_dir, tasks_dir, variant_meta])
    output.check()
    options = task_options(tasks_dir, names)
    items = {
        name: read_task_items(tasks_dir / f"{name}.jsonl", settings.limit, TASKS[name].runner_for(options[name]))
        for name in names
    }
    fewshot = {name: read_jsonl(path) if (path := tasks_dir / f"{name}.fewshot.jsonl").is_file() else [] for name in names}
    variant = (
        parse_meta(read_json(variant_meta), VariantRecord, variant_meta) if variant_meta else default_variant(model_dir)
    )
    tasks = {
        name: replace(TASKS[name], max_new_tokens=budget(params, variant.model, name), max_model_len=context(params, name))
        for name in names
    }  # each task's budget and context as this run generates them
    engine = settings.backend_options(group_context(params, names))  # one engine serves the group
    partial = PartialResults(partial_dir, model_dir, variant.model_dump(), settings.backend, str(out))
    backend = None
    with output.writing() as tmp:
        rows = []
        for name in tqdm(names, desc=f"generate {variant.variant_id}", unit="task"):
            key = {
                "items": items[name], "fewshot": fewshot[name], "options": options[name],
                "max_new_tokens": tasks[name].max_new_tokens, "max_model_len": tasks[name].max_model_len,
            }  # fmt: skip
            task_rows = partial.load(name, key)
            if task_rows is None:
                if backend is None:
                    backend = open_backend(settings.backend, model_dir, **engine)
                task_rows = generation_rows(backend, tasks[name], items[name], options[name], fewshot[name])
                partial.save(name, key, task_rows)
                print(f"generate: {name}: {len(task_rows)} items")
            else:
                print(f"generate: {name}: {len(task_rows)} items (resumed from {partial.directory})")
            rows += task_rows
        if backend is not None:
            backend.close()
        write_jsonl(tmp / "generations.jsonl", rows)
        meta = GenerationsMeta(
            variant=variant, group=group, tasks=names, backend=settings.backend,
            max_new_tokens={name: tasks[name].max_new_tokens for name in names},
            max_model_len={name: tasks[name].max_model_len for name in names}, options=options,
        )  # fmt: skip
        write_json(tmp / "meta.json", meta.dump())
    partial.clear()
    print(f"generate: {variant.variant_id}: {len(rows)} generations -> {out}")
    return rows
