"""Tiny OLMoE: 2 layers, all MoE, 8 experts, top-2, top-k weights NOT renormalised (the hub default)."""

from __future__ import annotations

import torch

from tests.tiny_models import (  # noqa: F401  (the module's contract)
    swiglu_expert as reference_expert,
    post_attention_norm as residual_module,
)

FAMILY = "olmoe"


def build(seed: int = 0, norm_topk_prob: bool = False, num_experts: int = 8, top_k: int = 2):  # noqa: ANN201
    from transformers import OlmoeConfig, OlmoeForCausalLM

    torch.manual_seed(seed)
    config = OlmoeConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_experts=num_experts,
        num_experts_per_tok=top_k,
        norm_topk_prob=norm_topk_prob,
        max_position_embeddings=128,
        pad_token_id=None,
        eos_token_id=None,
    )
    model = OlmoeForCausalLM(config)
    # Random init gives near-uniform routing; scale the routers so choices are decisive.
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.gate.weight.normal_(0, 1.0)
    return model.eval()
