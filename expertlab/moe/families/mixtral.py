"""Mixtral: softmax top-k router with the top-k weights always renormalised; every layer is MoE.

Loaded (transformers v5): `mlp.gate` and fused `mlp.experts.{gate_up_proj [E, 2I, H], down_proj [E, H, I]}`.
On disk: the hub format, which transformers v5 also writes, is `block_sparse_moe.gate.weight` and
per-expert `block_sparse_moe.experts.<e>.{w1,w2,w3}.weight` (w1 gate, w3 up, w2 down); a checkpoint
written from the v5 state dict has the module names instead. Both are pruned in place.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from expertlab.moe.families.base import ExpertTensors, FamilyAdapter, MoELayer, Routing, family, first_key, keep_rows

if TYPE_CHECKING:
    import torch
    from torch import nn


@family("mixtral")
class MixtralAdapter(FamilyAdapter):
    count_keys = ("num_local_experts", "num_experts")  # `num_experts` is transformers' alias
    top_k_keys = ("num_experts_per_tok",)

    def routing(self, config: Any) -> Routing:
        config = self.text_config(config)
        return Routing(
            num_experts=config[first_key(config, self.count_keys, "expert count")],
            top_k=config[first_key(config, self.top_k_keys, "top-k")],
            n_group=1,
            kind="softmax-topk",
        )

    def expert_tensors(self, config: Any, names: Collection[str]) -> list[ExpertTensors]:
        layers = []
        for i in range(self.text_config(config)["num_hidden_layers"]):
            block = f"model.layers.{i}.block_sparse_moe"  # hub names
            if f"{block}.gate.weight" not in names:
                block = f"model.layers.{i}.mlp"  # the v5 module names
            layers.append(ExpertTensors(layer=i, experts=f"{block}.experts", router_rows=(f"{block}.gate.weight",)))
        return layers

    def moe_layers(self, model: nn.Module) -> list[MoELayer]:
        decoder = model.model if hasattr(model, "model") else model
        return [
            MoELayer(index, layer.mlp, layer.mlp.experts, layer.mlp.gate, residual_norm=layer.post_attention_layernorm)
            for index, layer in enumerate(decoder.layers)
        ]

    def prune_layer(self, layer: MoELayer, keep: torch.Tensor) -> None:
        experts, router = layer.experts, layer.router
        experts.gate_up_proj = keep_rows(experts.gate_up_proj, keep)
        experts.down_proj = keep_rows(experts.down_proj, keep)
        experts.num_experts = len(keep)
        router.weight = keep_rows(router.weight, keep)
        router.num_experts = len(keep)

    def set_counts(self, model: nn.Module, num_experts: int, top_k: int) -> None:
        model.config.num_local_experts = num_experts
        model.config.num_experts_per_tok = top_k
        if hasattr(model, "num_experts"):
            model.num_experts = num_experts  # read by the load-balancing loss
        if hasattr(model, "num_experts_per_tok"):
            model.num_experts_per_tok = top_k
        for layer in self.moe_layers(model):
            layer.router.top_k = top_k
            layer.block.top_k = top_k

    def restrict_router(self, layer: MoELayer, keep: torch.Tensor) -> Callable[[], None]:
        import torch
        from torch import nn

        router = layer.router
        allowed = torch.zeros(router.num_experts, dtype=torch.bool)
        allowed[keep] = True

        def forward(hidden_states: torch.Tensor):  # noqa: ANN202
            hidden_states = hidden_states.reshape(-1, router.hidden_dim)
            logits = nn.functional.linear(hidden_states, router.weight)
            # -inf before the softmax: kept experts share the mass exactly as in the pruned router
            logits = logits.masked_fill(~allowed.to(logits.device), float("-inf"))
            probs = torch.softmax(logits.float(), dim=-1)
            top_value, top_index = torch.topk(probs, router.top_k, dim=-1)
            top_value /= top_value.sum(dim=-1, keepdim=True)
            return logits, top_value, top_index

        router.forward = forward
        return lambda: delattr(router, "forward")
