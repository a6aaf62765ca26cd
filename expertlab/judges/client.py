"""(key, chat messages) requests -> validated JSON verdicts from an OpenAI-compatible, Anthropic or Gemini endpoint."""

from __future__ import annotations

import asyncio
import difflib
import email.utils
import json
import os
import random
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, NamedTuple, Self, TypeVar

import httpx2

from expertlab.errors import ExpertlabError
from expertlab.judges.cache import Claim, VerdictCache

T = TypeVar("T")
Status = Literal["ok", "invalid", "failed"]
Validate = Callable[[Any], T]
Messages = Sequence[Mapping[str, str]]
Provider = Literal["openai", "anthropic", "gemini"]

# Where each provider's API lives and where its key is conventionally kept.
DEFAULT_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
}
DEFAULT_KEY_ENVS: dict[str, str] = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
}
ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_DEFAULT_MAX_TOKENS = 1024  # the Messages API refuses a request without max_tokens

_FENCE = re.compile(r"^```(?:json|JSON)?\s*\n?(.*?)\n?```$", re.DOTALL)


class MissingApiKey(ExpertlabError):
    """The environment variable that should hold the judge's API key is unset or empty."""


@dataclass(frozen=True)
class Endpoint:
    """Where and what to ask, in which provider's protocol.

    `base_url` is the API root as in DEFAULT_BASE_URLS (an OpenAI-compatible one ends in /v1);
    `api_key_env` names the variable holding the key (None: no auth, e.g. local vLLM); `extra_body`
    is merged into the request body last (for gemini, its `generationConfig` into ours).
    """

    base_url: str
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"
    max_tokens: int | None = None
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    provider: Provider = "openai"

    def __post_init__(self) -> None:
        if self.provider not in _PROVIDER_APIS:
            close = difflib.get_close_matches(str(self.provider), _PROVIDER_APIS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"unknown judge provider {self.provider!r}{hint}; expected one of {', '.join(_PROVIDER_APIS)}"
            )


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: transient failures and invalid answers have separate bounds."""

    max_attempts: int = 6  # requests per item that hit a timeout, connection error, 429 or 5xx
    max_invalid: int = 3  # answers per item that are not JSON of the expected shape, or not JSON at all
    timeout_s: float = 60.0  # per request as a whole: connect, send, headers and the answer's last byte
    backoff_s: float = 1.0  # first delay; doubles on each transient failure
    backoff_max_s: float = 60.0
    jitter: float = 0.25  # each delay is scaled by a uniform factor in [1 - jitter, 1]
    retry_after_max_s: float = 300.0  # a server asking for longer is capped, not obeyed blindly

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_invalid < 1:
            raise ValueError("max_attempts and max_invalid must be at least 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")


class JudgeRequest(NamedTuple):
    key: str
    messages: Messages


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """How one request ended. `value` is set only when status is 'ok'; `raw` is the last answer text."""

    key: str
    status: Status
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


class _Transient(Exception):
    """A failure worth retrying after a delay (timeout, connection error, 429, 5xx)."""

    def __init__(self, message: str, http_status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.retry_after_s = retry_after_s


class _Rejected(Exception):
    """A 4xx other than 429: asking again would not help."""

    def __init__(self, message: str, http_status: int) -> None:
        super().__init__(message)
        self.http_status = http_status


class _Unreadable(Exception):
    """A 2xx whose body is not JSON (a gateway's HTML error page): no completion, so not billed, but
    asked again only as often as an invalid answer."""


class _Completion(NamedTuple):
    content: str | None
    prompt_tokens: int
    completion_tokens: int


# What reading a 2xx JSON body that is not the documented answer shape raises.
_UNREADABLE = (ValueError, KeyError, IndexError, TypeError, AttributeError)
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


class _ProviderApi(ABC):
    """How one provider's HTTP API spells a chat request and its answer; ChatClient does the rest."""

    @abstractmethod
    def url(self, endpoint: Endpoint) -> str: ...

    @abstractmethod
    def headers(self, api_key: str | None) -> dict[str, str]: ...

    @abstractmethod
    def body(self, endpoint: Endpoint, messages: Messages) -> dict[str, Any]: ...

    @abstractmethod
    def text(self, payload: Any) -> str | None:
        """The answer text of a 2xx body; raises one of _UNREADABLE when the body holds none."""

    @abstractmethod
    def usage(self, payload: Any) -> tuple[int, int]:
        """(prompt tokens, completion tokens) billed for a 2xx body."""


class _OpenAIChat(_ProviderApi):
    """POST {base}/chat/completions with a bearer token (OpenAI and every compatible server)."""

    def url(self, endpoint: Endpoint) -> str:
        return endpoint.base_url.rstrip("/") + "/chat/completions"

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

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


class _AnthropicMessages(_ProviderApi):
    """POST {base}/v1/messages with x-api-key (Anthropic Messages API); system prompts go in `system`."""

    def url(self, endpoint: Endpoint) -> str:
        return endpoint.base_url.rstrip("/") + "/v1/messages"

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"anthropic-version": ANTHROPIC_VERSION} | ({"x-api-key": api_key} if api_key else {})

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


