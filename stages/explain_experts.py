"""Activation records + samples -> DIR/explanations.parquet (one per scope, layer, expert) + DIR/meta.json."""

from __future__ import annotations

import argparse

HELP = "explain each expert from its strongest windows (P_mono, P_domain), by an LLM or the offline stand-in (the second study)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("activations", metavar="ACTIVATIONS_DIR", help="a record-activations output")
    parser.add_argument("samples", metavar="SAMPLES_DIR", help="a sample-experts output of those records")
    parser.add_argument("--explainer", metavar="NAME", help="one of monosemanticity.explainers (default: the first)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--params", required=True, metavar="FILE", help="study params: monosemanticity, judges, judge")


def run(args: argparse.Namespace) -> int:
    from expertlab.monosemanticity.interpret import explain_artifact
    from expertlab.params import load_params

    params = load_params(args.params)
    if args.explainer is not None and args.explainer not in params.monosemanticity.explainers:
        from expertlab.errors import UnknownName

        raise UnknownName(
            f"--explainer {args.explainer!r} is not in monosemanticity.explainers ({', '.join(params.monosemanticity.explainers)})"
        )
    explain_artifact(args.activations, args.samples, args.out, params, args.explainer)
    return 0
