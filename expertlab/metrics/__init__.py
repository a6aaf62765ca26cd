"""Metrics: (model outputs, generation rows) -> values, one registry entry per metric name.

A metric is per-sample (one value per output, stored in `sample_scores` and averaged into
`task_scores`) or corpus-level (one value per task, e.g. a macro F1 over labels, stored in
`task_scores` directly). Rows are the generate stage's rows: `output`, `target`, `choices`, `doc`
and, for lm-eval tasks, the `scores` lm-eval computed. Modules in this package register the
benchmark-specific metrics; importing the package imports them all.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from expertlab.registry import Registry
from expertlab.tasks import Task

Row = dict[str, Any]
MetricLevel = Literal["sample", "corpus"]
# Every metric is stored as a batch function: (outputs, rows, options) -> one value per row, or one per task.
BatchScorer = Callable[[Sequence[str], Sequence[Row], Mapping[str, Any]], "list[float] | float"]


@dataclass(frozen=True)
class Metric:
    name: str
    level: MetricLevel
    score: BatchScorer

    def __call__(self, output: str, row: Row, options: Mapping[str, Any] | None = None) -> float:
        """One output's value (a corpus metric: the value of a one-sample corpus)."""
        value = self.score([output], [row], options or {})
        return float(value if self.level == "corpus" else value[0])  # type: ignore[index,arg-type]


METRICS: Registry[Metric] = Registry("metric")


def metric(name: str) -> Callable[[Callable[[str, Row], float]], Callable[[str, Row], float]]:
    """Register a per-sample metric written for one output: (output, row) -> float."""

    def add(fn: Callable[[str, Row], float]) -> Callable[[str, Row], float]:
        METRICS.add(name, Metric(name, "sample", lambda outputs, rows, options: [fn(o, r) for o, r in zip(outputs, rows)]))
        return fn

    return add


def batch_metric(name: str) -> Callable[[BatchScorer], BatchScorer]:
    """Register a per-sample metric computed for a whole task at once (e.g. a model-based score)."""

    def add(fn: BatchScorer) -> BatchScorer:
        METRICS.add(name, Metric(name, "sample", fn))
        return fn

    return add


def corpus_metric(name: str) -> Callable[[BatchScorer], BatchScorer]:
    """Register a corpus-level metric: (outputs, rows, options) -> one value for the task."""

    def add(fn: BatchScorer) -> BatchScorer:
        METRICS.add(name, Metric(name, "corpus", fn))
        return fn

    return add


_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
# An option letter at the very start: "B", "B)", "B.", "B:", "(B)", optionally followed by the answer text.
# A bare letter followed by a word ("A fever ...") is text, not a letter.
_OPTION_LETTER = re.compile(r"^\s*(?:\(([A-Z])\)|([A-Z])(?:[).:]|\s*$))")
_WORD = re.compile(r"\w+")


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


def multiset_f1(gold: Sequence[str], predicted: Sequence[str]) -> float:
    """F1 of multiset overlap; 0.0 when either side is empty (the official entity_level_f1)."""
    gold_counts, predicted_counts = Counter(gold), Counter(predicted)
    true_positives = sum((gold_counts & predicted_counts).values())
    if true_positives == 0:
        return 0.0
    precision = true_positives / sum(predicted_counts.values())
    recall = true_positives / sum(gold_counts.values())
    return 2 * precision * recall / (precision + recall)


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
    return multiset_f1(gold, predicted)


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


def score_items(
    task: Task,
    rows: Sequence[Row],
    outputs: Sequence[str],
    options: Mapping[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Long-format scores of one task: (per-sample rows, corpus rows).

    Per-sample rows are {task, sample_id, metric, value}, one per (row, per-sample metric); corpus rows
    are {task, metric, value, n}, one per corpus metric. Rows are generation rows (`sample_id` or
    `id`). `options` reach every metric (e.g. the BERTScore encoder).
    """
    if len(rows) != len(outputs):
        raise ValueError(f"task {task.name!r}: {len(rows)} items but {len(outputs)} outputs")
    options = options or {}
    per_sample: dict[str, list[float]] = {}
    corpus: list[dict[str, Any]] = []
    for name in task.metrics:
        entry = METRICS[name]
        value = entry.score(outputs, rows, options)
        if entry.level == "corpus":
            corpus.append({"task": task.name, "metric": name, "value": float(value), "n": len(rows)})  # type: ignore[arg-type]
            continue
        values = [float(v) for v in value]  # type: ignore[union-attr]
        if len(values) != len(rows):
            raise ValueError(f"metric {name!r} gave {len(values)} values for {len(rows)} samples")
        per_sample[name] = values
    ids = [str(row.get("sample_id", row.get("id"))) for row in rows]
    samples = [
        {"task": task.name, "sample_id": sample_id, "metric": name, "value": values[index]}
        for index, sample_id in enumerate(ids)
        for name, values in per_sample.items()
    ]
    return samples, corpus


for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_module.name}")
