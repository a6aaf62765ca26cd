"""Explain and predict through a real LLM client: a scripted OpenAI-compatible server on loopback, the verdict
cache (a re-run asks nothing), strict reading of predictions (retried, then recorded invalid), and a prompt
that gets no answer failing the stage with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from expertlab import records
from expertlab.errors import ExpertlabError
from expertlab.monosemanticity.activations import record_checkpoint
from expertlab.monosemanticity.interpret import explain_artifact, predict_artifact
from expertlab.monosemanticity.sampling import sample_artifact
from expertlab.params import Observe, parse_params
from tests.openai_server import Answer, Fail, OpenAIServer, last_user_message
from tests.pipeline_study import ROOT

SECRET = "sk-test-interpret-5e1f"
KEY_ENV = "EXPERTLAB_TEST_INTERPRET_KEY"
BIO = ["what is the dose of aspirin for fever", "metformin and insulin for diabetes trial", "ibuprofen for pain"]
GENERAL = ["one plus two equals three", "what is four minus one", "seven plus eight equals ten plus five"]


def answer(item: str) -> str:
    """An LLM that explains every expert alike and names the first window of every predictor prompt."""
    if item.startswith("Here is the explanation: this expert specializes in\n\nHere are the examples:"):
        return "This expert specializes in dosage words"
    return "1"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory, tiny_moe_dir: Path) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("interpret")
    corpus = {}
    for domain, texts in (("biomedical", BIO), ("general", GENERAL)):
        corpus[domain] = root / f"{domain}.jsonl"
        corpus[domain].write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    run = {"model": "tiny", "seed": 0, "corpus": {"biomedical": "bio", "general": "general"}}
    record_checkpoint(tiny_moe_dir, corpus, root / "activations", run, window=4, settings=Observe(batch_size=2, max_length=16))
    params = study_params(root, "http://127.0.0.1:9")  # the sampling params only
    sample_artifact(root / "activations", root / "samples", ["biomedical"], params.monosemanticity.sampling, seed=0)
    return root / "activations", root / "samples"


def study_params(root: Path, base_url: str, **judge: object):  # noqa: ANN201
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["judges"]["llm"] = {"backend": "openai", "model": "explainer-model", "base_url": base_url, "api_key_env": KEY_ENV}
    params["judge"].update({"cache_dir": str(root / "cache"), "max_invalid": 3, **judge})
    params["monosemanticity"].update({
        "explainers": ["llm"], "predictor": "llm", "examples_per_prompt": 4,
        "sampling": {"explain_examples": 2, "test_examples": 2, "negatives": 2, "test_sampling": "weighted", "quantiles": 1},
    })  # fmt: skip
    return parse_params(params)


def test_explanations_and_predictions_come_from_the_llm_and_a_rerun_asks_nothing(
    artifacts: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    activations, samples = artifacts
    monkeypatch.setenv(KEY_ENV, SECRET)
    with OpenAIServer(SECRET, answer=answer) as server:
        params = study_params(tmp_path, server.base_url)
        meta = explain_artifact(activations, samples, tmp_path / "expl", params)
        frame = records.EXPLANATIONS.read(tmp_path / "expl" / "explanations.parquet")
        sampled = records.EXPERT_SAMPLES.read(samples / "samples.parquet")
        explained = sampled[sampled["role"] == "explain"][["scope", "layer", "expert"]].drop_duplicates()
        assert len(frame) == len(explained) > 0
        assert (frame["explanation"] == "dosage words").all() and (frame["status"] == "ok").all()
        assert meta.asked.billed == meta.asked.prompts == len(server.received)
        assert meta.explainer_model == "openai:explainer-model"
        asked = len(server.received)
        again = explain_artifact(activations, samples, tmp_path / "expl-again", params)
        assert len(server.received) == asked and again.asked.cache_hits == again.asked.prompts and again.asked.billed == 0
        assert (tmp_path / "expl" / "explanations.parquet").read_bytes() == (
            tmp_path / "expl-again" / "explanations.parquet"
        ).read_bytes()
        predicted = predict_artifact(activations, samples, tmp_path / "expl", tmp_path / "pred", params)
        rows = records.PREDICTIONS.read(tmp_path / "pred" / "predictions.parquet")
        tests = sampled[sampled["role"] == "test"]
        assert len(rows) == len(tests)
        # "1" names the first window of each prompt and no other
        assert rows.groupby(["scope", "layer", "expert", "part"])["predicted"].apply(list).map(
            lambda shown: shown[0] and not any(shown[1:])
        ).all()
        assert predicted.asked.billed == predicted.asked.prompts
    assert SECRET not in (tmp_path / "expl" / "meta.json").read_text() + (tmp_path / "pred" / "meta.json").read_text()


def test_an_unreadable_prediction_is_asked_again_then_recorded_invalid(
    artifacts: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    activations, samples = artifacts
    monkeypatch.setenv(KEY_ENV, SECRET)
    with OpenAIServer(SECRET, answer=answer) as server:
        params = study_params(tmp_path, server.base_url)
        explain_artifact(activations, samples, tmp_path / "expl", params)
        from expertlab.monosemanticity.explain import predict_prompts

        sampled = records.EXPERT_SAMPLES.read(samples / "samples.parquet")
        windows = records.ACTIVATION_WINDOWS.read(activations / "windows.parquet")
        said = {(r.scope, r.layer, r.expert): r.explanation
                for r in records.EXPLANATIONS.read(tmp_path / "expl" / "explanations.parquet").itertuples()}  # fmt: skip
        built = predict_prompts(sampled, windows, said, 4)
        user = {id(p): last_user_message({"messages": p.messages}) for p in built}
        first = built[0]
        second = next(p for p in built if user[id(p)] != user[id(first)])
        never, later = user[id(first)], user[id(second)]
        server.script[never] = [Answer("1, and 2"), Answer("Examples 1 and 2"), Answer("none")]
        server.script[later] = [Answer("1 2"), Answer("None")]
        meta = predict_artifact(activations, samples, tmp_path / "expl", tmp_path / "pred", params)
        rows = records.PREDICTIONS.read(tmp_path / "pred" / "predictions.parquet").set_index(["scope", "layer", "expert", "part"])
        assert rows.loc[(*first.expert, 0), "status"].eq("invalid").all() and rows.loc[(*first.expert, 0), "predicted"].isna().all()
        assert rows.loc[(*second.expert, 0), "status"].eq("ok").all()
        assert not rows.loc[(*second.expert, 0), "predicted"].astype(bool).any()  # "None"
        assert server.completions(never) == 3 and server.completions(later) == 2
        assert meta.asked.invalid == 1


def test_a_prompt_without_answer_fails_the_stage_and_a_rerun_asks_only_for_it(
    artifacts: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    activations, samples = artifacts
    monkeypatch.setenv(KEY_ENV, SECRET)
    with OpenAIServer(SECRET, answer=answer) as server:
        params = study_params(tmp_path, server.base_url, max_attempts=2)
        from expertlab.monosemanticity.explain import explain_prompts

        sampled = records.EXPERT_SAMPLES.read(samples / "samples.parquet")
        built = explain_prompts(
            sampled, records.ACTIVATION_WINDOWS.read(activations / "windows.parquet"),
            records.ACTIVATIONS.read(activations / "activations.parquet"), params.monosemanticity.domain_prompts,
        )  # fmt: skip
        down = last_user_message({"messages": built[0].messages})
        failing = {json.dumps(p.messages) for p in built if last_user_message({"messages": p.messages}) == down}
        server.script[down] = [Fail(500)] * 2 * len(failing)
        with pytest.raises(ExpertlabError, match=rf"{len(failing)} explain prompt\(s\) got no answer, so nothing was written"):
            explain_artifact(activations, samples, tmp_path / "expl", params)
        assert not (tmp_path / "expl").exists()
        before = len(server.received)
        explain_artifact(activations, samples, tmp_path / "expl", params)
        assert len(server.received) == before + len(failing)  # only the prompts that failed
        assert pd.read_parquet(tmp_path / "expl" / "explanations.parquet")["status"].eq("ok").all()


def test_samples_of_another_routing_are_refused_before_anything_is_asked(artifacts: tuple[Path, Path], tmp_path: Path) -> None:
    """Explain and predict read records and samples of one top-k: samples drawn from a re-observation at top-k 4
    beside the model's own records are an error naming them, and nothing is written."""
    import shutil

    activations, samples = artifacts
    other = tmp_path / "samples-k4"
    shutil.copytree(samples, other)
    meta = json.loads((other / "meta.json").read_text())
    (other / "meta.json").write_text(json.dumps({**meta, "top_k": 4}))
    params = study_params(tmp_path, "http://127.0.0.1:9")
    with pytest.raises(ValueError, match=rf"{other}: made from 'tiny' at top-k 4, but .* holds 'tiny' at top-k 2"):
        explain_artifact(activations, other, tmp_path / "expl", params)
    assert not (tmp_path / "expl").exists()
