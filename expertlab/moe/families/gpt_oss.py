"""GPT-OSS: router `mlp.router` (weight and bias), top-k on the logits, then a softmax over the k chosen.

Every decoder layer is sparse; there is no shared expert. Loaded (transformers v5): transposed,
biased experts, `gate_up_proj [E, H, 2I]` with gate and up interleaved on the last axis,
`gate_up_proj_bias [E, 2I]`, `down_proj [E, I, H]`, `down_proj_bias [E, H]`, and a clamped SwiGLU.
On disk: the same names (transformers-saved or dequantized checkpoints) or, on the hub, MXFP4
`{gate_up,down}_proj_{blocks,scales}` (uint8) next to bf16 biases. Every one is stacked with
the expert axis first, so both formats prune by dim-0 byte ranges.

The experts module is called as forward(hidden, router_indices, routing_weights) -> sum_k w E(h),
the shared interface, in every transformers implementation (eager, grouped_mm, MXFP4 kernels):
the default observed_forward records its actual combine weights and unweighted outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from expertlab.moe.families.base import ExpertTensors, FamilyAdapter, MoELayer, Routing, family, keep_rows

if TYPE_CHECKING:
    import torch
    from torch import nn

PROJECTIONS = ("gate_up_proj", "down_proj")
EXPERT_PARAMETERS = ("gate_up_proj", "gate_up_proj_bias", "down_proj", "down_proj_bias")


def missing_expert_tensors(prefix: str, names: Collection[str]) -> list[str]:
    """Tensors a layer lacks: each projection's bias, and its weight dequantized or as MXFP4 blocks + scales."""
    missing = []
    for proj in PROJECTIONS:
        quantized = (f"{prefix}.{proj}_blocks", f"{prefix}.{proj}_scales")
        if f"{prefix}.{proj}" not in names and not all(name in names for name in quantized):
            missing.append(f"{prefix}.{proj} (or {' + '.join(quantized)})")
        if f"{prefix}.{proj}_bias" not in names:
            missing.append(f"{prefix}.{proj}_bias")
    return missing


@family("gpt_oss")
class GptOssAdapter(FamilyAdapter):
    count_keys = ("num_local_experts", "num_experts")  # GptOssConfig maps num_experts to num_local_experts
    top_k_keys = ("num_experts_per_tok", "experts_per_token")  # the hub's config.json carries both

    def routing(self, config: Any) -> Routing:
        num_experts, top_k = self.counts(config)
        return Routing(num_experts=num_experts, top_k=top_k, n_group=1, kind="topk-softmax")

    def expert_tensors(self, config: Any, names: Collection[str]) -> list[ExpertTensors]:
        layers = []
        for i in range(self.text_config(config)["num_hidden_layers"]):
            prefix = f"model.layers.{i}.mlp"
            missing = missing_expert_tensors(f"{prefix}.experts", names)
            if missing:
                raise ValueError(f"GPT-OSS checkpoint lacks expert tensors of layer {i}: {', '.join(missing)}")
            layers.append(
                ExpertTensors(
                    layer=i,
                    experts=f"{prefix}.experts",
                    router_rows=(f"{prefix}.router.weight", f"{prefix}.router.bias"),
                )
            )
        return layers

    def moe_layers(self, model: nn.Module) -> list[MoELayer]:
        decoder = model.model if hasattr(model, "model") else model
        return [
            MoELayer(index, layer.mlp, layer.mlp.experts, layer.mlp.router, layer.post_attention_layernorm)
            for index, layer in enumerate(decoder.layers)
        ]

    def prune_layer(self, layer: MoELayer, keep: torch.Tensor) -> None:
        experts, router = layer.experts, layer.router
        if hasattr(experts, "gate_up_proj_precision_config"):
            raise ValueError(
                "GPT-OSS experts loaded as MXFP4 kernels cannot be pruned in memory: prune the checkpoint "
                "(prune_checkpoint) or load it with Mxfp4Config(dequantize=True)"
            )
        for name in EXPERT_PARAMETERS:
            setattr(experts, name, keep_rows(getattr(experts, name), keep))
        experts.num_experts = len(keep)
        router.weight = keep_rows(router.weight, keep)
        router.bias = keep_rows(router.bias, keep)
        router.num_experts = len(keep)

    def set_counts(self, model: nn.Module, num_experts: int, top_k: int) -> None:
        model.config.num_local_experts = num_experts
        model.config.num_experts_per_tok = top_k
        if getattr(model.config, "experts_per_token", None) is not None:
            model.config.experts_per_token = top_k
        if hasattr(model, "num_experts"):
            model.num_experts = num_experts
        if hasattr(model, "num_experts_per_tok"):
            model.num_experts_per_tok = top_k
        for layer in self.moe_layers(model):
            layer.router.top_k = top_k

    def restrict_router(self, layer: MoELayer, keep: torch.Tensor) -> Callable[[], None]:
        """Removed experts get -inf logits, so top-k and the softmax over the chosen k see only `keep`."""
        import torch
        from torch import nn

        router = layer.router
        allowed = torch.zeros(router.num_experts, dtype=torch.bool)
        allowed[keep] = True

        def forward(hidden_states: torch.Tensor):  # noqa: ANN202
            logits = nn.functional.linear(hidden_states, router.weight, router.bias)
            logits = logits.masked_fill(~allowed.to(logits.device), float("-inf"))
            top_value, top_index = torch.topk(logits, router.top_k, dim=-1)
            scores = torch.softmax(top_value, dim=1, dtype=top_value.dtype)
            return logits, scores, top_index

        router.forward = forward
        return lambda: delattr(router, "forward")
