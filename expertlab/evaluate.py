"""Task items -> generation rows, through either runner; generation rows -> scores.

A generation row is {task, sample_id, prompt, output, target, choices, doc} and, for tasks run by
lm-eval, `scores` (the per-sample metric values lm-eval computed) and `details` (whatever else
lm-eval logged for the sample, e.g. IFEval's per-instruction results). Rows are what the generate
stage writes and the score stage reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from expertlab.generate import Backend
from expertlab.tasks import Task


def generation_rows(
    backend: Backend,
    task: Task,
    items: Sequence[dict[str, Any]],
    options: Mapping[str, Any] | None = None,
    fewshot: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Every item of one task through the task's runner (under `options`), in item order."""
    options = {**task.options, **(options or {})}
    if task.runner_for(options) == "lm_eval":
        from expertlab.lmeval import lm_eval_rows

        return lm_eval_rows(backend, task, items, options, fewshot)
    outputs = backend.generate([item["prompt"] for item in items], task.max_new_tokens, task.stop)
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
