"""Qwen3.5-MoE (and Qwen3.6): hybrid linear / full attention, every layer sparse, one sigmoid-gated shared expert.

The hub checkpoints are vision-language (`qwen3_5_moe`, the decoder under `text_config`);
AutoModelForCausalLM loads their decoder alone as `qwen3_5_moe_text`, so both model types are
registered here. Router `mlp.gate`: softmax over all experts, top-k, always renormalised. The
shared expert (`mlp.shared_expert`, gated by `sigmoid(mlp.shared_expert_gate)`) is never pruned
and not observed (not in h~).
Loaded (transformers v5): fused `mlp.experts.{gate_up_proj [E, 2I, H], down_proj [E, H, I]}`.
On disk: per-expert `mlp.experts.<e>.{gate,up,down}_proj.weight` (transformers v5 writes them too)
or the fused tensors, under `model.language_model.layers` in the vision-language checkpoints and
`model.layers` in a decoder-only one. Vision tensors are copied unchanged; the
multi-token-prediction head (`mtp.*`, with experts of its own that no mask covers) is left out,
with `mtp_num_hidden_layers` set to 0.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from expertlab.moe.families.base import ExpertTensors, FamilyAdapter, MoELayer, Routing, family, first_key, keep_rows

if TYPE_CHECKING:
    import torch
    from torch import nn

_VISION_LANGUAGE_PREFIX = "model.language_model"


@family("qwen3_5_moe")
@family("qwen3_5_moe_text")
class Qwen35MoeAdapter(FamilyAdapter):
    count_keys = ("num_experts",)  # transformers defines no alias for it
    top_k_keys = ("num_experts_per_tok",)
    mtp_prefixes = ("mtp.",)  # the hub checkpoints' multi-token-prediction head, with experts of its own
    mtp_count_keys = ("mtp_num_hidden_layers",)

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

    def expert_tensors(self, config: Any, names: Collection[str]) -> list[ExpertTensors]:
        vision_language = any(name.startswith(f"{_VISION_LANGUAGE_PREFIX}.") for name in names)
        prefix = _VISION_LANGUAGE_PREFIX if vision_language else "model"
        return [
            ExpertTensors(
                layer=i,
                experts=f"{prefix}.layers.{i}.mlp.experts",
                router_rows=(f"{prefix}.layers.{i}.mlp.gate.weight",),
            )
            for i in range(self.text_config(config)["num_hidden_layers"])  # every decoder layer is sparse
        ]

    def moe_layers(self, model: nn.Module) -> list[MoELayer]:
        return [
            MoELayer(index, layer.mlp, layer.mlp.experts, layer.mlp.gate, residual_norm=layer.post_attention_layernorm)
            for index, layer in enumerate(model.model.layers)
        ]

    def prune_layer(self, layer: MoELayer, keep: torch.Tensor) -> None:
        experts, router = layer.experts, layer.router
        experts.gate_up_proj = keep_rows(experts.gate_up_proj, keep)
        experts.down_proj = keep_rows(experts.down_proj, keep)
        experts.num_experts = len(keep)  # sizes the expert one-hot in the eager forward
        router.weight = keep_rows(router.weight, keep)
        router.num_experts = len(keep)

    def set_counts(self, model: nn.Module, num_experts: int, top_k: int) -> None:
        model.config.num_experts = num_experts
        model.config.num_experts_per_tok = top_k
        model.num_experts = num_experts  # read by the load-balancing loss
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
            top_value /= top_value.sum(dim=-1, keepdim=True)
            return logits, top_value.to(logits.dtype), top_index

        router.forward = forward
        return lambda: delattr(router, "forward")
