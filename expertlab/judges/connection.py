"""(endpoint, chat messages) -> one HTTP request bounded by one deadline -> the answer text and its billed tokens, or a classified failure."""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import httpx2

from expertlab.errors import ExpertlabError
from expertlab.judges.providers import PROVIDERS, UNREADABLE, Endpoint, Messages


class MissingApiKey(ExpertlabError):
    """The environment variable that should hold the judge's API key is unset or empty."""


class Transient(Exception):
    """A failure worth retrying after a delay (timeout, connection error, 429, 5xx)."""

    def __init__(self, message: str, http_status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.retry_after_s = retry_after_s


class Rejected(Exception):
    """A 4xx other than 429: asking again would not help."""

    def __init__(self, message: str, http_status: int) -> None:
        super().__init__(message)
        self.http_status = http_status


class Unreadable(Exception):
    """A 2xx whose body is not JSON (a gateway's HTML error page): no completion, so not billed, but
    asked again only as often as an invalid answer."""


class Completion(NamedTuple):
    content: str | None
    prompt_tokens: int
    completion_tokens: int


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


class Connection:
    """Up to `concurrency` connections to one endpoint, in its provider's protocol, with the key read from the
    environment; `count` is told what each request spent (requests, http_answers, unreadable, billed, tokens)."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout_s: float,
        concurrency: int,
        count: Callable[..., None],
        clock: Callable[[], float],
        transport: httpx2.BaseTransport | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self._count = count
        self._clock = clock
        self._api = PROVIDERS[endpoint.provider]()
        self._endpoint = endpoint
        self._api_key = read_api_key(endpoint.api_key_env) if endpoint.api_key_env else None
        # Requests run on a private event loop, where one deadline can cancel a whole exchange (a socket
        # timeout bounds only each read, which a server trickling its answer never trips).
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="judge-http", daemon=True)
        self._loop_thread.start()
        self._http = httpx2.AsyncClient(
            headers=self._api.headers(self._api_key),
            timeout=httpx2.Timeout(timeout_s),
            limits=httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            transport=transport,
        )
        self.url = self._api.url(endpoint)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._http.aclose(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join()
        self._loop.close()

    def redact(self, text: str) -> str:
        """Servers sometimes echo the key, whichever header carried it; it must not reach logs or the cache."""
        return text.replace(self._api_key, "[redacted]") if self._api_key else text

    def _timed_out(self, detail: str) -> Transient:
        return Transient(f"timed out after {self.timeout_s:g} s ({detail})")

    def _post(self, body: dict[str, Any]) -> httpx2.Response:
        """One POST with its whole answer read, cancelled when `timeout_s` has passed, whatever phase it is in."""
        exchange = asyncio.wait_for(self._http.post(self.url, json=body), self.timeout_s)
        future = asyncio.run_coroutine_threadsafe(exchange, self._loop)
        try:
            return future.result()
        except TimeoutError:
            raise self._timed_out("the whole request") from None
        except BaseException:
            future.cancel()  # the caller is going away (an interrupt): stop the exchange too
            raise

    def complete(self, messages: Messages) -> Completion:
        """One request, bounded as a whole by `timeout_s`; raises Transient, Rejected or Unreadable,
        returns the answer text of a 2xx."""
        body = self._api.body(self._endpoint, messages)
        self._count(requests=1)
        try:
            response = self._post(body)
            data = response.content
        except httpx2.TimeoutException as err:
            raise self._timed_out(type(err).__name__) from None
        except httpx2.TransportError as err:
            raise Transient(f"connection failed ({type(err).__name__}: {self.redact(str(err))})") from None
        self._count(http_answers=1)
        status = response.status_code
        text = self.redact(data.decode(response.encoding or "utf-8", errors="replace"))
        shown = text[:300]  # cut after redacting: a key cut in two would no longer be found
        if status == 429 or status >= 500:
            retry_after = _retry_after_seconds(response.headers.get("retry-after"), self._clock())
            raise Transient(f"HTTP {status}: {shown}", status, retry_after)
        if not 200 <= status < 300:
            raise Rejected(f"HTTP {status}: {shown}", status)
        try:
            payload = json.loads(data)
        except ValueError:
            self._count(unreadable=1)
            raise Unreadable(f"unreadable answer: HTTP {status}, a body that is not JSON: {shown}") from None
        self._count(billed=1)
        try:
            prompt_tokens, completion_tokens = self._api.usage(payload)
        except UNREADABLE:
            prompt_tokens, completion_tokens = 0, 0
        self._count(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        try:
            content = self._api.text(payload)
        except UNREADABLE:
            # Billed but without answer text (a blocked prompt, another shape): handled like an invalid
            # answer, with the body as the raw text.
            return Completion(text, prompt_tokens, completion_tokens)
        return Completion(None if content is None else self.redact(content), prompt_tokens, completion_tokens)
