"""Nemotron-H / Nemotron-3 (hybrid Mamba2 / attention / MoE): sigmoid router with score correction and groups.

Only the layers whose type is "moe" (`layers_block_type`, or "E" in the older
`hybrid_override_pattern`) are sparse. Each is `backbone.layers.<i>` = `norm` then `mixer`, the mixer
holding the router `gate` (weight [E, H] and the buffer `e_score_correction_bias` [E]), the
non-gated relu^2 experts and one shared expert (never pruned). The router picks top-k by
sigmoid(logits) + correction bias among the `topk_group` best of `n_group` groups (a group scores
the sum of its top-2 experts), then combines with the uncorrected sigmoid scores, renormalised over
the top-k and times `routed_scaling_factor`. `n_group` is the router's; Mamba's `n_groups` is unrelated.

Loaded (transformers v5): `model.layers.<i>.mixer.experts.{up_proj [E, I, L], down_proj [E, L, I]}`,
where L is `moe_latent_size` when the block projects into a latent space around the experts
(`fc1_latent_proj`, `fc2_latent_proj`: not per expert, never sliced) and H otherwise.
On disk: the hub format, which transformers v5 also writes, is `backbone.` with per-expert
`experts.<e>.{up,down}_proj.weight`; a checkpoint written from the v5 state dict has `model.` and
the stacked tensors. Both are pruned in place.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from expertlab.moe.families.base import (
    ExpertTensors,
    FamilyAdapter,
    MoELayer,
    Routing,
    exclude_by_correction_bias,
    family,
    keep_rows,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

_PATTERN_MOE = "E"  # the MoE letter of `hybrid_override_pattern` ("M" Mamba, "*" attention, "-" dense MLP)


def check_groups(num_experts: int, n_group: int, topk_group: int, top_k: int | None = None) -> None:
    """Refuse counts the router cannot route: groups score their top-2 experts, top-k comes from topk_group groups."""
    per_group = num_experts // n_group
    if per_group < 2:
        raise ValueError(
            f"nemotron_h routers score each of their {n_group} routing group(s) by its 2 best experts: "
            f"keep at least 2 experts per group ({num_experts} experts in {n_group} groups keep {per_group})"
        )
    if top_k is not None and topk_group * per_group < top_k:
        raise ValueError(
            f"top-k={top_k} cannot be drawn from topk_group={topk_group} groups of {per_group} kept experts"
        )


@family("nemotron_h")
class NemotronHAdapter(FamilyAdapter):
    count_keys = ("n_routed_experts", "num_local_experts")  # transformers maps the alias onto n_routed_experts
    top_k_keys = ("num_experts_per_tok",)
    mtp_prefixes = ("mtp.",)  # multi-token-prediction layers (Nemotron-3-Super), with experts of their own
    mtp_count_keys = ("num_nextn_predict_layers",)

    def routing(self, config: Any) -> Routing:
        config = self.text_config(config)
        n_group = config.get("n_group") or 1
        num_experts, top_k = self.counts(config)
        return Routing(
            num_experts=num_experts,
            top_k=top_k,
            n_group=n_group,
            kind="sigmoid-group-limited" if n_group > 1 else "sigmoid-topk",
        )

    def shared_experts(self, config: Any) -> int:
        return self.text_config(config).get("n_shared_experts", 1)

    def moe_layer_indices(self, config: Any) -> list[int]:
        """Decoder layers of type "moe" (transformers reads the list first, the pattern string otherwise)."""
        config = self.text_config(config)
        types = config.get("layers_block_type") or config.get("layer_types")
        if types is None:
            pattern = config.get("hybrid_override_pattern")
            if pattern is None:
                raise ValueError("nemotron_h config has neither layers_block_type nor hybrid_override_pattern")
            return [i for i, letter in enumerate(pattern) if letter == _PATTERN_MOE]
        return [i for i, kind in enumerate(types) if kind == "moe"]

    def pruned_config(self, config: dict, num_experts: int, top_k: int) -> dict:
        text = self.text_config(config)
        check_groups(num_experts, text.get("n_group") or 1, text.get("topk_group") or 1, top_k)
        return super().pruned_config(config, num_experts, top_k)

    def expert_tensors(self, config: Any, names: Collection[str]) -> list[ExpertTensors]:
        prefix = "backbone" if any(name.startswith("backbone.") for name in names) else "model"
        layers = []
        for i in self.moe_layer_indices(config):
            mixer = f"{prefix}.layers.{i}.mixer"
            layers.append(
                ExpertTensors(
                    layer=i,
                    experts=f"{mixer}.experts",
                    router_rows=(f"{mixer}.gate.weight",),
                    optional_rows=(f"{mixer}.gate.e_score_correction_bias",),
                )
            )
        return layers

    def moe_layers(self, model: nn.Module) -> list[MoELayer]:
        decoder = model.model if hasattr(model, "model") else model
        return [
            MoELayer(index, block.mixer, block.mixer.experts, block.mixer.gate, residual_norm=block.norm)
            for index, block in enumerate(decoder.layers)
            if block.block_type == "moe"
        ]

    def prune_layer(self, layer: MoELayer, keep: torch.Tensor) -> None:
        experts, router = layer.experts, layer.router
        check_groups(len(keep), router.num_group, router.topk_group)  # top-k may still be reduced
        experts.up_proj = keep_rows(experts.up_proj, keep)
        experts.down_proj = keep_rows(experts.down_proj, keep)
        experts.num_experts = len(keep)  # sizes the expert one-hot in the eager forward
        router.weight = keep_rows(router.weight, keep)
        bias = router.e_score_correction_bias
        router.e_score_correction_bias = bias.index_select(0, keep.to(bias.device)).clone()
        router.num_experts = len(keep)

    def set_counts(self, model: nn.Module, num_experts: int, top_k: int) -> None:
        config = model.config
        check_groups(num_experts, config.n_group, config.topk_group, top_k)
        config.n_routed_experts = num_experts
        config.num_experts_per_tok = top_k
        for layer in self.moe_layers(model):
            layer.experts.num_experts = num_experts
            layer.router.num_experts = num_experts
            layer.router.top_k = top_k

    def restrict_router(self, layer: MoELayer, keep: torch.Tensor) -> Callable[[], None]:
        """A -inf correction bias outside `keep`: the choice (groups, then top-k) ignores those experts,
        while the combine weights, read from the uncorrected scores of the chosen experts, are unchanged."""
        router = layer.router
        check_groups(len(keep), router.num_group, router.topk_group, router.top_k)
        return exclude_by_correction_bias(router, keep)

    def observed_forward(self, layer: MoELayer, original: Callable, record: Callable) -> Callable:
        """The default wrapper; with a latent projection, outputs are mapped back to the residual width
        by `fc2_latent_proj`'s weight (its bias is added once per token, whatever the routing)."""
        from torch import nn

        project = layer.block.fc2_latent_proj
        if isinstance(project, nn.Identity):
            return super().observed_forward(layer, original, record)

        def record_in_residual_space(hidden, top_k_index, top_k_weights, outputs, combined) -> None:  # noqa: ANN001
            weight = project.weight.to(outputs.dtype)
            record(hidden, top_k_index, top_k_weights, nn.functional.linear(outputs, weight),
                   nn.functional.linear(combined, weight))

        return super().observed_forward(layer, original, record_in_residual_space)

