"""Tiny GLM-4.5: 1 dense + 2 MoE layers, 16 experts in 4 groups, top-3 from 2 groups, non-zero correction bias."""

from __future__ import annotations

from tests.tiny_models import (  # noqa: F401  (the module's contract)
    DEEPSEEK_LAYOUT,
    seeded,
    swiglu_expert as reference_expert,
    post_attention_norm as residual_module,
)
from tests.tiny_models.deepseek_v3 import decisive_sigmoid_routers

FAMILY = "glm4_moe"


def build(seed: int = 0, n_group: int = 4, topk_group: int = 2, top_k: int = 3):  # noqa: ANN201
    from transformers import Glm4MoeConfig, Glm4MoeForCausalLM

    model = seeded(
        Glm4MoeForCausalLM, Glm4MoeConfig, seed, **DEEPSEEK_LAYOUT,
        num_key_value_heads=2, head_dim=8, use_qk_norm=True,
        num_experts_per_tok=top_k, n_group=n_group, topk_group=topk_group, routed_scaling_factor=2.5, norm_topk_prob=True,
    )
    return decisive_sigmoid_routers(model)
