"""A variant's generations + its source model's -> OUT/judgments.parquet, OUT/verdicts.jsonl, OUT/meta.json.

Every judge of params `judge.judges` judges the outputs of `judge.tasks` under each protocol. LLM
verdicts land in the shared verdict cache (`judge.cache_dir`) as they arrive, so a killed run
resumes without paying again, and the artifact keeps the verdicts it used (verdicts.jsonl): after a
`dvc pull`, `expertlab warm-verdicts` (`warm_cache`) seeds the cache from the pulled artifacts, so
nobody pays twice for a verdict; a judge stage itself reads only its declared inputs and the cache. A
prompt that got no verdict (retries exhausted, a rejected request) fails the stage, naming its judge,
task and sample, and nothing is written; a re-run asks only for what is missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from expertlab.judges.backend import Settings
    from expertlab.params import Judge as JudgeParams
    from expertlab.params import Params
    from expertlab.records import GenerationsMeta

VERDICTS_FILE = "verdicts.jsonl"


def _generations(path: Path) -> tuple[GenerationsMeta, list[dict[str, Any]]]:
    from expertlab.io import read_jsonl
    from expertlab.records import GenerationsMeta, read_meta

    return read_meta(path, GenerationsMeta), read_jsonl(path / "generations.jsonl")


def llm_judges(params: Params) -> list[str]:
    """The judges of `judge.judges` that ask an LLM (and so keep a verdict cache)."""
    return [name for name in params.judge.judges if params.judges[name].backend != "grounding"]


def warm_cache(cache_dir: Path, below: Path, judges: list[str]) -> int:
    """Verdicts of pulled judgments artifacts added to the cache (content-addressed keys: any artifact's
    verdict is valid wherever the same prompt recurs); returns how many were new."""
    from expertlab.judges.cache import VerdictCache, cache_file

    if not below.is_dir():
        raise FileNotFoundError(f"no such directory: {below}")
    if not judges:
        return 0
    caches = {name: VerdictCache(cache_file(cache_dir, name)) for name in judges}
    added = 0
    try:
        for path in sorted(below.rglob(VERDICTS_FILE)):
            for line in path.read_text().splitlines():
                entry = json.loads(line)
                cache = caches.get(entry["judge"])
                if cache is not None and entry["key"] not in cache:
                    cache.put(entry["key"], entry["record"])
                    added += 1
    finally:
        for cache in caches.values():
            cache.close()
    return added


def run_settings(config: JudgeParams) -> Settings:
    """How every LLM of a run is asked (params `judge`): seed, threshold, retries, the verdict cache."""
    from expertlab.judges.backend import Settings
    from expertlab.judges.client import RetryPolicy

    return Settings(
        seed=config.seed,
        threshold=config.threshold,
        retry=RetryPolicy(max_attempts=config.max_attempts, max_invalid=config.max_invalid, timeout_s=config.timeout_s),
        cache_dir=Path(config.cache_dir),
        retry_invalid=config.retry_invalid,
    )


def judge_generations(
    gen_dir: str | Path, source_dir: str | Path, out: str | Path, params: Params, params_path: str | Path
) -> tuple[int, int]:
    """Judge one variant's generations against its source's; returns (verdict rows, items) written."""
    from tqdm import tqdm

    from expertlab.errors import ExpertlabError
    from expertlab.io import OutputDir, write_json
    from expertlab.judges.backend import items_from_generations
    from expertlab.judges.registry import build_judge
    from expertlab.records import JUDGMENTS, JudgmentsMeta

    output = OutputDir(out, "judge", inputs=[gen_dir, source_dir, params_path])
    output.check()
    config = params.judge
    meta, rows = _generations(Path(gen_dir))
    source_meta, source_rows = _generations(Path(source_dir))
    variant = meta.variant
    if variant.criterion is None:
        raise ValueError(f"{gen_dir}: these are the source model's generations; judge a pruned variant's")
    if source_meta.variant.criterion is not None or source_meta.variant.model != variant.model:
        raise ValueError(f"{source_dir}: not the unpruned {variant.model}'s generations")
    group = meta.group
    tasks = [task for task in config.tasks if task in (meta.tasks or [])]
    items = items_from_generations(rows, source_rows, tasks)

    settings = run_settings(config)
    judgments: list[dict[str, Any]] = []
    used: list[dict[str, Any]] = []
    report: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    for name in config.judges:
        judge = build_judge(name, params.judges[name].model_dump(), settings)
        with tqdm(
            total=judge.count(items, config.protocols), desc=f"judge {name}", unit="prompt", disable=not items
        ) as bar:
            judge_rows, tally = judge.judge(items, config.protocols, bar.update)
        report[name] = {
            "prompts": tally.questions, "requests": tally.requests, "billed": tally.billed, "unreadable": tally.unreadable,
            "cache_hits": tally.cache_hits, "computed": tally.computed, "invalid": tally.invalid,
            "failed": len(tally.failed), "prompt_tokens": tally.prompt_tokens, "completion_tokens": tally.completion_tokens,
        }  # fmt: skip
        print(f"judge: {variant.variant_id} {group}: {name}: {tally.summary()}")
        failures += [f"judge {name}, {failure}" for failure in tally.failed]
        judgments += judge_rows
        used += [{"judge": name, "key": key, "record": tally.verdicts[key]} for key in sorted(tally.verdicts)]
    if failures:
        shown = "; ".join(failures[:10]) + (f"; and {len(failures) - 10} more" if len(failures) > 10 else "")
        raise ExpertlabError(
            f"{len(failures)} prompt(s) got no verdict, so nothing was written; the verdicts that landed are cached "
            f"and a re-run asks only for these: {shown}"
        )

    # the judged variant's fields are in `variants` (the artifact lists it); a row names it by id
    table_rows = [{**row, "variant_id": variant.variant_id} for row in judgments]
    record = JudgmentsMeta(
        name=f"{variant.variant_id}/{group}", format="expertlab", variants=[variant], group=group, tasks=tasks,
        items=len(items), judges=list(config.judges), protocols=list(config.protocols), costs=report,
    )  # fmt: skip
    with output.writing() as tmp:
        JUDGMENTS.write(tmp / "judgments.parquet", table_rows)
        with (tmp / VERDICTS_FILE).open("w") as fh:
            for entry in used:
                fh.write(json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n")
        write_json(tmp / "meta.json", record.dump())
    return len(table_rows), len(items)
