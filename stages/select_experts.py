"""A model's activations, samples, explanations and predictions -> DIR/selections.parquet + DIR/meta.json."""

from __future__ import annotations

import argparse

HELP = "choose the experts the af and edmrs fine-tuning strategies train, from the monosemanticity scores (the second study)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model of finetune.models")
    parser.add_argument(
        "inputs", nargs=4, metavar="DIR",
        help="the model's record-activations, sample-experts, explain-experts and predict-experts outputs",
    )
    parser.add_argument("--queries", default="queries", metavar="DIR", help="where layer_monosemanticity.sql (LDS) is")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--params", required=True, metavar="FILE", help="study params: monosemanticity, finetune")


def run(args: argparse.Namespace) -> int:
    from expertlab.monosemanticity.selection import selection_artifact
    from expertlab.params import load_params

    selection_artifact(args.inputs, args.queries, args.out, load_params(args.params), args.model)
    return 0
