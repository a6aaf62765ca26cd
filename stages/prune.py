"""Model dir + mask JSON (kept experts per MoE layer) -> pruned Hugging Face checkpoint dir."""

from __future__ import annotations

import argparse

from stages.common import add_params_argument, add_variant_arguments, load_optional_params, variant_from_args

HELP = "physically remove the experts a mask does not keep and save a loadable checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="Hugging Face model directory")
    parser.add_argument("--mask", required=True, metavar="MASK.json", help="JSON list of kept expert ids per MoE layer")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--top-k", type=int, help="new routing top-k (only when the mask keeps fewer than top-k)")
    add_variant_arguments(parser)
    add_params_argument(parser)


def run(args: argparse.Namespace) -> int:
    from expertlab.moe.prune import prune_checkpoint

    params = load_optional_params(args)
    allow = params.select.allow_top_k_reduction if params else False
    # without a criterion the mask came from elsewhere: the checkpoint carries no variant record
    # and is evaluated as a model of its own, named after its directory
    variant = variant_from_args(args)
    record = prune_checkpoint(args.model_dir, args.mask, args.out, variant, args.top_k, allow, progress=True)
    print(f"prune: {record['source_num_experts']} -> {record['kept_per_layer']} experts per layer, top-k {record['top_k']} -> {args.out}")
    return 0
