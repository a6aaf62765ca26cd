"""Qwen2-MoE: softmax top-k router `mlp.gate` plus one shared expert behind a sigmoid `mlp.shared_expert_gate`.

MoE layers follow `decoder_sparse_step` and `mlp_only_layers`; the others are dense MLPs. Only
the routed experts are pruned: `mlp.shared_expert.*` and `mlp.shared_expert_gate` stay whole,
and observation sees the routed experts alone (the shared expert is not in h~).
Loaded (transformers v5): fused `mlp.experts.{gate_up_proj [E, 2I, H], down_proj [E, H, I]}`.
On disk: per-expert `mlp.experts.<e>.{gate,up,down}_proj.weight` (the hub format, which
transformers v5 also writes) or the fused tensors; both are pruned in place.
"""

from __future__ import annotations

from typing import Any

from expertlab.moe.families.base import SoftmaxTopKAdapter, family


@family("qwen2_moe")
class Qwen2MoeAdapter(SoftmaxTopKAdapter):
    count_keys = ("num_experts",)  # transformers defines no alias for it
    top_k_keys = ("num_experts_per_tok",)

    def shared_experts(self, config: Any) -> int:
        """transformers always builds the shared expert; only a zero width makes it a no-op."""
        return 0 if self.text_config(config).get("shared_expert_intermediate_size") == 0 else 1
