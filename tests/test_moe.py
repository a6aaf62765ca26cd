"""Saliency statistics, criteria, selection and physical pruning on tiny Qwen3-MoE models."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from safetensors import safe_open

from expertlab.criteria import CRITERIA, criterion_scores, kept_count, layer_stats, resolve_top_k, select_masks, top_experts
from expertlab.moe.families import FAMILIES, adapter_for
from expertlab.moe.observe import LayerAccumulator, observe_batches
from expertlab.moe.prune import prune_model, restrict_routers, validate_mask
from tests.moe_models import tiny_qwen3_moe


def hand_layer(dtype: torch.dtype = torch.float64) -> LayerAccumulator:
    """2 experts x 3 real tokens (top-1) plus one padding token, values chosen to compute by hand.

    t0: h=[2,0] -> expert 0, g=0.5, E=[-4,3] (norm 5); h~=[0,1.5], cos=0, shift 1
    t1: h=[0,1] -> expert 1, g=1.0, E=[0,3] (norm 3);  h~=[0,4],   cos=1, shift 0
    t2: h=[1,0] -> expert 0, g=0.25, E=[0,4] (norm 4); h~=[1,1],   cos=1/sqrt2
    t3: padding, routed to expert 1: must not count.
    Reductions over the hidden axis run in the inputs' precision (float64 here: exact to 1e-12).
    """
    acc = LayerAccumulator(num_experts=2)
    hidden = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [5.0, 5.0]], dtype=dtype)
    index = torch.tensor([[0], [1], [0], [1]])
    weights = torch.tensor([[0.5], [1.0], [0.25], [1.0]], dtype=dtype)
    outputs = torch.tensor([[[-4.0, 3.0]], [[0.0, 3.0]], [[0.0, 4.0]], [[7.0, 7.0]]], dtype=dtype)
    acc.add(hidden, index, weights, outputs, torch.tensor([True, True, True, False]))
    return acc


def test_statistics_by_hand():
    acc = hand_layer()
    assert acc.tokens == 3
    assert acc.sums["routed_count"].tolist() == [2.0, 1.0]
    assert acc.sums["gate_sum"].tolist() == [0.75, 1.0]
    assert acc.sums["ean_sum"].tolist() == [9.0, 3.0]
    assert acc.sums["weighted_norm_sum"].tolist() == [3.5, 3.0]
    assert acc.sums["easy_ep_sum"][0].item() == pytest.approx(2.5 + (1 - 1 / math.sqrt(2)), abs=1e-12)
    assert acc.sums["easy_ep_sum"][1].item() == pytest.approx(0.0, abs=1e-12)
    assert all(v.dtype == torch.float64 for v in acc.sums.values())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_statistics_from_low_precision_activations_are_float64_sums(dtype):
    exact, low = hand_layer().sums, hand_layer(dtype).sums
    for name in exact:
        assert low[name].dtype == torch.float64
        assert torch.allclose(low[name], exact[name], rtol=1e-6, atol=1e-7), name


def test_criteria_by_hand():
    import pandas as pd

    acc = hand_layer()
    frame = pd.DataFrame(
        {"layer": [0, 0], "expert": [0, 1], "tokens": [acc.tokens] * 2}
        | {name: value.tolist() for name, value in acc.sums.items()}
    )
    stats = layer_stats(frame)
    expected = {
        "frequency": [2.0, 1.0],
        "gate": [0.75, 1.0],
        "ean": [9.0, 3.0],
        "reap": [1.75, 3.0],
        "easy_ep": [3.5 - 1 / math.sqrt(2), 0.0],
    }
    for name, values in expected.items():
        assert criterion_scores(stats, name, seed=0)[0].tolist() == pytest.approx(values)
    _, masks = select_masks(frame, ["frequency", "gate", "reap"], [0.5], seed=0, top_k=1)
    assert [(m.criterion, m.kept) for m in masks] == [("frequency", [[0]]), ("gate", [[1]]), ("reap", [[1]])]


def test_every_criterion_is_tested_by_hand_or_seeded():
    assert set(CRITERIA.names()) == {"random", "frequency", "gate", "ean", "easy_ep", "reap"}


def test_reap_is_zero_for_never_routed_experts():
    import pandas as pd

    frame = pd.DataFrame(
        {"layer": [0, 0], "expert": [0, 1], "tokens": [4, 4], "routed_count": [4, 0], "gate_sum": [2.0, 0.0]}
        | {"ean_sum": [4.0, 0.0], "weighted_norm_sum": [2.0, 0.0], "easy_ep_sum": [1.0, 0.0]}
    )
    assert criterion_scores(layer_stats(frame), "reap", 0)[0].tolist() == [0.5, 0.0]


def test_kept_count_and_ties():
    assert kept_count(16, 0.5) == 8
    assert kept_count(16, 0.875) == 2
    assert kept_count(32, 0.125) == 28
    assert kept_count(4, 0.125) == 4  # 3.5 rounds half up
    assert top_experts(torch.tensor([1.0, 3.0, 3.0, 1.0]), 2) == [1, 2]
    assert top_experts(torch.tensor([1.0, 1.0, 1.0, 1.0]), 2) == [0, 1]
    # group-limited: each of 2 groups keeps 1 even though group 0 holds both top scores
    assert top_experts(torch.tensor([9.0, 8.0, 1.0, 2.0]), 2, n_group=2) == [0, 3]
    with pytest.raises(ValueError, match="outside"):
        kept_count(16, 1.0)


def test_fewer_than_top_k_is_refused_unless_allowed():
    with pytest.raises(ValueError, match="fewer than top-k=2.*allow_top_k_reduction"):
        resolve_top_k(8, 2, 0.875, allow_top_k_reduction=False)
    assert resolve_top_k(8, 2, 0.875, allow_top_k_reduction=True) == 1


def test_random_is_seeded_uniform_and_nested_across_ratios():
    import pandas as pd

    frame = pd.DataFrame(
        [{"layer": l, "expert": e, "tokens": 1, "routed_count": 0, "gate_sum": 0.0, "ean_sum": 0.0,
          "weighted_norm_sum": 0.0, "easy_ep_sum": 0.0} for l in range(3) for e in range(16)]
    )
    _, a = select_masks(frame, ["random"], [0.25, 0.5, 0.75], seed=1, top_k=2)
    _, b = select_masks(frame, ["random"], [0.25, 0.5, 0.75], seed=1, top_k=2)
    _, c = select_masks(frame, ["random"], [0.5], seed=2, top_k=2)
    assert [m.kept for m in a] == [m.kept for m in b]
    assert a[1].kept != c[0].kept
    assert [len(m.kept[0]) for m in a] == [12, 8, 4]
    for small, large in [(a[2], a[1]), (a[1], a[0])]:
        assert all(set(s) <= set(g) for s, g in zip(small.kept, large.kept))
    assert a[1].kept[0] != a[1].kept[1]  # layers draw in sequence, not the same set


def naive_statistics(model, input_ids, attention_mask):
    """Reference: capture each experts module's inputs, then loop over tokens and selected experts."""
    adapter = adapter_for(model)
    captured = {}
    hooks = [
        layer.experts.register_forward_pre_hook(lambda mod, args, i=layer.index: captured.__setitem__(i, args))
        for layer in adapter.moe_layers(model)
    ]
    with torch.no_grad():
        model(input_ids=input_ids, attention_mask=attention_mask)
    for h in hooks:
        h.remove()
    mask = attention_mask.reshape(-1).tolist()
    result = {}
    for layer in adapter.moe_layers(model):
        hidden, index, weights = captured[layer.index]
        experts = layer.experts
        n = experts.num_experts
        sums = {k: [0.0] * n for k in ("routed_count", "gate_sum", "ean_sum", "weighted_norm_sum", "easy_ep_sum")}
        for t in range(hidden.shape[0]):
            if not mask[t]:
                continue
            h = hidden[t].double()
            outs = []
            for k in range(index.shape[1]):
                e = int(index[t, k])
                gate, up = (experts.gate_up_proj[e].double() @ h).chunk(2)
                out = experts.down_proj[e].double() @ (torch.nn.functional.silu(gate) * up)
                outs.append((e, float(weights[t, k]), out))
            h_tilde = h + sum(g * out for _, g, out in outs)
            shift = 1 - float((h @ h_tilde / (h.norm() * h_tilde.norm())).detach())
            for e, g, out in outs:
                norm = float(out.detach().norm())
                sums["routed_count"][e] += g > 0
                sums["gate_sum"][e] += g
                sums["ean_sum"][e] += norm if g > 0 else 0.0
                sums["weighted_norm_sum"][e] += g * norm
                sums["easy_ep_sum"][e] += g * norm * shift
        result[layer.index] = sums
    return result


