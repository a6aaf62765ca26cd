"""Tiny Nemotron-H: Mamba2, MoE, attention, MoE, dense MLP; 8 experts in 2 routing groups, top-2, scaled weights."""

from __future__ import annotations

import torch

from tests.tiny_models import seeded

FAMILY = "nemotron_h"


def build(  # noqa: ANN201
    seed: int = 0,
    num_experts: int = 8,
    top_k: int = 2,
    n_group: int = 2,
    topk_group: int = 1,
    latent_size: int | None = None,
    mlp_bias: bool = False,
):
    from transformers import NemotronHConfig, NemotronHForCausalLM

    model = seeded(
        NemotronHForCausalLM, NemotronHConfig, seed,
        layers_block_type=["linear_attention", "moe", "full_attention", "moe", "mlp"],
        num_key_value_heads=2, head_dim=8, intermediate_size=48, mlp_bias=mlp_bias,
        mamba_num_heads=4, mamba_head_dim=8, ssm_state_size=8, chunk_size=8,
        n_groups=4,  # Mamba's B/C groups, not the router's n_group
        n_routed_experts=num_experts, num_experts_per_tok=top_k, n_group=n_group, topk_group=topk_group,
        moe_intermediate_size=16, moe_shared_expert_intermediate_size=24, moe_latent_size=latent_size,
        norm_topk_prob=True, routed_scaling_factor=2.5,
    )
    # Random init gives near-uniform routing and a zero correction bias; make both matter.
    with torch.no_grad():
        for block in model.model.layers:
            if block.block_type == "moe":
                block.mixer.gate.weight.normal_(0, 1.0)
                block.mixer.gate.e_score_correction_bias.normal_(0, 0.3)
                block.mixer.experts.up_proj.normal_(0, 0.3)
                block.mixer.experts.down_proj.normal_(0, 0.3)
    return model.eval()


def residual_module(model, layer_index: int):  # noqa: ANN001, ANN201
    return model.model.layers[layer_index].norm


def reference_expert(experts, e: int, h: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """Non-gated squared ReLU: down (relu(up h))^2."""
    return experts.down_proj[e].double() @ torch.relu(experts.up_proj[e].double() @ h.double()).square()
