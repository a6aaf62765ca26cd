"""Model + kept-expert mask -> physically pruned model (experts, router rows, every count field)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from expertlab.io import atomic_dir, read_json, write_json
from expertlab.moe.adapters import adapter_for


def validate_mask(kept: Sequence[Sequence[int]], num_layers: int, num_experts: int) -> list[list[int]]:
    """Check a mask (one list of kept indices per MoE layer) against the model; return it sorted."""
    if not isinstance(kept, list) or not all(isinstance(layer, list) for layer in kept):
        raise ValueError("a mask is a JSON list holding one list of kept expert indices per MoE layer")
    if len(kept) != num_layers:
        raise ValueError(f"mask has {len(kept)} layers, the model has {num_layers} MoE layers")
    sizes = {len(layer) for layer in kept}
    if len(sizes) != 1:
        raise ValueError(f"mask keeps a different number of experts per layer: {sorted(sizes)}")
    result = []
    for position, layer in enumerate(kept):
        if any(not isinstance(i, int) or not 0 <= i < num_experts for i in layer):
            raise ValueError(f"mask layer {position}: indices must be integers in [0, {num_experts})")
        if len(set(layer)) != len(layer):
            raise ValueError(f"mask layer {position}: repeated expert index")
        result.append(sorted(layer))
    return result


def prune_model(model: nn.Module, kept: Sequence[Sequence[int]], top_k: int | None = None) -> nn.Module:
    """Remove every expert not in `kept` in place; expert ids become contiguous 0..M-1.

    `top_k` is the new routing top-k when the mask keeps fewer experts than the model routes to
    (only when the study explicitly allows it); otherwise the model's top-k is kept.
    """
    adapter = adapter_for(model)
    routing = adapter.routing(adapter.text_config(model.config))
    layers = adapter.moe_layers(model)
    mask = validate_mask(list(map(list, kept)), len(layers), routing.num_experts)
    remaining = len(mask[0])
    new_top_k = routing.top_k if top_k is None else top_k
    if remaining < new_top_k:
        raise ValueError(f"mask keeps {remaining} experts per layer, fewer than top-k={new_top_k}")
    for layer, indices in zip(layers, mask):
        adapter.prune_layer(layer, torch.tensor(indices, dtype=torch.long))
    adapter.set_counts(model, remaining, new_top_k)
    return model


def restrict_routers(model: nn.Module, kept: Sequence[Sequence[int]]):  # noqa: ANN201
    """Restrict every router to its kept experts without removing weights; returns an undo function."""
    adapter = adapter_for(model)
    layers = adapter.moe_layers(model)
    routing = adapter.routing(adapter.text_config(model.config))
    mask = validate_mask(list(map(list, kept)), len(layers), routing.num_experts)
    undo = [adapter.restrict_router(layer, torch.tensor(idx)) for layer, idx in zip(layers, mask)]
    return lambda: [fn() for fn in undo]


VARIANT_FILE = "expertlab_variant.json"


def prune_checkpoint(
    model_dir: str | Path,
    mask_path: str | Path,
    out_dir: str | Path,
    variant: dict | None = None,
    top_k: int | None = None,
) -> dict:
    """Load a checkpoint, prune it with the mask file, save it (atomically) in the source format."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"not a model directory (no config.json): {model_dir}")
    kept = read_json(mask_path)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    source_experts = adapter_for(model).routing(model.config).num_experts
    prune_model(model, kept, top_k=top_k)
    routing = adapter_for(model).routing(model.config)
    record = dict(variant or {})
    record.update(  # provenance of the pruned checkpoint
        {
            "source_model_dir": str(model_dir),
            "source_num_experts": source_experts,
            "kept_per_layer": routing.num_experts,
            "top_k": routing.top_k,
        }
    )
    source_config = read_json(model_dir / "config.json")
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        restore_count_keys(tmp / "config.json", source_config, routing.num_experts, routing.top_k)
        if variant is not None:
            write_json(tmp / VARIANT_FILE, record)
    return record


COUNT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")
TOP_K_KEYS = ("num_experts_per_tok", "moe_k", "top_k")


def restore_count_keys(config_path: Path, source_config: dict, num_experts: int, top_k: int) -> None:
    """Write the counts under the key names the source config.json used.

    transformers may save an aliased name (e.g. `num_local_experts` for Qwen3-MoE's
    `num_experts`); readers pinned to the source's key (vLLM, older transformers) must see M.
    """
    config = read_json(config_path)
    for section in (None, "text_config"):
        source = source_config if section is None else source_config.get(section)
        target = config if section is None else config.get(section)
        if not isinstance(source, dict) or not isinstance(target, dict):
            continue
        for key in COUNT_KEYS:
            if key in source or key in target:
                target[key] = num_experts
        for key in TOP_K_KEYS:
            if key in source or key in target:
                target[key] = top_k
    write_json(config_path, config)


def load_variant(model_dir: str | Path) -> dict | None:
    path = Path(model_dir) / VARIANT_FILE
    return read_json(path) if path.is_file() else None
