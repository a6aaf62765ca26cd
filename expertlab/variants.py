"""Variant identity: the one definition of a variant id, shared by the stages and the store."""

from __future__ import annotations


def variant_id(
    model: str, calibration: str | None, seed: int | None, criterion: str | None, ratio: float | None
) -> str:
    """`model:source` for the source model, `model:calibration:seed:criterion:ratio` for a pruned variant."""
    if criterion is None:
        return f"{model}:source"
    return f"{model}:{calibration}:{seed}:{criterion}:{float(ratio)}"  # type: ignore[arg-type]
