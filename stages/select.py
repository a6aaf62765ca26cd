"""Observation DIR(s) -> OUT/<criterion>-<ratio>.json masks (kept experts per MoE layer), OUT/scores.parquet
(and OUT/part_scores.parquet for a combined calibration), OUT/meta.json."""

from __future__ import annotations

import argparse

from stages.common import add_params_argument, load_optional_params, observations_to_select, section

HELP = "saliency scores and kept-expert masks for every criterion x ratio of one observation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "observations", nargs="*", metavar="OBS_DIR",
        help="directory written by `expertlab observe`; several (one model and seed, one per part) make a combined calibration",
    )
    parser.add_argument("--calibration", help="the combined calibration several OBS_DIRs make (its name in the store)")
    parser.add_argument(
        "--study-observations", metavar="ROOT",
        help="instead of OBS_DIRs: the study's observations (e.g. observations) with --run; needs --params",
    )
    parser.add_argument("--run", metavar="MODEL/CALIBRATION/SEED", help="with --study-observations: the run to select for")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--criteria", help="comma-separated criteria (default: study.criteria, or study.compare's for its calibrations; else all)")
    parser.add_argument("--ratios", type=lambda text: [float(x) for x in text.split(",") if x], help="comma-separated pruning ratios (default: study.ratios, or study.compare's)")
    parser.add_argument("--seed", type=int, help="seed of the random criterion (default: the calibration seed)")
    parser.add_argument("--allow-top-k-reduction", action="store_true", default=None, help="route with top-k = kept experts when a ratio keeps fewer than top-k")
    add_params_argument(parser)


def run(args: argparse.Namespace) -> int:
    from expertlab.criteria import CRITERIA
    from expertlab.selection import select_observation

    params = load_optional_params(args)
    observations, calibration = observations_to_select(args, params)
    grid = params.study.pruning_grid(calibration) if params else (CRITERIA.names(), [])
    criteria, ratios = args.criteria.split(",") if args.criteria else grid[0], args.ratios or grid[1]
    allow = section(params, "select", allow_top_k_reduction=args.allow_top_k_reduction).allow_top_k_reduction
    meta = select_observation(observations, args.out, criteria, ratios, args.seed, allow, calibration)
    print(f"select: {len(meta.masks)} masks ({len(criteria)} criteria x {len(ratios)} ratios) -> {args.out}")
    return 0
