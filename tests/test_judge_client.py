"""Judge client and verdict cache against a scripted OpenAI server on loopback: faults in, accounted verdicts out."""

from __future__ import annotations

import collections
import dataclasses
import email.utils
import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from expertlab.judges.cache import VerdictCache, verdict_key
from expertlab.judges.client import ChatClient, RetryPolicy
from expertlab.judges.connection import MissingApiKey
from expertlab.judges.outcomes import JudgeRequest, Outcome, parse_json_answer
from expertlab.judges.providers import Endpoint
from expertlab.params import Judge, JudgeSpec
from tests.openai_server import Answer, Fail, Hang, OpenAIServer, Received, correct_answer

KEY_ENV = "EXPERTLAB_TEST_JUDGE_KEY"
SECRET = "sk-test-7f3a9c2e41d86b05"
REPO = Path(__file__).resolve().parents[1]
RETRY_FIELDS = {field.name for field in dataclasses.fields(RetryPolicy)}
DEFAULT_CONCURRENCY = JudgeSpec.model_fields["concurrency"].default


def default_retry(**overrides: Any) -> RetryPolicy:
    """The retry policy params `judge` gives by default, with `overrides`."""
    config = Judge()
    bounds = {"max_attempts": config.max_attempts, "max_invalid": config.max_invalid, "timeout_s": config.timeout_s}
    return RetryPolicy(**(bounds | overrides))


def validate(text: str) -> str:
    """An answer's text read as the client's validators read it: ValueError unless it is the expected JSON."""
    obj = parse_json_answer(text)
    if not isinstance(obj, dict) or obj.get("verdict") not in ("faithful", "hallucinated"):
        raise ValueError('expected {"verdict": "faithful" | "hallucinated"}')
    return obj["verdict"]


