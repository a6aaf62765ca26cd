"""A quantized model's integers and scales -> compressed-tensors' pack-quantized checkpoint, the W4A16
format vLLM's kernels and transformers' compressed-tensors loader read.

Tensors keep the source checkpoint's key format: transformers' own reverse conversion (the one
`save_pretrained` applies) splits the fused expert tensors (gate_up_proj [E, 2I, H], down_proj [E, H, I])
into per-expert gate/up/down projections, as hub checkpoints and vLLM's loader name them. Each
quantized `X.weight` becomes
- X.weight_packed: int32 [rows, ceil(columns x bits / 32)], compressed-tensors' `pack_to_int32`
  of the signed integers;
- X.weight_scale: [rows, groups] in the model's dtype;
- X.weight_shape: int64 [rows, columns].
Grids are symmetric (no zero points): transformers' loader of packed MoE experts reads none.
The config's `quantization_config` is compressed-tensors' own QuantizationConfig (format
pack-quantized, one group targeting Linear layers, `ignore` naming every linear layer left in full
precision: lm_head, the routers, what the scheme's `ignore` matched), written by its ModelCompressor.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from expertlab.quantize import ASYMMETRIC_REFUSED

if TYPE_CHECKING:
    import torch
    from compressed_tensors.quantization import QuantizationConfig
    from torch import nn

    from expertlab.quantize.gptq import Grid
    from expertlab.quantize.model import QuantizedTensor

WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


def group_strategy(grid: Grid, widths: Mapping[str, int]) -> tuple[str, int | None]:
    """compressed-tensors' strategy for weights of these input widths: ("channel", None) when every row is
    one group (no group_size, or every weight at most group_size wide), ("group", group_size) when groups
    tile every weight. A ragged last group is refused (compressed-tensors' and vLLM's kernels need whole
    ones), and so is an asymmetric grid."""
    if not grid.symmetric:
        raise ValueError(ASYMMETRIC_REFUSED)
    group_size = grid.group_size
    if group_size is None or all(width <= group_size for width in widths.values()):
        return "channel", None
    for name, width in sorted(widths.items()):
        if width % group_size:
            raise ValueError(
                f"group_size {group_size}: {name} has {width} input columns, not a multiple of it (a packed "
                "checkpoint needs whole groups); choose a group_size dividing every width, or null (one scale per row)"
            )
    return "group", group_size


def quantization_config(grid: Grid, strategy: str, group_size: int | None, ignore: Sequence[str]) -> QuantizationConfig:
    """compressed-tensors' description of the checkpoint: one W4A16-like group on every Linear layer but `ignore`."""
    from compressed_tensors.config import CompressionFormat
    from compressed_tensors.quantization import (
        QuantizationArgs,
        QuantizationConfig,
        QuantizationScheme,
        QuantizationStatus,
    )

    weights = QuantizationArgs(
        num_bits=grid.bits, type="int", symmetric=grid.symmetric, strategy=strategy, group_size=group_size, dynamic=False
    )
    packed = CompressionFormat.pack_quantized.value
    scheme = QuantizationScheme(targets=["Linear"], weights=weights, format=packed)
    return QuantizationConfig(
        config_groups={"group_0": scheme}, format=packed, quantization_status=QuantizationStatus.COMPRESSED,
        ignore=list(ignore),
    )


