"""Model dir + calibration JSONL -> DIR/expert_stats.parquet (one row per layer, expert) + DIR/meta.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.common import add_params_argument, load_optional_params, section

HELP = "one calibration pass recording per-(layer, expert) statistics for every criterion"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="Hugging Face model directory")
    parser.add_argument("--data", required=True, metavar="FILE.jsonl", help='calibration texts, lines {"text": ...}')
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--batch-size", type=int, help="sequences per forward pass (default: observe.batch_size)")
    parser.add_argument("--max-length", type=int, help="tokens per sequence (default: observe.max_length)")
    parser.add_argument(
        "--max-memory", metavar="SIZE",
        help='CPU memory for weights, e.g. "8GiB"; layers beyond it are loaded from disk one at a time (default: observe.max_memory)',
    )
    parser.add_argument("--model", help="model name recorded in meta.json (default: the directory name)")
    parser.add_argument("--calibration", default="custom", help="calibration name recorded in meta.json")
    parser.add_argument("--seed", type=int, default=0, help="calibration seed recorded in meta.json")
    add_params_argument(parser)


def run(args: argparse.Namespace) -> int:
    from expertlab.moe.observe import observe_checkpoint

    settings = section(load_optional_params(args), "observe", batch_size=args.batch_size, max_length=args.max_length, max_memory=args.max_memory)
    run_fields = {"model": args.model or Path(args.model_dir).name, "calibration": args.calibration, "seed": args.seed}
    meta = observe_checkpoint(args.model_dir, args.data, args.out, run_fields, settings)
    print(f"observe: {meta.samples} texts, {meta.tokens} tokens, {len(meta.moe_layers)} MoE layers -> {args.out}")
    return 0
