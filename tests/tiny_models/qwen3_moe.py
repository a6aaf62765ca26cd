"""Tiny Qwen3-MoE: 2 layers, 8 experts, top-2, normalised top-k weights."""

from __future__ import annotations

from tests.tiny_models import (  # noqa: F401  (the module's contract)
    decisive_routers,
    seeded,
    swiglu_expert as reference_expert,
    post_attention_norm as residual_module,
)

FAMILY = "qwen3_moe"


def build(seed: int = 0, num_experts: int = 8, top_k: int = 2, layers: int = 2):  # noqa: ANN201
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    model = seeded(
        Qwen3MoeForCausalLM, Qwen3MoeConfig, seed,
        intermediate_size=64, moe_intermediate_size=16, num_hidden_layers=layers, num_key_value_heads=2, head_dim=8,
        num_experts=num_experts, num_experts_per_tok=top_k, norm_topk_prob=True,
    )
    return decisive_routers(model)
