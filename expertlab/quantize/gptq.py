"""GPTQ (Frantar et al., 2023) for one weight matrix: integer weights on a per-group grid, chosen column
by column so that each column's rounding error is compensated in the columns not yet quantized.

For a linear layer y = W x with calibration inputs X, GPTQ minimises ||W X - Q X||^2 one column of W at
a time. With H = 2 X X^T (the Hessian of that error), quantizing column j with error e_j = (w_j - q_j)
is compensated optimally by moving the remaining columns by -e_j / [H^-1]_jj * [H^-1]_{j, j+1:}; the
rows of the upper Cholesky factor of H^-1 give those coefficients directly. Without a Hessian (or with
H proportional to the identity) nothing is compensated and GPTQ is round-to-nearest.

The grid (the W4A16 scheme of the study): `bits`-bit integers per group of `group_size` input columns
with one scale per (row, group); symmetric grids have no zero point (integers in [-2^(b-1), 2^(b-1) - 1],
scale = max|w| / ((2^b - 1) / 2)), asymmetric ones span [min, max] with an integer zero point. A group's
scale is fixed from its weights as GPTQ reaches the group's first column, i.e. after the compensation
of every earlier group. Matrices are returned dequantized (integer x scale) in the input's dtype: the
numbers a W4A16 kernel multiplies with.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Grid:
    """The integer grid: `bits` per weight, one scale (and zero point) per row and group of columns."""

    bits: int = 4
    group_size: int | None = 128  # None: one group per row (per-channel)
    symmetric: bool = True

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 8:
            raise ValueError(f"bits must lie in [2, 8], not {self.bits}")
        if self.group_size is not None and self.group_size < 1:
            raise ValueError(f"group_size must be positive, not {self.group_size}")

    def levels(self) -> tuple[int, int]:
        """The smallest and largest integer."""
        if self.symmetric:
            return -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1
        return 0, 2**self.bits - 1

    def scales(self, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, zero point) per row of `weights` [rows, columns of one group], each [rows, 1]."""
        low, high = self.levels()
        if self.symmetric:
            scale = weights.abs().amax(dim=1, keepdim=True) / ((high - low) / 2)
            zero = torch.zeros_like(scale)
        else:
            # the range always holds 0, so a zero weight stays exactly zero
            w_min = weights.amin(dim=1, keepdim=True).clamp(max=0)
            w_max = weights.amax(dim=1, keepdim=True).clamp(min=0)
            scale = (w_max - w_min) / (high - low)
            zero = torch.round(-w_min / torch.where(scale > 0, scale, 1.0))
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero group: any scale is exact
        return scale, zero

    def round(self, weights: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
        """`weights` [rows, n] moved to their nearest grid points (dequantized), each row with its scale and zero."""
        low, high = self.levels()
        q = torch.clamp(torch.round(weights / scale) + zero, low, high)
        return (q - zero) * scale


def round_to_nearest(weight: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Every weight to its group's nearest grid point, without compensation."""
    w = weight.detach().to(torch.float64)
    out = torch.empty_like(w)
    size = grid.group_size or w.shape[1]
    for start in range(0, w.shape[1], size):
        block = w[:, start : start + size]
        scale, zero = grid.scales(block)
        out[:, start : start + size] = grid.round(block, scale, zero)
    return out.to(weight.dtype)


def gptq(
    weight: torch.Tensor, hessian: torch.Tensor | None, grid: Grid, damp: float = 0.01, block_size: int = 128
) -> torch.Tensor:
    """`weight` [out, in] quantized by GPTQ against `hessian` [in, in] (sum of x x^T over calibration inputs).

    `damp` adds that fraction of the mean diagonal to the diagonal, as in the reference method, so
    the inverse exists; inputs never seen (a zero diagonal) leave their columns uncompensated. The
    Hessian's scale does not matter. Computed in float64; returned in the weight's dtype.
    """
    rows, cols = weight.shape
    if hessian is None:
        return round_to_nearest(weight, grid)
    if hessian.shape != (cols, cols):
        raise ValueError(f"Hessian of shape {tuple(hessian.shape)} does not fit a weight with {cols} input columns")
    if damp < 0:
        raise ValueError(f"damp must be non-negative, not {damp}")
    w = weight.detach().to(torch.float64).clone()
    h = hessian.detach().to(torch.float64).clone()
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    if damp:
        h += torch.eye(cols, dtype=h.dtype, device=h.device) * (damp * torch.diagonal(h).mean())
    try:
        inverse = torch.cholesky_inverse(torch.linalg.cholesky(h))
        factor = torch.linalg.cholesky(inverse, upper=True)
    except torch.linalg.LinAlgError as err:
        raise ValueError(f"the Hessian is not positive definite even with damp={damp}: raise the damping") from err

    group = grid.group_size or cols
    # group starts fall on block starts, where every earlier error has been propagated: a group's
    # scale is taken from its weights as compensated so far
    block = block_size if group % block_size == 0 else group
    out = torch.empty_like(w)
    scale = zero = None
    for start in range(0, cols, block):
        end = min(start + block, cols)
        w_block = w[:, start:end].clone()
        errors = torch.zeros_like(w_block)
        f_block = factor[start:end, start:end]
        for i in range(end - start):
            column = start + i
            if column % group == 0:
                scale, zero = grid.scales(w[:, column : column + group])
            q = grid.round(w_block[:, i : i + 1], scale, zero)[:, 0]
            out[:, column] = q
            error = (w_block[:, i] - q) / f_block[i, i]
            w_block[:, i:] -= error.unsqueeze(1) * f_block[i, i:].unsqueeze(0)
            errors[:, i] = error
        w[:, end:] -= errors @ factor[start:end, end:]
    return out.to(weight.dtype)


def output_error(weight: torch.Tensor, quantized: torch.Tensor, hessian: torch.Tensor) -> float:
    """sum over calibration inputs of ||(W - Q) x||^2, from the Hessian sum of x x^T: trace((W-Q) H (W-Q)^T)."""
    delta = (weight.to(torch.float64) - quantized.to(torch.float64))
    return float(torch.einsum("ri,ij,rj->", delta, hessian.to(torch.float64), delta))