def _stacked(records: Sequence[QuantizedTensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(integers, scales) per model parameter: an expert tensor's slices stacked in expert order."""
    import torch

    by_parameter: dict[str, list[QuantizedTensor]] = {}
    for record in records:
        if record.matrix is None:
            raise ValueError(f"{record.name}: no integers recorded (quantized without keeping them)")
        by_parameter.setdefault(record.parameter, []).append(record)
    stacked = {}
    for parameter, parts in by_parameter.items():
        if parts[0].expert is None:
            matrix = parts[0].matrix
            stacked[parameter] = (matrix.codes, matrix.scales)
            continue
        parts = sorted(parts, key=lambda record: record.expert)
        if [record.expert for record in parts] != list(range(len(parts))):
            raise ValueError(f"{parameter}: experts {[record.expert for record in parts]} are not 0..{len(parts) - 1}")
        stacked[parameter] = tuple(torch.stack([getattr(record.matrix, field) for record in parts])
                                   for field in ("codes", "scales"))
    return stacked


def ignored_modules(model: nn.Module, records: Sequence[QuantizedTensor]) -> list[str]:
    """The checkpoint names of every linear layer left in full precision (lm_head, routers, ignored ones)."""
    from torch import nn
    from transformers.core_model_loading import revert_weight_conversion

    from expertlab.moe.families import adapter_for

    quantized = {record.parameter.removesuffix(".weight") for record in records}
    modules = dict(model.named_modules())
    names = {id(module): name for name, module in modules.items()}
    routers = [names[id(layer.router)] for layer in adapter_for(model).moe_layers(model)]
    kept = [name for name, module in modules.items() if isinstance(module, nn.Linear) and name not in quantized]
    weights = {f"{name}.weight": modules[name].weight for name in sorted(set(kept) | set(routers))}
    return sorted(key.removesuffix(".weight") for key in revert_weight_conversion(model, weights))


def packed_tensors(model: nn.Module, records: Sequence[QuantizedTensor], grid: Grid) -> dict[str, dict[str, torch.Tensor]]:
    """Checkpoint key of each quantized weight (`....weight`) -> the tensors that replace it."""
    from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32
    from transformers.core_model_loading import revert_weight_conversion

    import torch

    stacked = _stacked(records)
    dtype = next(record.matrix.dtype for record in records)
    codes, scales = (revert_weight_conversion(model, {name: parts[i] for name, parts in stacked.items()}) for i in range(2))
    replacements = {}
    for key, integers in codes.items():
        if not key.endswith(".weight"):
            raise ValueError(f"a quantized weight saves as {key!r}, not as a `.weight`: packing it is not supported")
        base, rows = key.removesuffix("weight"), integers.shape[0]
        tensors = {
            f"{base}weight_packed": pack_to_int32(integers.contiguous(), grid.bits),
            # transformers' reverse conversion squeezes a trailing dimension of 1 (one group per row)
            f"{base}weight_scale": scales[key].reshape(rows, -1).to(dtype).contiguous(),
            f"{base}weight_shape": torch.tensor(integers.shape),
        }
        replacements[key] = tensors
    return replacements


def pack_checkpoint(model: nn.Module, records: Sequence[QuantizedTensor], grid: Grid, directory: Path) -> QuantizationConfig:
    """Rewrite the checkpoint `model.save_pretrained(directory)` wrote (dequantized weights) as pack-quantized;
    returns the quantization config written into its config.json."""
    from compressed_tensors.compressors import ModelCompressor
    from safetensors.torch import load_file, save_file

    strategy, group_size = group_strategy(grid, {r.name: r.shape[-1] for r in records})
    replacements = packed_tensors(model, records, grid)
    index_path = directory / INDEX_FILE
    index = json.loads(index_path.read_text()) if index_path.is_file() else None
    shards = sorted(set(index["weight_map"].values())) if index else [WEIGHTS_FILE]
    missing, total_size = set(replacements), 0
    for shard in shards:
        tensors = load_file(directory / shard)
        for key in sorted(missing & tensors.keys()):
            del tensors[key]
            tensors.update(replacements[key])
            missing.discard(key)
            if index:
                del index["weight_map"][key]
                index["weight_map"].update(dict.fromkeys(replacements[key], shard))
        save_file(tensors, directory / shard, metadata={"format": "pt"})
        total_size += sum(tensor.numel() * tensor.element_size() for tensor in tensors.values())
    if missing:
        raise ValueError(f"{directory}: the saved checkpoint has no tensor {sorted(missing)[0]} to pack")
    if index:
        index["metadata"]["total_size"] = total_size
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    config = quantization_config(grid, strategy, group_size, ignored_modules(model, records))
    ModelCompressor(quantization_config=config).update_config(str(directory))
    return config
