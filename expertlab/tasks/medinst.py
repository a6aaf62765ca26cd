"""MedINST32 held-out generation categories: the official test files -> chat items, prompted as the study did.

Source layout (`evaluation.sources.medinst`, by default `<evaluation.data_dir>/medinst`): a copy of the
hub dataset aialt/MedINST32 (formerly LiinXemmon/MedINST32) as released, one file per held-out dataset:

    medinst/
      unseen_tests/<Dataset>_test.json       hub config "<Dataset>": records with few-shot `history`
      unseen_tests_zs/<Dataset>_test.json    hub config "<Dataset>-zs": the zero-shot records

A file is a JSON array of records (JSON lines are accepted too); a record has `instruction`, `input`,
`output` and, in the few-shot files, `history`: [[user turn, assistant turn], ...]. The study's
eval_medinst32.py loads config "<Dataset>" (its scripts never pass --zero), so the default option
`zero_shot: false` reads `unseen_tests/`.

Prompt (eval_medinst32.py `build_messages`, rendered later by the backend's chat template): the
instruction as the system turn, each history pair as a user and an assistant turn, the input as the
final user turn; empty parts are left out. The official MedINST evaluation.py instead sends
instruction + "\\n" + input as one user turn; the study's variant is the one reproduced here.

Items: id "<Dataset>-<position in file>", target = the official output, doc = {dataset, category (the
official key: SUM, TRANSL, QA, ...), evaluation (the dataset's official evaluation type: entity, em,
bio, cls or null), index}. Options: `sample` (null: every record; n: a seeded subsample of at most n
records per dataset) and `zero_shot`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from expertlab.tasks import LoadContext, Loader, subsample, task

# Category -> held-out datasets, in the official evaluation's order (evaluation.py `tests`).
CATEGORIES: dict[str, tuple[str, ...]] = {
    "SUM": ("Multi-XScience",),
    "TRANSL": ("ParaMed",),
    "QA": ("BioASQ-Task-B-yesno", "PubMedQA-labeled", "MedQA"),
    "NER": (
        "NCBI-disease",
        "BC5CDR",
        "AnEM",
        "BioNLP-2009",
        "BioNLP-2011-GE",
        "BioNLP-2011-ID",
        "BioNLP-2011-REL",
        "BioNLP-2013-CG",
        "BioNLP-2013-GE",
        "BioNLP-2013-GRO",
        "BioNLP-2013-PC",
        "BioRED",
        "tmVar-v3",
    ),
    "NED": ("MeDAL", "tmVar-v3-NED"),
    "RE": ("AnEM-RE", "BC5CDR-RE", "BioInfer-RE"),
    "COREF": ("AnEM-COREF", "MLEE-COREF"),
    "EE": ("MLEE-EE",),
}

# Dataset -> official evaluation type (evaluation.py's bio / cls / em / entity lists); SUM and TRANSL have none.
EVALUATION: dict[str, str] = {
    **dict.fromkeys(("NCBI-disease", "BC5CDR"), "bio"),
    **dict.fromkeys(("BioASQ-Task-B-yesno", "PubMedQA-labeled"), "cls"),
    **dict.fromkeys(("MedQA", "MeDAL"), "em"),
    **dict.fromkeys(
        (
            "AnEM-COREF",
            "MLEE-COREF",
            "tmVar-v3-NED",
            "AnEM",
            "BioNLP-2009",
            "BioNLP-2011-GE",
            "BioNLP-2011-ID",
            "BioNLP-2011-REL",
            "BioNLP-2013-CG",
            "BioNLP-2013-GE",
            "BioNLP-2013-GRO",
            "BioNLP-2013-PC",
            "BioRED",
            "tmVar-v3",
            "AnEM-RE",
            "BC5CDR-RE",
            "BioInfer-RE",
            "MLEE-EE",
        ),
        "entity",
    ),
}

# The study's generation budget (evaluation/scripts/*/medinst32_vllm.sh).
MAX_NEW_TOKENS = 1024


def dataset_path(source_dir: Path, dataset: str, zero_shot: bool) -> Path:
    """Where the released files keep one dataset's test records."""
    return source_dir / ("unseen_tests_zs" if zero_shot else "unseen_tests") / f"{dataset}_test.json"


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of one released file: a JSON array, or JSON lines."""
    if not path.is_file():
        raise FileNotFoundError(f"MedINST32 test file not found: {path}")
    text = path.read_text(encoding="utf-8").strip()
    if text.startswith("["):
        records = json.loads(text)
    else:
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
    for position, record in enumerate(records):
        if not isinstance(record, dict) or not isinstance(record.get("output"), str):
            raise ValueError(f"{path}: record {position} is not an object with a string output")
    return records


def chat_messages(record: Mapping[str, Any]) -> list[dict[str, str]]:
    """The study's chat for one record: instruction as system turn, history turns, input as last user turn."""
    messages: list[dict[str, str]] = []
    if record.get("instruction"):
        messages.append({"role": "system", "content": record["instruction"]})
    for turn in record.get("history") or []:
        if isinstance(turn, (list, tuple)) and len(turn) >= 2:  # the study skips malformed turns
            messages.append({"role": "user", "content": str(turn[0])})
            messages.append({"role": "assistant", "content": str(turn[1])})
    if record.get("input"):
        messages.append({"role": "user", "content": record["input"]})
    return messages


