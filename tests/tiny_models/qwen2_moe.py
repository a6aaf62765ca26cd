"""Tiny Qwen2-MoE: 4 layers, layer 1 dense (`mlp_only_layers`), 8 routed experts, top-2, one shared expert."""

from __future__ import annotations

import torch

from tests.tiny_models import (  # noqa: F401  (the module's contract)
    seeded,
    swiglu_expert as reference_expert,
    post_attention_norm as residual_module,
)

FAMILY = "qwen2_moe"


def build(  # noqa: ANN201
    seed: int = 0,
    layers: int = 4,
    mlp_only_layers: tuple[int, ...] = (1,),
    decoder_sparse_step: int = 1,
    norm_topk_prob: bool = False,
):
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    model = seeded(
        Qwen2MoeForCausalLM, Qwen2MoeConfig, seed,
        intermediate_size=48, moe_intermediate_size=16, shared_expert_intermediate_size=24,
        num_hidden_layers=layers, num_key_value_heads=2, num_experts=8, num_experts_per_tok=2,
        norm_topk_prob=norm_topk_prob, mlp_only_layers=list(mlp_only_layers), decoder_sparse_step=decoder_sparse_step,
    )
    # Random init gives near-uniform routing; scale the routers (and the shared expert's gate,
    # so its sigmoid is not a flat 0.5) so choices are decisive.
    with torch.no_grad():
        for layer in model.model.layers:
            if hasattr(layer.mlp, "gate"):
                layer.mlp.gate.weight.normal_(0, 1.0)
                layer.mlp.shared_expert_gate.weight.normal_(0, 1.0)
    return model.eval()
