"""Helpers shared by the stage entry points: identity records and optional params files."""

from __future__ import annotations

import argparse
from typing import Any


def add_params_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params",
        metavar="FILE",
        help="validated study params (e.g. params.yaml) supplying defaults for the options not given",
    )


def load_optional_params(args: argparse.Namespace):  # noqa: ANN201
    """The validated Params when --params was given, else None."""
    if not getattr(args, "params", None):
        return None
    from expertlab.params import load_params

    return load_params(args.params)


def variant_record(
    model: str,
    calibration: str | None = None,
    seed: int | None = None,
    criterion: str | None = None,
    ratio: float | None = None,
    kept_per_layer: int | None = None,
    top_k: int | None = None,
    quantization: str | None = None,
) -> dict[str, Any]:
    """The identity of a model as evaluated: the source model, or one pruned (and maybe quantized) variant of it."""
    from expertlab.variants import variant_id

    record = {
        "variant_id": variant_id(model, calibration, seed, criterion, ratio, quantization),
        "model": model,
        "calibration": calibration,
        "seed": seed,
        "criterion": criterion,
        "ratio": float(ratio) if ratio is not None else None,
        "kept_per_layer": kept_per_layer,
        "top_k": top_k,
    }
    if quantization is not None:  # unquantized records keep the fields they always had
        record["quantization"] = quantization
    return record
