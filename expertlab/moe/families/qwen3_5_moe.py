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

from collections.abc import Collection
from typing import Any

from expertlab.moe.families.base import ExpertTensors, SoftmaxTopKAdapter, family

_VISION_LANGUAGE_PREFIX = "model.language_model"


@family("qwen3_5_moe")
@family("qwen3_5_moe_text")
class Qwen35MoeAdapter(SoftmaxTopKAdapter):
    count_keys = ("num_experts",)  # transformers defines no alias for it
    top_k_keys = ("num_experts_per_tok",)
    renormalise = True
    mtp_prefixes = ("mtp.",)  # the hub checkpoints' multi-token-prediction head, with experts of its own
    mtp_count_keys = ("mtp_num_hidden_layers",)

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
