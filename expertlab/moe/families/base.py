"""What a model-family adapter provides: where a family keeps its MoE layers, experts, router and counts.

Two views of the same model. On loaded modules (observe, in-memory pruning, router restriction)
and on the checkpoint itself (config.json and the tensor names on disk), which is how pruned
checkpoints are written: no model is instantiated, so any size prunes in bounded memory.
torch is imported lazily: the checkpoint view and params validation never load it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from expertlab.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass
class MoELayer:
    """One sparse MoE block of a loaded decoder."""

    index: int  # decoder layer index
    block: nn.Module
    experts: nn.Module  # receives (hidden_states [T, H], top_k_index [T, K], top_k_weights [T, K])
    router: nn.Module
    residual_norm: nn.Module | None = None  # the norm in front of the block: its input is the residual stream


@dataclass(frozen=True)
class Routing:
    num_experts: int
    top_k: int
    n_group: int  # > 1 for group-limited routers: experts are pruned equally per group
    kind: str  # e.g. "softmax-topk"


@dataclass(frozen=True)
class ExpertTensors:
    """Where one MoE layer's expert-indexed tensors sit in a checkpoint (names as saved on disk).

    Every tensor under `experts` is either per expert (`<experts>.<e>.<rest>`) or stacked with
    the expert index as dim 0 (`<experts>.<rest>`); `router_rows` are tensors outside it whose
    dim 0 runs over the experts (router weight, router bias, score-correction bias). `axes`
    names the tensors whose expert axis is another dim (e.g. a [1, E] bias).
    """

    layer: int  # decoder layer index
    experts: str  # e.g. "model.layers.3.mlp.experts"
    router_rows: tuple[str, ...]  # must exist
    optional_rows: tuple[str, ...] = ()  # sliced when the checkpoint has them
    axes: tuple[tuple[str, int], ...] = ()  # (tensor name, expert axis) where it is not 0

    def axis_of(self, name: str) -> int:
        return dict(self.axes).get(name, 0)


def config_dict(config: Any) -> dict:
    """A config as a plain dict: a transformers config object or a parsed config.json."""
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def first_key(config: dict, keys: tuple[str, ...], what: str) -> str:
    """The first of `keys` present in `config` (families alias their count fields)."""
    for key in keys:
        if config.get(key) is not None:
            return key
    raise ValueError(f"config has no {what} field (looked for {', '.join(keys)})")


class FamilyAdapter:
    """How to find, observe and prune the routed experts of one model family."""

    # config fields holding the routed-expert count and top-k, under any alias transformers writes
    count_keys: tuple[str, ...] = ()
    top_k_keys: tuple[str, ...] = ()
    # multi-token-prediction modules carry experts no mask covers: a pruned checkpoint leaves out
    # the tensors under these prefixes and sets these config counts (in the decoder's config) to 0
    mtp_prefixes: tuple[str, ...] = ()
    mtp_count_keys: tuple[str, ...] = ()

    def text_config(self, config: Any) -> dict:
        """The decoder's config as a dict (multimodal families nest it under `text_config`)."""
        config = config_dict(config)
        return config.get("text_config") or config

    def routing(self, config: Any) -> Routing:
        raise NotImplementedError

    def counts(self, config: Any) -> tuple[int, int]:
        """(routed experts, top-k) of the decoder's config, each under the first of its aliases present."""
        config = self.text_config(config)
        return config[first_key(config, self.count_keys, "expert count")], config[first_key(config, self.top_k_keys, "top-k")]

    def shared_experts(self, config: Any) -> int:
        """Always-active shared experts per MoE layer (never pruned)."""
        return 0

    # --- checkpoint view (config.json + tensor names) ---

    def expert_tensors(self, config: Any, names: Collection[str]) -> list[ExpertTensors]:
        """The MoE layers in decoder order, as tensor names in the saved checkpoint.

        `names` are the checkpoint's tensor names: a family whose hub checkpoints and
        transformers-saved ones name the same tensors differently picks the names present.
        """
        raise NotImplementedError

    def dropped_tensors(self, config: Any, names: Collection[str]) -> set[str]:
        """Tensors a pruned checkpoint leaves out because no mask covers their experts: the
        multi-token-prediction modules (transformers never loads them; vLLM's MTP speculative
        decoding would need them pruned too). pruned_config then describes the model without them."""
        return {name for name in names if name.startswith(self.mtp_prefixes)} if self.mtp_prefixes else set()

    def pruned_config(self, config: dict, num_experts: int, top_k: int) -> dict:
        """config.json after pruning: every count field the source had, under the source's key names."""
        config = dict(config)
        target = dict(config["text_config"]) if config.get("text_config") else config
        for key in self.count_keys:
            if key in target:
                target[key] = num_experts
        for key in self.top_k_keys:
            if key in target:
                target[key] = top_k
        for key in self.mtp_count_keys:
            if target.get(key):
                target[key] = 0  # the multi-token-prediction modules are dropped (dropped_tensors)
        if target is not config:
            config["text_config"] = target
        return config

    # --- loaded-module view ---

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

    def observed_forward(self, layer: MoELayer, original: Callable, record: Callable) -> Callable:
        """A stand-in for `layer.experts.forward` that returns what `original` returns and, per call,
        hands `record(hidden [T, H], top_k_index [T, K], top_k_weights [T, K], outputs [T, K, H],
        combined [T, H])` the unweighted output of every routed (token, expert) pair.

        The default fits the transformers v5 experts interface, forward(hidden, top_k_index,
        top_k_weights) -> sum_k w E(h): every pair goes through `original` once with weight 1, so
        only routed pairs are computed and the router is never re-run. Families whose experts
        module has another signature override this.
        """
        import torch

        def forward(hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor):  # noqa: ANN202
            tokens, k = top_k_index.shape
            pair_hidden = hidden_states.repeat_interleave(k, dim=0)
            ones = top_k_weights.new_ones((tokens * k, 1))
            outputs = original(pair_hidden, top_k_index.reshape(-1, 1), ones).view(tokens, k, -1)
            combined = (outputs * top_k_weights.unsqueeze(-1).to(outputs.dtype)).sum(dim=1)
            record(hidden_states, top_k_index, top_k_weights, outputs, combined)
            return combined.to(hidden_states.dtype)

        return forward


