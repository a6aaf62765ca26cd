"""The model-family registry: one module per family in this package, keyed by `config.model_type`.

Importing the package imports every module in it, and each registers its adapter with
`@family(...)`: adding a family is adding one file. Nothing here imports torch, so params
validation and checkpoint pruning stay cheap.
"""

from __future__ import annotations

import importlib
import pkgutil

from expertlab.moe.families.base import (
    FAMILIES,
    ExpertTensors,
    FamilyAdapter,
    MoELayer,
    Routing,
    adapter_for,
    config_dict,
)

for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["FAMILIES", "ExpertTensors", "FamilyAdapter", "MoELayer", "Routing", "adapter_for", "config_dict"]
