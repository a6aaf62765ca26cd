"""Llama 4 traps: the router's sigmoid score scales the expert INPUT (combine weight 1, output on the scaled
input); MoE layers from `moe_layers` / `interleave_moe_layer_step`; the hub's vision-language checkpoint
(`language_model.model.`, vision tensors beside it) prunes in place and loads as a CausalLM; the router is an
nn.Linear whose sigmoid scores need no renormalisation after restriction."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from expertlab.moe.checkpoint import tensor_names
from expertlab.moe.families import FAMILIES, adapter_for
from expertlab.moe.observe import observe_batches
from expertlab.moe.prune import prune_checkpoint, prune_model, restrict_routers
from tests.tiny_models import token_ids
from tests.tiny_models.llama4 import TEXT_CONFIG, build, prepare

ADAPTER = FAMILIES["llama4"]
KEPT = [[0, 2, 3, 5], [1, 4, 6, 7]]  # MoE layers 1, 3 of the tiny model
VISION_CONFIG = dict(
    hidden_size=16,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=32,
    image_size=16,
    patch_size=8,
    vision_output_dim=16,
    projector_input_dim=16,
    projector_output_dim=32,
    pixel_shuffle_ratio=0.5,
)


def swiglu(experts, e: int, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    gate, up = (x @ experts.gate_up_proj[e]).chunk(2, dim=-1)
    return (torch.nn.functional.silu(gate) * up) @ experts.down_proj[e]


def test_observed_pairs_have_weight_one_and_the_output_on_the_router_scaled_input():
    """By hand on one block: routed = the top-2 logits; output = E_e(sigmoid(l_e) x); combined = block - shared."""
    layer = ADAPTER.moe_layers(build())[0]
    x = torch.randn(5, 32, generator=torch.Generator().manual_seed(2))
    calls = []
    with torch.no_grad():
        plain, _ = layer.block(x)
        layer.experts.forward = ADAPTER.observed_forward(layer, layer.experts.forward, lambda *a: calls.append(a))
        observed, _ = layer.block(x)
        del layer.experts.forward
        logits = x @ layer.router.weight.T
        shared = layer.block.shared_expert(x)
    assert torch.equal(observed, plain)  # the wrapper changes nothing the model computes
    (_, index, weights, outputs, combined), = calls
    assert [sorted(row) for row in index.tolist()] == [sorted(row) for row in logits.topk(2).indices.tolist()]
    assert torch.equal(weights, torch.ones(5, 2))
    for t in range(5):
        for k in range(2):
            e = int(index[t, k])
            expected = swiglu(layer.experts, e, torch.sigmoid(logits[t, e]) * x[t])
            assert torch.allclose(outputs[t, k], expected, atol=1e-6)
    assert torch.allclose(combined, plain - shared, atol=1e-6)  # h~ = h + the routed output, shared expert excluded


def test_an_expert_whose_score_underflows_is_not_routed():
    """Top-3 with logits [0, 0, -1e4, -2e4, ...]: sigmoid(-1e4) is 0 in float32, so expert 2 gets a zero input
    and adds nothing; the token has two routed pairs and a third of weight 0."""
    layer = ADAPTER.moe_layers(build())[0]
    x = torch.randn(1, 32, generator=torch.Generator().manual_seed(2))
    calls = []
    with torch.no_grad():
        layer.router.weight.copy_(torch.tensor([0, 0, -1e4] + [-2e4] * 5)[:, None] * x / x.square().sum())
        layer.router.top_k = 3
        layer.experts.forward = ADAPTER.observed_forward(layer, layer.experts.forward, lambda *a: calls.append(a))
        layer.block(x)
        del layer.experts.forward
    (_, index, weights, outputs, _), = calls
    assert sorted(weights[0].tolist()) == [0.0, 1.0, 1.0]
    assert set(index[0][weights[0] == 1].tolist()) == {0, 1}
    assert not outputs[0][weights[0] == 0].any()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"interleave_moe_layer_step": 2}, [1, 3]),
        ({"interleave_moe_layer_step": 1}, [0, 1, 2, 3]),
        ({"num_hidden_layers": 6, "interleave_moe_layer_step": 3}, [2, 5]),
        ({"interleave_moe_layer_step": 1, "moe_layers": [0, 2]}, [0, 2]),  # the explicit list wins
    ],
)
def test_moe_layers_follow_the_list_or_the_interleave_step(overrides, expected, tmp_path):
    model = build(**overrides)
    assert [i for i, layer in enumerate(model.model.layers) if layer.is_moe_layer] == expected
    assert [layer.index for layer in ADAPTER.moe_layers(model)] == expected
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert [layer.layer for layer in ADAPTER.expert_tensors(config, tensor_names(tmp_path))] == expected


def test_a_hub_config_without_moe_layers_uses_the_interleave_step():
    text = {"num_hidden_layers": 6, "interleave_moe_layer_step": 2, "num_local_experts": 128, "num_experts_per_tok": 1}
    config = {"model_type": "llama4", "text_config": text}
    assert [layer.layer for layer in ADAPTER.expert_tensors(config, set())] == [1, 3, 5]
    assert (ADAPTER.routing(config).num_experts, ADAPTER.routing(config).top_k) == (128, 1)
    assert ADAPTER.shared_experts(config) == 1


def test_the_vision_language_checkpoint_prunes_in_place_and_loads_as_a_causal_lm(tmp_path):
    from transformers import AutoModelForCausalLM, Llama4Config, Llama4ForConditionalGeneration

    source, pruned = tmp_path / "source", tmp_path / "pruned"
    torch.manual_seed(0)
    model = Llama4ForConditionalGeneration(Llama4Config(text_config=TEXT_CONFIG, vision_config=VISION_CONFIG))
    prepare(model.language_model)  # routers and experts scaled as in the tiny model
    model.save_pretrained(source)
    (tmp_path / "mask.json").write_text(json.dumps(KEPT))
    prune_checkpoint(source, tmp_path / "mask.json", pruned, top_k=1)

    before, after = load_file(source / "model.safetensors"), load_file(pruned / "model.safetensors")
    assert set(after) == set(before)  # stacked experts: same names, fewer rows
    for i, kept in zip((1, 3), KEPT):
        prefix = f"language_model.model.layers.{i}.feed_forward"
        for name in ("experts.gate_up_proj", "experts.down_proj", "router.weight"):
            assert torch.equal(after[f"{prefix}.{name}"], before[f"{prefix}.{name}"][kept])
    routed = (".feed_forward.experts.", ".feed_forward.router.")
    untouched = [name for name in before if not any(part in name for part in routed)]
    assert any(name.startswith("vision_model.") for name in untouched)
    assert all(torch.equal(after[name], before[name]) for name in untouched)  # vision, projector, shared experts
    config, pruned_config = (json.loads((path / "config.json").read_text()) for path in (source, pruned))
    text = pruned_config["text_config"]
    assert (pruned_config["model_type"], text["num_local_experts"], text["num_experts_per_tok"]) == ("llama4", 4, 1)
    assert pruned_config["vision_config"] == config["vision_config"]

    reloaded, info = AutoModelForCausalLM.from_pretrained(pruned, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"]
    assert {key.split(".")[0] for key in info["unexpected_keys"]} == {"vision_model", "multi_modal_projector"}
    assert reloaded.config.model_type == "llama4_text" and adapter_for(reloaded) is FAMILIES["llama4_text"]
    expected = prune_model(AutoModelForCausalLM.from_pretrained(source), KEPT, top_k=1).state_dict()
    got = reloaded.state_dict()
    assert set(got) == set(expected)
    assert all(torch.equal(got[name], tensor) for name, tensor in expected.items())


def test_the_restricted_router_keeps_the_kept_experts_sigmoid_scores():
    layer = ADAPTER.moe_layers(build())[0]
    x = torch.randn(6, 32, generator=torch.Generator().manual_seed(3))
    keep = torch.tensor([1, 4, 6, 7])
    with torch.no_grad():
        logits = x @ layer.router.weight.T
        ADAPTER.restrict_router(layer, keep)
        scores, _ = layer.router(x)
    chosen = logits[:, keep].topk(2).indices
    expected = torch.zeros(6, 8)
    expected.scatter_(1, keep[chosen], torch.sigmoid(logits.gather(1, keep[chosen])))
    assert torch.allclose(scores, expected)


def test_the_shared_expert_is_kept_and_not_observed():
    input_ids = token_ids()
    batch = [(input_ids, torch.ones_like(input_ids))]
    model = build()
    plain = observe_batches(model, batch)
    assert (plain["gate_sum"] == plain["routed_count"]).all()  # combine weight 1: gate equals frequency
    with torch.no_grad():
        ADAPTER.moe_layers(model)[0].block.shared_expert.down_proj.weight.mul_(3.0)
    scaled = observe_batches(model, batch)
    first = plain["layer"] == 1
    assert plain[first].equals(scaled[first])
    assert not plain[~first].equals(scaled[~first])  # later layers see the changed residual stream
    pruned, source = prune_model(build(), KEPT), build()
    for layer, kept in zip(ADAPTER.moe_layers(pruned), ADAPTER.moe_layers(source)):
        assert torch.equal(layer.block.shared_expert.up_proj.weight, kept.block.shared_expert.up_proj.weight)


def test_counts_in_the_model_and_pruned_logits_with_reduced_top_k():
    input_ids = token_ids()
    model = prune_model(build(), KEPT, top_k=1)
    assert (model.config.num_local_experts, model.config.num_experts_per_tok) == (4, 1)
    for layer in ADAPTER.moe_layers(model):
        assert (layer.router.num_experts, layer.router.out_features, layer.experts.num_experts) == (4, 4, 4)
        assert (layer.block.num_experts, layer.router.top_k, layer.block.top_k) == (4, 1, 1)
        assert layer.experts.gate_up_proj.shape == (4, 32, 32) and layer.experts.down_proj.shape == (4, 16, 32)
    source = build()
    restrict_routers(source, KEPT)
    for layer in ADAPTER.moe_layers(source):
        layer.router.top_k = 1
    with torch.no_grad():
        assert torch.allclose(model(input_ids).logits, source(input_ids).logits, atol=1e-5)
