"""(key, chat messages) requests -> validated JSON verdicts from a judge endpoint: bounded concurrency, retries, shared-cache claims."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Self, TypeVar

import httpx2

from expertlab.judges.cache import Claim, VerdictCache
from expertlab.judges.connection import Connection, Rejected, Transient, Unreadable
from expertlab.judges.outcomes import (
    CallCounters,
    JudgeRequest,
    Outcome,
    PromptStatus,
    Validate,
    outcome_from_record,
)
from expertlab.judges.providers import Endpoint

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: transient failures and invalid answers have separate bounds; params `judge` gives the
    first three."""

    max_attempts: int  # requests per item that hit a timeout, connection error, 429 or 5xx
    max_invalid: int  # answers per item that are not JSON of the expected shape, or not JSON at all
    timeout_s: float  # per request as a whole: connect, send, headers and the answer's last byte
    backoff_s: float = 1.0  # first delay; doubles on each transient failure
    backoff_max_s: float = 60.0
    jitter: float = 0.25  # each delay is scaled by a uniform factor in [1 - jitter, 1]
    retry_after_max_s: float = 300.0  # a server asking for longer is capped, not obeyed blindly

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_invalid < 1:
            raise ValueError("max_attempts and max_invalid must be at least 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")


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
        retry: RetryPolicy,
        concurrency: int,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        transport: httpx2.BaseTransport | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.endpoint = endpoint
        self.retry = retry
        self.concurrency = concurrency
        self.counters = CallCounters()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._connection = Connection(
            endpoint,
            timeout_s=retry.timeout_s,
            concurrency=concurrency,
            count=self._count,
            clock=clock,
            transport=transport,
        )

    def __repr__(self) -> str:
        url = self._connection.url
        return f"ChatClient(provider={self.endpoint.provider!r}, model={self.endpoint.model!r}, url={url!r})"

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self.counters, name, getattr(self.counters, name) + delta)

    def _backoff_s(self, transient_failures: int) -> float:
        delay = min(self.retry.backoff_max_s, self.retry.backoff_s * 2 ** (transient_failures - 1))
        with self._lock:
            factor = self._rng.uniform(1 - self.retry.jitter, 1)
        return delay * factor

    def judge(self, request: JudgeRequest, validate: Validate[T]) -> Outcome[T]:
        """Ask until the answer validates, the invalid bound is reached, a 4xx rejects, or retries run out."""
        return self._judge(request, validate, threading.Event())

    def _judge(self, request: JudgeRequest, validate: Validate[T], abort: threading.Event) -> Outcome[T]:
        attempts = billed = transient = invalid = unreadable = prompt_tokens = completion_tokens = 0
        raw: str | None = None
        error: str | None = None
        http_status: int | None = None

        def outcome(status: PromptStatus, value: T | None = None) -> Outcome[T]:
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
                completion = self._connection.complete(request.messages)
            except Rejected as err:
                error, http_status = str(err), err.http_status
                return outcome("failed")
            except Unreadable as err:
                unreadable += 1
                error, http_status = str(err), 200
                if invalid + unreadable >= self.retry.max_invalid:
                    # Only an answer makes a verdict, if an invalid one: none came, so none is cached.
                    return outcome("invalid" if invalid else "failed")
                self._count(retries=1)
                self._sleep(self._backoff_s(unreadable))  # a gateway in trouble, like a 5xx
                continue
            except Transient as err:
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
                value = validate(raw)
            except ValueError as err:
                invalid += 1
                error = f"invalid answer: {self._connection.redact(str(err))}"
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
