"""Batched greedy generation on a tiny Qwen3-MoE, and the generate -> score stages end to end."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import ModuleType

import pyarrow.parquet as pq
import pytest

import stages.generate
import stages.score
from expertlab.generate import PromptTooLong, open_backend, output_budgets
from expertlab.generate.hf import encode_prompts, generate, load_model, render_prompt
from expertlab.variants import Variant

PROMPTS = [
    "what is the dose of aspirin",
    "pain",
    "one plus two equals",
    "the trial with patients and diabetes outcome improved in ten",
    "yes",
    "A B C",
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: thread start-up and contention on a busy machine cost 100x the arithmetic."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def loaded(tiny_moe_dir):
    return load_model(tiny_moe_dir)


def run_stage(module: ModuleType, argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv))


def test_load_model_pads_left_in_float32_eval_mode(loaded):
    model, tokenizer = loaded
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token is not None
    assert not model.training
    assert next(model.parameters()).dtype.is_floating_point and next(model.parameters()).element_size() == 4


def test_prompt_goes_through_the_chat_template(loaded):
    _, tokenizer = loaded
    assert render_prompt(tokenizer, "pain") == "<|im_start|>user pain<|im_end|><|im_start|>assistant "


def test_batched_generation_equals_one_by_one_in_prompt_order(loaded):
    model, tokenizer = loaded
    one_by_one = [generate(model, tokenizer, [prompt], 8, batch_size=1, progress=False)[0] for prompt in PROMPTS]
    batched = generate(model, tokenizer, PROMPTS, 8, batch_size=4, progress=False)
    assert batched == one_by_one
    assert len(set(one_by_one)) > 1  # the outputs differ, so a wrong order would show
    assert generate(model, tokenizer, PROMPTS, 8, batch_size=4, progress=False) == batched  # deterministic


def test_generation_stops_at_eos(loaded):
    model, tokenizer = loaded
    free = generate(model, tokenizer, PROMPTS, 8, batch_size=3, progress=False)
    words = free[0].split()
    stop = next(word for word in words[1:] if word not in words[: words.index(word)])
    position = words.index(stop)
    eos = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids(stop)
    try:
        stopped = generate(model, tokenizer, PROMPTS, 8, batch_size=3, progress=False)
    finally:
        model.generation_config.eos_token_id = eos
    assert stopped[0] == " ".join(words[:position])
    assert all(stop not in output.split() for output in stopped)


def test_output_budgets_as_vllm_grants_them() -> None:
    """vLLM stops a request when prompt + output reach max_model_len, and refuses a prompt that leaves no room."""
    assert output_budgets([10, 4090, 4095], 1024, 4096) == [1024, 6, 1]
    with pytest.raises(PromptTooLong, match="prompt 1: 4096 tokens .* max_model_len 4096") as refused:
        output_budgets([10, 4096, 5000], 1024, 4096)
    assert (refused.value.index, refused.value.length, refused.value.max_model_len) == (1, 4096, 4096)


def test_hf_cuts_each_budget_to_the_room_its_prompt_leaves(loaded):
    model, tokenizer = loaded
    assert [len(ids) for ids in encode_prompts(tokenizer, PROMPTS)[1]] == [11, 6, 9, 15, 6, 8]  # template included
    in_context = generate(model, tokenizer, PROMPTS, 8, batch_size=3, progress=False, max_model_len=18)
    budgets = [7, 8, 8, 3, 8, 8]  # min(8, 18 - prompt length)
    alone = [generate(model, tokenizer, [prompt], n, batch_size=1, progress=False)[0] for prompt, n in zip(PROMPTS, budgets)]
    assert in_context == alone
    free = generate(model, tokenizer, PROMPTS, 8, batch_size=3, progress=False)
    assert len(free[3].split()) == 8 and len(in_context[3].split()) == 3  # one word per token: the cut shows
    assert in_context[1] == free[1]


def test_hf_refuses_a_prompt_that_leaves_no_room_for_output(loaded):
    model, tokenizer = loaded
    with pytest.raises(PromptTooLong, match="prompt 3: 15 tokens .* max_model_len 15"):
        generate(model, tokenizer, PROMPTS, 8, batch_size=3, progress=False, max_model_len=15)
    one_token = generate(model, tokenizer, PROMPTS, 8, batch_size=3, progress=False, max_model_len=16)
    assert one_token[3] == generate(model, tokenizer, [PROMPTS[3]], 1, batch_size=1, progress=False)[0]
    assert len(one_token[3].split()) == 1


def test_an_item_too_long_for_its_tasks_context_is_named(tiny_moe_dir):
    import dataclasses

    from expertlab.evaluate import generation_rows
    from expertlab.tasks import TASKS

    backend = open_backend("hf", tiny_moe_dir, progress=False)
    items = [{"id": f"q{i}", "prompt": prompt, "target": "", "choices": None} for i, prompt in enumerate(PROMPTS)]
    with pytest.raises(ValueError, match="task 'bio_qa': item 'q3': prompt 3: 15 tokens"):
        generation_rows(backend, dataclasses.replace(TASKS["bio_qa"], max_model_len=15), items)
    backend.close()


class FakeLLM:
    """vLLM's LLM as the backend uses it: options recorded, token prompts answered with a fixed text."""

    tokenizer: object = None

    def __init__(self, **options: object) -> None:
        self.options = options
        self.calls: list[tuple[list, list]] = []

    def get_tokenizer(self) -> object:
        return self.tokenizer

    def generate(self, prompts: list, sampling: list, use_tqdm: bool) -> list:
        from types import SimpleNamespace

        self.calls.append((prompts, sampling))
        return [SimpleNamespace(outputs=[SimpleNamespace(text="<think>x</think> dose STOP more")]) for _ in prompts]


