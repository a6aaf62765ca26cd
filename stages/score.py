"""GEN_DIR/generations.jsonl + meta.json -> OUT/sample_scores.parquet (task, sample_id, metric, value),
OUT/corpus_scores.parquet (task, metric, value, n) + OUT/meta.json."""

from __future__ import annotations

import argparse

from stages.common import add_params_argument, load_optional_params, section

HELP = "score every generation with every metric of its task"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("gen_dir", metavar="GEN_DIR", help="output directory of `expertlab generate`")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    add_params_argument(parser)


def run(args: argparse.Namespace) -> int:
    from expertlab.scoring import score_artifact

    params = load_optional_params(args)
    options = {"bertscore": section(params, "score").bertscore.model_dump()}
    _, lines = score_artifact(args.gen_dir, args.out, options)
    for task, metric, value, n in lines:
        print(f"  {task:<24} {metric:<24} {value:.4f}  (n={n})")
    return 0
