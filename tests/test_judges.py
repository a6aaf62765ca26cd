"""Judge protocols and backends: prompts, validation, A/B positions, verdict rows, and what they cost."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from expertlab.judges import protocols as proto
from expertlab.judges.backend import Item, Settings, items_from_generations
from expertlab.judges.client import RetryPolicy
from expertlab.judges.registry import BACKENDS, build_judge
from expertlab.params import Judge, JudgeSpec
from tests.openai_server import Fail, OpenAIServer
from tests.test_judge_client import default_retry

REPO = Path(__file__).resolve().parents[1]
KEY_ENV = "EXPERTLAB_TEST_JUDGE_KEY"
SECRET = "sk-test-judges-5d1e"
DOC = "In a 12 week trial, 200 adults with asthma received Zelotide 10 mg twice daily or placebo."
TRUE = "Zelotide 10 mg twice daily was given to 200 adults with asthma for 12 weeks."
FALSE = "Zelotide 999 mg was given to 200 adults with asthma for 12 weeks."


def reading_judge(prompt: str) -> str:
    """An LLM stand-in that reads the prompt: an output stating "999" is unsupported."""
    if "Actual Output:" in prompt:
        output = prompt.split("Actual Output:\n", 1)[1].rsplit("\n\nJSON:", 1)[0]
        verdict = "no" if "999" in output else "yes"
        return json.dumps({"verdicts": [{"verdict": verdict, "reason": "read"}]})
    a = re.search(r"<<<A\n(.*?)\nA>>>", prompt, re.DOTALL).group(1)
    b = re.search(r"<<<B\n(.*?)\nB>>>", prompt, re.DOTALL).group(1)
    more = "A" if "999" in a else "B" if "999" in b else "a"  # lower case: still a valid answer
    return json.dumps(
        {"q1_hallucinations_more": more, "q2_omission_more": "B", "q3_repetition_more": "A", "q4_alignment_more": "B"}
    )


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv(KEY_ENV, SECRET)
    with OpenAIServer(SECRET, answer=reading_judge) as running:
        yield running


def settings(**overrides: Any) -> Settings:
    """Run settings as params `judge` gives them by default, without a verdict cache, with `overrides`."""
    config = Judge()
    defaults = {
        "seed": config.seed, "threshold": config.threshold, "retry": default_retry(), "cache_dir": None,
        "retry_invalid": config.retry_invalid,
    }  # fmt: skip
    return Settings(**(defaults | overrides))


def llm(server: OpenAIServer, tmp_path: Path, name: str = "judge-a", **overrides: Any) -> Any:
    spec = JudgeSpec(backend="openai", model="judge-model", base_url=server.base_url, api_key_env=KEY_ENV)
    retry = RetryPolicy(max_attempts=3, max_invalid=2, timeout_s=2, backoff_s=0.01)
    return build_judge(name, spec.model_dump(), settings(retry=retry, cache_dir=tmp_path / "verdicts", **overrides))


def test_backends_registry_matches_the_params_vocabulary() -> None:
    assert BACKENDS.names() == ["grounding", "openai", "anthropic", "gemini"]
    for name in BACKENDS:
        assert JudgeSpec(backend=name, **({} if name == "grounding" else {"model": "m"})).backend == name
    with pytest.raises(ValidationError, match=r"unknown judge backend 'openia' \(did you mean 'openai'\?\)"):
        JudgeSpec(backend="openia", model="m")


def test_ab_order_is_the_studys_md5_bit() -> None:
    # first md5 bytes, from `printf '0::trial_summary-0000' | md5sum` etc.: 05, af, 9e; "1::..." 01; "0::2466" f2
    assert proto.ab_order(0, "trial_summary-0000") == ("pruned", "source")  # 0x05 odd
    assert proto.ab_order(0, "trial_summary-0001") == ("pruned", "source")  # 0xaf odd
    assert proto.ab_order(0, "trial_summary-0002") == ("source", "pruned")  # 0x9e even
    assert proto.ab_order(1, "trial_summary-0000") == ("pruned", "source")  # 0x01 odd
    assert proto.ab_order(0, "2466") == ("source", "pruned")  # 0xf2 even
    firsts = [proto.ab_order(0, str(i))[0] for i in range(400)]
    assert 150 < firsts.count("pruned") < 250  # balanced positions


def verdicts(*pairs: tuple[str, str]) -> str:
    return json.dumps({"verdicts": [{"verdict": verdict, "reason": reason} for verdict, reason in pairs]})


def test_absolute_label_comes_from_the_verdicts_not_a_score_direction() -> None:
    # DeepEval >= 4.2: the score is the share of contexts the output agrees with, faithful when >= threshold
    no = proto.read_absolute(verdicts(("no", "x")))
    yes = proto.read_absolute(verdicts((" Yes ", "y")))
    threshold = Judge().threshold  # DeepEval's default
    assert (no.judged(threshold), no.label(threshold)) == ((0.0, False), "hallucinated")
    assert (yes.judged(threshold), yes.label(threshold)) == ((1.0, True), "faithful")
    half = proto.read_absolute(verdicts(("no", "a"), ("yes", "b")), contexts=2)
    assert half.judged(0.5) == (0.5, True) and half.label(0.5) == "faithful"  # success: score >= threshold
    assert half.judged(0.6) == (0.5, False) and half.label(0.6) == "hallucinated"
    assert no.to_json(threshold) == {
        "verdicts": [{"verdict": "no", "reason": "x"}], "score": 0.0, "threshold": 0.5, "success": False
    }  # fmt: skip


def test_absolute_answers_are_read_as_deepeval_reads_them() -> None:
    # DeepEval's JSON extraction: the outermost {...}, prose around it and a trailing comma forgiven;
    # its vocabulary: the leading word of the verdict, case and space aside
    wrapped = proto.read_absolute('Here you go: {"verdicts": [{"verdict": "No, wrong dose", "reason": "999"},]} Done.')
    assert [(v.verdict.value, v.reason) for v in wrapped.verdicts] == [("no", "999")]
    for bad, error in (
        ("not JSON at all", "no JSON object in the answer"),
        ("{}", "a list under 'verdicts'"),
        ('{"verdicts": "sure"}', "a list under 'verdicts'"),
        ('{"verdicts": []}', r"expected 1 verdict\(s\), one per context, got 0"),  # DeepEval would score 1.0
        (verdicts(("maybe", "x")), "must be 'yes' or 'no', got 'maybe'"),  # DeepEval would drop it
        (verdicts(("no", "x"), ("no", "y")), "got 2"),
        ('{"verdicts": [{"verdict": "no"}]}', "needs a 'reason' string"),
        ('{"verdicts": ["no"]}', "must be an object"),
    ):
        with pytest.raises(ValueError, match=error):
            proto.read_absolute(bad)


def test_the_absolute_prompt_is_deepevals_template() -> None:
    from deepeval.metrics.hallucination import HallucinationTemplate

    [message] = proto.absolute_messages("DOC TEXT", "SUMMARY")
    rendered = HallucinationTemplate.generate_verdicts(actual_output="SUMMARY", contexts=["DOC TEXT"], contexts_count=1)
    assert message == {"role": "user", "content": rendered}
    # the rules the old paraphrase dropped, and the document as DeepEval lists contexts
    assert "You should FORGIVE cases where the actual output is lacking in detail, you should ONLY provide a 'no' " \
           "answer if IT IS A CONTRADICTION." in rendered  # fmt: skip
    assert "STRICTLY EQUAL TO 1." in rendered
    assert rendered.endswith("Contexts:\n['DOC TEXT']\n\nActual Output:\nSUMMARY\n\nJSON:")


def test_the_absolute_template_id_follows_deepevals_template_text(monkeypatch: pytest.MonkeyPatch) -> None:
    from deepeval.templates.resolver import _registry

    before = proto.template_id("absolute")
    bundle = _registry.get_base_templates("metrics")["HallucinationMetric"]
    proto.template_id.cache_clear()
    _registry._compiled.clear()
    try:
        monkeypatch.setitem(bundle, "generate_verdicts", bundle["generate_verdicts"] + " Answer briefly.")
        changed = proto.template_id("absolute")
        assert proto.absolute_messages("D", "O")[0]["content"].endswith("JSON:\n Answer briefly.")
    finally:
        monkeypatch.undo()
        proto.template_id.cache_clear()
        _registry._compiled.clear()
    assert changed != before and proto.template_id("absolute") == before
    assert re.fullmatch(r"absolute-[0-9a-f]{16}", before)


def test_deepeval_is_imported_only_by_the_absolute_protocol_of_an_llm_judge(tmp_path: Path) -> None:
    # a process where deepeval cannot be imported: the grounding judge and the relative protocol work, the
    # absolute protocol says how to install it
    code = f"""
