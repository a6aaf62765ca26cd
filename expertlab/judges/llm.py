"""(judge name, endpoint, settings, items) -> verdict rows from an LLM judge, each distinct prompt asked once through the verdict cache."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from expertlab.judges import protocols as proto
from expertlab.judges.backend import Item, Progress, Row, Settings, Tally, absolute_outputs, verdict_row
from expertlab.judges.cache import VerdictCache, cache_file, verdict_key
from expertlab.judges.client import ChatClient
from expertlab.judges.connection import MissingApiKey
from expertlab.judges.outcomes import JudgeRequest, Outcome, Validate, outcome_from_record
from expertlab.judges.providers import PROVIDERS, Endpoint
from expertlab.judgments import QUESTIONS


@dataclass(frozen=True)
class _Asked:
    """One row-to-be: which item, protocol and output, and the key of the prompt that decides it."""

    item: Item
    protocol: str
    output: str
    key: str
    order: proto.Order | None = None


def _no_verdict(entries: Sequence[_Asked], error: str | None) -> str:
    """A prompt that got no verdict, named by the first judged output that asks it, with the error on one line."""
    first = entries[0]
    if first.protocol == "absolute":
        question = f"question {QUESTIONS['absolute'][0]} of the {first.output} output"
    else:
        question = "questions " + ", ".join(QUESTIONS["relative"])
    others = list(dict.fromkeys(entry.item.sample_id for entry in entries[1:] if entry.item != first.item))
    shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
    shared = f" (the same prompt as sample{'s' if len(others) > 1 else ''} {shown})" if others else ""
    reason = " ".join((error or "no answer").split())
    where = f"task {first.item.task}, sample {first.item.sample_id}, {first.protocol} protocol"
    return f"{where}, {question}{shared}: {reason}"


class LLMJudge:
    """An LLM behind a chat endpoint, asked each distinct prompt once; verdicts land in the cache as they arrive."""

    def __init__(
        self,
        name: str,
        endpoint: Endpoint,
        settings: Settings,
        *,
        concurrency: int,
        transport: Any = None,
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self.settings = settings
        self.concurrency = concurrency
        self._transport = transport

    def count(self, items: Sequence[Item], protocols: Sequence[str]) -> int:
        return len(self._plan(items, protocols)[1])

    def _key(self, protocol: str, document: str, output: str | tuple[str, str]) -> str:
        return verdict_key(
            judge=self.name,
            model=f"{self.endpoint.provider}:{self.endpoint.model}",
            protocol=protocol,
            template=proto.template_id(protocol),
            source=document,
            output=output,
        )

    def _plan(self, items: Sequence[Item], protocols: Sequence[str]) -> tuple[list[_Asked], dict[str, JudgeRequest]]:
        asked: list[_Asked] = []
        requests: dict[str, JudgeRequest] = {}
        for item in items:
            if "absolute" in protocols:
                for output, text in absolute_outputs(item):
                    key = self._key("absolute", item.document, text)
                    asked.append(_Asked(item, "absolute", output, key))
                    requests.setdefault(key, JudgeRequest(key, proto.absolute_messages(item.document, text)))
            if "relative" in protocols:
                order = proto.ab_order(self.settings.seed, item.sample_id)
                shown = {"pruned": item.pruned, "source": item.source}
                pair = (shown[order[0]], shown[order[1]])
                key = self._key("relative", item.document, pair)
                asked.append(_Asked(item, "relative", "pair", key, order))
                requests.setdefault(key, JudgeRequest(key, proto.relative_messages(item.document, *pair)))
        return asked, requests

    def judge(
        self, items: Sequence[Item], protocols: Sequence[str], progress: Progress | None = None
    ) -> tuple[list[Row], Tally]:
        asked, requests = self._plan(items, protocols)
        protocol_of = {entry.key: entry.protocol for entry in asked}
        validators = {"absolute": proto.read_absolute, "relative": proto.read_relative}
        batches = [
            ([request for key, request in requests.items() if protocol_of[key] == protocol], validate)
            for protocol, validate in validators.items()
        ]
        outcomes, tally = ask_endpoint(
            self.name, self.endpoint, self.settings, batches,
            concurrency=self.concurrency, transport=self._transport, progress=progress,
        )  # fmt: skip
        asking: dict[str, list[_Asked]] = {}
        for entry in asked:
            asking.setdefault(entry.key, []).append(entry)
        failed = [key for key in requests if outcomes[key].status == "failed"]
        tally.failed = [_no_verdict(asking[key], outcomes[key].error) for key in failed]
        return [row for entry in asked for row in self._rows(entry, outcomes[entry.key])], tally

    def _rows(self, entry: _Asked, outcome: Outcome[Any]) -> list[Row]:
        item, protocol = entry.item, entry.protocol
        if outcome.status == "failed":
            return []  # no verdict: the stage refuses to write a result while any prompt failed
        invalid = {"answer": outcome.raw, "error": outcome.error}
        if protocol == "absolute":
            if outcome.status == "invalid":
                return [verdict_row(self.name, protocol, "hallucinated", item, entry.output, None, "invalid", invalid)]
            answer: proto.AbsoluteAnswer = outcome.value
            raw = answer.to_json(self.settings.threshold)
            label = answer.label(self.settings.threshold)
            return [verdict_row(self.name, protocol, "hallucinated", item, entry.output, label, "ok", raw)]
        assert entry.order is not None
        if outcome.status == "invalid":
            return [
                verdict_row(self.name, protocol, q, item, "pair", None, "invalid", invalid)
                for q in QUESTIONS["relative"]
            ]
        resolved = proto.resolve(outcome.value, entry.order)
        raw = {"order": {"A": entry.order[0], "B": entry.order[1]}, "answers": outcome.value}
        return [
            verdict_row(self.name, protocol, q, item, "pair", resolved[q], "ok", raw) for q in QUESTIONS["relative"]
        ]


def endpoint_for(provider: str, spec: Mapping[str, Any]) -> Endpoint:
    """The chat endpoint a params entry `judges.<name>` names, on `provider`'s API."""
    return Endpoint(
        base_url=spec.get("base_url") or PROVIDERS[provider].base_url,
        model=spec["model"],
        api_key_env=spec.get("api_key_env"),
        max_tokens=spec.get("max_tokens"),
        extra_body=dict(spec.get("extra_body") or {}),
        provider=provider,
    )


