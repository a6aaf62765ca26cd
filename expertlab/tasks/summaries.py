"""Official RCT, MedINST32 Multi-XScience and Multi-News+ release files -> summarisation reliability task items."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from expertlab.tasks import LoadContext, subsample, task
from expertlab.tasks.medinst import chat_messages, dataset_path, read_records

# Each source directory is a checkout of the official release, read as is:
# - rct: bwallace/RCT-summarization-data (de10c27): test-inputs.csv (a Git LFS file) and test-targets.csv;
# - medinst: the MedINST32 dataset as released: unseen_tests/Multi-XScience_test.json (expertlab.tasks.medinst);
# - multi_news_plus: c-juhwan/multi_news_plus (e347c8e): cleansing/cleansed_data/cleansed_data_*.json.
# Every item's doc["source"] is the document text a judge checks the summary against.

# Appendix B templates, whitespace as in the study's generate_rct_summaries.py / generate_multi_news_summaries.py.
RCT_TEMPLATE = (
    "You are a medical evidence summarization assistant. "
    "Given a randomized controlled trial abstract, write a concise factual summary in 2-4 sentences. "
    "Do not include information that is not supported by the abstract.\n\n"
    "Source documents:\n{source}\n\nSummary:"
)
MULTI_NEWS_TEMPLATE = (
    "You are a news summarization assistant. "
    "Given documents from multiple news sources about the same event, write a concise factual summary in 2-4 sentences. "
    "Do not include information that is not supported by the source.\n\n"
    "Source documents:\n{source}\n\nSummary:"
)

# rouge_l (stemmed) is the project's summary metric; rouge_l_unstemmed is how the study scored these summaries.
SUMMARY_METRICS = ("rouge_l", "rouge_l_unstemmed", "bertscore", "type_token_ratio", "length_words")

# The study's generation budget (scripts/*/rct_vllm.sh, multinews_vllm.sh, medinst32_vllm.sh): 1024 new tokens
# (2048 for GPT-OSS, whose low-effort reasoning spends part of it), within each task's context (Task.max_model_len).
MAX_NEW_TOKENS = 1024

_LFS_POINTER = "version https://git-lfs.github.com/spec"


def _read_csv(path: Path) -> list[dict[str, str]]:
    """A release CSV's rows with every value stripped (its first, unnamed column is a pandas index)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; the source directory must hold the release's files")
    with path.open(encoding="utf-8", newline="") as file:
        if file.readline().startswith(_LFS_POINTER):
            raise ValueError(f"{path}: a Git LFS pointer, not the data; run `git lfs pull` in the checkout")
        file.seek(0)
        return [{key: (value or "").strip() for key, value in row.items()} for row in csv.DictReader(file)]


def _rct_source(review_id: str, article: dict[str, str]) -> str:
    """The trial report as the study rendered it for the prompt and the judges."""
    return (
        f"ReviewID: {review_id}\n\n"
        f"Article 1\nPMID: {article['PMID']}\nTitle: {article['Title']}\nAbstract: {article['Abstract']}"
    )


def load_rct(source_dir: Path, ctx: LoadContext) -> list[dict[str, Any]]:
    """Test-split reviews with exactly one trial report and one target summary, in target-file order."""
    reports: dict[str, list[dict[str, str]]] = {}
    for row in _read_csv(source_dir / "test-inputs.csv"):
        if row["ReviewID"]:
            reports.setdefault(row["ReviewID"], []).append(row)
    targets: dict[str, list[str]] = {}
    for row in _read_csv(source_dir / "test-targets.csv"):
        if row["ReviewID"] and row["Target"]:
            targets.setdefault(row["ReviewID"], []).append(row["Target"])
    items = []
    for review_id, conclusions in targets.items():
        articles = reports.get(review_id, [])
        # The study summarises single trials: multi-trial reviews (multi-document inputs) are dropped.
        if len(articles) != 1 or len(conclusions) != 1:
            continue
        source = _rct_source(review_id, articles[0])
        items.append(
            {
                "id": review_id,
                "prompt": RCT_TEMPLATE.format(source=source),
                "target": conclusions[0],
                "choices": None,
                "doc": {"source": source, "review_id": review_id, "pmid": articles[0]["PMID"]},
            }
        )
    return subsample(items, ctx.options.get("sample"), ctx.rng("sample"))


