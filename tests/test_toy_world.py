"""The toy world: deterministic files, valid task items for every registered task, held-out prompts,
seeded calibration sets, tool calls and their fine-tuning split, a chat tokenizer that round-trips answers,
and a micro model that trains and loads."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from expertlab.data.tokenizer import SPECIAL_TOKENS, build_tokenizer, render_chat, render_prompt
from expertlab.data.examples import NO_SUCH_DRUG, NOTA
from expertlab.data.calibration import CalibrationError, ToyCalibration, write_sets
from expertlab.data.tools import FUNCTIONS, MAX_OFFERED, format_call
from expertlab.data.toy import write_toy_data
from expertlab.data.world import WorldConfig, build_world
from expertlab.io import OUTPUT_MARKER, read_jsonl
from expertlab.metrics.tool_calls import parse_calls
from expertlab.tasks import DOMAINS, TASKS
from expertlab.train import MICRO_MODEL, MICRO_TRAIN, DomainRouting, TrainConfig, build_model, domain_blocks

SMALL_WORLD = WorldConfig(
    seed=3, drugs=8, countries=8, train_examples_per_domain=400, tool_train_examples=200, tool_finetune_examples=100,
    pool_size=64, eval_items=12,
)
CALIBRATIONS = {
    "biomed": ToyCalibration(source="toy", domains=["biomedical"], samples=20),
    "mixed": ToyCalibration(source="toy", domains=["biomedical", "general"], samples=30),
}
SEEDS = [0, 1]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("toy") / "data"
    write_toy_data(SMALL_WORLD, out)
    return out


@pytest.fixture(scope="module")
def train_texts(toy_dir: Path) -> list[str]:
    return [row["text"] for row in read_jsonl(toy_dir / "train.jsonl")]


@pytest.fixture(scope="module")
def tokenizer(train_texts: list[str]):  # noqa: ANN201
    return build_tokenizer(train_texts)


def test_same_seed_writes_identical_files_and_another_seed_does_not(toy_dir: Path, tmp_path: Path) -> None:
    write_toy_data(SMALL_WORLD, tmp_path / "again")
    assert _files(tmp_path / "again") == _files(toy_dir)
    other = SMALL_WORLD.model_copy(update={"seed": 4})
    write_toy_data(other, tmp_path / "other")
    assert _files(tmp_path / "other")["train.jsonl"] != _files(toy_dir)["train.jsonl"]


def test_layout_and_sizes(toy_dir: Path) -> None:
    domains = [row["domain"] for row in read_jsonl(toy_dir / "train.jsonl")]
    assert {domain: domains.count(domain) for domain in DOMAINS} == {
        "biomedical": SMALL_WORLD.train_examples_per_domain,
        "general": SMALL_WORLD.train_examples_per_domain,
        "tool_use": SMALL_WORLD.tool_train_examples,
    }
    for domain in DOMAINS:
        assert len(read_jsonl(toy_dir / "pools" / f"{domain}.jsonl")) == SMALL_WORLD.pool_size
    assert sorted(p.stem for p in (toy_dir / "tasks").iterdir()) == sorted(n for n, t in TASKS.items() if t.source == "toy")
    assert [p.name for p in (toy_dir / "finetune").iterdir()] == ["tool_use.jsonl"]
    assert len(read_jsonl(toy_dir / "finetune" / "tool_use.jsonl")) == SMALL_WORLD.tool_finetune_examples


@pytest.mark.parametrize("task_name", [name for name, task in TASKS.items() if task.source == "toy"])
def test_task_items_are_valid(toy_dir: Path, train_texts: list[str], task_name: str) -> None:
    task = TASKS[task_name]
    items = read_jsonl(toy_dir / "tasks" / f"{task_name}.jsonl")
    assert len(items) == SMALL_WORLD.eval_items
    assert len({item["id"] for item in items}) == len({item["prompt"] for item in items}) == len(items)
    trained_prompts = set(train_texts)
    for item in items:
        assert set(item) - {"doc"} == {"id", "prompt", "target", "choices"}
        assert item["prompt"] and item["target"]
        if "doc" in item:  # summaries carry the summarised document, which judges check against
            assert task_name.endswith("summary") and item["prompt"].endswith("\n" + item["doc"]["source"])
        if task.kind == "classification":
            assert len(item["choices"]) == 4 and len(set(item["choices"])) == 4
            assert item["target"] in item["choices"]
        else:
            assert item["choices"] is None
        # held out: the exact prompt never appears in training, with any answer
        assert not any(text.startswith(render_prompt(item["prompt"])) for text in trained_prompts)


def test_medhalt_items_follow_their_definitions(toy_dir: Path) -> None:
    world = build_world(SMALL_WORLD)
    real = {drug.name for drug in world.drugs}
    for item in read_jsonl(toy_dir / "tasks" / "bio_nota.jsonl"):
        assert item["target"] == NOTA == item["choices"][-1]
    for item in read_jsonl(toy_dir / "tasks" / "bio_fake.jsonl"):
        assert item["target"] == NO_SUCH_DRUG
        assert not real & set(item["prompt"].replace("?", " ").split())
    for item in read_jsonl(toy_dir / "tasks" / "bio_fct.jsonl"):
        assert "A student answered" in item["prompt"]


def test_qa_facts_are_stated_in_training(toy_dir: Path, train_texts: list[str]) -> None:
    """Each QA item's answer follows its drug somewhere in training: the task is learnable."""
    names = [drug.name for drug in build_world(SMALL_WORLD).drugs]
    for item in read_jsonl(toy_dir / "tasks" / "bio_qa.jsonl"):
        (drug,) = [name for name in names if name in item["prompt"].rstrip("?").split()]
        assert any(drug in text and item["target"] in text for text in train_texts)


