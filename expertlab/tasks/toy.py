"""The toy world's task suite, each task with the example format its items are drawn in (by `prepare`, expertlab.data.toy)."""

from __future__ import annotations

from typing import Any

from expertlab.data.examples import (
    Format,
    bio_mcq,
    bio_ner,
    bio_qa,
    general_arith,
    general_mcq,
    general_summary,
    medhalt_fake,
    medhalt_fct,
    medhalt_nota,
    trial_summary,
)
from expertlab.tasks import Task, task

# Toy task name -> the format that writes its items.
FORMATS: dict[str, Format] = {}


def toy_task(fmt: Format, **fields: Any) -> Task:
    """Register a task of the toy world whose items `fmt` draws."""
    entry = task(source="toy", **fields)
    FORMATS[entry.name] = fmt
    return entry


# The toy world's suite mirrors the study's (shared/papers/000, section 4).
toy_task(
    bio_qa,
    name="bio_qa",
    domain="biomedical",
    aspect="utility",
    kind="generation",
    metrics=("exact_match", "token_f1"),
    primary_metric="token_f1",
    max_new_tokens=12,
    description="short-answer questions about drugs, conditions and doses (MedINST QA)",
)
toy_task(
    bio_ner,
    name="bio_ner",
    domain="biomedical",
    aspect="utility",
    kind="generation",
    metrics=("exact_match", "token_f1"),
    primary_metric="token_f1",
    max_new_tokens=16,
    description="list the drug and condition entities a sentence mentions (MedINST NER)",
)
toy_task(
    bio_mcq,
    name="bio_mcq",
    domain="biomedical",
    aspect="utility",
    kind="classification",
    metrics=("accuracy",),
    primary_metric="accuracy",
    max_new_tokens=4,
    description="four-option multiple choice on biomedical facts (MultiMedQA)",
)
toy_task(
    trial_summary,
    name="trial_summary",
    domain="biomedical",
    aspect="reliability",
    kind="generation",
    metrics=("rouge_l", "token_f1", "length_words", "type_token_ratio"),
    primary_metric="rouge_l",
    max_new_tokens=40,
    description="summarise a trial abstract with its numbers and units (RCT)",
)
toy_task(
    medhalt_fct,
    name="bio_fct",
    domain="biomedical",
    aspect="reliability",
    kind="classification",
    metrics=("accuracy",),
    primary_metric="accuracy",
    max_new_tokens=4,
    description="a suggested answer may be wrong: pick the correct option (MedHALT FCT)",
)
toy_task(
    medhalt_nota,
    name="bio_nota",
    domain="biomedical",
    aspect="reliability",
    kind="classification",
    metrics=("accuracy",),
    primary_metric="accuracy",
    max_new_tokens=4,
    description="the correct option is replaced by 'none of the above' (MedHALT NOTA)",
)
toy_task(
    medhalt_fake,
    name="bio_fake",
    domain="biomedical",
    aspect="reliability",
    kind="classification",
    metrics=("accuracy",),
    primary_metric="accuracy",
    max_new_tokens=4,
    description="a question about a non-existent drug: recognise it as invalid (MedHALT Fake)",
)
toy_task(
    general_arith,
    name="general_arith",
    domain="general",
    aspect="utility",
    kind="generation",
    metrics=("exact_match",),
    primary_metric="exact_match",
    max_new_tokens=6,
    description="small-number arithmetic (GSM8K-like)",
)
toy_task(
    general_mcq,
    name="general_mcq",
    domain="general",
    aspect="utility",
    kind="classification",
    metrics=("accuracy",),
    primary_metric="accuracy",
    max_new_tokens=4,
    description="four-option multiple choice on geography-like facts (MMLU-like)",
)
toy_task(
    general_summary,
    name="general_summary",
    domain="general",
    aspect="reliability",
    kind="generation",
    metrics=("rouge_l", "token_f1", "length_words", "type_token_ratio"),
    primary_metric="rouge_l",
    max_new_tokens=40,
    description="summarise a short news-like report about places (Multi-News+)",
)
