"""expertlab dispatch on one machine: submitit's local executor, real clones, one shared DVC cache, real stages.

A small study (one criterion, one ratio, two tasks, a short toy training) is run twice: by a plain serial
`dvc repro` and by dispatch. Dispatch's first attempt loses a stage mid-run (its processes killed, as a
preempted or out-of-memory job would be); the next dispatch at the same commit sends out only that instance and
what depends on it, retries a second kill, and ends in the coordinator's `dvc repro`, which runs ingest and
report only. The report tables then equal the serial run's byte for byte.
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

from expertlab.dispatch.config import DispatchConfig, load_config
from expertlab.dispatch.coordinator import dispatch
from expertlab.dispatch.plan import Instance, Job, jobs, plan
from expertlab.layout import stage_name
from expertlab.errors import ExpertlabError
from tests.pipeline_study import MICRO, commit, locked, pipeline_stages, ran, sh, study_repo, target

KILLED = "observe@toy-biomed-0"


def small_study() -> dict:
    params = copy.deepcopy(MICRO)
    params["study"] |= {"criteria": ["reap"], "tasks": {"toy": ["bio_qa", "general_arith"]},
                        "quantize": {"schemes": [], "models": [], "criteria": [], "ratios": []}}  # fmt: skip
    params["calibrations"].pop("tool")
    params["quantization"] = {}
    params["judge"] |= {"judges": [], "tasks": []}
    params["monosemanticity"] = {"models": [], "explainers": [], "top_k": []}
    params["finetune"] = {"models": [], "strategies": [], "seeds": []}
    params["toy"]["train"]["steps"] = 100
    params["report"]["print"] = ["headline"]
    return params


def new_study(root: Path) -> Path:
    repo = study_repo(root, small_study())
    (repo / ".gitignore").write_text("__pycache__/\n.expertlab/\n")
    commit(repo, "study")
    return repo


class Killer:
    """Kills every process working in the clone of the job running `target`, once that job's log says the stage
    started: what a preempted or out-of-memory job's stage goes through."""

    def __init__(self, work_dir: Path, target: str, dispatch: int, attempt: int) -> None:
        name = f"{target.replace('@', '-')}.{dispatch}.{attempt}"
        self.log = work_dir / "logs" / f"{name}.log"
        self.clone = work_dir / "clones" / name
        self.killed: list[int] = []
        self.target = target
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.is_set():
            if self.log.exists() and f"Running stage '{self.target}'" in self.log.read_text(errors="replace"):
                time.sleep(0.5)  # into the stage's command
                for pid in _working_in(self.clone):
                    try:
                        os.kill(pid, signal.SIGKILL)
                        self.killed.append(pid)
                    except ProcessLookupError:
                        pass
                if self.killed:
                    return
            time.sleep(0.05)


