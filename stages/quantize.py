"""Pruned checkpoint dir + calibration JSONL -> weight-quantized checkpoint dir (a quantized variant)."""

from __future__ import annotations

import argparse
import shutil
import statistics
from pathlib import Path

from stages.common import add_params_argument, load_optional_params, variant_record

HELP = "quantize a (pruned) checkpoint's weights with GPTQ or round-to-nearest, calibrated on a JSONL of texts"

QUANTIZATION_FILE = "expertlab_quantization.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="Hugging Face model directory (e.g. a pruned variant)")
    parser.add_argument("--data", required=True, metavar="FILE.jsonl", help='calibration texts, lines {"text": ...}')
    parser.add_argument("--out", required=True, metavar="DIR", help="output model directory")
    parser.add_argument(
        "--scheme", default="gptq-w4a16",
        help="scheme name under `quantization` in --params (without --params: 4-bit GPTQ, groups of 128, by this name)",
    )
    parser.add_argument("--batch-size", type=int, help="sequences per forward pass (default 16 or observe.batch_size)")
    parser.add_argument("--max-length", type=int, help="tokens per sequence (default 256 or observe.max_length)")
    add_params_argument(parser)


def scheme_from_spec(spec):  # noqa: ANN001, ANN201
    """A validated params.QuantizationSpec as the library's Scheme."""
    from expertlab.quantize.gptq import Grid
    from expertlab.quantize.model import Scheme

    grid = Grid(bits=spec.bits, group_size=spec.group_size, symmetric=spec.symmetric)
    return Scheme(method=spec.method, grid=grid, damp=spec.damp, block_size=spec.block_size, ignore=tuple(spec.ignore))


def run(args: argparse.Namespace) -> int:
    from expertlab.params import QuantizationSpec

    params = load_optional_params(args)
    if params is not None and args.scheme not in params.quantization:
        defined = ", ".join(params.quantization) or "none"
        raise ValueError(
            f"--scheme {args.scheme!r} has no entry under quantization in {args.params} (defined: {defined})"
        )
    spec = params.quantization[args.scheme] if params is not None else QuantizationSpec()
    batch_size = args.batch_size or (params.observe.batch_size if params else 16)
    max_length = args.max_length or (params.observe.max_length if params else 256)
    model_dir = Path(args.model_dir)

    from expertlab.io import OUTPUT_MARKER, OutputDir, write_json

    output = OutputDir(args.out, "quantize", inputs=[model_dir, args.data])
    output.check()
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"not a model directory (no config.json): {model_dir}")
    from expertlab.moe.prune import VARIANT_FILE, is_weights_file, load_variant
    from stages.observe import read_texts

    variant = load_variant(model_dir)
    if variant is not None and variant.get("quantization"):
        raise ValueError(
            f"{model_dir} is already quantized ({variant['quantization']}); quantize the pruned checkpoint"
        )
    texts = read_texts(args.data)
    scheme = scheme_from_spec(spec)

    from transformers import AutoTokenizer

    from expertlab.moe.observe import loaded_model, tokenized_batches
    from expertlab.quantize.model import quantize_model

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    batches = tokenized_batches(tokenizer, texts, batch_size, max_length)
    with loaded_model(model_dir) as model, output.writing() as tmp:
        done = quantize_model(model, batches, scheme)
        model.save_pretrained(tmp)
        for path in sorted(model_dir.iterdir()):
            written = is_weights_file(path) or path.name in (VARIANT_FILE, OUTPUT_MARKER) or (tmp / path.name).exists()
            if path.is_file() and not written:
                shutil.copy2(path, tmp / path.name)  # tokenizer, chat template and the like
        errors = [t.relative_error for t in done if t.relative_error is not None]
        record = {
            "scheme": args.scheme,
            "spec": spec.model_dump(),
            "calibration_data": str(args.data),
            "samples": len(texts),
            "tokens": int(sum(int(mask.sum()) for _, mask in batches)),
            "source_model_dir": str(model_dir),
            "median_relative_error": statistics.median(errors) if errors else None,
            "tensors": [t.as_dict() for t in done],
        }
        write_json(tmp / QUANTIZATION_FILE, record)
        if variant is not None:
            fields = ("model", "calibration", "seed", "criterion", "ratio", "kept_per_layer", "top_k")
            quantized = variant_record(*(variant.get(key) for key in fields), quantization=args.scheme)
            write_json(tmp / VARIANT_FILE, {**variant, **quantized, "quantized_from": str(model_dir)})
    median = record["median_relative_error"]
    print(
        f"quantize ({args.scheme}): {len(done)} weight tensors of {model_dir}"
        + (f", median relative output error {median:.4f}" if median is not None else "")
        + f" -> {args.out}"
    )
    return 0
