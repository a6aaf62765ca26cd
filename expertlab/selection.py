"""Observation dir(s) -> selection artifact: OUT/scores.parquet, OUT/<criterion>-<ratio>.json masks, OUT/meta.json
(and OUT/part_scores.parquet for a calibration made of parts)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from expertlab.records import SelectionMeta


def select_observation(
    observations: str | Path | Sequence[str | Path], out: str | Path, criteria: Sequence[str], ratios: Sequence[float],
    seed: int | None, allow_top_k_reduction: bool, calibration: str | None = None,
) -> SelectionMeta:
    """Every criterion x ratio mask of one observation, or of a calibration made of parts (several observations
    of one model and seed, one per part, named `calibration`: the mean of the parts' scores); the random
    criterion seeded by `seed`, by default the calibration seed. Returns the selection's record."""
    import pandas as pd

    from expertlab.criteria import CRITERIA, select_masks
    from expertlab.io import atomic_dir, write_json
    from expertlab.layout import mask_file_name
    from expertlab.records import EXPERT_SCORES, PART_SCORES, MaskEntry, ObservationMeta, SelectionMeta, read_meta

    directories = [Path(observations)] if isinstance(observations, (str, Path)) else [Path(o) for o in observations]
    if not directories:
        raise ValueError("no observation to select from")
    metas = [read_meta(directory, ObservationMeta) for directory in directories]
    frames = []
    for directory in directories:
        stats_path = directory / "expert_stats.parquet"
        if not stats_path.is_file():
            raise FileNotFoundError(f"missing file: {stats_path}")
        frames.append(pd.read_parquet(stats_path))
    meta = metas[0]
    parts = [m.calibration for m in metas] if len(metas) > 1 else []
    if parts:
        if calibration is None:
            raise ValueError("several observations make a combined calibration: name it (--calibration)")
        for other, directory in zip(metas, directories):
            for field in ("model", "seed", "num_experts", "top_k", "n_group", "moe_layers"):
                if getattr(other, field) != getattr(meta, field):
                    raise ValueError(
                        f"{directory}: {field} {getattr(other, field)!r} differs from {directories[0]}'s "
                        f"{getattr(meta, field)!r}; a combined calibration's parts observe one model on one seed"
                    )
        if len(set(parts)) != len(parts):
            raise ValueError(f"a combined calibration names a part twice: {', '.join(parts)}")
    elif calibration is not None and calibration != meta.calibration:
        raise ValueError(f"{directories[0]}: observed on calibration {meta.calibration!r}, not {calibration!r}")
    if not ratios:
        raise ValueError("no pruning ratios: pass --ratios or --params")
    random_seed = meta.seed if seed is None else seed
    for name in criteria:
        CRITERIA[name]  # unknown names fail here, listing the allowed ones
    scores, part_scores, masks = select_masks(
        frames, criteria, ratios, seed=random_seed, top_k=meta.top_k,
        n_group=meta.n_group, allow_top_k_reduction=allow_top_k_reduction,
    )  # fmt: skip
    entries = [
        MaskEntry(criterion=mask.criterion, ratio=mask.ratio, file=mask_file_name(mask.criterion, mask.ratio),
                  kept_per_layer=mask.kept_per_layer, top_k=mask.top_k)
        for mask in masks
    ]  # fmt: skip
    selection = SelectionMeta(
        model=meta.model, calibration=calibration or meta.calibration, parts=parts, seed=meta.seed,
        random_seed=random_seed, moe_layers=meta.moe_layers, num_experts=meta.num_experts, top_k=meta.top_k,
        masks=entries,
    )  # fmt: skip
    with atomic_dir(out, owner="select", inputs=directories) as tmp:
        EXPERT_SCORES.write(tmp / "scores.parquet", scores)
        if parts:
            PART_SCORES.write(tmp / "part_scores.parquet", pd.concat(
                [frame.assign(part=part) for part, frame in zip(parts, part_scores)], ignore_index=True
            ))  # fmt: skip
        for mask, entry in zip(masks, entries):
            write_json(tmp / entry.file, mask.kept)
        write_json(tmp / "meta.json", selection.dump())
    return selection
