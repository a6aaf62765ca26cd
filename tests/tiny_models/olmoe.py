"""Tiny OLMoE: 2 layers, all MoE, 8 experts, top-2, top-k weights NOT renormalised (the hub default)."""

from __future__ import annotations

import torch

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


def residual_module(model, layer_index: int):  # noqa: ANN001, ANN201
    return model.model.layers[layer_index].post_attention_layernorm


def reference_expert(experts, e: int, h: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """SwiGLU: down (silu(gate h) * up h), with gate_up_proj[e] = [gate; up] stacked on dim 0."""
    gate, up = (experts.gate_up_proj[e].double() @ h.double()).chunk(2)
    return experts.down_proj[e].double() @ (torch.nn.functional.silu(gate) * up)
