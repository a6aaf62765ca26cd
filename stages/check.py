"""params.yaml (+ queries/) -> validated grid summary, and with --out a record that the params passed.

Runs as the DAG's first stage too: `dvc repro` after any edit of params.yaml re-runs it, fails naming
a bad key, and otherwise writes the same record, so no other stage re-runs on its account.
"""

from __future__ import annotations

import argparse

HELP = "validate params.yaml against the registries and print the grid it declares"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", metavar="FILE")
    parser.add_argument("--queries", default="queries", metavar="DIR", help="where report.print's tables are defined")
    parser.add_argument("--out", metavar="FILE", help="write a record that the params passed (the DAG's check stage)")


def check_study(params_path: str, queries_dir: str):  # noqa: ANN201 (Params, imported lazily)
    """The validated params, after also checking what they name on disk (report.print's queries)."""
    from expertlab.errors import ExpertlabError
    from expertlab.params import load_params
    from expertlab.report.queries import query_path

    params = load_params(params_path)
    for name in params.report.print:
        try:
            query_path(queries_dir, name)
        except FileNotFoundError as err:
            raise ExpertlabError(f"{params_path}: report.print: {err}") from None
    return params


def run(args: argparse.Namespace) -> int:
    params = check_study(args.params, args.queries)
    study = params.study
    observations = len(study.models) * len(study.calibrations) * len(study.seeds)
    variants = observations * len(study.criteria) * len(study.ratios)
    grid = study.quantize
    quantized = observations * len(grid.criteria) * len(grid.ratios) * len(grid.schemes)
    print(
        f"{args.params}: ok — {len(study.models)} model(s), {len(study.calibrations)} calibration set(s), "
        f"{len(study.seeds)} seed(s), {len(study.criteria)} criteria, {len(study.ratios)} ratio(s), "
        f"{len(study.task_names)} task(s) in {len(study.tasks)} group(s): {observations} observation(s), {variants} pruned variant(s)"
        + (f", {quantized} of them also quantized ({', '.join(grid.schemes)})" if quantized else "")
    )
    if args.out:
        from expertlab.io import write_json

        # the same bytes for every valid params file: stages downstream re-run only for the keys they track
        write_json(args.out, {"params": args.params, "valid": True})
    return 0