def _tool_demonstrations(toy_dir: Path) -> list[tuple[str, str]]:
    """(prompt, call) of every tool_call item and fine-tuning row."""
    items = [(item["prompt"], item["target"]) for item in read_jsonl(toy_dir / "tasks" / "tool_call.jsonl")]
    return items + [(row["prompt"], row["response"]) for row in read_jsonl(toy_dir / "finetune" / "tool_use.jsonl")]


def test_tool_calls_call_an_offered_function_with_values_the_request_states(toy_dir: Path) -> None:
    functions = {function.name: function for function in FUNCTIONS}
    called = set()
    for prompt, call in _tool_demonstrations(toy_dir):
        header, *signatures, request = prompt.split("\n")
        assert header == "Functions:" and request.startswith("Request: ")
        offered = [line.split("(")[0] for line in signatures]
        assert 1 <= len(set(offered)) == len(offered) <= MAX_OFFERED
        assert signatures == [functions[name].signature() for name in offered]
        ((name, arguments),) = parse_calls(call)
        assert name in offered and tuple(arguments) == functions[name].parameters
        assert all(str(value) in request for value in arguments.values())
        assert call == format_call(name, arguments)  # canonical: declared order, strings quoted, integers bare
        called.add(name)
    assert called == set(functions)


def test_finetune_split_is_never_evaluated_nor_calibrated_on(toy_dir: Path) -> None:
    rows = read_jsonl(toy_dir / "finetune" / "tool_use.jsonl")
    assert all(set(row) == {"prompt", "response"} for row in rows)
    evaluated = {item["prompt"] for path in (toy_dir / "tasks").iterdir() for item in read_jsonl(path)}
    pools = [row["text"] for domain in DOMAINS for row in read_jsonl(toy_dir / "pools" / f"{domain}.jsonl")]
    for row in rows:
        assert row["prompt"] not in evaluated
        assert not any(text.startswith(render_prompt(row["prompt"])) for text in pools)


def test_calibration_sets_are_seeded_samples_of_the_pools(toy_dir: Path, tmp_path: Path) -> None:
    pools = {d: [r["text"] for r in read_jsonl(toy_dir / "pools" / f"{d}.jsonl")] for d in DOMAINS}
    for name, spec in CALIBRATIONS.items():
        union = [text for domain in spec.domains for text in pools[domain]]
        assert write_sets(name, spec, toy_dir / "pools", SEEDS, tmp_path / name) == dict.fromkeys(SEEDS, spec.samples)
        sets = [[r["text"] for r in read_jsonl(tmp_path / name / f"seed{s}.jsonl")] for s in SEEDS]
        for seed, texts in zip(SEEDS, sets):
            assert texts == random.Random(seed).sample(union, spec.samples)  # the pools' union, in domain order
            assert len(texts) == spec.samples == len(set(texts))
        assert sets[0] != sets[1]


