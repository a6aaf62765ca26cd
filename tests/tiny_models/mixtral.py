"""Tiny Mixtral: 2 layers, all MoE, 8 experts, top-2 (weights always renormalised)."""

from __future__ import annotations

import torch

from tests.tiny_models import (  # noqa: F401  (the module's contract)
    decisive_routers,
    seeded,
    post_attention_norm as residual_module,
)

FAMILY = "mixtral"


def build(seed: int = 0, num_experts: int = 8, top_k: int = 2, layers: int = 2):  # noqa: ANN201
    from transformers import MixtralConfig, MixtralForCausalLM

    model = seeded(
        MixtralForCausalLM, MixtralConfig, seed,
        intermediate_size=16, num_hidden_layers=layers, num_key_value_heads=2, head_dim=8,
        num_local_experts=num_experts, num_experts_per_tok=top_k, bos_token_id=None, eos_token_id=None,
    )
    return decisive_routers(model)


def reference_expert(experts, e: int, h: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """Mixtral's expert: w2 (silu(w1 h) * w3 h), with gate_up_proj[e] = [w1; w3] stacked on dim 0."""
    w1, w3 = experts.gate_up_proj[e].double().chunk(2)
    w2 = experts.down_proj[e].double()
    return w2 @ (torch.nn.functional.silu(w1 @ h.double()) * (w3 @ h.double()))
