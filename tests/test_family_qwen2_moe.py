"""Qwen2-MoE traps: MoE layers from `decoder_sparse_step` and `mlp_only_layers`; the shared expert is kept, not in h~."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from expertlab.moe.checkpoint import tensor_names
from expertlab.moe.families import FAMILIES
from expertlab.moe.observe import observe_batches
from expertlab.moe.prune import prune_checkpoint, prune_model, restrict_routers
from tests.tiny_models import token_ids, save_checkpoint
from tests.tiny_models.qwen2_moe import build

ADAPTER = FAMILIES["qwen2_moe"]
KEPT = [[0, 2, 3, 5], [1, 4, 6, 7], [0, 1, 2, 3]]  # MoE layers 0, 2, 3 of the tiny model


@pytest.mark.parametrize(
    ("layers", "mlp_only_layers", "decoder_sparse_step", "expected"),
    [
        (4, (1,), 1, [0, 2, 3]),
        (4, (), 2, [1, 3]),
        (6, (3,), 2, [1, 5]),  # both rules apply, as in Qwen2MoeDecoderLayer
    ],
)
def test_moe_layers_follow_the_sparse_step_and_dense_list(
    layers, mlp_only_layers, decoder_sparse_step, expected, tmp_path
):
    from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeSparseMoeBlock

    model = build(layers=layers, mlp_only_layers=mlp_only_layers, decoder_sparse_step=decoder_sparse_step)
    sparse = [i for i, layer in enumerate(model.model.layers) if isinstance(layer.mlp, Qwen2MoeSparseMoeBlock)]
    assert sparse == expected
    assert [layer.index for layer in ADAPTER.moe_layers(model)] == expected
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert [layer.layer for layer in ADAPTER.expert_tensors(config, tensor_names(tmp_path))] == expected


def test_a_hub_config_without_the_layer_fields_makes_every_layer_moe():
    config = {"model_type": "qwen2_moe", "num_hidden_layers": 3, "num_experts": 60, "num_experts_per_tok": 4}
    assert [layer.layer for layer in ADAPTER.expert_tensors(config, set())] == [0, 1, 2]
    assert ADAPTER.expert_tensors(config | {"num_experts": 0}, set()) == []  # no experts: a dense model


def test_one_shared_expert_per_layer():
    config = build().config
    assert ADAPTER.shared_experts(config) == 1
    assert ADAPTER.shared_experts(config.to_dict() | {"shared_expert_intermediate_size": 0}) == 0


def test_the_shared_expert_and_its_gate_are_never_pruned(tmp_path):
    source = tmp_path / "source"
    build().save_pretrained(source)
    (tmp_path / "mask.json").write_text(json.dumps(KEPT))
    prune_checkpoint(source, tmp_path / "mask.json", tmp_path / "pruned")
    before, after = load_file(source / "model.safetensors"), load_file(tmp_path / "pruned" / "model.safetensors")
    untouched = [name for name in before if ".shared_expert" in name or name.startswith("model.layers.1.mlp.")]
    assert len(untouched) == 3 * 4 + 3  # 3 MoE layers x (gate, up, down, sigmoid gate) + the dense layer's MLP
    assert all(torch.equal(after[name], before[name]) for name in untouched)
    assert after["model.layers.0.mlp.gate.weight"].shape == (4, 32)
    assert after["model.layers.0.mlp.shared_expert_gate.weight"].shape == (1, 32)

    source_model, pruned = build(), prune_model(build(), KEPT)
    for layer, kept in zip(ADAPTER.moe_layers(pruned), ADAPTER.moe_layers(source_model)):
        assert torch.equal(layer.block.shared_expert_gate.weight, kept.block.shared_expert_gate.weight)
        assert torch.equal(layer.block.shared_expert.down_proj.weight, kept.block.shared_expert.down_proj.weight)


def test_the_shared_expert_is_not_in_the_observed_statistics():
    """Scaling layer 0's shared expert changes its block output but none of its routed-expert statistics."""
    input_ids = token_ids()
    batch = [(input_ids, torch.ones_like(input_ids))]
    model = build()
    block = ADAPTER.moe_layers(model)[0].block
    hidden = torch.randn(1, 5, 32)
    with torch.no_grad():
        plain_output = block(hidden)
        plain = observe_batches(model, batch)
        block.shared_expert.down_proj.weight.mul_(3.0)
        assert not torch.allclose(block(hidden), plain_output)
        scaled = observe_batches(model, batch)
    layer0 = plain["layer"] == 0
    assert plain[layer0].equals(scaled[layer0])
    assert not plain[~layer0].equals(scaled[~layer0])  # later layers see the changed residual stream


def test_pruned_logits_equal_restricted_logits_with_renormalised_top_k():
    """The contract test runs the hub default (no renormalisation); this is the other setting."""
    input_ids = token_ids()
    source = build(norm_topk_prob=True)
    restrict_routers(source, KEPT)
    pruned = prune_model(build(norm_topk_prob=True), KEPT)
    with torch.no_grad():
        assert torch.allclose(pruned(input_ids).logits, source(input_ids).logits, atol=1e-5)


def test_counts_in_config_json_and_modules(tmp_path):
    source = tmp_path / "source"
    build().save_pretrained(source)
    (tmp_path / "mask.json").write_text(json.dumps(KEPT))
    prune_checkpoint(source, tmp_path / "mask.json", tmp_path / "pruned", top_k=1)
    config = json.loads((source / "config.json").read_text())
    pruned = json.loads((tmp_path / "pruned" / "config.json").read_text())
    assert (pruned["num_experts"], pruned["num_experts_per_tok"]) == (4, 1)
    assert {k: v for k, v in pruned.items() if k not in ("num_experts", "num_experts_per_tok")} == {
        k: v for k, v in config.items() if k not in ("num_experts", "num_experts_per_tok")
    }  # the layer pattern and shared-expert size stay

    model = prune_model(build(), KEPT, top_k=1)
    assert (model.config.num_experts, model.num_experts, model.config.num_experts_per_tok) == (4, 4, 1)
    for layer in ADAPTER.moe_layers(model):
        assert (layer.router.num_experts, layer.experts.num_experts, layer.router.top_k) == (4, 4, 1)
        assert layer.experts.gate_up_proj.shape == (4, 32, 32) and layer.experts.down_proj.shape == (4, 32, 16)


def test_a_checkpoint_with_fused_experts_prunes_and_reloads(tmp_path):
    """A checkpoint written from the v5 state dict (`mlp.experts.gate_up_proj [E, 2I, H]`) is sliced along dim 0."""
    from transformers import AutoModelForCausalLM

    source = tmp_path / "source"
    model = build()
    save_checkpoint(model, source)
    (tmp_path / "mask.json").write_text(json.dumps(KEPT))
    prune_checkpoint(source, tmp_path / "mask.json", tmp_path / "pruned")
    names = tensor_names(tmp_path / "pruned")
    assert "model.layers.3.mlp.experts.gate_up_proj" in names and "model.layers.1.mlp.gate_proj.weight" in names
    reloaded, info = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    expected = prune_model(build(), KEPT).state_dict()
    assert all(torch.equal(tensor, expected[name]) for name, tensor in reloaded.state_dict().items())