def test_too_many_calibration_samples_is_an_error(toy_dir: Path, tmp_path: Path) -> None:
    big = ToyCalibration(source="toy", domains=["general"], samples=65)
    with pytest.raises(CalibrationError, match="65 samples requested, its source at .* holds 64"):
        write_sets("big", big, toy_dir / "pools", [0], tmp_path / "big")
    assert not (tmp_path / "big").exists()  # nothing half-written


def test_world_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="extra"):
        WorldConfig(drug=3)


def test_tokenizer_renders_chats_and_round_trips_answers(toy_dir: Path, tokenizer) -> None:  # noqa: ANN001
    item = read_jsonl(toy_dir / "tasks" / "trial_summary.jsonl")[0]
    templated = tokenizer.apply_chat_template(
        [{"role": "user", "content": item["prompt"]}], add_generation_prompt=True, tokenize=False
    )
    assert templated == render_prompt(item["prompt"])
    text = render_chat(item["prompt"], item["target"])
    prompt_ids = tokenizer(templated)["input_ids"]
    ids = tokenizer(text)["input_ids"]
    assert ids[: len(prompt_ids)] == prompt_ids  # generation continues exactly where training did
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in ids
    answer = tokenizer.decode(ids[len(prompt_ids) :], skip_special_tokens=True)
    assert answer == item["target"]  # numbers re-join: "240" is "2", "##4", "##0"
    assert tokenizer.convert_ids_to_tokens(tokenizer("240 mg")["input_ids"]) == ["2", "##4", "##0", "mg"]
    # a fake drug is a word training never saw
    fake = read_jsonl(toy_dir / "tasks" / "bio_fake.jsonl")[0]
    assert tokenizer.unk_token_id in tokenizer(fake["prompt"])["input_ids"]


def test_tokenizer_round_trips_every_answer_of_every_domain(toy_dir: Path, tokenizer) -> None:  # noqa: ANN001
    answers = [item["target"] for path in sorted((toy_dir / "tasks").iterdir()) for item in read_jsonl(path)]
    answers += [call for _, call in _tool_demonstrations(toy_dir)]
    for answer in answers:
        ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids, answer
        assert tokenizer.decode(ids, skip_special_tokens=True) == answer
    drug = build_world(SMALL_WORLD).drugs[0].name
    call = f'[set_reminder(drug="{drug}", dose="250 mg", frequency="twice daily")]'
    tokens = ["[", "set", "_", "reminder", "(", "drug", "=", '"', drug, '"', ",", "dose", "=", '"', "2", "##5", "##0"]
    assert tokenizer.tokenize(call)[: len(tokens)] == tokens  # call syntax is word-level too; decoding re-joins it


def test_call_spacing_leaves_every_other_domain_text_alone(toy_dir: Path) -> None:
    """The decoder's call-spacing patterns need one of these characters, which only tool calls use."""
    texts = [row["text"] for row in read_jsonl(toy_dir / "train.jsonl") if row["domain"] != "tool_use"]
    for domain in ("biomedical", "general"):
        texts += [row["text"] for row in read_jsonl(toy_dir / "pools" / f"{domain}.jsonl")]
    texts += [item["target"] for name, task in TASKS.items() if task.source == "toy" and task.domain != "tool_use"
              for item in read_jsonl(toy_dir / "tasks" / f"{name}.jsonl")]  # fmt: skip
    for special in SPECIAL_TOKENS:  # single tokens, never spaced
        texts = [text.replace(special, " ") for text in texts]
    assert not [text for text in texts if set('_()[]="') & set(text)]


def test_tool_demonstrations_fit_the_default_training_window(toy_dir: Path, tokenizer) -> None:  # noqa: ANN001
    """Training truncates at toy.train.seq_len: a truncated demonstration would lose its call."""
    tool_texts = [render_chat(prompt, call) for prompt, call in _tool_demonstrations(toy_dir)]
    assert max(len(tokenizer(text)["input_ids"]) for text in tool_texts) < TrainConfig().seq_len


