"""GEN_DIR (a variant's generations) + SOURCE_DIR (its source model's) -> OUT/judgments.parquet, OUT/verdicts.jsonl, OUT/meta.json."""

from __future__ import annotations

import argparse

HELP = "judge a variant's generations against its source model's with every configured judge"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("gen_dir", metavar="GEN_DIR", help="the pruned variant's `expertlab generate` output")
    parser.add_argument("--source", required=True, metavar="DIR", help="the source model's generations of the same group")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--params", required=True, metavar="FILE", help="study params (sections judge and judges)")


def run(args: argparse.Namespace) -> int:
    from expertlab.judging import judge_generations
    from expertlab.params import load_params

    rows, items = judge_generations(args.gen_dir, args.source, args.out, load_params(args.params), args.params)
    print(f"judge: {rows} verdict rows on {items} items -> {args.out}")
    return 0
