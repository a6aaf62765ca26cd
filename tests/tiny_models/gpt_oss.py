"""Tiny GPT-OSS: 2 layers (sliding then full attention), 8 biased experts, top-2, clamped SwiGLU."""

from __future__ import annotations

import torch

from tests.tiny_models import (  # noqa: F401  (the module's contract)
    seeded,
    post_attention_norm as residual_module,
)

FAMILY = "gpt_oss"


def build(seed: int = 0, num_experts: int = 8, top_k: int = 2, layers: int = 2):  # noqa: ANN201
    from transformers import GptOssConfig, GptOssForCausalLM

    model = seeded(
        GptOssForCausalLM, GptOssConfig, seed,
        intermediate_size=32,  # MXFP4 packs 32 values per block: a multiple of 32 allows hub-format tests
        num_hidden_layers=layers, num_key_value_heads=2, head_dim=8,
        num_local_experts=num_experts, num_experts_per_tok=top_k, sliding_window=4,
        swiglu_limit=2.0,  # low enough that the clamps act on these weights
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    # Random init gives near-uniform routing and zero biases; make routing decisive, the biases
    # non-zero (so slicing them matters) and gate/up large enough to reach the clamp.
    with torch.no_grad():
        for layer in model.model.layers:
            mlp = layer.mlp
            mlp.router.weight.normal_(0, 1.0)
            mlp.router.bias.normal_(0, 1.0)
            mlp.experts.gate_up_proj.normal_(0, 0.5)
            mlp.experts.gate_up_proj_bias.normal_(0, 0.5)
            mlp.experts.down_proj.normal_(0, 0.1)
            mlp.experts.down_proj_bias.normal_(0, 0.1)
    return model.eval()


def reference_expert(experts, e: int, h: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """Clamped SwiGLU with transposed, biased weights and gate/up interleaved (gate even, up odd columns).

    gate = min(g, limit), up = clip(u, -limit, limit), out = down^T ((up + 1) * gate * sigmoid(alpha gate)) + b.
    """
    gate_up = h.double() @ experts.gate_up_proj[e].double() + experts.gate_up_proj_bias[e].double()
    gate = gate_up[0::2].clamp(max=experts.limit)
    up = gate_up[1::2].clamp(min=-experts.limit, max=experts.limit)
    glu = gate * torch.sigmoid(experts.alpha * gate)
    return ((up + 1) * glu) @ experts.down_proj[e].double() + experts.down_proj_bias[e].double()
