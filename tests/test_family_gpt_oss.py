"""GPT-OSS traps: interleaved gate/up with a clamped SwiGLU, top-k before the softmax, biased router and
experts, hub checkpoints holding MXFP4 uint8 blocks/scales, and the two top-k keys of the hub's config."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from expertlab.moe.families import adapter_for
from expertlab.moe.prune import prune_checkpoint, prune_model, restrict_routers
from tests.tiny_models import token_ids
from tests.tiny_models.gpt_oss import build, reference_expert

KEPT = [[0, 2, 5, 6], [1, 3, 4, 7]]
HUB_SHARDS = ("model-00000-of-00001.safetensors", "model-00001-of-00001.safetensors")


def example_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    input_ids = token_ids((2, 9), seed=5)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    return input_ids, attention_mask


def logits(model, input_ids, attention_mask) -> torch.Tensor:  # noqa: ANN001
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask).logits


def halves_expert(experts, e: int, h: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """The study's code: gate and up as the first and second halves of gate_up (wrong for GPT-OSS)."""
    gate_up = h.double() @ experts.gate_up_proj[e].double() + experts.gate_up_proj_bias[e].double()
    gate, up = gate_up.chunk(2)
    gate, up = gate.clamp(max=experts.limit), up.clamp(min=-experts.limit, max=experts.limit)
    glu = gate * torch.sigmoid(experts.alpha * gate)
    return ((up + 1) * glu) @ experts.down_proj[e].double() + experts.down_proj_bias[e].double()


def unclamped_expert(experts, e: int, h: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    gate_up = h.double() @ experts.gate_up_proj[e].double() + experts.gate_up_proj_bias[e].double()
    gate, up = gate_up[0::2], gate_up[1::2]
    glu = gate * torch.sigmoid(experts.alpha * gate)
    return ((up + 1) * glu) @ experts.down_proj[e].double() + experts.down_proj_bias[e].double()


@pytest.mark.parametrize("implementation", ["eager", "grouped_mm", "batched_mm"])
def test_reference_expert_is_the_modules_own_output_and_the_halves_split_is_not(implementation):
    model = build()
    model.set_experts_implementation(implementation)
    experts = adapter_for(model).moe_layers(model)[0].experts
    hidden = torch.randn(5, 32, generator=torch.Generator().manual_seed(1))
    for e in range(8):
        with torch.no_grad():
            got = experts(hidden, torch.full((5, 1), e), torch.ones(5, 1)).double()
        for t in range(5):
            expected = reference_expert(experts, e, hidden[t])
            assert torch.allclose(got[t], expected, atol=1e-5), (e, t)
            assert not torch.allclose(halves_expert(experts, e, hidden[t]), expected, atol=1e-2)
    # the clamps act on these weights, so the reference's clamping is exercised
    assert not torch.allclose(unclamped_expert(experts, 0, hidden[0]), reference_expert(experts, 0, hidden[0]))


@pytest.mark.parametrize("implementation", ["eager", "batched_mm"])
def test_observed_pairs_are_the_actual_weights_and_unweighted_outputs(implementation):
    """The default observed_forward fits every experts implementation GPT-OSS dispatches to."""
    model = build()
    model.set_experts_implementation(implementation)
    adapter = adapter_for(model)
    layer = adapter.moe_layers(model)[1]
    calls, records = [], []
    hook = layer.experts.register_forward_pre_hook(lambda module, args: calls.append([a.clone() for a in args]))
    input_ids, attention_mask = example_inputs()
    plain = logits(model, input_ids, attention_mask)
    hook.remove()
    hidden, top_k_index, top_k_weights = calls[0]
    assert torch.allclose(top_k_weights.sum(dim=-1), torch.ones(len(hidden)))  # softmax over the chosen k

    original = type(layer.experts).forward.__get__(layer.experts)
    observed = adapter.observed_forward(layer, original, lambda *args: records.append(args))
    with torch.no_grad():
        combined = observed(hidden, top_k_index, top_k_weights)
        expected = original(hidden, top_k_index, top_k_weights)
    assert torch.allclose(combined, expected, atol=1e-6)
    _, index, weights, outputs, _ = records[0]
    assert torch.equal(index, top_k_index) and torch.equal(weights, top_k_weights)
    for t in range(len(hidden)):
        for k in range(index.shape[1]):
            reference = reference_expert(layer.experts, int(index[t, k]), hidden[t])
            assert torch.allclose(outputs[t, k].double(), reference, atol=1e-5), (t, k)
    assert torch.allclose(logits(model, input_ids, attention_mask), plain)


def test_router_takes_top_k_on_logits_then_softmax_by_hand():
    """Logits = bias = 0..7: the top-2 are 7, 6 with softmax([7, 6]) = (1/(1+e^-1), e^-1/(1+e^-1))."""
    model = build()
    adapter = adapter_for(model)
    layer = adapter.moe_layers(model)[0]
    with torch.no_grad():
        layer.router.weight.zero_()
        layer.router.bias.copy_(torch.arange(8.0))
    pair = torch.tensor([1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1))])
    hidden = torch.randn(3, 32)

    _, scores, index = layer.router(hidden)
    assert index.tolist() == [[7, 6]] * 3
    assert torch.allclose(scores, pair.expand(3, 2))
    assert not torch.allclose(scores, torch.softmax(torch.arange(8.0), dim=0)[[7, 6]].expand(3, 2), atol=1e-2)

    undo = adapter.restrict_router(layer, torch.tensor([0, 2, 5, 6]))
    logits_restricted, scores, index = layer.router(hidden)
    assert index.tolist() == [[6, 5]] * 3
    assert torch.allclose(scores, pair.expand(3, 2))
    assert torch.isinf(logits_restricted[:, [1, 3, 4, 7]]).all()
    undo()
    assert layer.router(hidden)[2].tolist() == [[7, 6]] * 3

    adapter.prune_layer(layer, torch.tensor([0, 2, 5, 6]))
    _, scores, index = layer.router(hidden)
    assert index.tolist() == [[3, 2]] * 3  # experts 6 and 5, renumbered
    assert torch.allclose(scores, pair.expand(3, 2))


