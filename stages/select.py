"""Observation DIR -> OUT/<criterion>-<ratio>.json masks (kept experts per MoE layer), OUT/scores.parquet, OUT/meta.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.common import add_params_argument, load_optional_params

HELP = "saliency scores and kept-expert masks for every criterion x ratio of one observation"


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("observation", metavar="OBS_DIR", help="directory written by `expertlab observe`")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--criteria", help="comma-separated criteria (default: study.criteria, else all)")
    parser.add_argument("--ratios", type=_floats, help="comma-separated pruning ratios (default: study.ratios)")
    parser.add_argument("--seed", type=int, help="seed of the random criterion (default: the calibration seed)")
    parser.add_argument(
        "--allow-top-k-reduction",
        action="store_true",
        default=None,
        help="route with top-k = kept experts when a ratio keeps fewer than top-k",
    )
    add_params_argument(parser)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from expertlab.criteria import CRITERIA, mask_file_name, select_masks
    from expertlab.io import atomic_dir, read_meta, write_json

    params = load_optional_params(args)
    observation = Path(args.observation)
    meta = read_meta(observation, "observation", ["top_k", "moe_layers", "num_experts"])
    stats_path = observation / "expert_stats.parquet"
    if not stats_path.is_file():
        raise FileNotFoundError(f"missing file: {stats_path}")
    if args.criteria:
        criteria = args.criteria.split(",")
    else:
        criteria = params.study.criteria if params else CRITERIA.names()
    ratios = args.ratios or (params.study.ratios if params else None)
    if not ratios:
        raise ValueError("no pruning ratios: pass --ratios or --params")
    allow = args.allow_top_k_reduction
    if allow is None:
        allow = params.select.allow_top_k_reduction if params else False
    seed = meta.get("seed", 0) if args.seed is None else args.seed
    for name in criteria:
        CRITERIA[name]  # unknown names fail here, listing the allowed ones
    scores, masks = select_masks(
        pd.read_parquet(stats_path),
        criteria,
        ratios,
        seed=seed,
        top_k=meta["top_k"],
        n_group=meta.get("n_group", 1),
        allow_top_k_reduction=allow,
    )
    out_meta = {
        "kind": "selection",
        "model": meta.get("model"),
        "calibration": meta.get("calibration"),
        "seed": meta.get("seed"),
        "random_seed": seed,
        "moe_layers": meta["moe_layers"],
        "num_experts": meta["num_experts"],
        "top_k": meta["top_k"],
        "masks": [],
    }
    with atomic_dir(args.out, owner="select", inputs=[observation]) as tmp:
        scores.to_parquet(tmp / "scores.parquet", index=False)
        for mask in masks:
            name = mask_file_name(mask.criterion, mask.ratio)
            write_json(tmp / name, mask.kept)
            out_meta["masks"].append(
                {
                    "criterion": mask.criterion,
                    "ratio": mask.ratio,
                    "file": name,
                    "kept_per_layer": mask.kept_per_layer,
                    "top_k": mask.top_k,
                }
            )
        write_json(tmp / "meta.json", out_meta)
    print(f"select: {len(masks)} masks ({len(criteria)} criteria x {len(ratios)} ratios) -> {args.out}")
    return 0
