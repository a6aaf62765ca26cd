"""MultiMedQA's official release files (PubMedQA, MedQA, MedMCQA, MMLU medical subjects) -> items with hub-schema docs.

Sources (each a directory of the official files as released):
    pubmedqa/  ori_pqal.json, test_ground_truth.json      (github.com/pubmedqa/pubmedqa data/: the 500 test pmids)
    medqa/     data_clean/questions/US/4_options/phrases_no_exclude_test.jsonl    (MedQA release, US test)
    medmcqa/   dev.json                                    (MedMCQA release, JSON lines; MultiMedQA scores validation)
    mmlu/      data/test/<subject>_test.csv                (Hendrycks' data.tar, no header: question,A,B,C,D,answer)
Each item's `doc` is the record in the schema of the hub dataset lm-eval's built-in task reads (bigbio/pubmed_qa
source, GBaker/MedQA-USMLE-4-options-hf, openlifescienceai/medmcqa, cais/mmlu), so one item serves both runners.
Options: `runner` "generate" (the study's protocol, evaluation/src/eval_multimedqa.py: its prompt as one user
turn through the chat template, scored by `prefix_match`) or "lm_eval" (the built-in task's zero-shot loglikelihood
choice); `sample`, a seeded subsample size (None: every item).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from expertlab.io import read_json, read_jsonl
from expertlab.tasks import LoadContext, Loader, subsample, task

Item = dict[str, Any]

LETTERS = ("A", "B", "C", "D")
DECISIONS = ("yes", "no", "maybe")
MMLU_MEDICAL_SUBJECTS = (
    "anatomy",
    "clinical_knowledge",
    "college_biology",
    "college_medicine",
    "medical_genetics",
    "professional_medicine",
)
MEDQA_TEST = Path("data_clean/questions/US/4_options/phrases_no_exclude_test.jsonl")

# The study's prompts end lm-eval's "Answer:" with an instruction, as a single user turn (eval_multimedqa.py).
_LETTER_INSTRUCTION = "Answer: Respond with ONLY a single letter: A, B, C, or D"
_DECISION_INSTRUCTION = "Answer: Respond with ONLY one word: yes, no, or maybe"


def _options(texts: list[str]) -> str:
    return "".join(f"{letter}. {text}\n" for letter, text in zip(LETTERS, texts))


def pubmedqa_prompt(doc: Mapping[str, Any]) -> str:
    contexts = "\n".join(doc["CONTEXTS"])
    return f"Abstract: {contexts}\nQuestion: {doc['QUESTION']}\n{_DECISION_INSTRUCTION}"


def medqa_prompt(doc: Mapping[str, Any]) -> str:
    endings = [doc[f"ending{index}"] for index in range(4)]
    return f"Question: {doc['sent1']}\n{_options(endings)}{_LETTER_INSTRUCTION}"


def medmcqa_prompt(doc: Mapping[str, Any]) -> str:
    options = [doc["opa"], doc["opb"], doc["opc"], doc["opd"]]
    return f"Question: {doc['question']}\nChoices:\n{_options(options)}{_LETTER_INSTRUCTION}"


def mmlu_prompt(doc: Mapping[str, Any]) -> str:
    return f"{doc['question'].strip()}\n{_options(doc['choices'])}{_LETTER_INSTRUCTION}"


def _letter_item(item_id: str, prompt: str, answer: int, doc: dict[str, Any]) -> Item:
    return {"id": item_id, "prompt": prompt, "target": LETTERS[answer], "choices": list(LETTERS), "doc": doc}


def _sampled(items: list[Item], context: LoadContext) -> list[Item]:
    return subsample(items, context.options.get("sample"), context.rng("sample"))


def load_pubmedqa(source: Path, context: LoadContext) -> list[Item]:
    """PQA-L's 500 test questions: the pmids of test_ground_truth.json, their records in ori_pqal.json."""
    records = read_json(source / "ori_pqal.json")
    truth = read_json(source / "test_ground_truth.json")
    items = []
    for pmid, decision in truth.items():
        if pmid not in records:
            raise ValueError(f"{source / 'test_ground_truth.json'}: pmid {pmid} is not in ori_pqal.json")
        doc = dict(records[pmid])
        if doc["final_decision"] != decision:
            raise ValueError(
                f"{source}: pmid {pmid} is {decision!r} in test_ground_truth.json, {doc['final_decision']!r} in ori_pqal.json"
            )
        items.append({"id": pmid, "prompt": pubmedqa_prompt(doc), "target": decision, "choices": list(DECISIONS), "doc": doc})
    return _sampled(items, context)


