"""A scripted generation backend for scoring tests: known outputs in, hand-computable scores out."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from expertlab.generate import Prompt, cut_at_stop


class Call(NamedTuple):
    prompts: list[Prompt]
    max_new_tokens: int
    stop: tuple[str, ...]
    max_model_len: int


class ScriptedBackend:
    """A Backend answering each prompt with `answer(prompt)`, cut at the task's stop strings as the real
    backends cut; every call is recorded in `calls`."""

    name = "scripted"

    def __init__(self, answer: Callable[[Prompt], str], model_type: str = "scripted") -> None:
        self.answer = answer
        self.model_type = model_type
        self.calls: list[Call] = []

    def generate(
        self, prompts: Sequence[Prompt], max_new_tokens: int, max_model_len: int, stop: Sequence[str] = ()
    ) -> list[str]:
        self.calls.append(Call(list(prompts), max_new_tokens, tuple(stop), max_model_len))
        return [cut_at_stop(self.answer(prompt), stop) for prompt in prompts]

    def lm_eval_model(self, max_model_len: int) -> Any:
        raise AssertionError("the generate runner must not call lm-eval")

    def close(self) -> None:
        pass


def in_order(outputs: Iterable[str], model_type: str = "scripted") -> ScriptedBackend:
    """Answers the prompts with `outputs`, one after the other."""
    remaining = iter(list(outputs))
    return ScriptedBackend(lambda prompt: next(remaining), model_type)


def by_prompt(answers: Mapping[Any, str], model_type: str = "scripted") -> ScriptedBackend:
    """Answers each prompt with answers[prompt]."""
    return ScriptedBackend(lambda prompt: answers[prompt], model_type)