def test_in_memory_pruning_slices_weights_biases_router_and_counts():
    source = build()
    pruned = prune_model(build(), KEPT)
    adapter = adapter_for(pruned)
    for kept, old, new in zip(KEPT, adapter.moe_layers(source), adapter.moe_layers(pruned)):
        keep = torch.tensor(kept)
        for name in ("gate_up_proj", "gate_up_proj_bias", "down_proj", "down_proj_bias"):
            assert torch.equal(getattr(new.experts, name), getattr(old.experts, name)[keep]), name
        assert torch.equal(new.router.weight, old.router.weight[keep])
        assert torch.equal(new.router.bias, old.router.bias[keep])
        assert old.router.bias.abs().min() > 0 and old.experts.down_proj_bias.abs().min() > 0  # biases matter
        assert new.experts.num_experts == new.router.num_experts == 4
        assert new.router.top_k == 2
    assert pruned.num_experts == pruned.config.num_local_experts == pruned.config.num_experts == 4
    assert pruned.num_experts_per_tok == pruned.config.num_experts_per_tok == 2


def test_experts_loaded_as_mxfp4_kernels_refuse_in_memory_pruning():
    from transformers.integrations.mxfp4 import Mxfp4GptOssExperts

    model = build()
    for layer in model.model.layers:
        layer.mlp.experts = Mxfp4GptOssExperts(model.config)
    with pytest.raises(ValueError, match="MXFP4"):
        prune_model(model, KEPT)


