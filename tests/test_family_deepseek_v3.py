"""DeepSeek-V3 traps: group-limited sigmoid routing with a correction bias, its pruning bounds, the bias sliced."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from expertlab.moe.families import FAMILIES, MoELayer, Routing
from expertlab.moe.prune import prune_checkpoint, prune_model, restrict_routers
from expertlab.variants import Variant
from tests.tiny_models import deepseek_v3 as tiny
from tests.tiny_models import token_ids

ADAPTER = FAMILIES["deepseek_v3"]

# config.json of deepseek-ai/DeepSeek-V3 (routing fields)
HUB_CONFIG = {
    "model_type": "deepseek_v3",
    "num_hidden_layers": 61,
    "first_k_dense_replace": 3,
    "moe_layer_freq": 1,
    "n_routed_experts": 256,
    "num_experts_per_tok": 8,
    "n_group": 8,
    "topk_group": 4,
    "n_shared_experts": 1,
    "num_nextn_predict_layers": 1,
    "topk_method": "noaux_tc",
    "scoring_func": "sigmoid",
}


def hub_names(config: dict, layers: range) -> set[str]:
    names = {"model.embed_tokens.weight", "lm_head.weight"}
    for i in layers:
        names |= {f"model.layers.{i}.mlp.gate.weight", f"model.layers.{i}.mlp.gate.e_score_correction_bias"}
        names |= {f"model.layers.{i}.mlp.experts.{e}.gate_proj.weight" for e in range(config["n_routed_experts"])}
    return names


def logits(model, input_ids):  # noqa: ANN001, ANN201
    with torch.no_grad():
        return model(input_ids=input_ids).logits


def mask_per_group(per_group: int, layers: int = 2, group: int = 4, n_group: int = 4) -> list[list[int]]:
    """The last `per_group` experts of every group, in every MoE layer."""
    return [[g * group + j for g in range(n_group) for j in range(group - per_group, group)]] * layers


def test_hub_config_routing_layers_and_router_rows():
    assert ADAPTER.routing(HUB_CONFIG) == Routing(256, 8, 8, "sigmoid-group-limited")
    assert ADAPTER.shared_experts(HUB_CONFIG) == 1
    layers = ADAPTER.expert_tensors(HUB_CONFIG, hub_names(HUB_CONFIG, range(61)))
    assert [layer.layer for layer in layers] == list(range(3, 61))  # three leading dense layers
    assert layers[0].experts == "model.layers.3.mlp.experts"
    gate = "model.layers.3.mlp.gate"
    assert layers[0].router_rows == (f"{gate}.weight", f"{gate}.e_score_correction_bias")


def test_multi_token_prediction_layer_is_dropped():
    names = hub_names(HUB_CONFIG, range(62))  # hub checkpoints hold layer 61, the MTP module
    dropped = ADAPTER.dropped_tensors(HUB_CONFIG, names)
    assert dropped and all(name.startswith("model.layers.61.") for name in dropped)
    assert dropped == {name for name in names if name.startswith("model.layers.61.")}
    assert [layer.layer for layer in ADAPTER.expert_tensors(HUB_CONFIG, names)] == list(range(3, 61))
    assert ADAPTER.pruned_config(HUB_CONFIG, 128, 8)["num_nextn_predict_layers"] == 0


def test_checkpoint_with_a_multi_token_prediction_layer_prunes_without_it(tmp_path):
    """An extra decoder layer past num_hidden_layers (as in hub checkpoints) is left out, and said so."""
    model = tiny.build()
    model.save_pretrained(tmp_path / "source")
    state = load_file(tmp_path / "source" / "model.safetensors")
    depth = model.config.num_hidden_layers
    mtp = {k.replace(f"model.layers.{depth - 1}.", f"model.layers.{depth}."): v.clone() for k, v in state.items()
           if k.startswith(f"model.layers.{depth - 1}.")}
    save_file({**state, **mtp}, tmp_path / "source" / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((tmp_path / "source" / "config.json").read_text())
    config["num_nextn_predict_layers"] = 1
    (tmp_path / "source" / "config.json").write_text(json.dumps(config))
    mask = [[g * 4 + i for g in range(4) for i in (0, 1)] for _ in range(len(ADAPTER.moe_layers(model)))]
    (tmp_path / "mask.json").write_text(json.dumps(mask))
    record = prune_checkpoint(tmp_path / "source", tmp_path / "mask.json", tmp_path / "pruned", variant=Variant(model="tiny", calibration="biomed", seed=0, criterion="reap", ratio=0.5))
    assert record["dropped_tensors"] == len(mtp)
    pruned = load_file(tmp_path / "pruned" / "model.safetensors")
    assert not any(k.startswith(f"model.layers.{depth}.") for k in pruned)
    assert json.loads((tmp_path / "pruned" / "config.json").read_text())["num_nextn_predict_layers"] == 0


def test_moe_layer_freq_other_than_one_is_refused():
    with pytest.raises(ValueError, match="moe_layer_freq=2"):
        ADAPTER.expert_tensors({**HUB_CONFIG, "moe_layer_freq": 2}, set())


def test_hub_config_pruning_bounds():
    # 8 groups, 4 picked, top-8: a group needs its 2 best scores, the 4 picked groups 8 experts
    assert ADAPTER.pruned_config(HUB_CONFIG, 16, 8)["n_routed_experts"] == 16
    assert ADAPTER.pruned_config(HUB_CONFIG, 128, 8)["n_group"] == 8
    with pytest.raises(ValueError, match="keep at least 2 per group"):
        ADAPTER.pruned_config(HUB_CONFIG, 8, 4)
    with pytest.raises(ValueError, match="top-k=9 cannot be drawn from the topk_group=4 picked groups of 2"):
        ADAPTER.pruned_config(HUB_CONFIG, 16, 9)


def hand_router() -> tuple[MoELayer, torch.Tensor]:
    """A lone MoE block whose router logits are its input (identity weight): 16 experts, 4 groups of 4,
    2 groups picked, top-2, renormalised, times 2.5; and a token whose choice scores are
        group 0: .1 .1 .9 .9   group 1: .5 .4 0 0   group 2: .45 .3 0 0   group 3: .2 .2 0 0
    with sigmoid scores 0.5 except expert 4 (0.75) and expert 8 (0.25); the bias makes up the rest."""
    from transformers import DeepseekV3Config
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE

    config = DeepseekV3Config(hidden_size=16, n_routed_experts=16, num_experts_per_tok=2, n_group=4, topk_group=2,
                              routed_scaling_factor=2.5, norm_topk_prob=True, moe_intermediate_size=4,
                              n_shared_experts=1, num_attention_heads=4)
    block = DeepseekV3MoE(config)
    choice = torch.tensor([0.1, 0.1, 0.9, 0.9, 0.5, 0.4, 0, 0, 0.45, 0.3, 0, 0, 0.2, 0.2, 0, 0])
    token = torch.zeros(1, 16)
    token[0, 4], token[0, 8] = math.log(3), -math.log(3)
    with torch.no_grad():
        block.gate.weight.copy_(torch.eye(16))
        block.gate.e_score_correction_bias.copy_(choice - torch.sigmoid(token[0]))
    return MoELayer(0, block, block.experts, block.gate), token


def routed(router, token) -> dict[int, float]:  # noqa: ANN001
    with torch.no_grad():
        _, weights, index = router(token)
    return {int(e): round(float(w), 5) for e, w in zip(index[0], weights[0])}


def test_restricted_router_picks_groups_by_kept_experts_only():
    layer, token = hand_router()
    keep = torch.tensor([0, 1, 4, 5, 8, 9, 12, 13])
    # source: groups 0 (.9+.9) and 1 (.5+.4) win, experts 2 and 3, each 0.5 / (0.5 + 0.5) * 2.5
    assert routed(layer.router, token) == {2: 1.25, 3: 1.25}
    undo = ADAPTER.restrict_router(layer, keep)
    # kept only: group 0 scores .1+.1, so groups 1 (.9) and 2 (.75) win, experts 4 (.5) and 8 (.45);
    # weights from the uncorrected scores: 0.75 / (0.75 + 0.25) * 2.5 and 0.25 / 1 * 2.5.
    # (Masking after the group choice would keep groups 0 and 1 and pick experts 4 and 5.)
    assert routed(layer.router, token) == {4: 1.875, 8: 0.625}
    undo()
    assert routed(layer.router, token) == {2: 1.25, 3: 1.25}
    ADAPTER.prune_layer(layer, keep)
    assert routed(layer.router, token) == {2: 1.875, 4: 0.625}  # experts 4 and 8 renumbered
    assert layer.router.num_experts == layer.experts.num_experts == 8


def test_correction_bias_is_sliced_in_memory_and_on_disk(tmp_path):
    from safetensors import safe_open

    source = tiny.build()
    mask = [[1, 3, 4, 7, 9, 10, 12, 14], [0, 2, 5, 6, 8, 11, 13, 15]]
    source.save_pretrained(tmp_path / "source")
    (tmp_path / "mask.json").write_text(json.dumps(mask))
    prune_checkpoint(tmp_path / "source", tmp_path / "mask.json", tmp_path / "pruned")
    pruned = prune_model(tiny.build(), mask)
    with safe_open(str(tmp_path / "pruned" / "model.safetensors"), "pt") as fh:
        for i, kept in zip((1, 2), mask):
            expected = source.model.layers[i].mlp.gate.e_score_correction_bias[kept]
            assert torch.equal(pruned.model.layers[i].mlp.gate.e_score_correction_bias, expected)
            assert torch.equal(fh.get_tensor(f"model.layers.{i}.mlp.gate.e_score_correction_bias"), expected)
            mlp = source.model.layers[i].mlp
            assert torch.equal(fh.get_tensor(f"model.layers.{i}.mlp.gate.weight"), mlp.gate.weight[kept])
            shared = fh.get_tensor(f"model.layers.{i}.mlp.shared_experts.up_proj.weight")
            assert torch.equal(shared, mlp.shared_experts.up_proj.weight)  # never pruned
    config = json.loads((tmp_path / "pruned" / "config.json").read_text())
    counts = (config["n_routed_experts"], config["num_experts_per_tok"], config["n_group"], config["topk_group"])
    assert counts == (8, 3, 4, 2)
    assert "num_local_experts" not in config  # no alias the source did not write


def test_stacked_tensor_checkpoint_prunes_like_the_hub_format(tmp_path):
    """A checkpoint written from the v5 state dict (fused gate_up_proj [E, 2I, H]) prunes along dim 0."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    source = tiny.build()
    mask = [[0, 3, 5, 6, 8, 9, 14, 15]] * 2
    (tmp_path / "source").mkdir()
    source.config.save_pretrained(tmp_path / "source")
    state = {name: tensor.contiguous() for name, tensor in source.state_dict().items()}
    assert "model.layers.1.mlp.experts.gate_up_proj" in state
    save_file(state, str(tmp_path / "source" / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "mask.json").write_text(json.dumps(mask))
    prune_checkpoint(tmp_path / "source", tmp_path / "mask.json", tmp_path / "pruned")
    reloaded, info = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    expected, got = prune_model(tiny.build(), mask).state_dict(), reloaded.state_dict()
    assert set(got) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name


def test_one_expert_per_group_is_refused_everywhere(tmp_path):
    source = tiny.build()
    one = mask_per_group(1)  # 4 experts >= a reduced top-2, but a group's top-2 score is undefined
    with pytest.raises(ValueError, match="keep at least 2 per group"):
        prune_model(source, one, top_k=2)
    with pytest.raises(ValueError, match="keep at least 2 per group"):
        restrict_routers(source, one)
    source.save_pretrained(tmp_path / "source")
    (tmp_path / "mask.json").write_text(json.dumps(one))
    with pytest.raises(ValueError, match="keep at least 2 per group"):
        prune_checkpoint(tmp_path / "source", tmp_path / "mask.json", tmp_path / "pruned", top_k=2)
    assert not (tmp_path / "pruned").exists()


def test_picked_groups_must_hold_top_k():
    input_ids = token_ids()
    # top-5 from 2 picked groups: 2 kept per group give 4 candidates, 3 give 6
    with pytest.raises(ValueError, match="top-k=5 cannot be drawn"):
        prune_model(tiny.build(top_k=5), mask_per_group(2))
    with pytest.raises(ValueError, match="top-k=5 cannot be drawn"):
        restrict_routers(tiny.build(top_k=5), mask_per_group(2))
    source = tiny.build(top_k=5)
    restrict_routers(source, mask_per_group(3))
    pruned = prune_model(tiny.build(top_k=5), mask_per_group(3))
    assert torch.allclose(logits(pruned, input_ids), logits(source, input_ids), atol=1e-5)


def test_correction_bias_changes_the_choice_but_not_the_weights():
    """The tiny model exercises the bias: without it some tokens route elsewhere."""
    model = tiny.build()
    router = model.model.layers[1].mlp.gate
    hidden = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, weights, index = router(hidden)
        router.e_score_correction_bias = torch.zeros_like(router.e_score_correction_bias)
        _, _, unbiased_index = router(hidden)
    assert not torch.equal(index.sort(dim=-1).values, unbiased_index.sort(dim=-1).values)
    scores = torch.sigmoid(hidden @ router.weight.detach().T).gather(1, index)
    assert torch.allclose(weights, scores / scores.sum(dim=-1, keepdim=True) * 2.5)
