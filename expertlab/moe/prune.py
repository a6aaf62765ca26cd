"""Kept-expert mask -> physically pruned model: a loaded model in place, or a checkpoint on disk.

Both remove the experts the mask does not keep, renumber the rest 0..M-1, slice the router
rows and update every count field (DESIGN.md, "Physical pruning"). torch is imported only by
the in-memory functions; pruning a checkpoint never loads it.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from expertlab.io import OUTPUT_MARKER, OutputDir, json_type, read_json, write_json
from expertlab.moe.checkpoint import INDEX_FILE, prune_safetensors, tensor_names
from expertlab.moe.families import FAMILIES, FamilyAdapter, Routing, adapter_for, config_dict
from expertlab.records import CheckpointRecord, parse_meta

if TYPE_CHECKING:
    from torch import nn

    from expertlab.variants import Variant


def group_size(routing: Routing) -> int:
    """Experts per routing group (the whole layer for routers without groups)."""
    if routing.n_group > 1 and routing.num_experts % routing.n_group:
        raise ValueError(f"{routing.num_experts} experts do not split into {routing.n_group} routing groups")
    return routing.num_experts // max(routing.n_group, 1)


def read_mask(path: str | Path) -> list[list[int]]:
    """A mask file's kept-expert lists, checked for shape (validate_mask checks them against a model)."""
    kept = read_json(path)
    if isinstance(kept, list) and kept and all(isinstance(layer, list) for layer in kept):
        return kept
    found = (
        "an empty list" if kept == []
        else "a list whose entries are not all lists" if isinstance(kept, list)
        else f"a JSON {json_type(kept)}"
    )  # fmt: skip
    raise ValueError(f"{path}: a mask is a JSON list of kept expert indices per MoE layer, found {found}")


