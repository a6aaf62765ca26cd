"""Tiny DeepSeek-V3: 1 dense + 2 MoE layers, 16 experts in 4 groups, top-3 from 2 groups, non-zero correction bias."""

from __future__ import annotations

import torch

from tests.tiny_models import (  # noqa: F401  (the module's contract)
    DEEPSEEK_LAYOUT,
    LATENT_ATTENTION,
    seeded,
    swiglu_expert as reference_expert,
    post_attention_norm as residual_module,
)

FAMILY = "deepseek_v3"


def build(seed: int = 0, n_group: int = 4, topk_group: int = 2, top_k: int = 3):  # noqa: ANN201
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    model = seeded(
        DeepseekV3ForCausalLM, DeepseekV3Config, seed, **DEEPSEEK_LAYOUT, **LATENT_ATTENTION,
        num_experts_per_tok=top_k, n_group=n_group, topk_group=topk_group, routed_scaling_factor=2.5, norm_topk_prob=True,
    )
    return decisive_sigmoid_routers(model)


def decisive_sigmoid_routers(model):  # noqa: ANN001, ANN201
    """Routers scaled so choices are decisive, yet sigmoid(logits) stays below float32's 1.0 (no ties);
    a correction bias comparable to score gaps, so choosing with it differs from choosing without."""
    with torch.no_grad():
        for layer in model.model.layers[model.config.first_k_dense_replace :]:
            layer.mlp.gate.weight.normal_(0, 0.5)
            layer.mlp.gate.e_score_correction_bias.normal_(0, 0.2)
    return model.eval()
