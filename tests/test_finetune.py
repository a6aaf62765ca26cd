"""Selective fine-tuning on real tiny transformers models: what trains, what stays bit-identical, resumption, schedule,
loss masking and bad inputs."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from expertlab.finetune import (
    BadExamples,
    BadSelection,
    CheckpointMismatch,
    FinetuneConfig,
    finetune,
    learning_rate,
    save_finetuned,
    warmup_steps,
)
from expertlab.finetune.checkpoint import checkpoints
from expertlab.finetune.data import IGNORE, collate, encode_example
from expertlab.finetune.modes import MODES, RowMask, Trainable, TrainableTensor
from expertlab.finetune.optim import build_optimizer, optimizer_step
from expertlab.moe.families import adapter_for
from tests.conftest import build_tokenizer
from tests.tiny_models import TINY, build

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = [
    {"prompt": prompt, "response": response}
    for prompt, response in [
        ("what is the dose of aspirin", "one mg"),
        ("what is the dose of insulin for diabetes", "two ml"),
        ("fever and pain", "ibuprofen"),
        ("one plus two", "three"),
        ("two plus two", "four"),
        ("asthma trial outcome", "improved"),
        ("diabetes with metformin", "yes"),
        ("five minus one", "four"),
        ("what is the answer A or B", "A"),
        ("ten minus three", "seven"),
    ]
]
# 10 examples, batches of 4: 3 steps an epoch (4, 4, 2), 2 epochs; lr high enough that every step moves the weights
SMALL = {
    "lr": 1e-2, "min_lr": 1e-3, "weight_decay": 0.1, "batch_size": 4, "micro_batch_size": 2, "epochs": 2,
    "checkpoint_every": 2, "warmup_ratio": 0.2,
}
SELECTION = {"qwen3_moe": {1: [0, 3, 6]}, "gpt_oss": {0: [2], 1: [5, 6]}, "mixtral": {0: [1, 7]}}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same float sums in this process and in the killed subprocess
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def config(**overrides) -> FinetuneConfig:
    return FinetuneConfig.model_validate(SMALL | overrides)


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: param.detach().clone() for name, param in model.named_parameters()}


def qwen(work_dir, cfg: FinetuneConfig | None = None, selection=None, **kwargs):  # noqa: ANN001, ANN201
    """Mode experts (by default) on a fresh tiny Qwen3-MoE with the Qwen3 selection."""
    selection = SELECTION["qwen3_moe"] if selection is None else selection
    tokenizer = build_tokenizer()
    return finetune(build("qwen3_moe"), tokenizer, EXAMPLES, selection, cfg or config(), work_dir, progress=False, **kwargs)


def assert_same_weights(model, expected) -> None:  # noqa: ANN001
    reference = dict(expected.named_parameters())
    for name, param in model.named_parameters():
        assert torch.equal(param, reference[name]), name


def expert_rows_changed(before: torch.Tensor, after: torch.Tensor) -> list[int]:
    """Expert ids (axis 0) whose slice differs."""
    return (before != after).flatten(1).any(dim=1).nonzero().flatten().tolist()


def assert_only_selected_rows_changed(model, source: dict[str, torch.Tensor], selection: dict[int, list[int]]) -> None:
    """Every selected expert changed in every one of its tensors; everything else bit-identical to `source`."""
    layers = {layer.index: layer for layer in adapter_for(model).moe_layers(model)}
    selected_names = {}
    for index, experts in selection.items():
        module_names = {id(p): n for n, p in model.named_parameters()}
        for param in layers[index].experts.parameters():
            selected_names[module_names[id(param)]] = experts
    for name, param in model.named_parameters():
        if name in selected_names:
            assert expert_rows_changed(source[name], param) == sorted(selected_names[name]), name
        else:
            assert torch.equal(param, source[name]), f"{name} changed but is frozen"


# --- mode experts ---


@pytest.mark.parametrize("family", sorted(SELECTION))
def test_experts_mode_changes_selected_rows_only_and_keeps_frozen_moments_zero(family, tokenizer, tmp_path):
    model = build(family)
    source = snapshot(model)
    result = finetune(model, tokenizer, EXAMPLES, SELECTION[family], config(), tmp_path, progress=False)
    assert result.model is model and result.total_steps == 6
    assert_only_selected_rows_changed(model, source, SELECTION[family])
    # trainable scalars: the selected rows of each fused tensor (GPT-OSS: gate_up, its bias, down, its bias)
    per_expert = sum(p[0].numel() for p in adapter_for(model).moe_layers(model)[0].experts.parameters())
    assert result.trainable_parameters == per_expert * sum(len(e) for e in SELECTION[family].values())
    assert all(param.requires_grad for param in model.parameters())  # flags as the source had them


@pytest.mark.parametrize("family", ["qwen3_moe", "gpt_oss"])
def test_adamw_moments_of_frozen_rows_are_exactly_zero(family, tokenizer):
    """The loop's own pieces, two steps: frozen rows have zero gradient, moments and no decay; selected rows all move."""
    from expertlab.finetune.data import encode_examples
    from expertlab.finetune.loop import train_step

    model = build(family)
    source = snapshot(model)
    selection = {layer: tuple(experts) for layer, experts in SELECTION[family].items()}
    trainable = MODES["experts"].prepare(model, selection, config())
    optimizer = build_optimizer(trainable, config())
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.0]  # decay is applied by optimizer_step
    batch = encode_examples(tokenizer, EXAMPLES, 64, {})  # all ten: every selected expert is routed some token
    for _ in range(2):
        train_step(trainable, optimizer, batch, 1e-2, tokenizer.pad_token_id, "cpu", config())
    assert {t.name for t in trainable.tensors} == {n for n, p in model.named_parameters() if p.requires_grad}
    for tensor in trainable.tensors:
        state = optimizer.state[tensor.param]
        chosen = tensor.rows.index.tolist()
        frozen = [e for e in range(tensor.rows.size) if e not in chosen]
        for moment in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(state[moment][frozen], torch.zeros_like(state[moment][frozen])), (tensor.name, moment)
            assert all(state[moment][e].abs().sum() > 0 for e in chosen), (tensor.name, moment)
        assert torch.equal(tensor.param[frozen], source[tensor.name][frozen])
        assert expert_rows_changed(source[tensor.name], tensor.param.detach()) == chosen


