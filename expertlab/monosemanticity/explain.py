"""Samples + windows + activation records -> the explainer's prompts per (scope, expert), and, given explanations,
the predictor's prompts and what their answers say about each test window.

Scope `all` is explained with P_mono, a target domain d with P_domain^(d) (the domain's prompt named in
params); the explanation windows are shown strongest first, routed tokens marked; the test windows are
shown unmarked in the sample's order, `per_prompt` to a prompt (the paper shows "N example sequences"
and gives no N; Delphi's detection scorer shows a handful per prompt).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from expertlab.judges.providers import Messages
from expertlab.monosemanticity.prompts import explain_messages, marked, predict_messages
from expertlab.monosemanticity.sampling import ALL

Expert = tuple[str, int, int]  # (scope, layer, expert)


@dataclass(frozen=True)
class ExplainPrompt:
    expert: Expert
    windows: list[tuple[list[str], list[int]]]  # (token texts, routed positions), strongest first
    messages: Messages


@dataclass(frozen=True)
class PredictPrompt:
    expert: Expert
    part: int  # which of the expert's prompts, from 0
    window_ids: list[int]  # in the order shown: example i is window_ids[i - 1]
    windows: list[list[str]]  # their token texts
    messages: Messages


def explain_prompts(
    samples: pd.DataFrame, windows: pd.DataFrame, activations: pd.DataFrame, domain_prompts: Mapping[str, str]
) -> list[ExplainPrompt]:
    """One prompt per (scope, layer, expert) that has explanation windows."""
    texts = windows.set_index("window_id")["token_texts"]
    positions = activations.set_index(["layer", "expert", "window_id"])["positions"]
    prompts = []
    explain = samples[samples["role"] == "explain"].sort_values(["scope", "layer", "expert", "rank"])
    for (scope, layer, expert), rows in explain.groupby(["scope", "layer", "expert"], sort=True):
        if scope != ALL and scope not in domain_prompts:
            raise ValueError(f"scope {scope!r} has no domain prompt (monosemanticity.domain_prompts)")
        shown = [
            (list(texts[window]), [int(p) for p in positions[(layer, expert, window)]]) for window in rows["window_id"]
        ]
        messages = explain_messages([marked(t, p) for t, p in shown], None if scope == ALL else domain_prompts[scope])
        prompts.append(ExplainPrompt((str(scope), int(layer), int(expert)), shown, messages))
    return prompts


def predict_prompts(
    samples: pd.DataFrame, windows: pd.DataFrame, explanations: Mapping[Expert, str], per_prompt: int
) -> list[PredictPrompt]:
    """The predictor's prompts for every explained (scope, layer, expert): its test windows in order, `per_prompt`
    at a time. An expert without an explanation (its explainer's answer invalid) gets none."""
    if per_prompt <= 0:
        raise ValueError(f"windows per prompt must be positive, got {per_prompt}")
    texts = windows.set_index("window_id")["token_texts"]
    prompts = []
    test = samples[samples["role"] == "test"].sort_values(["scope", "layer", "expert", "rank"])
    for (scope, layer, expert), rows in test.groupby(["scope", "layer", "expert"], sort=True):
        key = (str(scope), int(layer), int(expert))
        if key not in explanations:
            continue
        ids = [int(window) for window in rows["window_id"]]
        for part, start in enumerate(range(0, len(ids), per_prompt)):
            chunk = ids[start : start + per_prompt]
            shown = [list(texts[window]) for window in chunk]
            messages = predict_messages(explanations[key], ["".join(tokens) for tokens in shown])
            prompts.append(PredictPrompt(key, part, chunk, shown, messages))
    return prompts


def prediction_rows(prompt: PredictPrompt, chosen: frozenset[int] | None) -> list[dict[str, object]]:
    """One row per window shown: predicted routed (the answer named its number), or None for an invalid answer."""
    scope, layer, expert = prompt.expert
    return [
        {
            "scope": scope,
            "layer": layer,
            "expert": expert,
            "window_id": window,
            "predicted": None if chosen is None else number in chosen,
        }
        for number, window in enumerate(prompt.window_ids, start=1)
    ]

