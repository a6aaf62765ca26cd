"""ERNIE-4.5-MoE: softmax router `mlp.gate` choosing top-k by probability + a score-correction bias, shared experts.

MoE layers are the decoder layers i with start <= i <= end and (i + 1) % interval == 0
(`moe_layer_start_index`, `moe_layer_end_index` (-1: the last layer), `moe_layer_interval`); the
others are dense MLPs. The router softmaxes its logits over all experts, picks the top-k of
probability + `e_score_correction_bias` and combines with the chosen probabilities renormalised over
the top-k. The bias lives in `mlp.gate.moe_statics` with shape [1, E] (expert axis 1). The shared
experts (`mlp.shared_experts`, one MLP `moe_num_shared_experts` experts wide) are never pruned and
not observed.
Loaded (transformers v5): fused `mlp.experts.{gate_up_proj [E, 2I, H], down_proj [E, H, I]}`.
On disk: the hub format, which transformers v5 also writes, has per-expert
`mlp.experts.<e>.{gate,up,down}_proj.weight` and `mlp.moe_statics.e_score_correction_bias`; a
checkpoint written from the v5 state dict has the fused tensors and `mlp.gate.moe_statics.*`.
Both are pruned in place. The multi-token-prediction modules (`model.mtp_*`; `mtp_block` has
experts of its own that no mask covers) are left out, with `num_nextn_predict_layers` set to 0.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from expertlab.moe.families.base import ExpertTensors, FamilyAdapter, MoELayer, Routing, family, keep_rows

if TYPE_CHECKING:
    import torch
    from torch import nn

# transformers' defaults for fields a hub config.json may leave out
_DEFAULT_START, _DEFAULT_END, _DEFAULT_INTERVAL, _DEFAULT_SHARED = 1, -1, 1, 2


@family("ernie4_5_moe")
class Ernie45MoeAdapter(FamilyAdapter):
    count_keys = ("moe_num_experts", "num_experts")  # transformers maps the alias onto moe_num_experts
    top_k_keys = ("moe_k", "num_experts_per_tok")
    mtp_prefixes = ("model.mtp_",)  # mtp_block (experts of its own), mtp_emb_norm, mtp_hidden_norm, mtp_linear_proj
    mtp_count_keys = ("num_nextn_predict_layers",)

    def routing(self, config: Any) -> Routing:
        num_experts, top_k = self.counts(config)
        if not isinstance(num_experts, int):  # ERNIE-4.5-VL lists text and vision experts: another family
            raise ValueError(f"ernie4_5_moe expects one routed-expert count, got {num_experts!r}")
        return Routing(num_experts=num_experts, top_k=top_k, n_group=1, kind="softmax-topk-score-correction")

    def shared_experts(self, config: Any) -> int:
        return self.text_config(config).get("moe_num_shared_experts", _DEFAULT_SHARED) or 0

    def moe_layer_indices(self, config: Any) -> list[int]:
        """Decoder layers with a sparse block (transformers' Ernie4_5_MoeDecoderLayer rule)."""
        config = self.text_config(config)
        layers = config["num_hidden_layers"]
        start = config.get("moe_layer_start_index", _DEFAULT_START)
        end = config.get("moe_layer_end_index", _DEFAULT_END)
        end = layers - 1 if end in (-1, None) else end
        interval = config.get("moe_layer_interval") or _DEFAULT_INTERVAL
        return [i for i in range(layers) if (i + 1) % interval == 0 and start <= i <= end]

    def expert_tensors(self, config: Any, names: Collection[str]) -> list[ExpertTensors]:
        layers = []
        for i in self.moe_layer_indices(config):
            block = f"model.layers.{i}.mlp"
            biases = tuple(f"{block}.{owner}.e_score_correction_bias" for owner in ("moe_statics", "gate.moe_statics"))
            layers.append(
                ExpertTensors(
                    layer=i,
                    experts=f"{block}.experts",
                    router_rows=(f"{block}.gate.weight",),
                    optional_rows=biases,  # hub / v5 state-dict name; a checkpoint without it loads zeros
                    axes=tuple((name, 1) for name in biases),  # [1, E]
                )
            )
        return layers

    def moe_layers(self, model: nn.Module) -> list[MoELayer]:
        layers = []
        for index, layer in enumerate(model.model.layers):
            block = layer.mlp
            if hasattr(block, "experts") and hasattr(block, "gate"):  # dense layers hold a plain MLP
                layers.append(
                    MoELayer(index, block, block.experts, block.gate, residual_norm=layer.post_attention_layernorm)
                )
        return layers

    def prune_layer(self, layer: MoELayer, keep: torch.Tensor) -> None:
        from torch import nn

        experts, router = layer.experts, layer.router
        experts.gate_up_proj = keep_rows(experts.gate_up_proj, keep)
        experts.down_proj = keep_rows(experts.down_proj, keep)
        experts.num_experts = len(keep)  # sizes the expert one-hot in the eager forward
        router.weight = keep_rows(router.weight, keep)
        statics = router.moe_statics
        bias = statics.e_score_correction_bias
        statics.e_score_correction_bias = nn.Parameter(
            bias.data.index_select(1, keep.to(bias.device)).clone(), requires_grad=bias.requires_grad
        )
        router.num_experts = len(keep)
        layer.block.num_experts = len(keep)

    def set_counts(self, model: nn.Module, num_experts: int, top_k: int) -> None:
        model.config.moe_num_experts = num_experts
        model.config.moe_k = top_k
        model.num_experts = num_experts  # read by the load-balancing loss
        model.num_experts_per_tok = top_k
        for layer in self.moe_layers(model):
            layer.router.top_k = top_k
            layer.block.top_k = top_k

    def restrict_router(self, layer: MoELayer, keep: torch.Tensor) -> Callable[[], None]:
        """-inf logits outside `keep` (the softmax then runs over the kept experts, as in the pruned
        router) and -inf choice scores there too: the correction bias must not pull a removed expert back."""
        import torch
        from torch import nn

        router = layer.router
        allowed = torch.zeros(router.num_experts, dtype=torch.bool)
        allowed[keep] = True

        def forward(hidden_states: torch.Tensor):  # noqa: ANN202
            mask = ~allowed.to(hidden_states.device)
            with torch.autocast(device_type=hidden_states.device.type, enabled=False):  # float32, as the router
                logits = nn.functional.linear(hidden_states.float(), router.weight.float())
                logits = logits.masked_fill(mask, float("-inf"))
                probs = torch.softmax(logits, dim=1, dtype=torch.float)
                choice = router.moe_statics(probs).masked_fill(mask, float("-inf"))
                _, top_index = torch.topk(choice, router.top_k, dim=-1)
                top_value = torch.gather(probs, dim=-1, index=top_index)
                top_value = top_value / torch.clamp(top_value.sum(dim=-1, keepdim=True), min=router.norm_min)
            return logits, top_value.to(hidden_states.dtype), top_index

        router.forward = forward
        return lambda: delattr(router, "forward")
