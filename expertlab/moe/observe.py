"""Calibration texts + model -> per-(layer, expert) sufficient statistics for every saliency criterion.

One pass records everything (DESIGN.md, "Saliency criteria"). For MoE layer l, expert i and
non-padding token t, with g(i,t) the model's actual combine weight (0 when not selected),
x_t the (normalised) hidden state the experts module receives, E_i(x_t) the unweighted expert
output, r_t the residual stream entering the MoE block and r~_t = r_t + sum_i g(i,t) E_i(x_t)
(routed experts only, shared experts excluded):

    routed_count      = sum_t 1[g > 0]
    gate_sum          = sum_t g
    ean_sum           = sum_t 1[g > 0] ||E_i(x_t)||
    weighted_norm_sum = sum_t g ||E_i(x_t)||
    easy_ep_sum       = sum_t g ||E_i(x_t)|| (1 - cos(r_t, r~_t))

r_t is read from the input of the norm in front of the MoE block (the adapter names it); for a
family without one, r_t = x_t.

All sums are float64. The experts module is wrapped, not re-implemented: each routed
(token, expert) pair is sent through the module's own forward with weight 1, so only routed
pairs are computed and the router is never re-run.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch
from torch import nn

from expertlab.moe.families import FamilyAdapter, MoELayer, adapter_for

if TYPE_CHECKING:
    from expertlab.params import Observe
    from expertlab.records import ObservationMeta

STAT_COLUMNS = ("routed_count", "gate_sum", "ean_sum", "weighted_norm_sum", "easy_ep_sum")


@dataclass
class LayerAccumulator:
    num_experts: int
    tokens: int = 0
    totals: torch.Tensor = field(init=False)  # [num_experts, len(STAT_COLUMNS)], float64

    def __post_init__(self) -> None:
        self.totals = torch.zeros(self.num_experts, len(STAT_COLUMNS), dtype=torch.float64)

    @property
    def sums(self) -> dict[str, torch.Tensor]:
        return {name: self.totals[:, i] for i, name in enumerate(STAT_COLUMNS)}

    def add(
        self,
        hidden: torch.Tensor,
        top_k_index: torch.Tensor,
        top_k_weights: torch.Tensor,
        expert_outputs: torch.Tensor,
        token_mask: torch.Tensor | None,
        combined: torch.Tensor | None = None,
        residual: torch.Tensor | None = None,
    ) -> None:
        """Accumulate one batch: hidden [T, H], index/weights [T, K], expert_outputs [T, K, H].

        `combined` [T, H] is sum_k g E(x) as the model computed it (derived here when absent);
        `residual` [T, H] is the residual stream entering the block (`hidden` when absent).
        Reductions over the hidden axis run in at least float32 (the model's own precision);
        the per-pair terms they give, and every sum, are float64.
        """
        compute = torch.promote_types(expert_outputs.dtype, torch.float32)
        outputs = expert_outputs.detach().to(compute)
        if combined is None:
            combined = (outputs * top_k_weights.detach().to(compute).unsqueeze(-1)).sum(dim=1)
        h = (hidden if residual is None else residual).detach().to(compute)
        h_tilde = h + combined.detach().to(compute)
        norms = torch.linalg.vector_norm(outputs, dim=-1).to(torch.float64)  # [T, K]
        # 1 - cos(h, h~) from three per-token reductions; the subtraction is done in float64
        dot = torch.linalg.vecdot(h, h_tilde).to(torch.float64)
        scale = torch.linalg.vector_norm(h, dim=-1).to(torch.float64) * torch.linalg.vector_norm(h_tilde, dim=-1).to(
            torch.float64
        )
        shift = 1.0 - dot / scale.clamp(min=1e-12)  # [T]
        g = top_k_weights.detach().to(torch.float64)
        if token_mask is not None:
            g = g * token_mask.to(torch.float64).unsqueeze(-1)
        routed = (g > 0).to(torch.float64)
        weighted_norm = g * norms
        values = torch.stack(
            [routed, g, routed * norms, weighted_norm, weighted_norm * shift.unsqueeze(-1)], dim=-1
        )  # [T, K, 5] in STAT_COLUMNS order
        self.totals.index_add_(0, top_k_index.reshape(-1).cpu(), values.reshape(-1, len(STAT_COLUMNS)).cpu())
        self.tokens += hidden.shape[0] if token_mask is None else int(token_mask.sum().item())


@contextlib.contextmanager
def observed_experts(
    adapter: FamilyAdapter, recorders: Sequence[tuple[MoELayer, Callable[..., None]]]
) -> Iterator[None]:
    """While open, each layer's experts forward goes through the adapter's observed forward, handing its
    recorder every routed (token, expert) pair (FamilyAdapter.observed_forward); restored on exit."""
    # the current forward, not the class's: an offloading hook (accelerate) may wrap it
    previous = [vars(layer.experts).get("forward") for layer, _ in recorders]
    for layer, record in recorders:
        layer.experts.forward = adapter.observed_forward(layer, layer.experts.forward, record)
    try:
        yield
    finally:
        for (layer, _), forward in zip(recorders, previous):
            if forward is None:
                del layer.experts.forward
            else:
                layer.experts.forward = forward


class ExpertObserver:
    """Wraps every experts module of a model so its forwards accumulate statistics."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.adapter = adapter_for(model)
        self.layers: list[MoELayer] = self.adapter.moe_layers(model)
        if not self.layers:
            raise ValueError(f"model of type {model.config.model_type!r} has no MoE layers")
        self.routing = self.adapter.routing(model.config)
        self.stats = {layer.index: LayerAccumulator(self.routing.num_experts) for layer in self.layers}
        self.token_mask: torch.Tensor | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[ExpertObserver]:
        residuals: dict[int, torch.Tensor] = {}
        hooks = []
        recorders = [(layer, self._recorder(self.stats[layer.index], residuals, layer.index)) for layer in self.layers]
        for layer in self.layers:
            if layer.residual_norm is not None:
                hooks.append(layer.residual_norm.register_forward_pre_hook(self._residual_hook(residuals, layer.index)))
        try:
            with observed_experts(self.adapter, recorders):
                yield self
        finally:
            for hook in hooks:
                hook.remove()

    @staticmethod
    def _residual_hook(residuals: dict[int, torch.Tensor], index: int):  # noqa: ANN205
        def hook(module: nn.Module, args: tuple) -> None:
            residuals[index] = args[0].reshape(-1, args[0].shape[-1])

        return hook

    def _recorder(self, acc: LayerAccumulator, residuals: dict[int, torch.Tensor], index: int):  # noqa: ANN202
        def record(hidden, top_k_index, top_k_weights, outputs, combined) -> None:  # noqa: ANN001
            mask = self.token_mask
            if mask is not None and mask.numel() != hidden.shape[0]:
                raise ValueError(f"padding mask has {mask.numel()} tokens, experts module saw {hidden.shape[0]}")
            residual = residuals.pop(index, None)
            # the experts' input may be narrower (latent projections); their combined output is not
            if residual is not None and residual.shape != combined.shape:
                raise ValueError(
                    f"layer {index}: residual stream {tuple(residual.shape)} does not match the experts' "
                    f"combined output {tuple(combined.shape)}"
                )
            acc.add(hidden, top_k_index, top_k_weights, outputs, mask, combined, residual)

        return record

    def frame(self) -> pd.DataFrame:
        rows = []
        for layer in self.layers:
            acc = self.stats[layer.index]
            for expert in range(acc.num_experts):
                row = {"layer": layer.index, "expert": expert, "tokens": acc.tokens}
                row.update({name: acc.totals[expert, i].item() for i, name in enumerate(STAT_COLUMNS)})
                rows.append(row)
        frame = pd.DataFrame(rows)
        frame["routed_count"] = frame["routed_count"].round().astype("int64")
        frame["tokens"] = frame["tokens"].astype("int64")
        frame["layer"] = frame["layer"].astype("int32")
        frame["expert"] = frame["expert"].astype("int32")
        return frame


@contextlib.contextmanager
def loaded_model(model_dir: str | Path, max_memory: str | None = None) -> Iterator[nn.Module]:
    """The model in its checkpoint dtype on CPU.

    With `max_memory` (e.g. "8GiB") the layers that do not fit stay on disk and accelerate loads
    each one for its forward: a model larger than memory is observed in the memory of a few
    layers, with the same statistics (the same computation, only the weights' location changes).
    """
    from transformers import AutoModelForCausalLM

    from expertlab.moe.checkpoint import check_safetensors_files

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"not a model directory (no config.json): {model_dir}")
    check_safetensors_files(model_dir)
    if max_memory is None:
        yield AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto")
        return
    with tempfile.TemporaryDirectory(prefix="expertlab-offload-") as offload:
        yield AutoModelForCausalLM.from_pretrained(
            model_dir, dtype="auto", device_map="auto", max_memory={"cpu": size_in_bytes(max_memory)}, offload_folder=offload
        )


