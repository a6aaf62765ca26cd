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
    from expertlab.imports.masks import import_masks

    for line in import_masks(args.paths, args.out, dict(args.num_experts)).summary():
        print(f"import-masks: {line}")
    print(f"next: dvc repro ingest (or expertlab ingest ... --optional {args.out}) to load them into the store")
    return 0
