"""Task items -> generation rows, through either runner; generation rows -> scores.

A generation row is {task, sample_id, prompt, output, target, choices, doc} and, for tasks run by
lm-eval, `scores` (the per-sample metric values lm-eval computed) and `details` (whatever else
lm-eval logged for the sample, e.g. IFEval's per-instruction results). Rows are what the generate
stage writes and the score stage reads.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from expertlab.generate import Backend, PromptTooLong
from expertlab.io import atomic_path, read_jsonl, write_jsonl
from expertlab.tasks import Task


def generation_rows(
    backend: Backend,
    task: Task,
    items: Sequence[dict[str, Any]],
    options: Mapping[str, Any] | None = None,
    fewshot: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Every item of one task through the task's runner (under `options`), in item order; an item whose prompt
    leaves no room for output in the task's context is an error naming it."""
    options = {**task.options, **(options or {})}
    if task.runner_for(options) == "lm_eval":
        from expertlab.lmeval.runner import lm_eval_rows

        return lm_eval_rows(backend, task, items, options, fewshot)
    try:
        prompts = [item["prompt"] for item in items]
        outputs = backend.generate(prompts, task.max_new_tokens, task.max_model_len, task.stop)
    except PromptTooLong as err:
        raise ValueError(f"task {task.name!r}: item {items[err.index]['id']!r}: {err}") from err
    return [
        {
            "task": task.name,
            "sample_id": item["id"],
            "prompt": item["prompt"],
            "output": output,
            "target": item["target"],
            "choices": item.get("choices"),
            "doc": item.get("doc") or {},
        }
        for item, output in zip(items, outputs)
    ]


def score_rows(
    task: Task, rows: Sequence[dict[str, Any]], options: Mapping[str, Any] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(per-sample scores, corpus scores) of one task's generation rows (see expertlab.metrics.score_items)."""
    from expertlab.metrics import score_items

    return score_items(task, rows, [row["output"] for row in rows], options)


class PartialResults:
    """Finished tasks of a generate run that has not completed yet, so that a killed run resumes.

    Each task's rows are saved (atomically) under DIR/<run>/<task>.jsonl beside the sha256 of
    everything they depend on: the model files' names, sizes and mtimes, the variant, the backend,
    the items, the few-shot pool and the task options. A re-run takes a task's rows only when that
    hash matches; the directory is removed when the run completes.
    """

    def __init__(self, root: str | Path, model_dir: Path, variant: dict[str, Any], backend: str, out: str) -> None:
        files = sorted(
            (str(path.relative_to(model_dir)), path.stat().st_size, path.stat().st_mtime_ns)
            for path in model_dir.rglob("*")
            if path.is_file()
        )
        self.identity = {"model": files, "variant": variant, "backend": backend}
        run = hashlib.sha256(str(Path(out).resolve()).encode()).hexdigest()[:16]
        self.directory = Path(root) / run

    def _digest(self, task: str, key: dict[str, Any]) -> str:
        payload = json.dumps({**self.identity, "task": task, **key}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()

    def load(self, task: str, key: dict[str, Any]) -> list[dict[str, Any]] | None:
        rows, digest = self.directory / f"{task}.jsonl", self.directory / f"{task}.sha256"
        if not (rows.is_file() and digest.is_file()) or digest.read_text() != self._digest(task, key):
            return None
        return read_jsonl(rows)

    def save(self, task: str, key: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        write_jsonl(self.directory / f"{task}.jsonl", rows)
        with atomic_path(self.directory / f"{task}.sha256") as tmp:
            tmp.write_text(self._digest(task, key))

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
