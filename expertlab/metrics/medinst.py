"""MedINST32's official scores, reimplemented: (outputs, generation rows with doc.dataset and doc.evaluation) -> values.

The official evaluation (aialt/MedINST evaluation.py, run by the study as eval_medinst32.py) scores every
dataset with ROUGE-L (rouge-score, Porter stemming: the shared `rouge_l`) and word-level F1 (`word_f1`),
and adds by the dataset's evaluation type: `entity_f1` (entity), `exact_match` (em; the shared metric is
the official one), label-level F1 over the normalised answers (cls) or over the [B]/[I]/[O] tags (bio)
(`label_f1`, corpus-level). Per-sample metrics are computed on every row of a task, so in a category that
mixes evaluation types (QA, NER, NED) read entity_f1 and exact_match per doc.dataset. `medinst_f1` is the
per-category "F1" the paper reports: each dataset's official F1 variant (entity F1; label F1 for cls and
bio; word F1, the only F1 reported, for em), averaged over the category's datasets, not its samples.

chrF++ (`chrf_pp`, for MT) is in neither released script; it is computed here as sacrebleu's corpus-level
CHRF(word_order=2) (character 6-grams, word bigrams, beta 2), the form chrF++ is defined and reported
in, over all of a task's rows, divided by 100 to share the 0-1 scale of the paper's tables.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from statistics import fmean
from typing import Any

from expertlab.metrics import Row, corpus_metric, metric, multiset_f1, normalize

_BIO_TAG = re.compile(r"\[B\]|\[I\]|\[O\]")
_BIO_PADDING = "N"  # the official stand-in for a tag the output is missing


def bracketed_entities(text: str) -> list[str]:
    """Normalised contents of the top-level [...] spans (nested brackets kept inside, then normalised away)."""
    entities: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "[":
            if depth:
                current.append(char)
            depth += 1
        elif char == "]":
            if not depth:  # a stray closing bracket
                continue
            depth -= 1
            if depth:
                current.append(char)
            else:
                entities.append(normalize("".join(current)))
                current = []
        elif depth:
            current.append(char)
    return entities  # an unclosed span is dropped


def macro_f1(gold: Sequence[str], predicted: Sequence[str]) -> float:
    """Macro F1 over the labels sorted(set(gold)), as sklearn f1_score(labels=..., average="macro"); 0.0 if none."""
    labels = sorted(set(gold))
    if not labels:
        return 0.0
    scores = []
    for label in labels:
        true_positives = sum(g == label and p == label for g, p in zip(gold, predicted))
        false_positives = sum(g != label and p == label for g, p in zip(gold, predicted))
        false_negatives = sum(g == label and p != label for g, p in zip(gold, predicted))
        scores.append(2 * true_positives / (2 * true_positives + false_positives + false_negatives))
    return fmean(scores)


def bio_tags(target: str, output: str) -> tuple[list[str], list[str]]:
    """The target's and the output's [B]/[I]/[O] tags, the output's cut or padded with "N" to the target's length."""
    gold = _BIO_TAG.findall(target)
    predicted = _BIO_TAG.findall(output)[: len(gold)]
    return gold, predicted + [_BIO_PADDING] * (len(gold) - len(predicted))


def label_level_f1(evaluation: str, outputs: Sequence[str], rows: Sequence[Row]) -> float:
    """The official label-level F1 of one dataset's rows: over normalised answers (cls) or pooled BIO tags (bio)."""
    if evaluation == "cls":
        return macro_f1([normalize(row["target"]) for row in rows], [normalize(output) for output in outputs])
    if evaluation == "bio":
        gold: list[str] = []
        predicted: list[str] = []
        for output, row in zip(outputs, rows):
            row_gold, row_predicted = bio_tags(row["target"], output)
            gold += row_gold
            predicted += row_predicted
        return macro_f1(gold, predicted)
    raise ValueError(f"label-level F1 is defined for cls and bio datasets, not {evaluation!r}")


def _evaluation(row: Row) -> str | None:
    doc = row.get("doc") or {}
    if "dataset" not in doc or "evaluation" not in doc:
        raise ValueError("MedINST32 metrics need rows whose doc has dataset and evaluation (expertlab.tasks.medinst)")
    return doc["evaluation"]


def by_dataset(outputs: Sequence[str], rows: Sequence[Row]) -> dict[str, tuple[str | None, list[str], list[Row]]]:
    """Rows grouped by doc.dataset, in first-seen order: dataset -> (evaluation type, outputs, rows)."""
    groups: dict[str, tuple[str | None, list[str], list[Row]]] = {}
    for output, row in zip(outputs, rows):
        evaluation = _evaluation(row)
        _, group_outputs, group_rows = groups.setdefault(row["doc"]["dataset"], (evaluation, [], []))
        group_outputs.append(output)
        group_rows.append(row)
    return groups


@metric("word_f1")
def word_f1(output: str, row: Row) -> float:
    """The official word_level_f1: token_f1, except that two answers with no words score 0.0, not 1.0."""
    predicted = normalize(output).split()
    gold = normalize(row["target"]).split()
    return multiset_f1(gold, predicted)


@metric("entity_f1")
def entity_f1(output: str, row: Row) -> float:
    """The official entity-level F1: multiset F1 of the bracketed entities of output and target."""
    return multiset_f1(bracketed_entities(row["target"]), bracketed_entities(output))


@corpus_metric("label_f1")
def label_f1(outputs: Sequence[str], rows: Sequence[Row], options: Mapping[str, Any]) -> float:
    """Official label-level macro F1 of each cls or bio dataset among the rows, averaged over those datasets."""
    scores = [
        label_level_f1(evaluation, group_outputs, group_rows)
        for evaluation, group_outputs, group_rows in by_dataset(outputs, rows).values()
        if evaluation in ("cls", "bio")
    ]
    if not scores:
        raise ValueError("label_f1 needs rows of a cls or bio dataset")
    return fmean(scores)


# Per evaluation type, the sample-level F1 averaged over a dataset's rows (em and untyped datasets report
# only word F1); cls and bio datasets use the corpus-level label F1 instead.
_SAMPLE_F1: dict[str | None, Callable[[str, Row], float]] = {"entity": entity_f1, "em": word_f1, None: word_f1}


@corpus_metric("medinst_f1")
def medinst_f1(outputs: Sequence[str], rows: Sequence[Row], options: Mapping[str, Any]) -> float:
    """Each dataset's official F1 variant (entity F1, label F1, else word F1), macro-averaged over the datasets."""
    scores = []
    for evaluation, group_outputs, group_rows in by_dataset(outputs, rows).values():
        if evaluation in ("cls", "bio"):
            scores.append(label_level_f1(evaluation, group_outputs, group_rows))
        elif evaluation in _SAMPLE_F1:
            sample_f1 = _SAMPLE_F1[evaluation]
            scores.append(fmean(sample_f1(output, row) for output, row in zip(group_outputs, group_rows)))
        else:
            raise ValueError(f"medinst_f1: no official F1 for evaluation type {evaluation!r}")
    return fmean(scores)


@functools.cache
def _chrf_plus_plus():  # noqa: ANN202
    from sacrebleu.metrics import CHRF

    return CHRF(word_order=2)


@corpus_metric("chrf_pp")
def chrf_pp(outputs: Sequence[str], rows: Sequence[Row], options: Mapping[str, Any]) -> float:
    """Corpus-level chrF++ (sacrebleu CHRF, word_order=2) over all rows, on a 0-1 scale."""
    return _chrf_plus_plus().corpus_score(list(outputs), [[row["target"] for row in rows]]).score / 100
