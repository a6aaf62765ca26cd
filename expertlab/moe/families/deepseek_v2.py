"""DeepSeek-V2: softmax router `mlp.gate` (greedy or group-limited greedy), experts `mlp.experts`, shared experts.

Decoder layers before `first_k_dense_replace` are dense MLPs, every later one is MoE: transformers
builds them so and ignores `moe_layer_freq`, which released checkpoints set to 1 (others are
refused). The router takes a softmax over all routed experts (pruning renormalises it over the kept
ones) and combines with the top-k probabilities, unnormalised, times `routed_scaling_factor`.
`group_limited_greedy` first keeps the `topk_group` of `n_group` groups whose best expert is most
probable, then takes the top-k experts inside them; `greedy` ignores the groups.
`mlp.shared_experts` is one MLP of `n_shared_experts` fused experts and is never pruned.

Loaded (transformers v5): fused `gate_up_proj [E, 2I, H]` and `down_proj [E, H, I]`.
On disk: per-expert `experts.<e>.{gate,up,down}_proj.weight` (the hub format, which
transformers v5 also writes) or the fused tensors; both are pruned in place. Layers beyond
`num_hidden_layers` (the multi-token-prediction module of DeepSeek-V3 / GLM-4.5 checkpoints) are
dropped, with `num_nextn_predict_layers` set to 0: no mask covers their experts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from expertlab.moe.families.base import ExpertTensors, FamilyAdapter, MoELayer, Routing, family, keep_rows

if TYPE_CHECKING:
    import torch
    from torch import nn

_LAYER = re.compile(r"model\.layers\.(\d+)\.")


def mask_unpicked_groups(
    scores: torch.Tensor, group_scores: torch.Tensor, topk_group: int, fill: float
) -> torch.Tensor:
    """`scores` [T, E] with every expert outside the `topk_group` best groups set to `fill` (transformers' rule)."""
    import torch

    tokens, n_group = group_scores.shape
    picked = torch.topk(group_scores, k=topk_group, dim=-1, sorted=False)[1]
    group_mask = torch.zeros_like(group_scores).scatter_(1, picked, 1)
    score_mask = group_mask.unsqueeze(-1).expand(-1, n_group, scores.shape[-1] // n_group).reshape(tokens, -1)
    return scores.masked_fill(~score_mask.bool(), fill)


@family("deepseek_v2")
class DeepseekV2Adapter(FamilyAdapter):
    count_keys = ("n_routed_experts", "num_experts")  # transformers reads `num_experts` as an alias
    top_k_keys = ("num_experts_per_tok",)
    mtp_count_keys = ("num_nextn_predict_layers",)  # its layers sit past num_hidden_layers: dropped_tensors
    router_tensors: tuple[str, ...] = ("weight",)  # under `mlp.gate`, one row per routed expert
    scored_per_group = 1  # group_limited_greedy scores a group by its most probable expert

    def routing(self, config: Any) -> Routing:
        config = self.text_config(config)
        method = config.get("topk_method") or "greedy"
        if method not in ("greedy", "group_limited_greedy"):
            raise ValueError(
                f"deepseek_v2 topk_method {method!r}: transformers' DeepseekV2 router implements "
                "'greedy' and 'group_limited_greedy' only"
            )
        grouped = method == "group_limited_greedy"
        num_experts, top_k = self.counts(config)
        return Routing(
            num_experts=num_experts,
            top_k=top_k,
            n_group=config["n_group"] if grouped else 1,
            kind="softmax-group-limited" if grouped else "softmax-topk",
        )

    def shared_experts(self, config: Any) -> int:
        return self.text_config(config).get("n_shared_experts") or 0

    def groups(self, config: Any) -> tuple[int, int]:
        """(routing groups, groups picked per token); (1, 1) for a router that ignores groups."""
        n_group = self.routing(config).n_group
        return (n_group, self.text_config(config)["topk_group"]) if n_group > 1 else (1, 1)

    def check_kept(self, config: Any, per_group: int, top_k: int | None) -> None:
        """Refuse what the pruned router cannot route: a group's score needs `scored_per_group` kept experts,
        and the picked groups must hold top-k of them (`top_k` None: the first bound only)."""
        n_group, picked = self.groups(config)
        if per_group < self.scored_per_group:
            raise ValueError(
                f"{self.text_config(config)['model_type']} routers score each of their {n_group} routing group(s) "
                f"by its {self.scored_per_group} best experts: keep at least {self.scored_per_group} per group "
                f"(this mask keeps {per_group})"
            )
        if top_k is not None and picked * per_group < top_k:
            where = f"the topk_group={picked} picked groups of {per_group}" if n_group > 1 else f"{per_group}"
            raise ValueError(f"top-k={top_k} cannot be drawn from {where} kept experts")

    def kept_per_group(self, config: Any, keep: torch.Tensor) -> int:
        """The fewest experts any routing group keeps under `keep` (indices into the source experts)."""
        import torch

        routing = self.routing(config)
        n_group = self.groups(config)[0]
        group = keep.to(torch.long) // (routing.num_experts // n_group)
        return int(torch.bincount(group, minlength=n_group).min())

    # --- checkpoint view ---

    def moe_layer_indices(self, config: Any) -> list[int]:
        """Decoder layers with a sparse block (transformers: every layer from `first_k_dense_replace`)."""
        config = self.text_config(config)
        if (config.get("moe_layer_freq") or 1) != 1:
            raise ValueError(
                f"moe_layer_freq={config['moe_layer_freq']}: transformers makes every layer from "
                "first_k_dense_replace sparse, so it would not load this checkpoint as written"
            )
        return list(range(config.get("first_k_dense_replace") or 0, config["num_hidden_layers"]))

    def dropped_tensors(self, config: Any, names: Collection[str]) -> set[str]:
        """The layers beyond `num_hidden_layers`: multi-token prediction, whose experts no mask covers."""
        depth = self.text_config(config)["num_hidden_layers"]
        return {name for name in names if (m := _LAYER.match(name)) and int(m.group(1)) >= depth}

    def expert_tensors(self, config: Any, names: Collection[str]) -> list[ExpertTensors]:
        return [
            ExpertTensors(
                layer=i,
                experts=f"model.layers.{i}.mlp.experts",
                router_rows=tuple(f"model.layers.{i}.mlp.gate.{name}" for name in self.router_tensors),
            )
            for i in self.moe_layer_indices(config)
        ]

    def pruned_config(self, config: dict, num_experts: int, top_k: int) -> dict:
        self.check_kept(config, num_experts // self.groups(config)[0], top_k)
        return super().pruned_config(config, num_experts, top_k)

    # --- loaded-module view ---

    def moe_layers(self, model: nn.Module) -> list[MoELayer]:
        decoder = model.model if hasattr(model, "model") else model
        return [
            MoELayer(index, layer.mlp, layer.mlp.experts, layer.mlp.gate, residual_norm=layer.post_attention_layernorm)
            for index, layer in enumerate(decoder.layers)
            if hasattr(layer.mlp, "experts")
        ]

    def prune_layer(self, layer: MoELayer, keep: torch.Tensor) -> None:
        experts, router = layer.experts, layer.router
        self.check_kept(layer.block.config, self.kept_per_group(layer.block.config, keep), None)  # top-k may shrink
        experts.gate_up_proj = keep_rows(experts.gate_up_proj, keep)
        experts.down_proj = keep_rows(experts.down_proj, keep)
        experts.num_experts = len(keep)  # sizes the expert one-hot in the eager forward
        router.weight = keep_rows(router.weight, keep)
        router.num_experts = len(keep)  # sizes the group view

    def set_counts(self, model: nn.Module, num_experts: int, top_k: int) -> None:
        self.check_kept(model.config, num_experts // self.groups(model.config)[0], top_k)
        model.config.n_routed_experts = num_experts
        model.config.num_experts_per_tok = top_k
        for layer in self.moe_layers(model):
            layer.router.top_k = top_k

    def restrict_router(self, layer: MoELayer, keep: torch.Tensor) -> Callable[[], None]:
        """-inf logits outside `keep`: the softmax, the group scores and the top-k then cover the kept
        experts only, exactly as the pruned router computes them."""
        import torch
        from torch.nn import functional

        router = layer.router
        self.check_kept(layer.block.config, self.kept_per_group(layer.block.config, keep), router.top_k)
        allowed = torch.zeros(router.num_experts, dtype=torch.bool)
        allowed[keep] = True

        def forward(hidden_states: torch.Tensor):  # noqa: ANN202
            hidden_states = hidden_states.view(-1, router.hidden_dim)
            logits = functional.linear(hidden_states.type(torch.float32), router.weight.type(torch.float32))
            logits = logits.masked_fill(~allowed.to(logits.device), float("-inf"))
            scores = logits.softmax(dim=-1, dtype=torch.float32)
            if router.topk_method == "group_limited_greedy":
                group_scores = scores.view(-1, router.num_group, router.num_experts // router.num_group).amax(dim=-1)
                scores = mask_unpicked_groups(scores, group_scores, router.topk_group, 0.0)
            top_weights, top_index = torch.topk(scores, k=router.top_k, dim=-1, sorted=False)
            return logits, top_weights * router.routed_scaling_factor, top_index

        router.forward = forward
        return lambda: delattr(router, "forward")
