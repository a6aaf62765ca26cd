"""MultiMedQA: fixture sources -> exact items; the study's answer match on tricky outputs; accuracy by both runners."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from expertlab.evaluate import generation_rows, score_rows
from expertlab.lmeval.config import builtin_task_config
from expertlab.metrics import METRICS
from expertlab.tasks import TASKS, Task, check_items
from expertlab.tasks.multimedqa import MEDQA_TEST, MMLU_MEDICAL_SUBJECTS
from tests.scripted import by_prompt

SOURCES = Path(__file__).parent / "fixtures" / "sources"
MULTIMEDQA = ["pubmedqa", "medqa_4options", "medmcqa", *(f"mmlu_{subject}" for subject in MMLU_MEDICAL_SUBJECTS)]
LETTERS = ["A", "B", "C", "D"]


def load(name: str, source: Path = SOURCES, **options: Any) -> list[dict[str, Any]]:
    entry = TASKS[name]
    return entry.load(source / entry.source, entry.context(0, options))  # type: ignore[misc]


@pytest.mark.parametrize("name", MULTIMEDQA)
def test_every_task_is_declared_for_both_runners(name):
    entry = TASKS[name]
    assert (entry.domain, entry.aspect, entry.kind) == ("biomedical", "utility", "classification")
    assert entry.options == {"runner": "generate", "sample": None}
    assert entry.runner_for(entry.options) == "generate"
    assert entry.runner_for({"runner": "lm_eval"}) == "lm_eval"
    assert entry.max_new_tokens == 128
    assert entry.metrics == ("prefix_match",)
    # The loglikelihood protocol is lm-eval's own zero-shot task of the same name.
    assert entry.lm_eval == {"include": name}
    builtin = builtin_task_config(name)
    assert (builtin["output_type"], builtin.get("num_fewshot", 0)) == ("multiple_choice", 0)
    items = load(name)
    check_items(entry, items, name, "generate")
    check_items(entry, items, name, "lm_eval")


def test_pubmedqa_loads_the_test_pmids_of_the_ground_truth_in_its_order():
    items = load("pubmedqa")
    # 10000004 is in ori_pqal.json but not in the test split.
    assert [item["id"] for item in items] == ["10000003", "10000001", "10000002"]
    assert [item["target"] for item in items] == ["maybe", "yes", "no"]
    assert all(item["choices"] == ["yes", "no", "maybe"] for item in items)
    first = items[1]
    assert first["prompt"] == (
        "Abstract: Migraine recurs in most patients within a year.\n"
        "We randomised 240 adults to aspirin 100 mg or placebo for 12 months.\n"
        "Question: Does daily aspirin lower the rate of migraine recurrence?\n"
        "Answer: Respond with ONLY one word: yes, no, or maybe"
    )
    # The doc is the official record unchanged: bigbio/pubmed_qa's source schema.
    assert first["doc"] == json.loads((SOURCES / "pubmedqa" / "ori_pqal.json").read_text())["10000001"]


def test_medqa_items_carry_gbaker_hub_rows():
    items = load("medqa_4options")
    assert [item["id"] for item in items] == ["test-00000", "test-00001", "test-00002"]
    assert [item["target"] for item in items] == ["D", "B", "A"]
    assert all(item["choices"] == LETTERS for item in items)
    assert items[0]["prompt"] == (
        "Question: A 23-year-old woman presents with dysuria and urinary frequency. Which drug is first-line?\n"
        "A. Ampicillin\nB. Ceftriaxone\nC. Doxycycline\nD. Nitrofurantoin\n"
        "Answer: Respond with ONLY a single letter: A, B, C, or D"
    )
    assert items[0]["doc"] == {
        "id": "test-00000",
        "sent1": "A 23-year-old woman presents with dysuria and urinary frequency. Which drug is first-line?",
        "sent2": "",
        "ending0": "Ampicillin",
        "ending1": "Ceftriaxone",
        "ending2": "Doxycycline",
        "ending3": "Nitrofurantoin",
        "label": 3,
    }


def test_medmcqa_items_carry_hub_rows_with_zero_based_cop():
    items = load("medmcqa")
    assert [item["id"] for item in items] == [
        "e3f1c2a0-0001-4d1e-9b1a-000000000001",
        "e3f1c2a0-0002-4d1e-9b1a-000000000002",
        "e3f1c2a0-0003-4d1e-9b1a-000000000003",
    ]
    assert [item["target"] for item in items] == ["C", "A", "D"]
    assert [item["doc"]["cop"] for item in items] == [2, 0, 3]
    assert items[0]["prompt"] == (
        "Question: Which of the following is the drug of choice for absence seizures?\nChoices:\n"
        "A. Phenytoin\nB. Carbamazepine\nC. Ethosuximide\nD. Phenobarbital\n"
        "Answer: Respond with ONLY a single letter: A, B, C, or D"
    )
    assert items[1]["doc"] == {
        "id": "e3f1c2a0-0002-4d1e-9b1a-000000000002",
        "question": "Normal adult hemoglobin is mostly:",
        "opa": "HbA",
        "opb": "HbA2",
        "opc": "HbF",
        "opd": "HbS",
        "cop": 0,
        "choice_type": "single",
        "exp": None,
        "subject_name": "Biochemistry",
        "topic_name": None,
    }


MMLU_TARGETS = {
    "anatomy": ["B", "C", "B"],
    "clinical_knowledge": ["B", "B", "A"],
    "college_biology": ["C", "B", "D"],
    "college_medicine": ["B", "B", "C"],
    "medical_genetics": ["B", "C", "B"],
    "professional_medicine": ["A", "B", "B"],
}


@pytest.mark.parametrize("subject", MMLU_MEDICAL_SUBJECTS)
def test_mmlu_subjects_read_their_own_csv(subject):
    items = load(f"mmlu_{subject}")
    assert [item["id"] for item in items] == ["0", "1", "2"]
    assert [item["target"] for item in items] == MMLU_TARGETS[subject]
    assert all(item["doc"]["subject"] == subject and item["choices"] == LETTERS for item in items)


def test_mmlu_prompt_strips_the_question_and_keeps_quoted_commas_and_newlines():
    medicine = load("mmlu_college_medicine")[0]
    assert medicine["prompt"] == (
        "Which hormone lowers blood glucose?\nA. Glucagon\nB. Insulin\nC. Cortisol\nD. Adrenaline\n"
        "Answer: Respond with ONLY a single letter: A, B, C, or D"
    )
    assert medicine["doc"] == {
        "question": "  Which hormone lowers blood glucose?  ",
        "subject": "college_medicine",
        "choices": ["Glucagon", "Insulin", "Cortisol", "Adrenaline"],
        "answer": 1,
    }
    assert load("mmlu_professional_medicine")[0]["doc"]["question"].endswith("Which test first?\nChoose one.")
    assert load("mmlu_clinical_knowledge")[0]["doc"]["question"] == "A normal adult resting heart rate, in beats per minute, is"


def test_sample_draws_a_seeded_subset_in_source_order():
    entry = TASKS["medqa_4options"]
    full = [item["id"] for item in load("medqa_4options")]

    def drawn(seed: int) -> list[str]:
        return [item["id"] for item in entry.load(SOURCES / "medqa", entry.context(seed, {"sample": 2}))]  # type: ignore[misc]

    assert drawn(0) == drawn(0)
    assert all(len(ids) == 2 and ids == [i for i in full if i in ids] for ids in map(drawn, range(10)))
    assert len({tuple(drawn(seed)) for seed in range(10)}) > 1


def _broken_copy(tmp_path: Path, source: str, relative: str, old: str, new: str) -> Path:
    shutil.copytree(SOURCES / source, tmp_path / source)
    path = tmp_path / source / relative
    path.write_text(path.read_text().replace(old, new, 1))
    return tmp_path


@pytest.mark.parametrize(
    ("name", "relative", "old", "new", "message"),
    [
        ("pubmedqa", "test_ground_truth.json", '"maybe"', '"yes"', "in test_ground_truth.json"),
        ("pubmedqa", "test_ground_truth.json", "10000003", "99999999", "not in ori_pqal.json"),
        ("medqa_4options", str(MEDQA_TEST), '"answer_idx": "D"', '"answer_idx": "E"', "answer_idx"),
        ("medmcqa", "dev.json", '"cop": 3', '"cop": 0', "cop must be 1-4"),
        ("mmlu_anatomy", "data/test/anatomy_test.csv", ",B\n", ",E\n", "answer A-D"),
    ],
)
def test_malformed_sources_fail_naming_the_file(tmp_path, name, relative, old, new, message):
    source = _broken_copy(tmp_path, TASKS[name].source, relative, old, new)
    with pytest.raises(ValueError, match=message) as raised:
        load(name, source)
    assert Path(relative).name in str(raised.value)


# The study's match (eval_multimedqa.py: split_response, parse_model_output, _is_correct), worked by hand.
@pytest.mark.parametrize(
    ("output", "target", "expected"),
    [
        ("B", "B", 1.0),
        ("  d  ", "D", 1.0),
        ("(B).", "B", 1.0),
        ("**C**", "C", 1.0),
        ("b) Insulin", "B", 1.0),
        ("C/D", "C", 1.0),  # punctuation dropped: "cd" starts with "c"
        ("The answer is (B).", "B", 0.0),  # the letter must come first
        ("Answer: C because it lowers glucose", "C", 0.0),
        ("Option D", "D", 0.0),
        ("I am not sure.", "B", 0.0),
        ("", "A", 0.0),
        ("A", "B", 0.0),
        ("Because insulin lowers glucose.", "B", 1.0),  # a bare prefix test: any answer starting with b matches B
        ("```\nD\n```", "D", 1.0),  # a fenced block is unwrapped
        ("A. Axillary Stop Here B", "A", 1.0),  # cut at "Stop Here"
        ("Stop Here C", "C", 0.0),
        ("analysis the user asks about nerves. assistantfinal A", "A", 1.0),  # GPT-OSS final channel
        ("Analysis: B", "B", 1.0),  # a leading "analysis" label is dropped
        ("analysisThe answer is D.", "D", 0.0),
        ("Yes.", "yes", 1.0),
        ("maybe", "maybe", 1.0),
        ("No, it does not.", "yes", 0.0),
        ("Not enough information", "no", 1.0),  # "not ..." starts with "no"
    ],
)
def test_prefix_match_as_the_study_matched(output, target, expected):
    assert METRICS["prefix_match"](output, {"target": target}) == expected


# Outputs per task in item order, and the study's verdicts on them.
SCRIPTS = {
    "pubmedqa": (["Maybe, the evidence is weak.", "Yes.", "Yes, it does."], [1.0, 1.0, 0.0]),
    "medqa_4options": (["D", "The answer is B.", "a) Axillary nerve"], [1.0, 0.0, 1.0]),
    "medmcqa": (["C. Ethosuximide", "B", "D"], [1.0, 0.0, 1.0]),
    "mmlu_anatomy": (["B", "(C)", "Tendon"], [1.0, 1.0, 0.0]),
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_accuracy_through_the_generate_runner(name):
    entry: Task = TASKS[name]
    items = load(name)
    outputs, verdicts = SCRIPTS[name]
    backend = by_prompt({item["prompt"]: output for item, output in zip(items, outputs)}, model_type="qwen3_moe")
    rows = generation_rows(backend, entry, items)
    assert [(c.max_new_tokens, c.stop) for c in backend.calls] == [(128, ())]
    assert [row["output"] for row in rows] == outputs
    assert all(row["doc"] == item["doc"] for row, item in zip(rows, items))
    samples, corpus = score_rows(entry, rows)
    assert corpus == []
    by_sample = {s["sample_id"]: s["value"] for s in samples if s["metric"] == "prefix_match"}
    assert by_sample == {item["id"]: verdict for item, verdict in zip(items, verdicts)}
    assert sum(by_sample.values()) / len(by_sample) == pytest.approx(sum(verdicts) / 3)


@pytest.fixture(scope="module")
def tiny_backend(tiny_moe_dir):  # noqa: ANN201
    from expertlab.generate import open_backend

    backend = open_backend("hf", tiny_moe_dir, batch_size=4, progress=False)
    yield backend
    backend.close()


@pytest.mark.parametrize("name", ["pubmedqa", "medqa_4options", "medmcqa", "mmlu_anatomy"])
def test_loglikelihood_runner_scores_every_item_on_the_tiny_model(tiny_backend, name):
    entry = TASKS[name]
    items = load(name)
    rows = generation_rows(tiny_backend, entry, items, {"runner": "lm_eval"})
    assert [row["sample_id"] for row in rows] == [item["id"] for item in items]
    assert [row["target"] for row in rows] == [item["target"] for item in items]
    assert all(row["choices"] == item["choices"] for row, item in zip(rows, items))
    assert all(row["scores"]["acc,none"] in (0.0, 1.0) for row in rows)
    samples, _ = score_rows(entry, rows)
    # On lm-eval's rows the output is the most likely choice, so the study's match is lm-eval's accuracy.
    assert {s["sample_id"]: s["value"] for s in samples if s["metric"] == "prefix_match"} == {
        row["sample_id"]: row["scores"]["acc,none"] for row in rows
    }
