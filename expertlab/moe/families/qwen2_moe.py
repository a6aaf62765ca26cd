"""Qwen2-MoE: softmax top-k router `mlp.gate` plus one shared expert behind a sigmoid `mlp.shared_expert_gate`.

MoE layers follow `decoder_sparse_step` and `mlp_only_layers`; the others are dense MLPs. Only
the routed experts are pruned: `mlp.shared_expert.*` and `mlp.shared_expert_gate` stay whole,
and observation sees the routed experts alone (the shared expert is not in h~).
Loaded (transformers v5): fused `mlp.experts.{gate_up_proj [E, 2I, H], down_proj [E, H, I]}`.
On disk: per-expert `mlp.experts.<e>.{gate,up,down}_proj.weight` (the hub format, which
transformers v5 also writes) or the fused tensors; both are pruned in place.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from expertlab.moe.families.base import ExpertTensors, FamilyAdapter, MoELayer, Routing, family, first_key, keep_rows

if TYPE_CHECKING:
    import torch
    from torch import nn


@family("qwen2_moe")
class Qwen2MoeAdapter(FamilyAdapter):
    count_keys = ("num_experts",)  # transformers defines no alias for it
    top_k_keys = ("num_experts_per_tok",)

    def routing(self, config: Any) -> Routing:
        config = self.text_config(config)
        return Routing(
            num_experts=config[first_key(config, self.count_keys, "expert count")],
            top_k=config[first_key(config, self.top_k_keys, "top-k")],
            n_group=1,
            kind="softmax-topk",
        )

    def shared_experts(self, config: Any) -> int:
        """transformers always builds the shared expert; only a zero width makes it a no-op."""
        return 0 if self.text_config(config).get("shared_expert_intermediate_size") == 0 else 1

    def moe_layer_indices(self, config: Any) -> list[int]:
        """Decoder layers with a sparse block (transformers' Qwen2MoeDecoderLayer rule)."""
        config = self.text_config(config)
        dense = set(config.get("mlp_only_layers") or [])
        step = config.get("decoder_sparse_step") or 1
        if self.routing(config).num_experts <= 0:
            return []
        return [i for i in range(config["num_hidden_layers"]) if i not in dense and (i + 1) % step == 0]

    def expert_tensors(self, config: Any, names: Collection[str]) -> list[ExpertTensors]:
        return [
            ExpertTensors(
                layer=i,
                experts=f"model.layers.{i}.mlp.experts",
                router_rows=(f"model.layers.{i}.mlp.gate.weight",),
            )
            for i in self.moe_layer_indices(config)
        ]

    def moe_layers(self, model: nn.Module) -> list[MoELayer]:
        decoder = model.model if hasattr(model, "model") else model
        layers = []
        for index, layer in enumerate(decoder.layers):
            block = layer.mlp
            if hasattr(block, "experts") and hasattr(block, "gate"):  # dense layers hold a plain MLP
                layers.append(
                    MoELayer(index, block, block.experts, block.gate, residual_norm=layer.post_attention_layernorm)
                )
        return layers

    def prune_layer(self, layer: MoELayer, keep: torch.Tensor) -> None:
        experts, router = layer.experts, layer.router
        experts.gate_up_proj = keep_rows(experts.gate_up_proj, keep)
        experts.down_proj = keep_rows(experts.down_proj, keep)
        experts.num_experts = len(keep)
        router.weight = keep_rows(router.weight, keep)
        router.num_experts = len(keep)

    def set_counts(self, model: nn.Module, num_experts: int, top_k: int) -> None:
        model.config.num_experts = num_experts
        model.config.num_experts_per_tok = top_k
        if hasattr(model, "num_experts"):
            model.num_experts = num_experts  # read by the load-balancing loss
        if hasattr(model, "num_experts_per_tok"):
            model.num_experts_per_tok = top_k
        for layer in self.moe_layers(model):
            layer.router.top_k = top_k

    def restrict_router(self, layer: MoELayer, keep: torch.Tensor) -> Callable[[], None]:
        import torch
        from torch import nn

        router = layer.router
        allowed = torch.zeros(router.num_experts, dtype=torch.bool)
        allowed[keep] = True

        def forward(hidden_states: torch.Tensor):  # noqa: ANN202
            hidden_states = hidden_states.reshape(-1, router.hidden_dim)
            logits = nn.functional.linear(hidden_states, router.weight)
            # -inf before the softmax: its denominator runs over the kept experts, as in the pruned router
            logits = logits.masked_fill(~allowed.to(logits.device), float("-inf"))
            probs = torch.softmax(logits, dtype=torch.float, dim=-1)
            top_value, top_index = torch.topk(probs, router.top_k, dim=-1)
            if router.norm_topk_prob:
                top_value /= top_value.sum(dim=-1, keepdim=True)
            return logits, top_value.to(logits.dtype), top_index

        router.forward = forward
        return lambda: delattr(router, "forward")
