"""Task items and few-shot pool -> an offline lm-eval run on the backend's model -> rows with lm-eval's per-sample scores."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expertlab.lmeval.config import FEWSHOT_SPLIT, TEST_SPLIT, include_name, task_config
from expertlab.lmeval.network import offline
from expertlab.tasks import Task

Row = dict[str, Any]

# The study's lm-eval invocation (evaluation/scripts/*/general_vllm.sh): --apply_chat_template --fewshot_as_multiturn.
APPLY_CHAT_TEMPLATE = True
FEWSHOT_AS_MULTITURN = True


@contextlib.contextmanager
def _without_environment_report() -> Iterator[None]:
    """simple_evaluate without its add_env_info: the environment report it attaches to the results (torch's
    collect_env, which runs pip, conda, nvidia-smi, lscpu... as subprocesses, a second or so per run) is not
    kept here, only the per-sample logs; the evaluation itself is untouched."""
    import lm_eval.evaluator as evaluator

    report = evaluator.add_env_info
    evaluator.add_env_info = lambda storage: None
    try:
        yield
    finally:
        evaluator.add_env_info = report


@dataclass
class _Run:
    """One lm-eval task of a run: the items it scores and the few-shot docs it may draw."""

    include: str | None
    items: list[dict[str, Any]]
    pool: list[dict[str, Any]]


def _runs(task: Task, items: Sequence[dict[str, Any]], fewshot: Sequence[dict[str, Any]]) -> dict[str, _Run]:
    runs: dict[str, _Run] = {}
    for item in items:
        include = include_name(task, item["doc"])
        runs.setdefault(include or task.name, _Run(include, [], [])).items.append(item)
    for shot in fewshot:
        include = include_name(task, shot["doc"])
        if (include or task.name) in runs:
            runs[include or task.name].pool.append(shot)
    return runs


def _write_docs(path: Path, items: Sequence[dict[str, Any]]) -> str:
    with path.open("w", encoding="utf-8") as handle:
        for item in items:
            handle.write(json.dumps(item["doc"], ensure_ascii=False) + "\n")
    return str(path)


def lm_eval_rows(
    backend: Any,
    task: Task,
    items: Sequence[dict[str, Any]],
    options: Mapping[str, Any],
    fewshot: Sequence[dict[str, Any]] = (),
) -> list[Row]:
    """Every item through lm-eval as the study ran it (chat template, few-shot as multi-turn), offline, in item order.

    The task's `lm_eval` mapping is the lm-eval task config to run: "include" names a built-in lm-eval task
    whose YAML is the base (it may hold {field} placeholders filled from each doc, e.g. "mmlu_{subject}":
    items then run as one lm-eval task per distinct name, each drawing shots from its own part of the pool);
    every other key is a TaskConfig key overriding it (mappings merge key by key; values may be callables,
    e.g. a metric or a filter function). A built-in `!function` is imported only when nothing replaced it.
    The runner points the config at the items' docs (a temporary JSONL, `dataset_path: json`) and the pool's
    docs (its few-shot split), sets num_fewshot from options["num_fewshot"] when given and, for generation,
    max_gen_toks to task.max_new_tokens. lm-eval's model gets the task's context (task.max_model_len), and
    lm-eval cuts a prompt from the left when it would not leave max_gen_toks within it. The lm-eval doc ids
    are the items' positions, matched back in order.

    Row: {task, sample_id, prompt (the rendered request), output (the response under the first filter;
    for a choice task, the choice with the highest loglikelihood), target (lm-eval's doc_to_target; for a
    choice task, the gold choice), choices (a choice task's, else None), doc (the item's), scores, details}:
    scores are lm-eval's numeric per-sample values keyed "<metric>,<filter>" as in lm-eval's results
    ("acc,none", "exact_match,strict-match"); details its other per-sample values under the same keys
    (IFEval's per-instruction lists), plus "response" (the raw generation) and "filtered" ({filter: response})
    for generation, "loglikelihoods" and "is_greedy" (one per choice) for choice tasks.
    """
    from lm_eval import simple_evaluate
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks import TaskManager

    if not items:
        return []
    runs = _runs(task, items, fewshot)
    with tempfile.TemporaryDirectory(prefix="expertlab-lmeval-") as tmp, offline(), _without_environment_report():
        lm_tasks: dict[str, Any] = {}
        for index, (name, run) in enumerate(runs.items()):
            files = {TEST_SPLIT: _write_docs(Path(tmp) / f"{index}.test.jsonl", run.items)}
            if run.pool:
                files[FEWSHOT_SPLIT] = _write_docs(Path(tmp) / f"{index}.fewshot.jsonl", run.pool)
            config = task_config(task, name, run.include, options, files, Path(tmp) / "datasets")
            lm_task = ConfigurableTask(config=config)
            if len(lm_task.eval_docs) != len(run.items):
                raise ValueError(
                    f"task {task.name!r} ({name}): lm-eval kept {len(lm_task.eval_docs)} of {len(run.items)} docs "
                    "(its process_docs drops some), so its doc ids cannot be matched back to the items"
                )
            lm_tasks[name] = lm_task
        results = simple_evaluate(
            model=backend.lm_eval_model(task.max_model_len),
            tasks=list(lm_tasks.values()),
            task_manager=TaskManager(include_defaults=False),  # every task is built here: no index of the built-ins
            log_samples=True,
            apply_chat_template=APPLY_CHAT_TEMPLATE,
            fewshot_as_multiturn=FEWSHOT_AS_MULTITURN,
            bootstrap_iters=0,
            confirm_run_unsafe_code=any(getattr(lm_task, "UNSAFE_CODE", False) for lm_task in lm_tasks.values()),
        )
    if results is None:
        raise RuntimeError(f"task {task.name!r}: lm-eval returned no results (not rank 0?)")
    rows: dict[str, Row] = {}
    for name, run in runs.items():
        samples = results["samples"].get(name, [])
        by_doc: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for sample in samples:
            by_doc[int(sample["doc_id"])].append(sample)
        if sorted(by_doc) != list(range(len(run.items))):
            raise RuntimeError(f"task {task.name!r} ({name}): lm-eval logged {len(by_doc)} doc ids, not one per item")
        for position, item in enumerate(run.items):
            rows[item["id"]] = _row(task.name, item, by_doc[position], lm_tasks[name])
    return [rows[item["id"]] for item in items]


def _row(task_name: str, item: dict[str, Any], samples: list[dict[str, Any]], lm_task: Any) -> Row:
    """One generation row from lm-eval's logged samples of one doc (one per filter, the first filter first)."""
    first = samples[0]
    scores: dict[str, float] = {}
    details: dict[str, Any] = {}
    for sample in samples:
        for metric in sample["metrics"]:
            key, value = f"{metric},{sample['filter']}", sample[metric]
            if isinstance(value, (bool, int, float)) or _is_number(value):
                scores[key] = float(value)
            else:
                details[key] = _plain(value)
    target = first["target"]
    choices: list[str] | None = None
    if lm_task.OUTPUT_TYPE == "multiple_choice":
        choices = [str(choice) for choice in lm_task.doc_to_choice(first["doc"])]
        loglikelihoods = [float(response[0][0]) for response in first["resps"]]
        output = choices[max(range(len(loglikelihoods)), key=loglikelihoods.__getitem__)]
        details["loglikelihoods"] = loglikelihoods
        details["is_greedy"] = [bool(response[0][1]) for response in first["resps"]]
        if isinstance(target, int) and 0 <= target < len(choices):
            target = choices[target]
    else:
        output = _text(first["filtered_resps"])
        details["response"] = _text(first["resps"])
        details["filtered"] = {sample["filter"]: _text(sample["filtered_resps"]) for sample in samples}
    return {
        "task": task_name,
        "sample_id": item["id"],
        "prompt": str(first["arguments"][0][0]),
        "output": output,
        "target": target if isinstance(target, str) else json.dumps(_plain(target)),
        "choices": choices,
        "doc": item["doc"],
        "scores": scores,
        "details": details,
    }


def _is_number(value: Any) -> bool:
    import numpy as np

    return isinstance(value, (np.number, np.bool_))


def _text(value: Any) -> str:
    """A response as text: lm-eval nests it in one-element lists (per request, per repeat)."""
    while isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    return value if isinstance(value, str) else json.dumps(_plain(value))


def _plain(value: Any) -> Any:
    """A JSON-ready copy: tuples as lists, numpy (or torch) scalars and arrays as Python numbers and lists."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if callable(getattr(value, "tolist", None)):
        return value.tolist()
    return value
