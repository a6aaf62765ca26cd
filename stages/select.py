"""Observation DIR -> OUT/<criterion>-<ratio>.json masks (kept experts per MoE layer), OUT/scores.parquet, OUT/meta.json."""

from __future__ import annotations

import argparse

from stages.common import add_params_argument, load_optional_params, section

HELP = "saliency scores and kept-expert masks for every criterion x ratio of one observation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("observation", metavar="OBS_DIR", help="directory written by `expertlab observe`")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--criteria", help="comma-separated criteria (default: study.criteria, else all)")
    parser.add_argument("--ratios", type=lambda text: [float(x) for x in text.split(",") if x], help="comma-separated pruning ratios (default: study.ratios)")
    parser.add_argument("--seed", type=int, help="seed of the random criterion (default: the calibration seed)")
    parser.add_argument("--allow-top-k-reduction", action="store_true", default=None, help="route with top-k = kept experts when a ratio keeps fewer than top-k")
    add_params_argument(parser)


def run(args: argparse.Namespace) -> int:
    from expertlab.criteria import CRITERIA
    from expertlab.selection import select_observation

    params = load_optional_params(args)
    criteria = args.criteria.split(",") if args.criteria else (params.study.criteria if params else CRITERIA.names())
    ratios = args.ratios or (params.study.ratios if params else [])
    allow = section(params, "select", allow_top_k_reduction=args.allow_top_k_reduction).allow_top_k_reduction
    meta = select_observation(args.observation, args.out, criteria, ratios, args.seed, allow)
    print(f"select: {len(meta.masks)} masks ({len(criteria)} criteria x {len(ratios)} ratios) -> {args.out}")
    return 0
