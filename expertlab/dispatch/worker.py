"""One dispatched job: a clone of the coordinator's commit on the shared DVC cache, `dvc repro` of its targets.

The job clones the study's git repo at the coordinator's commit, points DVC at the shared cache (or, without one,
pulls from and pushes to a DVC remote), links the clone's `.expertlab/` to the shared directory (verdict cache,
partial generations, fine-tuning checkpoints), checks out the data its targets depend on (`.dvc` files), and runs
`dvc repro --single-item` over its targets' upstream instances, then the targets, in DAG order (the coordinator's
plan lists them): an instance already computed somewhere comes from DVC's run-cache, so it is checked out, not
run again. This is what `dvc repro <target>` would go through, without its walk of the whole DAG, which expands
every stage of the study first (26-30 s a job at the paper grid's 8299 instances; README, "Running on a
cluster"). DVC commits a stage's outputs to the cache only after its command succeeded, so a job killed
mid-stage leaves nothing in the cache. The job's log and outcome land in the dispatch work directory; a failed
job's clone is kept for inspection, a finished one's removed.

The clone's dvc.lock files start empty: DVC rewrites a whole dvc.lock after every instance it runs or restores,
and a lock committed with the paper grid's thousands of entries would cost each job seconds per instance for
entries it never reads (its targets' upstream instances come from the run-cache either way). The outcome carries
the targets' own lock entries, which the coordinator writes into its dvc.lock files in one go.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from expertlab import layout

RAN = re.compile(r"Running stage '([^']+)'")  # DVC's output names a stage instance by its address
RESTORED = re.compile(r"Stage '([^']+)' is cached - skipping run")


def said(pattern: re.Pattern[str], text: str) -> list[str]:
    """The stage instances DVC's output `text` names in `pattern` (RAN, RESTORED), by name."""
    return [layout.stage_name(address) for address in pattern.findall(text)]


@dataclass(frozen=True)
class JobSpec:
    """Everything a job needs, as plain values (submitit pickles it to the worker)."""

    targets: list[str]  # the instances it is sent to compute (their addresses)
    steps: list[str]  # what its `dvc repro --single-item` goes through: the targets and their upstream (plan.Job.steps)
    sources: list[str]  # the .dvc files of the data they depend on (plan.Job.sources)
    slug: str  # the job's file name (plan.Job.slug)
    dispatch: int  # which dispatch of this work directory sent it: 1, 2, ...
    attempt: int  # 0 for the first run, then 1, 2, ... for retries
    origin: str  # the coordinator's git repo (absolute)
    commit: str
    work_dir: str  # the dispatch work directory (absolute)
    cache_dir: str | None  # the shared DVC cache (absolute); None: the clone's own (with `remote`)
    shared_dir: str  # what the clone's .expertlab/ links to (absolute)
    remote: str | None = None  # no shared cache: pull from and push to this DVC remote
    cache_shared: str | None = None
    cache_type: str | None = None
    keep_clone: bool = False
    bin_dir: str = os.path.dirname(sys.executable)  # where expertlab and dvc are (put first on PATH)

    @property
    def name(self) -> str:
        """<slug>.<dispatch>.<attempt>: the job's log, outcome and clone (one run never overwrites another's)."""
        return f"{self.slug}.{self.dispatch}.{self.attempt}"

    def log_path(self) -> Path:
        return Path(self.work_dir) / "logs" / f"{self.name}.log"

    def outcome_path(self) -> Path:
        return Path(self.work_dir) / "outcomes" / f"{self.name}.json"


def dvc_environment(bin_dir: str = os.path.dirname(sys.executable)) -> dict[str, str]:
    """This environment with `bin_dir` (where expertlab and dvc are) first on PATH, for `dvc` and its stage commands."""
    return dict(os.environ, PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]), DVC_NO_ANALYTICS="1")


def _run(args: list[str], cwd: Path, env: dict[str, str], log: Any) -> int:
    log.write(f"$ {' '.join(args)}\n")
    log.flush()
    return subprocess.call(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)