import sys
sys.modules["deepeval"] = None
from expertlab.judges import protocols
from expertlab.judges.backend import Item
from expertlab.judges.registry import build_judge
from tests.test_judges import settings
judge = build_judge("grounding", {{"backend": "grounding"}}, settings(seed=0))
rows, _ = judge.judge([Item("t", "t-1", {DOC!r}, {FALSE!r}, {TRUE!r})], ["absolute", "relative"])
print(len(rows), protocols.template_id("relative").startswith("relative-"), "deepeval" in sys.modules and sys.modules["deepeval"] is not None)
try:
    protocols.absolute_messages("d", "o")
except Exception as err:
    print(f"{{type(err).__name__}}: {{err}}")
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    counted, error = result.stdout.splitlines()
    assert counted == "6 True False"
    assert error.startswith("ExpertlabError: the absolute protocol is DeepEval's HallucinationMetric, and deepeval "
                            "cannot be imported") and error.endswith("run `make setup`, which installs "
                                                                     "requirements-deepeval.lock")  # fmt: skip


def test_relative_answers_must_be_a_or_b_for_all_four_questions() -> None:
    assert proto.read_relative('```json\n{"q1_hallucinations_more": "A", "q2_omission_more": "B", '
                               '"q3_repetition_more": "A", "q4_alignment_more": "b"}\n```')["q4_alignment_more"] == "B"
    with pytest.raises(ValueError):
        proto.read_relative('The answer: {"q1_hallucinations_more": "A"}')
    answers = proto.validate_relative(
        {"q1_hallucinations_more": "a", "q2_omission_more": "B ", "q3_repetition_more": "A", "q4_alignment_more": "B"}
    )
    assert answers == {
        "q1_hallucinations_more": "A",
        "q2_omission_more": "B",
        "q3_repetition_more": "A",
        "q4_alignment_more": "B",
    }
    assert proto.resolve(answers, ("source", "pruned"))["q1_hallucinations_more"] == "source"
    assert proto.resolve(answers, ("pruned", "source"))["q1_hallucinations_more"] == "pruned"
    complete = dict(answers)
    for bad in (
        {**complete, "q3_repetition_more": "tie"},
        {k: v for k, v in complete.items() if k != "q4_alignment_more"},
        "A",
    ):
        with pytest.raises(ValueError):
            proto.validate_relative(bad)


