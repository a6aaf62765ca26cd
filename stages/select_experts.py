"""A model's activations, samples, explanations and predictions -> DIR/selections.parquet, DIR/<strategy>.json + DIR/meta.json."""

from __future__ import annotations

import argparse

HELP = "choose the experts the af and edmrs fine-tuning strategies train, from the monosemanticity scores (the second study)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model of finetune.models")
    parser.add_argument(
        "--monosemanticity", default="monosemanticity", metavar="DIR",
        help="the second study's artifacts: the model's activations, samples and the first explainer's explanations and predictions at its own top-k",
    )  # fmt: skip
    parser.add_argument("--queries", default="queries", metavar="DIR", help="where layer_monosemanticity.sql (LDS) is")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--params", required=True, metavar="FILE", help="study params: monosemanticity, finetune")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from expertlab import layout
    from expertlab.monosemanticity.selection import selection_artifact
    from expertlab.params import NATIVE, load_params

    params = load_params(args.params)
    explainer, model = params.monosemanticity.explainers[0], args.model
    relative = [layout.activations_dir(model, NATIVE), layout.samples_dir(model, NATIVE),
                layout.explanations_dir(model, NATIVE, explainer), layout.predictions_dir(model, NATIVE, explainer)]  # fmt: skip
    inputs = [Path(args.monosemanticity) / path.relative_to(layout.MONOSEMANTICITY) for path in relative]
    selection_artifact(inputs, args.queries, args.out, params, model)
    return 0
