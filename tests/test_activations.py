"""Activation records: windows cover every token once, only routed entries are kept, and AF from the records
equals observe's routed_count / tokens on the same texts (same hooks, same batches)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from expertlab.monosemanticity.activations import ActivationRecorder, Document, record_activations, window_table
from expertlab.moe.observe import observe
from tests.conftest import build_tiny_moe, build_tokenizer

BIO = [
    "what is the dose of aspirin for fever in patients with diabetes",
    "metformin and insulin for diabetes trial patients outcome improved",
    "ibuprofen for pain with asthma",
    "the trial of aspirin for pain in patients with fever and asthma and diabetes outcome improved one two three",
]
GENERAL = [
    "one plus two equals three",
    "what is four minus one answer three",
    "seven plus eight equals ten plus five",
]


@pytest.fixture(scope="module")
def model_and_tokenizer():  # noqa: ANN201
    tokenizer = build_tokenizer()
    return build_tiny_moe(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id), tokenizer


def test_windows_cut_each_document_into_consecutive_pieces_of_w_tokens() -> None:
    frame = window_table([7, 3, 8], ["bio", "bio", "general"], window=4)
    assert frame.to_dict("list") == {
        "window_id": [0, 1, 2, 3, 4],
        "domain": ["bio", "bio", "bio", "general", "general"],
        "document": [0, 0, 1, 2, 2],
        "start": [0, 4, 0, 0, 4],
        "tokens": [4, 3, 3, 4, 4],
    }
    with pytest.raises(ValueError, match="window length must be positive"):
        window_table([3], ["bio"], window=0)


def test_records_of_a_hand_made_routing_map_to_windows_and_positions() -> None:
    """Two documents of 5 and 3 tokens, right-padded to 5, windows of 2; layer 0 routes by a fixed table."""
    recorder = ActivationRecorder.__new__(ActivationRecorder)
    recorder.pairs, recorder.entries = {0: []}, []
    record = recorder._recorder(0)
    recorder.batch([1, 0], torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]))
    # flattened tokens: doc1 pos0..4, then doc0 pos0..2 and two pads; top-2 experts and their weights
    index = torch.tensor([[0, 1], [1, 2], [0, 2], [3, 1], [0, 3], [2, 0], [2, 1], [0, 1], [0, 1], [0, 1]])
    weights = torch.tensor([[0.6, 0.4], [0.5, 0.5], [0.9, 0.1], [0.7, 0.3], [0.8, 0.2],
                            [0.6, 0.4], [0.55, 0.45], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]], dtype=torch.float64)  # fmt: skip
    record(None, index, weights, None, None)
    windows = window_table([3, 5], ["general", "bio"], window=2)  # doc0: windows 0, 1; doc1: windows 2, 3, 4
    frame = recorder.records(windows, window=2)
    got = {(r.expert, r.window_id): (r.routed_tokens, r.max_weight, list(r.positions)) for r in frame.itertuples()}
    assert got == {
        # doc0 (tokens 5-7 of the batch; the pads are dropped): positions 0, 1 -> window 0, position 2 -> window 1
        (2, 0): (2, 0.6, [0, 1]), (0, 0): (1, 0.4, [0]), (1, 0): (1, 0.45, [1]),
        (0, 1): (1, 0.5, [0]), (1, 1): (1, 0.5, [0]),
        # doc1: positions 0, 1 -> window 2; 2, 3 -> window 3; 4 -> window 4
        (0, 2): (1, 0.6, [0]), (1, 2): (2, 0.5, [0, 1]), (2, 2): (1, 0.5, [1]),
        (0, 3): (1, 0.9, [0]), (2, 3): (1, 0.1, [0]), (3, 3): (1, 0.7, [1]), (1, 3): (1, 0.3, [1]),
        (0, 4): (1, 0.8, [0]), (3, 4): (1, 0.2, [0]),
    }  # fmt: skip
    assert (frame["layer"] == 0).all() and frame["routed_tokens"].sum() == 8 * 2


def test_activation_frequency_from_the_records_equals_observe_statistics(model_and_tokenizer) -> None:
    model, tokenizer = model_and_tokenizer
    documents = [Document(text, "biomedical") for text in BIO] + [Document(text, "general") for text in GENERAL]
    windows, records = record_activations(model, tokenizer, documents, window=4, batch_size=3, max_length=16, progress=False)
    assert windows.groupby("document")["tokens"].sum().tolist() == [
        min(len(tokenizer(d.text)["input_ids"]), 16) for d in documents
    ]
    assert (records["routed_tokens"] == records["positions"].map(len)).all()
    assert (records["routed_tokens"] > 0).all()
    top_k = model.config.num_experts_per_tok
    merged = records.merge(windows[["window_id", "domain"]], on="window_id")
    for domain in ("biomedical", "general"):
        texts = [d.text for d in documents if d.domain == domain]
        stats = observe(model, tokenizer, texts, batch_size=3, max_length=16, progress=False)
        tokens = windows.loc[windows["domain"] == domain, "tokens"].sum()
        assert tokens == stats["tokens"].iloc[0]
        routed = merged[merged["domain"] == domain].groupby(["layer", "expert"])["routed_tokens"].sum()
        expected = stats.set_index(["layer", "expert"])["routed_count"]
        af = (routed.reindex(expected.index, fill_value=0) / tokens).to_numpy()
        np.testing.assert_array_equal(af, (expected / stats["tokens"].iloc[0]).to_numpy())
        # top-k routing: every token of every layer is routed to exactly k experts
        assert routed.groupby("layer").sum().tolist() == [top_k * tokens] * model.config.num_hidden_layers


def test_a_window_keeps_the_tokens_it_shows(model_and_tokenizer) -> None:
    model, tokenizer = model_and_tokenizer
    windows, _ = record_activations(model, tokenizer, [Document(BIO[3], "biomedical")], window=5, batch_size=2,
                                    max_length=64, progress=False)
    assert ["".join(t) for t in windows["token_texts"]] == [
        "".join(tokenizer.decode([i]) for i in tokenizer(BIO[3])["input_ids"][s : s + 5]) for s in windows["start"]
    ]
    assert " ".join(" ".join(t) for t in windows["token_texts"]) == BIO[3]
    assert isinstance(windows, pd.DataFrame) and windows["tokens"].tolist() == [5, 5, 5, 4]  # 19 words


def test_a_re_observation_records_k_experts_per_token_and_says_so(tmp_path, tiny_moe_dir) -> None:
    import json

    from expertlab.monosemanticity.activations import record_checkpoint
    from expertlab.params import Observe
    from expertlab.records import ACTIVATIONS, ACTIVATION_WINDOWS

    corpus = tmp_path / "bio.jsonl"
    corpus.write_text("".join(json.dumps({"text": text}) + "\n" for text in BIO))
    run = {"model": "tiny", "seed": 0, "corpus": {"biomedical": "bio"}}
    settings = Observe(batch_size=2, max_length=16)
    native = record_checkpoint(tiny_moe_dir, {"biomedical": corpus}, tmp_path / "native", run, 4, settings)
    wider = record_checkpoint(tiny_moe_dir, {"biomedical": corpus}, tmp_path / "k4", run, 4, settings, top_k=4)
    assert (native.top_k, native.native_top_k, wider.top_k, wider.native_top_k) == (2, 2, 4, 2)
    for meta, directory in ((native, "native"), (wider, "k4")):
        records = ACTIVATIONS.read(tmp_path / directory / "activations.parquet")
        tokens = ACTIVATION_WINDOWS.read(tmp_path / directory / "windows.parquet")["tokens"].sum()
        assert records.groupby("layer")["routed_tokens"].sum().tolist() == [meta.top_k * tokens] * len(meta.moe_layers)
    for k, message in ((2, "top-k 2 is the model's own top-k, which is 'native'"), (17, r"top-k 17 is outside 1\.\.\d+")):
        with pytest.raises(ValueError, match=message):
            record_checkpoint(tiny_moe_dir, {"biomedical": corpus}, tmp_path / f"bad{k}", run, 4, settings, top_k=k)
        assert not (tmp_path / f"bad{k}").exists()
