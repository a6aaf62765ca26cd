"""A generations artifact -> OUT/sample_scores.parquet (task, sample_id, metric, value),
OUT/corpus_scores.parquet (task, metric, value, n) + OUT/meta.json."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

SAMPLE_SCHEMA = [("task", "string"), ("sample_id", "string"), ("metric", "string"), ("value", "float64")]
CORPUS_SCHEMA = [("task", "string"), ("metric", "string"), ("value", "float64"), ("n", "int64")]


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


def score_artifact(gen_dir: str | Path, out: str | Path, options: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str, float, int]]]:
    """Score a generations artifact into OUT; returns its variant record and (task, metric, mean, n) lines."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from expertlab.io import OutputDir, read_jsonl, read_meta, write_json

    gen_dir = Path(gen_dir)
    output = OutputDir(out, "score", inputs=[gen_dir])
    output.check()
    meta = read_meta(gen_dir, "generations", ["variant"])
    samples, corpus = score_generations(read_jsonl(gen_dir / "generations.jsonl"), options)

    def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> pa.Table:
        return pa.Table.from_pylist(rows, schema=pa.schema([(name, pa.type_for_alias(kind)) for name, kind in columns]))

    sample_table = table(samples, SAMPLE_SCHEMA)
    with output.writing() as tmp:
        pq.write_table(sample_table, tmp / "sample_scores.parquet")
        pq.write_table(table(corpus, CORPUS_SCHEMA), tmp / "corpus_scores.parquet")
        write_json(
            tmp / "meta.json",
            {"kind": "scores", "variant": meta["variant"], "group": meta.get("group", ""), "tasks": meta.get("tasks")},
        )
    print(f"score: {meta['variant'].get('variant_id')}: {len(samples)} sample scores, {len(corpus)} corpus scores -> {out}")
    summary = sample_table.group_by(["task", "metric"]).aggregate([("value", "mean"), ("value", "count")])
    lines = [(r["task"], r["metric"], r["value_mean"], r["value_count"]) for r in summary.to_pylist()]
    lines += [(r["task"], r["metric"], r["value"], r["n"]) for r in corpus]
    return meta["variant"], sorted(lines)
