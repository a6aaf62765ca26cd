"""The toy world's task suite: items come from the `prepare` stage (expertlab.data.toy), not from files."""

from __future__ import annotations

from expertlab.tasks import task

# The toy world's suite mirrors the study's (shared/papers/000, section 4).
task(
    source="toy",
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
    source="toy",
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
    source="toy",
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
    source="toy",
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
    source="toy",
    name="bio_fct",
    domain="biomedical",
    aspect="reliability",
    kind="classification",
    metrics=("accuracy",),
    primary_metric="accuracy",
    max_new_tokens=4,
    description="a suggested answer may be wrong: pick the correct option (MedHALT FCT)",
)
task(
    source="toy",
    name="bio_nota",
    domain="biomedical",
    aspect="reliability",
    kind="classification",
    metrics=("accuracy",),
    primary_metric="accuracy",
    max_new_tokens=4,
    description="the correct option is replaced by 'none of the above' (MedHALT NOTA)",
)
task(
    source="toy",
    name="bio_fake",
    domain="biomedical",
    aspect="reliability",
    kind="classification",
    metrics=("accuracy",),
    primary_metric="accuracy",
    max_new_tokens=4,
    description="a question about a non-existent drug: recognise it as invalid (MedHALT Fake)",
)
task(
    source="toy",
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
    source="toy",
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
    source="toy",
    name="general_summary",
    domain="general",
    aspect="reliability",
    kind="generation",
    metrics=("rouge_l", "token_f1", "length_words", "type_token_ratio"),
    primary_metric="rouge_l",
    max_new_tokens=40,
    description="summarise a short news-like report about places (Multi-News+)",
)