FAMILIES: Registry[FamilyAdapter] = Registry("model family")


def family(name: str) -> Callable[[type[FamilyAdapter]], type[FamilyAdapter]]:
    def register(cls: type[FamilyAdapter]) -> type[FamilyAdapter]:
        FAMILIES.add(name, cls())
        return cls

    return register


def adapter_for(model_or_config: Any) -> FamilyAdapter:
    """The adapter of a loaded model, a transformers config or a parsed config.json."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type = config.get("model_type") if isinstance(config, dict) else config.model_type
    return FAMILIES[model_type]


def exclude_by_correction_bias(router: nn.Module, keep: torch.Tensor) -> Callable[[], None]:
    """Restrict a router that chooses by score + `e_score_correction_bias` (DeepSeek-V3, GLM-4.5,
    Nemotron-H): a -inf bias outside `keep` makes its own forward score groups and pick top-k among the
    kept experts only, while the combine weights, read from the uncorrected scores, are unchanged.
    Returns the undo function."""
    import torch

    original = router.e_score_correction_bias
    allowed = torch.zeros_like(original, dtype=torch.bool)
    allowed[keep.to(allowed.device)] = True
    router.e_score_correction_bias = original.masked_fill(~allowed, float("-inf"))

    def undo() -> None:
        router.e_score_correction_bias = original

    return undo


def keep_rows(param: nn.Parameter, keep: torch.Tensor) -> nn.Parameter:
    """A new parameter holding rows `keep` of `param` (dim 0 is the expert index)."""
    from torch import nn

    return nn.Parameter(param.data.index_select(0, keep.to(param.device)).clone(), requires_grad=param.requires_grad)


class SoftmaxTopKAdapter(FamilyAdapter):
    """Families on transformers' v5 softmax top-k MoE block: `mlp.gate` (a bias-free linear router:
    softmax over all experts, top-k, optionally renormalised) and fused SwiGLU `mlp.experts`
    (`gate_up_proj [E, 2I, H]`, `down_proj [E, H, I]`), the block behind the decoder's
    `post_attention_layernorm`. Subclasses say where the tensors sit on disk."""

    renormalise: bool | None = None  # renormalise the top-k weights: None = the router's norm_topk_prob
    weights_in_logit_dtype = True  # the router returns its top-k weights cast to the logits' dtype

    def routing(self, config: Any) -> Routing:
        num_experts, top_k = self.counts(config)
        return Routing(num_experts=num_experts, top_k=top_k, n_group=1, kind="softmax-topk")

    def moe_layer_indices(self, config: Any) -> list[int]:
        """Decoder layers with a sparse block: all but `mlp_only_layers`, every `decoder_sparse_step`-th
        (the Qwen-MoE rule; families without those fields are sparse everywhere)."""
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
        return [
            MoELayer(index, layer.mlp, layer.mlp.experts, layer.mlp.gate, residual_norm=layer.post_attention_layernorm)
            for index, layer in enumerate(decoder.layers)
            if hasattr(layer.mlp, "experts") and hasattr(layer.mlp, "gate")  # dense layers hold a plain MLP
        ]

    def prune_layer(self, layer: MoELayer, keep: torch.Tensor) -> None:
        experts, router = layer.experts, layer.router
        experts.gate_up_proj = keep_rows(experts.gate_up_proj, keep)
        experts.down_proj = keep_rows(experts.down_proj, keep)
        experts.num_experts = len(keep)  # sizes the expert one-hot in the eager forward
        router.weight = keep_rows(router.weight, keep)
        router.num_experts = len(keep)

    def set_counts(self, model: nn.Module, num_experts: int, top_k: int) -> None:
        setattr(model.config, self.count_keys[0], num_experts)
        setattr(model.config, self.top_k_keys[0], top_k)
        if hasattr(model, "num_experts"):
            model.num_experts = num_experts  # read by the load-balancing loss
        if hasattr(model, "num_experts_per_tok"):
            model.num_experts_per_tok = top_k
        for layer in self.moe_layers(model):
            layer.router.top_k = top_k
            if hasattr(layer.block, "top_k"):
                layer.block.top_k = top_k

    def restrict_router(self, layer: MoELayer, keep: torch.Tensor) -> Callable[[], None]:
        import torch
        from torch import nn

        router = layer.router
        allowed = torch.zeros(router.num_experts, dtype=torch.bool)
        allowed[keep] = True
        renormalise = router.norm_topk_prob if self.renormalise is None else self.renormalise

        def forward(hidden_states: torch.Tensor):  # noqa: ANN202
            hidden_states = hidden_states.reshape(-1, router.hidden_dim)
            logits = nn.functional.linear(hidden_states, router.weight)
            # -inf before the softmax: its denominator runs over the kept experts, as in the pruned router
            logits = logits.masked_fill(~allowed.to(logits.device), float("-inf"))
            probs = torch.softmax(logits, dtype=torch.float, dim=-1)
            top_value, top_index = torch.topk(probs, router.top_k, dim=-1)
            if renormalise:
                top_value /= top_value.sum(dim=-1, keepdim=True)
            return logits, top_value.to(logits.dtype) if self.weights_in_logit_dtype else top_value, top_index

        router.forward = forward
        return lambda: delattr(router, "forward")
