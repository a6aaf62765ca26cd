from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Literal

from expertlab.errors import ExpertlabError
from expertlab.judges.outcomes import parse_json_answer
from expertlab.judgments import QUESTIONS

Side = Literal["A", "B"]
Named = Literal["pruned", "source"]
Order = tuple[Named, Named]  # (whose summary is A, whose is B)

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


@functools.cache
def template_id(protocol: str) -> str:
    """A digest of what a protocol asks: a changed prompt is a new verdict, never a cached one.

    The absolute prompt's text is DeepEval's, as the installed deepeval renders it for placeholder inputs:
    a deepeval whose template reads differently asks under another id."""
    if protocol == "absolute":
        text = absolute_messages("{context}", "{actual_output}")[-1]["content"]
    else:
        text = RELATIVE_SYSTEM + "\0" + RELATIVE_TEMPLATE
    return f"{protocol}-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# --- absolute: DeepEval's HallucinationMetric ----------------------------------------------------

# Set wherever deepeval is imported: no telemetry and no .env file read, whatever the environment says;
# the hub offline unless the environment says otherwise (as `expertlab` sets it).
DEEPEVAL_ENVIRONMENT = {"DEEPEVAL_TELEMETRY_OPT_OUT": "1", "DEEPEVAL_DISABLE_DOTENV": "1"}
HUB_OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_UPDATE_DOWNLOAD_COUNTS": "0", "HF_EVALUATE_OFFLINE": "1"}
_IMPORTING = threading.Lock()


@functools.cache
def _deepeval_once() -> SimpleNamespace:
    os.environ.update(DEEPEVAL_ENVIRONMENT)
    for name, value in HUB_OFFLINE.items():
        os.environ.setdefault(name, value)
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="expertlab-deepeval-") as scratch:
        os.chdir(scratch)  # deepeval may create .deepeval/ in the working directory as it is imported
        try:
            from deepeval.metrics.base_metric import YES_NO
            from deepeval.metrics.hallucination import HallucinationMetric, HallucinationTemplate
            from deepeval.metrics.hallucination.schema import HallucinationVerdict
            from deepeval.metrics.utils import trimAndLoadJson, verdict_from_json
            from deepeval.models import DeepEvalBaseLLM
        except ImportError as err:
            raise ExpertlabError(
                f"the absolute protocol is DeepEval's HallucinationMetric, and deepeval cannot be imported ({err}): "
                "run `make setup`, which installs requirements-deepeval.lock"
            ) from None
        finally:
            os.chdir(here)

    class AsksNothing(DeepEvalBaseLLM):  # type: ignore[misc, valid-type]
        """The metric's model slot: expertlab's chat client asks the judge, so the metric itself never does."""

        def load_model(self) -> None:
            return None

        def generate(self, *args: Any, **kwargs: Any) -> str:
            raise RuntimeError("expertlab asks the judge through its own client, never through DeepEval")

        async def a_generate(self, *args: Any, **kwargs: Any) -> str:
            return self.generate()

        def get_model_name(self) -> str:
            return "expertlab judge"

    return SimpleNamespace(
        Metric=HallucinationMetric,
        Template=HallucinationTemplate,
        Verdict=HallucinationVerdict,
        allowed=YES_NO,
        load_json=trimAndLoadJson,
        verdict_from_json=verdict_from_json,
        asks_nothing=AsksNothing,
    )


def deepeval() -> SimpleNamespace:
    """What the absolute protocol takes from the installed deepeval, imported once, on first use."""
    with _IMPORTING:
        return _deepeval_once()


def hallucination_metric(threshold: float) -> Any:
    """DeepEval's HallucinationMetric as expertlab runs it: the LLM decides (eval mode 'llm', whatever
    DEEPEVAL_EVAL_MODE says), no reason is asked, and the answers come from expertlab's client."""
    de = deepeval()
    with warnings.catch_warnings():
        # its notice that 4.2 flipped the score direction: the label here follows the metric's own pass rule
        warnings.simplefilter("ignore", DeprecationWarning)
        return de.Metric(
            threshold=threshold, model=de.asks_nothing(), eval_mode="llm", include_reason=False, async_mode=False
        )


def absolute_messages(document: str, output: str) -> list[dict[str, str]]:
    """DeepEval's verdict prompt for the output against the document, rendered with the arguments its
    measure() passes, as the one user message its OpenAI model sends."""
    contexts = [document]
    prompt = deepeval().Template.generate_verdicts(
        actual_output=output, contexts=contexts, contexts_count=len(contexts)
    )
    return [{"role": "user", "content": prompt}]


@dataclass(frozen=True)
class AbsoluteAnswer:
    """A judge's verdicts, one DeepEval HallucinationVerdict per context, scored by the metric's own code."""

    verdicts: tuple[Any, ...]

    def judged(self, threshold: float) -> tuple[float, bool]:
        """(score, success) as HallucinationMetric.measure() computes them from these verdicts."""
        metric = hallucination_metric(threshold)
        metric.verdicts = list(self.verdicts)
        metric.score = metric._calculate_score()
        return metric.score, metric.is_successful()

    def label(self, threshold: float) -> str:
        return "faithful" if self.judged(threshold)[1] else "hallucinated"

    def to_json(self, threshold: float) -> dict[str, Any]:
        score, success = self.judged(threshold)
        verdicts = [{"verdict": v.verdict.value, "reason": v.reason} for v in self.verdicts]
        return {"verdicts": verdicts, "score": score, "threshold": threshold, "success": success}


def read_absolute(text: str, contexts: int = 1) -> AbsoluteAnswer:
    """DeepEval's reading of an answer (its JSON extraction, verdict vocabulary and schema); ValueError
    unless that gives exactly one verdict per context."""
    de = deepeval()
    try:
        data = de.load_json(text)
    except ValueError as err:
        raise ValueError(f"no JSON object in the answer ({err})") from None
    entries = data.get("verdicts") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError("expected a JSON object with a list under 'verdicts'")
    verdicts = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise ValueError(f"each verdict must be an object with 'verdict' and 'reason', got {entry!r}")
        try:
            verdict = de.verdict_from_json(entry, de.Verdict, de.allowed)
        except ValueError as err:  # pydantic's ValidationError: no 'reason' string
            raise ValueError(f"each verdict needs a 'reason' string, got {entry!r}") from err
        if verdict is None:  # DeepEval would drop it and score the rest
            raise ValueError(f"a verdict must be 'yes' or 'no', got {entry.get('verdict')!r}")
        verdicts.append(verdict)
    if len(verdicts) != contexts:
        raise ValueError(f"expected {contexts} verdict(s), one per context, got {len(verdicts)}")
    return AbsoluteAnswer(tuple(verdicts))


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


def read_relative(text: str) -> dict[str, Side]:
    """The four answers of an answer's JSON (a ```json fence tolerated); ValueError otherwise."""
    return validate_relative(parse_json_answer(text))


def resolve(answers: Mapping[str, Side], order: Order) -> dict[str, Named]:
    """Each answer as the model whose summary it names."""
    named = {"A": order[0], "B": order[1]}
    return {question: named[side] for question, side in answers.items()}
