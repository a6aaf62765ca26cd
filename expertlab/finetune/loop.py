"""Model + tokenizer + chat demonstrations + selection + FinetuneConfig -> the fine-tuned model and its per-step log.

Supervised fine-tuning (paper 001, sections 4-5, Appendix A.6). Each optimizer step takes
`batch_size` examples in a seeded per-epoch order, in micro-batches of `micro_batch_size`
(gradient accumulation). Its loss is the cross-entropy summed over the batch's response tokens
divided by their count (so accumulation gives the loss of the whole batch, whatever the
padding), plus `balance_loss_coef` times the model's own router load-balancing loss
(`output_router_logits=True`, padding excluded), averaged over the micro-batches by their size;
the model config's router_aux_loss_coef is not used. Every `checkpoint_every` steps and after
the last, the resumable state is written to `work_dir`; a run started again resumes from it and
ends with the same weights, bit for bit, as a run never stopped.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expertlab.errors import ExpertlabError
from expertlab.finetune.checkpoint import (
    FORMAT,
    capture,
    digest,
    load_latest,
    restore,
    rng_state,
    save_checkpoint,
    set_rng_state,
    setup_identity,
)
from expertlab.finetune.config import FinetuneConfig
from expertlab.finetune.data import Encoded, collate, encode_examples, epoch_order
from expertlab.finetune.modes import MODES, Trainable
from expertlab.finetune.optim import build_optimizer, learning_rate, optimizer_step, warmup_steps
from expertlab.finetune.selection import Selection, check_selection
from expertlab.io import write_json

if TYPE_CHECKING:
    from torch import nn

LOG_FILE = "finetune_log.json"


@dataclass
class FinetuneResult:
    """A finished run: the model (source architecture, LoRA merged, eval mode) and what the run did."""

    model: nn.Module
    log: list[dict[str, Any]]  # per optimizer step: step, epoch, lm_loss, balance_loss, loss, lr, grad_norm, tokens
    total_steps: int
    warmup_steps: int
    trainable_parameters: int  # scalars that trained (the selected rows only, or the adapters)
    resumed_from: int  # the step restored from a checkpoint; 0 for a fresh start
    config: dict[str, Any] = field(default_factory=dict)
    selection: dict[int, tuple[int, ...]] = field(default_factory=dict)
    seconds: float = 0.0  # wall time of this call (not written: the same inputs must give the same files)

    def summary(self) -> dict[str, Any]:
        """The run as JSON: config, selection, step counts and the per-step log."""
        return {
            "config": self.config,
            "selection": {str(layer): list(experts) for layer, experts in self.selection.items()},
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "trainable_parameters": self.trainable_parameters,
            "log": self.log,
        }

    def write_log(self, path: str | Path) -> None:
        write_json(path, self.summary())


def finetune(
    model: nn.Module,
    tokenizer: Any,
    examples: Sequence[Mapping[str, Any]],
    selection: Selection | None,
    config: FinetuneConfig | Mapping[str, Any],
    work_dir: str | Path,
    progress: bool = True,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> FinetuneResult:
    """Fine-tune `model` in place on `examples` ({"prompt", "response"}) as `config.mode` says, resuming from
    `work_dir`'s checkpoints of the same setup; `selection` (layer -> expert ids) for the modes that need one.

    `on_step(record)` is called after every optimizer step (and its checkpoint, if one is due). Seeds torch's
    global RNG with `config.seed`. The returned model is `model` itself (for LoRA modes, with the adapters merged).
    A run that raises leaves `model` mid-training (for LoRA, wrapped): resume with the source model loaded afresh.
    """
    import torch
    from tqdm.auto import tqdm

    config = config if isinstance(config, FinetuneConfig) else FinetuneConfig.model_validate(config)
    chosen = check_selection(model, selection, config.mode)
    encoded = encode_examples(tokenizer, examples, config.max_length, config.chat_template_kwargs)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise ExpertlabError("the tokenizer has neither a pad nor an eos token to pad batches with")
    identity = setup_identity(config, chosen, encoded, model)
    steps_per_epoch = math.ceil(len(encoded) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    started = time.perf_counter()

    torch.manual_seed(config.seed)
    trainable = MODES[config.mode].prepare(model, chosen, config)
    optimizer = build_optimizer(trainable, config)
    step, log = 0, []
    saved = load_latest(work_dir, identity, total_steps)
    if saved is not None:
        restore(trainable, optimizer, saved)
        set_rng_state(saved["rng"])
        step, log = saved["step"], list(saved["log"])
        if (saved["epoch"], saved["position"]) != divmod(step, steps_per_epoch):
            raise ExpertlabError(f"checkpoint of step {step} in {work_dir} records another data position")
    resumed_from = step

    device = next(trainable.module.parameters()).device
    trainable.module.train()
    bar = tqdm(
        total=total_steps, initial=step, desc=f"finetune {config.mode}", unit="step", file=sys.stderr, disable=not progress
    )
    orders: dict[int, list[int]] = {}
    try:
        while step < total_steps:
            epoch, position = divmod(step, steps_per_epoch)
            order = orders.setdefault(epoch, epoch_order(len(encoded), config.seed, epoch))
            batch = [encoded[i] for i in order[position * config.batch_size : (position + 1) * config.batch_size]]
            lr = learning_rate(step, total_steps, config)
            record = train_step(trainable, optimizer, batch, lr, pad_id, device, config)
            step += 1
            record = {"step": step, "epoch": epoch, **record}
            log.append(record)
            if step % config.checkpoint_every == 0 or step == total_steps:
                state = {
                    "format": FORMAT,
                    "fingerprint": digest(identity),
                    "identity": identity,
                    "step": step,
                    "epoch": step // steps_per_epoch,
                    "position": step % steps_per_epoch,  # the next batch of that epoch
                    "rng": rng_state(),
                    "log": log,
                    **capture(trainable, optimizer),
                }
                save_checkpoint(work_dir, state)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
            if on_step is not None:
                on_step(record)
    finally:
        bar.close()
    return FinetuneResult(
        model=trainable.finish(),
        log=log,
        total_steps=total_steps,
        warmup_steps=warmup_steps(total_steps, config.warmup_ratio),
        trainable_parameters=trainable.numel(),
        resumed_from=resumed_from,
        config=config.model_dump(mode="json"),
        selection=chosen,
        seconds=time.perf_counter() - started,
    )


def train_step(
    trainable: Trainable,
    optimizer: Any,
    batch: Sequence[Encoded],
    lr: float,
    pad_id: int,
    device: Any,
    config: FinetuneConfig,
) -> dict[str, Any]:
    """One optimizer step over `batch`, in micro-batches; returns lm_loss, balance_loss, loss, lr, grad_norm, tokens."""
    from torch.nn import functional

    tokens = sum(example.loss_tokens() for example in batch)
    lm_total, balance_total = 0.0, None
    for start in range(0, len(batch), config.micro_batch_size):
        micro = batch[start : start + config.micro_batch_size]
        inputs = collate(micro, pad_id, device)
        out = trainable.module(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            output_router_logits=True,
            use_cache=False,
        )
        logits = out.logits[:, :-1].float()
        targets = inputs["labels"][:, 1:]
        lm_sum = functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")
        loss = lm_sum / tokens
        if out.aux_loss is not None:
            share = len(micro) / len(batch)
            loss = loss + config.balance_loss_coef * share * out.aux_loss.to(loss.device)
            balance_total = (balance_total or 0.0) + share * float(out.aux_loss.detach())
        elif config.balance_loss_coef:
            model_type = getattr(trainable.module.config, "model_type", "")
            raise ExpertlabError(
                f"balance_loss_coef is {config.balance_loss_coef}, but this {model_type} model returns no router "
                "load-balancing loss (output_router_logits gives no aux_loss); set it to 0"
            )
        loss.backward()
        lm_total += float(lm_sum.detach())
    grad_norm = optimizer_step(optimizer, trainable, lr, config)
    lm_loss = lm_total / tokens
    return {
        "lm_loss": lm_loss,
        "balance_loss": balance_total,  # None when the model has no load-balancing loss
        "loss": lm_loss + config.balance_loss_coef * (balance_total or 0.0),
        "lr": lr,
        "grad_norm": grad_norm,
        "tokens": tokens,
    }


def save_finetuned(result: FinetuneResult, tokenizer: Any, directory: str | Path) -> None:
    """The fine-tuned model (save_pretrained), its tokenizer and LOG_FILE into `directory`.

    Not atomic by itself: a stage writes into `OutputDir.writing()`'s temporary directory.
    """
    directory = Path(directory)
    result.model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    result.write_log(directory / LOG_FILE)
