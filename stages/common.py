"""Helpers shared by the stage entry points: optional params files and a variant's identity flags."""

from __future__ import annotations

import argparse
from pathlib import Path

from expertlab.variants import Variant


def add_params_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params",
        metavar="FILE",
        help="validated study params (e.g. params.yaml) supplying defaults for the options not given",
    )


def load_optional_params(args: argparse.Namespace):  # noqa: ANN201
    """The validated Params when --params was given, else None."""
    if not getattr(args, "params", None):
        return None
    from expertlab.params import load_params

    return load_params(args.params)


def add_variant_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags naming the pruned variant a stage writes (dvc.yaml passes its matrix item)."""
    parser.add_argument("--model", help="model name recorded with the variant (default: the directory name)")
    parser.add_argument("--calibration", help="variant identity: calibration name")
    parser.add_argument("--seed", type=int, help="variant identity: calibration seed")
    parser.add_argument("--criterion", help="variant identity: criterion")
    parser.add_argument("--ratio", type=float, help="variant identity: pruning ratio")


def variant_from_args(args: argparse.Namespace) -> Variant | None:
    """The pruned variant the identity flags name; None without a criterion (a mask from elsewhere)."""
    if args.criterion is None:
        return None
    missing = [f"--{name}" for name in ("calibration", "seed", "ratio") if getattr(args, name) is None]
    if missing:
        raise ValueError(f"--criterion names a pruned variant, which also needs {', '.join(missing)}")
    model = args.model or Path(args.model_dir).name
    return Variant(model=model, calibration=args.calibration, seed=args.seed, criterion=args.criterion, ratio=args.ratio)


def section(params, name: str, **flags: object):  # noqa: ANN001, ANN201 (a params model, imported lazily)
    """A params section (its model's defaults without params) with the flags that were given overriding it,
    validated as params are: `--batch-size 0` fails as `observe.batch_size: 0` would."""
    from pydantic import ValidationError

    from expertlab.params import Params

    model = Params.model_fields[name].annotation
    base = getattr(params, name) if params is not None else model()
    given = {key: value for key, value in flags.items() if value is not None}
    if not given:
        return base
    try:
        return model.model_validate({**base.model_dump(), **given})
    except ValidationError as err:
        problems = "; ".join(f"--{'-'.join(map(str, p['loc'])).replace('_', '-')}: {p['msg']}" for p in err.errors())
        raise ValueError(problems) from None
