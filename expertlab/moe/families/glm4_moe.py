"""GLM-4.5 / GLM-4.6 (`glm4_moe`): DeepSeek-V3's router, experts, shared experts and tensor names.

Same sigmoid router with `e_score_correction_bias` and top-2 group scores, same leading dense layers
(`first_k_dense_replace`), same `mlp.{gate,experts,shared_experts}` on disk and when loaded; the
attention differs, which pruning never touches. Released configs route with `n_group` = 1, where
the top-2 group score still makes 2 kept experts the minimum. Hub checkpoints append a
multi-token-prediction layer (layer 92 of GLM-4.5, 46 of GLM-4.5-Air), refused as in DeepSeek-V3.
"""

from __future__ import annotations

from expertlab.moe.families.base import family
from expertlab.moe.families.deepseek_v3 import DeepseekV3Adapter


@family("glm4_moe")
class Glm4MoeAdapter(DeepseekV3Adapter):
    """The DeepSeek-V3 adapter under GLM's model type (transformers' Glm4Moe router is DeepseekV3's)."""