@pytest.fixture
def fake_vllm(monkeypatch, loaded):
    """vllm and lm-eval's vLLM model replaced by recorders: the backend's options checked without a GPU."""
    import sys

    _, tokenizer = loaded
    vllm = ModuleType("vllm")
    vllm.LLM = type("LLM", (FakeLLM,), {"tokenizer": tokenizer})
    vllm.SamplingParams = dict
    lm_eval_vllm = ModuleType("lm_eval.models.vllm_causallms")
    lm_eval_vllm.VLLM = dict
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "lm_eval.models.vllm_causallms", lm_eval_vllm)


def test_vllm_engine_takes_the_groups_largest_context_and_each_task_its_own(tiny_moe_dir, loaded, fake_vllm):
    from expertlab.generate.run import group_context
    from expertlab.params import Generate

    assert group_context(None, ["rct_summary", "multixscience_summary"]) == 4096
    names = ["rct_summary", "multixscience_summary", "multinews_summary"]
    assert group_context(None, names) == 8192
    options = Generate(backend="vllm").backend_options(group_context(None, names))
    backend = open_backend("vllm", tiny_moe_dir, **options, progress=False)
    assert backend.llm.options["max_model_len"] == 8192

    outputs = backend.generate(PROMPTS, 8, 18, stop=["STOP"])  # a task with a smaller context than the engine's
    prompts, sampling = backend.llm.calls[-1]
    assert prompts == [{"prompt_token_ids": ids} for ids in encode_prompts(loaded[1], PROMPTS)[1]]  # as hf reads them
    assert [params["max_tokens"] for params in sampling] == [7, 8, 8, 3, 8, 8]  # min(8, 18 - prompt length)
    assert all(params["temperature"] == 0.0 for params in sampling)
    assert outputs == ["dose"] * len(PROMPTS)
    backend.generate(PROMPTS, 1024, 8192)
    assert [params["max_tokens"] for params in backend.llm.calls[-1][1]] == [1024] * len(PROMPTS)
    with pytest.raises(PromptTooLong, match="prompt 3: 15 tokens"):
        backend.generate(PROMPTS, 8, 15)
    with pytest.raises(ValueError, match=r"context of 9000 tokens exceeds the engine's \(8192\)"):
        backend.generate(PROMPTS, 8, 9000)

    lm = backend.lm_eval_model(4096)  # an lm-eval task of the group: lm-eval's vLLM model in the task's context
    assert lm["max_model_len"] == 4096 and lm["pretrained"] == str(tiny_moe_dir)
    assert backend.llm is None  # freed for lm-eval's engine
    backend.generate(PROMPTS[:1], 8, 4096)
    assert backend.llm.options["max_model_len"] == 8192  # and started again for the next task


