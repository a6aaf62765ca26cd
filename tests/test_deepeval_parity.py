"""The absolute protocol is DeepEval's HallucinationMetric: against one loopback chat server, expertlab's LLM judge
(chat client, verdict cache) and DeepEval's own measure() send the same prompts and reach the same scores and labels."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from expertlab.judges import protocols as proto
from expertlab.judges.backend import Item
from expertlab.judges.client import RetryPolicy
from expertlab.judges.registry import build_judge
from expertlab.params import JudgeSpec
from tests.openai_server import OpenAIServer
from tests.test_judges import DOC, FALSE, KEY_ENV, SECRET, TRUE, settings

proto.deepeval()  # deepeval's environment set, and imported away from the working directory, before the imports below
from deepeval.metrics import HallucinationMetric  # noqa: E402
from deepeval.models import DeepEvalBaseLLM  # noqa: E402
from deepeval.test_case import LLMTestCase  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WRAPPED = "Zelotide was given to 200 adults with asthma."  # the judge wraps its JSON in prose: both read it
JUNK = "Zelotide, a trial drug, was tested."  # the judge answers with no JSON at all
EMPTY = "The trial enrolled adults."  # the judge answers JSON without a single verdict
THRESHOLD = 0.5  # DeepEval's default, and params `judge.threshold`'s


def judge_answer(prompt: str) -> str:
    """The judge on the server: reads DeepEval's verdict prompt ("999" contradicts the document) and its reason
    prompt."""
    if prompt.startswith("Given a list of factual alignments and contradictions"):  # DeepEval's generate_reason
        return json.dumps({"reason": "The score is as given because of the verdicts."})
    output = prompt.split("Actual Output:\n", 1)[1].rsplit("\n\nJSON:", 1)[0]
    verdict = {"verdicts": [{"verdict": "no" if "999" in output else "yes", "reason": f"checked: {output}"}]}
    if output == WRAPPED:
        return "Sure! Here is my verdict:\n" + json.dumps(verdict) + "\nHope this helps."
    if output == JUNK:
        return "I would rather not judge this summary."
    if output == EMPTY:
        return '{"verdicts": []}'
    return json.dumps(verdict)


class LoopbackModel(DeepEvalBaseLLM):
    """A custom DeepEval model: the prompt as one user message to the loopback OpenAI-compatible server."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        super().__init__("judge-model")

    def load_model(self) -> LoopbackModel:
        return self

    def generate(self, prompt: str, schema: Any = None) -> str:
        body = {"model": "judge-model", "messages": [{"role": "user", "content": prompt}], "temperature": 0}
        request = urllib.request.Request(
            self.base_url + "/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {SECRET}"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())["choices"][0]["message"]["content"]

    async def a_generate(self, prompt: str, schema: Any = None) -> str:
        return self.generate(prompt, schema)

    def get_model_name(self) -> str:
        return "loopback judge-model"


