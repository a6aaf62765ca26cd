"""The pipeline files and expertlab.layout agree: every stage instance's artifact paths are the layout's for its identity."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from expertlab import layout
from expertlab.params import NATIVE, load_params
from expertlab.monosemanticity.selection import strategy_file
from expertlab.variants import Variant, finetuned_variants, find_variant, study_variants
from tests.pipeline_study import pipeline_stages

ROOT = Path(__file__).resolve().parents[1]
CODE = ("expertlab", "stages", "schema", "queries", "params.yaml", "params.checked.json", "requirements-deepeval.lock",
        "requirements-bfcl.lock")


def declared() -> dict[str, set[str]]:
    """Each output the pipeline files declare -> the artifact paths (not code, not params) its stage reads."""
    from dvc.repo import Repo

    paths: dict[str, set[str]] = {}
    with Repo(str(ROOT)) as repo:
        for stage in repo.index.stages:
            deps = {dep.def_path for dep in stage.deps if not dep.def_path.startswith(CODE)}
            for out in stage.outs:
                paths[out.def_path] = deps
    return paths


def expected() -> dict[str, set[str]]:
    """The same, computed from the layout for the grid of params.yaml."""
    params = load_params(ROOT / "params.yaml")
    study = params.study
    evaluation = Path(params.evaluation.data_dir)
    paths = {
        str(layout.TOY_DATA): set(),
        str(layout.model_dir("toy")): {str(layout.TOY_TRAIN)},
        str(layout.STORE): {str(root) for root in (*layout.ARTIFACT_ROOTS, layout.IMPORTED)},
        str(layout.REPORT): {str(layout.STORE)},
    }
    for group in study.tasks:
        paths[str(layout.task_dir(group))] = {str(layout.TOY_TASKS), str(evaluation)}
    for calibration in params.calibrations:
        paths[str(layout.calibration_dir(calibration))] = {str(layout.TOY_POOLS), str(evaluation)}
    for model in study.models:
        for seed in study.seeds:
            for calibration in params.calibrations:
                data = str(layout.calibration_file(calibration, seed))
                paths[str(layout.observation_dir(model, calibration, seed))] = {str(layout.model_dir(model)), data}
            for calibration in study.calibrations:
                paths[str(layout.selection_dir(model, calibration, seed))] = {str(layout.model_observations(model))}
            if model in study.compare.models:
                for calibration in study.compare.calibrations:
                    paths[str(layout.selection_dir(model, calibration, seed))] = {str(layout.model_observations(model))}
    study_ = params.monosemanticity
    for model, top_k in itertools.product(study_.models, study_.top_k):
        activations, samples = str(layout.activations_dir(model, top_k)), str(layout.samples_dir(model, top_k))
        paths[activations] = {str(layout.model_dir(model)), str(layout.CALIBRATIONS)}
        paths[samples] = {activations}
        for explainer in study_.explainers:
            explanations = str(layout.explanations_dir(model, top_k, explainer))
            paths[explanations] = {activations, samples}
            paths[str(layout.predictions_dir(model, top_k, explainer))] = {activations, samples, explanations}
    for model in params.finetune.models:
        paths[str(layout.expert_selection_dir(model))] = {
            str(layout.activations_dir(model, NATIVE)), str(layout.samples_dir(model, NATIVE)),
            str(layout.explanations_dir(model, NATIVE, "x").parent), str(layout.predictions_dir(model, NATIVE, "x").parent),
        }
    for variant in finetuned_variants(params.finetune):
        checkpoint = str(layout.checkpoint_dir(variant))
        selection = layout.expert_selection_dir(variant.model) / strategy_file(variant.finetune)
        paths[checkpoint] = {str(layout.model_dir(variant.model)), str(selection), str(layout.TOY_FINETUNE), str(evaluation)}
        for group in study.tasks:
            generations = str(layout.generations_dir(variant, group))
            paths[generations] = {checkpoint, str(layout.task_dir(group))}
            paths[str(layout.scores_dir(variant, group))] = {generations}
    for variant in study_variants(study):
        checkpoint = str(layout.checkpoint_dir(variant))
        if variant.kind == "pruned":
            paths[checkpoint] = {str(layout.model_dir(variant.model)), str(layout.mask_file(variant))}
        elif variant.kind == "quantized":
            paths[checkpoint] = {str(layout.checkpoint_dir(variant.pruned)), str(layout.CALIBRATIONS)}
        for group in study.tasks:
            generations = str(layout.generations_dir(variant, group))
            paths[generations] = {checkpoint, str(layout.task_dir(group))}
            paths[str(layout.scores_dir(variant, group))] = {generations}
            if variant.kind != "source":
                paths[str(layout.judgments_dir(variant, group))] = {generations, str(layout.generations_dir(variant.source, group))}
    paths[str(layout.PARAMS_RECORD)] = set()
    return paths


def test_every_path_of_dvc_yaml_is_the_layouts():
    found, wanted = declared(), expected()
    assert sorted(set(found) - set(wanted)) == [] and sorted(set(wanted) - set(found)) == []
    for out, deps in wanted.items():
        assert found[out] == deps, out


def test_the_grid_expands_to_one_record_per_variant_with_the_ids_the_store_keys_on():
    study = load_params(ROOT / "params.yaml").study
    variants = study_variants(study)
    runs = len(study.models) * len(study.calibrations) * len(study.seeds)
    grid, compare = study.quantize, study.compare
    compared = len(compare.models) * len(compare.calibrations) * len(study.seeds) * len(compare.criteria) * len(compare.ratios)
    assert compared == 1 * 1 * 3 * 1 * 2  # the default study: dual-calibrated easy_ep at 0.5 and 0.75, three seeds
    quantized = len(grid.models) * len(study.calibrations) * len(study.seeds) * len(grid.criteria) * len(grid.ratios) * len(grid.schemes)
    assert len(variants) == len(study.models) + compared + runs * len(study.criteria) * len(study.ratios) + quantized
    assert find_variant(study, "toy:dual:2:easy_ep:0.75").kind == "pruned"
    assert len({variant.id for variant in variants}) == len(variants)
    quantized = find_variant(study, "toy:biomed:0:easy_ep:0.5:gptq-w4a16")
    assert quantized.kind == "quantized" and quantized.pruned.id == "toy:biomed:0:easy_ep:0.5"
    assert quantized.source == Variant(model="toy") and Variant(model="toy").id == "toy:source"
    assert layout.checkpoint_dir(quantized) == Path("checkpoints/toy/biomed/0/easy_ep/0.5-gptq-w4a16")
    assert layout.checkpoint_dir(quantized.source) == Path("models/toy")
    assert layout.generations_dir(quantized.source, "toy") == Path("generations/toy/source/toy")
    assert layout.mask_file(quantized) == Path("masks/toy/biomed/0/easy_ep-0.5.json")


def test_a_fine_tuned_variant_sits_beside_its_base_never_inside_it():
    tuned = Variant(model="toy", finetune="edmrs", finetune_seed=0)
    assert tuned.kind == "finetuned" and tuned.id == "toy:source:ft-edmrs-0" and tuned.base == Variant(model="toy")
    assert layout.checkpoint_dir(tuned) == Path("checkpoints/toy/source-ft-edmrs-0")
    assert layout.generations_dir(tuned, "toy") == Path("generations/toy/source-ft-edmrs-0/toy")
    pruned_then_tuned = Variant(model="toy", calibration="biomed", seed=1, criterion="reap", ratio=0.5, finetune="af", finetune_seed=2)
    assert pruned_then_tuned.id == "toy:biomed:1:reap:0.5:ft-af-2" and pruned_then_tuned.base.kind == "pruned"
    assert layout.checkpoint_dir(pruned_then_tuned) == Path("checkpoints/toy/biomed/1/reap/0.5-ft-af-2")
    record = tuned.record(None, 2)
    assert record["finetune"] == "edmrs" and record["finetune_seed"] == 0 and record["criterion"] is None
    assert Variant.from_record(record, "meta.json") == tuned


def test_a_variant_record_names_its_fields_and_a_mismatched_id_is_refused():
    variant = Variant(model="toy", calibration="biomed", seed=1, criterion="reap", ratio=0.25)
    record = variant.record(12, 2)
    assert record == {"variant_id": "toy:biomed:1:reap:0.25", "model": "toy", "calibration": "biomed", "seed": 1,
                      "criterion": "reap", "ratio": 0.25, "kept_per_layer": 12, "top_k": 2,
                      "quantization": None, "finetune": None, "finetune_seed": None}  # fmt: skip
    assert Variant.from_record(record, "meta.json") == variant
    with pytest.raises(ValueError, match=r"meta.json: variant_id 'toy:biomed:1:reap:0.5' does not match"):
        Variant.from_record({**record, "variant_id": "toy:biomed:1:reap:0.5"}, "meta.json")
    with pytest.raises(ValueError, match="a pruned variant needs calibration, seed, criterion, ratio; missing ratio"):
        Variant(model="toy", calibration="biomed", seed=1, criterion="reap")
    with pytest.raises(ValueError, match="only a pruned variant is quantized"):
        Variant(model="toy", quantization="gptq-w4a16")
    with pytest.raises(ValueError, match="a fine-tuned variant needs finetune and finetune_seed"):
        Variant(model="toy", finetune="edmrs")
    with pytest.raises(ValueError, match="a quantized variant is not fine-tuned"):
        Variant(model="toy", calibration="biomed", seed=1, criterion="reap", ratio=0.25, quantization="q", finetune="af",
                finetune_seed=0)  # fmt: skip
    with pytest.raises(KeyError, match="variant 'toy:biomed:9:reap:0.25' is not in the study's grid"):
        find_variant(load_params(ROOT / "params.yaml").study, "toy:biomed:9:reap:0.25")


def test_explain_and_predict_track_exactly_the_judge_keys_params_require_for_them():
    from expertlab.params import ASKING_KEYS

    stages = pipeline_stages()
    for stage in ("explain_experts", "predict_experts"):
        tracked = {key.removeprefix("judge.") for key in stages[stage][1]["params"] if key.startswith("judge.")}
        assert tracked == set(ASKING_KEYS), stage


def test_a_stage_address_names_its_pipeline_file_its_lock_and_its_name():
    root = Path(__file__).resolve().parents[1]
    for pipeline_file in layout.pipeline_files(root):
        address = layout.stage_address(pipeline_file, "generate@toy-biomed-0-reap-0.5-toy")
        assert layout.stage_file(address) == pipeline_file and layout.stage_name(address) == "generate@toy-biomed-0-reap-0.5-toy"
        assert layout.lock_file(pipeline_file) in layout.lock_files(root)
    assert layout.stage_address(Path("dvc.yaml"), "check") == "check"
    assert layout.lock_file(layout.stage_file("pipelines/scores/dvc.yaml:score@x")) == Path("pipelines/scores/dvc.lock")