def prepare_clone(spec: JobSpec, clone: Path, env: dict[str, str], log: Any) -> int:
    """The coordinator's commit checked out at `clone`, DVC on the shared cache, .expertlab/ shared; 0 on success."""
    if clone.exists():
        shutil.rmtree(clone)  # a requeued job's leftovers
    clone.parent.mkdir(parents=True, exist_ok=True)
    code = _run(["git", "clone", "--quiet", "--shared", "--no-checkout", spec.origin, str(clone)], clone.parent, env, log)
    if code != 0:
        return code
    dvc = [sys.executable, "-m", "dvc"]
    steps = [["git", "checkout", "--quiet", spec.commit]]
    if spec.cache_dir:
        steps.append([*dvc, "config", "--local", "cache.dir", spec.cache_dir])
    if spec.cache_shared:
        steps.append([*dvc, "config", "--local", "cache.shared", spec.cache_shared])
    if spec.cache_type:
        steps.append([*dvc, "config", "--local", "cache.type", spec.cache_type])
    if spec.remote:  # `dvc repro --pull` pulls from the default remote only
        steps.append([*dvc, "remote", "default", "--local", spec.remote])
    for step in steps:
        code = _run(step, clone, env, log)
        if code != 0:
            return code
    for lock in layout.lock_files(clone):  # see the module docstring
        (clone / lock).unlink(missing_ok=True)
    Path(spec.shared_dir).mkdir(parents=True, exist_ok=True)
    (clone / ".expertlab").symlink_to(spec.shared_dir, target_is_directory=True)
    return 0


def lock_entries(clone: Path, targets: list[str]) -> dict[str, dict[str, Any]]:
    """The dvc.lock entries DVC wrote in `clone` for the stage instances at `targets` (their addresses), by lock
    file (relative to the study's root) and name; an instance DVC has not recorded is left out."""
    from ruamel.yaml import YAML  # YAML 1.2, as DVC reads and writes its locks

    wanted: dict[Path, set[str]] = {}
    for address in targets:
        wanted.setdefault(layout.lock_file(layout.stage_file(address)), set()).add(layout.stage_name(address))
    entries: dict[str, dict[str, Any]] = {}
    for lock, names in wanted.items():
        path = clone / lock
        stages = (YAML(typ="safe").load(path.read_text()) or {}).get("stages", {}) if path.exists() else {}
        entries[lock.as_posix()] = {name: entry for name, entry in stages.items() if name in names}
    return entries


def run_job(spec: JobSpec) -> dict[str, Any]:
    """Run one job (see the module docstring); its outcome, also written to <work_dir>/outcomes/<name>.json."""
    from expertlab.io import write_json

    started = time.time()
    clone = Path(spec.work_dir) / "clones" / spec.name
    env = dvc_environment(spec.bin_dir)
    spec.log_path().parent.mkdir(parents=True, exist_ok=True)
    with spec.log_path().open("w") as log:
        log.write(f"dispatch job {spec.name} on {socket.gethostname()}: {' '.join(spec.targets)} at {spec.commit}\n")
        code = prepare_clone(spec, clone, env, log)
        pull = ["--pull", "--allow-missing"] if spec.remote else []
        if code == 0 and spec.sources:
            code = _run([sys.executable, "-m", "dvc", "pull" if spec.remote else "checkout", *spec.sources], clone, env, log)
        if code == 0:
            code = _run([sys.executable, "-m", "dvc", "repro", "--single-item", *pull, *spec.steps], clone, env, log)
        if code == 0 and spec.remote:
            code = _run([sys.executable, "-m", "dvc", "push", "--run-cache", "-r", spec.remote, *spec.targets], clone, env, log)
    text = spec.log_path().read_text(errors="replace")
    outcome = {
        **{key: value for key, value in asdict(spec).items() if key in ("targets", "slug", "dispatch", "attempt", "commit")},
        "returncode": code,
        "seconds": round(time.time() - started, 3),
        "ran": said(RAN, text),
        "restored": said(RESTORED, text),
        "host": socket.gethostname(),
        "log": str(spec.log_path()),
        "clone": str(clone) if code != 0 or spec.keep_clone else None,
        "locked": lock_entries(clone, spec.targets) if code == 0 else {},
    }
    spec.outcome_path().parent.mkdir(parents=True, exist_ok=True)
    write_json(spec.outcome_path(), outcome)
    if code == 0 and not spec.keep_clone:
        shutil.rmtree(clone, ignore_errors=True)
    return outcome


class StageJob:
    """A submitit callable: runs the job, and on preemption or timeout asks submitit to requeue it (the stage
    restarts from scratch in a fresh clone; what finished before is in the run-cache)."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec

    def __call__(self) -> dict[str, Any]:
        return run_job(self.spec)

    def checkpoint(self) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(StageJob(self.spec))


def read_outcomes(work_dir: str | Path) -> list[dict[str, Any]]:
    """Every outcome a job of this work directory wrote, in file order."""
    directory = Path(work_dir) / "outcomes"
    return [json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))] if directory.is_dir() else []