def test_micro_model_trains_through_the_stages_and_loads(toy_dir: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from expertlab.cli import main

    params = {
        "study": {
            "models": ["toy"],
            "calibrations": ["biomed"],
            "seeds": SEEDS,
            "criteria": ["random"],
            "ratios": [0.5],
            "tasks": {"toy": ["bio_qa"]},
            "compare": {"models": [], "calibrations": [], "criteria": [], "ratios": []},
            "quantize": {"schemes": [], "models": [], "criteria": [], "ratios": []},
        },
        "models": {"toy": {"family": "qwen3_moe", "toy": True}},
        "calibrations": {"biomed": {"source": "toy", "domains": ["biomedical"], "samples": 20}},
        "combined_calibrations": {},
        "observe": {"batch_size": 8, "max_length": 64},
        "select": {"allow_top_k_reduction": False},
        "evaluation": {},
        "generate": {"batch_size": 8, "limit": 3},
        "score": {},
        "judges": {},
        "judge": {},
        "quantization": {},
        "report": {"print": ["headline"], "frontier": {}},
        "monosemanticity": {"models": [], "explainers": [], "top_k": []},
        "finetune": {"models": [], "strategies": [], "seeds": []},
        "toy": {
            "world": SMALL_WORLD.model_dump(),
            "model": MICRO_MODEL.model_dump(),
            "train": MICRO_TRAIN.model_dump(),
        },
    }
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    data, model_dir = tmp_path / "data", tmp_path / "models" / "toy"
    assert main(["prepare", "--params", str(params_path), "--out", str(data)]) == 0
    expected = {name: content for name, content in _files(toy_dir).items() if "mixed" not in name}
    assert _files(data) == {**expected, OUTPUT_MARKER: b"prepare\n"}  # the library's files, and the stage's mark
    train_args = ["--params", str(params_path), "--data", str(data / "train.jsonl"), "--out", str(model_dir)]
    assert main(["train-toy", *train_args]) == 0

    log = json.loads((model_dir / "train_log.json").read_text())
    assert log["curve"][-1]["lm_loss"] < log["curve"][0]["lm_loss"] - 0.5
    assert not list(model_dir.parent.glob(".*"))  # the temporary directory was renamed away
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert model.config.model_type == "qwen3_moe"
    assert model.config.num_experts == MICRO_MODEL.num_experts
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    call = read_jsonl(data / "finetune" / "tool_use.jsonl")[0]["response"]
    assert tokenizer.decode(tokenizer(call, add_special_tokens=False)["input_ids"]) == call  # the saved decoder too
    text = render_chat("What is the capital of Nowhere?", "Somewhere")
    with torch.no_grad():
        logits = model(**tokenizer(text, return_tensors="pt")).logits
    assert logits.shape[-1] == len(tokenizer)


@pytest.mark.parametrize(
    ("experts", "domains", "top_k", "sizes"),
    [(16, 2, 2, [8, 8]), (16, 3, 2, [6, 5, 5]), (8, 3, 2, [3, 3, 2]), (6, 3, 2, [2, 2, 2]), (7, 1, 2, [7])],
)
def test_domain_blocks_are_as_equal_as_possible(experts: int, domains: int, top_k: int, sizes: list[int]) -> None:
    assert domain_blocks(experts, domains, top_k) == sizes


def test_domain_blocks_narrower_than_top_k_are_an_error() -> None:
    with pytest.raises(ValueError, match="5 experts cannot be split into 3 domain blocks of >= top-k"):
        domain_blocks(5, 3, 2)


@pytest.mark.parametrize(("domains", "blocks"), [(2, [(0, 4), (4, 8)]), (3, [(0, 3), (3, 6), (6, 8)])])
def test_domain_routing_confines_each_domain_to_its_block_until_removed(tokenizer, domains: int, blocks) -> None:  # noqa: ANN001
    import torch

    model = build_model(MICRO_MODEL, tokenizer, seed=0)
    routing = DomainRouting(model, num_domains=domains)
    router = routing.routers[0]
    hidden = torch.randn(domains * 5, MICRO_MODEL.hidden_size, generator=torch.Generator().manual_seed(0))
    routing.install()
    routing.set_domains(torch.arange(domains), seq_len=5)
    logits, weights, index = router(hidden)
    for domain, (start, stop) in enumerate(blocks):  # MICRO_MODEL: 8 experts
        chosen = index[domain * 5 : (domain + 1) * 5]
        assert ((chosen >= start) & (chosen < stop)).all()
    assert torch.allclose(weights, torch.softmax(logits, dim=-1).gather(1, index))  # probabilities stay unmasked
    loss = routing.router_loss([logits], torch.ones(domains, 5))
    assert loss.item() > 0
    routing.remove()
    assert "forward" not in router.__dict__