def build_llm_judge(provider: str, name: str, spec: Mapping[str, Any], settings: Settings) -> LLMJudge:
    """An LLM judge asking `provider`'s API as its params entry (`judges.<name>`) says."""
    return LLMJudge(name, endpoint_for(provider, spec), settings, concurrency=spec["concurrency"])


def ask_endpoint(
    name: str,
    endpoint: Endpoint,
    settings: Settings,
    batches: Sequence[tuple[Sequence[JudgeRequest], Validate[Any]]],
    *,
    concurrency: int,
    transport: Any = None,
    progress: Progress | None = None,
) -> tuple[dict[str, Outcome[Any]], Tally]:
    """Every request of every (requests, validator) batch asked once through the endpoint's verdict cache: a batch
    wholly in the cache opens no client (and needs no key). Returns the outcomes by key and what they cost."""
    tally = Tally(questions=sum(len(requests) for requests, _ in batches))
    outcomes: dict[str, Outcome[Any]] = {}

    def landed(outcome: Outcome[Any]) -> None:
        if progress is not None:
            progress(1)

    directory = settings.cache_dir
    cache = VerdictCache(cache_file(directory, name), retry_invalid=settings.retry_invalid) if directory else None
    try:
        for batch, validate in batches:
            if not batch:
                continue
            if cache is not None and all(request.key in cache for request in batch):
                for request in batch:
                    outcome = outcome_from_record(request.key, cache.get(request.key), validate)
                    outcomes[request.key] = outcome
                    landed(outcome)
                continue
            try:
                client = ChatClient(endpoint, retry=settings.retry, concurrency=concurrency, transport=transport)
            except MissingApiKey as err:
                raise MissingApiKey(f"judge {name}: {err} (export it, or name another with judges.{name}.api_key_env)") from None
            with client:
                for outcome in client.judge_all(batch, validate, cache=cache, on_result=landed):
                    outcomes[outcome.key] = outcome
                counters = client.counters
                tally.requests += counters.requests
                tally.billed += counters.billed
                tally.unreadable += counters.unreadable
                tally.prompt_tokens += counters.prompt_tokens
                tally.completion_tokens += counters.completion_tokens
    finally:
        if cache is not None:
            tally.cache_hits = sum(outcome.cached for outcome in outcomes.values())
            stored = {request.key: cache.stored(request.key) for requests, _ in batches for request in requests}
            tally.verdicts = {key: record for key, record in stored.items() if record is not None}
            cache.close()
    tally.invalid = sum(outcome.status == "invalid" for outcome in outcomes.values())
    return outcomes, tally
