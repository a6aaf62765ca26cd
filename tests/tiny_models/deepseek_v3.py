"""Tiny DeepSeek-V3: 1 dense + 2 MoE layers, 16 experts in 4 groups, top-3 from 2 groups, non-zero correction bias."""

from __future__ import annotations

import torch

from tests.tiny_models import (  # noqa: F401  (the module's contract)
    swiglu_expert as reference_expert,
    post_attention_norm as residual_module,
)

FAMILY = "deepseek_v3"


def build(seed: int = 0, n_group: int = 4, topk_group: int = 2, top_k: int = 3):  # noqa: ANN201
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    torch.manual_seed(seed)
    config = DeepseekV3Config(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        moe_intermediate_size=16,
        num_hidden_layers=3,
        first_k_dense_replace=1,
        num_attention_heads=4,
        num_key_value_heads=4,
        kv_lora_rank=16,
        q_lora_rank=None,
        qk_rope_head_dim=8,
        qk_nope_head_dim=8,
        v_head_dim=8,
        n_routed_experts=16,
        num_experts_per_tok=top_k,
        n_group=n_group,
        topk_group=topk_group,
        n_shared_experts=1,
        routed_scaling_factor=2.5,
        norm_topk_prob=True,
        max_position_embeddings=128,
    )
    model = DeepseekV3ForCausalLM(config)
    return decisive_sigmoid_routers(model)


def decisive_sigmoid_routers(model):  # noqa: ANN001, ANN201
    """Routers scaled so choices are decisive, yet sigmoid(logits) stays below float32's 1.0 (no ties);
    a correction bias comparable to score gaps, so choosing with it differs from choosing without."""
    with torch.no_grad():
        for layer in model.model.layers[model.config.first_k_dense_replace :]:
            layer.mlp.gate.weight.normal_(0, 0.5)
            layer.mlp.gate.e_score_correction_bias.normal_(0, 0.2)
    return model.eval()