def validate_mask(
    kept: Sequence[Sequence[int]], num_layers: int, num_experts: int, group: int | None = None
) -> list[list[int]]:
    """Check a mask (one list of kept indices per MoE layer) against the model; return it sorted.

    With routing groups of `group` experts, every group must keep the same number of experts
    (group-limited routers pick whole groups first; an uneven drop changes which groups win).
    """
    if not isinstance(kept, list) or not all(isinstance(layer, list) for layer in kept):
        raise ValueError("a mask is a JSON list holding one list of kept expert indices per MoE layer")
    if len(kept) != num_layers:
        raise ValueError(f"mask has {len(kept)} layers, the model has {num_layers} MoE layers")
    sizes = {len(layer) for layer in kept}
    if len(sizes) != 1:
        raise ValueError(f"mask keeps a different number of experts per layer: {sorted(sizes)}")
    result = []
    for position, layer in enumerate(kept):
        if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < num_experts for i in layer):
            raise ValueError(f"mask layer {position}: indices must be integers in [0, {num_experts})")
        if len(set(layer)) != len(layer):
            raise ValueError(f"mask layer {position}: repeated expert index")
        if not layer:
            raise ValueError(f"mask layer {position}: keeps no expert")
        if group and group < num_experts:
            per_group = sorted({sum(1 for i in layer if i // group == g) for g in range(num_experts // group)})
            if len(per_group) != 1:
                raise ValueError(
                    f"mask layer {position}: routing groups of {group} experts keep unequal counts {per_group}"
                )
        result.append(sorted(layer))
    return result


def pruned_counts(
    adapter: FamilyAdapter, config: dict, routing: Routing, remaining: int, top_k: int | None
) -> tuple[int, dict]:
    """The pruned model's top-k and config.json, or the reason it cannot be pruned so (before any change).

    `top_k` lowers the routing top-k when the mask keeps fewer experts than the model routes to
    (only when the study explicitly allows it); None keeps the model's.
    """
    new_top_k = routing.top_k if top_k is None else top_k
    if not 1 <= new_top_k <= routing.top_k:
        raise ValueError(f"top-k {new_top_k} must lie in [1, {routing.top_k}] (the source routes to {routing.top_k})")
    if remaining < new_top_k:
        raise ValueError(
            f"mask keeps {remaining} experts per layer, fewer than top-k={new_top_k} "
            "(reduce top-k explicitly with --top-k, which is recorded with the checkpoint)"
        )
    return new_top_k, adapter.pruned_config(config, remaining, new_top_k)  # the family's own refusals


def prune_model(model: nn.Module, kept: Sequence[Sequence[int]], top_k: int | None = None) -> nn.Module:
    """Remove every expert not in `kept` in place; expert ids become contiguous 0..M-1 (top_k: see pruned_counts)."""
    import torch

    adapter = adapter_for(model)
    routing = adapter.routing(model.config)
    layers = adapter.moe_layers(model)
    mask = validate_mask(list(map(list, kept)), len(layers), routing.num_experts, group_size(routing))
    remaining = len(mask[0])
    new_top_k, _ = pruned_counts(adapter, config_dict(model.config), routing, remaining, top_k)
    for layer, indices in zip(layers, mask):
        adapter.prune_layer(layer, torch.tensor(indices, dtype=torch.long))
    adapter.set_counts(model, remaining, new_top_k)
    return model


def restrict_routers(model: nn.Module, kept: Sequence[Sequence[int]]):  # noqa: ANN201
    """Restrict every router to its kept experts without removing weights; returns an undo function."""
    import torch

    adapter = adapter_for(model)
    layers = adapter.moe_layers(model)
    routing = adapter.routing(model.config)
    mask = validate_mask(list(map(list, kept)), len(layers), routing.num_experts)
    undo = [adapter.restrict_router(layer, torch.tensor(idx)) for layer, idx in zip(layers, mask)]
    return lambda: [fn() for fn in undo]


VARIANT_FILE = "expertlab_variant.json"
_REWRITTEN = {"config.json", VARIANT_FILE}


def prune_checkpoint(
    model_dir: str | Path,
    mask_path: str | Path,
    out_dir: str | Path,
    variant: Variant | None = None,
    top_k: int | None = None,
    allow_top_k_reduction: bool = False,
    progress: bool = False,
) -> dict:
    """Prune a safetensors checkpoint with a mask file into `out_dir` (atomically), in the source format.

    Tensors are copied by byte range (expertlab.moe.checkpoint): the source's tensor names,
    dtypes and sharding are kept; config.json gets the new counts under the source's keys; the
    tokenizer and every other top-level file are copied unchanged.
    """
    model_dir = Path(model_dir)
    output = OutputDir(out_dir, "prune", inputs=[model_dir, mask_path])
    output.check()
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"not a model directory (no config.json): {model_dir}")
    source_config = read_json(model_dir / "config.json")
    adapter = FAMILIES[source_config.get("model_type")]
    routing = adapter.routing(source_config)
    names = tensor_names(model_dir)
    layers = adapter.expert_tensors(source_config, names)
    dropped = adapter.dropped_tensors(source_config, names)
    kept = read_mask(mask_path)
    try:
        mask = validate_mask(kept, len(layers), routing.num_experts, group_size(routing))
    except ValueError as err:
        raise ValueError(f"{mask_path}: {err}") from None
    remaining = len(mask[0])
    if top_k is None and allow_top_k_reduction and remaining < routing.top_k:
        top_k = remaining  # the study allows routing with top-k = kept experts (select.allow_top_k_reduction)
    new_top_k, pruned_config = pruned_counts(adapter, source_config, routing, remaining, top_k)
    provenance = {"source_model_dir": str(model_dir), "source_num_experts": routing.num_experts,
                  "dropped_tensors": len(dropped)}  # fmt: skip
    record = {"kept_per_layer": remaining, "top_k": new_top_k, **provenance}
    if variant is not None:
        record = CheckpointRecord(**variant.record(remaining, new_top_k), **provenance).dump()
    with output.writing() as tmp:
        prune_safetensors(model_dir, tmp, layers, mask, routing.num_experts, dropped, progress=progress)
        write_json(tmp / "config.json", pruned_config)
        for path in sorted(model_dir.iterdir()):
            if path.is_file() and path.name not in (*_REWRITTEN, OUTPUT_MARKER) and not is_weights_file(path):
                shutil.copy2(path, tmp / path.name)
        if variant is not None:
            write_json(tmp / VARIANT_FILE, record)
    return record


def is_weights_file(path: Path) -> bool:
    """A safetensors shard or the shard index: what a checkpoint's weights are written as."""
    return path.suffix == ".safetensors" or path.name == INDEX_FILE


def load_variant(model_dir: str | Path) -> CheckpointRecord | None:
    """The variant record `expertlab prune` (or quantize) left in a checkpoint; None for any other model."""
    path = Path(model_dir) / VARIANT_FILE
    return parse_meta(read_json(path), CheckpointRecord, path) if path.is_file() else None
