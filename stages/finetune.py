"""Source model + its expert selection + fine-tuning demonstrations -> DIR: a fine-tuned checkpoint (a variant)."""

from __future__ import annotations

import argparse

HELP = "fine-tune a model by one strategy (full, af, edmrs, lora, ...) at one seed: a fine-tuned variant (the second study)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="the source model's directory")
    parser.add_argument("--model", required=True, help="its name under models (and finetune.models)")
    parser.add_argument("--strategy", required=True, help="a strategy of finetune.strategies")
    parser.add_argument("--seed", required=True, type=int, help="a seed of finetune.seeds")
    parser.add_argument("--selection", required=True, metavar="FILE.json", help="select-experts' <strategy>.json")
    parser.add_argument("--toy-data", default="data/toy", metavar="DIR", help="the toy world's files (finetune.data.source toy)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--params", required=True, metavar="FILE", help="study params: finetune, evaluation.data_dir")


def run(args: argparse.Namespace) -> int:
    from expertlab.finetune.run import finetune_artifact
    from expertlab.params import load_params

    finetune_artifact(
        args.model_dir, args.selection, args.out, load_params(args.params), args.model, args.strategy, args.seed, args.toy_data
    )
    return 0
