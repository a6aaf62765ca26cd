"""MedINST32 tasks: fixture files -> exact items; official metrics against hand-computed values; generate -> score."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from expertlab.evaluate import generation_rows, score_rows
from expertlab.metrics import METRICS
from expertlab.metrics.medinst import bio_tags, bracketed_entities, macro_f1
from expertlab.tasks import TASKS
from expertlab.tasks.medinst import CATEGORIES, EVALUATION, MAX_NEW_TOKENS, chat_messages
from tests.scripted import in_order

SOURCE = Path(__file__).parent / "fixtures" / "sources" / "medinst"
NAMES = {
    "medinst_sum": "SUM",
    "medinst_mt": "TRANSL",
    "medinst_qa": "QA",
    "medinst_ner": "NER",
    "medinst_ned": "NED",
    "medinst_re": "RE",
    "medinst_coref": "COREF",
    "medinst_ee": "EE",
}
YES_NO = "Answer the biomedical question with yes or no based on the context."
PUBMEDQA = "Answer the question with yes, no or maybe based on the abstract."


def load(name: str, seed: int = 0, source: Path = SOURCE, **overrides: Any) -> list[dict[str, Any]]:
    task = TASKS[name]
    return task.load(source, task.context(seed, overrides))  # type: ignore[misc]


def row(target: str, dataset: str = "AnEM", evaluation: str | None = "entity") -> dict[str, Any]:
    return {"sample_id": "s", "target": target, "doc": {"dataset": dataset, "evaluation": evaluation}}


# --- tasks and loaders ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NAMES))
def test_every_category_is_a_biomedical_utility_generation_task(name):
    task = TASKS[name]
    assert (task.domain, task.aspect, task.kind, task.source) == ("biomedical", "utility", "generation", "medinst")
    assert task.max_new_tokens == MAX_NEW_TOKENS == 1024  # evaluation/scripts/pruned/medinst32_vllm.sh
    assert dict(task.options) == {"sample": None, "zero_shot": False}
    assert all(metric in METRICS for metric in task.metrics)


def test_primary_metrics_are_the_papers():
    primary = {name: TASKS[name].primary_metric for name in NAMES}
    assert primary == {"medinst_sum": "rouge_l", "medinst_mt": "chrf_pp"} | {
        name: "medinst_f1" for name in NAMES if name not in ("medinst_sum", "medinst_mt")
    }


def test_every_held_out_dataset_has_the_official_evaluation_type():
    assert sum(len(datasets) for datasets in CATEGORIES.values()) == 26
    assert sorted(name for name, kind in EVALUATION.items() if kind != "entity") == [
        "BC5CDR",
        "BioASQ-Task-B-yesno",
        "MeDAL",
        "MedQA",
        "NCBI-disease",
        "PubMedQA-labeled",
    ]
    assert len([kind for kind in EVALUATION.values() if kind == "entity"]) == 18
    assert "Multi-XScience" not in EVALUATION and "ParaMed" not in EVALUATION


def test_qa_loader_gives_the_exact_items():
    assert load("medinst_qa") == [
        {
            "id": "BioASQ-Task-B-yesno-0",
            # instruction -> system turn, each history pair -> user + assistant turns, input -> last user turn
            "prompt": [
                {"role": "system", "content": YES_NO},
                {
                    "role": "user",
                    "content": YES_NO
                    + "\nContext: Insulin lowers blood glucose.\nQuestion: Does insulin raise blood glucose?",
                },
                {"role": "assistant", "content": "no"},
                {
                    "role": "user",
                    "content": "Context: Aspirin inhibits platelet aggregation.\n"
                    "Question: Does aspirin inhibit platelet aggregation?",
                },
            ],
            "target": "yes",
            "choices": None,
            "doc": {"dataset": "BioASQ-Task-B-yesno", "category": "QA", "evaluation": "cls", "index": 0},
        },
        {
            "id": "BioASQ-Task-B-yesno-1",
            "prompt": [
                {"role": "system", "content": YES_NO},
                {
                    "role": "user",
                    "content": "Context: Metformin is taken orally.\nQuestion: Is metformin given by injection?",
                },
            ],
            "target": "no",
            "choices": None,
            "doc": {"dataset": "BioASQ-Task-B-yesno", "category": "QA", "evaluation": "cls", "index": 1},
        },
        {
            "id": "PubMedQA-labeled-0",
            "prompt": [
                {"role": "system", "content": PUBMEDQA},
                {
                    "role": "user",
                    "content": "Abstract: Statins lowered LDL cholesterol in 300 patients.\n"
                    "Question: Do statins lower LDL cholesterol?",
                },
            ],
            "target": "yes",
            "choices": None,
            "doc": {"dataset": "PubMedQA-labeled", "category": "QA", "evaluation": "cls", "index": 0},
        },
        {
            "id": "PubMedQA-labeled-1",
            "prompt": [
                {"role": "system", "content": PUBMEDQA},
                {
                    "role": "user",
                    "content": "Abstract: Results on sleep were mixed across two cohorts.\n"
                    "Question: Does melatonin improve sleep quality?",
                },
            ],
            "target": "maybe",
            "choices": None,
            "doc": {"dataset": "PubMedQA-labeled", "category": "QA", "evaluation": "cls", "index": 1},
        },
        {
            "id": "MedQA-0",
            "prompt": [
                {"role": "system", "content": "Answer the medical exam question by giving the correct option."},
                {
                    "role": "user",
                    "content": "A patient has syphilis. What is the treatment of choice? "
                    "A. Insulin B. Metformin C. Penicillin G D. Aspirin",
                },
            ],
            "target": "Penicillin G",
            "choices": None,
            "doc": {"dataset": "MedQA", "category": "QA", "evaluation": "em", "index": 0},
        },
    ]


def test_every_category_loads_its_datasets_in_the_official_order():
    ids = {name: [item["id"] for item in load(name)] for name in NAMES}
    assert ids["medinst_sum"] == ["Multi-XScience-0", "Multi-XScience-1"]
    assert ids["medinst_mt"] == ["ParaMed-0", "ParaMed-1"]
    assert ids["medinst_ner"] == [f"{dataset}-0" for dataset in CATEGORIES["NER"]]
    assert ids["medinst_ned"] == ["MeDAL-0", "tmVar-v3-NED-0"]
    assert ids["medinst_re"] == ["AnEM-RE-0", "BC5CDR-RE-0", "BC5CDR-RE-1", "BioInfer-RE-0"]
    assert ids["medinst_coref"] == ["AnEM-COREF-0", "MLEE-COREF-0"]
    assert ids["medinst_ee"] == ["MLEE-EE-0", "MLEE-EE-1"]
    for name, category in NAMES.items():
        for item in load(name):
            assert item["doc"]["category"] == category
            assert item["doc"]["evaluation"] == EVALUATION.get(item["doc"]["dataset"])


def test_translation_item_keeps_the_official_output_as_target():
    first = load("medinst_mt")[0]
    assert first["prompt"] == [
        {"role": "system", "content": "Translate the following Chinese text into English."},
        {"role": "user", "content": "患者术后恢复良好。"},
    ]
    assert first["target"] == "The patient recovered well after surgery."


def test_zero_shot_reads_the_zs_files_without_demonstrations():
    few_shot, zero_shot = load("medinst_sum"), load("medinst_sum", zero_shot=True)
    assert [m["role"] for m in few_shot[0]["prompt"]] == ["system", "user", "assistant", "user"]
    assert [m["role"] for m in zero_shot[0]["prompt"]] == ["system", "user"]
    assert zero_shot[0]["prompt"][1] == few_shot[0]["prompt"][3]
    assert [item["target"] for item in zero_shot] == [item["target"] for item in few_shot]


def test_chat_messages_skip_empty_parts_and_malformed_history_turns():
    record = {"instruction": "", "input": "What is MI?", "output": "x", "history": [["q", "a"], ["lonely"], ("q2", 7)]}
    assert chat_messages(record) == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "7"},
        {"role": "user", "content": "What is MI?"},
    ]
    assert chat_messages({"instruction": "Summarise.", "input": None, "output": "x"}) == [
        {"role": "system", "content": "Summarise."}
    ]


def test_sample_draws_per_dataset_deterministically_in_source_order():
    everything = [item["id"] for item in load("medinst_re")]
    first = [item["id"] for item in load("medinst_re", seed=3, sample=1)]
    assert first == [item["id"] for item in load("medinst_re", seed=3, sample=1)]
    assert len(first) == 3  # one per dataset: BC5CDR-RE's two records give one
    assert [i for i in everything if i in first] == first
    drawn = {tuple(item["id"] for item in load("medinst_re", seed=seed, sample=1)) for seed in range(20)}
    assert len(drawn) == 2  # either BC5CDR-RE record, depending on the seed
    assert [item["id"] for item in load("medinst_re", sample=5)] == everything


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="unknown option"):
        TASKS["medinst_qa"].context(0, {"shots": 1})
    with pytest.raises(ValueError, match="sample"):
        load("medinst_qa", sample="all")


def test_json_lines_files_load_like_json_arrays(tmp_path):
    import json

    shutil.copytree(SOURCE, tmp_path, dirs_exist_ok=True)
    path = tmp_path / "unseen_tests" / "ParaMed_test.json"
    records = json.loads(path.read_text(encoding="utf-8"))
    path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), encoding="utf-8")
    assert load("medinst_mt", source=tmp_path) == load("medinst_mt")


def test_a_missing_file_names_the_path_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="MedINST32 test file not found") as error:
        load("medinst_sum", source=tmp_path)
    assert str(tmp_path / "unseen_tests" / "Multi-XScience_test.json") in str(error.value)
    with pytest.raises(FileNotFoundError) as error:
        load("medinst_qa", zero_shot=True)
    assert str(SOURCE / "unseen_tests_zs" / "BioASQ-Task-B-yesno_test.json") in str(error.value)


# --- metrics -------------------------------------------------------------------------------------


def test_bracketed_entities_keep_nested_brackets_inside_the_top_level_span():
    # "[[p53] protein]" is one entity whose inner brackets the official normalisation strips
    assert bracketed_entities("[BRCA1], [[p53] protein], [BRCA1]") == ["brca1", "p53 protein", "brca1"]
    assert bracketed_entities("stray] [The Heart] and [unclosed") == ["heart"]
    assert bracketed_entities("no entities") == []


@pytest.mark.parametrize(
    ("output", "target", "expected"),
    [
        # gold {brca1: 2, p53 protein: 1}, predicted {brca1: 1, p53 protein: 1, tumor: 1}:
        # TP = min(2, 1) + 1 = 2, FP = 1 (tumor), FN = 1 (second brca1): P = R = 2/3, F = 2/3
        ("[brca1] and [p53 protein] and [tumor]", "[BRCA1], [[p53] protein], [BRCA1]", 2 / 3),
        # the repeated entity must be predicted twice to count twice: TP 3, P = 3/3, R = 3/3
        ("[BRCA1] [BRCA1] [p53 protein]", "[BRCA1], [[p53] protein], [BRCA1]", 1.0),
        # one of two relation triples: P = 1, R = 1/2, F = 2/3
        (
            "[[cisplatin], induces, [nephrotoxicity]]",
            "[[cisplatin], induces, [nephrotoxicity]], [[gentamicin], x, [y]]",
            2 / 3,
        ),
        ("nothing bracketed", "[heart]", 0.0),
        ("", "", 0.0),  # no entities on either side scores 0, as officially
    ],
)
def test_entity_f1(output, target, expected):
    assert METRICS["entity_f1"](output, row(target)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("output", "target", "expected"),
    [
        ("the cat sat", "cat sat down", 0.8),  # [cat, sat] vs [cat, sat, down]: P = 1, R = 2/3
        ("the", "an", 0.0),  # both normalise to no words: official 0 (token_f1 gives 1)
        ("", "cat", 0.0),
    ],
)
def test_word_f1_is_the_official_word_level_f1(output, target, expected):
    assert METRICS["word_f1"](output, row(target)) == pytest.approx(expected)


def test_word_f1_differs_from_token_f1_only_when_both_sides_have_no_words():
    assert METRICS["token_f1"]("the", row("an")) == 1.0
    assert METRICS["word_f1"]("the", row("an")) == 0.0


def test_label_f1_is_macro_f1_over_the_gold_labels():
    targets = ["yes", "yes", "no", "no"]
    outputs = ["Yes.", "maybe", "yes", "no"]  # normalised: yes, maybe, yes, no
    # yes: TP 1, FP 1 (row 3), FN 1 (row 2) -> 2/4; no: TP 1, FP 0, FN 1 (row 3) -> 2/3;
    # "maybe" is no gold label, so it only costs the "yes" row a false negative. Macro: (1/2 + 2/3) / 2 = 7/12
    rows = [row(t, "PubMedQA-labeled", "cls") for t in targets]
    assert METRICS["label_f1"].score(outputs, rows, {}) == pytest.approx(7 / 12)

    from sklearn.metrics import f1_score

    gold = ["yes", "yes", "no", "no"]
    predicted = ["yes", "maybe", "yes", "no"]
    official = f1_score(gold, predicted, labels=sorted(set(gold)), average="macro")
    assert macro_f1(gold, predicted) == pytest.approx(official)


def test_label_f1_on_bio_tags_pads_missing_tags():
    # gold tags [O] [B] [I], predicted [O] [B] then padding "N": [B] 1, [I] 0 (TP 0, FN 1), [O] 1 -> 2/3
    gold, predicted = bio_tags("Tumor [O] suppressor [B] disease [I]", "Tumor [O] suppressor [B]")
    assert (gold, predicted) == (["[O]", "[B]", "[I]"], ["[O]", "[B]", "N"])
    assert bio_tags("a [B]", "a [I] b [O]") == (["[B]"], ["[I]"])  # extra tags are cut
    rows = [row("Tumor [O] suppressor [B] disease [I]", "NCBI-disease", "bio")]
    assert METRICS["label_f1"].score(["Tumor [O] suppressor [B]"], rows, {}) == pytest.approx(2 / 3)


def test_label_f1_averages_over_datasets_and_ignores_other_types():
    rows = [row("yes", "BioASQ", "cls"), row("no", "BioASQ", "cls"), row("maybe", "PubMedQA", "cls")]
    rows.append(row("x", "MedQA", "em"))
    # BioASQ: gold [yes, no], predicted [yes, yes]: yes TP 1 FP 1 -> 2/3, no -> 0: 1/3
    # PubMedQA: maybe -> 1; the em row is not a label dataset and is ignored
    assert METRICS["label_f1"].score(["yes", "yes", "maybe", "wrong"], rows, {}) == pytest.approx((1 / 3 + 1) / 2)
    with pytest.raises(ValueError, match="cls or bio"):
        METRICS["label_f1"].score(["x"], [row("x", "MedQA", "em")], {})


def test_medinst_metrics_need_the_medinst_doc():
    with pytest.raises(ValueError, match="doc"):
        METRICS["medinst_f1"].score(["x"], [{"target": "x", "doc": {}}], {})


def test_chrf_pp_is_sacrebleus_corpus_chrf_plus_plus_on_a_zero_to_one_scale():
    from sacrebleu.metrics import CHRF

    outputs = ["The patient recovered well after the surgery.", "The study enrolled 120 patients."]
    targets = ["The patient recovered well after surgery.", "This study enrolled 120 patients."]
    rows = [row(target, "ParaMed", None) for target in targets]
    reference = CHRF(word_order=2)
    expected = reference.corpus_score(outputs, [targets]).score / 100
    assert METRICS["chrf_pp"].score(outputs, rows, {}) == pytest.approx(expected)
    sentence_mean = sum(reference.sentence_score(o, [t]).score for o, t in zip(outputs, targets)) / 200
    assert expected != pytest.approx(sentence_mean)  # corpus statistics, not a mean of sentence scores
    assert METRICS["chrf_pp"]("same words here", row("same words here", "ParaMed", None)) == pytest.approx(1.0)
    assert METRICS["chrf_pp"]("xyz", row("abc", "ParaMed", None)) == 0.0  # no shared character or word


# --- generate -> score ---------------------------------------------------------------------------


def scores(name: str, outputs: Sequence[str]) -> tuple[dict[tuple[str, str], float], dict[str, float]]:
    backend = in_order(outputs)
    rows = generation_rows(backend, TASKS[name], load(name))
    assert [(len(c.prompts), c.max_new_tokens, c.stop) for c in backend.calls] == [(len(outputs), 1024, ())]
    samples, corpus = score_rows(TASKS[name], rows)
    return {(s["sample_id"], s["metric"]): s["value"] for s in samples}, {c["metric"]: c["value"] for c in corpus}


def test_qa_end_to_end():
    # BioASQ yes/no, PubMedQA yes/maybe, MedQA "Penicillin G"
    samples, corpus = scores("medinst_qa", ["Yes.", "yes", "yes", "no", "penicillin G"])
    for metric in ("exact_match", "word_f1", "rouge_l"):
        assert [samples[(i, metric)] for i in ("BioASQ-Task-B-yesno-0", "BioASQ-Task-B-yesno-1")] == [1.0, 0.0]
        later = ("PubMedQA-labeled-0", "PubMedQA-labeled-1", "MedQA-0")
        assert [samples[(i, metric)] for i in later] == [1.0, 0.0, 1.0]
    # BioASQ: gold [yes, no], predicted [yes, yes]: yes TP 1 FP 1 -> 2/3, no -> 0: 1/3
    # PubMedQA: gold [yes, maybe], predicted [yes, no]: yes -> 1, maybe -> 0: 1/2
    assert corpus["label_f1"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    # medinst_f1 adds MedQA's word F1 (1.0) as a third dataset: (1/3 + 1/2 + 1) / 3 = 11/18
    assert corpus["medinst_f1"] == pytest.approx(11 / 18)
    assert set(corpus) == {"label_f1", "medinst_f1"}


def test_relation_extraction_end_to_end_macro_averages_over_datasets():
    outputs = [
        "[[left ventricle], part of, [heart]]",  # AnEM-RE: exact -> 1
        "[[cisplatin], induces, [nephrotoxicity]]",  # BC5CDR-RE-0: one of two triples -> 2/3
        "[[aspirin], induces, [bleeding]]",  # BC5CDR-RE-1: exact -> 1
        "no relation found",  # BioInfer-RE: nothing -> 0
    ]
    samples, corpus = scores("medinst_re", outputs)
    entity = [samples[(i, "entity_f1")] for i in ("AnEM-RE-0", "BC5CDR-RE-0", "BC5CDR-RE-1", "BioInfer-RE-0")]
    assert entity == pytest.approx([1.0, 2 / 3, 1.0, 0.0])  # mean over samples: 2/3
    # per dataset: AnEM-RE 1, BC5CDR-RE (2/3 + 1) / 2 = 5/6, BioInfer-RE 0 -> (1 + 5/6 + 0) / 3 = 11/18
    assert corpus == {"medinst_f1": pytest.approx(11 / 18)}


def test_translation_end_to_end_scores_chrf_pp_over_the_corpus():
    outputs = ["The patient recovered well after surgery.", "This study enrolled 120 patients."]
    samples, corpus = scores("medinst_mt", outputs)
    assert corpus == {"chrf_pp": pytest.approx(1.0)}
    assert {value for (_, metric), value in samples.items() if metric in ("rouge_l", "word_f1")} == {1.0}
