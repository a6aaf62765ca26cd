"""ERNIE-4.5-MoE traps: MoE layers from start/end/interval; the [1, E] correction bias (two on-disk names) is
sliced along dim 1 and must not pull removed experts back; the choice softmax runs over the kept experts."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from expertlab.moe.checkpoint import tensor_names
from expertlab.moe.families import FAMILIES
from expertlab.moe.observe import observe_batches
from expertlab.moe.prune import prune_checkpoint, prune_model, restrict_routers
from tests.tiny_models import token_ids
from tests.tiny_models.ernie4_5_moe import build

ADAPTER = FAMILIES["ernie4_5_moe"]
KEPT = [[0, 2, 3, 5], [1, 4, 6, 7], [0, 1, 2, 3]]  # MoE layers 1, 2, 3 of the tiny model


def prune_saved(tmp_path, source, top_k=None):  # noqa: ANN001, ANN201
    (tmp_path / "mask.json").write_text(json.dumps(KEPT))
    prune_checkpoint(source, tmp_path / "mask.json", tmp_path / "pruned", top_k=top_k)
    return tmp_path / "pruned"


@pytest.mark.parametrize(
    ("layers", "start", "end", "interval", "expected"),
    [
        (4, 1, -1, 1, [1, 2, 3]),
        (6, 1, 4, 2, [1, 3]),  # the end index cuts layer 5
        (5, 0, 2, 1, [0, 1, 2]),
    ],
)
def test_moe_layers_follow_start_end_and_interval(layers, start, end, interval, expected, tmp_path):
    from transformers.models.ernie4_5_moe.modeling_ernie4_5_moe import Ernie4_5_MoeSparseMoeBlock

    model = build(layers=layers, start=start, end=end, interval=interval)
    sparse = [i for i, layer in enumerate(model.model.layers) if isinstance(layer.mlp, Ernie4_5_MoeSparseMoeBlock)]
    assert sparse == expected
    assert [layer.index for layer in ADAPTER.moe_layers(model)] == expected
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert [layer.layer for layer in ADAPTER.expert_tensors(config, tensor_names(tmp_path))] == expected


def test_a_hub_config_without_the_layer_fields_uses_the_transformers_defaults():
    config = {"model_type": "ernie4_5_moe", "num_hidden_layers": 4, "moe_num_experts": 64, "moe_k": 6}
    assert [layer.layer for layer in ADAPTER.expert_tensors(config, set())] == [1, 2, 3]
    assert ADAPTER.shared_experts(config) == 2
    assert ADAPTER.routing(config).num_experts == 64 and ADAPTER.routing(config).top_k == 6
    with pytest.raises(ValueError, match="one routed-expert count"):
        ADAPTER.routing(config | {"moe_num_experts": [64, 64]})


def test_the_hub_checkpoint_slices_the_correction_bias_along_its_expert_axis(tmp_path):
    source = tmp_path / "source"
    build().save_pretrained(source)
    before = load_file(source / "model.safetensors")
    after = load_file(prune_saved(tmp_path, source) / "model.safetensors")
    for kept, layer in zip(KEPT, (1, 2, 3)):
        name = f"model.layers.{layer}.mlp.moe_statics.e_score_correction_bias"  # the hub name
        assert before[name].shape == (1, 8)
        assert torch.equal(after[name], before[name][:, kept])
        gate = f"model.layers.{layer}.mlp.gate.weight"
        assert torch.equal(after[gate], before[gate][kept])
    untouched = [name for name in before if ".shared_experts." in name or name.startswith("model.layers.0.mlp.")]
    assert len(untouched) == 3 * 3 + 3  # 3 MoE layers x shared (gate, up, down) + the dense layer's MLP
    assert all(torch.equal(after[name], before[name]) for name in untouched)


def test_a_multi_token_prediction_block_is_left_out(tmp_path):
    from transformers import AutoModelForCausalLM

    source = tmp_path / "source"
    build().save_pretrained(source)
    tensors = load_file(source / "model.safetensors")
    mtp = {f"model.mtp_block.0.mlp.experts.{e}.up_proj.weight": torch.randn(16, 32) for e in range(8)}
    save_file(tensors | mtp, source / "model.safetensors", {"format": "pt"})
    config = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, "num_nextn_predict_layers": 1}))
    after = load_file(prune_saved(tmp_path, source) / "model.safetensors")
    assert not any(name.startswith("model.mtp_") for name in after)
    assert set(after) == {name for name in tensors if name in after}  # nothing but the mtp block went beyond pruning
    assert json.loads((tmp_path / "pruned" / "config.json").read_text())["num_nextn_predict_layers"] == 0
    _, info = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]


def test_a_checkpoint_with_the_v5_state_dict_names_prunes_and_reloads(tmp_path):
    """Fused experts and `mlp.gate.moe_statics.e_score_correction_bias`, as `model.state_dict()` names them."""
    from transformers import AutoModelForCausalLM

    source = tmp_path / "source"
    model = build()
    model.config.save_pretrained(source)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items() if name != "lm_head.weight"}
    save_file(state, source / "model.safetensors", {"format": "pt"})  # lm_head is tied to the embeddings
    names = tensor_names(source)
    assert "model.layers.1.mlp.gate.moe_statics.e_score_correction_bias" in names
    assert "model.layers.1.mlp.experts.gate_up_proj" in names
    pruned = prune_saved(tmp_path, source)
    reloaded, info = AutoModelForCausalLM.from_pretrained(pruned, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    expected = prune_model(build(), KEPT).state_dict()
    got = reloaded.state_dict()
    assert set(got) == set(expected)
    assert all(torch.equal(got[name], tensor) for name, tensor in expected.items())


def test_the_restricted_router_softmaxes_over_the_kept_experts_before_adding_the_bias():
    """One token whose logits make the probabilities [0.6, 0.4] over experts {0, 1} (kept) while expert 2
    (removed) takes 80% of the full softmax; correction bias [0, 0.1, 0, ...], top-1.

    Full router: 0.8 for expert 2 wins. Kept softmax + bias: 0.6 vs 0.4 + 0.1, expert 0 wins, as in the
    pruned router. A softmax over all experts restricted afterwards would give 0.12 vs 0.18: expert 1.
    """
    hidden = torch.zeros(1, 32)
    hidden[0, 0] = 1.0

    def route(keep: list[int] | None, prune: bool = False) -> tuple[int, float]:
        layer = ADAPTER.moe_layers(build())[0]
        with torch.no_grad():
            layer.router.weight.zero_()
            layer.router.weight[:, 0] = -50.0  # experts 3..7: probability ~0
            layer.router.weight[:3, 0] = torch.tensor([0.6, 0.4, 4.0]).log()
            layer.router.moe_statics.e_score_correction_bias.zero_()
            layer.router.moe_statics.e_score_correction_bias[0, 1] = 0.1
        layer.router.top_k = 1
        if keep is not None:
            (ADAPTER.prune_layer if prune else ADAPTER.restrict_router)(layer, torch.tensor(keep))
        with torch.no_grad():
            _, weights, index = layer.router(hidden)
        return int(index), float(weights)

    assert route(None) == (2, 1.0)
    assert route([0, 1]) == (0, 1.0)
    assert route([0, 1], prune=True) == (0, 1.0)


def test_a_large_correction_bias_on_removed_experts_does_not_bring_them_back():
    input_ids = token_ids()

    def biased(model):  # noqa: ANN001, ANN202
        with torch.no_grad():
            for layer, kept in zip(ADAPTER.moe_layers(model), KEPT):
                bias = layer.router.moe_statics.e_score_correction_bias
                bias.fill_(10.0)
                bias[0, kept] = 0.0
        return model

    source = biased(build())
    with torch.no_grad():
        unrestricted = source(input_ids).logits
        restrict_routers(source, KEPT)
        restricted = source(input_ids).logits
        pruned = prune_model(biased(build()), KEPT)(input_ids).logits
    assert not torch.allclose(unrestricted, restricted, atol=1e-4)
    assert torch.allclose(pruned, restricted, atol=1e-5)


def test_the_shared_experts_are_counted_kept_and_not_observed():
    assert ADAPTER.shared_experts(build().config) == 1
    assert ADAPTER.shared_experts(build(shared=0).config) == 0
    input_ids = token_ids()
    batch = [(input_ids, torch.ones_like(input_ids))]
    model = build()
    plain = observe_batches(model, batch)
    with torch.no_grad():
        ADAPTER.moe_layers(model)[0].block.shared_experts.down_proj.weight.mul_(3.0)
    scaled = observe_batches(model, batch)
    first = plain["layer"] == 1
    assert plain[first].equals(scaled[first])
    assert not plain[~first].equals(scaled[~first])  # later layers see the changed residual stream
    pruned = prune_model(build(), KEPT)
    for layer, source in zip(ADAPTER.moe_layers(pruned), ADAPTER.moe_layers(build())):
        assert torch.equal(layer.block.shared_experts.up_proj.weight, source.block.shared_experts.up_proj.weight)


def test_counts_in_config_json_and_modules(tmp_path):
    source = tmp_path / "source"
    build().save_pretrained(source)
    pruned = json.loads((prune_saved(tmp_path, source, top_k=1) / "config.json").read_text())
    config = json.loads((source / "config.json").read_text())
    assert (pruned["moe_num_experts"], pruned["moe_k"]) == (4, 1)
    assert "num_experts" not in pruned and "num_experts_per_tok" not in pruned  # transformers writes no alias
    changed = {"moe_num_experts", "moe_k"}
    assert {k: v for k, v in pruned.items() if k not in changed} == {
        k: v for k, v in config.items() if k not in changed
    }

    model = prune_model(build(), KEPT, top_k=1)
    assert (model.config.moe_num_experts, model.config.num_experts, model.num_experts) == (4, 4, 4)
    assert (model.config.moe_k, model.config.num_experts_per_tok, model.num_experts_per_tok) == (1, 1, 1)
    for layer in ADAPTER.moe_layers(model):
        assert (layer.router.num_experts, layer.experts.num_experts, layer.block.num_experts) == (4, 4, 4)
        assert (layer.router.top_k, layer.block.top_k) == (1, 1)
        assert layer.router.moe_statics.e_score_correction_bias.shape == (1, 4)
        assert layer.experts.gate_up_proj.shape == (4, 32, 32) and layer.experts.down_proj.shape == (4, 32, 16)
