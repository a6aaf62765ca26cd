"""Each paid judge provider's HTTP API (OpenAI-compatible, Anthropic, Gemini): where it lives, its key, request body, answer text and usage."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from expertlab.registry import Registry

Messages = Sequence[Mapping[str, str]]

ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_DEFAULT_MAX_TOKENS = 1024  # the Messages API refuses a request without max_tokens

# What reading a 2xx JSON body that is not the documented answer shape raises.
UNREADABLE = (ValueError, KeyError, IndexError, TypeError, AttributeError)


class ProviderApi(ABC):
    """How one provider's HTTP API spells a chat request and its answer; the chat client does the rest."""

    base_url: str  # the public API root
    key_env: str  # the environment variable its key is conventionally kept in
    path: str  # the chat call below the endpoint's base_url; {model} stands for the model id
    model_prefix: str = ""  # dropped from the front of a model id before it goes into the path
    key_header: str  # the header carrying the key
    key_prefix: str = ""  # what precedes the key in that header
    fixed_headers: Mapping[str, str] = {}  # sent with every request

    def url(self, endpoint: Endpoint) -> str:
        return endpoint.base_url.rstrip("/") + self.path.format(model=endpoint.model.removeprefix(self.model_prefix))

    def headers(self, api_key: str | None) -> dict[str, str]:
        return dict(self.fixed_headers) | ({self.key_header: self.key_prefix + api_key} if api_key else {})

    @abstractmethod
    def body(self, endpoint: Endpoint, messages: Messages) -> dict[str, Any]: ...

    @abstractmethod
    def text(self, payload: Any) -> str | None:
        """The answer text of a 2xx body; raises one of UNREADABLE when the body holds none."""

    @abstractmethod
    def usage(self, payload: Any) -> tuple[int, int]:
        """(prompt tokens, completion tokens) billed for a 2xx body."""


# provider name -> its API; the client asks through an instance
PROVIDERS: Registry[type[ProviderApi]] = Registry("judge provider")


def _tokens(usage: Mapping[str, Any], *names: str) -> int:
    return sum(int(usage.get(name) or 0) for name in names)


def _system_and_turns(messages: Messages) -> tuple[str | None, list[Mapping[str, str]]]:
    """System messages joined by blank lines (None: none), and the user/assistant turns in order."""
    system = [message["content"] for message in messages if message["role"] == "system"]
    turns = [message for message in messages if message["role"] != "system"]
    for message in turns:
        if message["role"] not in ("user", "assistant"):
            raise ValueError(f"role {message['role']!r} has no equivalent here; use system, user or assistant")
    return ("\n\n".join(system) if system else None), turns


@PROVIDERS.register("openai")
class OpenAIChat(ProviderApi):
    """POST {base}/chat/completions with a bearer token (OpenAI and every compatible server)."""

    base_url = "https://api.openai.com/v1"
    key_env = "OPENAI_API_KEY"
    path = "/chat/completions"
    key_header, key_prefix = "Authorization", "Bearer "

    def body(self, endpoint: Endpoint, messages: Messages) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": endpoint.model,
            "messages": [dict(message) for message in messages],
            "temperature": 0,
            **endpoint.extra_body,
        }
        if endpoint.max_tokens is not None:
            body["max_tokens"] = endpoint.max_tokens
        return body

    def text(self, payload: Any) -> str | None:
        content = payload["choices"][0]["message"]["content"]
        return None if content is None else str(content)

    def usage(self, payload: Any) -> tuple[int, int]:
        usage = payload.get("usage") or {}
        return _tokens(usage, "prompt_tokens"), _tokens(usage, "completion_tokens")


@PROVIDERS.register("anthropic")
class AnthropicMessages(ProviderApi):
    """POST {base}/v1/messages with x-api-key (Anthropic Messages API); system prompts go in `system`."""

    base_url = "https://api.anthropic.com"
    key_env = "ANTHROPIC_API_KEY"
    path = "/v1/messages"
    key_header = "x-api-key"
    fixed_headers = {"anthropic-version": ANTHROPIC_VERSION}

    def body(self, endpoint: Endpoint, messages: Messages) -> dict[str, Any]:
        system, turns = _system_and_turns(messages)
        body: dict[str, Any] = {
            "model": endpoint.model,
            "max_tokens": ANTHROPIC_DEFAULT_MAX_TOKENS,
            "temperature": 0,
            **({"system": system} if system is not None else {}),
            "messages": [{"role": turn["role"], "content": turn["content"]} for turn in turns],
            **endpoint.extra_body,
        }
        if endpoint.max_tokens is not None:
            body["max_tokens"] = endpoint.max_tokens
        return body

    def text(self, payload: Any) -> str | None:
        texts = [block["text"] for block in payload["content"] if block.get("type") == "text"]
        if not texts:
            raise ValueError("the message has no text block")
        return "".join(texts)

    def usage(self, payload: Any) -> tuple[int, int]:
        usage = payload.get("usage") or {}
        return _tokens(usage, "input_tokens"), _tokens(usage, "output_tokens")


@PROVIDERS.register("gemini")
class GeminiGenerateContent(ProviderApi):
    """POST {base}/v1beta/models/{model}:generateContent with x-goog-api-key (never a ?key= in the URL, which
    would leak into logs); system prompts go in `systemInstruction`, the assistant is role "model"."""

    base_url = "https://generativelanguage.googleapis.com"
    key_env = "GEMINI_API_KEY"
    path = "/v1beta/models/{model}:generateContent"
    model_prefix = "models/"  # the API's own spelling of a model id; the path already says it
    key_header = "x-goog-api-key"

    def body(self, endpoint: Endpoint, messages: Messages) -> dict[str, Any]:
        system, turns = _system_and_turns(messages)
        extra = dict(endpoint.extra_body)
        generation_config = {"temperature": 0, **extra.pop("generationConfig", {})}
        if endpoint.max_tokens is not None:
            generation_config["maxOutputTokens"] = endpoint.max_tokens
        contents = [
            {"role": "model" if turn["role"] == "assistant" else "user", "parts": [{"text": turn["content"]}]}
            for turn in turns
        ]
        return {
            "contents": contents,
            **({"systemInstruction": {"parts": [{"text": system}]}} if system is not None else {}),
            "generationConfig": generation_config,
            **extra,
        }

    def text(self, payload: Any) -> str | None:
        # No candidates (a blocked prompt: promptFeedback.blockReason) or no content raises here.
        parts = payload["candidates"][0]["content"]["parts"]
        texts = [part["text"] for part in parts if "text" in part and not part.get("thought")]
        if not texts:
            raise ValueError("the candidate has no text part")
        return "".join(texts)

    def usage(self, payload: Any) -> tuple[int, int]:
        usage = payload.get("usageMetadata") or {}
        # Thinking tokens are billed as output, as OpenAI's and Anthropic's completion counts already include.
        return _tokens(usage, "promptTokenCount"), _tokens(usage, "candidatesTokenCount", "thoughtsTokenCount")


@dataclass(frozen=True)
class Endpoint:
    """Where and what to ask, in which provider's protocol.

    `base_url` is the API root as in its provider's `base_url` (an OpenAI-compatible one ends in /v1);
    `api_key_env` names the variable holding the key (None: no auth, e.g. local vLLM); `extra_body`
    is merged into the request body last (for gemini, its `generationConfig` into ours).
    """

    base_url: str
    model: str
    api_key_env: str | None = OpenAIChat.key_env
    max_tokens: int | None = None
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    provider: str = "openai"  # a name in PROVIDERS

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ValueError(PROVIDERS.unknown_message(self.provider))
