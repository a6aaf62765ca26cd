"""What every judge backend is given and gives back: judged items, run settings, verdict rows and the tally of their cost."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from expertlab.judgments import VerdictStatus

if TYPE_CHECKING:
    from expertlab.judges.client import RetryPolicy

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

    seed: int  # relative protocol: A/B positions
    threshold: float  # absolute protocol: DeepEval's threshold, the least share of agreeing contexts that is faithful
    retry: RetryPolicy
    cache_dir: Path | None  # None: no verdict cache (every run pays again)
    retry_invalid: bool  # ask again where the cache holds an invalid answer


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
    judge: str,
    protocol: str,
    question: str,
    item: Item,
    output: str,
    label: str | None,
    status: VerdictStatus,
    raw: object,
) -> Row:
    return {
        "judge": judge,
        "judge_kind": "llm",
        "protocol": protocol,
        "question": question,
        "task": item.task,
        "sample_id": item.sample_id,
        "output": output,
        "label": label if status == "ok" else None,
        "status": status,
        "raw": json.dumps(raw, sort_keys=True, ensure_ascii=False),
    }


def absolute_outputs(item: Item) -> list[tuple[str, str]]:
    return [("pruned", item.pruned), ("source", item.source)]


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
