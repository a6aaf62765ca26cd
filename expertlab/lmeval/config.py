"""A task's `lm_eval` mapping + lm-eval's built-in task YAMLs + the run's data files -> the lm-eval TaskConfig of one run."""

from __future__ import annotations

import functools
import importlib
import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expertlab.lmeval.punkt import ensure_punkt_tab
from expertlab.tasks import Task

TEST_SPLIT = "test"
FEWSHOT_SPLIT = "fewshot"


@dataclass(frozen=True)
class FunctionRef:
    """A `!function module.name` of a built-in lm-eval YAML: imported only if the final config still uses it."""

    directory: Path
    qualified_name: str

    def resolve(self) -> Callable[..., Any]:
        module_path, _, name = self.qualified_name.rpartition(".")
        file = self.directory / f"{module_path.replace('.', '/')}.py"
        module_name = module_path
        if file.is_file():
            relative = file.resolve().relative_to(lm_eval_tasks_dir().resolve())
            module_name = ".".join(("lm_eval", "tasks", *relative.with_suffix("").parts))
        ensure_punkt_tab()  # lm-eval's IFEval modules download punkt_tab at import otherwise
        return getattr(importlib.import_module(module_name), name)


def lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent


def _read_yaml(path: Path) -> dict[str, Any]:
    """A built-in task YAML with its includes merged (included first, own keys win, as lm-eval merges them);
    `!function` tags as FunctionRef."""
    import yaml

    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        pass

    Loader.add_constructor("!function", lambda loader, node: FunctionRef(path.parent, loader.construct_scalar(node)))
    config = yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)  # noqa: S506 (a safe loader)
    if not isinstance(config, dict):
        raise ValueError(f"{path}: not a task config")
    includes = config.pop("include", [])
    merged: dict[str, Any] = {}
    for include in [includes] if isinstance(includes, str) else includes:
        included = _read_yaml(path.parent / include)
        included.pop("task_list", None)
        merged.update(included)
    return {**merged, **config}


# A `task: <name>` line (a group's `task:` is a list and does not match).
_TASK_LINE = re.compile(rb"^['\"]?task['\"]?[ \t]*:[ \t]*['\"]?([\w.\-]+)['\"]?[ \t]*\r?$", re.MULTILINE)


@functools.cache
def _declaring_files() -> dict[str, list[Path]]:
    """Every built-in task name -> the YAMLs whose `task:` line declares it (one pass, without lm-eval's slow index)."""
    root = lm_eval_tasks_dir()
    files: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(root.rglob("*.yaml")):
        for name in _TASK_LINE.findall(path.read_bytes()):
            files[name.decode()].append(path)
    return files


def builtin_task_file(name: str) -> Path:
    """The YAML of lm-eval's built-in task `name`."""
    found = _declaring_files().get(name, [])
    if len(found) != 1:
        where = ", ".join(str(path.relative_to(lm_eval_tasks_dir())) for path in found) or "no YAML declares it"
        raise ValueError(f"lm-eval built-in task {name!r}: expected one YAML, found {len(found)} ({where})")
    return found[0]


def builtin_task_config(name: str) -> dict[str, Any]:
    """lm-eval's built-in config of task `name`, functions unresolved (FunctionRef)."""
    config = _read_yaml(builtin_task_file(name))
    if config.get("task") != name:
        raise ValueError(f"lm-eval built-in task {name!r}: its YAML declares task {config.get('task')!r}")
    return config


def merge_config(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` applied: a mapping merges into a mapping key by key, anything else replaces."""
    merged = dict(base)
    for key, value in overrides.items():
        current = merged.get(key)
        merged[key] = merge_config(current, value) if isinstance(value, Mapping) and isinstance(current, Mapping) else value
    return merged


def _resolve_functions(value: Any) -> Any:
    if isinstance(value, FunctionRef):
        return value.resolve()
    if isinstance(value, dict):
        return {key: _resolve_functions(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve_functions(item) for item in value]
    return value


def include_name(task: Task, doc: Mapping[str, Any]) -> str | None:
    """The built-in task a doc runs as: task.lm_eval["include"] with {field} placeholders filled from the doc."""
    include = task.lm_eval.get("include")
    if include is None:
        return None
    try:
        return str(include).format_map(doc)
    except (KeyError, IndexError) as err:
        raise ValueError(f"task {task.name!r}: lm_eval include {include!r} needs doc field {err}") from None


def task_config(
    task: Task,
    name: str,
    include: str | None,
    options: Mapping[str, Any],
    data_files: Mapping[str, str],
    cache_dir: Path,
) -> dict[str, Any]:
    """The lm-eval TaskConfig mapping of one run: the built-in `include` (if any) overridden by the rest of
    task.lm_eval, reading its docs from `data_files` (test, and fewshot when there is a pool)."""
    overrides = {key: value for key, value in task.lm_eval.items() if key != "include"}
    config = merge_config(builtin_task_config(include) if include else {}, overrides)
    for key in ("tag", "group", "task_list", "task_alias"):
        config.pop(key, None)
    config.update(
        task=name,
        dataset_path="json",
        dataset_name=None,
        custom_dataset=None,
        dataset_kwargs={"data_files": dict(data_files), "cache_dir": str(cache_dir)},
        training_split=None,
        validation_split=None,
        test_split=TEST_SPLIT,
        fewshot_split=FEWSHOT_SPLIT if FEWSHOT_SPLIT in data_files else None,
    )
    if "num_fewshot" in options:
        config["num_fewshot"] = options["num_fewshot"]
    if config.get("output_type", "generate_until") == "generate_until":
        config["generation_kwargs"] = {**(config.get("generation_kwargs") or {}), "max_gen_toks": task.max_new_tokens}
    inline_shots = (config.get("fewshot_config") or {}).get("samples")
    if config.get("num_fewshot") and FEWSHOT_SPLIT not in data_files and not inline_shots:
        raise ValueError(
            f"task {task.name!r} ({name}): {config['num_fewshot']}-shot needs a few-shot pool, "
            "and the task's fewshot loader gave none for it"
        )
    return _resolve_functions(config)