def test_the_relative_prompt_is_the_papers() -> None:
    system, user = proto.relative_messages("DOC TEXT", "SUM A", "SUM B")
    assert system == {"role": "system", "content": "You are a careful, unbiased judge."}
    assert "Q2. Omission: Which summary is missing MORE crucial information from the document?" in user["content"]
    assert "<<<DOC\nDOC TEXT\nDOC>>>" in user["content"] and user["content"].index("SUM A") < user["content"].index(
        "SUM B"
    )
    assert proto.template_id("absolute") != proto.template_id("relative")


def test_grounding_judge_rows(tmp_path: Path) -> None:
    judge = build_judge("grounding", {"backend": "grounding"}, settings(seed=0))
    item = Item("trial_summary", "trial_summary-0002", DOC, FALSE, TRUE)  # source summary is A (0x9e even)
    rows, tally = judge.judge([item], ["absolute", "relative"])
    labels = {(r["protocol"], r["question"], r["output"]): r["label"] for r in rows}
    assert labels[("absolute", "hallucinated", "pruned")] == "hallucinated"
    assert labels[("absolute", "hallucinated", "source")] == "faithful"
    assert labels[("relative", "q1_hallucinations_more", "pair")] == "pruned"
    assert json.loads(rows[2]["raw"])["order"] == {"A": "source", "B": "pruned"}
    assert json.loads(rows[2]["raw"])["answers"]["q1_hallucinations_more"] == "B"
    assert len(rows) == 2 + 4 and tally.computed == 3 and tally.requests == 0
    assert {r["status"] for r in rows} == {"ok"} and {r["judge_kind"] for r in rows} == {"llm"}


