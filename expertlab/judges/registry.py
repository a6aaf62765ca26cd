"""Judge backends: (judge spec, items, protocols) -> one verdict row per question, and what it cost.

A backend builds a judge from its params entry (`judges.<name>`): `grounding` is the offline
deterministic judge; `openai` (any OpenAI-compatible endpoint: OpenAI, a gateway, a local vLLM
server), `anthropic` and `gemini` ask an LLM through `client.ChatClient`, paying only for verdicts
the verdict cache does not hold. Rows carry the `judgments` table's verdict columns; the stage adds
the variant's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from expertlab.judges import protocols as proto
from expertlab.judges.cache import VerdictCache, verdict_key
from expertlab.judges.client import (
    DEFAULT_BASE_URLS,
    ChatClient,
    Endpoint,
    JudgeRequest,
    MissingApiKey,
    Outcome,
    RetryPolicy,
    outcome_from_record,
)
from expertlab.judgments import QUESTIONS
from expertlab.registry import Registry

Row = dict[str, Any]
Progress = Callable[[int], None]  # called with how many verdicts just landed


@dataclass(frozen=True)
class Item:
    """One judged sample: the source document, the pruned model's output and the source model's."""

    task: str
    sample_id: str
    document: str
    pruned: str
    source: str


@dataclass(frozen=True)
class Settings:
    """How every judge of a run asks (params `judge`)."""

    seed: int = 0  # relative protocol: A/B positions
    threshold: float = proto.ABSOLUTE_THRESHOLD
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    cache_dir: Path | None = None  # None: no verdict cache (every run pays again)
    retry_invalid: bool = False  # ask again where the cache holds an invalid answer


@dataclass
class Tally:
    """What judging cost: `requests` sent, `billed` completions, verdicts answered from the cache."""

    questions: int = 0  # distinct prompts (identical outputs share one)
    requests: int = 0
    billed: int = 0
    unreadable: int = 0  # 2xx answers whose body was not JSON: asked again, not billed
    cache_hits: int = 0
    computed: int = 0  # verdicts computed locally (grounding judge)
    invalid: int = 0
    failed: list[str] = field(default_factory=list)  # prompts without verdict: task, sample, protocol; error
    prompt_tokens: int = 0
    completion_tokens: int = 0
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)  # cache key -> record, of the prompts asked

    def summary(self) -> str:
        if self.computed:
            return f"{self.computed} verdicts computed locally (no calls)"
        return (
            f"{self.questions} prompts: {self.cache_hits} from the cache, {self.billed} calls billed "
            f"({self.requests} requests, {self.unreadable} unreadable answers, "
            f"{self.prompt_tokens}+{self.completion_tokens} tokens), {self.invalid} invalid, {len(self.failed)} failed"
        )


class Judge(Protocol):
    name: str

    def count(self, items: Sequence[Item], protocols: Sequence[str]) -> int:
        """How many times `judge` will call `progress(1)`: verdicts computed, or distinct prompts asked."""
        ...

    def judge(
        self, items: Sequence[Item], protocols: Sequence[str], progress: Progress | None = None
    ) -> tuple[list[Row], Tally]:
        """One row per (item, protocol, question, judged output)."""
        ...


def verdict_row(
    judge: str, protocol: str, question: str, item: Item, output: str, label: str | None, status: str, raw: object
) -> Row:
    return {
        "rater": judge,
        "rater_kind": "llm",
        "protocol": protocol,
        "question": question,
        "dataset": item.task,
        "document_id": item.sample_id,
        "output": output,
        "label": label if status == "ok" else None,
        "status": status,
        "raw": json.dumps(raw, sort_keys=True, ensure_ascii=False),
    }


def _absolute_outputs(item: Item) -> list[tuple[str, str]]:
    return [("pruned", item.pruned), ("source", item.source)]


# --- the offline grounding judge -----------------------------------------------------------------


class GroundingJudge:
    """The deterministic grounding judge (`grounding.py`): free, so it is never cached."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings

    def count(self, items: Sequence[Item], protocols: Sequence[str]) -> int:
        return len(items)

    def judge(
        self, items: Sequence[Item], protocols: Sequence[str], progress: Progress | None = None
    ) -> tuple[list[Row], Tally]:
        from expertlab.judges.grounding import absolute_verdict, analyse, relative_verdict

        rows: list[Row] = []
        tally = Tally()
        for item in items:
            if "absolute" in protocols:
                for output, text in _absolute_outputs(item):
                    verdict = absolute_verdict(analyse(item.document, text))
                    raw = {"reasons": list(verdict.reasons)}
                    rows.append(
                        verdict_row(self.name, "absolute", "hallucinated", item, output, verdict.label, "ok", raw)
                    )
                    tally.computed += 1
            if "relative" in protocols:
                order = proto.ab_order(self.settings.seed, item.sample_id)
                shown = {"pruned": item.pruned, "source": item.source}
                answers = relative_verdict(item.document, shown[order[0]], shown[order[1]])
                resolved = proto.resolve(answers, order)
                raw = {"order": {"A": order[0], "B": order[1]}, "answers": answers}
                for question in QUESTIONS["relative"]:
                    rows.append(
                        verdict_row(self.name, "relative", question, item, "pair", resolved[question], "ok", raw)
                    )
                tally.computed += 1
            if progress is not None:
                progress(1)
        return rows, tally


