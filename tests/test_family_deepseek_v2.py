"""DeepSeek-V2 traps: softmax over all routed experts, greedy vs group-limited greedy, one kept expert per group."""

from __future__ import annotations

import json
import math

import pytest
import torch

from expertlab.moe.families import FAMILIES, MoELayer, Routing
from expertlab.moe.prune import prune_checkpoint, prune_model, restrict_routers
from tests.tiny_models import deepseek_v2 as tiny
from tests.tiny_models import token_ids

ADAPTER = FAMILIES["deepseek_v2"]

# config.json routing fields of deepseek-ai/DeepSeek-V2-Lite and deepseek-ai/DeepSeek-V2
LITE_CONFIG = {
    "model_type": "deepseek_v2",
    "num_hidden_layers": 27,
    "first_k_dense_replace": 1,
    "moe_layer_freq": 1,
    "n_routed_experts": 64,
    "num_experts_per_tok": 6,
    "n_group": 1,
    "topk_group": 1,
    "topk_method": "greedy",
    "n_shared_experts": 2,
}
FULL_CONFIG = {**LITE_CONFIG, "num_hidden_layers": 60, "n_routed_experts": 160, "n_group": 8, "topk_group": 3,
               "topk_method": "group_limited_greedy"}


def logits(model, input_ids):  # noqa: ANN001, ANN201
    with torch.no_grad():
        return model(input_ids=input_ids).logits


def test_hub_configs_routing_and_layers():
    assert ADAPTER.routing(LITE_CONFIG) == Routing(64, 6, 1, "softmax-topk")
    assert ADAPTER.routing(FULL_CONFIG) == Routing(160, 6, 8, "softmax-group-limited")
    assert ADAPTER.shared_experts(LITE_CONFIG) == 2
    names = {f"model.layers.{i}.mlp.gate.weight" for i in range(27)}
    layers = ADAPTER.expert_tensors(LITE_CONFIG, names)
    assert [layer.layer for layer in layers] == list(range(1, 27))  # layer 0 is dense
    assert layers[0].router_rows == ("model.layers.1.mlp.gate.weight",)  # V2 has no correction bias
    # V2-Lite routes greedily: its n_group=1 puts no constraint on the mask
    assert ADAPTER.pruned_config(LITE_CONFIG, 6, 6)["n_routed_experts"] == 6
    # V2: 3 of 8 groups, top-6: one expert per group leaves 3 candidates
    with pytest.raises(ValueError, match="top-k=6 cannot be drawn from the topk_group=3 picked groups of 1"):
        ADAPTER.pruned_config(FULL_CONFIG, 8, 6)
    assert ADAPTER.pruned_config(FULL_CONFIG, 16, 6)["n_routed_experts"] == 16


def test_unknown_topk_method_is_refused():
    with pytest.raises(ValueError, match="topk_method 'noaux_tc'"):
        ADAPTER.routing({**FULL_CONFIG, "topk_method": "noaux_tc"})


def hand_router() -> tuple[MoELayer, torch.Tensor]:
    """A lone MoE block whose router logits are its input (identity weight): 16 experts, 4 groups of 4,
    2 groups picked, top-2, times 1.5; a token with logits ln 16 on expert 1, ln 4 on expert 4,
    ln 2 on expert 8 and 0 elsewhere."""
    from transformers import DeepseekV2Config
    from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2Moe

    config = DeepseekV2Config(hidden_size=16, n_routed_experts=16, num_experts_per_tok=2, n_group=4, topk_group=2,
                              topk_method="group_limited_greedy", routed_scaling_factor=1.5,
                              moe_intermediate_size=4, n_shared_experts=1, num_attention_heads=4)
    block = DeepseekV2Moe(config)
    with torch.no_grad():
        block.gate.weight.copy_(torch.eye(16))
    token = torch.zeros(1, 16)
    token[0, 1], token[0, 4], token[0, 8] = math.log(16), math.log(4), math.log(2)
    return MoELayer(0, block, block.experts, block.gate), token


def routed(router, token) -> dict[int, float]:  # noqa: ANN001
    with torch.no_grad():
        _, weights, index = router(token)
    return {int(e): round(float(w), 5) for e, w in zip(index[0], weights[0])}


