"""MultiMedQA generations -> the study's answer match (evaluation/src/eval_multimedqa.py), one value per output."""

from __future__ import annotations

import re
import string
from typing import Any

from expertlab.metrics import metric

_FINAL = re.compile(r"^.*?assistantfinal\s*", re.DOTALL)
_ANALYSIS = re.compile(r"analysis\s*[:\-]*", re.IGNORECASE)
_FENCED = re.compile(r"```(?:json)?\s*([\s\S]*?)\s*```", re.IGNORECASE)
_DROP_PUNCTUATION = str.maketrans("", "", string.punctuation)


def study_answer(output: str) -> str:
    """The answer text the study matched: after a GPT-OSS "assistantfinal" or a leading "analysis",
    before "Stop Here", the inside of a fenced block when there is one."""
    text = output
    if "assistantfinal" in text:
        text = _FINAL.sub("", text, count=1)
    elif text.lower().startswith("analysis"):
        text = _ANALYSIS.split(text, maxsplit=1)[-1]
    text = text.strip().split("Stop Here")[0].strip()
    fenced = _FENCED.search(text)
    return fenced.group(1).strip() if fenced else text


def normalize_answer(text: str) -> str:
    """Lowercase, ASCII punctuation removed, whitespace collapsed (the study's `_normalize_for_exact`)."""
    return " ".join(text.strip().lower().translate(_DROP_PUNCTUATION).split())


@metric("prefix_match")
def prefix_match(output: str, item: dict[str, Any]) -> float:
    """1.0 when the normalised answer equals or starts with the normalised target (a letter, or yes/no/maybe).

    The study's rule, kept as it was: a bare prefix test, so "(B)." and "b) ..." match B, "The answer
    is B" does not, and an answer that merely begins with the letter ("Because ...") matches B.
    """
    said = normalize_answer(study_answer(output))
    return float(said.startswith(normalize_answer(item["target"])))
