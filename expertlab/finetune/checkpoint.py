"""A fine-tuning run's resumable state <-> `work_dir/checkpoint-<step>.pt`, refused when it belongs to another setup.

A checkpoint holds only what training changes: the trainable tensors (of a masked tensor only its
training rows; for LoRA only the adapters), AdamW's state (moments of the training rows only: the
frozen rows' moments are zero by construction and are rebuilt as zeros), the step (which fixes the
data position and the learning rate), the per-step log and the RNG states; plus the setup's
identity (config, selection, tokenized examples, source model) and its fingerprint. Each file is written to
a temporary and renamed, so a killed run leaves either the whole file or none; the two newest are
kept, and one that fails to load is skipped with a message, never half-taken.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expertlab.errors import ExpertlabError
from expertlab.io import atomic_path, remove_stale_temporaries

if TYPE_CHECKING:
    import torch
    from torch import nn

    from expertlab.finetune.config import FinetuneConfig
    from expertlab.finetune.data import Encoded
    from expertlab.finetune.modes import Trainable, TrainableTensor

FORMAT = 1
KEEP = 2  # newest checkpoints kept: one that turns out unreadable falls back to the one before
PATTERN = re.compile(r"checkpoint-(\d{8})\.pt")
TEMPORARY = re.compile(r"\.(checkpoint-\d{8}\.pt)\.[a-z0-9_]{8}\.tmp")
KEYS = ("format", "fingerprint", "identity", "step", "epoch", "position", "trainable", "optimizer", "rng", "log")


class CheckpointMismatch(ExpertlabError):
    """`work_dir` holds a checkpoint of another setup: resuming from it would mix two runs."""


def checkpoint_path(work_dir: str | Path, step: int) -> Path:
    return Path(work_dir) / f"checkpoint-{step:08d}.pt"


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def model_probe(model: nn.Module) -> str:
    """Architecture (every parameter's name, shape and dtype) and a sample of the source weights (the first
    8 values of each), hashed: cheap, and different for another model or another state of it."""
    import torch

    sha = hashlib.sha256(model.config.model_type.encode())
    with torch.no_grad():
        for name, param in model.named_parameters():
            sha.update(f"{name}:{tuple(param.shape)}:{param.dtype}".encode())
            sha.update(param.detach().reshape(-1)[:8].double().cpu().numpy().tobytes())
    return sha.hexdigest()


def tokens_digest(encoded: Sequence[Encoded]) -> str:
    """The training data as the model sees it (examples, tokenizer, chat template, truncation), hashed."""
    from array import array

    sha = hashlib.sha256()
    for example in encoded:
        sha.update(array("q", [len(example.input_ids), *example.input_ids, *example.labels]).tobytes())
    return sha.hexdigest()


def setup_identity(
    config: FinetuneConfig, selection: Mapping[int, Sequence[int]], encoded: Sequence[Encoded], model: nn.Module
) -> dict[str, Any]:
    """What a checkpoint must share with this run to be resumed from (checkpoint_every may differ)."""
    return {
        "config": config.identity(),
        "selection": {str(layer): list(experts) for layer, experts in selection.items()},
        "examples": tokens_digest(encoded),
        "model": model_probe(model),
    }


def _difference(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """Which parts of two identities differ, in words."""
    said = []
    for part in current:
        if saved.get(part) == current[part]:
            continue
        if part == "config" and isinstance(saved.get(part), Mapping):
            keys = sorted(k for k in set(saved[part]) | set(current[part]) if saved[part].get(k) != current[part].get(k))
            said.append("config " + ", ".join(f"{k} {saved[part].get(k)!r} -> {current[part].get(k)!r}" for k in keys))
        elif part == "selection":
            said.append(f"selection {saved.get(part)} -> {current[part]}")
        else:
            other = "set of examples or tokenization" if part == "examples" else "source model or state of it"
            said.append(f"{part} (another {other})")
    return "; ".join(said) or "format"


def _ordered(optimizer: torch.optim.Optimizer, trainable: Trainable) -> list[TrainableTensor]:
    """The trainable tensors in the optimizer's own order (the keys of its state dict)."""
    by_id = {id(tensor.param): tensor for tensor in trainable.tensors}
    return [by_id[id(param)] for group in optimizer.param_groups for param in group["params"]]


