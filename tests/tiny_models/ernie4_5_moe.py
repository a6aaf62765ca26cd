"""Tiny ERNIE-4.5-MoE: 4 layers, layer 0 dense, 8 routed experts, top-2, one shared expert, a score-correction bias."""

from __future__ import annotations

import torch

from tests.tiny_models import (  # noqa: F401  (the module's contract)
    seeded,
    swiglu_expert as reference_expert,
    post_attention_norm as residual_module,
)

FAMILY = "ernie4_5_moe"


def build(  # noqa: ANN201
    seed: int = 0,
    layers: int = 4,
    start: int = 1,
    end: int = -1,
    interval: int = 1,
    shared: int = 1,
):
    from transformers import Ernie4_5_MoeConfig, Ernie4_5_MoeForCausalLM

    model = seeded(
        Ernie4_5_MoeForCausalLM, Ernie4_5_MoeConfig, seed,
        intermediate_size=48, moe_intermediate_size=16, num_hidden_layers=layers, num_key_value_heads=2,
        moe_num_experts=8, moe_k=2, moe_num_shared_experts=shared,
        moe_layer_start_index=start, moe_layer_end_index=end, moe_layer_interval=interval,
    )
    # Random init gives near-uniform routing and a zero correction bias; make both matter.
    with torch.no_grad():
        for layer in model.model.layers:
            if hasattr(layer.mlp, "gate"):
                layer.mlp.gate.weight.normal_(0, 1.0)
                layer.mlp.gate.moe_statics.e_score_correction_bias.normal_(0, 0.2)
    return model.eval()