def request(item: str) -> JudgeRequest:
    return JudgeRequest(item, [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": item}])


def answered_validly(received: Received) -> bool:
    if received.status != 200:
        return False
    assert isinstance(received.action, Answer)
    content = correct_answer(received.item) if received.action.content is None else received.action.content
    try:
        validate(content)
    except ValueError:
        return False
    return True


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)


def make_client(server: OpenAIServer, sleeps: list[float] | None = None, **options: Any) -> ChatClient:
    policy = {"max_attempts": 4, "max_invalid": 3, "timeout_s": 0.4, "backoff_s": 0.5}
    policy.update({name: options.pop(name) for name in list(options) if name in RETRY_FIELDS})
    options.setdefault("concurrency", DEFAULT_CONCURRENCY)
    return ChatClient(
        Endpoint(server.base_url, "judge-model", api_key_env=KEY_ENV),
        retry=RetryPolicy(**policy),
        sleep=(sleeps.append if sleeps is not None else time.sleep),
        rng=random.Random(0),
        **options,
    )


def test_every_item_ends_accounted_through_every_fault(serve: Any, sleeps: list[float]) -> None:
    script = {
        "rate-limited": [Fail(429, retry_after="7"), Answer()],
        "server-error": [Fail(500), Fail(503), Answer()],
        "timeout": [Hang(3.0), Answer()],
        "slow": [Answer(delay_s=0.2)],
        "fenced": [Answer('```json\n{"verdict": "hallucinated"}\n```')],
        "bad-json-once": [Answer("The summary is faithful."), Answer()],
        "wrong-shape": [Answer('{"label": 1}'), Answer('["faithful"]'), Answer('{"verdict": "maybe"}')],
        "rejected": [Fail(400)],
        "always-503": [Fail(503)] * 10,
    }
    items = list(script) + [f"plain-{index}" for index in range(10)]
    server = serve(script)
    with make_client(server, sleeps, concurrency=4) as client:
        outcomes = client.judge_all([request(item) for item in items], validate)

    assert [outcome.key for outcome in outcomes] == items
    by_key = {outcome.key: outcome for outcome in outcomes}
    expected = {item: "ok" for item in items} | {"wrong-shape": "invalid", "rejected": "failed", "always-503": "failed"}
    assert {key: outcome.status for key, outcome in by_key.items()} == expected
    assert by_key["fenced"].value == "hallucinated" and by_key["plain-3"].value == "faithful"
    assert by_key["wrong-shape"].value is None and by_key["wrong-shape"].raw == '{"verdict": "maybe"}'
    assert (by_key["rejected"].http_status, by_key["rejected"].attempts) == (400, 1)
    assert (by_key["always-503"].http_status, by_key["always-503"].attempts) == (503, 4)
    assert by_key["timeout"].attempts == 2 and by_key["server-error"].attempts == 3
    assert 7.0 in sleeps  # Retry-After honoured over a 0.5 s backoff

    for item in items:
        seen = server.requests_for(item)
        assert by_key[item].attempts == len(seen)
        assert by_key[item].billed_calls == server.completions(item)
        if by_key[item].status == "ok":
            # Validly answered once, and never asked again after that answer.
            assert [answered_validly(request) for request in seen].count(True) == 1 and answered_validly(seen[-1])
    assert server.completions("wrong-shape") == 3
    for received in server.received:
        assert received.authorized and (received.body["model"], received.body["temperature"]) == ("judge-model", 0)
    assert client.counters.requests == len(server.received)
    assert client.counters.billed == sum(request.status == 200 for request in server.received)
    assert client.counters.completion_tokens == 5 * client.counters.billed


def test_backoff_grows_with_jitter_and_retry_after_is_honoured(serve: Any, sleeps: list[float]) -> None:
    now = 1_700_000_000.0
    server = serve(
        {
            "flaky": [Fail(500), Fail(502), Fail(503), Answer()],
            "dated": [Fail(429, retry_after=email.utils.formatdate(now + 30, usegmt=True)), Answer()],
            "greedy": [Fail(429, retry_after="100000"), Answer()],
        }
    )
    client = make_client(server, sleeps, max_attempts=5, backoff_s=1.0, jitter=0.25, clock=lambda: now)
    with client:
        assert client.judge(request("flaky"), validate).status == "ok"
        for index, delay in enumerate(sleeps):
            assert 0.75 * 2**index <= delay <= 2**index
        del sleeps[:]
        client.judge(request("dated"), validate)
        client.judge(request("greedy"), validate)
    assert sleeps[0] == pytest.approx(30, abs=1) and sleeps[1] == client.retry.retry_after_max_s


def test_invalid_answers_are_retried_then_recorded_never_coerced(serve: Any) -> None:
    server = serve({"garbage": [Answer("Faithful!"), Answer('{"verdict": "Faithful"}')]})
    with make_client(server, max_invalid=2) as client:
        [outcome] = client.judge_all([request("garbage")], validate)
    assert (outcome.status, outcome.value, outcome.raw) == ("invalid", None, '{"verdict": "Faithful"}')
    assert outcome.error is not None and outcome.error.startswith("invalid answer")
    assert len(server.requests_for("garbage")) == 2



@pytest.mark.parametrize("headers_too", [False, True], ids=["body trickled", "headers trickled"])
def test_timeout_s_bounds_the_whole_request_not_each_read(serve: Any, headers_too: bool) -> None:
    # A ~250-byte answer (~330 with its headers) over a minute, a byte every 0.25 s: each read is well
    # within 0.5 s.
    server = serve({"trickled": [Answer(bytes_per_s=4, trickle_headers=headers_too)]})
    started = time.monotonic()
    with make_client(server, timeout_s=0.5, max_attempts=1) as client:
        outcome = client.judge(request("trickled"), validate)
    elapsed = time.monotonic() - started
    assert (outcome.status, outcome.attempts, outcome.billed_calls) == ("failed", 1, 0)
    assert outcome.error is not None and outcome.error.startswith("timed out after 0.5 s")
    assert elapsed < 10  # generous: far from the answer's minute, whatever the machine's load
    [received] = server.requests_for("trickled")
    assert received.status is None  # the server was still sending when the client gave up


def test_a_body_that_is_not_json_is_not_billed_and_counts_against_max_invalid(serve: Any, sleeps: list[float]) -> None:
    page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    script = {
        "page-once": [Fail(200, body=page), Answer()],
        "page-always": [Fail(200, body=page)] * 5,
        "page-among-invalid": [Answer("Faithful!"), Fail(200, body=page), Answer('{"verdict": "sure"}'), Answer()],
    }
    server = serve(script)
    with make_client(server, sleeps, max_invalid=3) as client:
        outcomes = {o.key: o for o in client.judge_all([request(item) for item in script], validate)}
    once, always, mixed = (outcomes[item] for item in script)
    assert (once.status, once.attempts, once.billed_calls, once.unreadable) == ("ok", 2, 1, 1)
    # No answer came, so no verdict: failed (asked again next run), with the page in the error.
    assert (always.status, always.attempts, always.billed_calls, always.unreadable) == ("failed", 3, 0, 3)
    assert always.raw is None and always.error is not None and always.error.startswith("unreadable answer: HTTP 200")
    assert "502 Bad Gateway" in always.error
    # Invalid answers and unreadable bodies share the max_invalid bound; the last answer is kept.
    assert (mixed.status, mixed.attempts, mixed.billed_calls, mixed.unreadable) == ("invalid", 3, 2, 1)
    assert mixed.raw == '{"verdict": "sure"}'
    assert (client.counters.billed, client.counters.unreadable) == (3, 5)
    assert client.counters.requests == len(server.received) == 2 + 3 + 3

def test_parse_json_answer_tolerates_a_fence_only() -> None:
    assert parse_json_answer(' ```json\n{"a": 1}\n``` ') == {"a": 1}
    assert parse_json_answer('```\n[1, 2]\n```') == [1, 2]
    with pytest.raises(ValueError):
        parse_json_answer('The answer is {"a": 1}')


def test_concurrency_is_bounded(serve: Any) -> None:
    server = serve(default=Answer(delay_s=0.15))
    with make_client(server, concurrency=3) as client:
        outcomes = client.judge_all([request(f"item-{index}") for index in range(12)], validate)
    assert all(outcome.status == "ok" for outcome in outcomes)
    assert server.max_in_flight == 3


def test_each_result_is_cached_and_handed_over_as_it_arrives(serve: Any, tmp_path: Path) -> None:
    server = serve({"slow": [Answer(delay_s=0.6)]})
    handed: dict[str, tuple[float, bool]] = {}
    cache_path = tmp_path / "verdicts.jsonl"

    def on_result(outcome: Outcome[str]) -> None:
        handed[outcome.key] = (time.monotonic(), outcome.key in cache_path.read_text())

    with VerdictCache(cache_path) as cache, make_client(server, concurrency=2, timeout_s=5) as client:
        client.judge_all([request("slow"), request("fast")], validate, cache=cache, on_result=on_result)
    [slow_request] = server.requests_for("slow")
    assert handed["fast"][0] < slow_request.finished
    assert handed["fast"][1] and handed["slow"][1]


def test_a_second_run_with_the_cache_makes_zero_calls(serve: Any, tmp_path: Path) -> None:
    items = ["a", "b", "c", "d", "unparseable"]
    server = serve({"unparseable": [Answer("no")] * 3})
    cache_path = tmp_path / "verdicts.jsonl"
    with VerdictCache(cache_path) as cache, make_client(server) as client:
        first = client.judge_all([request(item) for item in items], validate, cache=cache)
    calls = len(server.received)

    with VerdictCache(cache_path) as cache, make_client(server) as client:
        second = client.judge_all([request(item) for item in items], validate, cache=cache)
        assert client.counters.requests == 0 and len(server.received) == calls
        assert (cache.stats.hits, cache.stats.misses) == (5, 0)
    assert [(o.status, o.value, o.raw) for o in second] == [(o.status, o.value, o.raw) for o in first]
    assert all(outcome.cached and outcome.attempts == 0 for outcome in second)

    # Invalid verdicts are kept, and asked again only when the caller says so.
    with VerdictCache(cache_path, retry_invalid=True) as cache, make_client(server) as client:
        third = client.judge_all([request(item) for item in items], validate, cache=cache)
    assert {request.item for request in server.received[calls:]} == {"unparseable"}
    assert third[-1].status == "ok"
    assert VerdictCache(cache_path, retry_invalid=True).get("unparseable") is not None


def test_verdict_key_covers_everything_a_verdict_depends_on() -> None:
    base = {"judge": "gpt", "model": "m", "protocol": "absolute", "template": "T", "source": "S", "output": "O"}
    key = verdict_key(**base)
    assert key == verdict_key(**dict(reversed(base.items()))) and len(key) == 64
    for field in base:
        assert verdict_key(**(base | {field: base[field] + "x"})) != key
    pair = base | {"protocol": "relative", "output": ("P", "Q")}
    assert verdict_key(**pair) != verdict_key(**(pair | {"output": ("Q", "P")}))


def test_cache_drops_a_torn_last_line_and_rejects_corruption_elsewhere(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.jsonl"
    with VerdictCache(path) as cache:
        for key in ("k1", "k2", "k3"):
            cache.put(key, {"status": "ok", "raw": '{"verdict": "faithful"}'})
        with pytest.raises(ValueError, match="only verdicts"):
            cache.put("k4", {"status": "failed", "raw": None})
    intact = path.read_bytes()
    path.write_bytes(intact + b'{"key": "k4", "record": {"sta')

    with VerdictCache(path) as cache:
        assert (len(cache), cache.torn_lines_dropped, "k4" in cache) == (3, 1, False)
        assert path.read_bytes() == intact
        cache.put("k4", {"status": "invalid", "raw": "nope"})
    assert set(VerdictCache(path)) == {"k1", "k2", "k3", "k4"}

    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(lines[:1] + [b"{oops"] + lines[2:]))
    with pytest.raises(ValueError, match=":2: corrupt"):
        VerdictCache(path)



def test_a_writer_dying_mid_line_beside_a_running_one_leaves_a_readable_cache(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.jsonl"
    with VerdictCache(path) as running:
        running.put("k1", {"status": "ok", "raw": "{}"})
        with path.open("ab") as dead:  # another process killed part-way through its line
            dead.write(b'{"key": "k2", "record": {"sta')
        running.put("k3", {"status": "ok", "raw": "{}"})  # the torn line is dropped, not prefixed to this one
    assert set(VerdictCache(path)) == {"k1", "k3"} and running.torn_lines_dropped == 1


def test_short_reads_never_pass_for_a_torn_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "verdicts.jsonl"
    with VerdictCache(path) as cache:
        for key in ("k1", "k2", "k3"):
            cache.put(key, {"status": "ok", "raw": '{"verdict": "faithful"}'})
    intact = path.read_bytes()
    pread = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, size, offset: pread(fd, min(size, 7), offset))
    with VerdictCache(path) as cache:
        assert (set(cache), cache.torn_lines_dropped) == ({"k1", "k2", "k3"}, 0)
    assert path.read_bytes() == intact


def test_retrying_invalid_verdicts_together_retries_each_once(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.jsonl"
    with VerdictCache(path) as before:
        before.put("k", {"status": "invalid", "raw": "no"})
    with VerdictCache(path, retry_invalid=True) as mine, VerdictCache(path, retry_invalid=True) as theirs:
        assert "k" not in mine and "k" not in theirs  # found at open: asked again
        mine.put("k", {"status": "invalid", "raw": "still no"})
        theirs.refresh()
        assert theirs.get("k") == {"status": "invalid", "raw": "still no"}  # landed during this run: kept

CHILD = textwrap.dedent(
    """
    import sys
    from expertlab.judges.cache import VerdictCache
    from expertlab.judges.client import ChatClient
    from expertlab.judges.providers import Endpoint
    from tests.test_judge_client import KEY_ENV, default_retry, keyed_request, validate

    url, cache_path, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    items = [f"item-{index:02d}" for index in range(count)]
    # its requests name a model of their own, so the server tells them from the resumed run's (the keys
    # are the same: keyed_request)
    endpoint = Endpoint(url, "killed-run", api_key_env=KEY_ENV)
    with VerdictCache(cache_path) as cache, ChatClient(endpoint, retry=default_retry(), concurrency=2) as client:
        client.judge_all([keyed_request(item) for item in items], validate, cache=cache)
    """
)


def item_key(item: str) -> str:
    return verdict_key(judge="gpt", model="judge-model", protocol="absolute", template="T", source=item, output="O")


def keyed_request(item: str) -> JudgeRequest:
    """A request keyed as a judge stage keys it: by the verdict's content address."""
    return JudgeRequest(item_key(item), request(item).messages)


def judging_child(server: OpenAIServer, cache_path: Path, count: int) -> subprocess.Popen:
    """A process judging `count` prompts through the cache at `cache_path` (CHILD), to be killed mid-run."""
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, server.base_url, str(cache_path), str(count)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_a_killed_run_resumes_with_every_landed_verdict(serve: Any, tmp_path: Path) -> None:
    items = [f"item-{index:02d}" for index in range(20)]
    server = serve(default=Answer(delay_s=0.2))
    cache_path = tmp_path / "verdicts.jsonl"
    child = judging_child(server, cache_path, len(items))
    deadline = time.monotonic() + 20
    while (not cache_path.exists() or cache_path.read_bytes().count(b"\n") < 5) and time.monotonic() < deadline:
        assert child.poll() is None, "the child finished before it could be killed"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    # A writer killed mid-line leaves a fragment; emulate one on top of the landed verdicts.
    with cache_path.open("ab") as handle:
        handle.write(b'{"key": "' + item_key("item-19").encode() + b'", "record": {"status": "o')

    with VerdictCache(cache_path) as cache:
        landed = {item for item in items if item_key(item) in cache}
        assert 5 <= len(landed) < len(items) and cache.torn_lines_dropped == 1
        with make_client(server, concurrency=4) as client:
            outcomes = client.judge_all([keyed_request(item) for item in items], validate, cache=cache)
    # (a request the killed child sent may reach the server late: it names the child's model)
    resumed = [request.item for request in server.received if request.body["model"] == "judge-model"]
    assert sorted(resumed) == sorted(set(items) - landed)  # each unfinished item once, no finished one again
    assert all(outcome.status == "ok" for outcome in outcomes)
    assert len(VerdictCache(cache_path)) == len(items)


def test_the_api_key_never_leaks(serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = serve(
        {
            "echo-error": [Fail(400, body='{"error": {"message": "bad request, header was {key}"}}')],
            "echo-answer": [Answer(f"my key is {SECRET}")] * 3,
            "echo-cut": [Fail(401, body="x" * 285 + "{key}")],  # the key across the end of the error's excerpt
        }
    )
    cache_path = tmp_path / "verdicts.jsonl"
    with VerdictCache(cache_path) as cache, make_client(server) as client:
        assert SECRET not in repr(client)
        requests = [request("echo-error"), request("echo-answer"), request("fine"), request("echo-cut")]
        outcomes = client.judge_all(requests, validate, cache=cache)
    assert [outcome.status for outcome in outcomes] == ["failed", "invalid", "ok", "failed"]
    assert "[redacted]" in (outcomes[0].error or "") and "[redacted]" in (outcomes[1].raw or "")
    assert SECRET[:8] not in (outcomes[3].error or "") and "Bearer [red" in (outcomes[3].error or "")
    assert all(SECRET not in repr(outcome) for outcome in outcomes)
    assert SECRET.encode() not in cache_path.read_bytes()

    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    with make_client(server) as client:
        [rejected] = client.judge_all([request("wrong-key")], validate)
    assert (rejected.status, rejected.http_status, rejected.attempts) == ("failed", 401, 1)

    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(MissingApiKey, match=KEY_ENV) as raised:
        make_client(server)
    assert SECRET not in str(raised.value)


def test_duplicate_keys_are_refused_before_any_call(serve: Any) -> None:
    server = serve()
    with make_client(server) as client, pytest.raises(ValueError, match="paid for twice"):
        client.judge_all([request("same"), request("same")], validate)
    assert server.received == []


def test_a_failing_consumer_stops_the_run_and_its_retries(serve: Any) -> None:
    server = serve({"boom": [Answer()], "stubborn": [Fail(503)] * 40}, default=Answer(delay_s=0.3))

    def on_result(outcome: Outcome[str]) -> None:
        if outcome.key == "boom":
            raise OSError("disk full")

    items = ["stubborn", "boom"] + [f"later-{index}" for index in range(6)]
    with make_client(server, concurrency=2, max_attempts=100, backoff_s=0.02, backoff_max_s=0.02) as client:
        with pytest.raises(OSError, match="disk full"):
            client.judge_all([request(item) for item in items], validate, on_result=on_result)
    assert len(server.requests_for("stubborn")) < 40  # its retries stopped with the run
    assert sum(request.item.startswith("later-") for request in server.received) <= 1


SHARING_CHILD = textwrap.dedent(
    """
    import json, sys
    from expertlab.judges.cache import VerdictCache
    from expertlab.judges.client import ChatClient
    from expertlab.judges.providers import Endpoint
    from tests.test_judge_client import KEY_ENV, default_retry, keyed_request, validate

    url, cache_path, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    items = [f"item-{index:03d}" for index in range(count)]
    endpoint = Endpoint(url, "judge-model", api_key_env=KEY_ENV)
    with VerdictCache(cache_path) as cache, ChatClient(endpoint, retry=default_retry(), concurrency=4) as client:
        print("ready", flush=True)
        sys.stdin.readline()  # both processes start asking together
        outcomes = client.judge_all([keyed_request(item) for item in items], validate, cache=cache)
        held = sum(keyed_request(item).key in cache for item in items)
    print(json.dumps({"values": [o.value for o in outcomes], "asked": client.counters.requests, "held": held}))
    """
)


def judge_in_two_processes(base_url: str, cache_path: Path, count: int, env: Mapping[str, str]) -> list[dict[str, Any]]:
    """Two processes judging the same `count` prompts through one verdict cache, released together: their reports."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", SHARING_CHILD, base_url, str(cache_path), str(count)],
            cwd=REPO,
            env={**env, "PYTHONPATH": str(REPO)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    reports = []
    for child in children:
        stdout, _ = child.communicate(timeout=300)
        assert child.returncode == 0
        reports.append(json.loads(stdout))
    return reports


def test_two_processes_sharing_a_cache_ask_each_prompt_once(serve: Any, tmp_path: Path) -> None:
    items = [f"item-{index:03d}" for index in range(150)]
    server = serve(default=Answer(delay_s=0.05))
    cache_path = tmp_path / "verdicts.jsonl"
    reports = judge_in_two_processes(server.base_url, cache_path, len(items), os.environ)

    asked = collections.Counter(received.item for received in server.received)
    assert asked == {item: 1 for item in items}  # 150 requests between them, each prompt once
    assert sum(report["asked"] for report in reports) == len(items) and all(report["asked"] for report in reports)
    for report in reports:
        assert report["values"] == ["faithful"] * len(items) and report["held"] == len(items)
    assert len(VerdictCache(cache_path)) == len(items)
    assert not cache_path.with_suffix(".claims").exists()  # no claim file outlives its prompt


def test_a_claim_is_held_by_one_cache_at_a_time_and_a_dead_holders_file_is_harmless(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.jsonl"
    with VerdictCache(path) as mine, VerdictCache(path) as theirs:  # two open files: flock tells them apart
        claim = mine.claim("k")
        assert claim is not None and claim.path.parent == tmp_path / "verdicts.claims"
        assert theirs.claim("k", wait=False) is None
        other = theirs.claim("other", wait=False)
        assert other is not None
        other.release()

        waited: list[Any] = []
        waiter = threading.Thread(target=lambda: waited.append(theirs.claim("k")))
        waiter.start()
        time.sleep(0.2)
        assert waiter.is_alive()  # asleep in flock while the claim is held
        claim.release()
        waiter.join(timeout=5)
        [taken] = waited
        # The waiter locked the removed file first, saw it gone, and claimed the path afresh: a real claim.
        assert taken.path.exists() and mine.claim("k", wait=False) is None
        taken.release()
        assert not taken.path.exists()

        # A killed holder's file stays behind, unlocked: the next claimer takes it over.
        stale = mine.claim("dead")
        assert stale is not None
        stale.release()
        stale.path.touch()
        revived = theirs.claim("dead", wait=False)
        assert revived is not None and revived.path == stale.path
        revived.release()
    assert not (tmp_path / "verdicts.claims").exists()


def test_a_prompt_held_elsewhere_waits_while_the_others_go_on_then_takes_the_holders_verdict(
    serve: Any, tmp_path: Path
) -> None:
    server = serve()
    path = tmp_path / "verdicts.jsonl"
    free = [f"free-{index}" for index in range(4)]
    with VerdictCache(path) as theirs, VerdictCache(path) as mine:
        answered, gave_up = theirs.claim("answered-there"), theirs.claim("given-up-there")
        assert answered is not None and gave_up is not None
        handed: list[str] = []

        def on_result(outcome: Outcome[str]) -> None:
            handed.append(outcome.key)
            if sorted(handed) == free:  # every free prompt done while the two waited
                theirs.put("answered-there", {"status": "ok", "raw": correct_answer("answered-there")})
                answered.release()
                gave_up.release()  # a holder that got no verdict, or died: asked here

        with make_client(server) as client:
            requests = [request("answered-there"), request("given-up-there")] + [request(item) for item in free]
            outcomes = client.judge_all(requests, validate, cache=mine, on_result=on_result)
    assert sorted(handed[:4]) == free and sorted(handed[4:]) == ["answered-there", "given-up-there"]
    assert (outcomes[0].status, outcomes[0].value, outcomes[0].cached) == ("ok", "faithful", True)
    assert (outcomes[1].status, outcomes[1].cached) == ("ok", False)
    assert sorted(received.item for received in server.received) == sorted(["given-up-there", *free])


def test_a_stopped_run_lets_go_of_the_claims_it_was_waiting_for(serve: Any, tmp_path: Path) -> None:
    server = serve()
    path = tmp_path / "verdicts.jsonl"

    def on_result(outcome: Outcome[str]) -> None:
        raise OSError("disk full")

    with VerdictCache(path) as theirs, VerdictCache(path) as mine:
        held = theirs.claim("held-there")
        assert held is not None
        with make_client(server) as client, pytest.raises(OSError, match="disk full"):
            client.judge_all([request("held-there"), request("free")], validate, cache=mine, on_result=on_result)
        held.release()  # the stopped run's waiter takes the claim, sees the run stopped, and lets go
        deadline = time.monotonic() + 10
        while any(thread.name == "judge-claim-wait" for thread in threading.enumerate()):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        again = theirs.claim("held-there", wait=False)
        assert again is not None
        again.release()
    assert [received.item for received in server.received] == ["free"]


def test_a_run_killed_between_answer_and_append_costs_that_prompt_only(serve: Any, tmp_path: Path) -> None:
    items = [f"item-{index:02d}" for index in range(20)]
    answer_held = threading.Event()
    server = serve({"item-07": [Answer(gate=answer_held)]})
    cache_path = tmp_path / "verdicts.jsonl"
    child = judging_child(server, cache_path, len(items))
    deadline = time.monotonic() + 60
    while not (cache_path.exists() and cache_path.read_bytes().count(b"\n") == 19 and server.requests_for("item-07")):
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    # Hold the cache's lock, let the server answer, and kill the child once the answer is sent: it got
    # the answer (and paid for it) but cannot have appended it.
    with cache_path.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        answer_held.set()
        [in_flight] = server.requests_for("item-07")
        while in_flight.status != 200:
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert [path.exists() for path in cache_path.with_suffix(".claims").iterdir()] == [True]  # its stale claim

    first_run = len(server.received)
    with VerdictCache(cache_path) as cache, make_client(server, concurrency=4) as client:
        assert item_key("item-07") not in cache and len(cache) == 19
        outcomes = client.judge_all([keyed_request(item) for item in items], validate, cache=cache)
    assert [request.item for request in server.received[first_run:]] == ["item-07"]  # the others from the cache
    assert server.completions("item-07") == 2 and all(outcome.status == "ok" for outcome in outcomes)
    assert sum(outcome.cached for outcome in outcomes) == 19
    assert len(VerdictCache(cache_path)) == 20 and not cache_path.with_suffix(".claims").exists()
