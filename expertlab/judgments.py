"""The closed vocabularies of a judgment (protocols, their questions and labels, statuses): the store's ENUMs read them.

Absolute: is one output faithful to its source (DeepEval's HallucinationMetric)? Relative: which of two
summaries, the pruned model's or the source model's, does more of each of four things (the study's
pairwise prompt, Appendix B)? A verdict that is absent is `missing`, one that cannot be read is
`invalid`; neither ever carries a label.
"""

from __future__ import annotations

from typing import Literal

Protocol = Literal["absolute", "relative"]
JudgeKind = Literal["llm", "human"]  # an automatic judge, or a human annotator
VerdictStatus = Literal["ok", "missing", "invalid"]  # a verdict row: labelled, absent, unreadable
JudgedOutput = Literal["pruned", "source", "pair"]  # absolute judges one output, relative the pair

QUESTIONS: dict[str, tuple[str, ...]] = {
    "absolute": ("hallucinated",),
    "relative": ("q1_hallucinations_more", "q2_omission_more", "q3_repetition_more", "q4_alignment_more"),
}
LABELS: dict[str, tuple[str, ...]] = {
    "absolute": ("hallucinated", "faithful"),
    "relative": ("pruned", "source"),  # the summary the judge names
}


def question_names() -> list[str]:
    return [question for questions in QUESTIONS.values() for question in questions]


def label_names() -> list[str]:
    return [label for labels in LABELS.values() for label in labels]