def test_expertlabs_absolute_judgment_is_deepevals(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    items = [
        Item("trial_summary", "s-0", DOC, FALSE, TRUE),  # hallucinated (999 mg), faithful
        Item("trial_summary", "s-1", DOC, WRAPPED, TRUE),  # faithful in prose; the source output asked once
        Item("trial_summary", "s-2", DOC, JUNK, EMPTY),
    ]
    spec = JudgeSpec(backend="openai", model="judge-model", api_key_env=KEY_ENV)
    with OpenAIServer(SECRET, answer=judge_answer) as server:
        spec.base_url = server.base_url
        retry = RetryPolicy(max_attempts=2, max_invalid=2, timeout_s=10, backoff_s=0.01)
        judge = build_judge("parity", spec.model_dump(), settings(retry=retry, cache_dir=tmp_path / "verdicts"))
        rows, tally = judge.judge(items, ["absolute"])
        ours = list(server.received)

        deepeval_requests: dict[str, list[dict[str, Any]]] = {}
        measured: dict[str, tuple[float, bool] | str] = {}
        for output in (FALSE, TRUE, WRAPPED, JUNK, EMPTY):
            before = len(server.received)
            metric = HallucinationMetric(threshold=THRESHOLD, model=LoopbackModel(server.base_url))
            case = LLMTestCase(input="Summarize the trial.", actual_output=output, context=[DOC])
            try:
                metric.measure(case)
                measured[output] = (metric.score, metric.success)
            except ValueError as err:
                measured[output] = str(err)
            deepeval_requests[output] = [request.body["messages"] for request in server.received[before:]]

    # the same requests: each distinct output asked once (the junk and the empty answer twice, max_invalid),
    # in the message DeepEval's measure() sends first; measure() then asks its reason, which expertlab does not
    asked = {}
    for request in ours:
        output = request.item.split("Actual Output:\n", 1)[1].rsplit("\n\nJSON:", 1)[0]
        asked.setdefault(output, []).append(request.body["messages"])
    assert {output: len(requests) for output, requests in asked.items()} == {
        FALSE: 1, TRUE: 1, WRAPPED: 1, JUNK: 2, EMPTY: 2
    }  # fmt: skip
    for output, requests in asked.items():
        assert {json.dumps(messages) for messages in requests} == {json.dumps(deepeval_requests[output][0])}
        assert requests[0] == [{"role": "user", "content": requests[0][0]["content"]}]
    for output in (FALSE, TRUE, WRAPPED):
        verdict_prompt, reason_prompt = deepeval_requests[output]
        assert reason_prompt[0]["content"].startswith("Given a list of factual alignments and contradictions")
    assert len(deepeval_requests[JUNK]) == 1  # DeepEval gives up at once: no JSON, no score
    assert tally.billed == 7 and tally.invalid == 2

    # the same scores and labels, computed by hand: one context, so the score is 1.0 or 0.0
    by = {(row["sample_id"], row["output"]): row for row in rows}
    expected = {("s-0", "pruned"): (FALSE, 0.0, "hallucinated"), ("s-0", "source"): (TRUE, 1.0, "faithful"),
                ("s-1", "pruned"): (WRAPPED, 1.0, "faithful"), ("s-1", "source"): (TRUE, 1.0, "faithful")}  # fmt: skip
    for key, (output, score, label) in expected.items():
        row = by[key]
        raw = json.loads(row["raw"])
        assert (row["status"], row["label"], raw["score"], raw["threshold"]) == ("ok", label, score, THRESHOLD)
        assert measured[output] == (score, label == "faithful")
        assert raw["success"] is measured[output][1]
        assert raw["verdicts"] == [{"verdict": "no" if score == 0 else "yes", "reason": f"checked: {output}"}]

    # a junk answer: DeepEval's measure() raises, expertlab records it invalid with its text, never labelled
    junk = by[("s-2", "pruned")]
    assert (junk["status"], junk["label"]) == ("invalid", None)
    assert json.loads(junk["raw"])["answer"] == "I would rather not judge this summary."
    assert "invalid JSON" in measured[JUNK] and "no JSON object in the answer" in json.loads(junk["raw"])["error"]
    # JSON with no verdict: DeepEval scores the empty list as a pass; expertlab refuses to coerce it to a label
    empty = by[("s-2", "source")]
    assert measured[EMPTY] == (1.0, True)
    assert (empty["status"], empty["label"]) == ("invalid", None)
    assert "expected 1 verdict(s), one per context, got 0" in json.loads(empty["raw"])["error"]

    # DeepEval, imported and run here, wrote nothing into the working directory, nor into the repository
    assert list(cwd.iterdir()) == [] and not (REPO / ".deepeval").exists()


def test_cached_verdicts_are_read_again_by_deepeval_without_a_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    items = [Item("trial_summary", "s-0", DOC, FALSE, TRUE)]
    spec = JudgeSpec(backend="openai", model="judge-model", api_key_env=KEY_ENV)
    with OpenAIServer(SECRET, answer=judge_answer) as server:
        spec.base_url = server.base_url
        make = lambda: build_judge("parity", spec.model_dump(), settings(cache_dir=tmp_path / "verdicts"))  # noqa: E731
        first, _ = make().judge(items, ["absolute"])
        again, tally = make().judge(items, ["absolute"])
        assert len(server.received) == 2
    assert again == first and tally.cache_hits == 2 and tally.requests == 0
    assert [row["label"] for row in again] == ["hallucinated", "faithful"]