def test_masked_decay_with_every_row_training_is_torch_adamw_bit_for_bit():
    grads = [torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(step)) for step in range(4)]
    start = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(9))
    cfg = FinetuneConfig(weight_decay=0.1, max_grad_norm=None)

    def run(rows: RowMask | None) -> torch.Tensor:
        param = torch.nn.Parameter(start.clone())
        trainable = Trainable(param, [TrainableTensor("w", param, rows)], lambda: param)
        optimizer = build_optimizer(trainable, cfg)
        for grad in grads:
            param.grad = grad.clone()
            optimizer_step(optimizer, trainable, 1e-2, cfg)
        return param.detach()

    reference = torch.nn.Parameter(start.clone())
    adamw = torch.optim.AdamW([reference], lr=1e-2, weight_decay=0.1)
    for grad in grads:
        reference.grad = grad.clone()
        adamw.step()
    assert torch.equal(run(RowMask(0, torch.arange(3), 3)), reference.detach())
    assert torch.equal(run(None), reference.detach())
    partial = run(RowMask(0, torch.tensor([1]), 3))
    assert torch.equal(partial[1], reference.detach()[1]) and torch.equal(partial[[0, 2]], start[[0, 2]])


@pytest.mark.parametrize("family", sorted(TINY))
def test_every_family_trains_only_the_selected_experts(family, tokenizer, tmp_path):
    """The contract over the family registry: one step, selected experts of the last MoE layer only."""
    model = build(family)
    last = adapter_for(model).moe_layers(model)[-1].index
    source = snapshot(model)
    cfg = config(batch_size=4, epochs=1, balance_loss_coef=0.0)
    finetune(model, tokenizer, EXAMPLES[:4], {last: [1, 2]}, cfg, tmp_path, progress=False)
    assert_only_selected_rows_changed(model, source, {last: [1, 2]})


