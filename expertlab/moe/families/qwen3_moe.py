"""Qwen3-MoE: softmax top-k router `mlp.gate`, experts `mlp.experts`, no shared expert.

Loaded (transformers v5): fused `gate_up_proj [E, 2I, H]` and `down_proj [E, H, I]`.
On disk: per-expert `experts.<e>.{gate,up,down}_proj.weight` (the hub format, which
transformers v5 also writes) or the fused tensors; both are pruned in place.
"""

from __future__ import annotations

from expertlab.moe.families.base import SoftmaxTopKAdapter, family


@family("qwen3_moe")
class Qwen3MoeAdapter(SoftmaxTopKAdapter):
    count_keys = ("num_experts", "num_local_experts")  # transformers v5 saves the alias
    top_k_keys = ("num_experts_per_tok",)
