"""GEN_DIR/generations.jsonl + meta.json -> OUT/sample_scores.parquet (task, sample_id, metric, value),
OUT/corpus_scores.parquet (task, metric, value, n) + OUT/meta.json."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stages.common import add_params_argument, load_optional_params

HELP = "score every generation with every metric of its task"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("gen_dir", metavar="GEN_DIR", help="output directory of `expertlab generate`")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    add_params_argument(parser)


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


SAMPLE_SCHEMA = [("task", "string"), ("sample_id", "string"), ("metric", "string"), ("value", "float64")]
CORPUS_SCHEMA = [("task", "string"), ("metric", "string"), ("value", "float64"), ("n", "int64")]


def run(args: argparse.Namespace) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from expertlab.io import OutputDir, read_jsonl, read_meta, write_json

    params = load_optional_params(args)
    options = {"bertscore": params.score.bertscore.model_dump()} if params else {}
    gen_dir = Path(args.gen_dir)
    output = OutputDir(args.out, "score", inputs=[gen_dir])
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

    print(f"score: {meta['variant'].get('variant_id')}: {len(samples)} sample scores, {len(corpus)} corpus scores -> {args.out}")
    summary = sample_table.group_by(["task", "metric"]).aggregate([("value", "mean"), ("value", "count")])
    lines = [(r["task"], r["metric"], r["value_mean"], r["value_count"]) for r in summary.to_pylist()]
    lines += [(r["task"], r["metric"], r["value"], r["n"]) for r in corpus]
    for task, metric, value, n in sorted(lines):
        print(f"  {task:<24} {metric:<24} {value:.4f}  (n={n})")
    return 0
