"""Tiny DeepSeek-V2: 1 dense + 2 MoE layers, 16 experts in 4 groups, group-limited greedy top-3 from 2 groups."""

from __future__ import annotations

import torch

from tests.tiny_models import (  # noqa: F401  (the module's contract)
    swiglu_expert as reference_expert,
    post_attention_norm as residual_module,
)

FAMILY = "deepseek_v2"


def build(seed: int = 0, topk_method: str = "group_limited_greedy", top_k: int = 3):  # noqa: ANN201
    from transformers import DeepseekV2Config, DeepseekV2ForCausalLM

    torch.manual_seed(seed)
    config = DeepseekV2Config(
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
        n_group=4,
        topk_group=2,
        topk_method=topk_method,
        n_shared_experts=1,
        routed_scaling_factor=1.5,
        max_position_embeddings=128,
    )
    model = DeepseekV2ForCausalLM(config)
    # Random init gives near-uniform routing; scale the routers so choices are decisive.
    with torch.no_grad():
        for layer in model.model.layers[config.first_k_dense_replace :]:
            layer.mlp.gate.weight.normal_(0, 1.0)
    return model.eval()
