"""A selection (decoder layer index -> expert ids to train) checked against a loaded model -> its normal form."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from expertlab.errors import ExpertlabError

if TYPE_CHECKING:
    from torch import nn

# decoder layer index -> ids of the routed experts that train (int keys: a selection read from JSON converts them)
Selection = Mapping[int, Sequence[int]]


class BadSelection(ExpertlabError, ValueError):
    """A selection that does not fit the model: a layer without routed experts, an id out of range or repeated."""


def moe_layer_sizes(model: nn.Module) -> dict[int, int]:
    """Decoder layer index -> routed experts in that layer, for every MoE layer of `model`."""
    from expertlab.moe.families import adapter_for

    adapter = adapter_for(model)
    num_experts = adapter.routing(model.config).num_experts
    return {layer.index: num_experts for layer in adapter.moe_layers(model)}


def check_selection(model: nn.Module, selection: Selection | None, mode: str) -> dict[int, tuple[int, ...]]:
    """`selection` with sorted layers and sorted expert ids; every problem of it named in one error.

    Modes that train selected experts need a non-empty selection; the others (full, lora) take none.
    """
    from expertlab.finetune.modes import MODES

    wanted = MODES[mode].needs_selection
    if not selection:
        if wanted:
            raise BadSelection(f"mode {mode!r} trains selected experts: the selection is empty")
        return {}
    if not wanted:
        raise BadSelection(f"mode {mode!r} trains no selected experts: pass no selection (got layers {sorted(selection)})")
    sizes = moe_layer_sizes(model)
    problems: list[str] = []
    normal: dict[int, tuple[int, ...]] = {}
    for layer, experts in selection.items():
        if not _is_int(layer):
            problems.append(f"layer {layer!r} is not an integer")
            continue
        if layer not in sizes:
            problems.append(f"layer {layer} has no routed experts (MoE layers: {_spans(sorted(sizes))})")
            continue
        if isinstance(experts, (str, bytes)) or not isinstance(experts, Sequence):
            problems.append(f"layer {layer}: experts must be a list of ids, got {experts!r}")
            continue
        if not experts:
            problems.append(f"layer {layer}: no experts listed")
            continue
        bad = [e for e in experts if not _is_int(e)]
        outside = [e for e in experts if _is_int(e) and not 0 <= e < sizes[layer]]
        repeated = sorted({e for e in experts if _is_int(e) and list(experts).count(e) > 1})
        if bad:
            problems.append(f"layer {layer}: expert ids {bad} are not integers")
        if outside:
            problems.append(f"layer {layer}: expert ids {outside} outside 0..{sizes[layer] - 1}")
        if repeated:
            problems.append(f"layer {layer}: expert ids {repeated} listed twice")
        if not (bad or outside or repeated):
            normal[layer] = tuple(sorted(experts))
    if problems:
        raise BadSelection("selection does not fit the model: " + "; ".join(problems))
    return dict(sorted(normal.items()))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _spans(values: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2, 5"."""
    spans: list[str] = []
    for value in values:
        if spans and value - 1 == int(spans[-1].rpartition("-")[2]):
            spans[-1] = f"{spans[-1].partition('-')[0]}-{value}"
        else:
            spans.append(str(value))
    return ", ".join(spans)