def test_experts_held_as_separate_modules_train_per_module():
    """A ModuleList of experts (no v5 family has one): the selected experts' modules train whole, none is masked."""
    from expertlab.finetune.modes import selected_expert_parameters

    model = build("qwen3_moe")
    model.model.layers[1].mlp.experts = torch.nn.ModuleList(torch.nn.Linear(2, 2) for _ in range(8))
    found = selected_expert_parameters(model, {1: (2, 5)})
    assert [(f.name, f.rows) for f in found] == [
        (f"model.layers.1.mlp.experts.{e}.{p}", None) for e in (2, 5) for p in ("weight", "bias")
    ]


def test_a_model_without_a_balance_loss_needs_coefficient_zero(tokenizer, tmp_path):
    with pytest.raises(Exception, match=r"balance_loss_coef is 0.05, but this deepseek_v3 model returns no router"):
        finetune(build("deepseek_v3"), tokenizer, EXAMPLES, {1: [0]}, config(), tmp_path, progress=False)


# --- modes full and lora ---


def test_full_mode_changes_every_parameter(tokenizer, tmp_path):
    model = build("qwen3_moe")
    source = snapshot(model)
    result = finetune(model, tokenizer, EXAMPLES, None, config(mode="full", weight_decay=0.0), tmp_path, progress=False)
    unchanged = [name for name, param in model.named_parameters() if torch.equal(param, source[name])]
    assert unchanged == []
    assert result.trainable_parameters == sum(p.numel() for p in model.parameters())


def test_lora_adapts_only_the_target_modules_and_merges_into_the_source_architecture(tokenizer, tmp_path):
    from peft.tuners.lora import LoraLayer

    model = build("qwen3_moe")
    source = snapshot(model)
    keys = set(model.state_dict())
    trainable = MODES["lora"].prepare(build("qwen3_moe"), {}, config(mode="lora"))
    modules = trainable.module.named_modules()
    adapted = sorted(name.removeprefix("base_model.model.") for name, m in modules if isinstance(m, LoraLayer))
    assert adapted == [f"model.layers.{i}.self_attn.{p}" for i in (0, 1) for p in ("q_proj", "v_proj")]
    assert all(".lora_A." in t.name or ".lora_B." in t.name for t in trainable.tensors) and len(trainable.tensors) == 8

    cfg = config(mode="lora", lora={"r": 2, "alpha": 4})
    result = finetune(model, tokenizer, EXAMPLES, None, cfg, tmp_path, progress=False)
    merged = result.model
    assert type(merged).__name__ == "Qwen3MoeForCausalLM" and set(merged.state_dict()) == keys
    changed = sorted(name for name, param in merged.named_parameters() if not torch.equal(param, source[name]))
    assert changed == [f"model.layers.{i}.self_attn.{p}.weight" for i in (0, 1) for p in ("q_proj", "v_proj")]
    # rank 2 on q (32 -> 32) and v (32 -> 16), two layers
    assert result.trainable_parameters == 2 * (2 * (32 + 32) + 2 * (32 + 16))


@pytest.mark.parametrize("family", ["qwen3_moe", "gpt_oss"])
def test_lora_on_selected_experts_changes_only_their_rows_after_merging(family, tokenizer, tmp_path):
    model = build(family)
    source = snapshot(model)
    keys = set(model.state_dict())
    selection = SELECTION[family]
    cfg = config(mode="lora_experts", lora={"r": 2, "alpha": 4})
    result = finetune(model, tokenizer, EXAMPLES, selection, cfg, tmp_path, progress=False)
    merged = result.model
    assert set(merged.state_dict()) == keys and not any("lora" in name for name in merged.state_dict())
    weights = {
        f"model.layers.{layer}.mlp.experts.{name}": experts
        for layer, experts in selection.items()
        for name in ("gate_up_proj", "down_proj")
    }
    for name, param in merged.named_parameters():
        if name in weights:
            assert expert_rows_changed(source[name], param) == sorted(weights[name]), name
        else:  # GPT-OSS expert biases included: LoRA adapts weights only
            assert torch.equal(param, source[name]), f"{name} changed"
    # per selected expert, a rank-2 pair on gate_up and on down: 2 x (in + out) scalars each
    experts = adapter_for(merged).moe_layers(merged)[0].experts
    per_expert = sum(2 * sum(experts.get_parameter(name).shape[1:]) for name in ("gate_up_proj", "down_proj"))
    assert result.trainable_parameters == per_expert * sum(len(e) for e in selection.values())