def write_tasks(tasks_dir: Path) -> None:
    tasks_dir.mkdir()
    qa = [{"id": f"q{i}", "prompt": prompt, "target": "aspirin", "choices": None} for i, prompt in enumerate(PROMPTS[:4])]
    mcq = [
        {"id": f"m{i}", "prompt": prompt, "target": "insulin", "choices": ["aspirin", "insulin", "fever", "pain"]}
        for i, prompt in enumerate(PROMPTS[2:])
    ]
    (tasks_dir / "bio_qa.jsonl").write_text("".join(json.dumps(row) + "\n" for row in qa))
    (tasks_dir / "bio_mcq.jsonl").write_text("".join(json.dumps(row) + "\n" for row in mcq))


def test_generate_then_score_write_the_documented_files(tiny_moe_dir, tmp_path, capsys):
    write_tasks(tmp_path / "tasks")
    gen_dir, score_dir = tmp_path / "gen", tmp_path / "scores"
    argv = [str(tiny_moe_dir), "--tasks-dir", str(tmp_path / "tasks"), "--tasks", "bio_qa,bio_mcq", "--out", str(gen_dir)]
    assert run_stage(stages.generate, [*argv, "--batch-size", "3", "--limit", "3"]) == 0

    rows = [json.loads(line) for line in (gen_dir / "generations.jsonl").read_text().splitlines()]
    assert [(row["task"], row["sample_id"]) for row in rows] == [
        ("bio_qa", "q0"), ("bio_qa", "q1"), ("bio_qa", "q2"), ("bio_mcq", "m0"), ("bio_mcq", "m1"), ("bio_mcq", "m2"),
    ]  # fmt: skip
    assert all(set(row) == {"task", "sample_id", "prompt", "output", "target", "choices", "doc"} for row in rows)
    meta = json.loads((gen_dir / "meta.json").read_text())
    assert meta == {
        "kind": "generations",
        "variant": {
            "variant_id": "tiny-moe:source",
            "model": "tiny-moe",
            "calibration": None,
            "seed": None,
            "criterion": None,
            "ratio": None,
            "kept_per_layer": None,
            "top_k": 2,
            "quantization": None,
            "finetune": None,
            "finetune_seed": None,
        },
        "group": "",
        "tasks": ["bio_qa", "bio_mcq"],
        "backend": "hf",
        "max_new_tokens": {"bio_qa": 12, "bio_mcq": 4},
        "max_model_len": {"bio_qa": 4096, "bio_mcq": 4096},  # the context each task was generated in
        "options": {"bio_qa": {}, "bio_mcq": {}},
    }

    assert run_stage(stages.score, [str(gen_dir), "--out", str(score_dir)]) == 0
    table = pq.read_table(score_dir / "sample_scores.parquet")
    assert [(field.name, str(field.type)) for field in table.schema] == [
        ("task", "string"), ("sample_id", "string"), ("metric", "string"), ("value", "double"),
    ]  # fmt: skip
    scores = table.to_pylist()
    assert len(scores) == 3 * 2 + 3 * 1  # bio_qa: exact_match, token_f1; bio_mcq: accuracy
    keys = [(s["task"], s["sample_id"], s["metric"]) for s in scores]
    assert keys == sorted(keys)
    assert all(0.0 <= s["value"] <= 1.0 for s in scores)
    assert json.loads((score_dir / "meta.json").read_text()) == {
        "kind": "scores", "variant": meta["variant"], "group": "", "tasks": ["bio_qa", "bio_mcq"],
    }  # fmt: skip
    assert pq.read_table(score_dir / "corpus_scores.parquet").num_rows == 0  # the toy tasks have no corpus metric
    assert "bio_mcq" in capsys.readouterr().out