def load_medqa(source: Path, context: LoadContext) -> list[Item]:
    """MedQA US 4-option test questions as GBaker/MedQA-USMLE-4-options-hf rows (id test-00000, sent1, ending0-3, label)."""
    path = source / MEDQA_TEST
    items = []
    for index, row in enumerate(read_jsonl(path)):
        if sorted(row["options"]) != list(LETTERS) or row["answer_idx"] not in LETTERS:
            raise ValueError(f"{path}: line {index + 1}: expected options A-D and an answer_idx among them")
        doc = {
            "id": f"test-{index:05d}",
            "sent1": row["question"],
            "sent2": "",
            **{f"ending{number}": row["options"][letter] for number, letter in enumerate(LETTERS)},
            "label": LETTERS.index(row["answer_idx"]),
        }
        items.append(_letter_item(doc["id"], medqa_prompt(doc), doc["label"], doc))
    return _sampled(items, context)


def load_medmcqa(source: Path, context: LoadContext) -> list[Item]:
    """MedMCQA validation questions (dev.json) as openlifescienceai/medmcqa rows: `cop` 1-4 becomes 0-3."""
    return _sampled(medmcqa_items(source / "dev.json"), context)


def medmcqa_items(path: Path) -> list[Item]:
    """A MedMCQA release file (dev.json, train.json: JSON lines) as items whose docs are openlifescienceai/medmcqa rows."""
    items = []
    for index, row in enumerate(read_jsonl(path)):
        if int(row["cop"]) not in (1, 2, 3, 4):
            raise ValueError(f"{path}: line {index + 1}: cop must be 1-4, got {row['cop']!r}")
        doc = {
            "id": row["id"],
            "question": row["question"],
            "opa": row["opa"],
            "opb": row["opb"],
            "opc": row["opc"],
            "opd": row["opd"],
            "cop": int(row["cop"]) - 1,
            "choice_type": row.get("choice_type"),
            "exp": row.get("exp", ""),
            "subject_name": row.get("subject_name"),
            "topic_name": row.get("topic_name"),
        }
        items.append(_letter_item(doc["id"], medmcqa_prompt(doc), doc["cop"], doc))
    return items


def mmlu_loader(subject: str) -> Loader:
    """A loader of one MMLU subject's test questions (data/test/<subject>_test.csv) as cais/mmlu rows."""

    def load(source: Path, context: LoadContext) -> list[Item]:
        path = source / "data" / "test" / f"{subject}_test.csv"
        if not path.is_file():
            raise FileNotFoundError(f"missing file: {path}")
        items = []
        with path.open(newline="", encoding="utf-8") as handle:
            for index, row in enumerate(csv.reader(handle)):
                if len(row) != 6 or row[5] not in LETTERS:
                    raise ValueError(f"{path}: record {index + 1}: expected question,A,B,C,D,answer with answer A-D")
                question, *choices, answer = row
                doc = {"question": question, "subject": subject, "choices": choices, "answer": LETTERS.index(answer)}
                items.append(_letter_item(str(index), mmlu_prompt(doc), doc["answer"], doc))
        return _sampled(items, context)

    return load


def _multimedqa_task(name: str, source: str, load: Loader, description: str) -> None:
    task(
        name=name,
        domain="biomedical",
        aspect="utility",
        kind="classification",
        metrics=("prefix_match",),
        primary_metric="prefix_match",
        max_new_tokens=128,  # the study's budget (1024 for GPT-OSS, whose reasoning shares it)
        description=description,
        source=source,
        load=load,
        options={"runner": "generate", "sample": None},
        lm_eval={"include": name},
    )


_multimedqa_task("pubmedqa", "pubmedqa", load_pubmedqa, "yes/no/maybe questions on PubMed abstracts (PQA-L test, 500)")
_multimedqa_task("medqa_4options", "medqa", load_medqa, "USMLE-style four-option questions (MedQA US test)")
_multimedqa_task("medmcqa", "medmcqa", load_medmcqa, "Indian medical entrance four-option questions (MedMCQA validation)")
for _subject in MMLU_MEDICAL_SUBJECTS:
    _multimedqa_task(
        f"mmlu_{_subject}",
        "mmlu",
        mmlu_loader(_subject),
        f"MMLU {_subject.replace('_', ' ')} four-option questions (test split)",
    )
