"""A model + a checked selection + FinetuneConfig -> what trains: the registry of fine-tuning modes.

- full: every parameter trains.
- experts: only the selected experts train. transformers v5 fuses a layer's experts into 3-D
  parameters (expert axis 0, from the family adapter's `axis_of`), so the whole tensor requires a
  gradient and a `RowMask` keeps everything outside the selected rows frozen: the loop zeroes
  their gradient, the optimizer keeps them out of weight decay (`expertlab.finetune.optim`), and
  Adam's moments stay exactly zero on them, so each frozen row is bit-for-bit the source's.
  The price: the gradient and Adam's moments span the whole fused tensor of each selected layer
  (zeros outside the selected rows); checkpoints store the selected rows only.
  Experts held as separate modules (a ModuleList; no family in transformers v5) are frozen per module instead.
- lora: standard LoRA (peft) on `lora.target_modules`; everything else frozen.
- lora_experts: LoRA on the selected experts only (paper 001, section 4: "LoRA's low-rank matrices
  can be directly applied to them"). peft 0.21 adapts a fused 3-D expert parameter with
  `LoraConfig(target_parameters=...)`: a `ParamWrapper` holding, per expert e, its own rank-r pair
  A_e [r, in], B_e [out, r] packed into two nn.Linear weights, and adding scaling * B_e A_e to
  row e of the parameter (a parametrization during forward; `merge_and_unload` adds it for good).
  peft can name a layer's parameter but not a subset of its experts, so the selected layers'
  3-D expert weights are targeted and each adapter's rows of unselected experts are held at zero
  by a `RowMask` (their B_e starts at zero and never moves, their A_e is zeroed): the merged delta
  of an unselected expert is exactly zero. Expert biases (GPT-OSS) get no adapter: LoRA adapts
  weight matrices, and peft's ParamWrapper takes a 2-D tensor for one matrix, not for E bias rows.
Whichever the mode, `Trainable.finish()` gives back a model of the source architecture (LoRA merged).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from expertlab.errors import ExpertlabError
from expertlab.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

    from expertlab.finetune.config import FinetuneConfig

ADAPTER = "default"  # peft's adapter name


@dataclass
class RowMask:
    """The slices of a tensor along `axis` that train (`index`, sorted); every other slice stays as it is."""

    axis: int
    index: torch.Tensor  # long
    size: int  # the tensor's extent along `axis`

    def trains(self, like: torch.Tensor) -> torch.Tensor:
        """Boolean, broadcastable to `like`: True on the slices that train."""
        import torch

        shape = [1] * like.dim()
        shape[self.axis] = self.size
        keep = torch.zeros(self.size, dtype=torch.bool, device=like.device)
        keep[self.index.to(like.device)] = True
        return keep.view(shape)

    def zero_frozen_(self, tensor: torch.Tensor) -> None:
        """Set every frozen slice of `tensor` to +0 (a gradient, or an adapter's unused rows)."""
        tensor.masked_fill_(~self.trains(tensor), 0)

    def rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """The training slices of `tensor`, stacked along `axis` (a copy)."""
        return tensor.index_select(self.axis, self.index.to(tensor.device))

    def put_rows_(self, tensor: torch.Tensor, rows: torch.Tensor) -> None:
        """Write `rows` (as `rows()` returns them) back into `tensor`'s training slices."""
        tensor.index_copy_(self.axis, self.index.to(tensor.device), rows.to(tensor.device, tensor.dtype))


@dataclass
class TrainableTensor:
    name: str  # as in Trainable.module.named_parameters()
    param: nn.Parameter
    rows: RowMask | None = None  # None: the whole tensor trains


@dataclass
class Trainable:
    """What a mode made of the model: the module the loop calls, the tensors that train, and how to finish."""

    module: nn.Module
    tensors: list[TrainableTensor]
    finish: Callable[[], nn.Module]  # after training: the model of the source architecture
    selection: dict[int, tuple[int, ...]] = field(default_factory=dict)

    def numel(self) -> int:
        """Scalars that train (only the selected slices of masked tensors)."""
        total = 0
        for tensor in self.tensors:
            count = tensor.param.numel()
            if tensor.rows is not None:
                count = count // tensor.rows.size * len(tensor.rows.index)
            total += count
        return total


@dataclass(frozen=True)
class Mode:
    name: str
    needs_selection: bool  # trains selected experts, so a selection is required
    prepare: Callable[[nn.Module, dict[int, tuple[int, ...]], FinetuneConfig], Trainable]


MODES: Registry[Mode] = Registry("fine-tuning mode")


def mode(name: str, *, needs_selection: bool) -> Callable:
    def register(prepare: Callable) -> Callable:
        MODES.add(name, Mode(name, needs_selection, prepare))
        return prepare

    return register


def _flags(model: nn.Module) -> dict[str, bool]:
    """Every parameter's requires_grad, before a mode changes it."""
    return {name: param.requires_grad for name, param in model.named_parameters()}


def _restoring(flags: dict[str, bool], finish: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    """`finish`, then every parameter's requires_grad back as `flags` recorded it, in eval mode."""

    def finished() -> nn.Module:
        result = finish()
        for name, param in result.named_parameters():
            param.requires_grad_(flags.get(name, True))
        return result.eval()

    return finished


@mode("full", needs_selection=False)
def full(model: nn.Module, selection: dict[int, tuple[int, ...]], config: FinetuneConfig) -> Trainable:
    """Every parameter trains."""
    finish = _restoring(_flags(model), lambda: model)
    for param in model.parameters():
        param.requires_grad_(True)
    tensors = [TrainableTensor(name, param) for name, param in model.named_parameters()]
    return Trainable(model, tensors, finish)


@dataclass
class ExpertParameter:
    """One parameter of a selected layer's experts module and the rows of it that belong to selected experts."""

    name: str  # in model.named_parameters()
    param: nn.Parameter
    rows: RowMask | None  # None: a per-expert module's parameter, wholly selected


def selected_expert_parameters(model: nn.Module, selection: dict[int, tuple[int, ...]]) -> list[ExpertParameter]:
    """Every parameter holding a selected expert, with its selected rows (fused tensors) or whole (per-expert modules)."""
    import torch

    from expertlab.moe.families import adapter_for

    adapter = adapter_for(model)
    num_experts = adapter.routing(model.config).num_experts
    names = {id(param): name for name, param in model.named_parameters()}
    on_disk = {tensors.layer: tensors for tensors in adapter.expert_tensors(model.config, list(names.values()))}
    found = []
    for layer in adapter.moe_layers(model):
        if layer.index not in selection:
            continue
        chosen = selection[layer.index]
        for local, param in layer.experts.named_parameters():
            head, _, rest = local.partition(".")
            if head.isdigit() and rest:  # experts as separate modules: <e>.<rest>
                if int(head) in chosen:
                    found.append(ExpertParameter(names[id(param)], param, None))
                continue
            axis = on_disk[layer.index].axis_of(f"{on_disk[layer.index].experts}.{local}")
            if param.dim() <= axis or param.shape[axis] != num_experts:
                raise ExpertlabError(
                    f"{names[id(param)]} {tuple(param.shape)}: expected {num_experts} experts along axis {axis}; "
                    "cannot tell which rows belong to which expert"
                )
            index = torch.tensor(chosen, dtype=torch.long)
            found.append(ExpertParameter(names[id(param)], param, RowMask(axis, index, num_experts)))
    return found


@mode("experts", needs_selection=True)
def experts(model: nn.Module, selection: dict[int, tuple[int, ...]], config: FinetuneConfig) -> Trainable:
    """Only the selected experts' rows train; routers, attention, norms, embeddings, shared experts are frozen."""
    finish = _restoring(_flags(model), lambda: model)
    for param in model.parameters():
        param.requires_grad_(False)
    tensors = []
    for found in selected_expert_parameters(model, selection):
        found.param.requires_grad_(True)
        tensors.append(TrainableTensor(found.name, found.param, found.rows))
    return Trainable(model, tensors, finish, selection)


@mode("lora", needs_selection=False)
def lora(model: nn.Module, selection: dict[int, tuple[int, ...]], config: FinetuneConfig) -> Trainable:
    """Standard LoRA on `lora.target_modules`; merged into the model when finished."""
    import torch
    from peft import LoraConfig, get_peft_model

    settings = config.lora
    lora_config = LoraConfig(
        r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=settings.target_modules
    )
    flags = _flags(model)
    torch.manual_seed(config.seed)  # the adapters' initialisation
    peft_model = get_peft_model(model, lora_config)
    tensors = [TrainableTensor(name, param) for name, param in peft_model.named_parameters() if param.requires_grad]
    return Trainable(peft_model, tensors, _restoring(flags, peft_model.merge_and_unload))


def lora_expert_rows(num_experts: int, rank: int, experts: tuple[int, ...]) -> tuple[RowMask, RowMask]:
    """The rows of peft's ParamWrapper lora_A [E r, in] and columns of lora_B [out, r E] that belong to `experts`.

    peft 0.21 (ParamWrapper.get_delta_weight) reads A as A.reshape(E, r, in), so expert e owns rows
    e r .. e r + r - 1, and B as B.reshape(out, r, E), so it owns columns j E + e for j < r.
    """
    import torch

    a_rows = torch.tensor(sorted(e * rank + j for e in experts for j in range(rank)), dtype=torch.long)
    b_columns = torch.tensor(sorted(j * num_experts + e for e in experts for j in range(rank)), dtype=torch.long)
    return RowMask(0, a_rows, num_experts * rank), RowMask(1, b_columns, num_experts * rank)


@mode("lora_experts", needs_selection=True)
def lora_experts(model: nn.Module, selection: dict[int, tuple[int, ...]], config: FinetuneConfig) -> Trainable:
    """LoRA (peft target_parameters) on the selected layers' fused expert weights; unselected experts' rows held at 0."""
    import torch
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora.layer import ParamWrapper

    from expertlab.moe.families import adapter_for

    settings = config.lora
    flags = _flags(model)
    targets = [found.name for found in selected_expert_parameters(model, selection) if found.param.dim() == 3]
    if not targets:
        raise ExpertlabError(
            "mode lora_experts: the selected layers have no fused 3-D expert weights for peft's target_parameters"
        )
    layer_of = {id(layer.experts): layer.index for layer in adapter_for(model).moe_layers(model)}
    torch.manual_seed(config.seed)
    peft_model = get_peft_model(
        model,
        LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=0.0, target_modules=[], target_parameters=targets),
    )
    names = {id(param): name for name, param in peft_model.named_parameters()}
    tensors = []
    for wrapper in peft_model.modules():
        if not isinstance(wrapper, ParamWrapper):
            continue
        chosen = selection[layer_of[id(wrapper.get_base_layer())]]
        a_rows, b_columns = lora_expert_rows(wrapper.num_experts, wrapper.r[ADAPTER], chosen)
        a, b = wrapper.lora_A[ADAPTER].weight, wrapper.lora_B[ADAPTER].weight
        with torch.no_grad():
            a_rows.zero_frozen_(a)  # unselected experts get no adapter at all
            b_columns.zero_frozen_(b)  # peft's init already made B zero; kept explicit
        tensors += [TrainableTensor(names[id(a)], a, a_rows), TrainableTensor(names[id(b)], b, b_columns)]
    trained = {id(tensor.param) for tensor in tensors}
    stray = [name for name, param in peft_model.named_parameters() if param.requires_grad and id(param) not in trained]
    if stray:
        raise ExpertlabError(f"mode lora_experts: peft made parameters trainable that no mask covers: {stray[:3]}")
    return Trainable(peft_model, tensors, _restoring(flags, peft_model.merge_and_unload), selection)
