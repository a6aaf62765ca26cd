"""Mixtral: softmax top-k router with the top-k weights always renormalised; every layer is MoE.

Loaded (transformers v5): `mlp.gate` and fused `mlp.experts.{gate_up_proj [E, 2I, H], down_proj [E, H, I]}`.
On disk: the hub format, which transformers v5 also writes, is `block_sparse_moe.gate.weight` and
per-expert `block_sparse_moe.experts.<e>.{w1,w2,w3}.weight` (w1 gate, w3 up, w2 down); a checkpoint
written from the v5 state dict has the module names instead. Both are pruned in place.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from expertlab.moe.families.base import ExpertTensors, SoftmaxTopKAdapter, family


@family("mixtral")
class MixtralAdapter(SoftmaxTopKAdapter):
    count_keys = ("num_local_experts", "num_experts")  # `num_experts` is transformers' alias
    top_k_keys = ("num_experts_per_tok",)
    renormalise = True  # always, whatever the config says
    weights_in_logit_dtype = False  # the router returns float32 weights

    def expert_tensors(self, config: Any, names: Collection[str]) -> list[ExpertTensors]:
        layers = []
        for i in range(self.text_config(config)["num_hidden_layers"]):
            block = f"model.layers.{i}.block_sparse_moe"  # hub names
            if f"{block}.gate.weight" not in names:
                block = f"model.layers.{i}.mlp"  # the v5 module names
            layers.append(ExpertTensors(layer=i, experts=f"{block}.experts", router_rows=(f"{block}.gate.weight",)))
        return layers