def _working_in(directory: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")).is_relative_to(directory):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def ran_in_logs(work_dir: Path) -> list[str]:
    """Every stage the jobs' own logs say they ran, once per run."""
    return [name for log in sorted((work_dir / "logs").glob("*.log")) for name in sorted(ran(log.read_text()))]


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = new_study(tmp_path_factory.mktemp("serial") / "study")
    sh("dvc", "repro", cwd=repo)
    return repo


@pytest.fixture(scope="module")
def dispatched(tmp_path_factory: pytest.TempPathFactory) -> dict:
    repo = new_study(tmp_path_factory.mktemp("dispatched") / "study")
    config = DispatchConfig(max_concurrent=2, max_retries=0, timeout_min=20)
    work_dir = repo / config.work_dir
    said: list[str] = []
    first_plan = plan(repo, config.coordinator)
    with Killer(work_dir, KILLED, dispatch=1, attempt=0) as killer:
        first = dispatch(repo, config, say=said.append)
    after_first = ran_in_logs(work_dir)
    again = config.model_copy(update={"max_retries": 1})
    with Killer(work_dir, KILLED, dispatch=2, attempt=0) as second_killer:
        second = dispatch(repo, again, say=said.append)
    return {"repo": repo, "work_dir": work_dir, "plan": first_plan, "first": first, "second": second, "said": said,
            "after_first": after_first, "killed": (killer.killed, second_killer.killed)}  # fmt: skip


def test_the_plan_is_the_stale_instances_in_dag_order(dispatched: dict) -> None:
    the_plan = dispatched["plan"]
    waves = [[instance.name for instance in wave] for wave in the_plan.waves]
    assert waves[0] == ["check"] and waves[1] == ["prepare"]
    assert set(waves[2]) == {"calibrate@biomed", "prepare_tasks@toy", "train_toy"}
    assert set(waves[3]) == {KILLED, "generate_source@toy-toy"}
    position = {name: index for index, wave in enumerate(waves) for name in wave}
    assert position["select@toy-biomed-0"] > position[KILLED] and position["prune@toy-biomed-0-reap-0.5"] > position["select@toy-biomed-0"]
    assert the_plan.coordinator == ["ingest", "report"] and len(the_plan.instances) == 13
    # `dvc repro` addresses a stage of pipelines/<kind>/dvc.yaml by that file
    assert [instance.target for instance in the_plan.instances] == [target(i.name) for i in the_plan.instances]
    assert any(instance.target.startswith("pipelines/") for instance in the_plan.instances)


def test_a_killed_stage_stops_the_dispatch_and_the_next_one_sends_only_what_did_not_finish(dispatched: dict) -> None:
    first, second = dispatched["first"], dispatched["second"]
    killed, killed_again = dispatched["killed"]
    assert killed and killed_again  # both kills hit a running stage
    assert first.returncode == 1 and [o["targets"] for o in first.failed] == [[KILLED]]
    downstream = {"select@toy-biomed-0", "prune@toy-biomed-0-reap-0.5", "generate@toy-biomed-0-reap-0.5-toy",
                  "score@toy-biomed-0-reap-0.5-toy", "judge@toy-biomed-0-reap-0.5-toy"}  # fmt: skip
    first_ran = dispatched["after_first"]
    assert not downstream & set(first_ran) and first_ran.count(KILLED) == 1
    assert "generate_source@toy-toy" in first_ran and "score_source@toy-toy" not in first_ran  # stopped after the wave
    # the second dispatch: the instances of the first that finished are not sent again (the ledger), the killed
    # one is retried once, and what waited on it or on the stopped waves follows
    assert second.returncode == 0 and not second.failed
    sent = {stage_name(target) for outcome in second.outcomes for target in outcome["targets"]}
    assert sent == {KILLED, "score_source@toy-toy"} | downstream
    assert [o["returncode"] for o in second.outcomes if o["targets"] == [KILLED]][0] != 0  # the second kill
    every = ran_in_logs(dispatched["work_dir"])
    assert every.count(KILLED) == 3  # killed, killed, finished
    assert all(every.count(name) == 1 for name in set(every) - {KILLED}), every
    assert set(every) == {instance.name for instance in dispatched["plan"].instances}


def test_the_coordinator_takes_every_instance_from_the_jobs_and_runs_only_ingest_and_report(dispatched: dict) -> None:
    second = dispatched["second"]
    names = {instance.name for instance in dispatched["plan"].instances}
    for outcome in second.outcomes + dispatched["first"].outcomes:  # a job records its targets' lock entries only
        finished = outcome["returncode"] == 0
        assert {n for entries in outcome["locked"].values() for n in entries} == ({stage_name(t) for t in outcome["targets"]} if finished else set())
    # both dispatches' jobs' lock entries written here, so the repro restores nothing and runs ingest and report
    assert set(second.recorded) == names and len(second.recorded) == len(names)
    assert second.final_ran == ["ingest", "report"] and second.final_restored == []
    assert set(locked(dispatched["repo"])) == names | {"ingest", "report"}
    assert "Data and pipelines are up to date" in sh("dvc", "status", cwd=dispatched["repo"])
    clones = dispatched["work_dir"] / "clones"
    assert (clones / f"{KILLED.replace('@', '-')}.2.0").is_dir()  # a failed job's clone is kept for inspection
    assert not (clones / f"{KILLED.replace('@', '-')}.2.1").exists()  # a finished one's removed


def test_the_report_equals_a_serial_dvc_repro_byte_for_byte(dispatched: dict, serial: Path) -> None:
    tables = sorted(path.name for path in (serial / "report").glob("*.csv"))
    assert tables and tables == sorted(path.name for path in (dispatched["repo"] / "report").glob("*.csv"))
    for name in tables:
        assert (dispatched["repo"] / "report" / name).read_bytes() == (serial / "report" / name).read_bytes(), name
    assert ran(sh("dvc", "repro", cwd=dispatched["repo"])) == set()


def test_without_shared_storage_the_run_cache_travels_through_a_remote(tmp_path: Path, serial: Path) -> None:
    """`remote:` instead of a shared cache: every clone keeps a cache of its own, pulls what it needs from the
    remote and pushes its outputs and run-cache there; the coordinator pulls the run-cache and restores from it.
    Checkpoints are never pushed (push: false): a job or the coordinator that needs one prunes it again."""
    repo = new_study(tmp_path / "study")
    sh("dvc", "remote", "add", "storage", str(tmp_path / "remote"), cwd=repo)
    commit(repo, "the remote")
    config = DispatchConfig(remote="storage", max_concurrent=2, max_retries=0, timeout_min=20, keep_clones=True)
    with pytest.raises(ExpertlabError, match="remote 'storage' is not the study's default DVC remote \\(none is set\\)"):
        dispatch(repo, config, say=lambda line: None)  # `dvc repro --pull` would pull from none
    assert not (repo / config.work_dir / "clones").exists()
    sh("dvc", "remote", "default", "storage", cwd=repo)
    commit(repo, "the default remote")
    said: list[str] = []
    report = dispatch(repo, config, say=said.append)
    assert report.returncode == 0 and not report.failed, said
    clones = sorted((repo / config.work_dir / "clones").iterdir())
    assert clones
    for clone in clones:  # each job kept a cache of its own
        assert Path(sh("dvc", "cache", "dir", cwd=clone).strip()).resolve() == (clone / ".dvc" / "cache").resolve()
    assert any((tmp_path / "remote" / "runs").iterdir())  # the jobs' run-cache, pushed
    assert report.final_ran == ["ingest", "report"]  # the coordinator needs no checkpoint: none is pruned again here
    assert set(report.recorded) == {i.name for i in report.plan.instances}
    for name in sorted(path.name for path in (serial / "report").glob("*.csv")):
        assert (repo / "report" / name).read_bytes() == (serial / "report" / name).read_bytes(), name


def test_the_coordinator_writes_the_latest_finished_jobs_lock_entries_of_its_commit(tmp_path: Path) -> None:
    from expertlab.dispatch.coordinator import record_locks
    from expertlab.io import write_json

    root, outcomes = tmp_path / "study", tmp_path / "work" / "outcomes"
    (root / "pipelines" / "scores").mkdir(parents=True)
    (root / "pipelines" / "scores" / "dvc.yaml").write_text("stages: {}\n")  # its dvc.lock not yet written
    (root / "dvc.lock").write_text("schema: '2.0'\nstages:\n  check:\n    cmd: old\n  prepare:\n    cmd: kept\n")
    runs = [  # slug, dispatch, attempt, commit, returncode, locked
        ("a", 1, 0, "c1", 0, {"dvc.lock": {"check": {"cmd": "first"}}}),
        ("a", 2, 0, "c1", 0, {"dvc.lock": {"check": {"cmd": "second"}}}),
        ("b", 1, 0, "c1", 0, {"pipelines/scores/dvc.lock": {"score@x": {"cmd": "s", "outs": [{"path": "scores/x", "md5": "1e5"}]}}}),
        ("c", 1, 0, "c1", -1, {"pipelines/scores/dvc.lock": {"score@y": {"cmd": "failed"}}}),
        ("d", 1, 0, "c0", 0, {"pipelines/scores/dvc.lock": {"score@z": {"cmd": "another commit"}}}),
    ]
    for slug, number, attempt, commit_, code, entries in runs:
        write_json(outcomes / f"{slug}.{number}.{attempt}.json",
                   {"slug": slug, "dispatch": number, "attempt": attempt, "commit": commit_, "returncode": code, "locked": entries})
    assert record_locks(root, tmp_path / "work", "c1") == ["check", "score@x"]
    assert locked(root) == {"check": {"cmd": "second"}, "prepare": {"cmd": "kept"},
                            "score@x": {"cmd": "s", "outs": [{"path": "scores/x", "md5": "1e5"}]}}  # fmt: skip
    assert "'1e5'" in (root / "pipelines" / "scores" / "dvc.lock").read_text()  # a string still, not a number


def test_a_job_goes_through_each_instances_upstream_then_the_instance_each_once_in_dag_order() -> None:
    first = Instance("use@a", "use", "models/m", "pipelines/x/dvc.yaml:use@a", upstream=("check", "prep@a"), sources=("models/m.dvc",))
    second = Instance("use@b", "use", "models/m", "pipelines/x/dvc.yaml:use@b", upstream=("check", "prep@b"), sources=("models/m.dvc",))
    job = Job((first, second))
    assert job.targets == ["pipelines/x/dvc.yaml:use@a", "pipelines/x/dvc.yaml:use@b"]
    assert job.steps == ["check", "prep@a", "pipelines/x/dvc.yaml:use@a", "prep@b", "pipelines/x/dvc.yaml:use@b"]
    assert job.sources == ["models/m.dvc"]


def test_a_job_checks_out_the_dvc_tracked_data_its_instances_depend_on(tmp_path: Path) -> None:
    """A model added with `dvc add` is a data source: DVC's repro only verifies it is there, so in a fresh clone
    the job checks it out first; the second job restores the first's instance from the run-cache."""
    repo = tmp_path / "study"
    repo.mkdir()
    sh("git", "init", "-q", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    (repo / "models").mkdir()
    (repo / "models" / "m.txt").write_text("weights\n")
    sh("dvc", "add", "-q", "models/m.txt", cwd=repo)
    (repo / "dvc.yaml").write_text(
        "stages:\n"
        "  first:\n    cmd: cp models/m.txt first.txt\n    deps: [models/m.txt]\n    outs: [first.txt]\n"
        "  second:\n    cmd: cat first.txt models/m.txt > second.txt\n    deps: [first.txt, models/m.txt]\n    outs: [second.txt]\n"
    )  # fmt: skip
    (repo / ".gitignore").write_text(".expertlab/\n")
    commit(repo, "study")
    the_plan = plan(repo, [])
    assert [[i.name for i in wave] for wave in the_plan.waves] == [["first"], ["second"]]
    assert the_plan.waves[1][0].upstream == ("first",) and the_plan.waves[1][0].sources == ("models/m.txt.dvc",)
    report = dispatch(repo, DispatchConfig(max_concurrent=1, max_retries=0, timeout_min=5, coordinator=[]), say=lambda line: None)
    assert report.returncode == 0 and not report.failed
    assert [(o["targets"], o["ran"], o["restored"]) for o in report.outcomes] == [(["first"], ["first"], []), (["second"], ["second"], ["first"])]
    assert report.recorded == ["first", "second"] and report.final_ran == [] and report.final_restored == []
    assert (repo / "second.txt").read_text() == "weights\nweights\n"
    assert "Data and pipelines are up to date" in sh("dvc", "status", cwd=repo)


def test_uncommitted_changes_are_refused_before_anything_is_sent(tmp_path: Path) -> None:
    repo = new_study(tmp_path / "study")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["observe"]["batch_size"] = 4
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(ExpertlabError, match="params.yaml has changes that are not committed"):
        dispatch(repo, DispatchConfig(), say=lambda line: None)
    assert not (repo / ".expertlab").exists()


def test_jobs_group_a_variants_task_groups_and_nothing_else() -> None:
    def instance(name: str, model: str, file: str | None = None) -> Instance:
        return Instance(name, name.split("@")[0], model, f"{file}:{name}" if file else name)

    generations = "pipelines/generations/dvc.yaml"
    generate = [instance(f"generate@v-{g}", "checkpoints/v", generations) for g in ("a", "b")]
    other = instance("generate@w-a", "checkpoints/w", generations)
    observe = [instance(f"observe@toy-{c}", "models/toy") for c in ("x", "y")]
    grouped = jobs([*generate, other, *observe], group_stages=["generate"])
    assert sorted(job.targets for job in grouped) == [
        ["observe@toy-x"], ["observe@toy-y"],
        [f"{generations}:generate@v-a", f"{generations}:generate@v-b"], [f"{generations}:generate@w-a"],
    ]
    assert [stage_name(target) for job in grouped for target in job.targets] == [
        "observe@toy-x", "observe@toy-y", "generate@v-a", "generate@v-b", "generate@w-a"
    ]
    assert {job.slug for job in grouped} == {"generate-v-a+1", "generate-w-a", "observe-toy-x", "observe-toy-y"}


def test_a_batched_stages_instances_go_out_in_jobs_of_at_most_the_batch_whatever_they_load() -> None:
    scores = [Instance(f"score@v-{g}", "score", None, f"pipelines/scores/dvc.yaml:score@v-{g}") for g in "abcde"]
    judge = Instance("judge@v-a", "judge", None, "pipelines/judgments/dvc.yaml:judge@v-a")
    sent = jobs([*scores, judge], group_stages=["generate"], batch={"score": 2})
    assert [[stage_name(target) for target in job.targets] for job in sent] == [
        ["judge@v-a"], ["score@v-a", "score@v-b"], ["score@v-c", "score@v-d"], ["score@v-e"]
    ]
    assert [len(job.targets) for job in jobs(scores, group_stages=[], batch={"score": 16})] == [5]
    assert [len(job.targets) for job in jobs(scores, group_stages=[])] == [1, 1, 1, 1, 1]  # no batch: one each


def test_a_bad_dispatch_config_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "dispatch.yaml"
    path.write_text("executor: kubernetes\nmax_concurrent: 0\n")
    with pytest.raises(ExpertlabError) as err:
        load_config(path)
    assert "executor: Input should be 'local' or 'slurm'" in str(err.value) and "max_concurrent" in str(err.value)
    path.write_text("batch: {score: 0}\n")
    with pytest.raises(ExpertlabError, match="batch.score"):
        load_config(path)
    with pytest.raises(FileNotFoundError, match="other.yaml"):
        load_config(tmp_path / "other.yaml")
    assert load_config(None) == DispatchConfig()


def test_a_slurm_config_becomes_submitits_sbatch_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No SLURM here: an `srun` that only exists lets submitit build its SLURM executor; nothing is submitted, and
    the sbatch script it would send carries the config's partition, account, resources and extra options."""
    from expertlab.dispatch.config import Slurm
    from expertlab.dispatch.coordinator import make_executor

    stub = tmp_path / "bin" / "srun"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 1\n")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub.parent}{os.pathsep}{os.environ['PATH']}")
    config = DispatchConfig(executor="slurm", max_concurrent=16, mem_gb=64, cpus_per_task=8, timeout_min=120,
                            slurm=Slurm(partition="gpu", account="lab", additional={"exclusive": True}))  # fmt: skip
    executor = make_executor(config, tmp_path / "submitit")
    executor.update_parameters(gpus_per_node=1)
    script = executor._executor._make_submission_file_text("python -m x", "uid").splitlines()
    for line in ("--partition=gpu", "--account=lab", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=64GB",
                 "--time=120", "--exclusive"):  # fmt: skip
        assert f"#SBATCH {line}" in script, line
    assert executor._executor.parameters["array_parallelism"] == 16


def test_the_default_config_names_only_stages_of_the_pipeline_files() -> None:
    """gpus, group_stages, batch and coordinator name stages of the pipeline files: a renamed stage fails here, not
    on a cluster."""
    stages = set(pipeline_stages())
    config = DispatchConfig()
    assert set(config.gpus) | set(config.group_stages) | set(config.batch) | set(config.coordinator) <= stages
    assert {stage for stage in stages if stage.startswith("score")} == set(config.batch)


def test_a_directory_dependency_hashes_the_same_whatever_order_dvc_wrote_its_gitignores(tmp_path: Path) -> None:
    """DVC appends an output to the .gitignore beside it as it checks it out, in the order it restores them,
    which differs between a study's clones; a stage depending on the directory (select on observations/<model>,
    ingest on every root) must not see another input, or each dispatch job reruns it."""
    from tests.pipeline_study import ROOT

    repo = tmp_path / "repo"
    (repo / "observations" / "toy" / "biomed").mkdir(parents=True)
    shutil.copy(ROOT / ".dvcignore", repo / ".dvcignore")
    sh("git", "init", "-q", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    (repo / "observations" / "toy" / "biomed" / "stats").write_text("1\n")
    gitignore = repo / "observations" / "toy" / "biomed" / ".gitignore"
    gitignore.write_text("/0\n/1\n")
    sh("dvc", "stage", "add", "-q", "-n", "select", "-d", "observations/toy", "-o", "masks", "mkdir masks", cwd=repo)
    sh("dvc", "repro", "-q", cwd=repo)
    gitignore.write_text("/1\n/0\n")  # another clone's checkout order
    assert "Data and pipelines are up to date" in sh("dvc", "status", cwd=repo)
    (repo / "observations" / "toy" / "biomed" / "stats").write_text("2\n")  # the data still counts
    assert "changed deps" in sh("dvc", "status", cwd=repo)
