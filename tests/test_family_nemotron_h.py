"""Nemotron-H traps: hybrid layer patterns, the router's n_group (not Mamba's n_groups), a group-limited
sigmoid router with score correction, hub vs module tensor names, latent projections, MTP experts."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from expertlab.moe.families import FAMILIES
from expertlab.moe.prune import prune_checkpoint, prune_model, restrict_routers
from tests.tiny_models import token_ids
from tests.tiny_models.nemotron_h import build, reference_expert

ADAPTER = FAMILIES["nemotron_h"]
NANO_PATTERN = "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME"  # nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B


def half_per_group(num_experts: int, n_group: int, layers: int = 2, seed: int = 0) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    size = num_experts // n_group
    mask = []
    for _ in range(layers):
        picks = [g * size + i for g in range(n_group) for i in torch.randperm(size, generator=generator)[: size // 2]]
        mask.append(sorted(int(i) for i in picks))
    return mask


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    input_ids = token_ids()
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 4:] = 0
    return input_ids, attention_mask


def logits(model, input_ids, attention_mask) -> torch.Tensor:  # noqa: ANN001
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask).logits


def test_moe_layers_follow_the_layer_types():
    assert ADAPTER.moe_layer_indices({"hybrid_override_pattern": "ME*E-M"}) == [1, 3]
    assert len(ADAPTER.moe_layer_indices({"hybrid_override_pattern": NANO_PATTERN})) == 23
    # list-style configs may use the legacy names; transformers reads the list before the pattern
    assert ADAPTER.moe_layer_indices({"layers_block_type": ["mamba", "moe", "attention", "moe"]}) == [1, 3]
    assert ADAPTER.moe_layer_indices({"layers_block_type": ["moe", "mlp"], "hybrid_override_pattern": "-E"}) == [0]
    model = build()
    assert [layer.index for layer in ADAPTER.moe_layers(model)] == [1, 3]
    assert ADAPTER.moe_layer_indices(model.config) == [1, 3]
    with pytest.raises(ValueError, match="hybrid_override_pattern"):
        ADAPTER.moe_layer_indices({"n_routed_experts": 8})


def test_router_groups_come_from_n_group_never_mambas_n_groups(tmp_path):
    hub = {"n_routed_experts": 128, "num_experts_per_tok": 6, "n_groups": 8, "hybrid_override_pattern": NANO_PATTERN}
    routing = ADAPTER.routing(hub)
    assert (routing.num_experts, routing.top_k, routing.n_group, routing.kind) == (128, 6, 1, "sigmoid-topk")
    assert ADAPTER.routing({**hub, "n_group": 4}).n_group == 4

    source = build()  # router n_group 2, Mamba n_groups 4
    assert ADAPTER.routing(source.config).n_group == 2
    source.save_pretrained(tmp_path / "source")
    (tmp_path / "mask.json").write_text(json.dumps(half_per_group(8, 2)))
    prune_checkpoint(tmp_path / "source", tmp_path / "mask.json", tmp_path / "pruned")
    before = json.loads((tmp_path / "source" / "config.json").read_text())
    after = json.loads((tmp_path / "pruned" / "config.json").read_text())
    assert {key for key in before if before[key] != after[key]} == {"n_routed_experts"}
    counts = ("n_routed_experts", "n_group", "n_groups", "num_experts_per_tok")
    assert [after[key] for key in counts] == [4, 2, 4, 2]

    pruned = prune_model(build(), half_per_group(8, 2))
    assert (pruned.config.n_group, pruned.config.n_groups) == (2, 4)
    assert pruned.model.layers[0].mixer.n_groups == 4


def test_in_memory_pruning_slices_router_rows_and_correction_bias():
    source, pruned = build(), build()
    mask = half_per_group(8, 2)
    prune_model(pruned, mask)
    for before, after, kept in zip(ADAPTER.moe_layers(source), ADAPTER.moe_layers(pruned), mask):
        kept = torch.tensor(kept)
        assert torch.equal(after.router.weight, before.router.weight[kept])
        assert torch.equal(after.router.e_score_correction_bias, before.router.e_score_correction_bias[kept])
        assert "e_score_correction_bias" in dict(after.router.named_buffers())  # still saved with the model
        assert torch.equal(after.experts.up_proj, before.experts.up_proj[kept])
        assert torch.equal(after.experts.down_proj, before.experts.down_proj[kept])
        assert after.experts.num_experts == after.router.num_experts == 4
        shared_before, shared_after = before.block.shared_experts, after.block.shared_experts
        assert torch.equal(shared_after.up_proj.weight, shared_before.up_proj.weight)
    assert pruned.config.n_routed_experts == pruned.config.num_local_experts == 4


def test_restriction_masks_before_the_groups_are_chosen():
    """8 experts in 2 groups, topk_group 1, top-2; router logits w for a hidden state x = e_0.

    Unrestricted: group scores s(2)+s(1) > s(1.5)+s(.5), so experts {0, 1}. Keeping {1, 2, 4, 6}, the
    groups score s(1)+s(0) = 1.231 < s(.5)+s(1.5) = 1.440: group 1 wins, experts {4, 6} (masking after
    the group choice would pick {1, 2}). A +1 correction on expert 2 makes group 0 win again, and the
    weights stay the uncorrected s(1), s(0), renormalised and scaled by 2.5.
    """
    layer = ADAPTER.moe_layers(build())[0]
    router = layer.router
    w = [2.0, 1.0, 0.0, -1.0, 0.5, -0.5, 1.5, -2.0]
    s = [1 / (1 + math.exp(-v)) for v in w]
    with torch.no_grad():
        router.weight.zero_()
        router.weight[:, 0] = torch.tensor(w)
        router.e_score_correction_bias.zero_()
    x = torch.zeros(1, 32)
    x[0, 0] = 1.0

    def route() -> tuple[list[int], list[float]]:
        _, weights, index = router(x)
        order = index[0].argsort()
        return index[0][order].tolist(), weights[0][order].tolist()

    assert route() == ([0, 1], pytest.approx([2.5 * s[0] / (s[0] + s[1]), 2.5 * s[1] / (s[0] + s[1])]))
    original = router.e_score_correction_bias
    undo = ADAPTER.restrict_router(layer, torch.tensor([1, 2, 4, 6]))
    assert route() == ([4, 6], pytest.approx([2.5 * s[4] / (s[4] + s[6]), 2.5 * s[6] / (s[4] + s[6])]))
    undo()
    assert router.e_score_correction_bias is original

    with torch.no_grad():
        router.e_score_correction_bias[2] = 1.0
    undo = ADAPTER.restrict_router(layer, torch.tensor([1, 2, 4, 6]))
    assert route() == ([1, 2], pytest.approx([2.5 * s[1] / (s[1] + s[2]), 2.5 * s[2] / (s[1] + s[2])]))
    undo()
    assert router.e_score_correction_bias.tolist() == [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("num_experts", "top_k", "n_group", "topk_group"),
    [(8, 2, 1, 1), (16, 4, 4, 2)],  # the hub's ungrouped router; two of four groups (the contract tests use 2 groups)
)
def test_pruned_logits_equal_restricted_logits_for_other_router_shapes(num_experts, top_k, n_group, topk_group):
    shape = dict(num_experts=num_experts, top_k=top_k, n_group=n_group, topk_group=topk_group)
    source = build(**shape)
    mask = half_per_group(num_experts, n_group)
    input_ids, attention_mask = inputs()
    plain = logits(source, input_ids, attention_mask)
    restrict_routers(source, mask)
    restricted = logits(source, input_ids, attention_mask)
    assert not torch.allclose(plain, restricted, atol=1e-4)
    pruned = prune_model(build(**shape), mask)
    assert torch.allclose(logits(pruned, input_ids, attention_mask), restricted, atol=1e-5)


def test_counts_the_router_cannot_route_are_refused(tmp_path):
    one_per_group = [[0, 4], [1, 5]]  # 8 experts in 2 groups: a group of one has no top-2 score
    with pytest.raises(ValueError, match="at least 2 experts per group"):
        prune_model(build(), one_per_group, top_k=1)
    with pytest.raises(ValueError, match="at least 2 experts per group"):
        prune_model(build(n_group=1), [[3], [6]], top_k=1)  # even ungrouped: one group of one
    source = build()
    source.save_pretrained(tmp_path / "source")
    (tmp_path / "mask.json").write_text(json.dumps(one_per_group))
    with pytest.raises(ValueError, match="at least 2 experts per group"):
        prune_checkpoint(tmp_path / "source", tmp_path / "mask.json", tmp_path / "pruned", top_k=1)
    assert not (tmp_path / "pruned").exists()
    with pytest.raises(ValueError, match="at least 2 experts per group"):
        ADAPTER.restrict_router(ADAPTER.moe_layers(source)[0], torch.tensor([0, 4]))

    # top-4 from the best 1 of 4 groups needs 4 experts per group; keeping 2 per group needs top-k <= 2
    config = {"n_routed_experts": 16, "num_experts_per_tok": 4, "n_group": 4, "topk_group": 1}
    with pytest.raises(ValueError, match="top-k=4 cannot be drawn"):
        ADAPTER.pruned_config(config, 8, 4)
    assert ADAPTER.pruned_config(config, 8, 2) == {**config, "n_routed_experts": 8, "num_experts_per_tok": 2}


def to_module_names(source_dir, target_dir) -> None:  # noqa: ANN001
    """Rewrite a saved (hub-format) checkpoint with the v5 module names: `model.`, stacked experts."""
    target_dir.mkdir()
    tensors = load_file(source_dir / "model.safetensors")
    renamed, per_expert = {}, {}
    for name, tensor in tensors.items():
        name = name.replace("backbone.", "model.", 1)
        head, sep, tail = name.partition(".experts.")
        if sep:
            expert, _, projection = tail.partition(".")
            per_expert.setdefault(f"{head}.experts.{projection.removesuffix('.weight')}", {})[int(expert)] = tensor
        else:
            renamed[name] = tensor
    for name, experts in per_expert.items():
        renamed[name] = torch.stack([experts[e] for e in sorted(experts)])
    save_file(renamed, target_dir / "model.safetensors", metadata={"format": "pt"})
    (target_dir / "config.json").write_text((source_dir / "config.json").read_text())


@pytest.mark.parametrize("layout", ["hub", "module"])
def test_checkpoint_in_either_naming_prunes_and_reloads(layout, tmp_path):
    from transformers import AutoModelForCausalLM

    source = build()
    source.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["n_routed_experts"] == 8 and "num_local_experts" not in config  # what v5 writes
    if layout == "hub":  # the hub's config.json spells the layers as a pattern string
        del config["layers_block_type"]
        config.update(hybrid_override_pattern="ME*E-", num_hidden_layers=5)
        (tmp_path / "saved" / "config.json").write_text(json.dumps(config))
        model_dir = tmp_path / "saved"
    else:
        model_dir = tmp_path / "module"
        to_module_names(tmp_path / "saved", model_dir)
    mask = half_per_group(8, 2, seed=5)
    (tmp_path / "mask.json").write_text(json.dumps(mask))
    prune_checkpoint(model_dir, tmp_path / "mask.json", tmp_path / "pruned")

    written = load_file(tmp_path / "pruned" / "model.safetensors")
    original = load_file(model_dir / "model.safetensors")
    prefix = "backbone" if layout == "hub" else "model"
    assert all(name.startswith((f"{prefix}.", "lm_head.")) for name in written)
    for layer, kept in zip([1, 3], mask):
        bias = f"{prefix}.layers.{layer}.mixer.gate.e_score_correction_bias"
        assert torch.equal(written[bias], original[bias][kept])
    if layout == "module":
        assert written["model.layers.3.mixer.experts.up_proj"].shape == (4, 16, 32)
    else:
        assert torch.equal(written["backbone.layers.3.mixer.experts.3.up_proj.weight"],
                           original[f"backbone.layers.3.mixer.experts.{mask[1][3]}.up_proj.weight"])

    reloaded, info = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    expected = prune_model(build(), mask).state_dict()
    assert set(reloaded.state_dict()) == set(expected)
    assert all(torch.equal(reloaded.state_dict()[name], tensor) for name, tensor in expected.items())


def test_multi_token_prediction_layers_are_left_out():
    names = {"backbone.layers.1.mixer.gate.weight", "mtp.layers.1.mixer.experts.0.up_proj.weight", "mtp.norm.weight"}
    config = {"hybrid_override_pattern": "ME", "n_routed_experts": 8, "num_experts_per_tok": 2,
              "num_nextn_predict_layers": 1}
    assert ADAPTER.dropped_tensors(config, names) == {"mtp.layers.1.mixer.experts.0.up_proj.weight", "mtp.norm.weight"}
    assert [layer.layer for layer in ADAPTER.expert_tensors(config, names)] == [1]
    pruned = ADAPTER.pruned_config(config, 4, 2)
    assert (pruned["num_nextn_predict_layers"], pruned["n_routed_experts"]) == (0, 4)


def test_latent_projection_outputs_are_recorded_in_the_residual_space():
    """With moe_latent_size the experts see fc1(x) [T, L]; the recorded E_i is fc2's weight times the
    latent expert output (fc2's bias is added once per token, not per expert)."""
    model = build(latent_size=16, mlp_bias=True)
    layer = ADAPTER.moe_layers(model)[0]
    fc1, fc2 = layer.block.fc1_latent_proj, layer.block.fc2_latent_proj
    assert fc2.bias is not None
    with torch.no_grad():
        fc2.bias.normal_()
        x = torch.randn(5, 32, generator=torch.Generator().manual_seed(2))
        _, weights, index = layer.router(x)
        latent = fc1(x)
        original = type(layer.experts).forward.__get__(layer.experts)
        seen = {}
        forward = ADAPTER.observed_forward(layer, original, lambda *args: seen.update(args=args))
        assert torch.equal(forward(latent, index, weights), original(latent, index, weights))
    hidden, _, _, outputs, combined = seen["args"]
    assert hidden.shape == (5, 16) and outputs.shape == (5, 2, 32) and combined.shape == (5, 32)
    for t in range(5):
        for k in range(2):
            expected = fc2.weight.double() @ reference_expert(layer.experts, int(index[t, k]), latent[t])
            assert torch.allclose(outputs[t, k].double(), expected, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(combined, fc2(original(latent, index, weights)) - fc2.bias, atol=1e-5)


def test_latent_projection_is_kept_whole_when_pruning():
    source = build(latent_size=16, mlp_bias=True)
    mask = half_per_group(8, 2)
    input_ids, attention_mask = inputs()
    restrict_routers(source, mask)
    restricted = logits(source, input_ids, attention_mask)
    pruned = prune_model(build(latent_size=16, mlp_bias=True), mask)
    assert torch.allclose(logits(pruned, input_ids, attention_mask), restricted, atol=1e-5)
    for layer in ADAPTER.moe_layers(pruned):
        assert layer.experts.up_proj.shape == (4, 16, 16)  # [E, I, L]
        assert layer.block.fc1_latent_proj.weight.shape == (16, 32)
        assert layer.block.fc2_latent_proj.weight.shape == (32, 16)


def test_latent_model_observes_end_to_end():
    """The residual stream [T, H] is compared with the experts' combined output [T, H], not their latent input."""
    from expertlab.moe.observe import observe_batches

    model = build(latent_size=16, mlp_bias=True)
    input_ids, attention_mask = inputs()
    frame = observe_batches(model, [(input_ids, attention_mask)])
    tokens = int(attention_mask.sum())
    assert set(frame["tokens"]) == {tokens}
    assert frame.groupby("layer")["routed_count"].sum().tolist() == [2 * tokens, 2 * tokens]  # top-2
    assert (frame["easy_ep_sum"] >= 0).all() and frame["easy_ep_sum"].sum() > 0
