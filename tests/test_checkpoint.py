"""Checkpoint pruning by byte ranges, on the Qwen3-MoE tiny model: any dtype, sharding and layout.

The per-family contract (equal to in-memory pruning, loadable, key format) is in test_families.py.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from expertlab.io import OUTPUT_MARKER
from expertlab.moe.checkpoint import PrunePlan, read_safetensors_header, write_safetensors
from expertlab.moe.families import ExpertTensors
from expertlab.moe.prune import prune_checkpoint, prune_model
from expertlab.variants import Variant
from tests.tiny_models.qwen3_moe import build as tiny_qwen3_moe

KEPT = [[0, 2, 5, 7], [1, 2, 3, 6]]


VARIANT = Variant(model="tiny", calibration="biomed", seed=0, criterion="reap", ratio=0.5)

def _save(model, path, **kwargs):  # noqa: ANN001, ANN202
    model.save_pretrained(path, **kwargs)
    (path / "tokenizer_config.json").write_text('{"note": "copied unchanged"}\n')
    return path


def _mask(tmp_path, kept=KEPT):  # noqa: ANN001, ANN202
    path = tmp_path / "mask.json"
    path.write_text(json.dumps(kept))
    return path


def test_bf16_sharded_checkpoint_keeps_dtype_shards_and_index(tmp_path):
    from transformers import AutoModelForCausalLM

    model = tiny_qwen3_moe().to(torch.bfloat16)
    source = _save(model, tmp_path / "source", max_shard_size="8KB")
    index = json.loads((source / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) >= 2  # really sharded

    prune_checkpoint(source, _mask(tmp_path), tmp_path / "pruned")
    pruned = tmp_path / "pruned"
    new_index = json.loads((pruned / "model.safetensors.index.json").read_text())
    tensors = {}
    for shard in sorted(set(new_index["weight_map"].values())):
        part = load_file(pruned / shard)
        assert all(new_index["weight_map"][name] == shard for name in part)
        tensors.update(part)
    assert set(tensors) == set(new_index["weight_map"])
    assert new_index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in tensors.values())
    assert {t.dtype for t in tensors.values()} == {torch.bfloat16}

    expected = prune_model(tiny_qwen3_moe().to(torch.bfloat16), KEPT).state_dict()
    reloaded = AutoModelForCausalLM.from_pretrained(pruned, dtype=torch.bfloat16)
    for name, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert not (pruned / "expertlab_variant.json").exists()  # no variant given: a plain checkpoint


def test_stacked_expert_tensors_are_sliced_along_the_expert_axis(tmp_path):
    """A checkpoint saved in the fused layout (experts.gate_up_proj [E, 2I, H]) keeps that layout."""
    from transformers import AutoModelForCausalLM

    model = tiny_qwen3_moe()
    source = tmp_path / "source"
    model.config.save_pretrained(source)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    assert "model.layers.0.mlp.experts.gate_up_proj" in state
    save_file(state, source / "model.safetensors", metadata={"format": "pt"})

    prune_checkpoint(source, _mask(tmp_path), tmp_path / "pruned")
    pruned = load_file(tmp_path / "pruned" / "model.safetensors")
    assert set(pruned) == set(state)
    for layer, kept in enumerate(KEPT):
        for name in ("experts.gate_up_proj", "experts.down_proj", "gate.weight"):
            key = f"model.layers.{layer}.mlp.{name}"
            assert torch.equal(pruned[key], state[key][kept])
    reloaded, info = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


def _handmade(path, tensors):  # noqa: ANN001, ANN202
    save_file(tensors, path)
    return read_safetensors_header(path)


def test_rows_and_per_expert_tensors_by_hand(tmp_path):
    # 3 experts: a stacked int32 tensor [3, 2] = [[0, 1], [2, 3], [4, 5]], a router [3] and per-expert keys
    source = tmp_path / "a.safetensors"
    entries, metadata = _handmade(
        source,
        {
            "m.experts.stacked": torch.arange(6, dtype=torch.int32).reshape(3, 2),
            "m.gate": torch.tensor([10, 11, 12], dtype=torch.int16),
            "m.experts.0.w": torch.tensor([100.0]),
            "m.experts.1.w": torch.tensor([101.0]),
            "m.experts.2.w": torch.tensor([102.0]),
            "other": torch.tensor([7], dtype=torch.int8),
        },
    )
    plan = PrunePlan([ExpertTensors(layer=0, experts="m.experts", router_rows=("m.gate",))], [[0, 2]], num_experts=3)
    outputs = [out for out in map(plan.apply, entries) if out is not None]
    plan.check_complete()
    stacked = next(out for out in outputs if out.name == "m.experts.stacked")
    assert len(stacked.ranges) == 2  # rows 0 and 2 are not adjacent
    write_safetensors(tmp_path / "b.safetensors", source, outputs, metadata)
    result = load_file(tmp_path / "b.safetensors")
    assert result["m.experts.stacked"].tolist() == [[0, 1], [4, 5]]
    assert result["m.gate"].tolist() == [10, 12]
    assert (result["m.experts.0.w"].item(), result["m.experts.1.w"].item()) == (100.0, 102.0)
    assert "m.experts.2.w" not in result and result["other"].tolist() == [7]
    raw = (tmp_path / "b.safetensors").read_bytes()
    assert (8 + struct.unpack("<Q", raw[:8])[0]) % 8 == 0  # data starts 8-byte aligned

    # an expert axis other than 0: a [2, 3] tensor keeps columns 0 and 2 of both rows
    columns, column_metadata = _handmade(
        tmp_path / "c.safetensors", {"m.bias": torch.arange(6).reshape(2, 3), "m.experts.w": torch.zeros(3, 1)}
    )
    plan = PrunePlan([ExpertTensors(0, "m.experts", ("m.bias",), axes=(("m.bias", 1),))], [[0, 2]], num_experts=3)
    outputs = [plan.apply(entry) for entry in columns]
    write_safetensors(tmp_path / "d.safetensors", tmp_path / "c.safetensors", outputs, column_metadata)
    assert load_file(tmp_path / "d.safetensors")["m.bias"].tolist() == [[0, 2], [3, 5]]

    adjacent = PrunePlan([ExpertTensors(0, "m.experts", ("m.gate",))], [[1, 2]], num_experts=3)
    merged = adjacent.apply(next(e for e in entries if e.name == "m.experts.stacked"))
    assert len(merged.ranges) == 1  # rows 1 and 2 are copied as one range


def test_plan_refuses_a_checkpoint_that_does_not_match(tmp_path):
    entries, _ = _handmade(tmp_path / "a.safetensors", {"m.experts.w": torch.zeros(4, 2), "m.gate": torch.zeros(3)})
    plan = PrunePlan([ExpertTensors(0, "m.experts", ("m.gate",))], [[0, 1]], num_experts=3)
    with pytest.raises(ValueError, match=r"'m.experts.w' has shape \[4, 2\]; expected the expert count 3"):
        plan.apply(entries[0] if entries[0].name == "m.experts.w" else entries[1])
    entries, _ = _handmade(tmp_path / "b.safetensors", {"m.experts.w": torch.zeros(3, 2)})
    plan = PrunePlan([ExpertTensors(7, "m.experts", ("m.gate",))], [[0, 1]], num_experts=3)
    for entry in entries:
        plan.apply(entry)
    with pytest.raises(ValueError, match=r"no tensor 'm.gate' \(router of MoE layer 7\)"):
        plan.check_complete()
    with pytest.raises(ValueError, match="mask has 2 layers, the model has 1"):
        PrunePlan([ExpertTensors(0, "m.experts", ("m.gate",))], [[0], [1]], num_experts=3)


def test_bad_inputs_fail_clearly_and_leave_the_output_alone(tmp_path):
    source = _save(tiny_qwen3_moe(), tmp_path / "source")
    out = tmp_path / "pruned"
    out.mkdir()
    (out / "keep.txt").write_text("an earlier result")
    (out / OUTPUT_MARKER).write_text("prune\n")  # of an earlier prune: replaceable, but not by a failed one

    def attempt(mask, match, model_dir=source, **kwargs):  # noqa: ANN001, ANN202
        with pytest.raises((ValueError, FileNotFoundError, KeyError), match=match):
            prune_checkpoint(model_dir, _mask(tmp_path, mask), out, **kwargs)
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".pruned")] == []  # no temp left
        assert (out / "keep.txt").read_text() == "an earlier result"

    attempt([[0, 1]], "mask has 1 layers, the model has 2")
    attempt([[0], [1]], "fewer than top-k=2")
    attempt([[0], [1]], r"top-k 3 must lie in \[1, 2\]", top_k=3)
    attempt([[0, 8], [1, 2]], r"indices must be integers in \[0, 8\)")

    bin_only = tmp_path / "bin-only"
    bin_only.mkdir()
    (bin_only / "config.json").write_text((source / "config.json").read_text())
    (bin_only / "pytorch_model.bin").write_bytes(b"\0")
    attempt([[0, 1], [2, 3]], r"no safetensors weights \(found pytorch_model.bin\)", model_dir=bin_only)

    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "config.json").write_text((source / "config.json").read_text())
    raw = (source / "model.safetensors").read_bytes()
    data_start = 8 + struct.unpack("<Q", raw[:8])[0]
    (truncated / "model.safetensors").write_bytes(raw[: data_start + 100])
    attempt([[0, 1], [2, 3]], "lies outside the file", model_dir=truncated)
    (truncated / "model.safetensors").write_bytes(raw[:100])
    attempt([[0, 1], [2, 3]], "truncated safetensors file", model_dir=truncated)

    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "config.json").write_text(json.dumps({"model_type": "qwen3_mo"}))
    attempt([[0, 1], [2, 3]], "unknown model family 'qwen3_mo' \\(did you mean 'qwen3_moe'\\?\\)", model_dir=unknown)


def test_top_k_reduction_is_explicit_and_recorded(tmp_path):
    source = _save(tiny_qwen3_moe(), tmp_path / "source")
    record = prune_checkpoint(source, _mask(tmp_path, [[3], [5]]), tmp_path / "pruned", variant=VARIANT, top_k=1)
    assert record["top_k"] == 1
    config = json.loads((tmp_path / "pruned" / "config.json").read_text())
    assert config["num_experts_per_tok"] == 1
    assert json.loads((tmp_path / "pruned" / "expertlab_variant.json").read_text())["top_k"] == 1


def test_checkpoint_pruning_never_imports_torch(tmp_path):
    source = _save(tiny_qwen3_moe(), tmp_path / "source")
    code = (
        "import sys; from expertlab.moe.prune import prune_checkpoint; "
        f"prune_checkpoint({str(source)!r}, {str(_mask(tmp_path))!r}, {str(tmp_path / 'pruned')!r}); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "pruned" / "model.safetensors").is_file()


def test_inspect_counts_parameters_by_hand(tmp_path, capsys):
    from expertlab.cli import main
    from expertlab.moe.summary import summarize

    model = tiny_qwen3_moe()
    source = _save(model, tmp_path / "source")
    summary = summarize(source, [0.5, 0.75])
    per_expert = 3 * 32 * 16  # gate, up and down projections, hidden 32, expert width 16
    assert (summary.family, summary.moe_layers, summary.num_experts, summary.top_k) == ("qwen3_moe", [0, 1], 8, 2)
    assert summary.parameters == sum(p.numel() for p in model.parameters())
    assert summary.routed_expert_parameters == 2 * 8 * per_expert
    half, quarter = summary.pruned
    # each MoE layer loses 4 (then 6) experts and as many router rows of width 32
    assert (half.kept_per_layer, half.parameters) == (4, summary.parameters - 2 * 4 * (per_expert + 32))
    assert (quarter.kept_per_layer, quarter.parameters) == (2, summary.parameters - 2 * 6 * (per_expert + 32))

    # the size it predicts is the size pruning produces
    prune_checkpoint(source, _mask(tmp_path), tmp_path / "pruned")
    assert summarize(tmp_path / "pruned").parameters == half.parameters

    assert main(["inspect", str(source), "--ratio", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "MoE layers        2 of 2 decoder layers (0, 1)" in out
    assert "8 per layer, top-k 2, softmax-topk routing" in out
    assert f"{half.parameters:,}" in out
    assert main(["inspect", str(tmp_path / "nowhere")]) == 2
    assert "missing file" in capsys.readouterr().err


def test_prune_checkpoint_keeps_the_source_config_keys(tmp_path):
    from transformers import AutoModelForCausalLM

    source = _save(tiny_qwen3_moe(), tmp_path / "source")
    config = json.loads((source / "config.json").read_text())
    config["num_experts"] = config.pop("num_local_experts")  # the key Qwen3-MoE hub checkpoints use
    (source / "config.json").write_text(json.dumps(config))
    record = prune_checkpoint(source, _mask(tmp_path, [[0, 1, 2], [3, 4, 5]]), tmp_path / "pruned", variant=VARIANT)
    saved = json.loads((tmp_path / "pruned" / "config.json").read_text())
    assert saved["num_experts"] == 3 and saved["num_experts_per_tok"] == 2
    assert "num_local_experts" not in saved and "text_config" not in saved
    assert {k: v for k, v in saved.items() if k not in ("num_experts",)} == {
        k: v for k, v in config.items() if k not in ("num_experts",)
    }  # nothing else changes
    assert record["kept_per_layer"] == 3 and record["source_num_experts"] == 8
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "pruned").config.num_experts == 3
    assert json.loads((tmp_path / "pruned" / "expertlab_variant.json").read_text())["variant_id"] == VARIANT.id


def test_inspect_reports_refused_ratios_and_leaves_out_dropped_tensors(tmp_path, capsys):
    from expertlab.cli import main
    from expertlab.moe.summary import summarize
    from tests.tiny_models.deepseek_v3 import build as tiny_deepseek_v3

    source = tmp_path / "source"
    tiny_deepseek_v3().save_pretrained(source)  # 16 experts in 4 groups, top-3 from 2 groups
    state = load_file(source / "model.safetensors")
    mtp = {"model.layers.3.mlp.gate.weight": torch.zeros(16, 8)}  # a layer past num_hidden_layers
    save_file({**state, **mtp}, source / "model.safetensors", metadata={"format": "pt"})
    summary = summarize(source, [0.5, 0.875])
    half, most = summary.pruned
    assert summary.parameters == sum(t.numel() for t in state.values()) + 16 * 8
    assert half.refused is None and most.parameters is None  # 2 of 16 kept: fewer than 2 per group
    assert "group" in most.refused
    prune_checkpoint(source, _mask(tmp_path, [[g * 4 + i for g in range(4) for i in (0, 1)]] * 2), tmp_path / "pruned")
    assert summarize(tmp_path / "pruned").parameters == half.parameters  # the MTP layer is not counted
    assert main(["inspect", str(source), "--ratio", "0.875"]) == 0
    assert "refused:" in capsys.readouterr().out
