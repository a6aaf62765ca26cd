"""The toy world's task suite, each task with the example format its items are drawn in (by `prepare`, expertlab.data.toy)."""

from __future__ import annotations

from collections.abc import Mapping
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
from expertlab.data.tools import tool_call
from expertlab.tasks import Task, task

# Toy task name -> the format that writes its items.
FORMATS: dict[str, Format] = {}


# What a toy task's answers look like decides how it is run and scored.
SHORT_ANSWER = {"kind": "generation", "metrics": ("exact_match", "token_f1"), "primary_metric": "token_f1"}
MULTIPLE_CHOICE = {"kind": "classification", "metrics": ("accuracy",), "primary_metric": "accuracy", "max_new_tokens": 4}
NUMBER = {"kind": "generation", "metrics": ("exact_match",), "primary_metric": "exact_match", "max_new_tokens": 6}
CALL = {"kind": "generation", "metrics": ("ast_match",), "primary_metric": "ast_match", "max_new_tokens": 48}
SUMMARY = {
    "kind": "generation",
    "metrics": ("rouge_l", "token_f1", "length_words", "type_token_ratio"),
    "primary_metric": "rouge_l",
    "max_new_tokens": 40,
}


def toy_task(fmt: Format, name: str, domain: str, aspect: str, answers: Mapping[str, Any], description: str) -> Task:
    """Register a task of the toy world whose items `fmt` draws, run and scored as its `answers` say."""
    entry = task(source="toy", name=name, domain=domain, aspect=aspect, description=description, **answers)
    FORMATS[entry.name] = fmt
    return entry


# The toy world's suite mirrors the study's (shared/papers/000, section 4).
toy_task(bio_qa, "bio_qa", "biomedical", "utility", SHORT_ANSWER | {"max_new_tokens": 12},
         "short-answer questions about drugs, conditions and doses (MedINST QA)")
toy_task(bio_ner, "bio_ner", "biomedical", "utility", SHORT_ANSWER | {"max_new_tokens": 16},
         "list the drug and condition entities a sentence mentions (MedINST NER)")
toy_task(bio_mcq, "bio_mcq", "biomedical", "utility", MULTIPLE_CHOICE,
         "four-option multiple choice on biomedical facts (MultiMedQA)")
toy_task(trial_summary, "trial_summary", "biomedical", "reliability", SUMMARY,
         "summarise a trial abstract with its numbers and units (RCT)")
toy_task(medhalt_fct, "bio_fct", "biomedical", "reliability", MULTIPLE_CHOICE,
         "a suggested answer may be wrong: pick the correct option (MedHALT FCT)")
toy_task(medhalt_nota, "bio_nota", "biomedical", "reliability", MULTIPLE_CHOICE,
         "the correct option is replaced by 'none of the above' (MedHALT NOTA)")
toy_task(medhalt_fake, "bio_fake", "biomedical", "reliability", MULTIPLE_CHOICE,
         "a question about a non-existent drug: recognise it as invalid (MedHALT Fake)")
toy_task(general_arith, "general_arith", "general", "utility", NUMBER,
         "small-number arithmetic (GSM8K-like)")
toy_task(general_mcq, "general_mcq", "general", "utility", MULTIPLE_CHOICE,
         "four-option multiple choice on geography-like facts (MMLU-like)")
toy_task(general_summary, "general_summary", "general", "reliability", SUMMARY,
         "summarise a short news-like report about places (Multi-News+)")
# The second study's in-domain target (shared/papers/001, section 5): one call among the offered functions.
toy_task(tool_call, "tool_call", "tool_use", "utility", CALL,
         "call one of one to four offered functions for a request (BFCL single-turn, AST match)")
