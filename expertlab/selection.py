"""Observation dir -> selection artifact: OUT/scores.parquet, OUT/<criterion>-<ratio>.json masks, OUT/meta.json."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from expertlab.records import SelectionMeta


def select_observation(
    observation: str | Path, out: str | Path, criteria: Sequence[str], ratios: Sequence[float],
    seed: int | None, allow_top_k_reduction: bool,
) -> SelectionMeta:
    """Every criterion x ratio mask of one observation (the random criterion seeded by `seed`, by default
    the calibration seed); returns the selection's record."""
    import pandas as pd

    from expertlab.criteria import CRITERIA, select_masks
    from expertlab.io import atomic_dir, write_json
    from expertlab.layout import mask_file_name
    from expertlab.records import EXPERT_SCORES, MaskEntry, ObservationMeta, SelectionMeta, read_meta

    observation = Path(observation)
    meta = read_meta(observation, ObservationMeta)
    stats_path = observation / "expert_stats.parquet"
    if not stats_path.is_file():
        raise FileNotFoundError(f"missing file: {stats_path}")
    if not ratios:
        raise ValueError("no pruning ratios: pass --ratios or --params")
    random_seed = meta.seed if seed is None else seed
    for name in criteria:
        CRITERIA[name]  # unknown names fail here, listing the allowed ones
    scores, masks = select_masks(
        pd.read_parquet(stats_path), criteria, ratios, seed=random_seed, top_k=meta.top_k,
        n_group=meta.n_group, allow_top_k_reduction=allow_top_k_reduction,
    )  # fmt: skip
    entries = [
        MaskEntry(criterion=mask.criterion, ratio=mask.ratio, file=mask_file_name(mask.criterion, mask.ratio),
                  kept_per_layer=mask.kept_per_layer, top_k=mask.top_k)
        for mask in masks
    ]  # fmt: skip
    selection = SelectionMeta(
        model=meta.model, calibration=meta.calibration, seed=meta.seed, random_seed=random_seed,
        moe_layers=meta.moe_layers, num_experts=meta.num_experts, top_k=meta.top_k, masks=entries,
    )  # fmt: skip
    with atomic_dir(out, owner="select", inputs=[observation]) as tmp:
        EXPERT_SCORES.write(tmp / "scores.parquet", scores)
        for mask, entry in zip(masks, entries):
            write_json(tmp / entry.file, mask.kept)
        write_json(tmp / "meta.json", selection.dump())
    return selection
