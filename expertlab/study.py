"""params.yaml -> the validated study, checked against what it names on disk (models, report queries)."""

from __future__ import annotations

from expertlab.params import Params


def check_study(params_path: str, queries_dir: str, allow_missing: bool = False) -> tuple[Params, list[str]]:
    """The validated params, after also checking what they name on disk, and what of that is not there yet.

    Checked: every listed model that is not the toy (its config.json routes the pruning ratios and the re-observed
    top-k of the second study), every
    calibration source that is not the toy's and every task source (their files in their format), and
    report.print's queries. A bad file is an error, and so is a model or a source not there yet unless
    `allow_missing`: then each is returned, named, so a grid can be checked and sized before its models and
    data are copied in.
    """
    from expertlab import layout
    from expertlab.data.calibration import CalibrationError, SourceMissing, check_source, location
    from expertlab.errors import ExpertlabError
    from expertlab.io import read_json
    from expertlab.moe.families import FAMILIES
    from expertlab.params import HUB_PREFIX, load_params
    from expertlab.report.queries import query_path
    from expertlab.tasks import TASKS

    params = load_params(params_path)
    missing = []
    studied = set(params.monosemanticity.models)
    for name in dict.fromkeys([*params.study.models, *params.monosemanticity.models]):
        if params.models[name].toy:
            continue
        config_path = layout.model_dir(name) / "config.json"
        if not config_path.is_file():
            missing.append(f"models.{name}: no model directory at {config_path.parent} (its ratios are checked once it is there)")
            continue
        routing = FAMILIES[params.models[name].family].routing(read_json(config_path))
        try:
            if name in params.study.models:
                params.check_ratios(name, routing.num_experts, routing.top_k)
            if name in studied:
                params.check_top_k(name, routing.num_experts, routing.top_k)
        except ValueError as err:
            raise ExpertlabError(f"{params_path}: {err}") from None
    for name, spec in params.calibrations.items():
        if spec.source == "toy":
            continue  # the toy pools are built by the prepare stage
        try:
            check_source(name, spec, location(spec, params.evaluation, layout.TOY_POOLS))
        except SourceMissing as err:
            missing.append(f"calibrations.{name}: {err}")
        except CalibrationError as err:
            raise ExpertlabError(f"{params_path}: calibrations.{name}: {err}") from None
    sources = sorted({TASKS[name].source for name in params.study.task_names if not TASKS[name].packaged} - {"toy"})
    for source in sources:
        if params.evaluation.sources.get(source, "").startswith(HUB_PREFIX):
            continue  # fetched from the hub by prepare-tasks
        where = params.evaluation.source_dir(source)
        if not where.is_dir():
            missing.append(f"evaluation: no local copy of source {source!r} at {where} (README, \"Evaluating on the real benchmarks\")")
    for name in params.report.print:
        try:
            query_path(queries_dir, name)
        except FileNotFoundError as err:
            raise ExpertlabError(f"{params_path}: report.print: {err}") from None
    if missing and not allow_missing:
        raise ExpertlabError(not_there_yet(params_path, missing))
    return params, missing


def not_there_yet(params_path: str, missing: list[str]) -> str:
    """One line naming the first input that is not there yet, and how many more."""
    more = f" (and {len(missing) - 1} more, each named by `expertlab check`)" if len(missing) > 1 else ""
    return f"{params_path}: not there yet: {missing[0]}{more}"


def grid_summary(params: Params) -> str:
    """One line: the grid's axes and how many observations and variants they make."""
    study = params.study
    grid, compare = study.quantize, study.compare
    counts = stage_instances(params)  # one variant per prune or quantize instance, one observation per observe
    observations, variants, compared, quantized = (counts[name] for name in ("observe", "prune", "prune_compared", "quantize"))
    combined = [name for name in (*study.calibrations, *compare.calibrations) if name in params.combined_calibrations]
    return (
        f"{len(study.models)} model(s), {len(study.calibrations)} calibration(s), "
        f"{len(study.seeds)} seed(s), {len(study.criteria)} criteria, {len(study.ratios)} ratio(s), "
        f"{len(study.task_names)} task(s) in {len(study.tasks)} group(s): {observations} observation(s), {variants} pruned variant(s)"
        + (f", {compared} more under {', '.join(compare.calibrations)} (study.compare)" if compared else "")
        + (f", {quantized} of them also quantized ({', '.join(grid.schemes)})" if quantized else "")
        + (f"; combined calibrations: {', '.join(combined)}" if combined else "")
    )


