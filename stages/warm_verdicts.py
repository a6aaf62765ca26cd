"""judgments artifacts below DIR (their verdicts.jsonl) -> the verdict cache of every LLM judge (judge.cache_dir)."""

from __future__ import annotations

import argparse

HELP = "take the verdicts of pulled judgments artifacts into the verdict cache, so none is paid for again"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="directories of judgments artifacts (e.g. judgments)")
    parser.add_argument("--params", required=True, metavar="FILE", help="study params (judge.judges, judge.cache_dir)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from expertlab.judging import llm_judges, warm_cache
    from expertlab.params import load_params

    params = load_params(args.params)
    for directory in args.dirs:
        added = warm_cache(Path(params.judge.cache_dir), Path(directory), llm_judges(params))
        print(f"warm-verdicts: {added} verdicts taken into the cache from artifacts below {directory}")
    return 0
