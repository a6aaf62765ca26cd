"""Pruned checkpoint dir + calibration JSONL -> a weight-quantized, pack-quantized checkpoint dir (a quantized variant).

The quantized variant's record is the pruned one's with the scheme added; the scheme, its spec and the
per-tensor errors are recorded beside it (expertlab_quantization.json).
"""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from expertlab.params import Observe, QuantizationSpec
    from expertlab.quantize.model import Scheme

QUANTIZATION_FILE = "expertlab_quantization.json"


def scheme_from_spec(spec: QuantizationSpec) -> Scheme:
    """A validated params.QuantizationSpec as the library's Scheme."""
    from expertlab.quantize.gptq import Grid
    from expertlab.quantize.model import Scheme

    grid = Grid(bits=spec.bits, group_size=spec.group_size, symmetric=spec.symmetric)
    return Scheme(method=spec.method, grid=grid, damp=spec.damp, block_size=spec.block_size, ignore=tuple(spec.ignore))


def quantize_checkpoint(
    model_dir: str | Path, data: Sequence[str | Path], out: str | Path, scheme_name: str, spec: QuantizationSpec,
    settings: Observe,
) -> dict[str, Any]:
    """Quantize a checkpoint's weights calibrated on the calibration sets `data` (their texts together, batched
    as observe batches them); returns the quantization record."""
    from transformers import AutoTokenizer

    from expertlab.data.calibration import rendered_texts
    from expertlab.io import OUTPUT_MARKER, OutputDir, read_json, write_json
    from expertlab.moe.observe import loaded_model, tokenized_batches
    from expertlab.moe.prune import VARIANT_FILE, is_weights_file, load_variant
    from expertlab.quantize.model import quantize_model
    from expertlab.quantize.packed import pack_checkpoint

    model_dir = Path(model_dir)
    output = OutputDir(out, "quantize", inputs=[model_dir, *data])
    output.check()
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"not a model directory (no config.json): {model_dir}")
    pruned = load_variant(model_dir)
    if pruned is not None and pruned.quantization:
        raise ValueError(f"{model_dir} is already quantized ({pruned.quantization}); quantize the pruned checkpoint")
    scheme = scheme_from_spec(spec)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model_type = read_json(model_dir / "config.json").get("model_type", "")
    texts = [text for path in data for text in rendered_texts(path, tokenizer, model_type)]
    batches = tokenized_batches(tokenizer, texts, settings.batch_size, settings.max_length)
    with loaded_model(model_dir) as model, output.writing() as tmp:
        done = quantize_model(model, batches, scheme)
        model.save_pretrained(tmp)  # dequantized; then rewritten as packed integers and scales
        pack_checkpoint(model, done, scheme.grid, tmp)
        for path in sorted(model_dir.iterdir()):
            written = is_weights_file(path) or path.name in (VARIANT_FILE, OUTPUT_MARKER) or (tmp / path.name).exists()
            if path.is_file() and not written:
                shutil.copy2(path, tmp / path.name)  # tokenizer, chat template and the like
        errors = [t.relative_error for t in done if t.relative_error is not None]
        record = {
            "scheme": scheme_name,
            "spec": spec.model_dump(),
            "calibration_data": [str(path) for path in data],
            "samples": len(texts),
            "tokens": int(sum(int(mask.sum()) for _, mask in batches)),
            "source_model_dir": str(model_dir),
            "median_relative_error": statistics.median(errors) if errors else None,
            "tensors": [t.as_dict() for t in done],
        }
        write_json(tmp / QUANTIZATION_FILE, record)
        if pruned is not None:
            variant = pruned.identity.model_copy(update={"quantization": scheme_name})
            quantized = pruned.model_copy(
                update={"variant_id": variant.id, "quantization": scheme_name, "quantized_from": str(model_dir)}
            )
            write_json(tmp / VARIANT_FILE, quantized.dump())
    return record