def stage_instances(params: Params) -> dict[str, int]:
    """How many instances of each pipeline stage the grid makes (tests/test_study.py holds this to DVC's own count)."""
    from expertlab.variants import finetuned_variants, study_variants

    study = params.study
    variants = study_variants(study)
    tuned = finetuned_variants(params.finetune)
    asked = ("explain_experts", "predict_experts")  # one instance per explainer and routing
    mono = params.monosemanticity
    routings = len(mono.models) * len(mono.top_k)  # one record per model and monosemanticity.top_k entry
    kinds = {kind: [v for v in variants if v.kind == kind] for kind in ("source", "pruned", "quantized")}
    compared = [v for v in kinds["pruned"] if v.calibration in study.compare.calibrations]
    grid = [v for v in kinds["pruned"] if v not in compared]
    groups = len(study.tasks)
    runs = {
        "select": len(study.models) * len(study.calibrations) * len(study.seeds),
        "select_compared": len(study.compare.models) * len(study.compare.calibrations) * len(study.seeds),
    }
    return {
        "check": 1, "prepare": 1, "prepare_tasks": groups,
        # else not among report's ancestors
        "train_toy": int(any(params.models[name].toy for name in (*study.models, *mono.models))),
        "calibrate": len(params.calibrations),
        "observe": len(study.models) * len(params.calibrations) * len(study.seeds),
        **{stage: routings * (len(mono.explainers) if stage in asked else 1)
           for stage in ("record_activations", "sample_experts", *asked)},
        "select_experts": len(params.finetune.models),
        **{stage: len(tuned) * (groups if stage != "finetune" else 1)
           for stage in ("finetune", "generate_finetuned", "score_finetuned")},
        **runs,
        "prune": len(grid), "prune_compared": len(compared), "quantize": len(kinds["quantized"]),
        **{f"{verb}_source": len(kinds["source"]) * groups for verb in ("generate", "score")},
        **{f"{verb}{suffix}": len(chosen) * groups
           for verb in ("generate", "score", "judge")
           for suffix, chosen in (("", grid), ("_compared", compared), ("_quantized", kinds["quantized"]))},
        "ingest": 1, "report": 1,
    }  # fmt: skip


def judge_prompts_per_item(params: Params) -> int:
    """Prompts one judge is asked per item of a judged task: each variant's output under the absolute protocol
    (the source model's once, whatever the variants), and each variant's pair with its source under the relative."""
    from expertlab.variants import study_variants

    judged = sum(variant.kind != "source" for variant in study_variants(params.study))
    sources = len(params.study.models)
    per_protocol = {"absolute": judged + sources, "relative": judged}
    return sum(per_protocol[protocol] for protocol in params.judge.protocols)


def grid_lines(params: Params) -> list[str]:
    """What the grid costs: stage instances by stage, and the judge prompts it asks."""
    counts = {name: count for name, count in stage_instances(params).items() if count}
    lines = [f"stage instances: {sum(counts.values())} ({', '.join(f'{name} {count}' for name, count in counts.items())})"]
    judges = [name for name in params.judge.judges if params.judges[name].backend != "grounding"]
    if params.judge.tasks and params.judge.judges:
        per_item = judge_prompts_per_item(params)
        items = judged_items(params)
        known = f" = {per_item * sum(items.values()) * len(params.judge.judges)} prompts" if items else ""
        counted = ", ".join(f"{task} {count}" for task, count in items.items()) if items else "items counted once prepared"
        lines.append(
            f"judge prompts: {per_item} per judged item per judge ({', '.join(params.judge.protocols)}) x judged items "
            f"({counted}) x {len(params.judge.judges)} judge(s){known}"
            + (f"; {len(judges)} of the judges are LLMs, each prompt paid once (the verdict cache)" if judges else "")
        )
    return lines


def judged_items(params: Params) -> dict[str, int]:
    """Items per judged task, from the prepared task groups (data/tasks/<group>/meta.json) capped by
    generate.limit; empty until every judged task's group is prepared."""
    from expertlab import layout
    from expertlab.records import TaskItemsMeta, read_meta

    counts = {}
    for task in params.judge.tasks:
        directory = layout.task_dir(params.study.group_of(task))
        if not (directory / "meta.json").is_file():
            return {}
        items = read_meta(directory, TaskItemsMeta).items.get(task, 0)
        counts[task] = min(items, params.generate.limit) if params.generate.limit else items
    return counts