# --- resumption ---


def run_until_killed(work_dir: str) -> None:
    """In a subprocess: train, and die by SIGKILL in the middle of writing the second checkpoint (after step 4)."""
    torch.set_num_threads(1)
    real_save = torch.save
    saves = []

    def dying_save(obj, path, *args, **kwargs):  # noqa: ANN001, ANN202
        saves.append(path)
        if len(saves) == 2:
            with open(path, "wb") as fh:
                fh.write(b"PK\x03\x04 half a checkpoint")
                fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, path, *args, **kwargs)

    torch.save = dying_save
    qwen(work_dir)


def test_resume_after_kill_9_mid_checkpoint_is_bit_identical(tmp_path):
    reference = qwen(tmp_path / "whole")

    work = tmp_path / "killed"
    code = f"from tests.test_finetune import run_until_killed; run_until_killed({str(work)!r})"
    env = os.environ | {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert [p.name for p in checkpoints(work)] == ["checkpoint-00000002.pt"]
    assert [p.name for p in work.iterdir() if p.name.endswith(".tmp")]  # the half-written one, under its temporary name

    resumed = qwen(work)
    assert resumed.resumed_from == 2
    assert not [p.name for p in work.iterdir() if p.name.endswith(".tmp")]  # the dead writer's temporary is cleared
    assert resumed.log == reference.log
    assert_same_weights(resumed.model, reference.model)


class Stop(Exception):
    pass


def stop_after(step: int):  # noqa: ANN201
    def on_step(record: dict) -> None:
        if record["step"] == step:
            raise Stop

    return on_step


@pytest.mark.parametrize(
    ("mode", "overrides"),
    [("lora", {"lora": {"r": 2, "dropout": 0.1}}), ("lora_experts", {"lora": {"r": 2}}), ("full", {})],
)
def test_resume_after_a_stop_is_bit_identical(mode, overrides, tmp_path):
    """Stopped after step 3 (checkpoint at 2); LoRA with dropout also needs the RNG state restored."""
    cfg = config(mode=mode, **overrides)
    selection = None if MODES[mode].needs_selection else {}
    reference = qwen(tmp_path / "whole", cfg, selection)
    with pytest.raises(Stop):
        qwen(tmp_path / "stopped", cfg, selection, on_step=stop_after(3))
    resumed = qwen(tmp_path / "stopped", cfg, selection)
    assert resumed.resumed_from == 2 and resumed.log == reference.log
    assert_same_weights(resumed.model, reference.model)


def test_a_finished_run_resumes_at_its_end_without_training(tmp_path):
    first = qwen(tmp_path)
    again = qwen(tmp_path)
    assert again.resumed_from == 6 and again.log == first.log
    assert [p.name for p in checkpoints(tmp_path)] == ["checkpoint-00000006.pt", "checkpoint-00000004.pt"]
    assert_same_weights(again.model, first.model)


def test_a_checkpoint_of_another_setup_is_refused(tokenizer, tmp_path):
    with pytest.raises(Stop):
        qwen(tmp_path, selection={1: [0]}, on_step=stop_after(2))
    with pytest.raises(CheckpointMismatch, match=r"config lr 0.01 -> 0.02"):
        qwen(tmp_path, config(lr=2e-2), selection={1: [0]})
    with pytest.raises(CheckpointMismatch, match=r"selection \{'1': \[0\]\} -> \{'1': \[0, 1\]\}"):
        qwen(tmp_path, selection={1: [0, 1]})
    with pytest.raises(CheckpointMismatch, match=r"examples \(another set of examples or tokenization\)"):
        finetune(build("qwen3_moe"), tokenizer, EXAMPLES[:-1], {1: [0]}, config(), tmp_path, progress=False)
    templated = build_tokenizer()
    templated.chat_template = templated.chat_template.replace("{{ message['content'] }}", "the {{ message['content'] }}")
    with pytest.raises(CheckpointMismatch, match=r"examples \(another set of examples or tokenization\)"):
        finetune(build("qwen3_moe"), templated, EXAMPLES, {1: [0]}, config(), tmp_path, progress=False)
    with pytest.raises(CheckpointMismatch, match=r"model \(another source model"):
        finetune(build("qwen3_moe", seed=1), tokenizer, EXAMPLES, {1: [0]}, config(), tmp_path, progress=False)
    # how often checkpoints are written is not part of the setup
    resumed = qwen(tmp_path, config(checkpoint_every=5), selection={1: [0]})
    assert resumed.resumed_from == 2


def test_a_corrupt_checkpoint_is_skipped_for_the_one_before(tmp_path, capsys):
    reference = qwen(tmp_path / "whole")
    work = tmp_path / "work"
    with pytest.raises(Stop):
        qwen(work, on_step=stop_after(4))
    newest = work / "checkpoint-00000004.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated, e.g. by a full disk
    (work / "checkpoint-00000003.pt").write_bytes(b"not a checkpoint")
    resumed = qwen(work)
    said = capsys.readouterr().err
    assert "ignoring checkpoint" in said and "checkpoint-00000004.pt" in said and "checkpoint-00000003.pt" in said
    assert resumed.resumed_from == 2 and resumed.log == reference.log
    assert_same_weights(resumed.model, reference.model)


# --- data, loss and schedule ---


def test_prompt_tokens_carry_label_minus_100(tokenizer):
    ids = tokenizer.convert_tokens_to_ids
    prompt = ids(["<|im_start|>", "user", "what", "is", "the", "dose", "<|im_end|>", "<|im_start|>", "assistant"])
    response = ids(["one", "mg", "<|im_end|>"])
    encoded = encode_example(tokenizer, "what is the dose", "one mg", 64)
    assert encoded.input_ids == prompt + response
    assert encoded.labels == [IGNORE] * 9 + response
    assert encoded.loss_tokens() == 3
    assert encode_example(tokenizer, "what is the dose", "one mg", 10).labels == [IGNORE] * 9 + response[:1]

    batch = collate([encoded, encode_example(tokenizer, "yes", "no", 64)], tokenizer.pad_token_id)
    assert batch["labels"][1].tolist() == [IGNORE] * 6 + ids(["no", "<|im_end|>"]) + [IGNORE] * 4
    assert batch["attention_mask"][1].tolist() == [1] * 8 + [0] * 4
    assert batch["input_ids"][1, 8:].tolist() == [tokenizer.pad_token_id] * 4


def test_tokens_after_the_end_of_turn_are_dropped():
    tokenizer = build_tokenizer()
    tokenizer.chat_template = tokenizer.chat_template.replace("<|im_end|>", "<|im_end|> <|endoftext|>")
    encoded = encode_example(tokenizer, "yes", "no", 64)
    assert encoded.input_ids[-2:] == tokenizer.convert_tokens_to_ids(["no", "<|im_end|>"])
    assert encoded.labels[-3:] == [IGNORE] + tokenizer.convert_tokens_to_ids(["no", "<|im_end|>"])


def test_the_step_loss_is_the_response_token_mean_plus_the_weighted_balance_loss(tokenizer, tmp_path):
    """One step of one micro-batch: lm_loss is transformers' own mean CE over the labels, balance_loss its aux_loss."""
    model = build("qwen3_moe")
    model.router_aux_loss_coef = model.config.router_aux_loss_coef = 123.0  # what transformers adds; never used here
    batch = [encode_example(tokenizer, e["prompt"], e["response"], 64) for e in EXAMPLES[:4]]
    inputs = collate(batch, tokenizer.pad_token_id)
    with torch.no_grad():
        out = model(**inputs, output_router_logits=True)
    cfg = config(batch_size=4, micro_batch_size=4, epochs=1, balance_loss_coef=0.05)
    examples = EXAMPLES[:4]
    # the epoch order of 4 examples is a permutation; the step's losses do not depend on it within one micro-batch
    record = finetune(model, tokenizer, examples, {1: [0]}, cfg, tmp_path, progress=False).log[0]
    expected_lm = float(out.loss) - 123.0 * float(out.aux_loss)
    assert math.isclose(record["lm_loss"], expected_lm, rel_tol=1e-5)
    assert math.isclose(record["balance_loss"], float(out.aux_loss), rel_tol=1e-6)
    assert math.isclose(record["loss"], record["lm_loss"] + 0.05 * record["balance_loss"], rel_tol=1e-12)
    assert record["tokens"] == sum(example.loss_tokens() for example in batch)


def test_gradient_accumulation_gives_the_whole_batch_gradient(tokenizer, monkeypatch):
    """Micro-batches of 1 and one micro-batch of 4 give the same gradient (balance loss off: it is per micro-batch)."""
    from expertlab.finetune import loop
    from expertlab.finetune.data import encode_examples

    grads = []
    def keep_gradients(optimizer, trainable, lr, config) -> float:  # noqa: ANN001
        grads.append([tensor.param.grad.clone() for tensor in trainable.tensors])
        return 0.0

    monkeypatch.setattr(loop, "optimizer_step", keep_gradients)
    batch = encode_examples(tokenizer, EXAMPLES[:4], 64, {})
    for micro in (1, 4):
        cfg = config(mode="full", batch_size=4, micro_batch_size=micro, balance_loss_coef=0.0)
        trainable = MODES["full"].prepare(build("qwen3_moe"), {}, cfg)
        loop.train_step(trainable, None, batch, 1e-2, tokenizer.pad_token_id, "cpu", cfg)
    assert len(grads) == 2
    for one, whole in zip(*grads):
        torch.testing.assert_close(one, whole, rtol=1e-4, atol=1e-6)


def test_schedule_follows_its_formula():
    cosine = FinetuneConfig(lr=1e-3, min_lr=1e-4, warmup_ratio=0.1)
    assert warmup_steps(20, 0.1) == 2 and warmup_steps(30, 0.1) == 3 and warmup_steps(20, 0.05) == 1
    assert warmup_steps(128, 0.05) == 7  # A.6's ratio: ceil(6.4)
    assert learning_rate(0, 20, cosine) == 5e-4  # 1e-3 x 1/2
    assert learning_rate(1, 20, cosine) == 1e-3  # warm-up reaches lr ...
    assert learning_rate(2, 20, cosine) == 1e-3  # ... and the decay starts from it
    assert learning_rate(19, 20, cosine) == 1e-4  # min_lr at the last step
    weight = 0.5 * (1 + math.cos(math.pi * 8 / 17))  # step 10: progress (10 - 2) / (20 - 1 - 2)
    assert learning_rate(10, 20, cosine) == pytest.approx(weight * 1e-3 + (1 - weight) * 1e-4, rel=1e-12)
    linear = cosine.model_copy(update={"schedule": "linear"})
    assert learning_rate(19, 20, linear) == 1e-4 and learning_rate(2, 20, linear) == 1e-3
    assert learning_rate(10, 20, linear) == pytest.approx(9 / 17 * 1e-3 + 8 / 17 * 1e-4, rel=1e-12)
    constant = cosine.model_copy(update={"schedule": "constant"})
    assert learning_rate(19, 20, constant) == 1e-3 and learning_rate(0, 20, constant) == 5e-4


def test_the_run_logs_the_schedule_it_used_and_shows_progress(tokenizer, tmp_path, capsys):
    cfg = config()
    result = finetune(build("qwen3_moe"), tokenizer, EXAMPLES, {1: [0]}, cfg, tmp_path / "work", progress=True)
    assert [r["step"] for r in result.log] == [1, 2, 3, 4, 5, 6] and [r["epoch"] for r in result.log] == [0, 0, 0, 1, 1, 1]
    assert result.warmup_steps == 2  # ceil(0.2 x 6)
    assert [r["lr"] for r in result.log] == [learning_rate(s, 6, cfg) for s in range(6)]
    assert result.log[0]["lr"] == 5e-3 and result.log[-1]["lr"] == 1e-3
    assert [r["tokens"] for r in result.log[:3]] != [0, 0, 0]
    assert "finetune experts" in capsys.readouterr().err

    save_finetuned(result, tokenizer, tmp_path / "out")
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, result.model.state_dict()[name]), name
    import json

    written = json.loads((tmp_path / "out" / "finetune_log.json").read_text())
    assert written["log"] == result.log and written["selection"] == {"1": [0]} and written["total_steps"] == 6


