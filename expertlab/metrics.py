"""Per-sample metrics: (model output, task item) -> float, one registry entry per metric name."""

from __future__ import annotations

import functools
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from expertlab.registry import Registry
from expertlab.tasks import Task

# A metric scores one output against its item ({"target": str, "choices": list[str] | None, ...}).
Metric = Callable[[str, dict[str, Any]], float]

METRICS: Registry[Metric] = Registry("metric")

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
# An option letter at the very start: "B", "B)", "B.", "B:", "(B)", optionally followed by the answer text.
# A bare letter followed by a word ("A fever ...") is text, not a letter.
_OPTION_LETTER = re.compile(r"^\s*(?:\(([A-Z])\)|([A-Z])(?:[).:]|\s*$))")
_WORD = re.compile(r"\w+")


def metric(name: str) -> Callable[[Metric], Metric]:
    return METRICS.register(name)


def normalize(text: str) -> str:
    """SQuAD answer normalisation: lowercase, drop punctuation and articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def resolve_choice(output: str, choices: Sequence[str]) -> int | None:
    """Index of the choice an output names: a leading option letter, else the longest choice text it starts with."""
    letter = _OPTION_LETTER.match(output)
    if letter:
        index = ord(letter.group(1) or letter.group(2)) - ord("A")
        if index < len(choices):
            return index
    said = normalize(output)
    best: int | None = None
    best_length = 0
    for index, choice in enumerate(choices):
        text = normalize(choice)
        if text and (said == text or said.startswith(text + " ")) and len(text) > best_length:
            best, best_length = index, len(text)
    return best


@metric("exact_match")
def exact_match(output: str, item: dict[str, Any]) -> float:
    """1.0 when the normalised output equals the normalised target."""
    return float(normalize(output) == normalize(item["target"]))


@metric("token_f1")
def token_f1(output: str, item: dict[str, Any]) -> float:
    """SQuAD token F1: harmonic mean of precision and recall of the normalised tokens' multiset overlap."""
    predicted = normalize(output).split()
    gold = normalize(item["target"]).split()
    if not predicted or not gold:
        return float(predicted == gold)
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision = common / len(predicted)
    recall = common / len(gold)
    return 2 * precision * recall / (precision + recall)


@metric("accuracy")
def accuracy(output: str, item: dict[str, Any]) -> float:
    """1.0 when the output resolves (option letter or choice text) to the target choice; unresolved is wrong."""
    choices = item.get("choices")
    if not choices:
        raise ValueError("accuracy needs an item with choices")
    if item["target"] not in choices:
        raise ValueError(f"target {item['target']!r} is not one of the choices {choices}")
    index = resolve_choice(output, choices)
    return float(index is not None and choices[index] == item["target"])


@functools.cache
def _rouge_l_scorer():  # noqa: ANN202
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


@metric("rouge_l")
def rouge_l(output: str, item: dict[str, Any]) -> float:
    """ROUGE-L F-measure with Porter stemming (rouge-score, as the study's summary metric)."""
    return float(_rouge_l_scorer().score(item["target"], output)["rougeL"].fmeasure)


@metric("length_words")
def length_words(output: str, item: dict[str, Any]) -> float:
    """Number of whitespace-separated words in the output."""
    return float(len(output.split()))


@metric("type_token_ratio")
def type_token_ratio(output: str, item: dict[str, Any]) -> float:
    """Distinct lowercase word tokens (runs of word characters) over word tokens; 0.0 for no words."""
    words = _WORD.findall(output.lower())
    return len(set(words)) / len(words) if words else 0.0


def score_items(task: Task, items: Sequence[dict[str, Any]], outputs: Sequence[str]) -> list[dict[str, Any]]:
    """Long-format scores: one row per (item, metric of the task), items given as task-file items (`id` key)."""
    if len(items) != len(outputs):
        raise ValueError(f"task {task.name!r}: {len(items)} items but {len(outputs)} outputs")
    functions = [(name, METRICS[name]) for name in task.metrics]
    return [
        {"task": task.name, "sample_id": str(item["id"]), "metric": name, "value": float(fn(output, item))}
        for item, output in zip(items, outputs)
        for name, fn in functions
    ]
