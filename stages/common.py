"""Helpers shared by the stage entry points: optional params files and a variant's identity flags."""

from __future__ import annotations

import argparse
from pathlib import Path

from expertlab import layout
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


def study_parts(params, calibration: str) -> list[str]:  # noqa: ANN001
    """The calibration sets a calibration of the study is made of (its parts, or itself); needs the params."""
    if params is None:
        raise ValueError("a calibration named without its files needs --params: the study names its parts")
    if calibration not in (*params.calibrations, *params.combined_calibrations):
        raise ValueError(f"{calibration!r} is no calibration of the params (calibrations, combined_calibrations)")
    return params.calibration_parts(calibration)


def observations_to_select(args: argparse.Namespace, params) -> tuple[list[str | Path], str | None]:  # noqa: ANN001
    """The observation dirs `expertlab select` reads and the calibration they make: the OBS_DIRs given, or the
    study's run named by --study-observations ROOT --run MODEL/CALIBRATION/SEED."""
    if not args.study_observations:
        if not args.observations:
            raise ValueError("give an OBS_DIR (or --study-observations ROOT --run MODEL/CALIBRATION/SEED)")
        return args.observations, args.calibration
    model, calibration, seed = (args.run or "").rsplit("/", 2) if (args.run or "").count("/") >= 2 else ("", "", "")
    if args.observations or not seed.isdigit():
        raise ValueError("--study-observations takes --run MODEL/CALIBRATION/SEED and no OBS_DIR")
    root = Path(args.study_observations)
    return [root / layout.run_path(model, part, int(seed)) for part in study_parts(params, calibration)], calibration


def add_calibration_set_arguments(parser: argparse.ArgumentParser) -> None:
    """--data FILE... or the study's sets of one calibration (`quantize`)."""
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", nargs="+", metavar="FILE.jsonl", help='calibration set files, lines {"text": ...} or {"messages": [...]}')
    data.add_argument(
        "--calibration-sets", metavar="DIR",
        help="the study's calibration sets (data/calibration): with --calibration and --seed, the set of that "
        "calibration (a combined one's parts, together); needs --params",
    )
    parser.add_argument("--calibration", help="with --calibration-sets: the calibration the variant was pruned with")
    parser.add_argument("--seed", type=int, help="with --calibration-sets: the calibration seed")


def calibration_sets(args: argparse.Namespace, params) -> list[str | Path]:  # noqa: ANN001
    """The calibration set files the arguments of add_calibration_set_arguments name."""
    if args.data:
        return args.data
    if args.calibration is None or args.seed is None:
        raise ValueError("--calibration-sets needs --calibration and --seed")
    root = Path(args.calibration_sets)
    return [root / part / layout.calibration_set_name(args.seed) for part in study_parts(params, args.calibration)]


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