def test_observe_matches_naive_loop_and_leaves_outputs_unchanged():
    model = tiny_qwen3_moe()
    torch.manual_seed(1)
    input_ids = torch.randint(0, 64, (3, 7))
    attention_mask = torch.ones(3, 7, dtype=torch.long)
    attention_mask[1, 5:] = 0
    attention_mask[2, 2:] = 0
    with torch.no_grad():
        plain = model(input_ids=input_ids, attention_mask=attention_mask).logits
    frame = observe_batches(model, [(input_ids, attention_mask)])
    reference = naive_statistics(model, input_ids, attention_mask)
    assert len(frame) == 2 * 8
    assert set(frame["tokens"]) == {int(attention_mask.sum())}
    for layer, sums in reference.items():
        rows = frame[frame["layer"] == layer].sort_values("expert")
        for name, values in sums.items():
            assert rows[name].tolist() == pytest.approx(values, rel=1e-5, abs=1e-6), name
    assert int(frame.groupby("layer")["routed_count"].sum().iloc[0]) == 2 * int(attention_mask.sum())
    # the wrapper is removed afterwards and never changed what the model computes
    with torch.no_grad():
        after = model(input_ids=input_ids, attention_mask=attention_mask).logits
    assert torch.allclose(plain, after)
    assert "forward" not in vars(model.model.layers[0].mlp.experts)


