"""`expertlab dispatch`: a study's stale stage instances as submitit jobs, wave by wave, then one `dvc repro` here.

DVC runs one stage at a time in a workspace, so the grid is spread the way its maintainers recommend: separate
clones sharing one cache. Each wave of the plan (plan.py) goes out as jobs (worker.py), each in its own clone of
this commit; a failed or killed job runs again up to `max_retries` times; the next wave starts when the last one
has finished. At the end the coordinator writes the lock entries the jobs recorded for their instances into its
own dvc.lock files, one write per file, checks their outputs out of the cache, and runs its own `dvc repro`, which
finds them up to date and runs what is left (ingest, report). (A `dvc repro` that restored each instance from the
run-cache would do the same, but rewrites a whole dvc.lock after each one: quadratic in the grid, hours at the
paper's size; README, "Running on a cluster".) Whatever no job recorded, the repro restores from the run-cache.

A ledger (<work_dir>/ledger.json) keeps the instances finished at each commit, so a dispatch after a failure at
the same commit sends out only what did not finish. Another commit plans afresh (its jobs restore from the
run-cache whatever its inputs did not change).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expertlab import layout
from expertlab.dispatch.config import DispatchConfig
from expertlab.dispatch.plan import Job, Plan, jobs, plan
from expertlab.dispatch.worker import RAN, RESTORED, JobSpec, StageJob, dvc_environment, read_outcomes, said
from expertlab.errors import ExpertlabError


CHECKOUT = ["checkout", "--allow-missing"]  # the outputs the dvc.lock files name, out of the cache (an instance no
# lock records yet, such as one not dispatched, is left to the repro)


@dataclass
class DispatchReport:
    plan: Plan
    outcomes: list[dict[str, Any]] = field(default_factory=list)  # every job run, retries included
    failed: list[dict[str, Any]] = field(default_factory=list)  # jobs that failed every attempt
    skipped: list[str] = field(default_factory=list)  # instances the ledger says finished at this commit
    recorded: list[str] = field(default_factory=list)  # instances whose jobs' lock entries the coordinator wrote
    final_ran: list[str] = field(default_factory=list)  # stages the coordinator's `dvc repro` ran
    final_restored: list[str] = field(default_factory=list)
    returncode: int = 0


def git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise ExpertlabError(f"dispatch: git {' '.join(args)} failed in {root}: {result.stderr.strip()}")
    return result.stdout


def committed_state(root: Path) -> str:
    """HEAD's commit, after checking that what the jobs clone is what is here: no tracked file but the dvc.lock
    files (the coordinator's own record, rewritten by its final `dvc repro`) differs from it (the jobs see only
    committed files)."""
    locks = {path.as_posix() for path in layout.lock_files(root)}
    dirty = [
        line[3:] for line in git(root, "status", "--porcelain", "--untracked-files=no").splitlines()
        if line[3:] not in locks
    ]  # fmt: skip
    if dirty:
        more = f" (and {len(dirty) - 1} more)" if len(dirty) > 1 else ""
        raise ExpertlabError(
            f"dispatch: {dirty[0]}{more} has changes that are not committed; the jobs run on clones of the "
            "commit, so commit them first"
        )
    return git(root, "rev-parse", "HEAD").strip()


def dvc_cache_dir(root: Path) -> Path:
    out = subprocess.run([sys.executable, "-m", "dvc", "cache", "dir"], cwd=root, capture_output=True, text=True)
    if out.returncode != 0:
        raise ExpertlabError(f"dispatch: `dvc cache dir` failed in {root}: {out.stderr.strip()}")
    return Path(out.stdout.strip()).resolve()


def check_default_remote(root: Path, remote: str) -> None:
    """`remote` is the study's default DVC remote: `dvc repro --pull`, which restores an instance's outputs from
    it, takes no other (the jobs' clones set it for themselves; the coordinator's own repro needs it too)."""
    out = subprocess.run([sys.executable, "-m", "dvc", "remote", "default"], cwd=root, capture_output=True, text=True)
    default = out.stdout.strip() if out.returncode == 0 else None
    if default != remote:
        raise ExpertlabError(
            f"dispatch: remote {remote!r} is not the study's default DVC remote ({default or 'none is set'}); "
            f"`dvc repro --pull` pulls only from the default: `dvc remote default {remote}`, or name the default"
        )


class Ledger:
    """<work_dir>/ledger.json: how many dispatches this work directory has seen, and the instances finished at
    each commit (written after every wave)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        data = json.loads(path.read_text()) if path.exists() else {}
        self.dispatches: int = data.get("dispatches", 0)
        self.done: dict[str, list[str]] = data.get("finished", {})

    def finished(self, commit: str) -> set[str]:
        return set(self.done.get(commit, []))

    def start(self) -> int:
        """The number of the dispatch starting now."""
        self.dispatches += 1
        self._write()
        return self.dispatches

    def add(self, commit: str, names: Sequence[str]) -> None:
        self.done[commit] = sorted(self.finished(commit) | set(names))
        self._write()

    def _write(self) -> None:
        from expertlab.io import write_json

        write_json(self.path, {"dispatches": self.dispatches, "finished": self.done})


