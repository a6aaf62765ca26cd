"""The second study's fine-tuning strategies (paper 001 §5, Figs. 4-7): each a training mode and, where the mode
trains selected experts, the ranking that selects them. Nothing here imports torch.

- full: every parameter trains (the paper's baseline);
- af: in each chosen layer, the m experts of highest activation frequency AF^(d) train;
- edmrs: the m experts of highest EDMRS^(d) train (the paper's method);
- lora: standard LoRA, the paper's comparison of Fig. 7;
- lora_edmrs: LoRA on the EDMRS experts only (§4: "LoRA's low-rank matrices can be directly applied to them").

A selective strategy can also train one given MoE layer: `<strategy>_l<layer>` (e.g. `edmrs_l2`), whatever
finetune.layers chooses for the others: the layer-by-layer comparison of Fig. 6c.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from expertlab.errors import UnknownName
from expertlab.registry import Registry


@dataclass(frozen=True)
class Strategy:
    mode: str  # a mode of expertlab.finetune.modes
    ranking: str | None  # af or edmrs (expertlab.monosemanticity.selection.RANKINGS); None: no selection


STRATEGIES: Registry[Strategy] = Registry("fine-tuning strategy")
STRATEGIES.add("full", Strategy("full", None))
STRATEGIES.add("af", Strategy("experts", "af"))
STRATEGIES.add("edmrs", Strategy("experts", "edmrs"))
STRATEGIES.add("lora", Strategy("lora", None))
STRATEGIES.add("lora_edmrs", Strategy("lora_experts", "edmrs"))

AT_LAYER = re.compile(r"^(?P<base>[a-z_]+?)_l(?P<layer>[0-9]+)$")  # <strategy>_l<layer>


@dataclass(frozen=True)
class Plan:
    """A strategy as finetune.strategies names it: the registered strategy, and the one layer it trains, if named."""

    strategy: Strategy
    layer: int | None  # None: the layers finetune.layers chooses


def strategy_plan(name: str) -> Plan:
    """`full`, `edmrs`, ..., or a selective strategy at one layer (`edmrs_l2`); anything else is an UnknownName."""
    if name in STRATEGIES:
        return Plan(STRATEGIES[name], None)
    at = AT_LAYER.match(name)
    if at and at["base"] in STRATEGIES and STRATEGIES[at["base"]].ranking is not None:
        return Plan(STRATEGIES[at["base"]], int(at["layer"]))
    raise UnknownName(f"{STRATEGIES.unknown_message(name)}; or a selective one at one MoE layer, e.g. edmrs_l2")
