"""Activation records + samples + explanations -> DIR/predictions.parquet (one per test window shown) + DIR/meta.json."""

from __future__ import annotations

import argparse

HELP = "predict from each explanation which test windows route to the expert, by an LLM or the offline stand-in (the second study)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("activations", metavar="ACTIVATIONS_DIR", help="a record-activations output")
    parser.add_argument("samples", metavar="SAMPLES_DIR", help="a sample-experts output of those records")
    parser.add_argument("explanations", metavar="EXPLANATIONS_DIR", help="an explain-experts output of those samples")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--params", required=True, metavar="FILE", help="study params: monosemanticity.predictor, judges, judge")


def run(args: argparse.Namespace) -> int:
    from expertlab.monosemanticity.interpret import predict_artifact
    from expertlab.params import load_params

    predict_artifact(args.activations, args.samples, args.explanations, args.out, load_params(args.params))
    return 0