def load_multixscience(source_dir: Path, ctx: LoadContext) -> list[dict[str, Any]]:
    """MedINST32's Multi-XScience test records, read and prompted as the MedINST tasks do (the study's chat)."""
    # The study generated these summaries with eval_medinst32.py, which never passes --zero: the few-shot file.
    records = read_records(dataset_path(source_dir, "Multi-XScience", zero_shot=False))
    items = [
        {
            "id": f"Multi-XScience-{index}",  # as medinst_sum's ids: the same records, the same prompts
            "prompt": chat_messages(record),
            "target": record["output"].strip(),
            "choices": None,
            "doc": {"source": record.get("input", "").strip(), "index": index},
        }
        for index, record in enumerate(records)
    ]
    return subsample(items, ctx.options.get("sample"), ctx.rng("sample"))


def load_multinews(source_dir: Path, ctx: LoadContext) -> list[dict[str, Any]]:
    """Multi-News+ test records with their cleansed documents, by idx; a seeded subsample of `sample` of them."""
    folder = source_dir / "cleansing" / "cleansed_data"
    paths = sorted(folder.glob("cleansed_data_*.json"))
    if not paths:
        raise FileNotFoundError(f"{folder}: no cleansed_data_*.json; the source directory must be a multi_news_plus checkout")
    records = [record for path in paths for record in json.loads(path.read_text(encoding="utf-8"))]
    items = []
    for record in sorted((r for r in records if r["split"] == "test"), key=lambda r: int(r["idx"])):
        # cleansed_document keeps the documents the LLM annotators did not vote irrelevant; some are empty strings.
        documents = [document.strip() for document in record["cleansed_document"] if document.strip()]
        if not documents:  # every document voted irrelevant: nothing to summarise (the study's judges skip these)
            continue
        source = "\n\n".join(documents)
        items.append(
            {
                "id": str(record["idx"]),
                "prompt": MULTI_NEWS_TEMPLATE.format(source=source),
                "target": record["summary"].strip(),
                "choices": None,
                "doc": {"source": source, "idx": int(record["idx"])},
            }
        )
    return subsample(items, ctx.options.get("sample"), ctx.rng("sample"))


# How every summary task is run and scored.
SCORED_AS_SUMMARY = {
    "aspect": "reliability",
    "kind": "generation",
    "metrics": SUMMARY_METRICS,
    "primary_metric": "rouge_l",
    "max_new_tokens": MAX_NEW_TOKENS,
}
task(
    name="rct_summary",
    source="rct",
    domain="biomedical",
    description="summarise a randomised controlled trial's abstract in 2-4 sentences (RCT, Wallace et al., 2021)",
    load=load_rct,
    options={"sample": None},
    **SCORED_AS_SUMMARY,
)
task(
    name="multixscience_summary",
    source="medinst",
    domain="biomedical",
    description="write a paper's related work from its abstract and the cited abstracts (MedINST32 Multi-XScience)",
    load=load_multixscience,
    options={"sample": None},
    **SCORED_AS_SUMMARY,
)
task(
    name="multinews_summary",
    source="multi_news_plus",
    domain="general",
    description="summarise news articles about one event in 2-4 sentences (Multi-News+, Choi et al., 2024)",
    load=load_multinews,
    options={"sample": 50},  # paper, Appendix A: 50 test documents, for judge API cost
    max_model_len=8192,  # multinews_vllm.sh: --max-model-len 8192 (many source articles in one prompt)
    **SCORED_AS_SUMMARY,
)
