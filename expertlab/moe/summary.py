"""Model directory -> its MoE structure and parameter counts before and after pruning, from files only.

Reads config.json and the safetensors headers (never the weights), so it answers instantly for
any model size. Counts are stored tensor elements: for packed quantised formats (MXFP4 blocks)
an element holds more than one parameter.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from expertlab.io import read_json
from expertlab.moe.checkpoint import PrunePlan, checkpoint_files, read_safetensors_header
from expertlab.moe.families import FAMILIES


@dataclass
class PrunedSize:
    ratio: float
    kept_per_layer: int
    top_k: int
    parameters: int | None  # None when the family refuses this ratio
    refused: str | None = None  # why


@dataclass
class ModelSummary:
    model_dir: str
    family: str
    decoder_layers: int
    moe_layers: list[int]
    num_experts: int
    top_k: int
    routing: str
    n_group: int
    shared_experts: int
    parameters: int
    routed_expert_parameters: int
    pruned: list[PrunedSize] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def even_mask(num_layers: int, num_experts: int, kept: int, n_group: int) -> list[list[int]]:
    """A mask keeping `kept` experts per layer, the same number from each routing group."""
    group = num_experts // max(n_group, 1)
    per_group = kept // max(n_group, 1)
    layer = [g * group + i for g in range(max(n_group, 1)) for i in range(per_group)]
    return [list(layer) for _ in range(num_layers)]


def summarize(model_dir: str | Path, ratios: list[float] = ()) -> ModelSummary:
    from expertlab.criteria import kept_count

    model_dir = Path(model_dir)
    config = read_json(model_dir / "config.json")
    adapter = FAMILIES[config.get("model_type")]
    routing = adapter.routing(config)
    files, _ = checkpoint_files(model_dir)
    entries = [entry for name in files for entry in read_safetensors_header(model_dir / name)[0]]
    names = {entry.name for entry in entries}
    layers = adapter.expert_tensors(config, names)
    dropped = adapter.dropped_tensors(config, names)  # left out of every pruned checkpoint (MTP modules)
    total = sum(math.prod(entry.shape) for entry in entries)

    def pruned_parameters(kept: int) -> int:
        mask = even_mask(len(layers), routing.num_experts, kept, routing.n_group)
        plan = PrunePlan(layers, mask, routing.num_experts, dropped)
        outputs = [out for out in map(plan.apply, entries) if out is not None]
        plan.check_complete()
        return sum(math.prod(out.shape) for out in outputs)

    locator = PrunePlan(layers, [[] for _ in layers], routing.num_experts)
    routed = sum(math.prod(e.shape) for e in entries if locator.locate_expert_tensor(e.name) is not None)
    text = adapter.text_config(config)
    summary = ModelSummary(
        model_dir=str(model_dir),
        family=config["model_type"],
        decoder_layers=int(text.get("num_hidden_layers", 0)),
        moe_layers=[layer.layer for layer in layers],
        num_experts=routing.num_experts,
        top_k=routing.top_k,
        routing=routing.kind,
        n_group=routing.n_group,
        shared_experts=adapter.shared_experts(config),
        parameters=total,
        routed_expert_parameters=routed,
    )
    for ratio in ratios:
        kept = kept_count(routing.num_experts, ratio)
        top_k = min(routing.top_k, kept)
        try:
            if routing.n_group > 1 and kept % routing.n_group:
                raise ValueError(f"{kept} experts do not split evenly over {routing.n_group} routing groups")
            adapter.pruned_config(config, kept, top_k)  # the family's own refusals
        except ValueError as err:
            summary.pruned.append(PrunedSize(ratio, kept, top_k, None, refused=str(err)))
            continue
        summary.pruned.append(PrunedSize(ratio, kept, top_k, pruned_parameters(kept)))
    return summary


def describe(s: ModelSummary) -> str:
    """The summary as `expertlab inspect` prints it: one line per fact, then one per pruning ratio."""
    layers = s.moe_layers
    shown = ", ".join(map(str, layers)) if len(layers) <= 12 else f"{layers[0]}..{layers[-1]}"
    groups = f", {s.n_group} routing groups" if s.n_group > 1 else ""
    share = s.routed_expert_parameters / s.parameters if s.parameters else 0.0
    lines = [
        f"{s.model_dir}: {s.family}",
        f"  MoE layers        {len(layers)} of {s.decoder_layers} decoder layers ({shown})",
        f"  routed experts    {s.num_experts} per layer, top-k {s.top_k}, {s.routing} routing{groups}",
        f"  shared experts    {s.shared_experts or 'none'}",
        f"  parameters        {s.parameters:,} ({s.routed_expert_parameters:,} in routed experts, {share:.1%})",
    ]
    for pruned in s.pruned:
        if pruned.parameters is None:
            lines.append(f"  pruned {pruned.ratio:>5.3g}      refused: {pruned.refused}")
            continue
        change = pruned.parameters / s.parameters - 1 if s.parameters else 0.0
        lines.append(
            f"  pruned {pruned.ratio:>5.3g}      {pruned.parameters:,} ({change:+.1%}), "
            f"{pruned.kept_per_layer} experts per layer kept, top-k {pruned.top_k}"
            + (" (reduced: needs select.allow_top_k_reduction)" if pruned.top_k < s.top_k else "")
        )
    return "\n".join(lines)
