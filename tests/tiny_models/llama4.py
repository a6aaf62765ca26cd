"""Tiny Llama 4 as AutoModelForCausalLM loads it: 4 layers, MoE every 2nd (1, 3), 8 routed experts, top-2,
one shared expert; chunked and full attention.

The experts module receives only router-scaled inputs (s * x per expert, stacked), while the
contract tests' reference loop wants each token's x, routed experts and combine weights (1 for
Llama 4, see expertlab/moe/families/llama4.py). So the tiny model remembers, with a forward hook
on each router, the last routing (the experts run right after their router), and which router
feeds which experts module, for reference_expert's score s = sigmoid(router logit).
"""

from __future__ import annotations

import weakref

import torch

from tests.tiny_models import SHARED_CONFIG

FAMILY = "llama4"
ALSO = ("llama4_text",)  # what AutoModelForCausalLM loads

TEXT_CONFIG = SHARED_CONFIG | dict(  # the decoder, as `text_config` of the vision-language config
    intermediate_size=16,  # routed and shared experts
    intermediate_size_mlp=48,  # dense layers
    num_hidden_layers=4,
    num_key_value_heads=2,
    head_dim=8,
    num_local_experts=8,
    num_experts_per_tok=2,
    interleave_moe_layer_step=2,
    attention_chunk_size=4,  # shorter than the test inputs, so chunked attention is exercised
    pad_token_id=0,
)

_ROUTER_OF: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # experts module -> its router
_LAST_ROUTING: dict = {}


def _remember_routing(router, args, output) -> None:  # noqa: ANN001
    _LAST_ROUTING.update(hidden=args[0].detach(), scores=output[0].detach(), top_k=router.top_k)


def prepare(model):  # noqa: ANN001, ANN201
    """Make routing decisive (random init is near-uniform) and expert outputs non-negligible; install the hooks."""
    with torch.no_grad():
        for layer in model.model.layers:
            if layer.is_moe_layer:
                block = layer.feed_forward
                block.router.weight.normal_(0, 1.0)
                block.experts.gate_up_proj.normal_(0, 0.3)
                block.experts.down_proj.normal_(0, 0.3)
                _ROUTER_OF[block.experts] = block.router
                block.router.register_forward_hook(_remember_routing)
    return model.eval()


def build(seed: int = 0, **overrides):  # noqa: ANN003, ANN201
    from transformers import Llama4Config, Llama4ForCausalLM

    torch.manual_seed(seed)
    config = Llama4Config(text_config=TEXT_CONFIG | overrides)
    return prepare(Llama4ForCausalLM(config.text_config))  # what AutoModelForCausalLM makes of a llama4 checkpoint


def residual_module(model, layer_index: int):  # noqa: ANN001, ANN201
    return model.model.layers[layer_index].post_attention_layernorm


def routed_inputs(args: tuple, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x [T, H], routed experts [T, K], combine weights 1 [T, K]) of an experts call, from its router's call."""
    hidden, scores, top_k = _LAST_ROUTING["hidden"], _LAST_ROUTING["scores"], _LAST_ROUTING["top_k"]
    expected = hidden.repeat(scores.shape[1], 1) * scores.transpose(0, 1).reshape(-1, 1)
    assert torch.equal(args[0], expected), "the experts' input does not come from the last router call"
    index = scores.topk(top_k, dim=-1).indices
    return hidden, index, torch.ones(index.shape, dtype=hidden.dtype)


def reference_expert(experts, e: int, h: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """Expert e's output on its router-scaled input: SwiGLU on x = sigmoid(router_e . h) h, with
    gate_up_proj[e] [H, 2I] = [gate | up] along dim 1 and down_proj[e] [I, H] (inputs multiply from the left)."""
    h = h.double()
    x = torch.sigmoid(_ROUTER_OF[experts].weight[e].double() @ h) * h
    gate, up = (x @ experts.gate_up_proj[e].double()).chunk(2)
    return (torch.nn.functional.silu(gate) * up) @ experts.down_proj[e].double()
