"""The two judging protocols: prompts, answer validation and the verdicts they resolve to.

Absolute (DeepEval's HallucinationMetric, asked natively): the judge gets the summary as the
'actual output' and the source document as the one context, and answers one verdict per context,
{"verdicts": [{"verdict": "yes" | "no", "reason": ...}]}, "yes" when the output agrees with that
context. The hallucination score is the share of "no" verdicts and the label is derived from the
verdicts, never from a score's direction (DeepEval 4.2 flipped it): hallucinated when the score is
above the threshold (params `judge.threshold`, by default DeepEval's 0.5), so with one context a
single "no" hallucinates. DeepEval's second call, which only phrases a reason for the score, is not
made: the verdicts carry their reasons and the label does not depend on it.

Relative (the study's pairwise prompt, paper Appendix B): the pruned and the source model's
summaries are shown as A and B, in an order fixed by md5(f"{seed}::{sample_id}") (first byte even:
A is the source model's), and the judge names A or B for each of four questions. The answers are
resolved to "pruned" or "source"; a question's rate is the share of items where the judge names
the pruned summary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from expertlab.judgments import QUESTIONS

Side = Literal["A", "B"]
Named = Literal["pruned", "source"]
Order = tuple[Named, Named]  # (whose summary is A, whose is B)

# The verdict step of DeepEval's HallucinationMetric, one context per list entry.
ABSOLUTE_TEMPLATE = """For each context in contexts, which is a list of strings, generate a JSON object stating whether the given 'actual output' agrees with that context. Each object has two fields, 'verdict' and 'reason'.
The 'verdict' must be exactly 'yes' or 'no': 'yes' when the actual output agrees with the context, 'no' when it contradicts the context or states something the context does not support.
Give a 'reason' for every verdict; when the verdict is 'no', quote the statements of the actual output that the context does not support.
Return one verdict per context, in the order of the contexts, as JSON with the single key 'verdicts'.

Example JSON for two contexts:
{{
    "verdicts": [
        {{"verdict": "yes", "reason": "The actual output agrees with the context that the trial enrolled 200 adults."}},
        {{"verdict": "no", "reason": "The actual output says 20 mg daily, the context says 10 mg twice daily."}}
    ]
}}

Judge only against the contexts; do not use prior knowledge. Return JSON only.

Contexts:
{contexts}

Actual Output:
{actual_output}

JSON:"""

RELATIVE_SYSTEM = "You are a careful, unbiased judge."
# Paper, Appendix B ("Relative judgment prompt template").
RELATIVE_TEMPLATE = """You are an impartial evaluator. Compare Summary A vs Summary B against the Source Document.
Use ONLY the Source Document to judge support. Do NOT use outside knowledge.
Be strict about factual support.

Answer these questions:

Q1. Hallucinations: Which summary contains MORE hallucinations (unsupported content)?
Q2. Omission: Which summary is missing MORE crucial information from the document?
Q3. Repetition: Which summary contains MORE repetitive information?
Q4. Alignment: Which summary is MORE semantically aligned with the source document?

Return ONLY valid JSON with exactly these keys:
- q1_hallucinations_more: "A" or "B"
- q2_omission_more: "A" or "B"
- q3_repetition_more: "A" or "B"
- q4_alignment_more: "A" or "B"

Rules:
- You MUST choose 'A' or 'B' (no ties).
- Keep outputs to JSON only (no markdown).

Source Document:
<<<DOC
{document}
DOC>>>

Summary A:
<<<A
{summary_a}
A>>>

Summary B:
<<<B
{summary_b}
B>>>
"""


def template_id(protocol: str) -> str:
    """A digest of what a protocol asks: a changed prompt is a new verdict, never a cached one."""
    text = {"absolute": ABSOLUTE_TEMPLATE, "relative": RELATIVE_SYSTEM + "\0" + RELATIVE_TEMPLATE}[protocol]
    return f"{protocol}-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# --- absolute ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AbsoluteAnswer:
    verdicts: tuple[tuple[str, str], ...]  # (verdict "yes" | "no", reason) per context

    @property
    def score(self) -> float:
        """DeepEval's hallucination score: the share of contexts the output disagrees with."""
        return sum(verdict == "no" for verdict, _ in self.verdicts) / len(self.verdicts)

    def label(self, threshold: float) -> str:
        return "hallucinated" if self.score > threshold else "faithful"

    def to_json(self) -> dict[str, Any]:
        return {"verdicts": [{"verdict": v, "reason": r} for v, r in self.verdicts], "score": self.score}


def absolute_messages(document: str, output: str) -> list[dict[str, str]]:
    contexts = [document]
    listed = "\n".join(f"{number}. {context}" for number, context in enumerate(contexts, start=1))
    return [{"role": "user", "content": ABSOLUTE_TEMPLATE.format(contexts=listed, actual_output=output)}]


def validate_absolute(payload: Any, contexts: int = 1) -> AbsoluteAnswer:
    """The verdicts of an answer; ValueError unless it is exactly one 'yes'/'no' verdict per context."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("verdicts"), list):
        raise ValueError("expected a JSON object with a list under 'verdicts'")
    verdicts = payload["verdicts"]
    if len(verdicts) != contexts:
        raise ValueError(f"expected {contexts} verdict(s), one per context, got {len(verdicts)}")
    parsed = []
    for entry in verdicts:
        verdict = entry.get("verdict") if isinstance(entry, Mapping) else None
        if not isinstance(verdict, str) or verdict.strip().lower() not in ("yes", "no"):
            raise ValueError(f"a verdict must be 'yes' or 'no', got {verdict!r}")
        reason = entry.get("reason")
        parsed.append((verdict.strip().lower(), reason if isinstance(reason, str) else ""))
    return AbsoluteAnswer(tuple(parsed))


# --- relative ------------------------------------------------------------------------------------


def ab_order(seed: int, sample_id: str) -> Order:
    """Whose summary is shown as A and as B: the study's md5(f"{seed}::{sample_id}") bit."""
    first = hashlib.md5(f"{seed}::{sample_id}".encode()).digest()[0]
    return ("source", "pruned") if first & 1 == 0 else ("pruned", "source")


def relative_messages(document: str, summary_a: str, summary_b: str) -> list[dict[str, str]]:
    prompt = RELATIVE_TEMPLATE.format(document=document, summary_a=summary_a, summary_b=summary_b)
    return [{"role": "system", "content": RELATIVE_SYSTEM}, {"role": "user", "content": prompt}]


def validate_relative(payload: Any) -> dict[str, Side]:
    """The four answers, each 'A' or 'B' (case and surrounding space aside); ValueError otherwise."""
    if not isinstance(payload, Mapping):
        raise ValueError("expected a JSON object")
    answers: dict[str, Side] = {}
    for question in QUESTIONS["relative"]:
        value = payload.get(question)
        side = value.strip().upper() if isinstance(value, str) else None
        if side not in ("A", "B"):
            raise ValueError(f"{question} must be 'A' or 'B', got {value!r}")
        answers[question] = side  # type: ignore[assignment]
    return answers


def resolve(answers: Mapping[str, Side], order: Order) -> dict[str, Named]:
    """Each answer as the model whose summary it names."""
    named = {"A": order[0], "B": order[1]}
    return {question: named[side] for question, side in answers.items()}