def test_mask_validation_names_the_problem():
    with pytest.raises(ValueError, match="2 layers, the model has 3"):
        validate_mask([[0], [1]], 3, 8)
    with pytest.raises(ValueError, match="layer 1: indices"):
        validate_mask([[0], [9]], 2, 8)
    with pytest.raises(ValueError, match="repeated"):
        validate_mask([[0, 1], [1, 1]], 2, 8)
    with pytest.raises(ValueError, match="different number"):
        validate_mask([[0, 1], [1]], 2, 8)


@pytest.mark.parametrize("family", FAMILIES.names())
def test_pruned_logits_equal_router_restricted_logits(family, tmp_path):
    builders = {"qwen3_moe": tiny_qwen3_moe}
    source = builders[family]()
    kept = [[0, 2, 5, 7], [1, 2, 3, 6]]
    input_ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(3))
    undo = restrict_routers(source, kept)
    with torch.no_grad():
        restricted = source(input_ids=input_ids).logits
    undo()
    with torch.no_grad():
        unrestricted = source(input_ids=input_ids).logits
    assert not torch.allclose(restricted, unrestricted, atol=1e-4)  # the restriction matters

    source.save_pretrained(tmp_path / "source")
    pruned = prune_model(builders[family](), kept)
    with torch.no_grad():
        # tolerance: float32 reductions over a different number of rows
        assert torch.allclose(pruned(input_ids=input_ids).logits, restricted, atol=1e-5)
    pruned.save_pretrained(tmp_path / "pruned")

    from transformers import AutoModelForCausalLM

    reloaded, info = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned", output_loading_info=True)
    assert info["missing_keys"] == set() or not info["missing_keys"]
    assert not info["unexpected_keys"]
    config = json.loads((tmp_path / "pruned" / "config.json").read_text())
    assert config.get("num_experts", config.get("num_local_experts")) == 4
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=input_ids).logits, restricted, atol=1e-5)

    def keys(path):
        with safe_open(str(path / "model.safetensors"), "pt") as fh:
            return {k: fh.get_slice(k).get_shape() for k in fh.keys()}

    src, dst = keys(tmp_path / "source"), keys(tmp_path / "pruned")
    # same key format as the source; per-expert keys only for ids 0..M-1 (contiguous)
    expert_id = re.compile(r"\.experts\.(\d+)\.")
    expected = {k for k in src if not (m := expert_id.search(k)) or int(m.group(1)) < 4}
    assert set(dst) == expected
    assert any(expert_id.search(k) for k in dst)
    for key, shape in dst.items():
        if key.endswith("mlp.gate.weight"):
            assert (src[key][0], shape[0]) == (8, 4)
        else:
            assert shape == src[key]
    out = reloaded.generate(input_ids[:1, :3], max_new_tokens=4, do_sample=False)
    assert out.shape == (1, 7)


def test_prune_checkpoint_keeps_the_source_config_keys(tmp_path):
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models

    from expertlab.moe.prune import prune_checkpoint

    source = tmp_path / "source"
    tiny_qwen3_moe().save_pretrained(source)
    PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>"))).save_pretrained(source)
    config = json.loads((source / "config.json").read_text())
    config["num_experts"] = config.pop("num_local_experts")  # the key Qwen3-MoE hub checkpoints use
    (source / "config.json").write_text(json.dumps(config))
    (tmp_path / "mask.json").write_text(json.dumps([[0, 1, 2], [3, 4, 5]]))
    record = prune_checkpoint(source, tmp_path / "mask.json", tmp_path / "pruned", variant={"variant_id": "x"})
    saved = json.loads((tmp_path / "pruned" / "config.json").read_text())
    assert saved["num_experts"] == 3 and saved["num_experts_per_tok"] == 2
    assert "text_config" not in saved
    assert record["kept_per_layer"] == 3 and record["source_num_experts"] == 8
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "pruned").config.num_experts == 3
    assert json.loads((tmp_path / "pruned" / "expertlab_variant.json").read_text())["variant_id"] == "x"
