"""OLMoE traps: top-k weights renormalised or not per `norm_topk_prob`, the `num_experts` key, fused checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from expertlab.moe.checkpoint import tensor_names
from expertlab.moe.families import FAMILIES
from expertlab.moe.prune import prune_checkpoint, prune_model, restrict_routers
from tests.tiny_models import token_ids, save_checkpoint
from tests.tiny_models.olmoe import build

ADAPTER = FAMILIES["olmoe"]
KEPT = [[0, 2, 3, 5], [1, 4, 6, 7]]


def hand_router(layer):  # noqa: ANN001, ANN202
    """Layer router with logits log(1..8) for the input e_0 (one-hot on the first hidden unit)."""
    with torch.no_grad():
        layer.router.weight.zero_()
        layer.router.weight[:, 0] = torch.log(torch.arange(1.0, 9.0))
    hidden = torch.zeros(1, layer.router.hidden_dim)
    hidden[0, 0] = 1.0
    return hidden


@pytest.mark.parametrize(
    ("norm_topk_prob", "source", "restricted"),
    [
        (False, [8 / 36, 7 / 36], [6 / 14, 4 / 14]),  # softmax mass over all 8 (sum 36), then over the kept 4 (sum 14)
        (True, [8 / 15, 7 / 15], [6 / 10, 4 / 10]),
    ],
)
def test_restricted_and_pruned_router_weights_by_hand(norm_topk_prob, source, restricted):
    layer = ADAPTER.moe_layers(build(norm_topk_prob=norm_topk_prob))[0]
    hidden = hand_router(layer)
    _, weights, index = layer.router(hidden)
    assert index.tolist() == [[7, 6]] and weights[0].tolist() == pytest.approx(source, rel=1e-6)

    undo = ADAPTER.restrict_router(layer, torch.tensor([0, 2, 3, 5]))
    _, weights, index = layer.router(hidden)
    assert index.tolist() == [[5, 3]] and weights[0].tolist() == pytest.approx(restricted, rel=1e-6)
    undo()

    ADAPTER.prune_layer(layer, torch.tensor([0, 2, 3, 5]))
    _, weights, index = layer.router(hidden)
    assert index.tolist() == [[3, 2]] and weights[0].tolist() == pytest.approx(restricted, rel=1e-6)


def test_pruned_logits_equal_restricted_logits_with_renormalised_top_k():
    """The contract test runs the hub default (no renormalisation); this is the other setting."""
    input_ids = token_ids()
    source = build(norm_topk_prob=True)
    restrict_routers(source, KEPT)
    pruned = prune_model(build(norm_topk_prob=True), KEPT)
    assert pruned.config.norm_topk_prob and all(layer.router.norm_topk_prob for layer in ADAPTER.moe_layers(pruned))
    with torch.no_grad():
        assert torch.allclose(pruned(input_ids).logits, source(input_ids).logits, atol=1e-5)


def test_counts_in_config_json_and_modules(tmp_path):
    source = tmp_path / "source"
    build().save_pretrained(source)
    config = json.loads((source / "config.json").read_text())
    assert config["num_experts"] == 8 and "num_local_experts" not in config and config["norm_topk_prob"] is False
    alias = {k: v for k, v in config.items() if k != "num_experts"} | {"num_local_experts": 8}
    assert ADAPTER.routing(alias).num_experts == 8  # transformers' alias is accepted too

    (tmp_path / "mask.json").write_text(json.dumps(KEPT))
    prune_checkpoint(source, tmp_path / "mask.json", tmp_path / "pruned")
    pruned = json.loads((tmp_path / "pruned" / "config.json").read_text())
    assert (pruned["num_experts"], pruned["num_experts_per_tok"]) == (4, 2) and "num_local_experts" not in pruned

    model = prune_model(build(), KEPT, top_k=1)
    assert (model.config.num_experts, model.config.num_local_experts, model.num_experts) == (4, 4, 4)
    assert (model.config.num_experts_per_tok, model.num_experts_per_tok) == (1, 1)
    for layer in ADAPTER.moe_layers(model):
        assert (layer.router.num_experts, layer.experts.num_experts, layer.router.top_k) == (4, 4, 1)
        assert layer.router.weight.shape == (4, 32) and layer.experts.gate_up_proj.shape == (4, 32, 32)


def test_a_checkpoint_with_fused_experts_prunes_and_reloads(tmp_path):
    """A checkpoint written from the v5 state dict (`mlp.experts.gate_up_proj [E, 2I, H]`) is sliced along dim 0."""
    from transformers import AutoModelForCausalLM

    source = tmp_path / "source"
    model = build()
    save_checkpoint(model, source)
    (tmp_path / "mask.json").write_text(json.dumps(KEPT))
    prune_checkpoint(source, tmp_path / "mask.json", tmp_path / "pruned")
    names = tensor_names(tmp_path / "pruned")
    assert "model.layers.1.mlp.experts.down_proj" in names and not any(".experts.0." in name for name in names)
    reloaded, info = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    expected = prune_model(build(), KEPT).state_dict()
    assert all(torch.equal(tensor, expected[name]) for name, tensor in reloaded.state_dict().items())