def test_restricted_router_renormalises_over_kept_experts_and_picks_groups_among_them():
    layer, token = hand_router()
    keep = torch.tensor([0, 4, 8, 12])  # one expert per group is enough for a max-scored group
    # source: softmax over 16 experts (16 + 4 + 2 + 13 = 35): groups 0 and 1, experts 1 and 4
    assert routed(layer.router, token) == {1: round(16 / 35 * 1.5, 5), 4: round(4 / 35 * 1.5, 5)}
    undo = ADAPTER.restrict_router(layer, keep)
    # kept: probabilities 1/8, 4/8, 2/8, 1/8; groups 1 and 2 win, experts 4 and 8.
    # (Groups chosen before masking would be 0 and 1, experts 0 and 4.)
    assert routed(layer.router, token) == {4: 0.75, 8: 0.375}
    undo()
    assert routed(layer.router, token) == {1: round(16 / 35 * 1.5, 5), 4: round(4 / 35 * 1.5, 5)}
    ADAPTER.prune_layer(layer, keep)
    assert routed(layer.router, token) == {1: 0.75, 2: 0.375}  # experts 4 and 8 renumbered
    assert layer.router.num_experts == layer.experts.num_experts == 4


def test_picked_groups_must_hold_top_k(tmp_path):
    one = [[3, 7, 11, 15]] * 2  # top-3 from 2 picked groups of 1 kept expert: only 2 candidates
    with pytest.raises(ValueError, match="top-k=3 cannot be drawn"):
        prune_model(tiny.build(), one)
    with pytest.raises(ValueError, match="top-k=3 cannot be drawn"):
        restrict_routers(tiny.build(), one)
    tiny.build().save_pretrained(tmp_path / "source")
    (tmp_path / "mask.json").write_text(json.dumps(one))
    with pytest.raises(ValueError, match="top-k=3 cannot be drawn"):
        prune_checkpoint(tmp_path / "source", tmp_path / "mask.json", tmp_path / "pruned")
    assert not (tmp_path / "pruned").exists()
    # with top-2 the same mask routes: the pruned model equals the restricted source
    input_ids = token_ids()
    source = tiny.build(top_k=2)
    restrict_routers(source, one)
    pruned = prune_model(tiny.build(top_k=2), one)
    assert torch.allclose(logits(pruned, input_ids), logits(source, input_ids), atol=1e-5)


def test_greedy_router_ignores_groups():
    source = tiny.build(topk_method="greedy")
    assert ADAPTER.routing(source.config).n_group == 1
    uneven = [[0, 1, 2, 3, 4, 9], [2, 5, 6, 7, 8, 13]]  # groups of 4 keep unequal counts: fine when greedy
    input_ids = token_ids()
    unrestricted = logits(source, input_ids)
    restrict_routers(source, uneven)
    restricted = logits(source, input_ids)
    assert not torch.allclose(restricted, unrestricted, atol=1e-4)
    pruned = prune_model(tiny.build(topk_method="greedy"), uneven)
    assert torch.allclose(logits(pruned, input_ids), restricted, atol=1e-5)
    assert pruned.config.n_routed_experts == 6


def test_checkpoint_slices_router_rows_and_keeps_shared_experts(tmp_path):
    from safetensors import safe_open

    source = tiny.build()
    mask = [[1, 3, 4, 7, 9, 10, 12, 14], [0, 2, 5, 6, 8, 11, 13, 15]]
    source.save_pretrained(tmp_path / "source")
    (tmp_path / "mask.json").write_text(json.dumps(mask))
    prune_checkpoint(tmp_path / "source", tmp_path / "mask.json", tmp_path / "pruned")
    with safe_open(str(tmp_path / "pruned" / "model.safetensors"), "pt") as fh:
        for i, kept in zip((1, 2), mask):
            mlp = source.model.layers[i].mlp
            assert torch.equal(fh.get_tensor(f"model.layers.{i}.mlp.gate.weight"), mlp.gate.weight[kept])
            down = fh.get_tensor(f"model.layers.{i}.mlp.experts.7.down_proj.weight")
            assert torch.equal(down, mlp.experts.down_proj[kept[7]])
            shared = fh.get_tensor(f"model.layers.{i}.mlp.shared_experts.down_proj.weight")
            assert torch.equal(shared, mlp.shared_experts.down_proj.weight)  # never pruned
        dense = fh.get_tensor("model.layers.0.mlp.down_proj.weight")
        assert torch.equal(dense, source.model.layers[0].mlp.down_proj.weight)
    config = json.loads((tmp_path / "pruned" / "config.json").read_text())
    counts = (config["n_routed_experts"], config["num_experts_per_tok"], config["n_group"], config["topk_group"])
    assert counts == (8, 3, 4, 2)
    assert config["topk_method"] == "group_limited_greedy"
