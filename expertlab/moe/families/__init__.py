"""The model-family registry: one module per family, keyed by `config.model_type`.

Importing this package registers every family; nothing here imports torch, so params
validation and checkpoint pruning stay cheap.
"""

from __future__ import annotations

from expertlab.moe.families import qwen3_moe  # noqa: F401  (registers the family)
from expertlab.moe.families.base import (
    FAMILIES,
    ExpertTensors,
    FamilyAdapter,
    MoELayer,
    Routing,
    adapter_for,
    config_dict,
)

__all__ = ["FAMILIES", "ExpertTensors", "FamilyAdapter", "MoELayer", "Routing", "adapter_for", "config_dict"]
