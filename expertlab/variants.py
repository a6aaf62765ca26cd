"""Variant identity: the one definition of a variant id, shared by the stages and the store."""

from __future__ import annotations


def variant_id(
    model: str,
    calibration: str | None,
    seed: int | None,
    criterion: str | None,
    ratio: float | None,
    quantization: str | None = None,
) -> str:
    """`model:source` for the source model, `model:calibration:seed:criterion:ratio` for a pruned variant,
    and `model:calibration:seed:criterion:ratio:scheme` for a pruned variant quantized by a scheme."""
    if criterion is None:
        return f"{model}:source"
    pruned = f"{model}:{calibration}:{seed}:{criterion}:{float(ratio)}"  # type: ignore[arg-type]
    return pruned if quantization is None else f"{pruned}:{quantization}"
