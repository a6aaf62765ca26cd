"""MMLU-Pro: the official parquet columns -> per-subject items and shots; lm-eval's mmlu_pro_<subject> run scripted and on the tiny model."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from expertlab.evaluate import generation_rows, score_rows
from expertlab.lmeval.config import builtin_task_config
from expertlab.tasks import TASKS, check_items
from expertlab.tasks.mmlu_pro import COLUMNS, SUBJECTS, read_split, task_name
from tests.test_lmeval import ScriptedBackend

SOURCE = Path(__file__).parent / "fixtures" / "sources" / "mmlu_pro"
# lm-eval's custom-extract filter (mmlu_pro/_default_template_yaml): the first match, else "[invalid]".
ANSWER = re.compile(r"answer is \(?([ABCDEFGHIJ])\)?")


def load(name: str, **overrides: Any) -> tuple[Any, dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    task = TASKS[name]
    context = task.context(0, overrides)
    return task, dict(context.options), task.load(SOURCE, context), task.fewshot(SOURCE, context)  # type: ignore[misc]


def extracted(response: str) -> str:
    match = ANSWER.search(response)
    return match.group(1) if match else "[invalid]"


@pytest.mark.parametrize("subject", SUBJECTS)
def test_every_subject_is_lm_evals_task_on_the_subjects_rows(subject: str) -> None:
    name = task_name(subject)
    task = TASKS[name]
    assert (task.domain, task.aspect, task.runner, task.source) == ("general", "utility", "lm_eval", "mmlu_pro")
    assert (task.max_new_tokens, task.max_model_len, task.options) == (2048, 4096, {"num_fewshot": 5, "sample": None})
    assert task.lm_eval == {"include": name} and task.metrics == ("mmlu_pro_accuracy",)
    builtin = builtin_task_config(name)
    assert (builtin["output_type"], builtin["num_fewshot"], builtin["fewshot_split"]) == ("generate_until", 5, "validation")
    # lm-eval keeps the rows whose category is this subject: the loader's items are exactly those.
    assert builtin["process_docs"].resolve().keywords == {"subject": subject}
    _, _, items, pool = load(name)
    assert items and all(item["doc"]["category"] == subject for item in items + pool)
    check_items(task, items, name, "lm_eval")


def test_docs_are_the_official_rows_and_ids_their_question_ids() -> None:
    _, options, items, pool = load("mmlu_pro_history")
    assert [item["id"] for item in items] == ["70", "71", "72"]
    assert items[1]["doc"] == {
        "question_id": 71,
        "question": "Which city was the capital of the Byzantine Empire?",
        "options": ["Rome", "Athens", "Alexandria", "Antioch", "Constantinople", "Ravenna", "Jerusalem", "Carthage", "Milan"],
        "answer": "E",
        "answer_index": 4,
        "cot_content": "",
        "category": "history",
        "src": "ori_mmlu-high_school_world_history",
    }
    assert [shot["id"] for shot in pool] == ["0", "1", "2", "3", "4"] and options["num_fewshot"] == 5
    assert load("mmlu_pro_history", num_fewshot=0)[3] == []
    rows = read_split(SOURCE, "test")
    assert list(rows[0]) == list(COLUMNS) and {row["category"] for row in rows} == set(SUBJECTS)


def test_a_split_that_is_missing_or_inconsistent_is_named(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pytest.raises(FileNotFoundError, match=r"test-\*\.parquet"):
        read_split(tmp_path, "test")
    (tmp_path / "data").mkdir()
    row = dict(read_split(SOURCE, "test")[0], answer="B")  # answer_index 3 says D
    pq.write_table(pa.Table.from_pylist([row]), tmp_path / "data" / "test-00000-of-00001.parquet")
    with pytest.raises(ValueError, match="answer 'B' and answer_index 3 disagree"):
        read_split(tmp_path, "test")


def test_scripted_run_scores_the_letter_after_answer_is() -> None:
    task, options, items, pool = load("mmlu_pro_history")
    backend = ScriptedBackend(
        {
            "Western Roman Empire fall": "Odoacer deposed Romulus Augustulus in 476. The answer is (D).",  # right
            "capital of the Byzantine Empire": "It was Constantinople, so the answer is e",  # right letter, lower case
            "Magna Carta": "King John sealed it in 1215. Answer: B",  # right, but not in lm-eval's format
        }
    )
    rows = generation_rows(backend, task, items, options, pool)  # type: ignore[arg-type]
    assert [row["sample_id"] for row in rows] == ["70", "71", "72"]
    assert [row["output"] for row in rows] == ["D", "[invalid]", "[invalid]"]  # the regex is case-sensitive
    assert [row["target"] for row in rows] == ["D", "E", "B"]
    assert [extracted(row["details"]["response"]) for row in rows] == [row["output"] for row in rows]
    samples, corpus = score_rows(task, rows)
    assert {s["sample_id"]: s["value"] for s in samples if s["metric"] == "mmlu_pro_accuracy"} == {"70": 1.0, "71": 0.0, "72": 0.0}
    assert corpus == []
    # lm-eval's prompt: the subject's description, then the five validation shots in file order as earlier turns.
    prompt = rows[0]["prompt"]
    assert prompt.startswith("<system>The following are multiple choice questions (with answers) about history.")
    assert prompt.count("<user>") == 6 and prompt.count("<assistant>") == 5
    shots = [shot["doc"] for shot in pool]
    positions = [prompt.index(shot["question"]) for shot in shots]
    assert positions == sorted(positions)
    first_answer = shots[0]["cot_content"].replace("A: Let's think step by step. ", "")
    assert f"<assistant>{first_answer}\n" in prompt
    assert prompt.endswith(
        "<user>Question:\nBy the conventional date, in which year did the Western Roman Empire fall?\nOptions:\n"
        "A. 376 AD\nB. 410 AD\nC. 455 AD\nD. 476 AD\nE. 527 AD\nF. 565 AD\nG. 622 AD\nH. 732 AD\nI. 800 AD\nJ. 1453 AD\n"
        "Answer: Let's think step by step.\n"
    )
    assert backend.contexts == [4096]


@pytest.fixture(scope="module")
def hf_backend(tiny_moe_dir: Path) -> Any:
    from expertlab.generate import open_backend

    backend = open_backend("hf", tiny_moe_dir, progress=False)
    yield backend
    backend.close()


def test_on_the_tiny_model_the_score_is_what_its_responses_imply(hf_backend: Any) -> None:
    task, options, items, pool = load("mmlu_pro_math")
    task = dataclasses.replace(task, max_new_tokens=8)
    rows = generation_rows(hf_backend, task, items, options, pool)
    assert [row["sample_id"] for row in rows] == ["73", "74"]
    for row, item in zip(rows, items):
        assert row["prompt"].startswith("<|im_start|>system The following are multiple choice questions (with answers) about math.")
        assert row["prompt"].count("<|im_start|>user") == 6 and item["doc"]["question"] in row["prompt"]
        assert len(row["details"]["response"].split()) <= 8
        letter = extracted(row["details"]["response"])
        assert row["output"] == letter
        assert row["scores"] == {"exact_match,custom-extract": float(letter == item["doc"]["answer"])}
    samples, _ = score_rows(task, rows)
    assert [sample["value"] for sample in samples] == [row["scores"]["exact_match,custom-extract"] for row in rows]
