"""Tiny DeepSeek-V2: 1 dense + 2 MoE layers, 16 experts in 4 groups, group-limited greedy top-3 from 2 groups."""

from __future__ import annotations

from tests.tiny_models import (  # noqa: F401  (the module's contract)
    DEEPSEEK_LAYOUT,
    LATENT_ATTENTION,
    decisive_routers,
    seeded,
    swiglu_expert as reference_expert,
    post_attention_norm as residual_module,
)

FAMILY = "deepseek_v2"


def build(seed: int = 0, topk_method: str = "group_limited_greedy", top_k: int = 3):  # noqa: ANN201
    from transformers import DeepseekV2Config, DeepseekV2ForCausalLM

    model = seeded(
        DeepseekV2ForCausalLM, DeepseekV2Config, seed, **DEEPSEEK_LAYOUT, **LATENT_ATTENTION,
        num_experts_per_tok=top_k, n_group=4, topk_group=2, topk_method=topk_method, routed_scaling_factor=1.5,
    )
    return decisive_routers(model, model.model.layers[model.config.first_k_dense_replace :])
