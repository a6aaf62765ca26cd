"""Tiny models built from configs, one module per model family (no download, a few k parameters).

Each module defines:
    FAMILY: the `config.model_type` it builds;
    build(seed=0): an eval-mode CausalLM with at least two MoE layers, 8 routed experts, top-2,
        vocabulary 64, routers scaled so routing is decisive;
    reference_expert(experts, e, h): expert e's unweighted output for one hidden vector h
        (float64), written from the family's formula, independently of expertlab's code;
    residual_module(model, layer_index): the module whose input is the residual stream entering
        that layer's MoE block (the norm in front of it).
A module may define routed_inputs(args, kwargs) -> (hidden, top_k_index, top_k_weights) when its
experts module is not called as forward(hidden, top_k_index, top_k_weights), and ALSO: the other
model types its model stands for (a vision-language family's text-only type, which is what
AutoModelForCausalLM loads).
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Any

# What every tiny model's config shares; a family's module spells out only its own keys.
SHARED_CONFIG: dict[str, Any] = {"vocab_size": 64, "hidden_size": 32, "num_attention_heads": 4, "max_position_embeddings": 128}
# The DeepSeek layout (deepseek_v2, deepseek_v3, glm4_moe): one dense layer, then MoE layers of 16 routed
# experts and one shared expert.
DEEPSEEK_LAYOUT: dict[str, Any] = {
    "intermediate_size": 48,
    "moe_intermediate_size": 16,
    "num_hidden_layers": 3,
    "first_k_dense_replace": 1,
    "n_routed_experts": 16,
    "n_shared_experts": 1,
}
# DeepSeek's multi-head latent attention (deepseek_v2, deepseek_v3).
LATENT_ATTENTION: dict[str, Any] = {
    "num_key_value_heads": 4,
    "kv_lora_rank": 16,
    "q_lora_rank": None,
    "qk_rope_head_dim": 8,
    "qk_nope_head_dim": 8,
    "v_head_dim": 8,
}


def seeded(model_class, config_class, seed: int, **config: Any):  # noqa: ANN001, ANN201
    """`model_class` on SHARED_CONFIG plus `config`, its weights drawn after torch.manual_seed(seed)."""
    import torch

    torch.manual_seed(seed)
    return model_class(config_class(**SHARED_CONFIG | config))


def token_ids(shape: tuple[int, int] = (2, 7), seed: int = 1):  # noqa: ANN201
    """Random token ids in the tiny vocabulary, [batch, length], the same in every run."""
    import torch

    return torch.randint(0, SHARED_CONFIG["vocab_size"], shape, generator=torch.Generator().manual_seed(seed))


def save_checkpoint(model, path) -> None:  # noqa: ANN001
    """`model` as a hub checkpoint: config.json and one model.safetensors of its state dict (fused expert tensors)."""
    from safetensors.torch import save_file

    model.config.save_pretrained(path)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, path / "model.safetensors", {"format": "pt"})


def decisive_routers(model, layers=None):  # noqa: ANN001, ANN201
    """Random init gives near-uniform routing; scale the routers (of `layers`, default all) so choices are decisive."""
    import torch

    with torch.no_grad():
        for layer in model.model.layers if layers is None else layers:
            layer.mlp.gate.weight.normal_(0, 1.0)
    return model.eval()


def swiglu_expert(experts, e: int, h):  # noqa: ANN001, ANN201
    """The v5 fused SwiGLU expert: down (silu(gate h) * up h), gate_up_proj[e] = [gate; up] stacked on dim 0."""
    import torch

    gate, up = (experts.gate_up_proj[e].double() @ h.double()).chunk(2)
    return experts.down_proj[e].double() @ (torch.nn.functional.silu(gate) * up)


def post_attention_norm(model, layer_index: int):  # noqa: ANN001, ANN201
    """The norm in front of a decoder layer's MLP block (most families)."""
    return model.model.layers[layer_index].post_attention_layernorm


TINY: dict[str, ModuleType] = {}
COVERED: set[str] = set()  # every model type some tiny model stands for

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    _module = importlib.import_module(f"{__name__}.{_info.name}")
    _types = (_module.FAMILY, *getattr(_module, "ALSO", ()))
    if COVERED & set(_types):
        raise ValueError(f"two tiny models for model type(s) {sorted(COVERED & set(_types))}")
    TINY[_module.FAMILY] = _module
    COVERED |= set(_types)


def build(family: str, seed: int = 0):  # noqa: ANN201
    return TINY[family].build(seed)
