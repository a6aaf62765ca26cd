"""The offline explainer and predictor of the default toy study: deterministic stand-ins for the external LLM, so
the study runs with no network. They are not the paper's method (an LLM reading the prompts in prompts.py).

explain: the `terms` tokens most over-represented among the routed tokens of the explanation windows
  relative to their unrouted tokens (add-one smoothed frequency ratio; ties by token text), said as
  'tokens "a", "b", "c"' (the explainer sees only its positives, so the contrast is within them);
predict: the test windows containing any token the explanation names.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

TERMS = 3
_QUOTED = re.compile(r'"([^"]*)"')


def explain(windows: Sequence[tuple[Sequence[str], Sequence[int]]], terms: int = TERMS) -> str:
    """windows: (token texts, routed positions) of the explanation windows."""
    inside, outside = Counter(), Counter()
    for tokens, positions in windows:
        routed = set(positions)
        for index, token in enumerate(tokens):
            word = token.strip()
            if word:
                (inside if index in routed else outside)[word] += 1
    vocabulary = len(inside.keys() | outside.keys())
    n_in, n_out = sum(inside.values()), sum(outside.values())

    def lift(word: str) -> float:
        return math.log((inside[word] + 1) / (n_in + vocabulary)) - math.log((outside[word] + 1) / (n_out + vocabulary))

    chosen = sorted(inside, key=lambda word: (-lift(word), word))[:terms]
    if not chosen:
        return "no tokens"
    return "tokens " + ", ".join(f'"{word}"' for word in chosen)


def named_tokens(explanation: str) -> set[str]:
    return set(_QUOTED.findall(explanation))


def predict(explanation: str, windows: Sequence[Sequence[str]]) -> str:
    """The answer the predictor gives: the numbers of the windows holding a named token, or None."""
    named = named_tokens(explanation)
    hits = [number for number, tokens in enumerate(windows, start=1) if named & {token.strip() for token in tokens}]
    return ", ".join(map(str, hits)) if hits else "None"
