"""The judge client speaking OpenAI, Anthropic and Gemini to a scripted loopback server: faults in, accounted verdicts
and exact request bodies out."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import httpx2
import pytest

from expertlab.judges.cache import VerdictCache
from expertlab.judges.client import ChatClient, RetryPolicy
from expertlab.judges.outcomes import JudgeRequest
from expertlab.judges.providers import PROVIDERS, Endpoint
from expertlab.judges.registry import BACKENDS
from tests.openai_server import Answer, Blocked, Fail, Hang, OpenAIServer
from tests.test_judge_client import DEFAULT_CONCURRENCY, KEY_ENV, SECRET, default_retry, request, validate

# What each provider answers a request whose key is wrong (Google: 400 API_KEY_INVALID) or absent.
WRONG_KEY_STATUS = {"openai": 401, "anthropic": 401, "gemini": 400}
NO_KEY_STATUS = {"openai": 401, "anthropic": 401, "gemini": 403}
# A provider's "too busy" status: Anthropic's overloaded_error is the non-standard 529.
OVERLOADED_STATUS = {"openai": 503, "anthropic": 529, "gemini": 503}
CREDENTIAL_HEADER = {"openai": "authorization", "anthropic": "x-api-key", "gemini": "x-goog-api-key"}

CONVERSATION = [
    {"role": "system", "content": "Be strict."},
    {"role": "user", "content": "Here is the source."},
    {"role": "assistant", "content": "Understood."},
    {"role": "system", "content": "Answer in JSON."},
    {"role": "user", "content": "shape"},
]


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)


def make_client(
    server: OpenAIServer,
    provider: str,
    sleeps: list[float] | None = None,
    *,
    api_key_env: str | None = KEY_ENV,
    max_tokens: int | None = None,
    extra_body: dict[str, Any] | None = None,
) -> ChatClient:
    endpoint = Endpoint(
        server.base_url_for(provider), "judge-model", api_key_env, max_tokens, extra_body or {}, provider=provider
    )
    retry = RetryPolicy(max_attempts=4, max_invalid=3, timeout_s=0.4, backoff_s=0.5)
    return ChatClient(
        endpoint,
        retry=retry,
        concurrency=4,
        sleep=sleeps.append if sleeps is not None else lambda _: None,
        rng=random.Random(0),
    )


every_provider = pytest.mark.parametrize("provider", PROVIDERS)


def test_every_provider_has_a_default_url_and_key_and_a_misspelt_one_fails_early() -> None:
    assert PROVIDERS.names() == ["openai", "anthropic", "gemini"]
    assert set(BACKENDS) - set(PROVIDERS) == {"grounding"}  # every provider is a judge backend
    assert all(api.base_url.startswith("https://") for _, api in PROVIDERS.items())
    assert all(api.key_env.endswith("_API_KEY") for _, api in PROVIDERS.items())
    assert len({api.key_env for _, api in PROVIDERS.items()}) == len(PROVIDERS)
    assert Endpoint("http://localhost:8000/v1", "m", None, 16, {}).provider == "openai"  # positional order kept
    with pytest.raises(
        ValueError, match=r"'antropic' \(did you mean 'anthropic'\?\); allowed: openai, anthropic, gemini"
    ):
        Endpoint(PROVIDERS["anthropic"].base_url, "claude", provider="antropic")


@every_provider
def test_every_item_ends_accounted_through_every_fault(provider: str, serve: Any, sleeps: list[float]) -> None:
    script = {
        "rate-limited": [Fail(429, retry_after="7"), Answer()],
        "overloaded": [Fail(OVERLOADED_STATUS[provider]), Fail(500), Answer()],
        "timeout": [Hang(3.0), Answer()],
        "bad-json-once": [Answer("The summary is faithful."), Answer()],
        "blocked-once": [Blocked(), Answer()],
        "wrong-shape": [Answer('{"label": 1}'), Answer('["faithful"]'), Answer('{"verdict": "maybe"}')],
        "always-blocked": [Blocked()] * 3,
        "rejected": [Fail(400)],
        "always-overloaded": [Fail(OVERLOADED_STATUS[provider])] * 10,
    }
    items = list(script) + [f"plain-{index}" for index in range(4)]
    server = serve(script)
    with make_client(server, provider, sleeps) as client:
        outcomes = client.judge_all([request(item) for item in items], validate)

    by_key = {outcome.key: outcome for outcome in outcomes}
    expected = {item: "ok" for item in items} | {
        "wrong-shape": "invalid",
        "always-blocked": "invalid",
        "rejected": "failed",
        "always-overloaded": "failed",
    }
    assert {key: outcome.status for key, outcome in by_key.items()} == expected
    assert by_key["wrong-shape"].raw == '{"verdict": "maybe"}'
    assert (by_key["rejected"].http_status, by_key["rejected"].attempts) == (400, 1)
    assert (by_key["always-overloaded"].http_status, by_key["always-overloaded"].attempts) == (
        OVERLOADED_STATUS[provider],
        4,
    )
    assert [by_key[item].attempts for item in ("timeout", "overloaded", "blocked-once")] == [2, 3, 2]
    assert 7.0 in sleeps  # Retry-After honoured over a 0.5 s backoff

    # A refusal is billed and unreadable: invalid, with the provider's own body as the raw text.
    blocked = by_key["always-blocked"]
    assert blocked.billed_calls == 3
    if provider == "openai":
        assert blocked.raw is None and blocked.error == "invalid answer: the answer has no text content"
    elif provider == "anthropic":
        assert json.loads(blocked.raw or "")["stop_reason"] == "refusal"
    else:
        assert json.loads(blocked.raw or "")["promptFeedback"] == {"blockReason": "SAFETY"}

    for item in items:
        seen = server.requests_for(item)
        assert by_key[item].attempts == len(seen) and by_key[item].billed_calls == server.completions(item)
        assert by_key[item].prompt_tokens == 10 * by_key[item].billed_calls
    assert all(received.provider == provider and received.authorized for received in server.received)

    # Every 200 costs 10 prompt tokens; each one that answered costs 5 completion tokens, a refusal none.
    refusals = sum(isinstance(received.action, Blocked) for received in server.received)
    assert client.counters.requests == len(server.received)
    assert client.counters.billed == sum(received.status == 200 for received in server.received)
    assert client.counters.prompt_tokens == 10 * client.counters.billed == sum(o.prompt_tokens for o in outcomes)
    assert client.counters.completion_tokens == 5 * (client.counters.billed - refusals)
    assert client.counters.completion_tokens == sum(outcome.completion_tokens for outcome in outcomes)


EXPECTED_BODIES: dict[str, dict[str, Any]] = {
    "openai": {"model": "judge-model", "messages": CONVERSATION, "temperature": 0},
    "anthropic": {
        "model": "judge-model",
        "max_tokens": 1024,
        "temperature": 0,
        "system": "Be strict.\n\nAnswer in JSON.",
        "messages": [
            {"role": "user", "content": "Here is the source."},
            {"role": "assistant", "content": "Understood."},
            {"role": "user", "content": "shape"},
        ],
    },
    "gemini": {
        "contents": [
            {"role": "user", "parts": [{"text": "Here is the source."}]},
            {"role": "model", "parts": [{"text": "Understood."}]},
            {"role": "user", "parts": [{"text": "shape"}]},
        ],
        "systemInstruction": {"parts": [{"text": "Be strict.\n\nAnswer in JSON."}]},
        "generationConfig": {"temperature": 0},
    },
}
# Each with max_tokens=64 and an extra_body: the endpoint's max_tokens wins, extras are merged in.
EXTRA_BODIES: dict[str, dict[str, Any]] = {
    "openai": {"seed": 7, "max_tokens": 9},
    "anthropic": {"top_k": 1, "max_tokens": 9},
    "gemini": {"generationConfig": {"responseMimeType": "application/json"}, "safetySettings": []},
}
EXPECTED_CONFIGURED_BODIES: dict[str, dict[str, Any]] = {
    "openai": EXPECTED_BODIES["openai"] | {"seed": 7, "max_tokens": 64},
    "anthropic": EXPECTED_BODIES["anthropic"] | {"top_k": 1, "max_tokens": 64},
    "gemini": EXPECTED_BODIES["gemini"]
    | {
        "generationConfig": {"temperature": 0, "responseMimeType": "application/json", "maxOutputTokens": 64},
        "safetySettings": [],
    },
}


@every_provider
def test_request_bodies_and_headers_have_the_documented_shape(provider: str, serve: Any) -> None:
    server = serve()
    with make_client(server, provider) as client:
        assert client.judge(JudgeRequest("shape", CONVERSATION), validate).status == "ok"
        assert client.judge(JudgeRequest("bare", [{"role": "user", "content": "bare"}]), validate).status == "ok"
    with make_client(server, provider, max_tokens=64, extra_body=EXTRA_BODIES[provider]) as client:
        assert client.judge(JudgeRequest("shape", CONVERSATION), validate).status == "ok"
    shape, bare, configured = server.received

    assert shape.body == EXPECTED_BODIES[provider]
    assert configured.body == EXPECTED_CONFIGURED_BODIES[provider]
    assert "system" not in bare.body and "systemInstruction" not in bare.body
    expected_path = {
        "openai": "/v1/chat/completions",
        "anthropic": "/v1/messages",
        "gemini": "/v1beta/models/judge-model:generateContent",
    }[provider]
    assert {received.path for received in server.received} == {expected_path}  # no ?key= on the URL
    for received in server.received:
        holding_key = {name for name, value in received.headers.items() if SECRET in value}
        assert holding_key == {CREDENTIAL_HEADER[provider]}
        assert received.headers.get("anthropic-version") == ("2023-06-01" if provider == "anthropic" else None)


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
def test_a_role_the_protocol_cannot_say_is_refused_before_any_request(provider: str, serve: Any) -> None:
    server = serve()
    with make_client(server, provider) as client, pytest.raises(ValueError, match="role 'tool'"):
        client.judge(
            JudgeRequest("tool", [{"role": "tool", "content": "{}"}, {"role": "user", "content": "x"}]), validate
        )
    assert server.received == []


@every_provider
def test_a_second_run_with_the_cache_makes_zero_requests(provider: str, serve: Any, tmp_path: Path) -> None:
    items = ["a", "b", "c", "unparseable", "refused"]
    server = serve({"unparseable": [Answer("no")] * 3, "refused": [Blocked()] * 3})
    cache_path = tmp_path / "verdicts.jsonl"
    with VerdictCache(cache_path) as cache, make_client(server, provider) as client:
        first = client.judge_all([request(item) for item in items], validate, cache=cache)
    calls = len(server.received)
    assert [outcome.status for outcome in first] == ["ok", "ok", "ok", "invalid", "invalid"]
    assert calls == 3 + 3 + 3

    with VerdictCache(cache_path) as cache, make_client(server, provider) as client:
        second = client.judge_all([request(item) for item in items], validate, cache=cache)
        assert client.counters.requests == 0 and client.counters.billed == 0
    assert len(server.received) == calls
    assert [(o.status, o.value, o.raw) for o in second] == [(o.status, o.value, o.raw) for o in first]


@every_provider
def test_a_wrong_or_missing_key_fails_once_and_is_never_retried(
    provider: str, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve()
    wrong = "sk-wrong-0123456789abcdef"
    monkeypatch.setenv(KEY_ENV, wrong)
    with make_client(server, provider) as client:
        [rejected] = client.judge_all([request("wrong-key")], validate)
    assert (rejected.status, rejected.http_status, rejected.attempts, rejected.billed_calls) == (
        "failed",
        WRONG_KEY_STATUS[provider],
        1,
        0,
    )
    assert wrong not in (rejected.error or "") and wrong not in repr(rejected)

    with make_client(server, provider, api_key_env=None) as client:
        [anonymous] = client.judge_all([request("no-key")], validate)
    assert (anonymous.status, anonymous.http_status, anonymous.attempts) == ("failed", NO_KEY_STATUS[provider], 1)
    assert len(server.received) == 2 and not any(received.authorized for received in server.received)


@every_provider
def test_the_key_never_leaks_even_when_the_server_echoes_it(provider: str, serve: Any, tmp_path: Path) -> None:
    echo = '{"error": {"message": "you sent {key}"}}'
    server = serve(
        {
            "echo-rejection": [Fail(403, body=echo)],
            "echo-overloaded": [Fail(OVERLOADED_STATUS[provider], body=echo)] * 4,
            "echo-unreadable": [Fail(200, body="not JSON, but you sent {key}")] * 3,
            "echo-answer": [Answer(f"my key is {SECRET}")] * 3,
        }
    )
    cache_path = tmp_path / "verdicts.jsonl"
    with VerdictCache(cache_path) as cache, make_client(server, provider) as client:
        assert SECRET not in repr(client) and "judge-model" in repr(client) and server.origin in repr(client)
        requests = [request(item) for item in ("echo-rejection", "echo-overloaded", "echo-unreadable", "echo-answer")]
        outcomes = client.judge_all(requests, validate, cache=cache)
    # A body that is not JSON is no answer: it fails, and only the echoed answer reaches the cache.
    assert [outcome.status for outcome in outcomes] == ["failed", "failed", "failed", "invalid"]
    assert all("[redacted]" in (outcome.error or "") for outcome in outcomes[:3])
    assert "[redacted]" in (outcomes[3].raw or "")
    assert all(SECRET not in repr(outcome) for outcome in outcomes)
    assert cache_path.read_bytes().count(b"[redacted]") == 1 and SECRET.encode() not in cache_path.read_bytes()


def test_thinking_is_skipped_in_the_text_and_counted_in_the_tokens() -> None:
    """Anthropic thinking blocks and Gemini thought parts are not the answer, but they are billed output."""
    bodies = {
        "anthropic": {
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": '{"verdict": '},
                {"type": "text", "text": '"faithful"}'},
            ],
            "usage": {"input_tokens": 12, "output_tokens": 30},
        },
        "gemini": {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [{"text": "hmm", "thought": True}, {"text": '{"verdict": "faithful"}'}],
                    }
                }
            ],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 7, "thoughtsTokenCount": 23},
        },
    }
    for provider, body in bodies.items():
        transport = httpx2.MockTransport(lambda _request, body=body: httpx2.Response(200, json=body))
        endpoint = Endpoint(PROVIDERS[provider].base_url, "judge-model", None, provider=provider)
        client = ChatClient(endpoint, retry=default_retry(), concurrency=DEFAULT_CONCURRENCY, transport=transport)
        with client:
            outcome = client.judge(request("thinking"), validate)
        assert (outcome.status, outcome.value, outcome.raw) == ("ok", "faithful", '{"verdict": "faithful"}')
        assert (outcome.prompt_tokens, outcome.completion_tokens) == (12, 30)