def load_category(category: str, source_dir: Path, ctx: LoadContext) -> list[dict[str, Any]]:
    """Every dataset of one category, in the official order; at most `sample` records per dataset."""
    sample = ctx.options["sample"]
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int)):
        raise ValueError(f"evaluation.options.{ctx.task}.sample: expected null or a positive integer, got {sample!r}")
    items: list[dict[str, Any]] = []
    for dataset in CATEGORIES[category]:
        records = read_records(dataset_path(source_dir, dataset, bool(ctx.options["zero_shot"])))
        dataset_items = [
            {
                "id": f"{dataset}-{index}",
                "prompt": chat_messages(record),
                "target": record["output"],
                "choices": None,
                "doc": {
                    "dataset": dataset,
                    "category": category,
                    "evaluation": EVALUATION.get(dataset),
                    "index": index,
                },
            }
            for index, record in enumerate(records)
        ]
        items += subsample(dataset_items, sample, ctx.rng(dataset))
    return items


def category_loader(category: str) -> Loader:
    """The loader of one category."""

    def load(source_dir: Path, ctx: LoadContext) -> list[dict[str, Any]]:
        return load_category(category, source_dir, ctx)

    return load


# (task name, official category, metrics, primary metric, description). The paper reports ROUGE-L for SUM,
# chrF++ for MT and "F1" otherwise: the dataset's official F1 variant, macro-averaged over the category's
# datasets (metric medinst_f1, see expertlab.metrics.medinst).
_SUITE: tuple[tuple[str, str, tuple[str, ...], str, str], ...] = (
    (
        "medinst_sum",
        "SUM",
        ("rouge_l", "word_f1"),
        "rouge_l",
        "related-work summaries of scientific papers (Multi-XScience)",
    ),
    (
        "medinst_mt",
        "TRANSL",
        ("chrf_pp", "rouge_l", "word_f1"),
        "chrf_pp",
        "Chinese-English medical translation (ParaMed)",
    ),
    (
        "medinst_qa",
        "QA",
        ("medinst_f1", "label_f1", "exact_match", "rouge_l", "word_f1"),
        "medinst_f1",
        "biomedical question answering (BioASQ yes/no, PubMedQA, MedQA)",
    ),
    (
        "medinst_ner",
        "NER",
        ("medinst_f1", "entity_f1", "label_f1", "rouge_l", "word_f1"),
        "medinst_f1",
        "named entity recognition, bracketed entities or BIO tags (13 datasets)",
    ),
    (
        "medinst_ned",
        "NED",
        ("medinst_f1", "entity_f1", "exact_match", "rouge_l", "word_f1"),
        "medinst_f1",
        "named entity disambiguation (MeDAL abbreviations, tmVar-v3 variants)",
    ),
    (
        "medinst_re",
        "RE",
        ("medinst_f1", "entity_f1", "rouge_l", "word_f1"),
        "medinst_f1",
        "relation extraction as bracketed triples (AnEM, BC5CDR, BioInfer)",
    ),
    (
        "medinst_coref",
        "COREF",
        ("medinst_f1", "entity_f1", "rouge_l", "word_f1"),
        "medinst_f1",
        "coreference resolution as bracketed mention groups (AnEM, MLEE)",
    ),
    ("medinst_ee", "EE", ("medinst_f1", "entity_f1", "rouge_l", "word_f1"), "medinst_f1", "event extraction (MLEE)"),
)

for _name, _category, _metrics, _primary, _description in _SUITE:
    task(
        source="medinst",
        name=_name,
        domain="biomedical",
        aspect="utility",
        kind="generation",
        metrics=_metrics,
        primary_metric=_primary,
        max_new_tokens=MAX_NEW_TOKENS,
        description=f"MedINST32 {_category}: {_description}",
        load=category_loader(_category),
        options={"sample": None, "zero_shot": False},
    )
