"""Contract tests run over every registered model family on its tiny model (tests/tiny_models).

For each family: observation equals a reference loop written from the family's formula; the
pruned model's logits equal the source's with the router restricted to the kept experts, in
memory and after pruning the checkpoint; the checkpoint keeps its key format and reloads cleanly.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from expertlab.moe.families import FAMILIES, adapter_for
from expertlab.moe.observe import STAT_COLUMNS, observe_batches
from expertlab.moe.prune import prune_checkpoint, prune_model, restrict_routers
from tests.tiny_models import COVERED, TINY, build
from tests.tiny_models import token_ids

FAMILY_NAMES = sorted(TINY)  # one per tiny model; its aliases (ALSO) load as the same model


def example_mask(model, seed: int = 0) -> list[list[int]]:  # noqa: ANN001
    """Half of each routing group's experts, drawn per layer so layers differ."""
    adapter = adapter_for(model)
    routing = adapter.routing(model.config)
    group = routing.num_experts // routing.n_group
    generator = torch.Generator().manual_seed(seed)
    mask = []
    for _ in adapter.moe_layers(model):
        kept = []
        for g in range(routing.n_group):
            kept += (g * group + torch.randperm(group, generator=generator)[: group // 2]).tolist()
        mask.append(sorted(kept))
    return mask


def example_inputs(seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    input_ids = token_ids((3, 9), seed=seed)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    attention_mask[2, 3:] = 0
    return input_ids, attention_mask


def logits(model, input_ids, attention_mask) -> torch.Tensor:  # noqa: ANN001
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask).logits


def test_every_family_has_a_tiny_model():
    assert set(FAMILIES.names()) == COVERED


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_observe_matches_a_reference_loop_and_changes_nothing(family):
    model = build(family)
    tiny = TINY[family]
    adapter = adapter_for(model)
    layers = adapter.moe_layers(model)
    input_ids, attention_mask = example_inputs()
    plain = logits(model, input_ids, attention_mask)

    captured, residuals = {}, {}

    def capture(index):  # noqa: ANN001, ANN202
        def hook(module, args, kwargs):  # noqa: ANN001, ANN202
            unpack = getattr(tiny, "routed_inputs", lambda a, k: a[:3])
            captured[index] = [t.detach().clone() for t in unpack(args, kwargs)]

        return hook

    def capture_residual(index):  # noqa: ANN001, ANN202
        def hook(module, args):  # noqa: ANN001, ANN202
            residuals[index] = args[0].detach().reshape(-1, args[0].shape[-1]).clone()

        return hook

    hooks = [layer.experts.register_forward_pre_hook(capture(layer.index), with_kwargs=True) for layer in layers]
    hooks += [
        tiny.residual_module(model, layer.index).register_forward_pre_hook(capture_residual(layer.index))
        for layer in layers
    ]
    logits(model, input_ids, attention_mask)
    for hook in hooks:
        hook.remove()

    frame = observe_batches(model, [(input_ids, attention_mask)])
    num_experts = adapter.routing(model.config).num_experts
    assert len(frame) == len(layers) * num_experts
    assert set(frame["tokens"]) == {int(attention_mask.sum())}
    real = attention_mask.reshape(-1).bool().tolist()
    for layer in layers:
        hidden, index, weights = captured[layer.index]
        residual = residuals[layer.index]
        assert not torch.allclose(residual, hidden)  # the residual stream is not the normalised input
        sums = {name: [0.0] * num_experts for name in STAT_COLUMNS}
        for t in range(hidden.shape[0]):
            if not real[t]:
                continue
            x, r = hidden[t].double(), residual[t].double()
            pairs = [(int(index[t, k]), float(weights[t, k])) for k in range(index.shape[1])]
            with torch.no_grad():
                outs = [tiny.reference_expert(layer.experts, e, x) for e, _ in pairs]
            r_tilde = r + sum(g * out for (_, g), out in zip(pairs, outs))
            shift = 1 - float(r @ r_tilde / (r.norm() * r_tilde.norm()))
            for (e, g), out in zip(pairs, outs):
                norm = float(out.norm())
                sums["routed_count"][e] += g > 0
                sums["gate_sum"][e] += g
                sums["ean_sum"][e] += norm if g > 0 else 0.0
                sums["weighted_norm_sum"][e] += g * norm
                sums["easy_ep_sum"][e] += g * norm * shift
        rows = frame[frame["layer"] == layer.index].sort_values("expert")
        for name, values in sums.items():
            assert rows[name].tolist() == pytest.approx(values, rel=1e-4, abs=1e-5), (layer.index, name)
        assert sum(sums["routed_count"]) > 0
    # the wrappers are gone afterwards and never changed what the model computes
    assert torch.allclose(plain, logits(model, input_ids, attention_mask))
    assert all("forward" not in vars(layer.experts) for layer in layers)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_pruned_logits_equal_router_restricted_logits(family):
    source = build(family)
    mask = example_mask(source)
    input_ids, attention_mask = example_inputs()
    unrestricted = logits(source, input_ids, attention_mask)
    undo = restrict_routers(source, mask)
    restricted = logits(source, input_ids, attention_mask)
    undo()
    assert not torch.allclose(restricted, unrestricted, atol=1e-4)  # the restriction matters
    assert torch.allclose(logits(source, input_ids, attention_mask), unrestricted)  # and is undone

    pruned = prune_model(build(family), mask)
    # tolerance: float32 reductions over a different number of rows
    assert torch.allclose(logits(pruned, input_ids, attention_mask), restricted, atol=1e-5)
    assert adapter_for(pruned).routing(pruned.config).num_experts == len(mask[0])


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_checkpoint_pruning_keeps_the_format_and_equals_in_memory_pruning(family, tmp_path):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    source_model = build(family)
    mask = example_mask(source_model)
    kept = len(mask[0])
    source_model.save_pretrained(tmp_path / "source")
    (tmp_path / "mask.json").write_text(json.dumps(mask))
    prune_checkpoint(tmp_path / "source", tmp_path / "mask.json", tmp_path / "pruned")

    reloaded, info = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    expected = prune_model(build(family), mask).state_dict()
    got = reloaded.state_dict()
    assert set(got) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name

    input_ids, attention_mask = example_inputs()
    restrict_routers(source_model, mask)
    assert torch.allclose(
        logits(reloaded, input_ids, attention_mask), logits(source_model, input_ids, attention_mask), atol=1e-5
    )

    def shapes(path):  # noqa: ANN001, ANN202
        result = {}
        for shard in path.glob("*.safetensors"):
            with safe_open(str(shard), "pt") as fh:
                result.update({k: fh.get_slice(k).get_shape() for k in fh.keys()})
        return result

    src, dst = shapes(tmp_path / "source"), shapes(tmp_path / "pruned")
    experts = [layer.experts for layer in adapter_for(source_model).expert_tensors(source_model.config, set(src))]
    per_expert = re.compile("^(" + "|".join(map(re.escape, experts)) + r")\.(\d+)\.")
    # same names as the source; per-expert ids only 0..M-1 (contiguous)
    assert set(dst) == {k for k in src if not (m := per_expert.match(k)) or int(m.group(2)) < kept}
    source_config = json.loads((tmp_path / "source" / "config.json").read_text())
    pruned_config = json.loads((tmp_path / "pruned" / "config.json").read_text())
    adapter = adapter_for(source_config)
    assert adapter.routing(pruned_config).num_experts == kept
    text = adapter.text_config(pruned_config)
    assert [text[key] for key in adapter.count_keys if key in adapter.text_config(source_config)] != []
    assert all(text[key] == kept for key in adapter.count_keys if key in adapter.text_config(source_config))
    out = reloaded.generate(input_ids[:1, :3], max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 6)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_fewer_experts_than_top_k_is_refused(family):
    source = build(family)
    routing = adapter_for(source).routing(source.config)
    layers = adapter_for(source).moe_layers(source)
    assert routing.top_k >= 2, f"build the tiny {family} model with top-k >= 2"
    too_few = [list(range(routing.top_k - 1)) for _ in layers]
    # group-limited routers refuse it earlier: the groups would keep unequal counts
    with pytest.raises(ValueError, match=f"fewer than top-k={routing.top_k}|routing groups"):
        prune_model(source, too_few)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_reobserving_with_top_k_changed_routes_every_token_to_k_experts(family):
    """The second study's Fig. 2a re-observes a model with another top-k (record-activations --top-k), set where
    pruning sets one: every non-padding token of every MoE layer then goes to exactly k experts."""
    import numpy as np

    from expertlab.monosemanticity.activations import ActivationRecorder

    model = build(family)
    adapter = adapter_for(model)
    routing = adapter.routing(model.config)
    input_ids, attention_mask = example_inputs()
    tokens = int(attention_mask.sum())
    for k in (routing.top_k + 1, max(routing.top_k - 1, 1)):
        if k > routing.num_experts:
            continue
        adapter.set_counts(model, routing.num_experts, k)
        assert adapter.routing(model.config).top_k == k
        recorder = ActivationRecorder(model)
        with recorder.installed(), torch.no_grad():
            recorder.batch([0, 1, 2], attention_mask)
            model(input_ids=input_ids, attention_mask=attention_mask)
        for layer, chunks in recorder.pairs.items():
            pairs = torch.as_tensor(np.concatenate(chunks))  # (expert, document, position, weight) per routed pair
            per_token = torch.unique(pairs[:, 1:3], dim=0, return_counts=True)[1]
            assert len(per_token) == tokens and (per_token == k).all(), (family, layer, k)
