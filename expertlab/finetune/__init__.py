"""Selective fine-tuning of MoE models (paper 001, sections 4-5): full, selected experts, LoRA, LoRA on selected experts.

The entry point is `finetune(model, tokenizer, examples, selection, config, work_dir)`; `save_finetuned`
writes its result. Nothing here imports torch until a function runs.
"""

from __future__ import annotations

from expertlab.finetune.checkpoint import CheckpointMismatch
from expertlab.finetune.config import FinetuneConfig, LoraSettings
from expertlab.finetune.data import BadExamples, encode_example
from expertlab.finetune.loop import LOG_FILE, FinetuneResult, finetune, save_finetuned
from expertlab.finetune.modes import MODES
from expertlab.finetune.optim import learning_rate, warmup_steps
from expertlab.finetune.selection import BadSelection, Selection, check_selection

__all__ = [
    "LOG_FILE",
    "MODES",
    "BadExamples",
    "BadSelection",
    "CheckpointMismatch",
    "FinetuneConfig",
    "FinetuneResult",
    "LoraSettings",
    "Selection",
    "check_selection",
    "encode_example",
    "finetune",
    "learning_rate",
    "save_finetuned",
    "warmup_steps",
]
