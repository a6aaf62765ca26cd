"""OLMoE: softmax top-k router `mlp.gate`, top-k weights renormalised only when `norm_topk_prob`; every layer is MoE.

Loaded (transformers v5): fused `mlp.experts.{gate_up_proj [E, 2I, H], down_proj [E, H, I]}`.
On disk: per-expert `mlp.experts.<e>.{gate,up,down}_proj.weight` (the hub format, which
transformers v5 also writes) or the fused tensors; both are pruned in place. Without
renormalisation the combine weights are softmax probabilities over all experts, so pruning
changes them: the pruned model equals the source whose softmax runs over the kept experts only.
"""

from __future__ import annotations

from expertlab.moe.families.base import SoftmaxTopKAdapter, family


@family("olmoe")
class OlmoeAdapter(SoftmaxTopKAdapter):
    count_keys = ("num_experts", "num_local_experts")  # `num_local_experts` is transformers' alias
    top_k_keys = ("num_experts_per_tok",)
