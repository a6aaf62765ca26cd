"""Evaluation task registry: what each task measures, where its items come from, how it is prompted and scored.

One module per benchmark family in this package registers its tasks with `task(...)`; importing the
package imports them all, so adding a benchmark is adding one file. A task's items are read once,
by the `prepare_tasks` stage, from a local copy of the benchmark's official files (its `source`), or
from the files an installed package ships (a `packaged` task, e.g. BFCL's from bfcl-eval), and
written as JSONL in the item format below; everything downstream reads only that JSONL.

Item format (one JSON object per line):
- `id` (str): unique within the task, stable across runs (the join key of every store table);
- `prompt` (str, or a list of {"role", "content"} chat messages): what the model is given;
- `target` (str): the reference answer, summary or choice;
- `choices` (list of str or null): answer options of a classification task, the target among them;
- `doc` (object, optional): the official record's fields a scorer or lm-eval needs.
Tasks run by lm-eval (`runner="lm_eval"`) need only `id` and `doc` (a row in the hub dataset's schema);
their few-shot pool, when lm-eval draws shots, comes from the task's `fewshot` loader (same format).
A task whose `options` hold a "runner" key lets params choose the runner per study (e.g. MultiMedQA:
the study's generative letter matching, or lm-eval's loglikelihood scoring).
"""

from __future__ import annotations

import importlib
import pkgutil
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from expertlab.registry import Registry

Domain = Literal["biomedical", "general", "tool_use"]
Aspect = Literal["utility", "reliability"]
Kind = Literal["generation", "classification"]
Runner = Literal["generate", "lm_eval"]
DOMAINS: tuple[Domain, ...] = get_args(Domain)
RUNNERS: tuple[Runner, ...] = get_args(Runner)


@dataclass(frozen=True)
class LoadContext:
    """What a loader gets besides the source directory: the evaluation seed and the task's options."""

    task: str
    seed: int
    options: Mapping[str, Any]

    def rng(self, purpose: str) -> random.Random:
        """A generator seeded by (seed, task, purpose): independent streams, stable across runs."""
        return random.Random(f"{self.seed}:{self.task}:{purpose}")


# (source directory, context) -> items in the format above (a packaged task's loader reads its package, not the directory).
Loader = Callable[[Path, LoadContext], list[dict[str, Any]]]


@dataclass(frozen=True)
class Task:
    """One evaluation task.

    `source` names the local copy its items load from: a key of params `evaluation.sources`
    (a directory under `evaluation.data_dir`), or "toy" for the toy world built by `prepare`; with
    `packaged`, the installed distribution whose own data files the loader reads (no local copy).
    `options` are the task's defaults (shots, subsample size, ...); params
    `evaluation.options.<task>` overrides them key by key. `max_model_len` is the task's context:
    prompt plus generated tokens (vLLM's max_model_len), within which `max_new_tokens` is granted.
    """

    name: str
    domain: Domain
    aspect: Aspect
    kind: Kind
    metrics: tuple[str, ...]
    primary_metric: str
    max_new_tokens: int
    description: str
    source: str
    load: Loader | None = None
    packaged: bool = False
    runner: Runner = "generate"
    stop: tuple[str, ...] = ()
    # The study's context (gucci-j/moe-pruning-reliability, evaluation/scripts/{source,pruned}/): every
    # *_vllm.sh passes --max-model-len 4096 (medinst32, multimedqa, mmlu, medhalt, rct; general_vllm.sh gives
    # lm-eval max_model_len=4096), but multinews_vllm.sh passes 8192, so multinews_summary overrides it.
    max_model_len: int = 4096
    options: Mapping[str, Any] = field(default_factory=dict)
    fewshot: Loader | None = None
    lm_eval: Mapping[str, Any] = field(default_factory=dict)  # lm-eval task config the lm_eval runner builds on

    def runner_for(self, options: Mapping[str, Any]) -> Runner:
        """The runner under resolved options: options["runner"] when the task offers that choice."""
        runner = options.get("runner", self.runner)
        if runner not in RUNNERS:
            raise ValueError(f"evaluation.options.{self.name}.runner: {runner!r} is not one of {', '.join(RUNNERS)}")
        return runner

    def context(self, seed: int, overrides: Mapping[str, Any] | None = None) -> LoadContext:
        """The load context with `overrides` applied over the defaults; an unknown option key is an error."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.options))
        if unknown:
            allowed = ", ".join(sorted(self.options)) or "none"
            raise ValueError(f"evaluation.options.{self.name}: unknown option(s) {', '.join(unknown)}; allowed: {allowed}")
        return LoadContext(self.name, seed, {**self.options, **overrides})


TASKS: Registry[Task] = Registry("task")


def task(**fields: Any) -> Task:
    """Register a task; `primary_metric` must be one of its `metrics`, a non-toy task needs a loader."""
    entry = Task(**fields)
    if entry.primary_metric not in entry.metrics:
        raise ValueError(f"task {entry.name!r}: primary metric {entry.primary_metric!r} not in {entry.metrics}")
    if not 0 < entry.max_new_tokens < entry.max_model_len:
        raise ValueError(
            f"task {entry.name!r}: max_new_tokens {entry.max_new_tokens} must be positive and leave room for a "
            f"prompt in max_model_len {entry.max_model_len}"
        )
    if entry.source != "toy" and entry.load is None:
        raise ValueError(f"task {entry.name!r}: source {entry.source!r} needs a loader")
    TASKS.add(entry.name, entry)
    return entry


def sources() -> list[str]:
    """Every source with a local copy that a registered task loads from (not the toy world, not packages), sorted."""
    return sorted({entry.source for _, entry in TASKS.items() if entry.source != "toy" and not entry.packaged})


def subsample(items: list[dict[str, Any]], count: int | None, rng: random.Random) -> list[dict[str, Any]]:
    """`count` items drawn without replacement, kept in source order; all of them when count is None or larger."""
    if count is None or count >= len(items):
        return items
    if count < 1:
        raise ValueError(f"sample size must be positive, got {count}")
    keep = set(rng.sample(range(len(items)), count))
    return [item for index, item in enumerate(items) if index in keep]


def check_items(task: Task, items: list[dict[str, Any]], where: str, runner: Runner | None = None) -> list[dict[str, Any]]:
    """Items in the item format (ids unique strings; prompt, target and choices as the runner needs), or a
    ValueError naming `where` and the item's position."""
    runner = runner or task.runner
    seen: set[str] = set()
    for number, item in enumerate(items, start=1):
        place = f"{where}: item {number}"
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            raise ValueError(f"{place}: expected an object with a non-empty string id")
        if item["id"] in seen:
            raise ValueError(f"{place}: duplicate id {item['id']!r}")
        seen.add(item["id"])
        if not isinstance(item.get("doc", {}), dict):
            raise ValueError(f"{place}: doc must be an object")
        if runner == "lm_eval":
            if not item.get("doc"):
                raise ValueError(f"{place}: a task run by lm-eval needs the record in doc")
            continue
        prompt = item.get("prompt")
        if not (isinstance(prompt, str) or (isinstance(prompt, list) and prompt)):
            raise ValueError(f"{place}: prompt must be a string or a list of chat messages")
        if not isinstance(item.get("target"), str):
            raise ValueError(f"{place}: target must be a string")
        choices = item.get("choices")
        if task.kind == "classification" and (not isinstance(choices, list) or item["target"] not in choices):
            raise ValueError(f"{place}: a classification item needs choices holding its target")
    return items


for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_module.name}")