def write_hub_checkpoint(model, path) -> dict[str, torch.Tensor]:  # noqa: ANN001
    """`model` as the hub ships GPT-OSS: MXFP4 expert weights (uint8 blocks [E, out, G, 16] and
    scales [E, out, G]), every other tensor in bf16, two shards with an index, and the hub's
    config.json (quantization_config, both top-k keys). Returns the tensors written."""
    generator = torch.Generator().manual_seed(7)
    model.config.save_pretrained(path)
    tensors = {}
    for name, tensor in model.state_dict().items():
        if name.endswith(("experts.gate_up_proj", "experts.down_proj")):
            experts, in_features, out_features = tensor.shape
            low = 122 if name.endswith("gate_up_proj") else 118  # scales 2^-5..2^-3 (gate_up), 2^-9..2^-7 (down)
            tensors[f"{name}_blocks"] = torch.randint(
                0, 256, (experts, out_features, in_features // 32, 16), generator=generator, dtype=torch.uint8
            )
            tensors[f"{name}_scales"] = torch.randint(
                low, low + 3, (experts, out_features, in_features // 32), generator=generator, dtype=torch.uint8
            )
        else:
            tensors[name] = tensor.to(torch.bfloat16).contiguous()
    shards = {name: HUB_SHARDS[0] if name.startswith("model.layers.0.") else HUB_SHARDS[1] for name in tensors}
    for shard in HUB_SHARDS:
        part = {name: tensors[name] for name in tensors if shards[name] == shard}
        save_file(part, path / shard, metadata={"format": "pt"})
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": size}, "weight_map": shards}
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    config = json.loads((path / "config.json").read_text())
    config.update(
        dtype="bfloat16",
        experts_per_token=config["num_experts_per_tok"],
        quantization_config={
            "quant_method": "mxfp4",
            "modules_to_not_convert": [
                "model.layers.*.self_attn",
                "model.layers.*.mlp.router",
                "model.embed_tokens",
                "lm_head",
            ],
        },
    )
    (path / "config.json").write_text(json.dumps(config))
    return tensors


def load_shards(path) -> dict[str, torch.Tensor]:  # noqa: ANN001
    tensors = {}
    for shard in sorted(path.glob("*.safetensors")):
        tensors.update(load_file(shard))
    return tensors


def test_hub_mxfp4_checkpoint_prunes_byte_exactly_and_reloads(tmp_path):
    from transformers import AutoModelForCausalLM, Mxfp4Config

    source_dir, pruned_dir = tmp_path / "source", tmp_path / "pruned"
    source_dir.mkdir()
    source = write_hub_checkpoint(build(), source_dir)
    (tmp_path / "mask.json").write_text(json.dumps(KEPT))
    prune_checkpoint(source_dir, tmp_path / "mask.json", pruned_dir)

    pruned = load_shards(pruned_dir)
    assert set(pruned) == set(source)
    assert source["model.layers.0.mlp.experts.gate_up_proj_blocks"].dtype == torch.uint8
    for name, tensor in source.items():
        layer = int(name.split(".")[2]) if name.startswith("model.layers.") else None
        if layer is not None and (".mlp.experts." in name or ".mlp.router." in name):
            expected = tensor.index_select(0, torch.tensor(KEPT[layer]))
        else:
            expected = tensor
        assert pruned[name].dtype == tensor.dtype and torch.equal(pruned[name], expected), name
    index = json.loads((pruned_dir / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(HUB_SHARDS)

    source_config = json.loads((source_dir / "config.json").read_text())
    config = json.loads((pruned_dir / "config.json").read_text())
    assert config["num_local_experts"] == 4
    assert config["num_experts_per_tok"] == config["experts_per_token"] == 2
    assert config["quantization_config"] == source_config["quantization_config"]

    # transformers dequantizes MXFP4 on a CPU: the pruned model is the source with restricted routers
    def load(path):  # noqa: ANN001, ANN202
        model, info = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32, quantization_config=Mxfp4Config(dequantize=True), output_loading_info=True
        )
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
        return model.eval()

    source_model, pruned_model = load(source_dir), load(pruned_dir)
    input_ids, attention_mask = example_inputs()
    unrestricted = logits(source_model, input_ids, attention_mask)
    restrict_routers(source_model, KEPT)
    restricted = logits(source_model, input_ids, attention_mask)
    assert not torch.allclose(restricted, unrestricted, atol=1e-4)
    assert torch.allclose(logits(pruned_model, input_ids, attention_mask), restricted, atol=1e-5)


def test_checkpoint_without_mxfp4_scales_is_refused(tmp_path):
    source = write_hub_checkpoint(build(), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    adapter = adapter_for(config)
    assert [layer.experts for layer in adapter.expert_tensors(config, set(source))] == [
        "model.layers.0.mlp.experts",
        "model.layers.1.mlp.experts",
    ]
    names = set(source) - {"model.layers.1.mlp.experts.down_proj_scales"}
    with pytest.raises(ValueError, match=r"layer 1: model\.layers\.1\.mlp\.experts\.down_proj \(or"):
        adapter.expert_tensors(config, names)


def test_hub_config_counts_and_both_top_k_keys():
    hub = {"model_type": "gpt_oss", "num_hidden_layers": 24, "num_local_experts": 32, "num_experts_per_tok": 4,
           "experts_per_token": 4}
    adapter = adapter_for(hub)
    routing = adapter.routing(hub)
    assert (routing.num_experts, routing.top_k, routing.n_group) == (32, 4, 1)
    pruned = adapter.pruned_config(hub, 16, 2)
    assert (pruned["num_local_experts"], pruned["num_experts_per_tok"], pruned["experts_per_token"]) == (16, 2, 2)
    assert "num_experts" not in pruned  # no key the source did not have

    # reducing top-k in memory keeps a loaded hub config's alias in step
    model = build()
    model.config.experts_per_token = 2
    adapter.set_counts(model, 4, 1)
    assert model.config.experts_per_token == model.config.num_experts_per_tok == 1
