"""The finetune stage on a saved tiny model: a checkpoint that loads as the source architecture, whose frozen weights
are bit for bit the source's after the save and load, recorded as its fine-tuned variant."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from expertlab.errors import ExpertlabError
from expertlab.finetune.run import finetune_artifact
from expertlab.params import parse_params
from tests.pipeline_study import ROOT

EXAMPLES = [
    {"prompt": f"what is the dose of {drug} for {condition}", "response": f"{amount} mg"}
    for drug, condition, amount in (
        ("aspirin", "pain", "one"), ("ibuprofen", "fever", "two"), ("metformin", "diabetes", "three"),
        ("insulin", "diabetes", "four"), ("aspirin", "fever", "five"), ("ibuprofen", "pain", "six"),
    )
]  # fmt: skip


def study(tmp_path: Path, **training: object):  # noqa: ANN201
    data = copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text()))
    (tmp_path / "examples.jsonl").write_text("".join(json.dumps(row) + "\n" for row in EXAMPLES))
    data["finetune"].update(
        data={"source": "jsonl", "path": str(tmp_path / "examples.jsonl"), "samples": None, "seed": 0},
        training={"lr": 0.01, "min_lr": 0.001, "batch_size": 2, "micro_batch_size": 2, "max_length": 32,
                  "weight_decay": 0.1, "balance_loss_coef": 0.05, **training},
        work_dir=str(tmp_path / "work"),
    )  # fmt: skip
    return parse_params(data, "params.yaml")


def selection_file(tmp_path: Path, strategy: str, chosen: dict[str, list[int]] | None) -> Path:
    path = tmp_path / f"{strategy}.json"
    path.write_text(json.dumps({"strategy": strategy, "ranking": strategy if chosen else None, "selection": chosen}))
    return path


def tensors(directory: Path) -> dict:
    from safetensors.torch import load_file

    found = {}
    for path in sorted(directory.glob("*.safetensors")):
        found |= load_file(path)
    return found


def test_edmrs_trains_only_its_experts_through_save_and_load(tmp_path: Path, tiny_moe_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    params = study(tmp_path)
    out = tmp_path / "checkpoints" / "toy" / "source-ft-edmrs-0"
    record = finetune_artifact(
        tiny_moe_dir, selection_file(tmp_path, "edmrs", {"1": [0, 2]}), out, params, "toy", "edmrs", 0, tmp_path, progress=False
    )
    assert record.variant_id == "toy:source:ft-edmrs-0" and record.finetune == "edmrs" and record.criterion is None
    assert json.loads((out / "expertlab_variant.json").read_text())["variant_id"] == "toy:source:ft-edmrs-0"
    assert not (tmp_path / "work" / "toy" / "source-ft-edmrs-0").exists()  # resumable state gone once written
    log = json.loads((out / "finetune_log.json").read_text())
    assert log["selection"] == {"1": [0, 2]} and log["total_steps"] == 3 * 3  # 6 examples / batch 2, A.6's 3 epochs

    source = AutoModelForCausalLM.from_pretrained(tiny_moe_dir)
    tuned = AutoModelForCausalLM.from_pretrained(out)
    before, after = source.state_dict(), tuned.state_dict()
    assert before.keys() == after.keys()
    changed = []
    for name, value in before.items():
        if ".layers.1.mlp.experts." in name:
            for expert in range(value.shape[0]):
                same = torch.equal(value[expert], after[name][expert])
                assert same == (expert not in (0, 2)), (name, expert)
                changed += [] if same else [(name, expert)]
        else:
            assert torch.equal(value, after[name]), name
    assert {expert for _, expert in changed} == {0, 2}


def test_a_strategy_reads_only_its_own_selection(tmp_path: Path, tiny_moe_dir: Path) -> None:
    params = study(tmp_path)
    with pytest.raises(ExpertlabError, match=r"finetune: 'nope' is not in finetune.strategies \(full, af, edmrs, lora\)"):
        finetune_artifact(tiny_moe_dir, tmp_path / "nope.json", tmp_path / "out", params, "toy", "nope", 0, tmp_path)
    with pytest.raises(ExpertlabError, match=r"finetune: 7 is not in finetune.seeds \(0\)"):
        finetune_artifact(tiny_moe_dir, tmp_path / "af.json", tmp_path / "out", params, "toy", "af", 7, tmp_path)
    with pytest.raises(ExpertlabError, match="not the selection of strategy 'af'"):
        finetune_artifact(
            tiny_moe_dir, selection_file(tmp_path, "edmrs", {"1": [0]}), tmp_path / "out", params, "toy", "af", 0, tmp_path
        )
    assert not (tmp_path / "out").exists()


def test_full_fine_tuning_of_the_same_inputs_writes_the_same_bytes(tmp_path: Path, tiny_moe_dir: Path) -> None:
    params = study(tmp_path, epochs=1)
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run
        finetune_artifact(tiny_moe_dir, selection_file(tmp_path, "full", None), out, params, "toy", "full", 0, tmp_path, progress=False)
        outs.append(tensors(out))
    first, second = outs
    assert first.keys() == second.keys() and all(first[name].equal(second[name]) for name in first)
    source = tensors(tiny_moe_dir)
    assert any(not source[name].equal(first[name]) for name in source if name in first)