def test_llm_judge_resolves_positions_and_pays_once_per_distinct_prompt(server: OpenAIServer, tmp_path: Path) -> None:
    items = [
        Item("trial_summary", "trial_summary-0000", DOC, FALSE, TRUE),  # pruned is A
        Item("trial_summary", "trial_summary-0002", DOC, FALSE, TRUE),  # source is A
        Item("trial_summary", "trial_summary-0001", DOC, TRUE, TRUE),  # identical outputs: one absolute prompt
    ]
    rows, tally = llm(server, tmp_path).judge(items, ["absolute", "relative"])
    # absolute prompts: FALSE and TRUE against DOC (2 distinct texts); relative: 3 distinct (order, pair)s
    assert tally.questions == 5 and tally.billed == 5 and tally.cache_hits == 0
    assert len(server.received) == 5
    by = {(r["sample_id"], r["protocol"], r["question"], r["output"]): r for r in rows}
    assert by[("trial_summary-0000", "absolute", "hallucinated", "pruned")]["label"] == "hallucinated"
    assert by[("trial_summary-0000", "absolute", "hallucinated", "source")]["label"] == "faithful"
    for sample in ("trial_summary-0000", "trial_summary-0002"):  # the 999 summary is named wherever it is shown
        assert by[(sample, "relative", "q1_hallucinations_more", "pair")]["label"] == "pruned"
    # q2 always answers "B": the pruned summary exactly where it is B
    assert by[("trial_summary-0000", "relative", "q2_omission_more", "pair")]["label"] == "source"
    assert by[("trial_summary-0002", "relative", "q2_omission_more", "pair")]["label"] == "pruned"
    assert len(rows) == 3 * 2 + 3 * 4

    # another variant with the same source outputs: the source summaries cost nothing
    again = [Item("trial_summary", "trial_summary-0000", DOC, TRUE, TRUE)]
    _, tally2 = llm(server, tmp_path).judge(again, ["absolute"])
    assert tally2.cache_hits == 1 and tally2.billed == 0 and len(server.received) == 5
    # the same run again: zero calls, same rows; no key needed when every verdict is cached
    rows3, tally3 = llm(server, tmp_path).judge(items, ["absolute", "relative"])
    assert tally3.requests == 0 and tally3.cache_hits == 5 and rows3 == rows


def test_a_judge_with_another_name_or_template_is_asked_again(server: OpenAIServer, tmp_path: Path) -> None:
    item = Item("t", "t-1", DOC, TRUE, TRUE)
    llm(server, tmp_path, "judge-a").judge([item], ["absolute"])
    llm(server, tmp_path, "judge-b").judge([item], ["absolute"])
    assert len(server.received) == 2


