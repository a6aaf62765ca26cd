"""Generation backends behind one interface: task code asks for completions and never names an engine.

- `hf`: transformers on the machine's CPU or GPU (batched greedy decoding, the chat template);
- `vllm`: the vLLM engine on a GPU, loading the (pruned) checkpoint directory; imported only when chosen.

Both render every prompt with the model's chat template, thinking off (`enable_thinking=False`), and
GPT-OSS with low reasoning effort, then strip any reasoning the model still emits; both cut an
output at the first of the task's stop strings. Both honour the task's context as vLLM does
(`output_budgets`). Both hand lm-eval a model (`lm_eval_model`) so that lm-eval tasks run on the
same weights, within the task's context.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from expertlab.registry import Registry

# A prompt is one user turn, or a whole chat (few-shot examples as earlier turns).
Prompt = str | list[dict[str, str]]

# Chat-template arguments per model_type: decoding as the study did (DESIGN.md, "Decoding").
_TEMPLATE_KWARGS: dict[str, dict[str, Any]] = {"gpt_oss": {"reasoning_effort": "low"}}
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_GPT_OSS_FINAL = "<|channel|>final<|message|>"


class Backend(Protocol):
    name: str
    model_type: str

    def generate(
        self, prompts: Sequence[Prompt], max_new_tokens: int, max_model_len: int, stop: Sequence[str] = ()
    ) -> list[str]:
        """Greedy completions in prompt order: new text only, reasoning stripped, cut at the first stop string;
        each within the context `max_model_len` (`output_budgets`)."""
        ...

    def lm_eval_model(self, max_model_len: int) -> Any:
        """An lm-eval `LM` over the same weights with a context of `max_model_len`, for tasks run by lm-eval."""
        ...

    def close(self) -> None: ...


BACKENDS: Registry[type] = Registry("generation backend")


class PromptTooLong(ValueError):
    """A prompt that leaves no room for a single output token in its context: vLLM refuses it, and so do we."""

    def __init__(self, index: int, length: int, max_model_len: int) -> None:
        self.index, self.length, self.max_model_len = index, length, max_model_len
        super().__init__(
            f"prompt {index}: {length} tokens (chat template included) leave no room for output "
            f"in a context of max_model_len {max_model_len}"
        )


def output_budgets(prompt_lengths: Sequence[int], max_new_tokens: int, max_model_len: int) -> list[int]:
    """Each prompt's output budget as vLLM grants it in a context of `max_model_len` tokens: max_new_tokens,
    cut to the room the prompt leaves (vLLM stops a request once prompt + output reach max_model_len); a prompt
    of max_model_len tokens or more raises PromptTooLong (vLLM refuses it: "The decoder prompt ... is longer
    than the maximum model length"), naming the first such prompt."""
    if max_new_tokens < 1 or max_model_len < 1:
        raise ValueError(f"max_new_tokens and max_model_len must be positive, got {max_new_tokens}, {max_model_len}")
    for index, length in enumerate(prompt_lengths):
        if length >= max_model_len:
            raise PromptTooLong(index, length, max_model_len)
    return [min(max_new_tokens, max_model_len - length) for length in prompt_lengths]


def messages(prompt: Prompt) -> list[dict[str, str]]:
    """A prompt as chat messages; a string is one user turn."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if not prompt or not all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in prompt):
        raise ValueError(f"a chat prompt must be a non-empty list of {{role, content}} messages, got {prompt!r}")
    return prompt


def template_kwargs(model_type: str) -> dict[str, Any]:
    """Keyword arguments of apply_chat_template for a model type: thinking off, the study's reasoning effort."""
    return {"enable_thinking": False, **_TEMPLATE_KWARGS.get(model_type, {})}


def lm_eval_chat_options(model_type: str) -> dict[str, Any]:
    """lm-eval model arguments that decode as the study did: thinking off; GPT-OSS at low reasoning effort,
    its answer taken after the last "<|message|>" (the study's lm-eval settings)."""
    if model_type == "gpt_oss":
        return {"enable_thinking": True, "think_end_token": "<|message|>", "chat_template_args": {"reasoning_effort": "low"}}
    return {"enable_thinking": False}


def strip_reasoning(text: str) -> str:
    """The answer without reasoning: GPT-OSS's final channel, Qwen-style <think> blocks removed."""
    if _GPT_OSS_FINAL in text:
        text = text.rsplit(_GPT_OSS_FINAL, 1)[1]
    elif "<|channel|>analysis" in text:  # reasoning that never reached a final answer
        return ""
    text = _THINK.sub("", text)
    if "</think>" in text:  # an opening tag in the template, only the closing one in the output
        text = text.rsplit("</think>", 1)[1]
    return text


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to the earliest occurrence of any stop string, stripped."""
    end = len(text)
    for marker in stop:
        if marker:
            found = text.find(marker)
            if found != -1:
                end = min(end, found)
    return text[:end].strip()


def backends() -> Registry[type]:
    """The generation backends; their modules register themselves and import their engines only when used."""
    from expertlab.generate import hf, vllm  # noqa: F401

    return BACKENDS


def open_backend(name: str, model_dir: str | Path, **options: Any) -> Backend:
    """The named backend on a model directory (`hf` or `vllm`); options go to its constructor."""
    return backends()[name](Path(model_dir), **options)
