"""The dispatch config file (default `dispatch.yaml`, absent: every default): where jobs run and what they get.

Nothing here is tracked by DVC: it says how the study's stage instances are spread over machines, never what they
compute, so changing it re-runs nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from expertlab.params import Strict

# the stages that generate from a model, one instance per (variant, task group)
GENERATE_STAGES = ("generate_source", "generate", "generate_compared", "generate_quantized", "generate_finetuned")
# the stages that load a model to generate or train: one GPU each unless the config says otherwise
GPU_STAGES = (*GENERATE_STAGES, "finetune", "quantize")
# the stages that score generations on a CPU, seconds an instance: sent in batches (config `batch`)
SCORE_STAGES = ("score_source", "score", "score_compared", "score_quantized", "score_finetuned")


class Slurm(Strict):
    """What a SLURM job array asks for (submitit's slurm_* parameters)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    additional: dict[str, Any] = {}  # any other sbatch option, by its long name without dashes


class DispatchConfig(Strict):
    executor: Literal["local", "slurm"] = "local"  # local: submitit's local executor, the same code path on this machine
    # job files, logs, outcomes and clones (on a cluster: storage every node sees), relative to the study's root
    work_dir: str = ".expertlab/dispatch"
    # every clone's .expertlab/ is this directory, so the verdict cache, partial generations and fine-tuning
    # checkpoints are shared (flock'd; on a cluster, storage every node sees with coherent flock, such as NFSv4)
    shared_dir: str = ".expertlab"
    cache_dir: str | None = None  # the DVC cache every clone uses; default: the study's own (`dvc cache dir`)
    # without storage the nodes share: a DVC remote of the study (`dvc remote add`); each clone then keeps its own
    # cache, pulls what it needs (`dvc repro --pull`) and pushes its outputs and run-cache (`dvc push --run-cache`),
    # and the coordinator pulls the run-cache before its `dvc repro`; checkpoints are never pushed (push: false),
    # so a job that needs one prunes it again
    remote: str | None = None
    cache_shared: Literal["group"] | None = None  # DVC's cache.shared in clones: group-writable cache files
    cache_type: str | None = None  # DVC's cache.type in clones (e.g. "symlink,hardlink" on a shared filesystem)
    max_concurrent: int = Field(default=2, gt=0)  # jobs running at once (SLURM: the array's parallelism)
    max_retries: int = Field(default=1, ge=0)  # a failed or preempted job runs again at most this often
    timeout_min: int = Field(default=240, gt=0)  # per job
    cpus_per_task: int = Field(default=2, gt=0)
    mem_gb: int | None = Field(default=None, gt=0)
    gpus: dict[str, int] = {stage: 1 for stage in GPU_STAGES}  # per stage name (in any pipeline file); absent: none
    # local: the GPU ids handed out, one set per job at a time (N local workers with one GPU each); empty: no GPU
    visible_gpus: list[int] = []
    # stages whose instances of one wave that load the same model share one job (one clone, the model checked
    # out once): by default, each variant's task groups
    group_stages: list[str] = list(GENERATE_STAGES)
    # stages whose instances of one wave go out in jobs of at most this many (in name order, so a variant's task
    # groups sit together): instances of seconds, where a job of its own would cost more than the work
    batch: dict[str, Annotated[int, Field(gt=0)]] = {stage: 16 for stage in SCORE_STAGES}
    coordinator: list[str] = ["ingest", "report"]  # stages the coordinator runs itself at the end, from one process
    keep_clones: bool = False  # keep a finished job's clone (a failed job's is always kept, for its logs)
    slurm: Slurm = Field(default_factory=Slurm)

    def gpus_for(self, stage: str) -> int:
        return self.gpus.get(stage, 0)


def load_config(path: str | Path | None) -> DispatchConfig:
    """The config at `path`; None, or the default path absent: every default."""
    from expertlab.errors import ExpertlabError, validation_problems
    from expertlab.params import read_yaml

    if path is None or not Path(path).exists():
        if path is not None and Path(path).name != DEFAULT_PATH:
            raise FileNotFoundError(f"dispatch config not found: {path}")
        return DispatchConfig()
    data = read_yaml(Path(path)) or {}
    if not isinstance(data, dict):
        raise ExpertlabError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return DispatchConfig.model_validate(data)
    except ValidationError as err:
        problems = validation_problems(err, show_input=True)
        raise ExpertlabError(f"{path}: " + "; ".join(problems)) from None


DEFAULT_PATH = "dispatch.yaml"
