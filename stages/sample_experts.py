"""Activation records -> DIR/samples.parquet (each expert's explanation and test windows per scope), DIR/counts.parquet + DIR/meta.json."""

from __future__ import annotations

import argparse

from stages.common import add_params_argument, load_optional_params

HELP = "sample each expert's explanation windows, test positives and negatives from its activation records (the second study)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("activations", metavar="ACTIVATIONS_DIR", help="a record-activations output")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument(
        "--domains", metavar="D1,D2",
        help="target domains, each sampled within its own windows besides `all` (default: monosemanticity.domains)",
    )
    parser.add_argument("--seed", type=int, help="sampling seed (default: monosemanticity.seed)")
    add_params_argument(parser)


def run(args: argparse.Namespace) -> int:
    from expertlab.monosemanticity.sampling import sample_artifact
    from expertlab.params import Monosemanticity, MonosemanticitySampling, default

    params = load_optional_params(args)
    study = params.monosemanticity if params else None
    domains = args.domains.split(",") if args.domains else (list(study.domains) if study else [])
    seed = args.seed if args.seed is not None else (study.seed if study else default(Monosemanticity, "seed"))
    settings = study.sampling if study else MonosemanticitySampling()
    meta = sample_artifact(args.activations, args.out, domains, settings, seed)
    print(f"sample-experts: scopes {', '.join(meta.scopes)}; {meta.experts_short} (scope, layer, expert) short -> {args.out}")
    return 0
