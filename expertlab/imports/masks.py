"""The study's released masks (`<model>-<calibration>-<criterion>-<seed>[-<ratio>]/expert_mask.json`) -> selection artifacts.

The format is the study's release (shared/reference/moe-pruning-reliability, its README): a JSON
list holding the KEPT expert indices of each MoE layer. The directory's name is the pruned model's,
read as a variant by expertlab.imports.study (no ratio suffix means 0.5; gating -> gate, easyep -> easy_ep).

What the files cannot say is recorded as unknown, never guessed: top-k is null, and layers are
numbered by their position among the MoE layers. The expert count comes from `num_experts` or
is inferred per model from the masks whose kept count must follow the ratio (every criterion but
random: the study's random selector ignored the ratio, so its masks keep N/2 at every ratio;
they are imported as they are, and `variants.kept_per_layer` shows it).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from expertlab.criteria import kept_count
from expertlab.imports import IMPORTED, find_files
from expertlab.imports.study import check_criteria, study_variant
from expertlab.io import atomic_dir, write_json

MASK_FILE = "expert_mask.json"


@dataclass(frozen=True)
class ExternalMask:
    model: str
    calibration: str
    seed: int
    criterion: str  # a CRITERIA name
    ratio: float
    kept: list[list[int]]
    source: str  # the file it came from

    @property
    def kept_per_layer(self) -> int:
        return len(self.kept[0])


def find_mask_files(paths: Iterable[str | Path]) -> list[Path]:
    """`expert_mask.json` files: given directly, in a given directory, or one level below it."""

    def below(directory: Path) -> list[Path]:
        return [directory / MASK_FILE] if (directory / MASK_FILE).is_file() else sorted(directory.glob(f"*/{MASK_FILE}"))

    return find_files(paths, below, f"no {MASK_FILE} in it or in its subdirectories")


def read_study_mask(path: Path) -> ExternalMask:
    """One released mask; its identity comes from its directory's name."""
    try:
        variant = study_variant(path.parent.name)
    except ValueError as err:
        raise ValueError(f"{path}: directory name {err}") from None
    try:
        kept = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(kept, list) or not kept or not all(isinstance(layer, list) and layer for layer in kept):
        raise ValueError(f"{path}: expected a non-empty list of kept-expert lists, one per MoE layer")
    if any(isinstance(e, bool) or not isinstance(e, int) or e < 0 for layer in kept for e in layer):
        raise ValueError(f"{path}: expert indices must be non-negative integers")
    if len({len(layer) for layer in kept}) != 1 or any(len(set(layer)) != len(layer) for layer in kept):
        raise ValueError(f"{path}: every layer must keep the same number of distinct experts")
    return ExternalMask(
        model=variant.model,
        calibration=str(variant.calibration),
        seed=int(variant.seed),  # type: ignore[arg-type]
        criterion=str(variant.criterion),
        ratio=float(variant.ratio),  # type: ignore[arg-type]
        kept=[sorted(layer) for layer in kept],
        source=str(path),
    )


def infer_num_experts(masks: Sequence[ExternalMask], given: Mapping[str, int] = {}) -> dict[str, int]:
    """Experts per layer of each model: given, or the one count every ratio-following mask agrees on."""
    counts: dict[str, int] = {}
    for model in sorted({mask.model for mask in masks}):
        mine = [mask for mask in masks if mask.model == model]
        largest = max(max(layer) for mask in mine for layer in mask.kept)
        if model in given:
            count = given[model]
        else:
            following = [mask for mask in mine if mask.criterion != "random"]
            # kept = round((1 - p) N) bounds N by (kept + 1) / (1 - p)
            bound = max((math.ceil((m.kept_per_layer + 1) / (1 - m.ratio)) for m in following), default=0)
            agreed = [
                n for n in range(largest + 1, bound + 1)
                if all(kept_count(n, m.ratio) == m.kept_per_layer for m in following)
            ]
            if len(agreed) != 1:
                found = f" (could be {', '.join(map(str, agreed))})" if agreed else ""
                raise ValueError(
                    f"cannot infer the expert count of {model!r} from its masks{found}; pass --num-experts {model}=N"
                )
            count = agreed[0]
        if largest >= count:
            raise ValueError(f"{model}: a mask keeps expert {largest}, beyond the expert count {count}")
        counts[model] = count
    return counts


