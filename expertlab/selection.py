"""Observation dir -> selection artifact: OUT/scores.parquet, OUT/<criterion>-<ratio>.json masks, OUT/meta.json."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def select_observation(
    observation: str | Path, out: str | Path, criteria: Sequence[str], ratios: Sequence[float],
    seed: int | None, allow_top_k_reduction: bool,
) -> dict[str, Any]:
    """Every criterion x ratio mask of one observation (the random criterion seeded by `seed`, by default
    the calibration seed); returns the selection's meta.json."""
    import pandas as pd

    from expertlab.criteria import CRITERIA, select_masks
    from expertlab.io import atomic_dir, read_meta, write_json
    from expertlab.layout import mask_file_name

    observation = Path(observation)
    meta = read_meta(observation, "observation", ["top_k", "moe_layers", "num_experts"])
    stats_path = observation / "expert_stats.parquet"
    if not stats_path.is_file():
        raise FileNotFoundError(f"missing file: {stats_path}")
    if not ratios:
        raise ValueError("no pruning ratios: pass --ratios or --params")
    random_seed = meta.get("seed", 0) if seed is None else seed
    for name in criteria:
        CRITERIA[name]  # unknown names fail here, listing the allowed ones
    scores, masks = select_masks(
        pd.read_parquet(stats_path), criteria, ratios, seed=random_seed, top_k=meta["top_k"],
        n_group=meta.get("n_group", 1), allow_top_k_reduction=allow_top_k_reduction,
    )  # fmt: skip
    selection = {
        "kind": "selection",
        "model": meta.get("model"),
        "calibration": meta.get("calibration"),
        "seed": meta.get("seed"),
        "random_seed": random_seed,
        "moe_layers": meta["moe_layers"],
        "num_experts": meta["num_experts"],
        "top_k": meta["top_k"],
        "masks": [],
    }
    with atomic_dir(out, owner="select", inputs=[observation]) as tmp:
        scores.to_parquet(tmp / "scores.parquet", index=False)
        for mask in masks:
            name = mask_file_name(mask.criterion, mask.ratio)
            write_json(tmp / name, mask.kept)
            selection["masks"].append(
                {"criterion": mask.criterion, "ratio": mask.ratio, "file": name,
                 "kept_per_layer": mask.kept_per_layer, "top_k": mask.top_k}
            )  # fmt: skip
        write_json(tmp / "meta.json", selection)
    return selection
