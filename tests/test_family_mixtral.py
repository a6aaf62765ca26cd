"""Mixtral traps: hub names (`block_sparse_moe`, w1/w2/w3) or v5 module names, always-renormalised top-k, counts."""

from __future__ import annotations

import json
import math

import pytest
import torch

from expertlab.moe.checkpoint import tensor_names
from expertlab.moe.families import FAMILIES
from expertlab.moe.prune import prune_checkpoint, prune_model
from tests.tiny_models import save_checkpoint
from tests.tiny_models.mixtral import build

ADAPTER = FAMILIES["mixtral"]
KEPT = [[0, 2, 3, 5], [1, 4, 6, 7]]


def hand_router(layer):  # noqa: ANN001, ANN202
    """Layer router with logits log(1..8) for the input e_0 (one-hot on the first hidden unit)."""
    with torch.no_grad():
        layer.router.weight.zero_()
        layer.router.weight[:, 0] = torch.log(torch.arange(1.0, 9.0))
    hidden = torch.zeros(1, layer.router.hidden_dim)
    hidden[0, 0] = 1.0
    return hidden


def test_transformers_saves_hub_names_and_the_adapter_finds_them(tmp_path):
    build().save_pretrained(tmp_path)
    names = tensor_names(tmp_path)
    assert "model.layers.1.block_sparse_moe.experts.7.w3.weight" in names
    assert not any(".mlp." in name for name in names)
    layers = ADAPTER.expert_tensors(json.loads((tmp_path / "config.json").read_text()), names)
    assert [(layer.layer, layer.experts, layer.router_rows) for layer in layers] == [
        (i, f"model.layers.{i}.block_sparse_moe.experts", (f"model.layers.{i}.block_sparse_moe.gate.weight",))
        for i in (0, 1)
    ]


def test_a_checkpoint_with_v5_module_names_prunes_and_reloads(tmp_path):
    """A checkpoint written from the v5 state dict (fused `mlp.experts.gate_up_proj`) is sliced along dim 0."""
    from transformers import AutoModelForCausalLM

    source = tmp_path / "source"
    model = build()
    save_checkpoint(model, source)
    config = json.loads((source / "config.json").read_text())
    layers = ADAPTER.expert_tensors(config, tensor_names(source))
    assert [layer.experts for layer in layers] == ["model.layers.0.mlp.experts", "model.layers.1.mlp.experts"]

    (tmp_path / "mask.json").write_text(json.dumps(KEPT))
    prune_checkpoint(source, tmp_path / "mask.json", tmp_path / "pruned")
    assert "model.layers.0.mlp.experts.gate_up_proj" in tensor_names(tmp_path / "pruned")
    reloaded, info = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert reloaded.model.layers[0].mlp.experts.gate_up_proj.shape == (4, 32, 32)
    expected = prune_model(build(), KEPT).state_dict()
    assert all(torch.equal(tensor, expected[name]) for name, tensor in reloaded.state_dict().items())


def test_restricted_router_renormalises_over_the_kept_experts_by_hand():
    model = build()
    layer = ADAPTER.moe_layers(model)[0]
    hidden = hand_router(layer)
    _, weights, index = layer.router(hidden)
    assert index.tolist() == [[7, 6]] and weights[0].tolist() == pytest.approx([8 / 15, 7 / 15])

    undo = ADAPTER.restrict_router(layer, torch.tensor([0, 2, 3, 5]))
    logits, weights, index = layer.router(hidden)
    assert index.tolist() == [[5, 3]] and weights[0].tolist() == pytest.approx([6 / 10, 4 / 10])
    assert math.isinf(logits[0, 7].item()) and logits[0, 5].item() == pytest.approx(math.log(6))
    undo()
    assert layer.router(hidden)[2].tolist() == [[7, 6]]

    ADAPTER.prune_layer(layer, torch.tensor([0, 2, 3, 5]))
    _, weights, index = layer.router(hidden)
    assert index.tolist() == [[3, 2]] and weights[0].tolist() == pytest.approx([6 / 10, 4 / 10])  # renumbered 0..3


def test_counts_in_config_json_and_modules(tmp_path):
    source = tmp_path / "source"
    build().save_pretrained(source)
    config = json.loads((source / "config.json").read_text())
    assert config["num_local_experts"] == 8 and "num_experts" not in config
    config["num_experts"] = config.pop("num_local_experts")  # transformers' alias is accepted too
    assert ADAPTER.routing(config).num_experts == 8
    assert ADAPTER.pruned_config(config, 4, 2)["num_experts"] == 4

    (tmp_path / "mask.json").write_text(json.dumps(KEPT))
    prune_checkpoint(source, tmp_path / "mask.json", tmp_path / "pruned", top_k=1)
    pruned = json.loads((tmp_path / "pruned" / "config.json").read_text())
    assert (pruned["num_local_experts"], pruned["num_experts_per_tok"]) == (4, 1)

    model = prune_model(build(), KEPT, top_k=1)
    assert (model.config.num_local_experts, model.config.num_experts, model.num_experts) == (4, 4, 4)
    assert model.num_experts_per_tok == 1
    for layer in ADAPTER.moe_layers(model):
        assert (layer.router.num_experts, layer.experts.num_experts) == (4, 4)
        assert (layer.router.top_k, layer.block.top_k) == (1, 1)
        assert layer.router.weight.shape == (4, 32) and layer.experts.down_proj.shape == (4, 32, 16)
    hidden = torch.randn(5, 32)
    _, weights, index = ADAPTER.moe_layers(model)[0].router(hidden)
    assert index.shape == (5, 1) and torch.allclose(weights, torch.ones(5, 1))  # renormalised top-1