# --- LLM judges ----------------------------------------------------------------------------------


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
        concurrency: int = 4,
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
                for output, text in _absolute_outputs(item):
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
        validators = {"absolute": proto.validate_absolute, "relative": proto.validate_relative}
        tally = Tally(questions=len(requests))
        outcomes: dict[str, Outcome[Any]] = {}

        def landed(outcome: Outcome[Any]) -> None:
            if progress is not None:
                progress(1)

        cache = VerdictCache(self.cache_path, retry_invalid=self.settings.retry_invalid) if self.cache_path else None
        try:
            for protocol in ("absolute", "relative"):
                batch = [request for key, request in requests.items() if protocol_of[key] == protocol]
                if not batch:
                    continue
                if cache is not None and all(request.key in cache for request in batch):
                    # every verdict is cached: no client, so no key is needed to rebuild the rows
                    for request in batch:
                        record = cache.get(request.key)
                        outcome = outcome_from_record(request.key, record, validators[protocol])
                        outcomes[request.key] = outcome
                        landed(outcome)
                    continue
                try:
                    client = ChatClient(
                        self.endpoint,
                        retry=self.settings.retry,
                        concurrency=self.concurrency,
                        transport=self._transport,
                    )
                except MissingApiKey as err:
                    raise MissingApiKey(
                        f"judge {self.name}: {err} (export it, or name another with judges.{self.name}.api_key_env)"
                    ) from None
                with client:
                    for outcome in client.judge_all(batch, validators[protocol], cache=cache, on_result=landed):
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
                stored = {key: cache.stored(key) for key in requests}
                tally.verdicts = {key: record for key, record in stored.items() if record is not None}
                cache.close()
        tally.invalid = sum(outcome.status == "invalid" for outcome in outcomes.values())
        asking: dict[str, list[_Asked]] = {}
        for entry in asked:
            asking.setdefault(entry.key, []).append(entry)
        failed = [key for key in requests if outcomes[key].status == "failed"]
        tally.failed = [_no_verdict(asking[key], outcomes[key].error) for key in failed]
        return [row for entry in asked for row in self._rows(entry, outcomes[entry.key])], tally

    @property
    def cache_path(self) -> Path | None:
        return self.settings.cache_dir / f"{self.name}.jsonl" if self.settings.cache_dir is not None else None

    def _rows(self, entry: _Asked, outcome: Outcome[Any]) -> list[Row]:
        item, protocol = entry.item, entry.protocol
        if outcome.status == "failed":
            return []  # no verdict: the stage refuses to write a result while any prompt failed
        invalid = {"answer": outcome.raw, "error": outcome.error}
        if protocol == "absolute":
            if outcome.status == "invalid":
                return [verdict_row(self.name, protocol, "hallucinated", item, entry.output, None, "invalid", invalid)]
            answer: proto.AbsoluteAnswer = outcome.value
            raw = {**answer.to_json(), "threshold": self.settings.threshold}
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


# --- the registry --------------------------------------------------------------------------------

# (judge name, its params entry as a mapping, run settings) -> a judge
BACKENDS: Registry[Callable[[str, Mapping[str, Any], Settings], Judge]] = Registry("judge backend")
BACKENDS.add("grounding", lambda name, spec, settings: GroundingJudge(name, settings))


def _llm_backend(provider: str) -> Callable[[str, Mapping[str, Any], Settings], Judge]:
    def build(name: str, spec: Mapping[str, Any], settings: Settings) -> Judge:
        endpoint = Endpoint(
            base_url=spec.get("base_url") or DEFAULT_BASE_URLS[provider],
            model=spec["model"],
            api_key_env=spec.get("api_key_env"),
            max_tokens=spec.get("max_tokens"),
            extra_body=dict(spec.get("extra_body") or {}),
            provider=provider,
        )
        return LLMJudge(name, endpoint, settings, concurrency=int(spec.get("concurrency", 4)))

    return build


for _provider in ("openai", "anthropic", "gemini"):
    BACKENDS.add(_provider, _llm_backend(_provider))


def build_judge(name: str, spec: Mapping[str, Any], settings: Settings) -> Judge:
    return BACKENDS[spec["backend"]](name, spec, settings)


def items_from_generations(
    pruned_rows: Iterable[Mapping[str, Any]], source_rows: Iterable[Mapping[str, Any]], tasks: Sequence[str]
) -> list[Item]:
    """Judged items of `tasks`: each pruned output beside the source model's output of the same sample.

    The document is the row's doc["source"]; a judged task whose rows lack it, or a sample the source
    model's generations do not have, is an error naming the task.
    """
    wanted = set(tasks)
    source_by_id = {(row["task"], row["sample_id"]): row for row in source_rows if row["task"] in wanted}
    items = []
    for row in pruned_rows:
        if row["task"] not in wanted:
            continue
        document = (row.get("doc") or {}).get("source")
        if not isinstance(document, str) or not document.strip():
            raise ValueError(
                f"task {row['task']}: sample {row['sample_id']} has no doc.source, the document a judge checks against"
            )
        source = source_by_id.get((row["task"], row["sample_id"]))
        if source is None:
            raise ValueError(
                f"task {row['task']}: sample {row['sample_id']} is missing from the source model's generations"
            )
        items.append(Item(row["task"], row["sample_id"], document, row["output"], source["output"]))
    return items