class _GeminiGenerateContent(_ProviderApi):
    """POST {base}/v1beta/models/{model}:generateContent with x-goog-api-key (never a ?key= in the URL, which
    would leak into logs); system prompts go in `systemInstruction`, the assistant is role "model"."""

    def url(self, endpoint: Endpoint) -> str:
        model = endpoint.model.removeprefix("models/")
        return endpoint.base_url.rstrip("/") + f"/v1beta/models/{model}:generateContent"

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"x-goog-api-key": api_key} if api_key else {}

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


_PROVIDER_APIS: dict[str, _ProviderApi] = {
    "openai": _OpenAIChat(),
    "anthropic": _AnthropicMessages(),
    "gemini": _GeminiGenerateContent(),
}
PROVIDERS: tuple[str, ...] = tuple(_PROVIDER_APIS)


def parse_json_answer(text: str) -> Any:
    """The JSON object in an answer, tolerating surrounding whitespace and a ```json fence; ValueError otherwise."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    return json.loads(fenced.group(1) if fenced else stripped)


def read_api_key(variable: str) -> str:
    """The key held by environment variable `variable`; the error names the variable, never a value."""
    value = os.environ.get(variable, "")
    if not value.strip():
        raise MissingApiKey(f"the API key is read from the environment variable {variable}, which is not set")
    return value.strip()


def _retry_after_seconds(header: str | None, now: float) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not header:
        return None
    header = header.strip()
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


class ChatClient:
    """A chat client for paid judges (OpenAI-compatible, Anthropic or Gemini, as `endpoint.provider` says):
    temperature 0, bounded concurrency, retries, no coercion.

    Thread-safe; `judge_all` runs up to `concurrency` requests at once and hands each outcome to
    `on_result` (on the calling thread) as soon as it is known. `sleep`, `clock` and `rng` are
    injectable so tests can observe backoff without waiting for it.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        retry: RetryPolicy | None = None,
        concurrency: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        transport: httpx2.BaseTransport | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.endpoint = endpoint
        self.retry = retry or RetryPolicy()
        self.concurrency = concurrency
        self.counters = CallCounters()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._api = _PROVIDER_APIS[endpoint.provider]
        self._api_key = read_api_key(endpoint.api_key_env) if endpoint.api_key_env else None
        # Requests run on a private event loop, where one deadline can cancel a whole exchange (a socket
        # timeout bounds only each read, which a server trickling its answer never trips).
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="judge-http", daemon=True)
        self._loop_thread.start()
        self._http = httpx2.AsyncClient(
            headers=self._api.headers(self._api_key),
            timeout=httpx2.Timeout(self.retry.timeout_s),
            limits=httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            transport=transport,
        )
        self._url = self._api.url(endpoint)

    def __repr__(self) -> str:
        return f"ChatClient(provider={self.endpoint.provider!r}, model={self.endpoint.model!r}, url={self._url!r})"

    def close(self) -> None:
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._http.aclose(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join()
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _redact(self, text: str) -> str:
        """Servers sometimes echo the key, whichever header carried it; it must not reach logs or the cache."""
        return text.replace(self._api_key, "[redacted]") if self._api_key else text

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self.counters, name, getattr(self.counters, name) + delta)

    def _backoff_s(self, transient_failures: int) -> float:
        delay = min(self.retry.backoff_max_s, self.retry.backoff_s * 2 ** (transient_failures - 1))
        with self._lock:
            factor = self._rng.uniform(1 - self.retry.jitter, 1)
        return delay * factor

    def _timed_out(self, detail: str) -> _Transient:
        return _Transient(f"timed out after {self.retry.timeout_s:g} s ({detail})")

    def _post(self, body: dict[str, Any]) -> httpx2.Response:
        """One POST with its whole answer read, cancelled when `timeout_s` has passed, whatever phase it is in."""
        exchange = asyncio.wait_for(self._http.post(self._url, json=body), self.retry.timeout_s)
        future = asyncio.run_coroutine_threadsafe(exchange, self._loop)
        try:
            return future.result()
        except TimeoutError:
            raise self._timed_out("the whole request") from None
        except BaseException:
            future.cancel()  # the caller is going away (an interrupt): stop the exchange too
            raise

    def _complete(self, messages: Messages) -> _Completion:
        """One request, bounded as a whole by `timeout_s`; raises _Transient, _Rejected or _Unreadable,
        returns the answer text of a 2xx."""
        body = self._api.body(self.endpoint, messages)
        self._count(requests=1)
        try:
            response = self._post(body)
            data = response.content
        except httpx2.TimeoutException as err:
            raise self._timed_out(type(err).__name__) from None
        except httpx2.TransportError as err:
            raise _Transient(f"connection failed ({type(err).__name__}: {self._redact(str(err))})") from None
        self._count(http_answers=1)
        status = response.status_code
        text = self._redact(data.decode(response.encoding or "utf-8", errors="replace"))
        shown = text[:300]  # cut after redacting: a key cut in two would no longer be found
        if status == 429 or status >= 500:
            retry_after = _retry_after_seconds(response.headers.get("retry-after"), self._clock())
            raise _Transient(f"HTTP {status}: {shown}", status, retry_after)
        if not 200 <= status < 300:
            raise _Rejected(f"HTTP {status}: {shown}", status)
        try:
            payload = json.loads(data)
        except ValueError:
            self._count(unreadable=1)
            raise _Unreadable(f"unreadable answer: HTTP {status}, a body that is not JSON: {shown}") from None
        self._count(billed=1)
        try:
            prompt_tokens, completion_tokens = self._api.usage(payload)
        except _UNREADABLE:
            prompt_tokens, completion_tokens = 0, 0
        self._count(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        try:
            content = self._api.text(payload)
        except _UNREADABLE:
            # Billed but without answer text (a blocked prompt, another shape): handled like an invalid
            # answer, with the body as the raw text.
            return _Completion(text, prompt_tokens, completion_tokens)
        return _Completion(None if content is None else self._redact(content), prompt_tokens, completion_tokens)

    def judge(self, request: JudgeRequest, validate: Validate[T]) -> Outcome[T]:
        """Ask until the answer validates, the invalid bound is reached, a 4xx rejects, or retries run out."""
        return self._judge(request, validate, threading.Event())

    def _judge(self, request: JudgeRequest, validate: Validate[T], abort: threading.Event) -> Outcome[T]:
        attempts = billed = transient = invalid = unreadable = prompt_tokens = completion_tokens = 0
        raw: str | None = None
        error: str | None = None
        http_status: int | None = None

        def outcome(status: Status, value: T | None = None) -> Outcome[T]:
            return Outcome(
                request.key,
                status,
                value,
                raw,
                attempts,
                billed,
                error,
                http_status,
                prompt_tokens,
                completion_tokens,
                unreadable=unreadable,
            )

        while True:
            if abort.is_set():
                error = f"abandoned after {attempts} attempts: the run was stopped ({error or 'no answer yet'})"
                return outcome("failed")
            attempts += 1
            try:
                completion = self._complete(request.messages)
            except _Rejected as err:
                error, http_status = str(err), err.http_status
                return outcome("failed")
            except _Unreadable as err:
                unreadable += 1
                error, http_status = str(err), 200
                if invalid + unreadable >= self.retry.max_invalid:
                    # Only an answer makes a verdict, if an invalid one: none came, so none is cached.
                    return outcome("invalid" if invalid else "failed")
                self._count(retries=1)
                self._sleep(self._backoff_s(unreadable))  # a gateway in trouble, like a 5xx
                continue
            except _Transient as err:
                transient += 1
                error, http_status = str(err), err.http_status
                if transient >= self.retry.max_attempts:
                    return outcome("failed")
                delay = self._backoff_s(transient)
                if err.retry_after_s is not None:
                    delay = max(delay, min(err.retry_after_s, self.retry.retry_after_max_s))
                self._count(retries=1)
                self._sleep(delay)
                continue
            billed += 1
            http_status = 200
            prompt_tokens += completion.prompt_tokens
            completion_tokens += completion.completion_tokens
            raw = completion.content
            try:
                if raw is None:
                    raise ValueError("the answer has no text content")
                value = validate(parse_json_answer(raw))
            except ValueError as err:
                invalid += 1
                error = f"invalid answer: {self._redact(str(err))}"
                if invalid + unreadable >= self.retry.max_invalid:
                    return outcome("invalid")
                self._count(retries=1)
                continue
            error = None
            return outcome("ok", value)

    def _judge_claimed(
        self,
        request: JudgeRequest,
        validate: Validate[T],
        abort: threading.Event,
        cache: VerdictCache | None,
        claim: Claim | None = None,
    ) -> Outcome[T] | None:
        """Judge under the prompt's claim, unless the cache, re-read under it, holds the verdict; a new
        verdict is appended before the claim is let go. None: a live process holds the claim."""
        if cache is None:
            return self._judge(request, validate, abort)
        claim = claim if claim is not None else cache.claim(request.key, wait=False)
        if claim is None:
            return None
        with claim:
            cache.refresh()  # the holder we may have waited for appended its verdict before letting go
            record = cache.get(request.key)
            if record is not None:
                return outcome_from_record(request.key, record, validate)
            result = self._judge(request, validate, abort)
            if result.status != "failed":
                cache.put(request.key, result.to_record())
            return result

    def judge_all(
        self,
        requests: Iterable[JudgeRequest],
        validate: Validate[T],
        *,
        cache: VerdictCache | None = None,
        on_result: Callable[[Outcome[T]], None] | None = None,
    ) -> list[Outcome[T]]:
        """Outcomes for every request, in request order; cached verdicts cost nothing, new ones are
        appended to `cache` as they arrive, before `on_result` sees them.

        Processes sharing `cache` never pay twice for a prompt while they live: a prompt is asked
        only by the holder of its claim (`VerdictCache.claim`), only after the cache, re-read under
        that claim, is found without its verdict, and its verdict is appended and fsynced before the
        claim is let go. A prompt another live process holds waits, asleep in flock on a thread of
        its own while the other prompts go on, then takes that process's verdict from the cache, or
        is asked here if the holder got no verdict or died. A holder killed after its request was
        answered but before the append loses that answer: the next claimer asks again, so each
        such death costs at most its in-flight prompts (`concurrency` of them) once more.
        """
        requests = list(requests)
        keys = [request.key for request in requests]
        if len(set(keys)) != len(keys):
            duplicates = sorted({key for key in keys if keys.count(key) > 1})
            raise ValueError(f"duplicate request keys would be paid for twice: {duplicates[:5]}")
        outcomes: dict[str, Outcome[T]] = {}

        def finish(result: Outcome[T]) -> None:
            outcomes[result.key] = result
            if on_result is not None:
                on_result(result)

        pending: list[JudgeRequest] = []
        if cache is not None:
            cache.refresh()
        for request in requests:
            # `in` first: a prompt not found here is looked up, and counted, once more under its claim
            record = cache.get(request.key) if cache is not None and request.key in cache else None
            if record is None:
                pending.append(request)
            else:
                finish(outcome_from_record(request.key, record, validate))

        abort = threading.Event()
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="judge") as pool:
            asking: dict[Future[Outcome[T] | None], tuple[JudgeRequest, Claim | None]] = {}
            waiting: dict[Future[Claim], JudgeRequest] = {}

            def ask(request: JudgeRequest, claim: Claim | None = None) -> None:
                asking[pool.submit(self._judge_claimed, request, validate, abort, cache, claim)] = (request, claim)

            for request in pending:
                ask(request)
            try:
                while asking or waiting:
                    done, _ = wait([*asking, *waiting], return_when=FIRST_COMPLETED)
                    for future in done:
                        if future in waiting:
                            ask(waiting.pop(future), future.result())
                            continue
                        request, _ = asking.pop(future)
                        result = future.result()
                        if result is None:
                            assert cache is not None
                            waiting[_claim_when_free(cache, request.key, abort)] = request
                        else:
                            finish(result)
            except BaseException:
                # Stop paying for work nobody will record; requests already sent finish on their own,
                # and claims not yet at work are let go.
                abort.set()
                for future, (_, claim) in asking.items():
                    if future.cancel() and claim is not None:
                        claim.release()
                for waiter in waiting:
                    waiter.add_done_callback(_release_claim)
                raise
        return [outcomes[key] for key in keys]


def _claim_when_free(cache: VerdictCache, key: str, abort: threading.Event) -> Future[Claim]:
    """`key`'s claim once its live holder lets go; a daemon thread sleeps in flock meanwhile, holding
    no worker, and lets go at once if the run was stopped."""
    future: Future[Claim] = Future()

    def wait_for_holder() -> None:
        try:
            claim = cache.claim(key)
        except BaseException as err:
            future.set_exception(err)
            return
        if abort.is_set():
            claim.release()
        future.set_result(claim)

    threading.Thread(target=wait_for_holder, name="judge-claim-wait", daemon=True).start()
    return future


def _release_claim(future: Future[Claim]) -> None:
    if future.exception() is None:
        future.result().release()


def outcome_from_record(key: str, record: Mapping[str, Any], validate: Validate[T]) -> Outcome[T]:
    """An outcome rebuilt from a cached verdict: the raw answer is validated again, nothing is re-asked."""
    raw = record.get("raw")
    status: Status = record["status"]
    value: T | None = None
    error = record.get("error")
    if status == "ok":
        try:
            value = validate(parse_json_answer(raw or ""))
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
