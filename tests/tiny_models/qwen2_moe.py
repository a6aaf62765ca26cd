"""Tiny Qwen2-MoE: 4 layers, layer 1 dense (`mlp_only_layers`), 8 routed experts, top-2, one shared expert."""

from __future__ import annotations

import torch

FAMILY = "qwen2_moe"


def build(  # noqa: ANN201
    seed: int = 0,
    layers: int = 4,
    mlp_only_layers: tuple[int, ...] = (1,),
    decoder_sparse_step: int = 1,
    norm_topk_prob: bool = False,
):
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    torch.manual_seed(seed)
    config = Qwen2MoeConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        moe_intermediate_size=16,
        shared_expert_intermediate_size=24,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_experts=8,
        num_experts_per_tok=2,
        norm_topk_prob=norm_topk_prob,
        mlp_only_layers=list(mlp_only_layers),
        decoder_sparse_step=decoder_sparse_step,
        max_position_embeddings=128,
    )
    model = Qwen2MoeForCausalLM(config)
    # Random init gives near-uniform routing; scale the routers (and the shared expert's gate,
    # so its sigmoid is not a flat 0.5) so choices are decisive.
    with torch.no_grad():
        for layer in model.model.layers:
            if hasattr(layer.mlp, "gate"):
                layer.mlp.gate.weight.normal_(0, 1.0)
                layer.mlp.shared_expert_gate.weight.normal_(0, 1.0)
    return model.eval()


def residual_module(model, layer_index: int):  # noqa: ANN001, ANN201
    return model.model.layers[layer_index].post_attention_layernorm


def reference_expert(experts, e: int, h: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """A routed expert (SwiGLU): down (silu(gate h) * up h), with gate_up_proj[e] = [gate; up] stacked on dim 0."""
    gate, up = (experts.gate_up_proj[e].double() @ h.double()).chunk(2)
    return experts.down_proj[e].double() @ (torch.nn.functional.silu(gate) * up)
