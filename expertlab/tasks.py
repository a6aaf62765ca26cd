"""Evaluation task registry: what each task measures, how it is prompted and scored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from expertlab.registry import Registry

Domain = Literal["biomedical", "general"]
Aspect = Literal["utility", "reliability"]
Kind = Literal["generation", "classification"]


@dataclass(frozen=True)
class Task:
    """One evaluation task.

    Items live in a JSONL file (one object per line) with the keys
    `id` (str), `prompt` (str, the user turn), `target` (str) and, for
    classification, `choices` (list of str, the target being one of them).
    """

    name: str
    domain: Domain
    aspect: Aspect
    kind: Kind
    metrics: tuple[str, ...]
    primary_metric: str
    max_new_tokens: int
    description: str


TASKS: Registry[Task] = Registry("task")


def task(**fields: object) -> Task:
    """Register a task; `primary_metric` must be one of its `metrics`."""
    entry = Task(**fields)  # type: ignore[arg-type]
    if entry.primary_metric not in entry.metrics:
        raise ValueError(f"task {entry.name!r}: primary metric {entry.primary_metric!r} not in {entry.metrics}")
    TASKS.add(entry.name, entry)
    return entry


# The toy world's suite mirrors the study's (shared/papers/000, section 4).
task(
    name="bio_qa",
    domain="biomedical",
    aspect="utility",
    kind="generation",
    metrics=("exact_match", "token_f1"),
    primary_metric="token_f1",
    max_new_tokens=12,
    description="short-answer questions about drugs, conditions and doses (MedINST QA)",
)
task(
    name="bio_ner",
    domain="biomedical",
    aspect="utility",
    kind="generation",
    metrics=("exact_match", "token_f1"),
    primary_metric="token_f1",
    max_new_tokens=16,
    description="list the drug and condition entities a sentence mentions (MedINST NER)",
)
task(
    name="bio_mcq",
    domain="biomedical",
    aspect="utility",
    kind="classification",
    metrics=("accuracy",),
    primary_metric="accuracy",
    max_new_tokens=4,
    description="four-option multiple choice on biomedical facts (MultiMedQA)",
)
task(
    name="trial_summary",
    domain="biomedical",
    aspect="reliability",
    kind="generation",
    metrics=("rouge_l", "token_f1", "length_words", "type_token_ratio"),
    primary_metric="rouge_l",
    max_new_tokens=40,
    description="summarise a trial abstract with its numbers and units (RCT)",
)
task(
    name="medhalt_fct",
    domain="biomedical",
    aspect="reliability",
    kind="classification",
    metrics=("accuracy",),
    primary_metric="accuracy",
    max_new_tokens=4,
    description="a suggested answer may be wrong: pick the correct option (MedHALT FCT)",
)
task(
    name="medhalt_nota",
    domain="biomedical",
    aspect="reliability",
    kind="classification",
    metrics=("accuracy",),
    primary_metric="accuracy",
    max_new_tokens=4,
    description="the correct option is replaced by 'none of the above' (MedHALT NOTA)",
)
task(
    name="medhalt_fake",
    domain="biomedical",
    aspect="reliability",
    kind="classification",
    metrics=("accuracy",),
    primary_metric="accuracy",
    max_new_tokens=4,
    description="a question about a non-existent drug: recognise it as invalid (MedHALT Fake)",
)
task(
    name="general_arith",
    domain="general",
    aspect="utility",
    kind="generation",
    metrics=("exact_match",),
    primary_metric="exact_match",
    max_new_tokens=6,
    description="small-number arithmetic (GSM8K-like)",
)
task(
    name="general_mcq",
    domain="general",
    aspect="utility",
    kind="classification",
    metrics=("accuracy",),
    primary_metric="accuracy",
    max_new_tokens=4,
    description="four-option multiple choice on geography-like facts (MMLU-like)",
)
task(
    name="general_summary",
    domain="general",
    aspect="reliability",
    kind="generation",
    metrics=("rouge_l", "token_f1", "length_words", "type_token_ratio"),
    primary_metric="rouge_l",
    max_new_tokens=40,
    description="summarise a short news-like report about places (Multi-News+)",
)