def test_generate_records_the_given_variant(tiny_moe_dir, tmp_path):
    write_tasks(tmp_path / "tasks")
    variant = Variant(model="tiny", calibration="toy", seed=0, criterion="reap", ratio=0.5).record(2, 2)
    (tmp_path / "variant.json").write_text(json.dumps(variant))
    argv = [str(tiny_moe_dir), "--tasks-dir", str(tmp_path / "tasks"), "--tasks", "bio_mcq", "--out", str(tmp_path / "gen")]
    assert run_stage(stages.generate, [*argv, "--limit", "1", "--variant-meta", str(tmp_path / "variant.json")]) == 0
    assert json.loads((tmp_path / "gen" / "meta.json").read_text())["variant"] == variant


def test_bad_task_names_and_missing_files_fail_before_loading(tmp_path):
    write_tasks(tmp_path / "tasks")
    argv = ["no-such-model", "--tasks-dir", str(tmp_path / "tasks"), "--out", str(tmp_path / "gen"), "--tasks"]
    with pytest.raises(ValueError, match=r"unknown task 'bio_qaa' \(did you mean 'bio_qa'\?\); allowed: .*bio_mcq"):
        run_stage(stages.generate, [*argv, "bio_qaa"])
    with pytest.raises(FileNotFoundError, match=r"missing task file: .*general_mcq\.jsonl"):
        run_stage(stages.generate, [*argv, "bio_qa,general_mcq"])
    assert not (tmp_path / "gen").exists()


def test_an_interrupted_run_leaves_no_output_and_resumes(tiny_moe_dir, tmp_path, monkeypatch):
    write_tasks(tmp_path / "tasks")
    import expertlab.generate.hf

    real = expertlab.generate.hf.generate
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(expertlab.generate.hf, "generate", interrupted)
    partial = tmp_path / "partial"
    argv = [str(tiny_moe_dir), "--tasks-dir", str(tmp_path / "tasks"), "--tasks", "bio_qa,bio_mcq",
            "--out", str(tmp_path / "gen"), "--partial-dir", str(partial), "--limit", "2"]  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        run_stage(stages.generate, argv)
    assert len(calls) == 2  # the first task was done when the run died
    assert sorted(path.name for path in tmp_path.iterdir()) == ["partial", "tasks"]  # no OUT_DIR, no temporary sibling
    [run] = partial.iterdir()
    assert sorted(path.name for path in run.iterdir()) == ["bio_qa.jsonl", "bio_qa.sha256"]

    # the re-run takes bio_qa from the partial results and generates only bio_mcq
    assert run_stage(stages.generate, argv) == 0
    assert len(calls) == 3
    assert not run.exists()  # cleared once the output is complete
    rows = [json.loads(line) for line in (tmp_path / "gen" / "generations.jsonl").read_text().splitlines()]
    assert [(row["task"], row["sample_id"]) for row in rows] == [("bio_qa", "q0"), ("bio_qa", "q1"), ("bio_mcq", "m0"), ("bio_mcq", "m1")]

    # partial results of a run whose items have changed since are never taken
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        run_stage(stages.generate, [*argv[:5], "--out", str(tmp_path / "gen2"), *argv[7:]])
    (tmp_path / "tasks" / "bio_qa.jsonl").write_text((tmp_path / "tasks" / "bio_qa.jsonl").read_text().replace("q0", "q9"))
    assert run_stage(stages.generate, [*argv[:5], "--out", str(tmp_path / "gen2"), *argv[7:]]) == 0
    assert len(calls) == 2 + 2  # both tasks again: bio_qa changed, bio_mcq never finished


