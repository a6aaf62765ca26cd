"""Saliency statistics, criteria, selection and physical pruning on tiny Qwen3-MoE models."""

from __future__ import annotations

import math

import pytest
import torch

from expertlab.criteria import CRITERIA, criterion_scores, kept_count, layer_stats, resolve_top_k, select_masks, top_experts
from expertlab.moe.observe import LayerAccumulator
from expertlab.moe.prune import validate_mask
from tests.tiny_models import token_ids


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
    _, _, masks = select_masks([frame], ["frequency", "gate", "reap"], [0.5], seed=0, top_k=1)
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
    _, _, a = select_masks([frame], ["random"], [0.25, 0.5, 0.75], seed=1, top_k=2)
    _, _, b = select_masks([frame], ["random"], [0.25, 0.5, 0.75], seed=1, top_k=2)
    _, _, c = select_masks([frame], ["random"], [0.5], seed=2, top_k=2)
    assert [m.kept for m in a] == [m.kept for m in b]
    assert a[1].kept != c[0].kept
    assert [len(m.kept[0]) for m in a] == [12, 8, 4]
    for small, large in [(a[2], a[1]), (a[1], a[0])]:
        assert all(set(s) <= set(g) for s, g in zip(small.kept, large.kept))
    assert a[1].kept[0] != a[1].kept[1]  # layers draw in sequence, not the same set


def test_mask_validation_names_the_problem():
    with pytest.raises(ValueError, match="2 layers, the model has 3"):
        validate_mask([[0], [1]], 3, 8)
    with pytest.raises(ValueError, match="layer 1: indices"):
        validate_mask([[0], [9]], 2, 8)
    with pytest.raises(ValueError, match="repeated"):
        validate_mask([[0, 1], [1, 1]], 2, 8)
    with pytest.raises(ValueError, match="different number"):
        validate_mask([[0, 1], [1]], 2, 8)
    with pytest.raises(ValueError, match=r"routing groups of 4 experts keep unequal counts \[1, 3\]"):
        validate_mask([[0, 4, 5, 6]], 1, 8, group=4)
    assert validate_mask([[5, 0, 4, 1]], 1, 8, group=4) == [[0, 1, 4, 5]]


def test_offloaded_observation_equals_in_memory_observation(tmp_path):
    """A model larger than its memory budget is observed layer by layer from disk, same statistics."""
    from expertlab.moe.observe import loaded_model, observe_batches
    from tests.tiny_models.qwen3_moe import build

    build().save_pretrained(tmp_path / "model")
    input_ids = token_ids((3, 9), seed=3)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    with loaded_model(tmp_path / "model") as model:
        in_memory = observe_batches(model, [(input_ids, attention_mask)])
        weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    budget = weight_bytes // 2
    with loaded_model(tmp_path / "model", f"{budget}B") as model:
        assert "disk" in set(model.hf_device_map.values())  # really offloaded
        on_cpu = sum(p.numel() * p.element_size() for p in model.parameters() if p.device.type == "cpu")
        assert on_cpu <= budget
        offloaded = observe_batches(model, [(input_ids, attention_mask)])
    assert offloaded.equals(in_memory)
