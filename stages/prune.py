"""Model dir + mask JSON (kept experts per MoE layer) -> pruned Hugging Face checkpoint dir."""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.common import variant_record

HELP = "physically remove the experts a mask does not keep and save a loadable checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="Hugging Face model directory")
    parser.add_argument("--mask", required=True, metavar="MASK.json", help="JSON list of kept expert ids per MoE layer")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--top-k", type=int, help="new routing top-k (only when the mask keeps fewer than top-k)")
    parser.add_argument("--model", help="model name recorded with the variant (default: the directory name)")
    parser.add_argument("--calibration", help="variant identity: calibration name")
    parser.add_argument("--seed", type=int, help="variant identity: calibration seed")
    parser.add_argument("--criterion", help="variant identity: criterion")
    parser.add_argument("--ratio", type=float, help="variant identity: pruning ratio")


def _selection_entry(mask_path: Path) -> dict | None:
    """The mask's entry in the meta.json that `expertlab select` wrote beside it, if any."""
    from expertlab.io import read_json

    meta_path = mask_path.parent / "meta.json"
    if not meta_path.is_file():
        return None
    meta = read_json(meta_path)
    for entry in meta.get("masks", []) if isinstance(meta, dict) else []:
        if isinstance(entry, dict) and entry.get("file") == mask_path.name:
            return entry
    return None


def run(args: argparse.Namespace) -> int:
    from expertlab.moe.prune import prune_checkpoint

    mask_path = Path(args.mask)
    entry = _selection_entry(mask_path) or {}
    top_k = args.top_k or entry.get("top_k")
    criterion = args.criterion or entry.get("criterion")
    ratio = args.ratio if args.ratio is not None else entry.get("ratio")
    model = args.model or Path(args.model_dir).name
    # without a criterion the mask came from elsewhere: the checkpoint carries no variant record
    # and is evaluated as a model of its own, named after its directory
    variant = None
    if criterion is not None:
        variant = variant_record(model, args.calibration, args.seed, criterion, ratio)  # prune adds its counts
    record = prune_checkpoint(args.model_dir, mask_path, args.out, variant=variant, top_k=top_k, progress=True)
    print(
        f"prune: {record['source_num_experts']} -> {record['kept_per_layer']} experts per layer, "
        f"top-k {record['top_k']} -> {args.out}"
    )
    return 0
