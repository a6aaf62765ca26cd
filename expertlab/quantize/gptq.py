"""GPTQ (Frantar et al., 2023) for one weight matrix: integer weights on a per-group grid, chosen column
by column so that each column's rounding error is compensated in the columns not yet quantized.

For a linear layer y = W x with calibration inputs X, GPTQ minimises ||W X - Q X||^2 one column of W at
a time. With H = 2 X X^T (the Hessian of that error), quantizing column j with error e_j = (w_j - q_j)
is compensated optimally by moving the remaining columns by -e_j / [H^-1]_jj * [H^-1]_{j, j+1:}; the
rows of the upper Cholesky factor of H^-1 give those coefficients directly. Without a Hessian (or with
H proportional to the identity) nothing is compensated and GPTQ is round-to-nearest.

The grid (the W4A16 scheme of the study): `bits`-bit integers per group of `group_size` input columns
with one scale per (row, group). Integers lie in [-2^(b-1), 2^(b-1) - 1] (compressed-tensors' signed
convention, so its packing takes them as they are); symmetric grids have no zero point (scale =
max|w| / ((2^b - 1) / 2)), asymmetric ones span [min, max] with an integer zero point in the same range.
Scales are rounded to the weight's dtype, as a checkpoint stores them. A group's scale is fixed from its
weights as GPTQ reaches the group's first column, i.e. after the compensation of every earlier group.
The result is a QuantizedMatrix: the integers, scales and zero points, and the matrix dequantized
((integer - zero) x scale) in the input's dtype: the numbers a W4A16 kernel multiplies with.
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
        return -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1

    def scales(self, weights: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, zero point) per row of `weights` [rows, columns of one group], each [rows, 1]; the scales
        are values of `dtype` (the dtype a checkpoint stores them in)."""
        low, high = self.levels()
        if self.symmetric:
            scale = weights.abs().amax(dim=1, keepdim=True) / ((high - low) / 2)
        else:
            # the range always holds 0, so a zero weight stays exactly zero
            w_min = weights.amin(dim=1, keepdim=True).clamp(max=0)
            w_max = weights.amax(dim=1, keepdim=True).clamp(min=0)
            scale = (w_max - w_min) / (high - low)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero group: any scale is exact
        scale = scale.to(dtype).to(weights.dtype)
        if self.symmetric:
            return scale, torch.zeros_like(scale)
        return scale, low - torch.round(w_min / scale)

    def codes(self, weights: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
        """The integers of `weights` [rows, n]: each to its nearest grid point, with its row's scale and zero."""
        low, high = self.levels()
        return torch.clamp(torch.round(weights / scale) + zero, low, high)

    def round(self, weights: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
        """`weights` [rows, n] moved to their nearest grid points (dequantized), each row with its scale and zero."""
        return (self.codes(weights, scale, zero) - zero) * scale


@dataclass(frozen=True)
class QuantizedMatrix:
    """A weight [rows, columns] on its grid: integers, and one scale and zero point per (row, group of
    `group_size` columns); the last group may be narrower."""

    codes: torch.Tensor  # int8 [rows, columns]
    scales: torch.Tensor  # float64 [rows, groups], each a value of `dtype`
    zeros: torch.Tensor  # int8 [rows, groups]; all 0 on a symmetric grid
    group_size: int
    dtype: torch.dtype

    def dequantize(self) -> torch.Tensor:
        """(integer - zero) x scale, in the weight's dtype."""
        repeat = lambda t: t.repeat_interleave(self.group_size, dim=1)[:, : self.codes.shape[1]]  # noqa: E731
        return ((self.codes.to(torch.float64) - repeat(self.zeros)) * repeat(self.scales)).to(self.dtype)


def _matrix(codes: torch.Tensor, scales: list[torch.Tensor], zeros: list[torch.Tensor], group: int,
            dtype: torch.dtype) -> QuantizedMatrix:
    return QuantizedMatrix(codes.to(torch.int8), torch.cat(scales, dim=1), torch.cat(zeros, dim=1).to(torch.int8),
                           group, dtype)


def round_to_nearest(weight: torch.Tensor, grid: Grid) -> QuantizedMatrix:
    """Every weight to its group's nearest grid point, without compensation."""
    w = weight.detach().to(torch.float64)
    codes = torch.empty_like(w)
    size = grid.group_size or w.shape[1]
    scales, zeros = [], []
    for start in range(0, w.shape[1], size):
        block = w[:, start : start + size]
        scale, zero = grid.scales(block, weight.dtype)
        codes[:, start : start + size] = grid.codes(block, scale, zero)
        scales.append(scale)
        zeros.append(zero)
    return _matrix(codes, scales, zeros, size, weight.dtype)


def gptq(
    weight: torch.Tensor, hessian: torch.Tensor | None, grid: Grid, damp: float = 0.01, block_size: int = 128
) -> QuantizedMatrix:
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
    codes = torch.empty_like(w)
    scales: list[torch.Tensor] = []
    zeros: list[torch.Tensor] = []
    for start in range(0, cols, block):
        end = min(start + block, cols)
        w_block = w[:, start:end].clone()
        errors = torch.zeros_like(w_block)
        f_block = factor[start:end, start:end]
        for i in range(end - start):
            column = start + i
            if column % group == 0:
                scale, zero = grid.scales(w[:, column : column + group], weight.dtype)
                scales.append(scale)
                zeros.append(zero)
            code = grid.codes(w_block[:, i : i + 1], scale, zero)
            codes[:, column] = code[:, 0]
            error = (w_block[:, i] - ((code - zero) * scale)[:, 0]) / f_block[i, i]
            w_block[:, i:] -= error.unsqueeze(1) * f_block[i, i:].unsqueeze(0)
            errors[:, i] = error
        w[:, end:] -= errors @ factor[start:end, end:]
    return _matrix(codes, scales, zeros, group, weight.dtype)


def output_error(weight: torch.Tensor, quantized: torch.Tensor, hessian: torch.Tensor) -> float:
    """sum over calibration inputs of ||(W - Q) x||^2, from the Hessian sum of x x^T: trace((W-Q) H (W-Q)^T)."""
    delta = (weight.to(torch.float64) - quantized.to(torch.float64))
    return float(torch.einsum("ri,ij,rj->", delta, hessian.to(torch.float64), delta))
