"""Tiny Qwen3.5-MoE as AutoModelForCausalLM loads it: 4 layers (3 linear attention, 1 full), all sparse,
8 routed experts, top-2, one shared expert behind a sigmoid gate."""

from __future__ import annotations

import torch

from tests.tiny_models import (  # noqa: F401  (the module's contract)
    SHARED_CONFIG,
    swiglu_expert as reference_expert,
    post_attention_norm as residual_module,
)

FAMILY = "qwen3_5_moe"
ALSO = ("qwen3_5_moe_text",)  # what AutoModelForCausalLM loads

TEXT_CONFIG = SHARED_CONFIG | dict(  # the decoder, as `text_config` of the vision-language config
    num_hidden_layers=4,
    num_key_value_heads=2,
    head_dim=8,
    linear_key_head_dim=8,
    linear_value_head_dim=8,
    linear_num_key_heads=2,
    linear_num_value_heads=4,
    moe_intermediate_size=16,
    shared_expert_intermediate_size=24,
    num_experts=8,
    num_experts_per_tok=2,
)


def scale_routers(decoder) -> None:  # noqa: ANN001
    """Random init gives near-uniform routing; scale the routers (and the shared expert's gate, so its
    sigmoid is not a flat 0.5) so choices are decisive."""
    with torch.no_grad():
        for layer in decoder.layers:
            layer.mlp.gate.weight.normal_(0, 1.0)
            layer.mlp.shared_expert_gate.weight.normal_(0, 1.0)


def build(seed: int = 0):  # noqa: ANN201
    from transformers import Qwen3_5MoeConfig, Qwen3_5MoeForCausalLM

    torch.manual_seed(seed)
    config = Qwen3_5MoeConfig(text_config=TEXT_CONFIG)
    model = Qwen3_5MoeForCausalLM(config.text_config)  # what AutoModelForCausalLM makes of a qwen3_5_moe checkpoint
    scale_routers(model.model)
    return model.eval()
