"""params.yaml -> the validated study, checked against what it names on disk (models, report queries)."""

from __future__ import annotations

from expertlab.params import Params


def check_study(params_path: str, queries_dir: str) -> Params:
    """The validated params, after also checking what they name on disk: every listed model that is not
    the toy (its config.json routes the pruning ratios), every calibration source that is not the toy's
    (its files are there, in their format) and report.print's queries."""
    from expertlab import layout
    from expertlab.data.calibration import check_source, location
    from expertlab.errors import ExpertlabError
    from expertlab.io import read_json
    from expertlab.moe.families import FAMILIES
    from expertlab.params import load_params
    from expertlab.report.queries import query_path

    params = load_params(params_path)
    for name in params.study.models:
        if params.models[name].toy:
            continue
        config_path = layout.model_dir(name) / "config.json"
        if not config_path.is_file():
            raise ExpertlabError(f"{params_path}: models.{name}: no model directory at {config_path.parent} (config.json missing)")
        routing = FAMILIES[params.models[name].family].routing(read_json(config_path))
        try:
            params.check_ratios(name, routing.num_experts, routing.top_k)
        except ValueError as err:
            raise ExpertlabError(f"{params_path}: {err}") from None
    for name, spec in params.calibrations.items():
        if spec.source == "toy":
            continue  # the toy pools are built by the prepare stage
        try:
            check_source(name, spec, location(spec, params.evaluation, layout.TOY_POOLS))
        except ValueError as err:
            raise ExpertlabError(f"{params_path}: calibrations.{name}: {err}") from None
    for name in params.report.print:
        try:
            query_path(queries_dir, name)
        except FileNotFoundError as err:
            raise ExpertlabError(f"{params_path}: report.print: {err}") from None
    return params


def grid_summary(params: Params) -> str:
    """One line: the grid's axes and how many observations and variants they make."""
    study = params.study
    observations = len(study.models) * len(params.calibrations) * len(study.seeds)
    runs = len(study.models) * len(study.calibrations) * len(study.seeds)
    variants = runs * len(study.criteria) * len(study.ratios)
    grid, compare = study.quantize, study.compare
    quantized = len(grid.models) * len(study.calibrations) * len(study.seeds) * len(grid.criteria) * len(grid.ratios) * len(grid.schemes)
    compared = len(compare.models) * len(compare.calibrations) * len(study.seeds) * len(compare.criteria) * len(compare.ratios)
    combined = [name for name in (*study.calibrations, *compare.calibrations) if name in params.combined_calibrations]
    return (
        f"{len(study.models)} model(s), {len(study.calibrations)} calibration(s), "
        f"{len(study.seeds)} seed(s), {len(study.criteria)} criteria, {len(study.ratios)} ratio(s), "
        f"{len(study.task_names)} task(s) in {len(study.tasks)} group(s): {observations} observation(s), {variants} pruned variant(s)"
        + (f", {compared} more under {', '.join(compare.calibrations)} (study.compare)" if compared else "")
        + (f", {quantized} of them also quantized ({', '.join(grid.schemes)})" if quantized else "")
        + (f"; combined calibrations: {', '.join(combined)}" if combined else "")
    )
