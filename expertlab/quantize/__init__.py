"""Weight-only post-training quantization of (pruned) checkpoints: GPTQ and round-to-nearest.

This module imports no torch, so params validation can use it."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Checkpoints are written pack-quantized (expertlab.quantize.packed), and transformers' loader of packed
# MoE experts (its compressed-tensors DecompressExperts) reads no zero points.
ASYMMETRIC_REFUSED = (
    "an asymmetric grid (symmetric: false) is not supported: quantized checkpoints are written pack-quantized, and "
    "transformers' compressed-tensors loader reads no zero points for MoE experts"
)


def check_ignore_patterns(patterns: Iterable[str]) -> None:
    """Every `ignore` entry must be a regular expression (matched in full against module names)."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"ignore pattern {pattern!r} is not a regular expression: {err}") from None
