"""`expertlab judge` as a process against a loopback OpenAI server: rows, costs, SIGKILL resume, warm cache, secrets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from expertlab.records import GenerationsMeta, VariantRecord
from expertlab.judges.protocols import ab_order, absolute_messages
from expertlab.variants import Variant
from tests.openai_server import Answer, Fail, OpenAIServer
from tests.test_judges import DOC, FALSE, TRUE, reading_judge

REPO = Path(__file__).resolve().parents[1]
KEY_ENV = "EXPERTLAB_TEST_JUDGE_KEY"
SECRET = "sk-test-stage-93b1c07e"
SAMPLES = [f"trial_summary-{i:04d}" for i in range(6)]
PRUNED_OUTPUTS = [FALSE, TRUE, FALSE, TRUE, FALSE, TRUE]


def distinct_prompts() -> int:
    """Absolute: FALSE and TRUE against the one document; relative: the distinct (A, B) pairs as shown."""
    shown = set()
    for sample, pruned in zip(SAMPLES, PRUNED_OUTPUTS):
        outputs = {"pruned": pruned, "source": TRUE}
        first, second = ab_order(0, sample)
        shown.add((outputs[first], outputs[second]))
    return 2 + len(shown)


def write_generations(path: Path, variant: dict[str, Any], outputs: list[str]) -> Path:
    path.mkdir(parents=True)
    rows = [
        {"task": "trial_summary", "sample_id": sample, "prompt": "Summarize this trial.\n" + DOC, "output": output,
         "target": TRUE, "choices": None, "doc": {"source": DOC}}
        for sample, output in zip(SAMPLES, outputs)
    ]  # fmt: skip
    rows.append({"task": "bio_qa", "sample_id": "bio_qa-0000", "prompt": "q", "output": "a", "target": "a",
                 "choices": None, "doc": {}})  # fmt: skip
    (path / "generations.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    meta = GenerationsMeta(variant=VariantRecord(**variant), group="toy", tasks=["trial_summary", "bio_qa"])
    (path / "meta.json").write_text(json.dumps(meta.dump()))
    return path


@pytest.fixture
def study(tmp_path: Path) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["judges"] = {
        "grounding": {"backend": "grounding"},
        "llm": {"backend": "openai", "model": "judge-model", "base_url": "SET-BY-TEST", "api_key_env": KEY_ENV,
                "concurrency": 1},
    }  # fmt: skip
    params["judge"].update({"judges": ["grounding", "llm"], "tasks": ["trial_summary"], "cache_dir": str(tmp_path / "cache"),
                            "timeout_s": 5, "max_attempts": 2})  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    write_generations(tmp_path / "gen" / "source", Variant(model="toy").record(None, None), [TRUE] * 6)
    pruned = Variant(model="toy", calibration="biomed", seed=0, criterion="reap", ratio=0.5).record(8, 2)
    write_generations(tmp_path / "gen" / "pruned", pruned, PRUNED_OUTPUTS)
    return tmp_path


def configure(study: Path, base_url: str) -> None:
    params = yaml.safe_load((study / "params.yaml").read_text())
    params["judges"]["llm"]["base_url"] = base_url
    (study / "params.yaml").write_text(yaml.safe_dump(params))


def judge_cmd(study: Path, out: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "expertlab.cli", "judge", str(study / "gen" / "pruned"), "--source",
            str(study / "gen" / "source"), "--out", str(study / out), "--params", str(study / "params.yaml"), *extra]  # fmt: skip


def run_judge(
    study: Path, out: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, KEY_ENV: SECRET, **(env or {})}
    return subprocess.run(judge_cmd(study, out, *extra), cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def rows_of(out: Path) -> list[tuple[Any, ...]]:
    return duckdb.sql(
        f"select judge, protocol, question, sample_id, output, label, status, variant_id "
        f"from read_parquet('{out / 'judgments.parquet'}') order by all"
    ).fetchall()


def test_judge_stage_writes_every_verdict_once_and_a_rerun_is_free(study: Path) -> None:
    with OpenAIServer(SECRET, answer=reading_judge) as server:
        configure(study, server.base_url)
        first = run_judge(study, "out1")
        assert first.returncode == 0, first.stderr
        prompts = distinct_prompts()
        assert 3 < prompts < 6 * 3 and len(server.received) == prompts  # identical prompts are asked once
        second = run_judge(study, "out2")
        assert second.returncode == 0, second.stderr
        assert len(server.received) == prompts  # zero calls
    assert "0 calls billed" in second.stdout and f"{prompts} prompts: {prompts} from the cache" in second.stdout
    rows = rows_of(study / "out1")
    assert rows == rows_of(study / "out2")
    assert len(rows) == 2 * (6 * 2 + 6 * 4)  # two judges x (absolute on pruned and source + four relative answers)
    pruned = Variant(model="toy", calibration="biomed", seed=0, criterion="reap", ratio=0.5)
    assert {r[7] for r in rows} == {pruned.id}  # the judged variant by id: its fields are in meta.json's variants
    llm_absolute = {(r[3], r[4]): r[5] for r in rows if r[0] == "llm" and r[1] == "absolute"}
    assert [llm_absolute[(s, "pruned")] for s in SAMPLES] == ["hallucinated", "faithful"] * 3
    assert {llm_absolute[(s, "source")] for s in SAMPLES} == {"faithful"}
    meta = json.loads((study / "out1" / "meta.json").read_text())
    assert meta["name"] == "toy:biomed:0:reap:0.5/toy" and meta["costs"]["llm"]["billed"] == prompts
    assert meta["variants"] == [pruned.record(8, 2)] and meta["judges"] == ["grounding", "llm"]
    assert meta["costs"]["grounding"]["computed"] == 6 * 3
    for out in ("out1", "out2"):
        for path in (study / out).iterdir():
            assert SECRET not in path.read_text(errors="replace")
    assert SECRET not in first.stdout + first.stderr


def test_pulled_verdicts_warm_an_empty_cache(study: Path) -> None:
    with OpenAIServer(SECRET, answer=reading_judge) as server:
        configure(study, server.base_url)
        assert run_judge(study, "judgments/a").returncode == 0
        asked = len(server.received)
        params = yaml.safe_load((study / "params.yaml").read_text())
        params["judge"]["cache_dir"] = str(study / "fresh-cache")  # a fresh clone after `dvc pull`
        (study / "params.yaml").write_text(yaml.safe_dump(params))
        warm = subprocess.run(
            [sys.executable, "-m", "expertlab.cli", "warm-verdicts", str(study / "judgments"), "--params",
             str(study / "params.yaml")], cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert warm.returncode == 0, warm.stderr
        assert f"warm-verdicts: {asked} verdicts taken into the cache from artifacts below {study / 'judgments'}" in warm.stdout
        assert run_judge(study, "judgments/b").returncode == 0
        assert len(server.received) == asked  # every verdict came from the warmed cache
    assert rows_of(study / "judgments" / "a") == rows_of(study / "judgments" / "b")


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The CLI's one-line error, after asserting it is the last thing printed and no traceback came with it."""
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("expertlab judge: error: ")
    return last


