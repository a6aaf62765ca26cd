"""The explainer's and predictor's prompts are built from the samples as documented: P_mono for scope all,
P_domain for a target domain, strongest windows first and marked, test windows unmarked in the sample's order."""

from __future__ import annotations

import pandas as pd
import pytest

from expertlab.monosemanticity import prompts
from expertlab.monosemanticity.explain import explain_prompts, predict_prompts, prediction_rows

WINDOWS = pd.DataFrame({
    "window_id": [0, 1, 2, 3],
    "domain": ["bio", "bio", "general", "general"],
    "token_texts": [["The", " dose"], ["of", " aspirin"], ["one", " plus"], ["two", " three"]],
})  # fmt: skip
ACTIVATIONS = pd.DataFrame({
    "layer": [1, 1, 1], "expert": [0, 0, 0], "window_id": [0, 1, 2],
    "routed_tokens": [1, 2, 1], "max_weight": [0.4, 0.9, 0.2], "positions": [[1], [0, 1], [0]],
})  # fmt: skip
SAMPLES = pd.DataFrame({
    "scope": ["all", "all", "all", "all", "bio"],
    "layer": [1] * 5, "expert": [0] * 5,
    "role": ["explain", "explain", "test", "test", "explain"],
    "window_id": [1, 0, 3, 2, 1], "routed": [True, True, False, True, True],
    "activation": [0.9, 0.4, 0.0, 0.2, 0.9], "rank": [1, 2, 2, 1, 1],
})  # fmt: skip


def test_each_scope_is_explained_from_its_strongest_windows_marked() -> None:
    built = explain_prompts(SAMPLES, WINDOWS, ACTIVATIONS, {"bio": "medicine"})
    assert [p.expert for p in built] == [("all", 1, 0), ("bio", 1, 0)]
    mono, bio = built
    assert mono.windows == [(["of", " aspirin"], [0, 1]), (["The", " dose"], [1])]
    assert mono.messages == prompts.explain_messages(["<<of aspirin>>", "The<< dose>>"])
    assert bio.messages == prompts.explain_messages(["<<of aspirin>>"], "medicine")
    with pytest.raises(ValueError, match="scope 'bio' has no domain prompt"):
        explain_prompts(SAMPLES, WINDOWS, ACTIVATIONS, {})


def test_test_windows_are_shown_in_the_samples_order_a_few_at_a_time() -> None:
    built = predict_prompts(SAMPLES, WINDOWS, {("all", 1, 0): "dose words"}, per_prompt=1)
    assert [(p.expert, p.part, p.window_ids) for p in built] == [(("all", 1, 0), 0, [2]), (("all", 1, 0), 1, [3])]
    assert built[0].messages == prompts.predict_messages("dose words", ["one plus"])
    together = predict_prompts(SAMPLES, WINDOWS, {("all", 1, 0): "dose words"}, per_prompt=10)
    assert [p.window_ids for p in together] == [[2, 3]]
    assert predict_prompts(SAMPLES, WINDOWS, {}, per_prompt=10) == []  # no explanation, nothing to predict
    with pytest.raises(ValueError, match="windows per prompt must be positive"):
        predict_prompts(SAMPLES, WINDOWS, {}, per_prompt=0)


def test_an_answer_becomes_one_prediction_per_window_shown() -> None:
    (prompt,) = predict_prompts(SAMPLES, WINDOWS, {("all", 1, 0): "x"}, per_prompt=10)
    assert [r["predicted"] for r in prediction_rows(prompt, frozenset({2}))] == [False, True]
    assert [r["window_id"] for r in prediction_rows(prompt, frozenset())] == [2, 3]
    assert [r["predicted"] for r in prediction_rows(prompt, None)] == [None, None]  # an invalid answer
