"""GEN_DIR/generations.jsonl + meta.json -> OUT/sample_scores.parquet (task, sample_id, metric, value) + OUT/meta.json."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

HELP = "score every generation with every metric of its task"

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("gen_dir", metavar="GEN_DIR", help="output directory of `expertlab generate`")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")


def score_generations(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Long-format scores for generation rows {"task", "sample_id", "output", "target", "choices"}, sorted."""
    from expertlab.metrics import score_items
    from expertlab.tasks import TASKS

    by_task: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_task.setdefault(row["task"], []).append(row)
    scores = []
    for name, task_rows in by_task.items():
        items = [{"id": row["sample_id"], "target": row["target"], "choices": row.get("choices")} for row in task_rows]
        scores += score_items(TASKS[name], items, [row["output"] for row in task_rows])
    return sorted(scores, key=lambda s: (s["task"], s["sample_id"], s["metric"]))


def run(args: argparse.Namespace) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from expertlab.io import atomic_dir, read_json, read_jsonl, write_json

    gen_dir = Path(args.gen_dir)
    meta = read_json(gen_dir / "meta.json")
    if meta.get("kind") != "generations":
        raise ValueError(f"{gen_dir / 'meta.json'}: kind is {meta.get('kind')!r}, expected 'generations'")
    scores = score_generations(read_jsonl(gen_dir / "generations.jsonl"))
    schema = pa.schema([("task", pa.string()), ("sample_id", pa.string()), ("metric", pa.string()), ("value", pa.float64())])
    table = pa.Table.from_pylist(scores, schema=schema)
    with atomic_dir(args.out) as tmp:
        pq.write_table(table, tmp / "sample_scores.parquet")
        write_json(tmp / "meta.json", {"kind": "scores", "variant": meta["variant"]})

    print(f"score: {meta['variant'].get('variant_id')}: {len(scores)} scores -> {args.out}")
    summary = table.group_by(["task", "metric"]).aggregate([("value", "mean"), ("value", "count")])
    for row in sorted(summary.to_pylist(), key=lambda r: (r["task"], r["metric"])):
        print(f"  {row['task']:<20} {row['metric']:<18} mean {row['value_mean']:.4f}  (n={row['value_count']})")
    return 0