# --- bad inputs ---


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        ({7: [0]}, r"layer 7 has no routed experts \(MoE layers: 0-1\)"),
        ({1: [8]}, r"layer 1: expert ids \[8\] outside 0..7"),
        ({1: [-1, 2]}, r"layer 1: expert ids \[-1\] outside 0..7"),
        ({1: [2, 2, 3]}, r"layer 1: expert ids \[2\] listed twice"),
        ({1: []}, r"layer 1: no experts listed"),
        ({"1": [0]}, r"layer '1' is not an integer"),
        ({0: [9], 5: [1]}, r"layer 0: expert ids \[9\] outside 0..7; layer 5 has no routed experts"),
        ({}, r"mode 'experts' trains selected experts: the selection is empty"),
    ],
)
def test_a_selection_that_does_not_fit_the_model_is_refused(selection, message, tokenizer, tmp_path):
    with pytest.raises(BadSelection, match=message):
        finetune(build("qwen3_moe"), tokenizer, EXAMPLES, selection, config(), tmp_path, progress=False)
    assert not tmp_path.joinpath("checkpoint-00000001.pt").exists()


def test_a_dense_layer_is_not_a_moe_layer(tokenizer, tmp_path):
    with pytest.raises(BadSelection, match=r"layer 1 has no routed experts \(MoE layers: 0, 2-3\)"):
        finetune(build("qwen2_moe"), tokenizer, EXAMPLES, {1: [0]}, config(), tmp_path, progress=False)