def capture(trainable: Trainable, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The trainable tensors and the optimizer state, masked tensors reduced to their training rows."""
    state = optimizer.state_dict()
    tensors = _ordered(optimizer, trainable)
    packed: dict[int, dict[str, Any]] = {}
    for position, values in state["state"].items():
        rows = tensors[position].rows
        shape = tensors[position].param.shape
        packed[position] = {
            key: rows.rows(value) if rows is not None and hasattr(value, "shape") and value.shape == shape else value
            for key, value in values.items()
        }
    # saved at once, before the next step changes them: no copy of whole tensors (on a GPU, one on the host)
    weights = {
        tensor.name: (tensor.rows.rows(tensor.param.detach()) if tensor.rows is not None else tensor.param.detach()).cpu()
        for tensor in trainable.tensors
    }
    return {"trainable": weights, "optimizer": {"state": packed, "param_groups": state["param_groups"]}}


def restore(trainable: Trainable, optimizer: torch.optim.Optimizer, saved: Mapping[str, Any]) -> None:
    """Put `capture`'s result back: training rows and whole tensors, and the optimizer state with zero frozen rows."""
    import torch

    weights = saved["trainable"]
    names = {tensor.name for tensor in trainable.tensors}
    if set(weights) != names:
        raise ValueError(f"its trainable tensors differ from this run's ({sorted(set(weights) ^ names)[:3]} ...)")
    with torch.no_grad():
        for tensor in trainable.tensors:
            if tensor.rows is not None:
                tensor.rows.put_rows_(tensor.param, weights[tensor.name])
            else:
                tensor.param.copy_(weights[tensor.name])
    tensors = _ordered(optimizer, trainable)
    state = {}
    for position, values in saved["optimizer"]["state"].items():
        tensor = tensors[position]
        unpacked = {}
        for key, value in values.items():
            if tensor.rows is not None and hasattr(value, "shape") and value.dim() == tensor.param.dim() and key != "step":
                full = torch.zeros(tensor.param.shape, dtype=value.dtype, device=tensor.param.device)
                tensor.rows.put_rows_(full, value)
                value = full
            unpacked[key] = value
        state[position] = unpacked
    optimizer.load_state_dict({"state": state, "param_groups": saved["optimizer"]["param_groups"]})


def rng_state() -> dict[str, Any]:
    import torch

    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: Mapping[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(work_dir: str | Path, state: Mapping[str, Any]) -> Path:
    """Write `state` as checkpoint-<step>.pt (temporary, then rename); keep the KEEP newest."""
    import torch

    path = checkpoint_path(work_dir, state["step"])
    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)
    for old in checkpoints(work_dir)[KEEP:]:
        old.unlink(missing_ok=True)
    return path


def checkpoints(work_dir: str | Path) -> list[Path]:
    """The checkpoint files of `work_dir`, newest first."""
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        return []
    found = [path for path in work_dir.iterdir() if PATTERN.fullmatch(path.name)]
    return sorted(found, key=lambda path: path.name, reverse=True)


def load_latest(work_dir: str | Path, identity: Mapping[str, Any], total_steps: int) -> dict[str, Any] | None:
    """The newest checkpoint of this setup that loads whole; None when there is none.

    Unreadable or incomplete files are skipped with a message on stderr (an older one is tried);
    a readable checkpoint of another setup raises CheckpointMismatch.
    """
    import torch

    work_dir = Path(work_dir)
    if work_dir.is_dir():
        for stale in work_dir.iterdir():  # temporaries of killed writers
            match = TEMPORARY.fullmatch(stale.name)
            if match:
                remove_stale_temporaries(work_dir / match.group(1))
    fingerprint = digest(identity)
    for path in checkpoints(work_dir):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or any(key not in state for key in KEYS):
                raise ValueError("keys are missing")
            if state["format"] != FORMAT:
                raise ValueError(f"format {state['format']}, not {FORMAT}")
        except Exception as err:  # noqa: BLE001  (any failure to read it means it is not taken)
            print(f"finetune: ignoring checkpoint {path}: unreadable ({type(err).__name__}: {err})", file=sys.stderr)
            continue
        if state["fingerprint"] != fingerprint:
            raise CheckpointMismatch(
                f"{path} belongs to another fine-tuning setup ({_difference(state['identity'], identity)}); "
                f"delete {work_dir} or give another work_dir"
            )
        if not 0 < state["step"] <= total_steps or int(PATTERN.fullmatch(path.name).group(1)) != state["step"]:
            print(f"finetune: ignoring checkpoint {path}: step {state['step']} does not fit the run", file=sys.stderr)
            continue
        return state
    return None