def make_executor(config: DispatchConfig, folder: Path) -> Any:
    import submitit

    if config.executor == "local":
        executor = submitit.LocalExecutor(folder=str(folder))
        executor.update_parameters(timeout_min=config.timeout_min)
        return executor
    executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    slurm = {f"slurm_{key}": value for key, value in config.slurm.model_dump(exclude={"additional"}).items() if value}
    executor.update_parameters(
        timeout_min=config.timeout_min, cpus_per_task=config.cpus_per_task, slurm_array_parallelism=config.max_concurrent,
        slurm_additional_parameters=dict(config.slurm.additional), **({"mem_gb": config.mem_gb} if config.mem_gb else {}),
        **slurm,
    )  # fmt: skip
    return executor


class Runner:
    """Runs a wave's jobs to completion: local jobs `max_concurrent` at a time (each given its own GPUs from
    `visible_gpus`), SLURM jobs as one array per GPU count with the array's parallelism capped; failures again up
    to `max_retries` times."""

    def __init__(self, config: DispatchConfig, executor: Any, spec_of: Callable[[Job, int], JobSpec], say: Callable[[str], None]) -> None:
        self.config, self.executor, self.spec_of, self.say = config, executor, spec_of, say

    def run(self, wave_jobs: list[Job]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(every outcome, the last outcome of each job that never succeeded)."""
        outcomes: list[dict[str, Any]] = []
        pending = [(job, 0) for job in wave_jobs]
        failed: list[dict[str, Any]] = []
        while pending:
            results = self._local(pending) if self.config.executor == "local" else self._slurm(pending)
            outcomes += [outcome for _, outcome in results]
            pending = []
            for (job, attempt), outcome in results:
                if outcome["returncode"] == 0:
                    continue
                if attempt < self.config.max_retries:
                    self.say(f"dispatch: {job.slug} failed (attempt {attempt + 1}); again: {outcome['log']}")
                    pending.append((job, attempt + 1))
                else:
                    failed.append(outcome)
        return outcomes, failed

    def _outcome(self, job_handle: Any, spec: JobSpec) -> dict[str, Any]:
        try:
            return job_handle.result()
        except Exception as err:  # the job died: killed, out of memory, a node lost
            return {"targets": spec.targets, "slug": spec.slug, "dispatch": spec.dispatch, "attempt": spec.attempt, "commit": spec.commit,
                    "returncode": -1, "seconds": None, "ran": [], "restored": [], "log": str(spec.log_path()),
                    "error": f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"}  # fmt: skip

    def _local(self, pending: list[tuple[Job, int]]) -> list[tuple[tuple[Job, int], dict[str, Any]]]:
        free = list(self.config.visible_gpus)
        queue = list(pending)
        running: list[tuple[tuple[Job, int], Any, JobSpec, list[int]]] = []
        done: list[tuple[tuple[Job, int], dict[str, Any]]] = []
        while queue or running:
            while queue and len(running) < self.config.max_concurrent:
                job, attempt = queue[0]
                wanted = self.config.gpus_for(job.stage) if self.config.visible_gpus else 0
                if wanted > len(self.config.visible_gpus):
                    raise ExpertlabError(
                        f"dispatch: gpus.{job.stage} is {wanted}, but visible_gpus lists {len(self.config.visible_gpus)}"
                    )
                if wanted > len(free):
                    break
                queue.pop(0)
                given, free = free[:wanted], free[wanted:]
                spec = self.spec_of(job, attempt)
                self.executor.update_parameters(gpus_per_node=len(given), visible_gpus=tuple(given))
                running.append(((job, attempt), self.executor.submit(StageJob(spec)), spec, given))
            time.sleep(0.2)
            still = []
            for key, handle, spec, given in running:
                if handle.done():
                    done.append((key, self._outcome(handle, spec)))
                    free += given
                    self._said(done[-1][1])
                else:
                    still.append((key, handle, spec, given))
            running = still
        return done

    def _slurm(self, pending: list[tuple[Job, int]]) -> list[tuple[tuple[Job, int], dict[str, Any]]]:
        by_gpus: dict[int, list[tuple[Job, int]]] = {}
        for job, attempt in pending:
            by_gpus.setdefault(self.config.gpus_for(job.stage), []).append((job, attempt))
        submitted = []
        for gpus, group in by_gpus.items():
            self.executor.update_parameters(gpus_per_node=gpus)
            specs = [self.spec_of(job, attempt) for job, attempt in group]
            with self.executor.batch():
                handles = [self.executor.submit(StageJob(spec)) for spec in specs]
            submitted += list(zip(group, handles, specs))
        done = []
        for key, handle, spec in submitted:
            done.append((key, self._outcome(handle, spec)))
            self._said(done[-1][1])
        return done

    def _said(self, outcome: dict[str, Any]) -> None:
        status = "ok" if outcome["returncode"] == 0 else f"failed ({outcome.get('error') or 'exit ' + str(outcome['returncode'])})"
        seconds = f" in {outcome['seconds']:.0f} s" if outcome.get("seconds") is not None else ""
        self.say(f"dispatch: {outcome['slug']}: {status}{seconds}; ran {len(outcome['ran'])}, restored {len(outcome['restored'])}")


def preflight(root: Path, config: DispatchConfig) -> str:
    """The checks a dispatch (and its --dry-run) makes before it sends anything; the commit the jobs clone."""
    commit = committed_state(root)
    if config.remote and config.cache_dir:
        raise ExpertlabError("dispatch: give cache_dir (storage every node sees) or remote (none shared), not both")
    if config.remote:
        check_default_remote(root, config.remote)
    return commit


def dispatch(root: str | Path, config: DispatchConfig, say: Callable[[str], None] = print, final: bool = True) -> DispatchReport:
    """Send out the stale stage instances of the study at `root`, then (with `final`) run the coordinator's
    `dvc repro`; see the module docstring."""
    root = Path(root).resolve()
    commit = preflight(root, config)
    work_dir = (root / config.work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = None if config.remote else Path(config.cache_dir).resolve() if config.cache_dir else dvc_cache_dir(root)
    shared_dir = (root / config.shared_dir).resolve()
    started = time.time()
    the_plan = plan(root, config.coordinator)
    planned = time.time() - started
    report = DispatchReport(the_plan)
    ledger = Ledger(work_dir / "ledger.json")
    number = ledger.start()
    finished = ledger.finished(commit)
    counts = Counter(instance.stage for instance in the_plan.instances)
    say(
        f"dispatch: {len(the_plan.instances)} stale stage instances in {len(the_plan.waves)} waves "
        f"({', '.join(f'{stage} {n}' for stage, n in counts.items()) or 'none'}); {the_plan.up_to_date} up to date; "
        f"planned in {planned:.1f} s; dispatch {number} of commit {commit[:12]}, "
        f"{f'cache {cache_dir}' if cache_dir else f'remote {config.remote}'}, executor {config.executor}"
    )

    def spec_of(job: Job, attempt: int) -> JobSpec:
        return JobSpec(
            targets=job.targets, steps=job.steps, sources=job.sources, slug=job.slug, dispatch=number, attempt=attempt,
            origin=str(root), commit=commit,
            work_dir=str(work_dir), cache_dir=str(cache_dir) if cache_dir else None, shared_dir=str(shared_dir), remote=config.remote,
            cache_shared=config.cache_shared, cache_type=config.cache_type, keep_clone=config.keep_clones,
        )  # fmt: skip

    runner = Runner(config, make_executor(config, work_dir / "submitit"), spec_of, say)
    for index, wave in enumerate(the_plan.waves):
        todo = [instance for instance in wave if instance.name not in finished]
        report.skipped += [instance.name for instance in wave if instance.name in finished]
        if not todo:
            continue
        wave_jobs = jobs(todo, config.group_stages, config.batch)
        say(f"dispatch: wave {index + 1}/{len(the_plan.waves)}: {len(todo)} instances in {len(wave_jobs)} jobs")
        outcomes, failed = runner.run(wave_jobs)
        report.outcomes += outcomes
        ledger.add(commit, [layout.stage_name(target) for outcome in outcomes if outcome["returncode"] == 0 for target in outcome["targets"]])
        if failed:
            report.failed = failed
            report.returncode = 1
            for outcome in failed:
                say(f"dispatch: {' '.join(outcome['targets'])} failed every attempt; log: {outcome['log']}")
            say("dispatch: stopped before the next wave; fix the cause and dispatch again (finished instances are not sent again)")
            return report
    if final:
        finish(root, report, say, work_dir, commit, config.remote)
    return report


def record_locks(root: Path, work_dir: Path, commit: str) -> list[str]:
    """Write into the dvc.lock files at `root` the lock entries that this commit's finished jobs recorded for
    their instances (their outcomes; a later dispatch's or attempt's over an earlier one's), one write per file;
    the instances written. DVC's `dvc repro` checks each against its dependencies and outputs all the same."""
    from dvc.utils.serialize import modify_yaml  # DVC's own writer of its locks

    finished = [outcome for outcome in read_outcomes(work_dir) if outcome["commit"] == commit and outcome["returncode"] == 0]
    by_lock: dict[str, dict[str, Any]] = {}
    for outcome in sorted(finished, key=lambda outcome: (outcome["dispatch"], outcome["attempt"])):
        for lock, entries in outcome.get("locked", {}).items():
            by_lock.setdefault(lock, {}).update(entries)
    for lock, entries in by_lock.items():
        if not entries:
            continue
        with modify_yaml(root / lock) as data:
            if not data:
                data["schema"] = "2.0"  # as DVC starts a lock
            data["stages"] = data.get("stages") or {}
            data["stages"].update(entries)
    return sorted(name for entries in by_lock.values() for name in entries)


def finish(root: Path, report: DispatchReport, say: Callable[[str], None], work_dir: Path, commit: str,
           remote: str | None = None) -> None:  # fmt: skip
    """The coordinator's end (see the module docstring): the jobs' lock entries written here, their outputs
    checked out of the shared cache (pulled from `remote` when there is none, with the run-cache), then its
    `dvc repro`."""
    env = dvc_environment()
    dvc = [sys.executable, "-m", "dvc"]
    report.recorded = record_locks(root, work_dir, commit)
    say(f"dispatch: the jobs' dvc.lock entries of {len(report.recorded)} instances written here")
    if remote:
        say(f"dispatch: dvc pull --run-cache from {remote}")
        restore = [*dvc, "pull", "--run-cache", "--allow-missing", "-r", remote]
    else:
        say("dispatch: dvc checkout")
        restore = [*dvc, *CHECKOUT]
    restored = subprocess.run(restore, cwd=root, env=env, capture_output=True, text=True)
    if restored.returncode != 0:
        sys.stderr.write(restored.stdout + restored.stderr)
        report.returncode = restored.returncode
        return
    say("dispatch: the coordinator's dvc repro (what no job recorded comes from the run-cache)")
    pull = ["--pull", "--allow-missing"] if remote else []  # the outputs, from the default remote (check_default_remote)
    result = subprocess.run([*dvc, "repro", *pull], cwd=root, env=env, capture_output=True, text=True)
    text = result.stdout + result.stderr
    report.final_ran, report.final_restored = said(RAN, text), said(RESTORED, text)
    unexpected = [name for name in report.final_ran if name not in report.plan.coordinator]
    say(f"dispatch: dvc repro here: restored {len(report.final_restored)}, ran {', '.join(report.final_ran) or 'nothing'}")
    if unexpected:
        say(f"dispatch: ran here too, not found in the run-cache: {', '.join(unexpected)}")
    if result.returncode != 0:
        sys.stderr.write(text)
        report.returncode = result.returncode
