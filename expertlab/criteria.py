"""Observation statistics -> saliency scores per (layer, expert) -> kept-expert masks.

Criteria follow DESIGN.md ("Saliency criteria") and paper 000, section 3.2. Each criterion maps
one layer's statistics to a score per expert; the highest M = round((1 - p) N) scores are kept,
ties broken by the lower expert index.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from expertlab.registry import Registry

if TYPE_CHECKING:  # torch and pandas load only where scores are computed: validating params stays fast
    import pandas as pd
    import torch


@dataclass(frozen=True)
class LayerStats:
    """Sufficient statistics of one MoE layer (float64 vectors over experts)."""

    tokens: int
    routed_count: torch.Tensor
    gate_sum: torch.Tensor
    ean_sum: torch.Tensor
    weighted_norm_sum: torch.Tensor
    easy_ep_sum: torch.Tensor

    @property
    def num_experts(self) -> int:
        return self.routed_count.numel()


Criterion = Callable[[LayerStats, "torch.Generator"], "torch.Tensor"]
CRITERIA: Registry[Criterion] = Registry("criterion")


@CRITERIA.register("random")
def random_scores(stats: LayerStats, rng: torch.Generator) -> torch.Tensor:
    """A uniform random ranking drawn from the seeded generator (no data used)."""
    import torch

    order = torch.randperm(stats.num_experts, generator=rng)
    scores = torch.empty(stats.num_experts, dtype=torch.float64)
    scores[order] = torch.arange(stats.num_experts, 0, -1, dtype=torch.float64)
    return scores


@CRITERIA.register("frequency")
def frequency(stats: LayerStats, rng: torch.Generator) -> torch.Tensor:
    """How often the router selects the expert: sum_t 1[g > 0]."""
    return stats.routed_count.double()


@CRITERIA.register("gate")
def gate(stats: LayerStats, rng: torch.Generator) -> torch.Tensor:
    """Total routing weight: sum_t g."""
    return stats.gate_sum


@CRITERIA.register("ean")
def ean(stats: LayerStats, rng: torch.Generator) -> torch.Tensor:
    """Expert activation norm over routed tokens: sum_t 1[g > 0] ||E(h)||."""
    return stats.ean_sum


@CRITERIA.register("easy_ep")
def easy_ep(stats: LayerStats, rng: torch.Generator) -> torch.Tensor:
    """Output-aware importance times token shift: sum_t g ||E(h)|| (1 - cos(h, h~))."""
    return stats.easy_ep_sum


@CRITERIA.register("reap")
def reap(stats: LayerStats, rng: torch.Generator) -> torch.Tensor:
    """Mean router-weighted output norm per routed token; 0 for never-routed experts."""
    count = stats.routed_count.double()
    return (stats.weighted_norm_sum / count.clamp(min=1)).where(count > 0, 0.0)


def kept_count(num_experts: int, ratio: float) -> int:
    """M = round((1 - p) N), halves rounded up (the float guard absorbs representation error)."""
    if not 0 < ratio < 1:
        raise ValueError(f"pruning ratio {ratio} is outside (0, 1)")
    return int(math.floor((1 - ratio) * num_experts + 0.5 + 1e-9))


def resolve_top_k(num_experts: int, top_k: int, ratio: float, allow_top_k_reduction: bool) -> int:
    """The top-k a pruned model routes with; an error when fewer than top-k experts would remain."""
    kept = kept_count(num_experts, ratio)
    if kept < 1:
        raise ValueError(f"ratio {ratio} keeps no expert out of {num_experts}")
    if kept >= top_k:
        return top_k
    if not allow_top_k_reduction:
        raise ValueError(
            f"ratio {ratio} keeps {kept} of {num_experts} experts, fewer than top-k={top_k}; "
            "set select.allow_top_k_reduction: true to route with top-k = kept experts"
        )
    return kept


def top_experts(scores: torch.Tensor, kept: int, n_group: int = 1) -> list[int]:
    """Indices of the `kept` highest scores (ties: lower index first), sorted ascending.

    With n_group > 1 (group-limited routers) every group keeps kept / n_group experts.
    """
    num_experts = scores.numel()
    if n_group > 1:
        if num_experts % n_group or kept % n_group:
            raise ValueError(f"{num_experts} experts in {n_group} groups cannot keep {kept} equally per group")
        size, per_group = num_experts // n_group, kept // n_group
        chosen: list[int] = []
        for group in range(n_group):
            local = top_experts(scores[group * size : (group + 1) * size], per_group)
            chosen.extend(group * size + i for i in local)
        return sorted(chosen)
    values = scores.tolist()
    ranked = sorted(range(num_experts), key=lambda i: (-values[i], i))
    return sorted(ranked[:kept])


def layer_stats(frame: pd.DataFrame) -> dict[int, LayerStats]:
    """Split an expert_stats frame (one row per layer, expert) into per-layer statistics."""
    import torch

    from expertlab.records import EXPERT_STATS

    missing = set(EXPERT_STATS.names()) - set(frame.columns)
    if missing:
        raise ValueError(f"expert statistics lack columns: {sorted(missing)}")
    result = {}
    for layer, group in frame.sort_values(["layer", "expert"]).groupby("layer", sort=True):
        if group["expert"].tolist() != list(range(len(group))):
            raise ValueError(f"layer {layer}: expert ids are not 0..{len(group) - 1}")

        def column(name: str, group: pd.DataFrame = group) -> torch.Tensor:
            return torch.tensor(group[name].to_numpy(), dtype=torch.float64)

        result[int(layer)] = LayerStats(
            tokens=int(group["tokens"].iloc[0]),
            routed_count=column("routed_count"),
            gate_sum=column("gate_sum"),
            ean_sum=column("ean_sum"),
            weighted_norm_sum=column("weighted_norm_sum"),
            easy_ep_sum=column("easy_ep_sum"),
        )
    return result


def criterion_scores(stats: dict[int, LayerStats], criterion: str, seed: int) -> dict[int, torch.Tensor]:
    """Scores of one criterion for every layer; the generator is seeded once and walks layers in order."""
    import torch

    fn = CRITERIA[criterion]
    rng = torch.Generator().manual_seed(seed)
    return {layer: fn(stats[layer], rng) for layer in sorted(stats)}


@dataclass(frozen=True)
class Mask:
    criterion: str
    ratio: float
    kept_per_layer: int
    top_k: int
    kept: list[list[int]]  # one list of kept expert indices per MoE layer, in layer order


def _score_table(scores_by_criterion: dict[str, dict[int, torch.Tensor]]) -> pd.DataFrame:
    """criterion -> layer -> scores as the long table of EXPERT_SCORES (criterion, layer, expert, score)."""
    import pandas as pd

    from expertlab.records import EXPERT_SCORES

    rows = [
        {"criterion": criterion, "layer": layer, "expert": i, "score": v}
        for criterion, layers in scores_by_criterion.items()
        for layer, values in layers.items()
        for i, v in enumerate(values.tolist())
    ]
    frame = pd.DataFrame(rows, columns=EXPERT_SCORES.names())
    return frame.astype({"layer": "int32", "expert": "int32", "score": "float64"})


def select_masks(
    frames: Sequence[pd.DataFrame],
    criteria: Sequence[str],
    ratios: Sequence[float],
    seed: int,
    top_k: int,
    n_group: int = 1,
    allow_top_k_reduction: bool = False,
) -> tuple[pd.DataFrame, list[pd.DataFrame], list[Mask]]:
    """Every criterion x ratio mask from the expert statistics of one observation, or of several: a calibration
    made of parts scores each expert by the mean of its parts' score vectors, each from that part's own
    observation (paper §6, after EASY-EP; random is the one seeded draw, the same for every part).
    Returns the long table of the (mean) scores, each part's own table, and the masks."""
    import torch

    stats = [layer_stats(frame) for frame in frames]
    if not stats:
        raise ValueError("no expert statistics to select from")
    shapes = {tuple((layer, s.num_experts) for layer, s in sorted(part.items())) for part in stats}
    if len(shapes) != 1:
        raise ValueError("the observations of a combined calibration disagree on MoE layers or expert counts")
    num_experts = {s.num_experts for s in stats[0].values()}
    if len(num_experts) != 1:
        raise ValueError(f"layers disagree on the number of experts: {sorted(num_experts)}")
    (n,) = num_experts
    per_part: list[dict[str, dict[int, torch.Tensor]]] = [{} for _ in stats]
    mean: dict[str, dict[int, torch.Tensor]] = {}
    masks = []
    layers = sorted(stats[0])
    for criterion in criteria:
        for part, part_stats in zip(per_part, stats):
            part[criterion] = criterion_scores(part_stats, criterion, seed)
        scores = {layer: torch.stack([part[criterion][layer] for part in per_part]).mean(0) for layer in layers}
        mean[criterion] = scores
        for ratio in ratios:
            kept = kept_count(n, ratio)
            routed_top_k = resolve_top_k(n, top_k, ratio, allow_top_k_reduction)
            kept_experts = [top_experts(scores[layer], kept, n_group) for layer in layers]
            masks.append(Mask(criterion, float(ratio), kept, routed_top_k, kept_experts))
    return _score_table(mean), [_score_table(part) for part in per_part], masks
