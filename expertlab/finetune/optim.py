"""Trainable tensors + FinetuneConfig -> AdamW with per-row freezing, and the warm-up + decay learning-rate schedule.

AdamW's decoupled decay multiplies the whole tensor (p <- p (1 - lr wd)) before the Adam update,
which would shrink the frozen rows of a fused expert tensor. Masked tensors therefore sit in a
group with weight_decay 0, and `optimizer_step` applies the same factor to their training rows
only, before `optimizer.step()`: for those rows this is AdamW's own order (decay, then the update,
which does not read p), so with every row training it is torch's AdamW bit for bit (tested).
Frozen rows get a zero gradient, hence zero moments and a zero update: they never change.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from expertlab.finetune.config import FinetuneConfig
    from expertlab.finetune.modes import Trainable


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    """ceil(warmup_ratio x total_steps), the ratio read as the decimal it is written as (0.1 x 30 is 3, not 4)."""
    return math.ceil(Fraction(repr(warmup_ratio)) * total_steps)


def learning_rate(step: int, total_steps: int, config: FinetuneConfig) -> float:
    """The learning rate of optimizer step `step` (0-based) of `total_steps`.

    Warm-up W = warmup_steps(): lr (step + 1) / W for step < W, so step W - 1 reaches lr. Then, with
    progress p = (step - W) / (total_steps - 1 - W) running from 0 to 1 at the last step, the weight
    f = 1 (constant), 1 - p (linear) or (1 + cos(pi p)) / 2 (cosine) and lr_step = f lr + (1 - f) min_lr:
    exactly lr after warm-up and exactly min_lr at the last step.
    """
    warm = warmup_steps(total_steps, config.warmup_ratio)
    if step < warm:
        return config.lr * (step + 1) / warm
    if config.schedule == "constant":
        return config.lr
    span = total_steps - 1 - warm
    progress = 1.0 if span <= 0 else (step - warm) / span
    weight = 1 - progress if config.schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
    return weight * config.lr + (1 - weight) * config.min_lr


def build_optimizer(trainable: Trainable, config: FinetuneConfig) -> torch.optim.AdamW:
    """AdamW over the trainable tensors: whole tensors decayed by AdamW, masked ones by `optimizer_step`."""
    import torch

    whole = [tensor.param for tensor in trainable.tensors if tensor.rows is None]
    masked = [tensor.param for tensor in trainable.tensors if tensor.rows is not None]
    groups = []
    if whole:
        groups.append({"params": whole, "weight_decay": config.weight_decay})
    if masked:
        groups.append({"params": masked, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay)


def optimizer_step(optimizer: torch.optim.AdamW, trainable: Trainable, lr: float, config: FinetuneConfig) -> float:
    """Zero the frozen rows' gradients, clip, decay the training rows, step; returns the gradient norm before clipping."""
    import torch

    params = [tensor.param for tensor in trainable.tensors]
    for tensor in trainable.tensors:
        if tensor.rows is not None and tensor.param.grad is not None:
            tensor.rows.zero_frozen_(tensor.param.grad)
    # with no limit, the norm is still measured (a clip coefficient of 1 leaves every gradient as it is)
    limit = config.max_grad_norm if config.max_grad_norm is not None else math.inf
    norm = torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], limit)
    for group in optimizer.param_groups:
        group["lr"] = lr
    if config.weight_decay:
        with torch.no_grad():
            for tensor in trainable.tensors:
                if tensor.rows is not None and tensor.param.grad is not None:  # AdamW skips gradient-less tensors
                    rows = tensor.rows.rows(tensor.param)
                    rows.mul_(1 - lr * config.weight_decay)
                    tensor.rows.put_rows_(tensor.param, rows)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)
