"""What asking a judge a prompt gives: the request, how it ended (validated value, raw answer, cost), and its cache record."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from expertlab.judges.providers import Messages

T = TypeVar("T")
PromptStatus = Literal["ok", "invalid", "failed"]  # answered validly; answered, never validly; never answered
Validate = Callable[[str], T]  # an answer's text -> its value; ValueError when it is not a valid answer

_FENCE = re.compile(r"^```(?:json|JSON)?\s*\n?(.*?)\n?```$", re.DOTALL)


class JudgeRequest(NamedTuple):
    key: str
    messages: Messages


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """How one request ended. `value` is set only when status is 'ok'; `raw` is the last answer text."""

    key: str
    status: PromptStatus
    value: T | None
    raw: str | None
    attempts: int  # requests sent for this item in this run (0: answered from the cache)
    billed_calls: int  # requests that got a 2xx JSON completion, the ones a provider charges for
    error: str | None = None
    http_status: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    unreadable: int = 0  # 2xx answers whose body was not JSON (a gateway's error page): no completion, not billed

    def to_record(self) -> dict[str, Any]:
        """The cache record: the answer text and accounting, never the value object nor any header."""
        return {
            "status": self.status,
            "raw": self.raw,
            "error": self.error,
            "attempts": self.attempts,
            "billed_calls": self.billed_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


@dataclass
class CallCounters:
    """What a client spent: requests sent, answers received, completions billed, unreadable 2xx bodies, tokens."""

    requests: int = 0
    http_answers: int = 0
    billed: int = 0
    unreadable: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def parse_json_answer(text: str) -> Any:
    """The JSON object in an answer, tolerating surrounding whitespace and a ```json fence; ValueError otherwise."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    return json.loads(fenced.group(1) if fenced else stripped)


def outcome_from_record(key: str, record: Mapping[str, Any], validate: Validate[T]) -> Outcome[T]:
    """An outcome rebuilt from a cached verdict: the raw answer is validated again, nothing is re-asked."""
    raw = record.get("raw")
    status: PromptStatus = record["status"]
    value: T | None = None
    error = record.get("error")
    if status == "ok":
        try:
            value = validate(raw or "")
        except ValueError as err:
            status, error = "invalid", f"cached answer no longer validates: {err}"
    return Outcome(
        key,
        status,
        value,
        raw,
        attempts=0,
        billed_calls=0,
        error=error,
        prompt_tokens=0,
        completion_tokens=0,
        cached=True,
    )
