"""FinetuneConfig: how one fine-tuning run optimises (mode, AdamW, schedule, batches, balance loss, checkpoints, LoRA).

Defaults are the tool-use recipe of the second study (paper 001, Appendix A.6) where it gives one;
every other default is named with its source. Nothing here imports torch.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# A.6 trains the selective strategies (AF, EDMRS) for 3 epochs and the full-parameter model for 1
DEFAULT_EPOCHS = {"full": 1}
SELECTIVE_EPOCHS = 3


class LoraSettings(BaseModel):
    """The low-rank adapters of modes `lora` and `lora_experts` (A.6 gives none: peft's defaults)."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(default=8, gt=0)  # rank per adapted matrix (per expert for lora_experts); peft's default
    alpha: float = Field(default=8.0, gt=0)  # scaling alpha / r; peft's default lora_alpha
    dropout: float = Field(default=0.0, ge=0, lt=1)  # on the adapter's input; peft's default; lora_experts needs 0
    # mode lora only: module-name suffixes adapted; peft's default for Qwen2/Qwen3 and Mixtral (the attention
    # query and value projections; peft has no entry for the MoE model types)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"], min_length=1)


class FinetuneConfig(BaseModel):
    """One supervised fine-tuning run: what trains, and how."""

    model_config = ConfigDict(extra="forbid")

    mode: str = "experts"  # a registered mode: full, experts, lora, lora_experts (expertlab.finetune.modes)
    lr: float = Field(default=1e-5, gt=0)  # peak learning rate; A.6 (tool use)
    weight_decay: float = Field(default=0.0, ge=0)  # AdamW's decoupled decay; A.6 gives none, so torch's 0
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's; A.6 gives none, torch's default
    eps: float = Field(default=1e-8, gt=0)  # AdamW's; torch's default
    schedule: Literal["constant", "linear", "cosine"] = "cosine"  # decay after warm-up; A.6: cosine annealing
    warmup_ratio: float = Field(default=0.05, ge=0, le=1)  # warm-up steps = ceil(ratio x total steps); A.6
    min_lr: float = Field(default=1e-6, ge=0)  # where linear and cosine decay end; A.6
    epochs: int | None = Field(default=None, ge=1)  # None: A.6's 1 for mode full, 3 otherwise
    batch_size: int = Field(default=128, gt=0)  # examples per optimizer step; A.6
    micro_batch_size: int = Field(default=8, gt=0)  # examples per forward pass (gradient accumulation); divides batch_size
    max_length: int = Field(default=4096, gt=1)  # tokens per example, truncated on the right; the study's decoding length
    balance_loss_coef: float = Field(default=5e-2, ge=0)  # weight of the model's router load-balancing loss; A.6
    max_grad_norm: float | None = Field(default=1.0, gt=0)  # global gradient-norm clip (None: none); HF Trainer default
    seed: int = 0  # example order, LoRA initialisation and dropout
    checkpoint_every: int = Field(default=50, gt=0)  # optimizer steps between resumable checkpoints (and after the last)
    # extra arguments of tokenizer.apply_chat_template, e.g. {"enable_thinking": false} for Qwen3's template
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict)
    lora: LoraSettings = Field(default_factory=LoraSettings)  # modes lora and lora_experts

    @field_validator("mode")
    @classmethod
    def _registered(cls, value: str) -> str:
        from expertlab.finetune.modes import MODES

        if value not in MODES:
            raise ValueError(MODES.unknown_message(value))
        return value

    @field_validator("betas")
    @classmethod
    def _betas(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= beta < 1 for beta in value):
            raise ValueError(f"betas {value} must lie in [0, 1)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FinetuneConfig:
        if self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"micro_batch_size {self.micro_batch_size} does not divide batch_size {self.batch_size}: "
                "an optimizer step must be a whole number of micro-batches"
            )
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr {self.min_lr} exceeds lr {self.lr}")
        if self.mode == "lora_experts" and self.lora.dropout:
            raise ValueError(
                f"lora.dropout {self.lora.dropout}: LoRA on fused expert tensors (peft's ParamWrapper) cannot apply "
                "dropout; set it to 0"
            )
        if self.epochs is None:
            self.epochs = DEFAULT_EPOCHS.get(self.mode, SELECTIVE_EPOCHS)
        return self

    def identity(self) -> dict[str, Any]:
        """The fields that decide the trained weights (all but how often checkpoints are written)."""
        return self.model_dump(mode="json", exclude={"checkpoint_every"})