def write_selections(masks: Sequence[ExternalMask], num_experts: Mapping[str, int], out_dir: str | Path) -> list[Path]:
    """One selection artifact per (model, calibration, seed) under out_dir/<model>/<calibration>/<seed>/."""
    from expertlab.layout import mask_file_name
    from expertlab.records import EXPERT_SCORES, MaskEntry, SelectionMeta

    groups: dict[tuple[str, str, int], list[ExternalMask]] = defaultdict(list)
    for mask in masks:
        groups[(mask.model, mask.calibration, mask.seed)].append(mask)
    written = []
    for (model, calibration, seed), members in sorted(groups.items()):
        layers = {len(mask.kept) for mask in members}
        if len(layers) != 1:
            raise ValueError(f"{model}: masks disagree on the number of MoE layers ({sorted(layers)})")
        members = sorted(members, key=lambda m: (m.criterion, m.ratio))
        entries, seen = [], set()
        for mask in members:
            if (mask.criterion, mask.ratio) in seen:
                raise ValueError(f"two masks for {model} {calibration} seed {seed} {mask.criterion} {mask.ratio}")
            seen.add((mask.criterion, mask.ratio))
            entries.append(
                MaskEntry(
                    criterion=mask.criterion, ratio=mask.ratio, file=mask_file_name(mask.criterion, mask.ratio),
                    kept_per_layer=mask.kept_per_layer, top_k=None, source=mask.source,
                    expected_kept_per_layer=kept_count(num_experts[model], mask.ratio),
                )
            )  # fmt: skip
        selection = SelectionMeta(
            origin=IMPORTED, model=model, calibration=calibration, seed=seed, num_experts=num_experts[model],
            top_k=None, moe_layers=list(range(layers.pop())),  # positions among the MoE layers
            masks=entries,
        )  # fmt: skip
        target = Path(out_dir) / model / calibration / str(seed)
        with atomic_dir(target, owner="import-masks", inputs=[m.source for m in members]) as tmp:
            for mask, entry in zip(members, entries):
                write_json(tmp / entry.file, mask.kept)
            EXPERT_SCORES.write(tmp / "scores.parquet", [])
            write_json(tmp / "meta.json", selection.dump())
        written.append(target)
    return written


@dataclass(frozen=True)
class MaskImport:
    """What one import wrote: the masks read, each model's expert count, the selection artifacts."""

    masks: list[ExternalMask]
    num_experts: dict[str, int]
    written: list[Path]
    out_dir: str

    def summary(self) -> list[str]:
        """One line per model, one for the whole, and one when masks keep other than their ratio implies."""
        lines = []
        for model, count in self.num_experts.items():
            mine = [m for m in self.masks if m.model == model]
            lines.append(f"{model}: {len(mine)} masks, {count} experts per layer, {len(mine[0].kept)} MoE layers")
        lines.append(f"{len(self.masks)} masks -> {len(self.written)} selection artifacts under {self.out_dir}/")
        off = sum(1 for m in self.masks if m.kept_per_layer != kept_count(self.num_experts[m.model], m.ratio))
        if off:
            lines.append(f"{off} masks keep a different number of experts than their ratio implies "
                         "(variants.kept_per_layer records what they keep)")
        return lines


def import_masks(paths: Iterable[str | Path], out_dir: str, num_experts: Mapping[str, int] = {}) -> MaskImport:
    """Every mask under `paths`, read and checked before anything is written, as selection artifacts under out_dir."""
    check_criteria()
    masks = [read_study_mask(path) for path in find_mask_files(paths)]
    counts = infer_num_experts(masks, num_experts)
    return MaskImport(masks, counts, write_selections(masks, counts, out_dir), out_dir)
