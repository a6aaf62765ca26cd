"""params finetune.data -> the fine-tuning demonstrations, [{"prompt", "response"}], in a stable order.

- toy: the toy world's fine-tuning split of the target domain (`data/toy/finetune/<domain>.jsonl`, written by
  `prepare`; its prompts occur in no evaluation item nor calibration pool);
- jsonl: any file of {"prompt", "response"} lines (e.g. a tool-use SFT set converted to chat turns);
- medmcqa: MedMCQA's official train.json (the paper's medicine set, A.6), each question prompted exactly as the
  MedMCQA evaluation prompts it (expertlab.tasks.multimedqa) and answered with its letter, so training and
  evaluation agree on the format (the paper does not give its SFT template).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from expertlab.errors import ExpertlabError
from expertlab.layout import TOY_FINETUNE

TOY_SPLIT = TOY_FINETUNE.name  # data/toy/<TOY_SPLIT>/<domain>.jsonl


def toy_split_file(toy_dir: str | Path, domain: str) -> Path:
    return Path(toy_dir) / TOY_SPLIT / f"{domain}.jsonl"


def load_examples(data: Any, domain: str, toy_dir: str | Path, data_dir: str | Path) -> list[dict[str, str]]:
    """The demonstrations `data` (params FinetuneData) names; a `samples` subsample at `data.seed`, in source order."""
    from expertlab.io import read_jsonl

    if data.source == "toy":
        path = toy_split_file(toy_dir, domain)
        if not path.is_file():
            raise ExpertlabError(f"finetune.data: the toy world has no fine-tuning split for domain {domain!r} ({path} is missing)")
        rows = read_jsonl(path)
    elif data.source == "jsonl":
        path = Path(data.path)
        if not path.is_file():
            raise ExpertlabError(f"finetune.data.path: no file at {path}")
        rows = read_jsonl(path)
    else:
        from expertlab.tasks.multimedqa import medmcqa_items

        path = Path(data.path) if data.path else Path(data_dir) / "medmcqa"
        if not (path / "train.json").is_file():
            raise ExpertlabError(f"finetune.data: MedMCQA's train.json is not at {path / 'train.json'}")
        rows = [{"prompt": item["prompt"], "response": item["target"]} for item in medmcqa_items(path / "train.json")]
    examples = []
    for number, row in enumerate(rows, start=1):
        if not (isinstance(row, dict) and isinstance(row.get("prompt"), str) and isinstance(row.get("response"), str)):
            raise ExpertlabError(f"{path}: example {number}: expected an object with string prompt and response")
        examples.append({"prompt": row["prompt"], "response": row["response"]})
    if not examples:
        raise ExpertlabError(f"{path}: no fine-tuning examples")
    if data.samples is not None and data.samples < len(examples):
        keep = set(random.Random(f"{data.seed}:finetune").sample(range(len(examples)), data.samples))
        examples = [example for index, example in enumerate(examples) if index in keep]
    return examples
