"""Weight-only quantization of a whole (pruned) MoE model, decoder layer by decoder layer.

What is quantized follows the study's W4A16 recipe: every linear weight of the decoder layers and
every routed expert's projections; never the embeddings, norms, `lm_head`, the routers (each family
adapter names its router) or anything an `ignore` pattern matches (e.g. shared-expert gates).

GPTQ is sequential, as in the reference method: layer l is quantized against the inputs it receives
from layers 0..l-1 already quantized. Each layer's inputs come from a forward pass over the
calibration batches that stops as soon as layer l has run; its Hessians are accumulated from hooks
(padding tokens masked out):
- a linear module: sum of x x^T over the inputs it receives;
- routed expert e: sum of x x^T over the tokens routed to e for its gate/up projection, and over
  its intermediate activations act(x W_gate^T) * (x W_up^T) for its down projection. Expert inputs
  come from the family adapter's observed forward, so the router is never re-run; the fused SwiGLU
  layout (gate_up_proj [E, 2I, H], down_proj [E, H, I]) is checked against the experts' own outputs
  on the first batch, and families whose experts compute otherwise are refused with their name.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from expertlab.moe.families import FamilyAdapter, MoELayer, adapter_for
from expertlab.moe.observe import observed_experts
from expertlab.quantize import check_ignore_patterns
from expertlab.quantize.gptq import Grid, QuantizedMatrix, gptq, output_error, round_to_nearest
from expertlab.quantize.packed import group_strategy

METHODS = ("gptq", "rtn")


@dataclass(frozen=True)
class Scheme:
    """How weights are quantized: the method, its integer grid and what stays in full precision."""

    method: str = "gptq"
    grid: Grid = field(default_factory=Grid)
    damp: float = 0.01
    block_size: int = 128
    ignore: tuple[str, ...] = ()  # regular expressions, matched in full against module names

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"quantization method {self.method!r} is not one of {', '.join(METHODS)}")
        check_ignore_patterns(self.ignore)

    def ignores(self, name: str) -> bool:
        return any(re.fullmatch(pattern, name) for pattern in self.ignore)

    def quantize(self, weight: torch.Tensor, hessian: torch.Tensor) -> QuantizedMatrix:
        if self.method == "rtn":
            return round_to_nearest(weight, self.grid)
        return gptq(weight, hessian, self.grid, damp=self.damp, block_size=self.block_size)


class _Stop(Exception):
    """Raised at the entry of the decoder layer after the one being calibrated: nothing later is needed."""


class Hessian:
    """sum of x x^T (float64) over the rows of every input seen, and how many rows that was."""

    def __init__(self, size: int, device: torch.device) -> None:
        self.sum = torch.zeros(size, size, dtype=torch.float64, device=device)
        self.rows = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).to(torch.float64)
        self.sum.addmm_(x.T, x)
        self.rows += x.shape[0]


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's stack of decoder layers: the module list with one entry per hidden layer."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    count = config.num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.split(".")[-1] == "layers" and len(module) == count:
            return module
    raise ValueError(f"model of type {model.config.model_type!r}: found no list of {count} decoder layers")


@dataclass
class QuantizedTensor:
    """What quantizing one weight did: its name, the calibration rows it saw, its output error, and the
    integers and scales (the model's parameter `parameter`, or expert `expert`'s slice of it)."""

    name: str
    shape: tuple[int, ...]
    rows: int
    relative_error: float | None  # sum ||(W - Q) x||^2 / sum ||W x||^2 over the calibration inputs (None: no input)
    parameter: str = ""
    expert: int | None = None
    matrix: QuantizedMatrix | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "rows": self.rows, "relative_error": self.relative_error}


def _relative_error(weight: torch.Tensor, quantized: torch.Tensor, hessian: Hessian) -> float | None:
    if hessian.rows == 0:
        return None
    total = output_error(weight, torch.zeros_like(weight), hessian.sum)
    return output_error(weight, quantized, hessian.sum) / total if total > 0 else 0.0


def _check_swiglu(experts: nn.Module, model_type: str) -> None:
    gate_up, down = getattr(experts, "gate_up_proj", None), getattr(experts, "down_proj", None)
    fused = (
        isinstance(gate_up, torch.Tensor) and isinstance(down, torch.Tensor)
        and gate_up.dim() == 3 and down.dim() == 3
        and gate_up.shape[0] == down.shape[0]
        and gate_up.shape[1] == 2 * down.shape[2] and gate_up.shape[2] == down.shape[1]
        and callable(getattr(experts, "act_fn", None))
        and not any("bias" in name for name, _ in experts.named_parameters())
    )
    if not fused:
        raise ValueError(
            f"model type {model_type!r}: its experts are not fused SwiGLU projections "
            "(gate_up_proj [E, 2I, H], down_proj [E, H, I], no biases); quantizing them is not supported"
        )


class _ExpertHessians:
    """Per routed expert: the Hessians of its gate/up projection (inputs) and down projection (activations)."""

    def __init__(self, layer: MoELayer, model_type: str, adapter: FamilyAdapter) -> None:
        experts = layer.experts
        _check_swiglu(experts, model_type)
        self.layer, self.model_type, self.adapter = layer, model_type, adapter
        count, intermediate, hidden = experts.down_proj.shape[0], experts.down_proj.shape[2], experts.down_proj.shape[1]
        device = experts.down_proj.device
        self.inputs = [Hessian(hidden, device) for _ in range(count)]
        self.activations = [Hessian(intermediate, device) for _ in range(count)]
        self.checked = False
        self.token_mask: torch.Tensor | None = None

    def record(self, hidden, top_k_index, top_k_weights, outputs, combined) -> None:  # noqa: ANN001
        experts = self.layer.experts
        keep = self.token_mask
        if keep is None or keep.numel() != hidden.shape[0]:
            keep = torch.ones(hidden.shape[0], dtype=torch.bool, device=hidden.device)
        keep = keep.to(hidden.device)
        for expert in top_k_index[keep].unique().tolist():
            tokens, position = torch.where((top_k_index == expert) & keep.unsqueeze(1))
            x = hidden[tokens]
            gate, up = nn.functional.linear(x, experts.gate_up_proj[expert]).chunk(2, dim=-1)
            activation = experts.act_fn(gate) * up
            if not self.checked:
                mine = nn.functional.linear(activation, experts.down_proj[expert]).to(torch.float32)
                theirs = outputs[tokens, position].to(torch.float32)
                scale = theirs.abs().max().clamp(min=1e-6)
                if (mine - theirs).abs().max() > 1e-3 * scale:
                    raise ValueError(
                        f"model type {self.model_type!r}, layer {self.layer.index}: its experts do not compute "
                        "down(act(gate) * up) from gate_up_proj and down_proj; quantizing them is not supported"
                    )
            self.inputs[expert].add(x)
            self.activations[expert].add(activation)
        self.checked = True

    def installed(self) -> contextlib.AbstractContextManager[None]:
        return observed_experts(self.adapter, [(self.layer, self.record)])


class LayerQuantizer:
    """Quantize the model's decoder layers in order, each against the calibration inputs it receives."""

    def __init__(self, model: nn.Module, scheme: Scheme) -> None:
        self.model, self.scheme = model, scheme
        self.adapter = adapter_for(model)
        self.layers = decoder_layers(model)
        self.moe = {layer.index: layer for layer in self.adapter.moe_layers(model)}
        self.model_type = model.config.model_type
        names = {id(module): name for name, module in model.named_modules()}
        self.routers = {names[id(layer.router)] for layer in self.moe.values()}
        self.experts = {names[id(layer.experts)] for layer in self.moe.values()}
        self.names = names
        self.token_mask: torch.Tensor | None = None
        self.expert_hessians: _ExpertHessians | None = None

    def widths(self) -> dict[str, int]:
        """Input columns of every weight that is quantized (expert tensors by their parameter name)."""
        found = {f"{name}.weight": module.in_features
                 for index in range(len(self.layers)) for name, module in self.linears(index).items()}
        for layer in self.moe.values():
            _check_swiglu(layer.experts, self.model_type)
            prefix = self.names[id(layer.experts)]
            found[f"{prefix}.gate_up_proj"] = layer.experts.gate_up_proj.shape[-1]
            found[f"{prefix}.down_proj"] = layer.experts.down_proj.shape[-1]
        return found

    def linears(self, index: int) -> dict[str, nn.Linear]:
        """The linear modules of decoder layer `index` that are quantized (routers and ignored ones left out)."""
        prefix = self.names[id(self.layers[index])]
        found = {}
        for name, module in self.layers[index].named_modules(prefix=prefix):
            if not isinstance(module, nn.Linear):
                continue
            if any(name == r or name.startswith(r + ".") for r in self.routers | self.experts):
                continue
            if self.scheme.ignores(name):
                continue
            found[name] = module
        return found

    def _linear_hook(self, hessian: Hessian):  # noqa: ANN202
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0].reshape(-1, args[0].shape[-1])
            mask = self.token_mask
            if mask is not None and mask.numel() == x.shape[0]:
                x = x[mask.to(x.device)]
            hessian.add(x)

        return hook

    def _calibrate(self, index: int, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Forward every batch until decoder layer `index` has run."""
        stop = None
        if index + 1 < len(self.layers):
            def halt(module: nn.Module, args: tuple, kwargs: dict) -> None:
                raise _Stop

            stop = self.layers[index + 1].register_forward_pre_hook(halt, with_kwargs=True)
        device = next(self.model.parameters()).device
        try:
            for input_ids, attention_mask in batches:
                self.token_mask = attention_mask.reshape(-1).bool()
                if self.expert_hessians is not None:
                    self.expert_hessians.token_mask = self.token_mask
                with contextlib.suppress(_Stop):
                    ids, mask = input_ids.to(device), attention_mask.to(device)
                    self.model(input_ids=ids, attention_mask=mask, use_cache=False)
        finally:
            self.token_mask = None
            if stop is not None:
                stop.remove()

    def quantize_layer(self, index: int, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> list[QuantizedTensor]:
        linears = self.linears(index)
        hessians = {name: Hessian(module.in_features, module.weight.device) for name, module in linears.items()}
        hooks = [
            module.register_forward_pre_hook(self._linear_hook(hessians[name]))
            for name, module in linears.items()
        ]
        moe = self.moe.get(index)
        self.expert_hessians = _ExpertHessians(moe, self.model_type, self.adapter) if moe is not None else None
        try:
            with self.expert_hessians.installed() if self.expert_hessians else contextlib.nullcontext():
                self._calibrate(index, batches)
        finally:
            for hook in hooks:
                hook.remove()
        done = []
        for name, module in linears.items():
            weight = module.weight.data
            matrix = self.scheme.quantize(weight, hessians[name].sum)
            quantized = matrix.dequantize()
            done.append(QuantizedTensor(f"{name}.weight", tuple(weight.shape), hessians[name].rows,
                                        _relative_error(weight, quantized, hessians[name]),
                                        parameter=f"{name}.weight", matrix=matrix))
            module.weight.data.copy_(quantized)
        if moe is not None:
            done += self._quantize_experts(moe)
        self.expert_hessians = None
        return done

    def _quantize_experts(self, moe: MoELayer) -> list[QuantizedTensor]:
        experts, hessians = moe.experts, self.expert_hessians
        prefix = self.names[id(experts)]
        done = []
        for attribute, per_expert in (("gate_up_proj", hessians.inputs), ("down_proj", hessians.activations)):
            parameter = getattr(experts, attribute)
            for expert, hessian in enumerate(per_expert):
                weight = parameter.data[expert]
                matrix = self.scheme.quantize(weight, hessian.sum)
                quantized = matrix.dequantize()
                done.append(QuantizedTensor(f"{prefix}.{attribute}[{expert}]", tuple(weight.shape), hessian.rows,
                                            _relative_error(weight, quantized, hessian),
                                            parameter=f"{prefix}.{attribute}", expert=expert, matrix=matrix))
                parameter.data[expert].copy_(quantized)
        return done


def quantize_model(
    model: nn.Module,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    scheme: Scheme,
    progress: bool = True,
) -> list[QuantizedTensor]:
    """Quantize `model` in place against the calibration batches; one record per quantized weight."""
    from tqdm.auto import tqdm

    if not batches:
        raise ValueError("no calibration batches")
    quantizer = LayerQuantizer(model, scheme)
    group_strategy(scheme.grid, quantizer.widths())  # a packed checkpoint's groups: refused before any work
    model.eval()
    done: list[QuantizedTensor] = []
    with torch.no_grad():
        for index in tqdm(range(len(quantizer.layers)), desc=f"quantize ({scheme.method})", unit="layer",
                          disable=not progress):
            done += quantizer.quantize_layer(index, batches)
    return done
