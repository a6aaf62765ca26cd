"""A generations artifact -> OUT/sample_scores.parquet (task, sample_id, metric, value),
OUT/corpus_scores.parquet (task, metric, value, n) + OUT/meta.json."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from expertlab.records import VariantRecord


def score_generations(
    rows: list[dict[str, Any]], options: Mapping[str, Any] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(per-sample scores, corpus scores) of generation rows, task by task, sorted."""
    from tqdm import tqdm

    from expertlab.evaluate import score_rows
    from expertlab.tasks import TASKS

    by_task: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_task.setdefault(row["task"], []).append(row)
    samples: list[dict[str, Any]] = []
    corpus: list[dict[str, Any]] = []
    for name in tqdm(sorted(by_task), desc="score", unit="task", disable=len(by_task) < 2):
        task_samples, task_corpus = score_rows(TASKS[name], by_task[name], options)
        samples += task_samples
        corpus += task_corpus
    samples.sort(key=lambda s: (s["task"], s["sample_id"], s["metric"]))
    corpus.sort(key=lambda s: (s["task"], s["metric"]))
    return samples, corpus


def score_artifact(gen_dir: str | Path, out: str | Path, options: Mapping[str, Any]) -> tuple[VariantRecord, list[tuple[str, str, float, int]]]:
    """Score a generations artifact into OUT; returns its variant record and (task, metric, mean, n) lines."""
    from expertlab.io import OutputDir, read_jsonl, write_json
    from expertlab.records import CORPUS_SCORES, SAMPLE_SCORES, GenerationsMeta, ScoresMeta, read_meta

    gen_dir = Path(gen_dir)
    output = OutputDir(out, "score", inputs=[gen_dir])
    output.check()
    meta = read_meta(gen_dir, GenerationsMeta)
    samples, corpus = score_generations(read_jsonl(gen_dir / "generations.jsonl"), options)
    with output.writing() as tmp:
        sample_table = SAMPLE_SCORES.write(tmp / "sample_scores.parquet", samples)
        CORPUS_SCORES.write(tmp / "corpus_scores.parquet", corpus)
        write_json(tmp / "meta.json", ScoresMeta(variant=meta.variant, group=meta.group, tasks=meta.tasks).dump())
    print(f"score: {meta.variant.variant_id}: {len(samples)} sample scores, {len(corpus)} corpus scores -> {out}")
    summary = sample_table.group_by(["task", "metric"]).aggregate([("value", "mean"), ("value", "count")])
    lines = [(r["task"], r["metric"], r["value_mean"], r["value_count"]) for r in summary.to_pylist()]
    lines += [(r["task"], r["metric"], r["value"], r["n"]) for r in corpus]
    return meta.variant, sorted(lines)
