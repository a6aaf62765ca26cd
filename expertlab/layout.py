"""Identity -> artifact path: where every artifact of a study lives, relative to the study's root.

The pipeline files (dvc.yaml and pipelines/*/dvc.yaml) write the same paths with their matrix items
(tests/test_layout.py holds the two together); code that needs a path of the study asks here instead of rebuilding it.
"""

from __future__ import annotations

from pathlib import Path

from expertlab.variants import Variant

PARAMS_RECORD = Path("params.checked.json")  # the check stage's record that the params passed
TOY_DATA = Path("data/toy")  # the toy world: training corpus, pools, calibration sets, task files
TOY_TRAIN = TOY_DATA / "train.jsonl"
TOY_TASKS = TOY_DATA / "tasks"
TOY_FINETUNE = TOY_DATA / "finetune"  # one JSONL of {prompt, response} demonstrations per domain, for fine-tuning
TOY_POOLS = TOY_DATA / "pools"  # one JSONL of texts per domain: what toy calibrations draw from
CALIBRATIONS = Path("data/calibration")  # one directory per calibration set, one file per seed
TASKS = Path("data/tasks")  # one directory per task group
MODELS = Path("models")  # source models, one Hugging Face directory each
OBSERVATIONS = Path("observations")
MASKS = Path("masks")
CHECKPOINTS = Path("checkpoints")  # pruned (and quantized) variants' model directories
GENERATIONS = Path("generations")
SCORES = Path("scores")
JUDGMENTS = Path("judgments")
IMPORTED = Path("imported")  # artifacts of `expertlab import-masks` / `import-judgments`
MONOSEMANTICITY = Path("monosemanticity")  # the second study's artifacts, one directory per model (in git: its README)
STORE = Path("results.duckdb")
REPORT = Path("report")
ARTIFACT_ROOTS = (OBSERVATIONS, MASKS, GENERATIONS, SCORES, JUDGMENTS, MONOSEMANTICITY)  # what ingest loads (and IMPORTED)


PIPELINE = Path("dvc.yaml")  # the study's first and last stages
PIPELINES = Path("pipelines")  # one directory per artifact kind the grid multiplies, each with a dvc.yaml and a dvc.lock


def pipeline_files(root: str | Path = ".") -> list[Path]:
    """The study's DAG as DVC reads it: dvc.yaml, then pipelines/*/dvc.yaml (paths relative to `root`; README,
    "Pipeline files", says why it is split)."""
    found = sorted(path.relative_to(root) for path in Path(root).glob(f"{PIPELINES}/*/{PIPELINE}"))
    return [PIPELINE, *found]


def stage_address(pipeline_file: Path, name: str) -> str:
    """How DVC addresses stage instance `name` of `pipeline_file` (relative to the study's root): the name alone in
    dvc.yaml, else the file, ":" and the name (`pipelines/generations/dvc.yaml:generate@toy-biomed-0-reap-0.5-toy`)."""
    return name if pipeline_file == PIPELINE else f"{pipeline_file.as_posix()}:{name}"


def stage_name(address: str) -> str:
    """A stage instance's name from its address (stage_address); names are unique over the pipeline files."""
    return address.rsplit(":", 1)[-1]


def lock_files(root: str | Path = ".") -> list[Path]:
    """The dvc.lock beside each pipeline file (present once DVC has run one of its stages)."""
    return [lock_file(path) for path in pipeline_files(root)]


def lock_file(pipeline_file: Path) -> Path:
    """The dvc.lock that records the stage instances of `pipeline_file`."""
    return pipeline_file.with_name("dvc.lock")


def stage_file(address: str) -> Path:
    """The pipeline file of a stage instance's address (stage_address)."""
    file, _, _ = address.rpartition(":")
    return Path(file) if file else PIPELINE


def calibration_set_name(seed: int) -> str:
    return f"seed{seed}.jsonl"


def calibration_dir(calibration: str) -> Path:
    return CALIBRATIONS / calibration


def calibration_file(calibration: str, seed: int) -> Path:
    return calibration_dir(calibration) / calibration_set_name(seed)


def task_dir(group: str) -> Path:
    return TASKS / group


def model_dir(model: str) -> Path:
    return MODELS / model


def run_path(model: str, calibration: str, seed: int) -> Path:
    """One calibration run's place below observations/ and masks/."""
    return Path(model) / calibration / str(seed)


def model_observations(model: str) -> Path:
    """Every observation of a model: what a selection reads its calibration's (or its parts') from."""
    return OBSERVATIONS / model


def observation_dir(model: str, calibration: str, seed: int) -> Path:
    return OBSERVATIONS / run_path(model, calibration, seed)


def selection_dir(model: str, calibration: str, seed: int) -> Path:
    return MASKS / run_path(model, calibration, seed)


def mask_file_name(criterion: str, ratio: float) -> str:
    """`reap-0.5.json`: the ratio written as Python writes the float, as DVC writes a matrix item."""
    return f"{criterion}-{float(ratio)}.json"


def mask_file(variant: Variant) -> Path:
    pruned = variant.pruned
    return selection_dir(pruned.model, pruned.calibration, pruned.seed) / mask_file_name(pruned.criterion, pruned.ratio)  # type: ignore[arg-type]


def checkpoint_dir(variant: Variant) -> Path:
    """The model directory a variant is evaluated from: the source's own, or its pruned (quantized) checkpoint."""
    return model_dir(variant.model) if variant.kind == "source" else CHECKPOINTS / variant.path


def generations_dir(variant: Variant, group: str) -> Path:
    return GENERATIONS / variant.path / group


def scores_dir(variant: Variant, group: str) -> Path:
    return SCORES / variant.path / group


def judgments_dir(variant: Variant, group: str) -> Path:
    return JUDGMENTS / variant.path / group


def routing_dir(model: str, top_k: int | str) -> Path:
    """A model's monosemanticity artifacts at one monosemanticity.top_k entry (native: its own routing)."""
    return MONOSEMANTICITY / model / "top_k" / str(top_k)


def activations_dir(model: str, top_k: int | str) -> Path:
    """A model's activation records on the monosemanticity corpus."""
    return routing_dir(model, top_k) / "activations"


def samples_dir(model: str, top_k: int | str) -> Path:
    """The windows sampled from them for each expert's explainer and predictor."""
    return routing_dir(model, top_k) / "samples"


def explanations_dir(model: str, top_k: int | str, explainer: str) -> Path:
    """Each sampled expert's explanation by one explainer, per scope."""
    return routing_dir(model, top_k) / "explanations" / explainer


def predictions_dir(model: str, top_k: int | str, explainer: str) -> Path:
    """The predictor's answer for each test window of each expert that explainer explained."""
    return routing_dir(model, top_k) / "predictions" / explainer


def expert_selection_dir(model: str) -> Path:
    """The experts each selective fine-tuning strategy trains, by their scores."""
    return MONOSEMANTICITY / model / "selection"
