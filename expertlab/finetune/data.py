"""Chat demonstrations {"prompt", "response"} + tokenizer -> token ids with labels on the response only; batches.

The prompt is one user turn through the tokenizer's chat template; the labelled part is what the
template renders after the generation prompt: the response and its end-of-turn token (the
tokenizer's eos), where the example ends (a template's trailing newline after it is dropped).
Prompt tokens and padding carry label -100.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from expertlab.errors import ExpertlabError

if TYPE_CHECKING:
    import torch

IGNORE = -100  # the label of a token without loss


class BadExamples(ExpertlabError, ValueError):
    """Training examples that cannot be used: none, a missing or empty field, no response left after truncation."""


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE where no loss is taken

    def loss_tokens(self) -> int:
        """Tokens whose prediction is scored (a label at position 0 has no preceding token to predict it)."""
        return sum(label != IGNORE for label in self.labels[1:])


def check_examples(examples: Sequence[Mapping[str, Any]]) -> None:
    """Every example a mapping with non-empty string `prompt` and `response`; at least one example."""
    if not examples:
        raise BadExamples("no training examples")
    problems = []
    for number, example in enumerate(examples):
        if not isinstance(example, Mapping):
            problems.append(f"example {number} is a {type(example).__name__}, not a mapping")
            continue
        for key in ("prompt", "response"):
            value = example.get(key)
            if not isinstance(value, str) or not value.strip():
                problems.append(f"example {number}: {key!r} is {'missing' if value is None else repr(value)[:40]}")
        if len(problems) >= 5:
            break
    if problems:
        raise BadExamples("bad training examples: " + "; ".join(problems))


def chat_ids(
    tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool, template_kwargs: Mapping[str, Any]
) -> list[int]:
    """The token ids of `messages` rendered by the tokenizer's chat template."""
    return list(
        tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, add_generation_prompt=generation_prompt, **template_kwargs
        )["input_ids"]
    )


def encode_example(
    tokenizer: Any, prompt: str, response: str, max_length: int, template_kwargs: Mapping[str, Any] | None = None
) -> Encoded:
    """One demonstration as ids and labels: IGNORE on the prompt turn, the ids on the response and its end of turn."""
    kwargs = dict(template_kwargs or {})
    user = [{"role": "user", "content": prompt}]
    prompt_ids = chat_ids(tokenizer, user, True, kwargs)
    full_ids = chat_ids(tokenizer, [*user, {"role": "assistant", "content": response}], False, kwargs)
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise BadExamples(
            "the chat template renders the prompt differently with the response after it; the response tokens "
            f"cannot be told apart (prompt {prompt[:40]!r})"
        )
    completion = full_ids[len(prompt_ids) :]
    eos = tokenizer.eos_token_id
    if eos is not None and eos in completion:
        completion = completion[: completion.index(eos) + 1]  # through the end of turn
    ids = (prompt_ids + completion)[:max_length]
    labels = ([IGNORE] * len(prompt_ids) + completion)[:max_length]
    return Encoded(ids, labels)


def encode_examples(
    tokenizer: Any, examples: Sequence[Mapping[str, Any]], max_length: int, template_kwargs: Mapping[str, Any]
) -> list[Encoded]:
    """Every example encoded; an error names those whose response is cut away entirely by `max_length`."""
    check_examples(examples)
    encoded = [encode_example(tokenizer, e["prompt"], e["response"], max_length, template_kwargs) for e in examples]
    empty = [number for number, example in enumerate(encoded) if not example.loss_tokens()]
    if empty:
        shown = ", ".join(str(number) for number in empty[:10]) + (" ..." if len(empty) > 10 else "")
        raise BadExamples(
            f"{len(empty)} example(s) keep no response token within max_length {max_length} (examples {shown}); "
            "raise max_length or shorten their prompts"
        )
    return encoded


def epoch_order(count: int, seed: int, epoch: int) -> list[int]:
    """The example order of one epoch: a permutation drawn from (seed, epoch) alone, so a resumed run redraws it."""
    order = list(range(count))
    random.Random(f"finetune:{seed}:{epoch}").shuffle(order)
    return order


def collate(examples: Sequence[Encoded], pad_id: int, device: Any = None) -> dict[str, torch.Tensor]:
    """Right-padded input_ids, attention_mask and labels (IGNORE on padding)."""
    import torch

    width = max(len(example.input_ids) for example in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for row, example in enumerate(examples):
        length = len(example.input_ids)
        input_ids[row, :length] = torch.tensor(example.input_ids)
        attention_mask[row, :length] = 1
        labels[row, :length] = torch.tensor(example.labels)
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device), "labels": labels.to(device)}
