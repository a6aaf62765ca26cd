"""Model-family adapters: where each family keeps its MoE layers, experts, router and count fields."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from expertlab.registry import Registry


@dataclass
class MoELayer:
    """One sparse MoE block of a decoder."""

    index: int  # decoder layer index
    block: nn.Module
    experts: nn.Module  # receives (hidden_states [T, H], top_k_index [T, K], top_k_weights [T, K])
    router: nn.Module


@dataclass(frozen=True)
class Routing:
    num_experts: int
    top_k: int
    n_group: int  # > 1 for group-limited routers: experts are pruned equally per group
    kind: str  # e.g. "softmax-topk"


class FamilyAdapter:
    """How to find, observe and prune the routed experts of one model family."""

    model_types: tuple[str, ...] = ()

    def text_config(self, config):  # noqa: ANN001, ANN201
        return getattr(config, "text_config", None) or config

    def routing(self, config) -> Routing:  # noqa: ANN001
        raise NotImplementedError

    def moe_layers(self, model: nn.Module) -> list[MoELayer]:
        raise NotImplementedError

    def prune_layer(self, layer: MoELayer, keep: torch.Tensor) -> None:
        """Keep only the experts in `keep` (sorted indices), renumbered 0..M-1."""
        raise NotImplementedError

    def set_counts(self, model: nn.Module, num_experts: int, top_k: int) -> None:
        """Write the new expert count (and top-k) into every count field of the model and config."""
        raise NotImplementedError

    def restrict_router(self, layer: MoELayer, keep: torch.Tensor) -> Callable[[], None]:
        """Make the router choose only among `keep`; returns a function that undoes it."""
        raise NotImplementedError


FAMILIES: Registry[FamilyAdapter] = Registry("model family")


def family(name: str) -> Callable[[type[FamilyAdapter]], type[FamilyAdapter]]:
    def register(cls: type[FamilyAdapter]) -> type[FamilyAdapter]:
        FAMILIES.add(name, cls())
        return cls

    return register


def adapter_for(model_or_config) -> FamilyAdapter:  # noqa: ANN001
    config = getattr(model_or_config, "config", model_or_config)
    return FAMILIES[config.model_type]


def _keep_rows(param: nn.Parameter, keep: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(param.data.index_select(0, keep.to(param.device)).clone(), requires_grad=param.requires_grad)


@family("qwen3_moe")
class Qwen3MoeAdapter(FamilyAdapter):
    """Qwen3-MoE: fused experts `gate_up_proj [E, 2I, H]`, `down_proj [E, H, I]`; softmax top-k router."""

    def routing(self, config) -> Routing:  # noqa: ANN001
        return Routing(num_experts=config.num_experts, top_k=config.num_experts_per_tok, n_group=1, kind="softmax-topk")

    def moe_layers(self, model: nn.Module) -> list[MoELayer]:
        decoder = model.model if hasattr(model, "model") else model
        layers = []
        for index, layer in enumerate(decoder.layers):
            block = layer.mlp
            if hasattr(block, "experts") and hasattr(block, "gate"):
                layers.append(MoELayer(index=index, block=block, experts=block.experts, router=block.gate))
        return layers

    def prune_layer(self, layer: MoELayer, keep: torch.Tensor) -> None:
        experts, router = layer.experts, layer.router
        experts.gate_up_proj = _keep_rows(experts.gate_up_proj, keep)
        experts.down_proj = _keep_rows(experts.down_proj, keep)
        experts.num_experts = len(keep)
        router.weight = _keep_rows(router.weight, keep)
        router.num_experts = len(keep)

    def set_counts(self, model: nn.Module, num_experts: int, top_k: int) -> None:
        model.config.num_experts = num_experts
        model.config.num_experts_per_tok = top_k
        if hasattr(model, "num_experts"):
            model.num_experts = num_experts
        if hasattr(model, "num_experts_per_tok"):
            model.num_experts_per_tok = top_k
        for layer in self.moe_layers(model):
            layer.router.top_k = top_k

    def restrict_router(self, layer: MoELayer, keep: torch.Tensor) -> Callable[[], None]:
        router = layer.router
        allowed = torch.zeros(router.num_experts, dtype=torch.bool)
        allowed[keep] = True

        def forward(hidden_states: torch.Tensor):  # noqa: ANN202
            hidden_states = hidden_states.reshape(-1, router.hidden_dim)
            logits = nn.functional.linear(hidden_states, router.weight)
            logits = logits.masked_fill(~allowed.to(logits.device), float("-inf"))
            probs = torch.softmax(logits, dtype=torch.float, dim=-1)
            top_value, top_index = torch.topk(probs, router.top_k, dim=-1)
            if router.norm_topk_prob:
                top_value /= top_value.sum(dim=-1, keepdim=True)
            return logits, top_value.to(logits.dtype), top_index

        router.forward = forward
        return lambda: delattr(router, "forward")