def test_reasoning_is_stripped_and_outputs_cut_at_the_first_stop_string():
    from expertlab.generate import cut_at_stop, strip_reasoning

    assert strip_reasoning("<think>the dose is 5</think>\n10 mg") == "\n10 mg"
    assert strip_reasoning("weighing it up</think>10 mg") == "10 mg"  # the template opened the block
    gpt_oss = "<|channel|>analysis<|message|>think<|end|><|start|>assistant<|channel|>final<|message|>B<|return|>"
    assert strip_reasoning(gpt_oss) == "B<|return|>"
    assert strip_reasoning("<|channel|>analysis<|message|>ran out of tokens") == ""  # no answer reached
    assert strip_reasoning("plain answer") == "plain answer"
    assert cut_at_stop(" yes Stop Here no \n\nInput: x", ["\n\nInput", "Stop Here"]) == "yes"
    assert cut_at_stop(" yes ", []) == "yes"


def test_the_chat_template_gets_thinking_off_and_gpt_oss_low_effort(loaded):
    from expertlab.generate import lm_eval_chat_options, template_kwargs

    _, tokenizer = loaded
    probe = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    probe.chat_template = (
        "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
        "thinking={{ enable_thinking }} effort={{ reasoning_effort | default('none') }}"
    )
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "dose?"}]
    assert render_prompt(probe, chat) == "[system] be brief\n[user] dose?\nthinking=False effort=none"
    assert render_prompt(probe, "dose?", "gpt_oss").endswith("thinking=False effort=low")
    assert template_kwargs("qwen3_moe") == {"enable_thinking": False}
    assert lm_eval_chat_options("qwen3_moe") == {"enable_thinking": False}
    assert lm_eval_chat_options("gpt_oss")["chat_template_args"] == {"reasoning_effort": "low"}
    probe.chat_template = None
    assert render_prompt(probe, chat) == "be brief\n\ndose?"  # no template: the turns' contents
    with pytest.raises(ValueError, match="list of \\{role, content\\} messages"):
        render_prompt(probe, [{"content": "no role"}])


def test_backends_behind_one_interface(tiny_moe_dir, loaded):
    from expertlab.generate import BACKENDS, open_backend

    backend = open_backend("hf", tiny_moe_dir, batch_size=2, progress=False)
    model, tokenizer = loaded
    expected = generate(model, tokenizer, PROMPTS[:3], 5, batch_size=3, progress=False)
    assert backend.generate(PROMPTS[:3], 5, 4096) == expected  # the batch size never changes greedy outputs
    assert backend.model_type == "qwen3_moe"
    assert sorted(BACKENDS.names()) == ["hf", "vllm"]
    import importlib.util

    if importlib.util.find_spec("vllm") is None:  # a GPU extra, imported only when chosen
        with pytest.raises(ValueError, match="vLLM is not installed"):
            open_backend("vllm", tiny_moe_dir, max_model_len=4096)
    with pytest.raises(KeyError, match="unknown generation backend 'tgi'"):
        open_backend("tgi", tiny_moe_dir)


def test_generation_budget_is_the_models_or_the_tasks_capped_by_generate_max_new_tokens():
    import copy

    import yaml

    from expertlab.params import parse_params
    from expertlab.generate.run import budget

    data = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    data["models"]["toy"]["max_new_tokens"] = {"bio_qa": 40}
    params = parse_params(data)
    assert budget(params, "toy", "bio_qa") == 40  # the model's own budget for the task
    assert budget(params, "toy", "bio_mcq") == 4  # the task's (registry) budget
    assert budget(params, "elsewhere", "bio_qa") == 12
    assert budget(None, "toy", "bio_qa") == 12
    capped = copy.deepcopy(data)
    capped["generate"]["max_new_tokens"] = 30
    assert budget(parse_params(capped), "toy", "bio_qa") == 30
    assert budget(parse_params(capped), "toy", "bio_mcq") == 4


def test_context_is_the_tasks_capped_by_generate_max_model_len():
    import yaml

    from expertlab.generate.run import context, group_context
    from expertlab.params import parse_params

    data = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    names = ["rct_summary", "multinews_summary"]
    assert [context(parse_params(data), name) for name in names] == [4096, 8192]
    data["generate"]["max_model_len"] = 6000
    assert [context(parse_params(data), name) for name in names] == [4096, 6000]
    assert group_context(parse_params(data), names) == 6000
