"""Externally produced mask files -> selection artifacts under imported/, ingested beside expertlab's own."""

from __future__ import annotations

import argparse

HELP = "import externally produced expert masks (the study's released ones) as selection artifacts"


def _count(text: str) -> tuple[str, int]:
    model, sep, count = text.rpartition("=")
    if not sep or not model or not count.isdigit():
        raise argparse.ArgumentTypeError(f"expected MODEL=N, got {text!r}")
    return model, int(count)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="+", metavar="PATH",
        help="expert_mask.json files, directories holding one, or directories of such directories "
        "(<model>-<calibration>-<criterion>-<seed>[-<ratio>]/expert_mask.json)",
    )
    parser.add_argument("--out", default="imported", metavar="DIR", help="where the selection artifacts go (default imported/)")
    parser.add_argument(
        "--num-experts", type=_count, action="append", default=[], metavar="MODEL=N",
        help="routed experts per layer of MODEL (default: inferred from its masks)",
    )


def run(args: argparse.Namespace) -> int:
    from expertlab.imports.masks import find_mask_files, infer_num_experts, read_study_mask, write_selections
    from expertlab.imports.study import check_criteria

    check_criteria()
    masks = [read_study_mask(path) for path in find_mask_files(args.paths)]
    counts = infer_num_experts(masks, dict(args.num_experts))
    written = write_selections(masks, counts, args.out)
    off = sum(1 for m in masks if m.kept_per_layer != _expected(m, counts))
    for model, count in counts.items():
        mine = [m for m in masks if m.model == model]
        print(f"import-masks: {model}: {len(mine)} masks, {count} experts per layer, {len(mine[0].kept)} MoE layers")
    print(f"import-masks: {len(masks)} masks -> {len(written)} selection artifacts under {args.out}/")
    if off:
        print(f"import-masks: {off} masks keep a different number of experts than their ratio implies "
              "(variants.kept_per_layer records what they keep)")
    print(f"next: dvc repro ingest (or expertlab ingest ... --optional {args.out}) to load them into the store")
    return 0


def _expected(mask, counts: dict[str, int]) -> int:  # noqa: ANN001
    from expertlab.criteria import kept_count

    return kept_count(counts[mask.model], mask.ratio)
