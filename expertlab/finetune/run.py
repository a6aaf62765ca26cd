"""A source model + its expert selection + the fine-tuning demonstrations -> a fine-tuned checkpoint (a variant).

The checkpoint is an ordinary model directory of the source architecture (LoRA merged) with the tokenizer,
`finetune_log.json` (config, selection, per-step losses) and `expertlab_variant.json` (the fine-tuned variant's
record), so `generate` evaluates it like any other variant. Runs in progress checkpoint to
`finetune.work_dir/<variant path>`, outside DVC's outputs: a killed run resumes there, bit for bit, and the
directory is removed once the checkpoint is written.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from expertlab.errors import ExpertlabError


def read_selection_file(path: str | Path, strategy: str) -> dict[int, list[int]] | None:
    """A select-experts `<strategy>.json`: layer -> expert ids, or None for a strategy that selects none."""
    from expertlab.io import read_json

    record = read_json(path)
    if not isinstance(record, dict) or record.get("strategy") != strategy:
        raise ExpertlabError(f"{path}: not the selection of strategy {strategy!r}")
    chosen = record.get("selection")
    return None if chosen is None else {int(layer): list(experts) for layer, experts in chosen.items()}


def finetune_artifact(
    model_dir: str | Path, selection_file: str | Path, out: str | Path, params: Any, model: str, strategy: str, seed: int,
    toy_dir: str | Path, progress: bool = True,
) -> Any:
    """Train (model, strategy, seed) as params.finetune says; write the checkpoint to OUT; return its record."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from expertlab.finetune.loop import finetune, save_finetuned
    from expertlab.finetune.sources import load_examples
    from expertlab.io import OutputDir, write_json
    from expertlab.moe.families import adapter_for
    from expertlab.moe.prune import VARIANT_FILE
    from expertlab.records import CheckpointRecord
    from expertlab.variants import Variant

    model_dir, plan = Path(model_dir), params.finetune
    for given, key, allowed in ((strategy, "strategies", plan.strategies), (seed, "seeds", plan.seeds)):
        if given not in allowed:
            raise ExpertlabError(f"finetune: {given!r} is not in finetune.{key} ({', '.join(map(str, allowed)) or 'none'})")
    output = OutputDir(out, "finetune", inputs=[model_dir, selection_file])
    output.check()
    selection = read_selection_file(selection_file, strategy)
    examples = load_examples(plan.data, plan.domain, toy_dir, params.evaluation.data_dir)
    config = plan.run_config(strategy, seed)
    variant = Variant(model=model, finetune=strategy, finetune_seed=seed)
    work_dir = Path(plan.work_dir) / variant.path
    loaded = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto").to(torch.device(plan.device))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    routing = adapter_for(loaded).routing(loaded.config)
    where = f"{len(selection)} layer(s) x {max(map(len, selection.values()))} experts" if selection else "no selection"
    print(f"finetune: {variant.id}: mode {config.mode}, {len(examples)} examples, {config.epochs} epoch(s), {where}")
    result = finetune(loaded, tokenizer, examples, selection, config, work_dir, progress=progress)
    record = CheckpointRecord(
        **variant.record(None, routing.top_k), source_model_dir=str(model_dir), source_num_experts=routing.num_experts,
        dropped_tensors=0, finetuned_from=str(model_dir),
    )  # fmt: skip
    with output.writing() as tmp:
        save_finetuned(result, tokenizer, tmp)
        write_json(tmp / VARIANT_FILE, record.dump())
    shutil.rmtree(work_dir, ignore_errors=True)
    resumed = f", resumed at step {result.resumed_from}" if result.resumed_from else ""
    last = result.log[-1] if result.log else {}
    print(
        f"finetune: {variant.id}: {result.total_steps} steps, {result.trainable_parameters} parameters trained, "
        f"final loss {last.get('loss', float('nan')):.4f}{resumed}"
    )
    return record