_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def size_in_bytes(text: str) -> int:
    """"8GiB" -> 8589934592 (decimal and binary units)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)", text.strip())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"not a memory size: {text!r} (e.g. 8GiB, 500MB)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def observe_batches(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
) -> pd.DataFrame:
    """Run (input_ids, attention_mask) batches once through the model; one row per (layer, expert)."""
    observer = ExpertObserver(model)
    model.eval()
    with observer.installed(), torch.inference_mode():
        for input_ids, attention_mask in batches:
            observer.token_mask = attention_mask.reshape(-1).bool()
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    observer.token_mask = None
    return observer.frame()


def length_order(texts: Sequence[str]) -> list[int]:
    """The texts' indices shortest first (stable): the order of tokenized_batches' rows."""
    return sorted(range(len(texts)), key=lambda i: len(texts[i]))


def tokenized_batches(
    tokenizer,  # noqa: ANN001
    texts: Sequence[str],
    batch_size: int,
    max_length: int,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Calibration texts as (input_ids, attention_mask) batches of similar lengths (sorted, so little padding)."""
    if not texts:
        raise ValueError("calibration set is empty")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    order = length_order(texts)
    batches = []
    for start in range(0, len(order), batch_size):
        chunk = [texts[i] for i in order[start : start + batch_size]]
        encoded = tokenizer(chunk, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
        batches.append((encoded["input_ids"], encoded["attention_mask"]))
    return batches


def observe(
    model: nn.Module,
    tokenizer,  # noqa: ANN001
    texts: Sequence[str],
    batch_size: int,
    max_length: int,
    progress: bool = True,
) -> pd.DataFrame:
    """Tokenise the calibration texts (length-sorted batches) and observe them in one pass."""
    from tqdm.auto import tqdm

    batches = tokenized_batches(tokenizer, texts, batch_size, max_length)
    return observe_batches(model, tqdm(batches, desc="observe", unit="batch", disable=not progress))


def observe_checkpoint(
    model_dir: str | Path, data: str | Path, out: str | Path, run: dict[str, object], settings: Observe
) -> ObservationMeta:
    """One calibration pass of a model directory over a calibration set (texts, or chats its chat template renders)
    -> OUT/expert_stats.parquet and
    OUT/meta.json (the run's model, calibration and seed, the model's routing, what was observed)."""
    from transformers import AutoTokenizer

    from expertlab.data.calibration import read_set, render
    from expertlab.io import OutputDir, write_json
    from expertlab.records import EXPERT_STATS, ObservationMeta

    output = OutputDir(out, "observe", inputs=[model_dir, data])
    output.check()
    records = read_set(data)
    with loaded_model(model_dir, settings.max_memory) as model:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        texts = [render(record, tokenizer, model.config.model_type) for record in records]
        routing = adapter_for(model).routing(model.config)
        frame = observe(model, tokenizer, texts, batch_size=settings.batch_size, max_length=settings.max_length)
    meta = ObservationMeta(
        **run,
        model_type=model.config.model_type,
        num_experts=routing.num_experts,
        top_k=routing.top_k,
        n_group=routing.n_group,
        moe_layers=sorted(int(i) for i in frame["layer"].unique()),
        samples=len(texts),
        tokens=int(frame["tokens"].iloc[0]),
        batch_size=settings.batch_size,
        max_length=settings.max_length,
    )
    with output.writing() as tmp:
        EXPERT_STATS.write(tmp / "expert_stats.parquet", frame)
        write_json(tmp / "meta.json", meta.dump())
    return meta
