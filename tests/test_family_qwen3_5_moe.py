"""Qwen3.5-MoE traps: the hub's vision-language checkpoint (decoder under `text_config`, tensors under
`model.language_model.`, vision and multi-token-prediction tensors beside it) prunes in place and loads as a
CausalLM; every layer, linear attention or not, is sparse; the sigmoid-gated shared expert is kept and unobserved."""

from __future__ import annotations

import json
import re

import torch
from safetensors.torch import load_file, save_file

from expertlab.moe.checkpoint import tensor_names
from expertlab.moe.families import FAMILIES, adapter_for
from expertlab.moe.observe import observe_batches
from expertlab.moe.prune import prune_checkpoint, prune_model, restrict_routers
from tests.tiny_models import token_ids
from tests.tiny_models.qwen3_5_moe import TEXT_CONFIG, build, scale_routers

ADAPTER = FAMILIES["qwen3_5_moe"]
KEPT = [[0, 2, 3, 5], [1, 4, 6, 7], [0, 1, 2, 3], [2, 3, 4, 7]]
VISION_CONFIG = dict(
    depth=1,
    hidden_size=16,
    intermediate_size=32,
    num_heads=2,
    out_hidden_size=32,
    patch_size=4,
    num_position_embeddings=16,
)
MTP_EXPERT = "mtp.layers.0.mlp.experts.{}.down_proj.weight"


def save_hub_checkpoint(path) -> None:  # noqa: ANN001
    """A Qwen3_5MoeForConditionalGeneration checkpoint with a multi-token-prediction head, as on the hub."""
    from transformers import Qwen3_5MoeConfig, Qwen3_5MoeForConditionalGeneration

    torch.manual_seed(0)
    model = Qwen3_5MoeForConditionalGeneration(Qwen3_5MoeConfig(text_config=TEXT_CONFIG, vision_config=VISION_CONFIG))
    scale_routers(model.model.language_model)
    model.save_pretrained(path)
    tensors = load_file(path / "model.safetensors")
    tensors["mtp.layers.0.mlp.gate.weight"] = torch.randn(8, 32)
    tensors.update({MTP_EXPERT.format(e): torch.randn(32, 16) for e in range(8)})
    save_file(tensors, path / "model.safetensors", {"format": "pt"})
    config = json.loads((path / "config.json").read_text())
    config["text_config"]["mtp_num_hidden_layers"] = 1  # as the hub config.json says
    (path / "config.json").write_text(json.dumps(config))


def test_the_vision_language_checkpoint_prunes_in_place_and_loads_as_a_causal_lm(tmp_path):
    from transformers import AutoModelForCausalLM

    source, pruned = tmp_path / "source", tmp_path / "pruned"
    save_hub_checkpoint(source)
    (tmp_path / "mask.json").write_text(json.dumps(KEPT))
    prune_checkpoint(source, tmp_path / "mask.json", pruned, top_k=1)

    before, after = load_file(source / "model.safetensors"), load_file(pruned / "model.safetensors")
    assert {name for name in after if ".mlp.experts." in name and name.startswith("model.language_model.")} == {
        f"model.language_model.layers.{i}.mlp.experts.{e}.{proj}_proj.weight"
        for i in range(4)
        for e in range(4)
        for proj in ("gate", "up", "down")
    }
    for i, kept in enumerate(KEPT):
        prefix = f"model.language_model.layers.{i}.mlp"
        assert torch.equal(after[f"{prefix}.gate.weight"], before[f"{prefix}.gate.weight"][kept])
        renumbered = after[f"{prefix}.experts.3.up_proj.weight"]
        assert torch.equal(renumbered, before[f"{prefix}.experts.{kept[3]}.up_proj.weight"])
    routed = re.compile(r"model\.language_model\.layers\.\d+\.mlp\.(experts|gate)\.")
    untouched = [name for name in before if not routed.match(name)]
    assert any(name.startswith("model.visual.") for name in untouched)
    assert not any(name.startswith("mtp.") for name in after)  # no mask covers the mtp head's experts: left out
    untouched = [name for name in untouched if not name.startswith("mtp.")]
    assert all(torch.equal(after[name], before[name]) for name in untouched)  # vision, shared experts

    config, pruned_config = (json.loads((path / "config.json").read_text()) for path in (source, pruned))
    assert pruned_config["model_type"] == "qwen3_5_moe"
    assert (pruned_config["text_config"]["num_experts"], pruned_config["text_config"]["num_experts_per_tok"]) == (4, 1)
    assert pruned_config["vision_config"] == config["vision_config"]
    assert pruned_config["text_config"]["mtp_num_hidden_layers"] == 0

    reloaded, info = AutoModelForCausalLM.from_pretrained(pruned, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert reloaded.config.model_type == "qwen3_5_moe_text" and adapter_for(reloaded) is FAMILIES["qwen3_5_moe_text"]
    expected = prune_model(AutoModelForCausalLM.from_pretrained(source), KEPT, top_k=1).state_dict()
    got = reloaded.state_dict()
    assert set(got) == set(expected)
    assert all(torch.equal(got[name], tensor) for name, tensor in expected.items())


def test_a_decoder_only_checkpoint_names_its_layers_under_model(tmp_path):
    build().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "qwen3_5_moe_text"
    layers = FAMILIES["qwen3_5_moe_text"].expert_tensors(config, tensor_names(tmp_path))
    assert [layer.experts for layer in layers] == [f"model.layers.{i}.mlp.experts" for i in range(4)]


def test_every_layer_is_sparse_whatever_its_attention():
    model = build()
    assert model.config.layer_types == ["linear_attention"] * 3 + ["full_attention"]
    assert [layer.index for layer in ADAPTER.moe_layers(model)] == [0, 1, 2, 3]


def test_the_shared_expert_and_its_gate_are_kept_and_not_observed():
    assert ADAPTER.shared_experts(build().config) == 1
    input_ids = token_ids()
    batch = [(input_ids, torch.ones_like(input_ids))]
    model = build()
    plain = observe_batches(model, batch)
    with torch.no_grad():
        ADAPTER.moe_layers(model)[0].block.shared_expert.down_proj.weight.mul_(3.0)
    scaled = observe_batches(model, batch)
    first = plain["layer"] == 0
    assert plain[first].equals(scaled[first])
    assert not plain[~first].equals(scaled[~first])  # later layers see the changed residual stream
    pruned, source = prune_model(build(), KEPT), build()
    for layer, kept in zip(ADAPTER.moe_layers(pruned), ADAPTER.moe_layers(source)):
        assert torch.equal(layer.block.shared_expert_gate.weight, kept.block.shared_expert_gate.weight)
        assert torch.equal(layer.block.shared_expert.up_proj.weight, kept.block.shared_expert.up_proj.weight)


def test_counts_in_the_model_and_pruned_logits_with_reduced_top_k():
    input_ids = token_ids()
    model = prune_model(build(), KEPT, top_k=1)
    assert (model.config.num_experts, model.num_experts) == (4, 4)
    assert (model.config.num_experts_per_tok, model.num_experts_per_tok) == (1, 1)
    for layer in ADAPTER.moe_layers(model):
        assert (layer.router.num_experts, layer.experts.num_experts, layer.router.top_k) == (4, 4, 1)
        assert layer.experts.gate_up_proj.shape == (4, 32, 32) and layer.experts.down_proj.shape == (4, 32, 16)
    source = build()
    restrict_routers(source, KEPT)
    for layer in ADAPTER.moe_layers(source):
        layer.router.top_k = 1
    with torch.no_grad():
        assert torch.allclose(model(input_ids).logits, source(input_ids).logits, atol=1e-5)
