"""The second study's fine-tuning strategies (paper 001 §5, Figs. 4-7): each a training mode and, where the mode
trains selected experts, the ranking that selects them. Nothing here imports torch.

- full: every parameter trains (the paper's baseline);
- af: in each chosen layer, the m experts of highest activation frequency AF^(d) train;
- edmrs: the m experts of highest EDMRS^(d) train (the paper's method);
- lora: standard LoRA, the paper's comparison of Fig. 7;
- lora_edmrs: LoRA on the EDMRS experts only (§4: "LoRA's low-rank matrices can be directly applied to them").
"""

from __future__ import annotations

from dataclasses import dataclass

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
