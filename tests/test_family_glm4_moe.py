"""GLM-4.5 traps: DeepSeek-V3 routing with the released single group, its 2-expert floor, the MTP layer, the bias."""

from __future__ import annotations

import json

import pytest
import torch

from expertlab.moe.families import FAMILIES, Routing
from expertlab.moe.prune import prune_checkpoint, prune_model, restrict_routers
from tests.tiny_models import glm4_moe as tiny
from tests.tiny_models import token_ids

ADAPTER = FAMILIES["glm4_moe"]

# config.json routing fields of zai-org/GLM-4.5 and zai-org/GLM-4.5-Air
GLM45_CONFIG = {
    "model_type": "glm4_moe",
    "num_hidden_layers": 92,
    "first_k_dense_replace": 3,
    "n_routed_experts": 160,
    "num_experts_per_tok": 8,
    "n_group": 1,
    "topk_group": 1,
    "n_shared_experts": 1,
    "routed_scaling_factor": 2.5,
    "num_nextn_predict_layers": 1,
}
AIR_CONFIG = {**GLM45_CONFIG, "num_hidden_layers": 46, "first_k_dense_replace": 1, "n_routed_experts": 128}


def logits(model, input_ids):  # noqa: ANN001, ANN201
    with torch.no_grad():
        return model(input_ids=input_ids).logits


def router_names(layers: range) -> set[str]:
    return {f"model.layers.{i}.mlp.gate.{name}" for i in layers for name in ("weight", "e_score_correction_bias")}


def test_hub_configs_routing_and_layers():
    assert ADAPTER.routing(GLM45_CONFIG) == Routing(160, 8, 1, "sigmoid-topk")
    assert ADAPTER.routing(AIR_CONFIG) == Routing(128, 8, 1, "sigmoid-topk")
    assert ADAPTER.shared_experts(AIR_CONFIG) == 1
    layers = ADAPTER.expert_tensors(GLM45_CONFIG, router_names(range(92)))
    assert [layer.layer for layer in layers] == list(range(3, 92))
    gate = "model.layers.91.mlp.gate"
    assert layers[-1].router_rows == (f"{gate}.weight", f"{gate}.e_score_correction_bias")
    # one group: any split of the kept experts routes, down to top-k (and never below 2)
    assert ADAPTER.pruned_config(AIR_CONFIG, 9, 8)["n_routed_experts"] == 9


@pytest.mark.parametrize(("config", "mtp_layer"), [(GLM45_CONFIG, 92), (AIR_CONFIG, 46)])
def test_multi_token_prediction_layer_is_dropped(config, mtp_layer):
    names = router_names(range(config["num_hidden_layers"] + 1))
    assert {name.split(".")[2] for name in ADAPTER.dropped_tensors(config, names)} == {str(mtp_layer)}
    assert ADAPTER.expert_tensors(config, names)[-1].layer == mtp_layer - 1


def test_single_group_prunes_any_split_and_matches_the_restricted_router():
    source = tiny.build(n_group=1, topk_group=1, top_k=2)
    assert ADAPTER.routing(source.config).n_group == 1
    uneven = [[0, 1, 2, 3, 4, 9], [2, 5, 6, 7, 8, 13]]
    input_ids = token_ids()
    unrestricted = logits(source, input_ids)
    restrict_routers(source, uneven)
    restricted = logits(source, input_ids)
    assert not torch.allclose(restricted, unrestricted, atol=1e-4)
    pruned = prune_model(tiny.build(n_group=1, topk_group=1, top_k=2), uneven)
    assert torch.allclose(logits(pruned, input_ids), restricted, atol=1e-5)
    bias = tiny.build(n_group=1, topk_group=1, top_k=2).model.layers[2].mlp.gate.e_score_correction_bias
    assert torch.equal(pruned.model.layers[2].mlp.gate.e_score_correction_bias, bias[uneven[1]])


def test_single_kept_expert_is_refused_even_with_top_1(tmp_path):
    """The router sums a group's 2 best scores, so one kept expert breaks it although top-1 would fit."""
    single = [[5], [11]]
    with pytest.raises(ValueError, match="keep at least 2"):
        prune_model(tiny.build(n_group=1, topk_group=1, top_k=2), single, top_k=1)
    tiny.build(n_group=1, topk_group=1, top_k=2).save_pretrained(tmp_path / "source")
    (tmp_path / "mask.json").write_text(json.dumps(single))
    with pytest.raises(ValueError, match="keep at least 2"):
        prune_checkpoint(tmp_path / "source", tmp_path / "mask.json", tmp_path / "pruned", top_k=1)
    # two kept experts with top-1 are fine
    (tmp_path / "mask.json").write_text(json.dumps([[5, 6], [0, 11]]))
    prune_checkpoint(tmp_path / "source", tmp_path / "mask.json", tmp_path / "pruned", top_k=1)
    config = json.loads((tmp_path / "pruned" / "config.json").read_text())
    assert (config["n_routed_experts"], config["num_experts_per_tok"], config["n_group"]) == (2, 1, 1)


def test_checkpoint_has_hub_names_and_slices_the_correction_bias(tmp_path):
    from safetensors import safe_open

    source = tiny.build()
    mask = [[1, 3, 4, 7, 9, 10, 12, 14], [0, 2, 5, 6, 8, 11, 13, 15]]
    source.save_pretrained(tmp_path / "source")
    (tmp_path / "mask.json").write_text(json.dumps(mask))
    prune_checkpoint(tmp_path / "source", tmp_path / "mask.json", tmp_path / "pruned")
    with safe_open(str(tmp_path / "pruned" / "model.safetensors"), "pt") as fh:
        names = set(fh.keys())
        assert "model.layers.1.mlp.experts.7.gate_proj.weight" in names
        assert "model.layers.1.mlp.experts.8.gate_proj.weight" not in names
        for i, kept in zip((1, 2), mask):
            bias = source.model.layers[i].mlp.gate.e_score_correction_bias
            assert torch.equal(fh.get_tensor(f"model.layers.{i}.mlp.gate.e_score_correction_bias"), bias[kept])
