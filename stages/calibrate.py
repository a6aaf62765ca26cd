"""params (calibrations.<name>, study.seeds, evaluation) -> OUT/seed<s>.jsonl: one calibration set per seed, from its source."""

from __future__ import annotations

import argparse

HELP = "draw one calibration set per seed from its source (the toy pools, or local copies of the official files)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", metavar="FILE", help="study params (default params.yaml)")
    parser.add_argument("--calibration", required=True, metavar="NAME", help="a calibration set under params `calibrations`")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory, e.g. data/calibration/NAME")


def run(args: argparse.Namespace) -> int:
    from expertlab import layout
    from expertlab.data.calibration import location, write_sets
    from expertlab.errors import UnknownName
    from expertlab.params import load_params

    params = load_params(args.params)
    if args.calibration not in params.calibrations:
        raise UnknownName(f"calibrations: no calibration set {args.calibration!r} (defined: {', '.join(params.calibrations)})")
    spec = params.calibrations[args.calibration]
    where = location(spec, params.evaluation, layout.TOY_POOLS)
    counts = write_sets(args.calibration, spec, where, params.study.seeds, args.out)
    print(f"calibrate: {args.calibration} ({spec.source}, {where}): {len(counts)} seed(s) x {spec.samples} records -> {args.out}")
    return 0
