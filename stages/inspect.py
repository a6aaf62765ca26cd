"""Model directory -> its MoE structure and parameter counts before and after pruning (files only)."""

from __future__ import annotations

import argparse
import json

HELP = "print a model's family, MoE layers, experts, top-k, routing and parameter counts before/after pruning"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="Hugging Face model directory (config.json + safetensors)")
    parser.add_argument(
        "--ratio", type=float, action="append", metavar="R",
        help="pruning ratio to size (repeatable; default 0.25, 0.5, 0.75)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    from expertlab.moe.summary import describe, summarize

    summary = summarize(args.model_dir, args.ratio or [0.25, 0.5, 0.75])
    print(json.dumps(summary.as_dict(), indent=2) if args.json else describe(summary))
    return 0
