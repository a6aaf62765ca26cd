"""MMLU-Pro's official release files -> one lm-eval task per subject, with hub-schema docs (lm-eval's mmlu_pro_<subject>).

The second study's out-of-domain test sets (shared/papers/001, section 5: "subsets from MMLU-Pro (e.g., history, law)";
its Figure 5 also reports computer science and math). Source layout (`mmlu_pro/`, the TIGER-Lab/MMLU-Pro hub dataset's
files as released): data/test-*.parquet and data/validation-*.parquet, columns question_id, question, options, answer,
answer_index, cot_content, category, src. A doc is a row as the hub dataset serves it (options a list), so lm-eval's
built-in task runs on it unchanged: its template (_default_template_yaml) and the subject's YAML, i.e. generative
chain of thought, 5-shot from the validation split (sampler first_n over the subject's validation rows, whose worked
answers are the shots' targets), the subject's description ("... Think step by step and then finish your answer with
"the answer is (X)" ..."), stop at "Question:", the first match of regex `answer is \\(?([ABCDEFGHIJ])\\)?`
(filter custom-extract), exact match against the answer letter. The items and the shot pool of a task are its
subject's rows only (lm-eval's process_docs filters on `category`, and keeps them all).

lm-eval's task is not TIGER-Lab's evaluate_from_local.py, the benchmark authors' script: that script drops "N/A"
options, opens with its own instruction (cot_prompt_lib/initial_prompt.txt) in one plain-text prompt (no chat template;
expertlab's lm-eval runs apply the chat template with the shots as turns), falls back to "Answer: X" and then to the
last letter A-J when the first regex fails, counts a still-unextracted answer as a seeded random guess, and drops shots
(5 down to 0) until the prompt is shorter than 4096 - 2048 tokens, where lm-eval cuts an overlong prompt from the left.
The paper does not say which it ran; this module runs lm-eval's (accuracy = lm-eval's exact_match under custom-extract),
as the study runs its other general-domain benchmarks. Budgets are both tools' own: 2048 new tokens (lm-eval's
max_gen_toks; the script's max_new_tokens) in a context of 4096 (the script's max_model_length).

Options: `num_fewshot` (5, lm-eval's default); `sample`, a seeded subsample size (None: every item of the subject).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from expertlab.tasks import LoadContext, Loader, subsample, task

Item = dict[str, Any]

# MMLU-Pro's 14 categories (the `category` column), as lm-eval names their tasks (mmlu_pro_<category, "_" for " ">).
SUBJECTS = (
    "biology",
    "business",
    "chemistry",
    "computer science",
    "economics",
    "engineering",
    "health",
    "history",
    "law",
    "math",
    "other",
    "philosophy",
    "physics",
    "psychology",
)
COLUMNS = ("question_id", "question", "options", "answer", "answer_index", "cot_content", "category", "src")
LETTERS = "ABCDEFGHIJ"


def split_files(source: Path, split: str) -> list[Path]:
    """The parquet shards of one split (data/<split>-*.parquet), in name order."""
    files = sorted((source / "data").glob(f"{split}-*.parquet"))
    if not files:
        raise FileNotFoundError(f"missing file: {source / 'data'}/{split}-*.parquet (MMLU-Pro's {split} split)")
    return files


def read_split(source: Path, split: str) -> list[dict[str, Any]]:
    """Every row of one split as the hub dataset serves it: the official columns, options a list of strings."""
    import pyarrow.parquet as pq

    rows = []
    for path in split_files(source, split):
        table = pq.read_table(path)
        missing = [column for column in COLUMNS if column not in table.column_names]
        if missing:
            raise ValueError(f"{path}: missing MMLU-Pro column(s) {', '.join(missing)}")
        for number, row in enumerate(table.select(list(COLUMNS)).to_pylist(), start=1):
            if row["answer"] not in LETTERS or row["answer_index"] != LETTERS.index(row["answer"]):
                raise ValueError(f"{path}: row {number}: answer {row['answer']!r} and answer_index {row['answer_index']!r} disagree")
            if not 0 <= row["answer_index"] < len(row["options"]):
                raise ValueError(f"{path}: row {number}: answer_index {row['answer_index']} names no option")
            rows.append(row)
    return rows


def _subject_items(source: Path, subject: str, split: str) -> list[Item]:
    return [{"id": str(row["question_id"]), "doc": row} for row in read_split(source, split) if row["category"] == subject]


def mmlu_pro_loader(subject: str) -> Loader:
    """A loader of one subject's test questions; the id is the official question_id."""

    def load(source: Path, context: LoadContext) -> list[Item]:
        items = _subject_items(source, subject, "test")
        return subsample(items, context.options.get("sample"), context.rng("sample"))

    return load


def mmlu_pro_shots(subject: str) -> Loader:
    """The subject's validation questions (5 per subject; none zero-shot): lm-eval takes the first `num_fewshot`."""

    def shots(source: Path, context: LoadContext) -> list[Item]:
        return _subject_items(source, subject, "validation") if context.options.get("num_fewshot") else []

    return shots


def task_name(subject: str) -> str:
    return "mmlu_pro_" + subject.replace(" ", "_")


for _subject in SUBJECTS:
    task(
        name=task_name(_subject),
        domain="general",
        aspect="utility",
        kind="classification",
        metrics=("mmlu_pro_accuracy",),
        primary_metric="mmlu_pro_accuracy",
        max_new_tokens=2048,
        description=f"MMLU-Pro {_subject}: ten-option questions, 5-shot chain of thought (lm-eval {task_name(_subject)})",
        source="mmlu_pro",
        load=mmlu_pro_loader(_subject),
        fewshot=mmlu_pro_shots(_subject),
        runner="lm_eval",
        options={"num_fewshot": 5, "sample": None},
        lm_eval={"include": task_name(_subject)},
    )
