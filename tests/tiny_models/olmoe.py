"""Tiny OLMoE: 2 layers, all MoE, 8 experts, top-2, top-k weights NOT renormalised (the hub default)."""

from __future__ import annotations

from tests.tiny_models import (  # noqa: F401  (the module's contract)
    decisive_routers,
    seeded,
    swiglu_expert as reference_expert,
    post_attention_norm as residual_module,
)

FAMILY = "olmoe"


def build(seed: int = 0, norm_topk_prob: bool = False, num_experts: int = 8, top_k: int = 2):  # noqa: ANN201
    from transformers import OlmoeConfig, OlmoeForCausalLM

    model = seeded(
        OlmoeForCausalLM, OlmoeConfig, seed,
        intermediate_size=16, num_hidden_layers=2, num_key_value_heads=2,
        num_experts=num_experts, num_experts_per_tok=top_k, norm_topk_prob=norm_topk_prob,
        pad_token_id=None, eos_token_id=None,
    )
    return decisive_routers(model)