def test_modes_without_a_selection_refuse_one(tokenizer, tmp_path):
    with pytest.raises(BadSelection, match=r"mode 'full' trains no selected experts: pass no selection \(got layers \[1\]"):
        finetune(build("qwen3_moe"), tokenizer, EXAMPLES, {1: [0]}, config(mode="full"), tmp_path, progress=False)


@pytest.mark.parametrize(
    ("examples", "max_length", "message"),
    [
        ([], 64, r"no training examples"),
        ([{"prompt": "yes"}], 64, r"example 0: 'response' is missing"),
        ([{"prompt": "yes", "response": " "}], 64, r"example 0: 'response' is ' '"),
        (["yes"], 64, r"example 0 is a str, not a mapping"),
        (EXAMPLES[:2], 9, r"2 example\(s\) keep no response token within max_length 9 \(examples 0, 1\)"),
    ],
)
def test_unusable_examples_are_refused(examples, max_length, message, tokenizer, tmp_path):
    with pytest.raises(BadExamples, match=message):
        finetune(build("qwen3_moe"), tokenizer, examples, {1: [0]}, config(max_length=max_length), tmp_path, progress=False)


def test_a_template_that_renders_the_prompt_otherwise_before_a_response_is_refused():
    tokenizer = build_tokenizer()  # the generation prompt says "assistant answer", the answered turn "assistant"
    tokenizer.chat_template = tokenizer.chat_template.replace("assistant {% endif %}", "assistant answer {% endif %}")
    with pytest.raises(BadExamples, match=r"renders the prompt differently with the response after it"):
        encode_example(tokenizer, "yes", "no", 64)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"batch_size": 10, "micro_batch_size": 4}, r"micro_batch_size 4 does not divide batch_size 10"),
        ({"mode": "expert"}, r"unknown fine-tuning mode 'expert' \(did you mean 'experts'\?\)"),
        ({"mode": "lora_experts", "lora": {"dropout": 0.1}}, r"lora.dropout 0.1: LoRA on fused expert tensors"),
        ({"min_lr": 1e-3, "lr": 1e-4}, r"min_lr 0.001 exceeds lr 0.0001"),
        ({"learning_rate": 1e-4}, r"learning_rate\n  Extra inputs are not permitted"),
        ({"schedule": "step"}, r"schedule\n  Input should be 'constant', 'linear' or 'cosine'"),
    ],
)
def test_a_bad_config_is_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        FinetuneConfig.model_validate(fields)


def test_config_defaults_are_the_papers_tool_use_recipe():
    cfg = FinetuneConfig()
    recipe = (cfg.lr, cfg.schedule, cfg.warmup_ratio, cfg.min_lr, cfg.batch_size, cfg.balance_loss_coef)
    assert recipe == (1e-5, "cosine", 0.05, 1e-6, 128, 5e-2)
    assert cfg.epochs == 3 and FinetuneConfig(mode="full").epochs == 1 and FinetuneConfig(epochs=2).epochs == 2
