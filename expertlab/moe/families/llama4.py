"""Llama 4: sigmoid top-k router whose score scales each expert's INPUT; routed outputs summed with a shared expert.

The hub checkpoints are vision-language (`llama4`, the decoder under `text_config`);
AutoModelForCausalLM loads their decoder alone as `llama4_text`, so both model types are registered
here. MoE layers are `moe_layers`, or every `interleave_moe_layer_step`-th layer counting from
step - 1; the others are dense MLPs. The shared expert (`feed_forward.shared_expert`) is never
pruned and not observed.

Llama4TextMoe is not on the transformers v5 experts interface (hidden states, top-k indices, top-k
weights): the router keeps the top-k logits, gives them sigmoid scores s = sigmoid(l) and every
other expert 0, and the experts module receives every expert's input s * x stacked [E * T, H]
(x the normalised hidden state), runs all experts on it (an expert maps 0 to 0) and the block sums
the outputs without weights. In DESIGN's terms:
  - combine weight g = 1 for each routed expert: the outputs are added unweighted (the router's
    score is part of the expert's input instead), 0 for the others;
  - unweighted output E_i = the expert's output on its router-scaled input, E_i(s_i x), exactly
    what the model adds to the residual stream for it;
so g E_i is each expert's actual contribution and h~ = h + the routed output, as for the other
families. Consequences: `gate` equals `frequency` for Llama 4, and `ean`, `reap` and `easy_ep`
see the router's score through the expert's output. Everything comes from the experts module's
own call: the routed experts are those whose input the router did not zero.
Loaded and on disk (bf16 hub checkpoints and transformers v5 alike): stacked
`feed_forward.experts.{gate_up_proj [E, H, 2I], down_proj [E, I, H]}` and `feed_forward.router.weight
[E, H]`, under `language_model.model.layers` in the vision-language checkpoints and `model.layers`
in a decoder-only one; FP8 hub checkpoints hold per-expert `experts.<e>.*` tensors. Both forms are
pruned in place; vision tensors are copied unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from expertlab.moe.families.base import ExpertTensors, FamilyAdapter, MoELayer, Routing, family, keep_rows

if TYPE_CHECKING:
    import torch
    from torch import nn

_VISION_LANGUAGE_PREFIX = "language_model.model"


@family("llama4")
@family("llama4_text")
class Llama4Adapter(FamilyAdapter):
    count_keys = ("num_local_experts",)  # transformers defines no alias for it
    top_k_keys = ("num_experts_per_tok",)

    def routing(self, config: Any) -> Routing:
        num_experts, top_k = self.counts(config)
        return Routing(num_experts=num_experts, top_k=top_k, n_group=1, kind="sigmoid-topk-input-scaled")

    def shared_experts(self, config: Any) -> int:
        return 1  # every Llama4TextMoe has one

    def moe_layer_indices(self, config: Any) -> list[int]:
        """Decoder layers with a sparse block (Llama4TextConfig's rule; transformers writes `moe_layers`)."""
        config = self.text_config(config)
        if config.get("moe_layers") is not None:
            return sorted(config["moe_layers"])
        step = config.get("interleave_moe_layer_step") or 1
        return list(range(step - 1, config["num_hidden_layers"], step))

    def expert_tensors(self, config: Any, names: Collection[str]) -> list[ExpertTensors]:
        vision_language = any(name.startswith(f"{_VISION_LANGUAGE_PREFIX}.") for name in names)
        prefix = _VISION_LANGUAGE_PREFIX if vision_language else "model"
        return [
            ExpertTensors(
                layer=i,
                experts=f"{prefix}.layers.{i}.feed_forward.experts",
                router_rows=(f"{prefix}.layers.{i}.feed_forward.router.weight",),
            )
            for i in self.moe_layer_indices(config)
        ]

    def moe_layers(self, model: nn.Module) -> list[MoELayer]:
        return [
            MoELayer(
                index,
                layer.feed_forward,
                layer.feed_forward.experts,
                layer.feed_forward.router,
                residual_norm=layer.post_attention_layernorm,
            )
            for index, layer in enumerate(model.model.layers)
            if layer.is_moe_layer
        ]

    def prune_layer(self, layer: MoELayer, keep: torch.Tensor) -> None:
        experts, router = layer.experts, layer.router
        experts.gate_up_proj = keep_rows(experts.gate_up_proj, keep)
        experts.down_proj = keep_rows(experts.down_proj, keep)
        experts.num_experts = len(keep)
        router.weight = keep_rows(router.weight, keep)
        router.out_features = len(keep)  # the router is an nn.Linear
        router.num_experts = len(keep)
        layer.block.num_experts = len(keep)

    def set_counts(self, model: nn.Module, num_experts: int, top_k: int) -> None:
        model.config.num_local_experts = num_experts
        model.config.num_experts_per_tok = top_k
        for layer in self.moe_layers(model):
            layer.router.top_k = top_k
            layer.block.top_k = top_k

    def restrict_router(self, layer: MoELayer, keep: torch.Tensor) -> Callable[[], None]:
        """-inf logits outside `keep`: the top-k falls among the kept experts and, with no normalisation
        across experts, their sigmoid scores are the pruned router's."""
        import torch
        from torch import nn

        router = layer.router
        allowed = torch.zeros(router.num_experts, dtype=torch.bool)
        allowed[keep] = True

        def forward(hidden_states: torch.Tensor):  # noqa: ANN202
            logits = nn.functional.linear(hidden_states, router.weight, router.bias)
            logits = logits.masked_fill(~allowed.to(logits.device), float("-inf"))
            top_value, top_index = torch.topk(logits, router.top_k, dim=1)
            scores = torch.full_like(logits, float("-inf")).scatter_(1, top_index, top_value)
            return torch.sigmoid(scores.float()).to(scores.dtype), logits

        router.forward = forward
        return lambda: delattr(router, "forward")

    def observed_forward(self, layer: MoELayer, original: Callable, record: Callable) -> Callable:
        """The experts' own forward, once; each token's routed pairs are the experts whose input is non-zero,
        with combine weight 1 and their actual output (module docstring). The `hidden` handed to `record`
        is the token's expert input summed over experts (observe reads h from the residual stream)."""
        import torch

        router = layer.router

        def forward(hidden_states: torch.Tensor) -> torch.Tensor:
            outputs = original(hidden_states)
            width = hidden_states.shape[-1]
            inputs = hidden_states.view(router.num_experts, -1, width)  # [E, T, H]: s * x, or 0 where not routed
            per_expert = outputs.view(router.num_experts, -1, outputs.shape[-1])
            routed = (inputs.abs().amax(dim=-1) > 0).transpose(0, 1).to(hidden_states.dtype)  # [T, E]
            # a token with fewer routed experts (a score that underflowed to 0) is padded with weight 0
            top_k_weights, top_k_index = torch.topk(routed, router.top_k, dim=-1)
            pair_outputs = per_expert.transpose(0, 1).gather(1, top_k_index.unsqueeze(-1).expand(-1, -1, width))
            record(inputs.sum(dim=0), top_k_index, top_k_weights, pair_outputs, per_expert.sum(dim=0))
            return outputs

        return forward
