"""params.yaml -> validated grid summary (exit 2 with every problem listed when malformed)."""

from __future__ import annotations

import argparse

HELP = "validate params.yaml against the registries and print the grid it declares"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", metavar="FILE")


def run(args: argparse.Namespace) -> int:
    from expertlab.params import load_params

    params = load_params(args.params)
    study = params.study
    observations = len(study.models) * len(study.calibrations) * len(study.seeds)
    variants = observations * len(study.criteria) * len(study.ratios)
    grid = study.quantize
    quantized = observations * len(grid.criteria) * len(grid.ratios) * len(grid.schemes)
    print(
        f"{args.params}: ok — {len(study.models)} model(s), {len(study.calibrations)} calibration set(s), "
        f"{len(study.seeds)} seed(s), {len(study.criteria)} criteria, {len(study.ratios)} ratio(s), "
        f"{len(study.task_names)} task(s) in {len(study.tasks)} group(s): {observations} observation(s), {variants} pruned variant(s)"
        + (f", {quantized} of them also quantized ({', '.join(grid.schemes)})" if quantized else "")
    )
    return 0
