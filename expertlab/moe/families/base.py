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


def keep_rows(param: nn.Parameter, keep: torch.Tensor) -> nn.Parameter:
    """A new parameter holding rows `keep` of `param` (dim 0 is the expert index)."""
    from torch import nn

    return nn.Parameter(param.data.index_select(0, keep.to(param.device)).clone(), requires_grad=param.requires_grad)