def test_without_verdicts_the_stage_fails_naming_each_prompt_and_writes_nothing(study: Path) -> None:
    with OpenAIServer(SECRET, answer=reading_judge, default=Fail(500)) as server:
        configure(study, server.base_url)
        result = run_judge(study, "out")
    error = error_line(result)
    assert f"{distinct_prompts()} prompt(s) got no verdict" in error and "HTTP 500" in error
    # Named by judge, task, sample, protocol and question; the source output, shared by every sample, once.
    assert "judge llm, task trial_summary, sample trial_summary-0000, absolute protocol, question hallucinated of " \
        "the pruned output (the same prompt as samples trial_summary-0002, trial_summary-0004): HTTP 500" in error
    assert "sample trial_summary-0000, absolute protocol, question hallucinated of the source output (the same " \
        "prompt as samples trial_summary-0001, trial_summary-0002, trial_summary-0003, trial_summary-0004, " \
        "trial_summary-0005)" in error
    assert "sample trial_summary-0002, relative protocol, questions q1_hallucinations_more, q2_omission_more, " \
        "q3_repetition_more, q4_alignment_more: HTTP 500" in error
    assert not (study / "out").exists()


def test_a_missing_key_is_named_and_nothing_is_written(study: Path) -> None:
    with OpenAIServer(SECRET, answer=reading_judge) as server:
        configure(study, server.base_url)
        result = run_judge(study, "out", env={KEY_ENV: ""})
    error = error_line(result)
    assert f"judge llm: the API key is read from the environment variable {KEY_ENV}, which is not set" in error
    assert not (study / "out").exists() and server.received == []


def test_an_unreadable_answer_is_asked_again_and_reported_apart_from_billed_calls(study: Path) -> None:
    source_prompt = absolute_messages(DOC, TRUE)[-1]["content"]
    gateway_page = Fail(200, body="<html><body>502 Bad Gateway</body></html>")
    with OpenAIServer(SECRET, {source_prompt: [gateway_page]}, answer=reading_judge) as server:
        configure(study, server.base_url)
        result = run_judge(study, "out")
        assert result.returncode == 0, result.stderr
        assert len(server.received) == distinct_prompts() + 1
    costs = json.loads((study / "out" / "meta.json").read_text())["costs"]["llm"]
    assert (costs["billed"], costs["unreadable"], costs["requests"]) == (distinct_prompts(), 1, distinct_prompts() + 1)
    assert f"{distinct_prompts()} calls billed ({distinct_prompts() + 1} requests, 1 unreadable answers" in result.stdout


def test_a_killed_stage_resumes_without_paying_for_landed_verdicts(study: Path) -> None:
    cache = study / "cache" / "llm.jsonl"
    with OpenAIServer(SECRET, answer=reading_judge, default=Answer(delay_s=0.25)) as server:
        configure(study, server.base_url)
        process = subprocess.Popen(judge_cmd(study, "out"), cwd=REPO, env={**os.environ, KEY_ENV: SECRET},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 60
        while not (cache.exists() and len(cache.read_text().splitlines()) >= 3):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        landed = {json.loads(line)["key"] for line in cache.read_text().splitlines() if line.endswith("}")}
        before = len(server.received)
        assert not (study / "out").exists()
        resumed = run_judge(study, "out")
        assert resumed.returncode == 0, resumed.stderr
        second_run = server.received[before:]
    total = distinct_prompts()
    # the second run asks exactly for the prompts whose verdict had not landed
    assert len(second_run) == total - len(landed)
    assert len({r.item for r in second_run}) == len(second_run)
    assert len(rows_of(study / "out")) == 2 * (6 * 2 + 6 * 4)
