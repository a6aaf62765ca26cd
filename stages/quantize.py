"""Pruned checkpoint dir + calibration set(s) -> weight-quantized checkpoint dir (a quantized variant)."""

from __future__ import annotations

import argparse

from stages.common import add_calibration_set_arguments, add_params_argument, calibration_sets, load_optional_params, section

HELP = "quantize a (pruned) checkpoint's weights with GPTQ or round-to-nearest, calibrated on calibration sets"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="Hugging Face model directory (e.g. a pruned variant)")
    add_calibration_set_arguments(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="output model directory")
    parser.add_argument(
        "--scheme", default="gptq-w4a16",
        help="scheme name under `quantization` in --params (without --params: 4-bit GPTQ, groups of 128, by this name)",
    )
    parser.add_argument("--batch-size", type=int, help="sequences per forward pass (default: observe.batch_size)")
    parser.add_argument("--max-length", type=int, help="tokens per sequence (default: observe.max_length)")
    add_params_argument(parser)


def run(args: argparse.Namespace) -> int:
    from expertlab.params import QuantizationSpec
    from expertlab.quantize.checkpoint import quantize_checkpoint

    params = load_optional_params(args)
    if params is not None and args.scheme not in params.quantization:
        raise ValueError(f"--scheme {args.scheme!r} has no entry under quantization in {args.params} (defined: {', '.join(params.quantization) or 'none'})")
    spec = params.quantization[args.scheme] if params is not None else QuantizationSpec()
    settings = section(params, "observe", batch_size=args.batch_size, max_length=args.max_length)
    record = quantize_checkpoint(args.model_dir, calibration_sets(args, params), args.out, args.scheme, spec, settings)
    median = record["median_relative_error"]
    error = f", median relative output error {median:.4f}" if median is not None else ""
    print(f"quantize ({args.scheme}): {len(record['tensors'])} weight tensors of {args.model_dir}{error} -> {args.out}")
    return 0