def test_invalid_answers_are_rows_with_no_label(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    with OpenAIServer(SECRET, answer=lambda prompt: '{"verdicts": "sure"}') as server:
        rows, tally = llm(server, tmp_path).judge([Item("t", "t-1", DOC, FALSE, FALSE)], ["absolute"])
    assert tally.invalid == 1 and tally.billed == 2  # max_invalid answers, then recorded
    assert [(r["status"], r["label"]) for r in rows] == [("invalid", None), ("invalid", None)]
    assert json.loads(rows[0]["raw"])["answer"] == '{"verdicts": "sure"}'


def test_a_prompt_without_verdict_is_reported_failed_not_labelled(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    with OpenAIServer(SECRET, answer=reading_judge, default=Fail(503)) as server:
        rows, tally = llm(server, tmp_path).judge([Item("t", "t-1", DOC, FALSE, TRUE)], ["absolute"])
    assert len(tally.failed) == 2 and rows == [] and len(server.received) == 2 * 3


def test_items_pair_each_pruned_output_with_the_source_models() -> None:
    def row(sample: str, output: str, doc: dict | None = None) -> dict[str, Any]:
        return {"task": "trial_summary", "sample_id": sample, "output": output, "doc": doc or {"source": DOC}}

    items = items_from_generations(
        [row("s1", "p1"), row("s2", "p2")], [row("s2", "o2"), row("s1", "o1")], ["trial_summary"]
    )
    assert [(i.sample_id, i.pruned, i.source) for i in items] == [("s1", "p1", "o1"), ("s2", "p2", "o2")]
    assert items_from_generations([row("s1", "p1")], [row("s1", "o1")], ["other"]) == []
    with pytest.raises(ValueError, match="no doc.source"):
        items_from_generations([row("s1", "p1", {"x": 1})], [row("s1", "o1")], ["trial_summary"])
    with pytest.raises(ValueError, match="missing from the source model"):
        items_from_generations([row("s1", "p1")], [row("s9", "o1")], ["trial_summary"])


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_every_llm_backend_judges_through_its_own_protocol(server: OpenAIServer, tmp_path: Path, provider: str) -> None:
    spec = {
        "backend": provider,
        "model": "judge-model",
        "base_url": server.base_url_for(provider),
        "api_key_env": KEY_ENV,
    }
    retry = default_retry(timeout_s=2, backoff_s=0.01)
    judge = build_judge("j", JudgeSpec(**spec).model_dump(), settings(retry=retry, cache_dir=tmp_path))
    rows, tally = judge.judge([Item("t", "trial_summary-0002", DOC, FALSE, TRUE)], ["absolute", "relative"])
    assert {r.provider for r in server.received} == {provider} and tally.billed == 3
    labels = {(r["protocol"], r["question"], r["output"]): r["label"] for r in rows}
    assert labels[("absolute", "hallucinated", "pruned")] == "hallucinated"
    assert labels[("absolute", "hallucinated", "source")] == "faithful"
    assert labels[("relative", "q1_hallucinations_more", "pair")] == "pruned"
    system = {"openai": lambda b: b["messages"][0], "anthropic": lambda b: b["system"],
              "gemini": lambda b: b["systemInstruction"]}[provider]  # fmt: skip
    relative_body = next(r.body for r in server.received if "Summary A" in json.dumps(r.body))
    assert "careful, unbiased judge" in json.dumps(system(relative_body))


def test_progress_ticks_add_up_to_the_announced_count(server: OpenAIServer, tmp_path: Path) -> None:
    items = [Item("t", f"t-{i}", DOC, FALSE if i % 2 else TRUE, TRUE) for i in range(5)]
    for judge in (llm(server, tmp_path), build_judge("grounding", {"backend": "grounding"}, settings())):
        for protocols in (["absolute"], ["absolute", "relative"]):
            ticks: list[int] = []
            judge.judge(items, protocols, ticks.append)
            assert sum(ticks) == judge.count(items, protocols) > 0
