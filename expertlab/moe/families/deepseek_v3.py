"""DeepSeek-V3: sigmoid router with a score-correction bias and routing groups; otherwise laid out as DeepSeek-V2.

The router (`noaux_tc`) chooses with sigmoid(logits) + `e_score_correction_bias`: it keeps the
`topk_group` of `n_group` groups whose two best corrected scores sum highest, then the top-k
corrected scores inside them. It combines with the uncorrected sigmoid scores of the chosen experts,
renormalised over the top-k when `norm_topk_prob`, times `routed_scaling_factor`. Every group must
therefore keep at least 2 experts, and the picked groups at least top-k between them.
The correction bias is a row per routed expert, sliced with the router weight (EASY-EP's code never
sliced it). Hub checkpoints carry a multi-token-prediction layer after the last decoder layer, which
`expert_tensors` refuses (see deepseek_v2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from expertlab.moe.families.base import MoELayer, Routing, exclude_by_correction_bias, family
from expertlab.moe.families.deepseek_v2 import DeepseekV2Adapter

if TYPE_CHECKING:
    import torch


@family("deepseek_v3")
class DeepseekV3Adapter(DeepseekV2Adapter):
    count_keys = ("n_routed_experts", "num_local_experts")  # transformers reads `num_local_experts` as an alias
    router_tensors = ("weight", "e_score_correction_bias")
    scored_per_group = 2  # a group scores the sum of its two best corrected scores

    def routing(self, config: Any) -> Routing:
        config = self.text_config(config)
        n_group = config.get("n_group") or 1
        num_experts, top_k = self.counts(config)
        return Routing(
            num_experts=num_experts,
            top_k=top_k,
            n_group=n_group,
            kind="sigmoid-group-limited" if n_group > 1 else "sigmoid-topk",
        )

    def prune_layer(self, layer: MoELayer, keep: torch.Tensor) -> None:
        router = layer.router
        bias = router.e_score_correction_bias
        super().prune_layer(layer, keep)
        router.e_score_correction_bias = bias.index_select(0, keep.to(bias.device)).clone()

    def restrict_router(self, layer: MoELayer, keep: torch.Tensor) -> Callable[[], None]:
        """A -inf correction bias outside `keep`: the router's own forward then scores groups and picks
        top-k among the kept experts only, while the combine weights, read from the uncorrected scores
        of the chosen experts and renormalised over them, are what the pruned router computes."""
        self.check_kept(layer.block.config, self.kept_per_group(layer.block.config, keep), layer.router.top_k)
        return exclude_by_correction_bias(layer.router, keep)
