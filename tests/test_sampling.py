"""Three-stage sampling: top-activated explanation windows, weighted or quantile test positives, random negatives;
disjoint, seeded per expert, honest about shortfalls."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from expertlab.monosemanticity.sampling import ALL, expert_rng, quantile_draw, sample, sample_expert
from expertlab.params import MonosemanticitySampling as Sampling


def positives(activations: dict[int, float]) -> pd.Series:
    return pd.Series(activations, dtype=np.float64)


def test_explanation_windows_are_the_strongest_in_order_and_test_windows_are_the_others() -> None:
    acts = positives({10: 0.2, 11: 0.9, 12: 0.5, 13: 0.9, 14: 0.1, 15: 0.7})
    settings = Sampling(explain_examples=3, test_examples=2, negatives=2, test_sampling="weighted")
    rows, counts = sample_expert(acts, np.arange(10, 20), settings, np.random.default_rng(0))
    explain = rows[rows["role"] == "explain"]
    assert explain["window_id"].tolist() == [11, 13, 15]  # 0.9, 0.9 (tie: lower window first), 0.7
    assert explain["rank"].tolist() == [1, 2, 3] and explain["routed"].all()
    test = rows[rows["role"] == "test"]
    assert set(test.loc[test["routed"], "window_id"]) <= {10, 12, 14}
    assert set(test.loc[~test["routed"], "window_id"]) <= set(range(16, 20))
    assert not set(test["window_id"]) & set(explain["window_id"])
    assert sorted(test["rank"]) == [1, 2, 3, 4]
    assert test.set_index("window_id")["activation"].to_dict() == {
        w: (acts[w] if w in acts.index else 0.0) for w in test["window_id"]
    }
    assert counts == {"routed_windows": 6, "unrouted_windows": 4, "explain": 3, "test_positives": 2,
                      "test_negatives": 2, "shortfall": None}  # fmt: skip


def test_weighted_positives_follow_activation() -> None:
    """Two candidates, activation 0.9 against 0.1, one drawn: over 1000 seeds the strong one wins about 90% (4 sd: 0.04)."""
    acts = positives({1: 10.0, 2: 0.9, 3: 0.1})
    settings = Sampling(explain_examples=1, test_examples=1, negatives=0, test_sampling="weighted")
    wins = sum(
        sample_expert(acts, np.arange(1, 4), settings, np.random.default_rng(s))[0].query("role == 'test'")["window_id"].item() == 2
        for s in range(1000)
    )
    assert abs(wins / 1000 - 0.9) < 0.04


def test_quantile_positives_take_evenly_from_each_slice_as_delphi_does() -> None:
    ordered = np.arange(100, 0, -1)  # strongest first
    picked = quantile_draw(ordered, quantiles=10, wanted=20, rng=np.random.default_rng(3))
    assert len(picked) == 20
    for i in range(10):  # two from each slice of ten
        assert len(set(picked) & set(ordered[i * 10 : (i + 1) * 10])) == 2
    # 25 items in 10 slices: slices of 2, the last 5 left out; 3 wanted per slice, so all of each slice
    assert sorted(quantile_draw(np.arange(25), 10, 30, np.random.default_rng(0))) == list(range(20))


def test_a_shortfall_is_recorded_not_invented() -> None:
    acts = positives({0: 0.5, 1: 0.4, 2: 0.3})
    settings = Sampling(explain_examples=2, test_examples=5, negatives=4, test_sampling="weighted")
    rows, counts = sample_expert(acts, np.arange(0, 5), settings, np.random.default_rng(0))
    assert (counts["explain"], counts["test_positives"], counts["test_negatives"]) == (2, 1, 2)
    assert counts["shortfall"] == "1 of 5 test positives; 2 of 4 negatives"
    assert len(rows) == 5
    never = sample_expert(positives({}), np.arange(3), settings, np.random.default_rng(0))[1]
    assert never["shortfall"] == "0 of 2 explanation examples; 0 of 5 test positives; 3 of 4 negatives"


def test_scopes_draw_within_their_domain_and_each_expert_from_its_own_seed() -> None:
    windows = pd.DataFrame({"window_id": range(8), "domain": ["bio"] * 4 + ["general"] * 4})
    records = pd.DataFrame({
        "layer": [0] * 5, "expert": [0, 0, 0, 1, 1], "window_id": [0, 1, 5, 2, 6],
        "routed_tokens": [1] * 5, "max_weight": [0.5, 0.4, 0.9, 0.3, 0.2], "positions": [[0]] * 5,
    })  # fmt: skip
    settings = Sampling(explain_examples=1, test_examples=1, negatives=2, test_sampling="weighted")
    samples, counts = sample(records, windows, num_experts=2, domains=["bio"], settings=settings, seed=0)
    assert set(samples["scope"]) == {ALL, "bio"}
    bio = samples[samples["scope"] == "bio"]
    assert set(bio["window_id"]) <= {0, 1, 2, 3}
    assert bio.query("expert == 0 and role == 'explain'")["window_id"].tolist() == [0]
    assert counts.set_index(["scope", "expert"]).loc[(ALL, 0), "routed_windows"] == 3
    # expert 1's draws do not depend on expert 0's
    alone, _ = sample(records[records["expert"] == 1], windows, num_experts=2, domains=["bio"], settings=settings, seed=0)
    pd.testing.assert_frame_equal(
        samples[samples["expert"] == 1].reset_index(drop=True), alone[alone["expert"] == 1].reset_index(drop=True)
    )
    assert expert_rng(0, 0, 1, "bio").random() == expert_rng(0, 0, 1, "bio").random()
    with pytest.raises(ValueError, match=r"no windows of domain\(s\) \['tools'\]"):
        sample(records, windows, num_experts=2, domains=["tools"], settings=settings, seed=0)
