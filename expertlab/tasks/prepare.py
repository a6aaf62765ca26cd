"""One task group's items, from local copies of the official files (or the toy world, or a package's files) -> OUT/<task>.jsonl
(+ <task>.fewshot.jsonl for lm-eval's shots) + OUT/meta.json (item counts, sources, resolved task options)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from expertlab.params import Params


def prepare_group(params: Params, params_path: str | Path, group: str, toy_tasks: str | Path, out: str | Path) -> dict[str, int]:
    """Write one task group's items (checked against each task's format); returns the item count per task."""
    from tqdm import tqdm

    from expertlab.io import atomic_dir, read_jsonl, write_json, write_jsonl
    from expertlab.records import TaskItemsMeta
    from expertlab.tasks import TASKS, check_items

    names = params.study.tasks_of(group)
    evaluation = params.evaluation
    counts: dict[str, int] = {}
    sources: dict[str, str] = {}
    resolved: dict[str, dict] = {}
    with atomic_dir(out, owner="prepare-tasks", inputs=[params_path, toy_tasks, evaluation.data_dir]) as tmp:
        for name in tqdm(names, desc=f"prepare {group}", unit="task"):
            task = TASKS[name]
            options = evaluation.task_options(name)
            runner = task.runner_for(options)
            resolved[name] = options
            if task.source == "toy":
                where = Path(toy_tasks) / f"{name}.jsonl"
                items = read_jsonl(where)
            else:
                if task.packaged:  # the loader reads the installed package's own files; its version names them
                    try:
                        source_dir = Path(f"{task.source}=={version(task.source)}")
                    except PackageNotFoundError:
                        raise FileNotFoundError(
                            f"task {name}: its items are the files of the package {task.source!r}, which is not "
                            "installed (run `make setup`)"
                        ) from None
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
        meta = TaskItemsMeta(
            group=group, items=counts, sources=sources, options=resolved,
            max_new_tokens={name: TASKS[name].max_new_tokens for name in names},
            max_model_len={name: TASKS[name].max_model_len for name in names},
        )  # fmt: skip
        write_json(tmp / "meta.json", meta.dump())
    return counts
