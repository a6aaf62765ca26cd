"""Benchmark: what DVC and `expertlab dispatch` cost per stage instance at the paper's grid size.

Builds a git + DVC repo holding this project's pipeline files over params.paper.yaml, every stage command replaced by
a stand-in that only writes the stage's outputs, so what is timed is DVC's own work: expanding the pipeline
files, hashing dependencies, committing outputs to the cache, the run-cache and the dvc.lock files. It measures

- `dispatch`'s planning (the pipeline files expanded, `dvc status`, the waves) and `dvc status` over the whole paper grid
  (every instance stale: nothing has run);
- a `dvc repro` of a slice of the grid (the last --models of params.paper.yaml's models, the last being the one
  Table 2 also compares and quantizes, and --ratios, --criteria and --seeds of the grid's, those Table 2 uses
  first), per instance; then a no-op `dvc repro` and `dvc status` of that slice once everything is up to date;
- dispatch jobs on the paper grid, as `expertlab dispatch` runs them (expertlab.dispatch.worker.run_job: a clone of
  the commit on the shared cache, its dvc.lock files emptied, `dvc repro --single-item` of its targets and their
  upstream): one generate instance whose upstream has already run (restored from the run-cache), and one job
  of the same variant's other generate instances (its other task groups, sent together as config group_stages
  does), then one job of that variant's score instances (sent in batches: config batch);
- the coordinator's end, per instance: its `dvc checkout` and final no-op `dvc repro` of the slice (in a clone
  holding the slice's dvc.lock files, as after the jobs' lock entries were written there), and the one write
  of each pipeline file's dvc.lock at paper size;
- DVC's rewrite of a dvc.lock, at the size each pipeline file's lock reaches on the paper grid and at the size
  one dvc.lock for the whole grid would reach: what a `dvc repro` restoring the grid instance by instance pays
  after each one (quadratic in the grid), and why the coordinator writes the jobs' entries once instead.

Orchestration per instance is then set beside a stage's own cost to give the share of it spent in
orchestration: the real costs are the --stage-seconds given; the default is the one paper 000 states (its
appendix, "Hardware": pruning the largest model, Qwen3.6 with EASY-EP, observation included, within 775 s on one
A100). A CPU here has no real model to time; the benchmark also prints how long a stage must run for
orchestration to stay under 5% of it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from expertlab import layout
from expertlab.dispatch.config import DispatchConfig
from expertlab.dispatch.coordinator import CHECKOUT
from expertlab.dispatch.plan import Instance, Job
from expertlab.dispatch.worker import dvc_environment

ROOT = Path(__file__).resolve().parents[1]
CODE = ["expertlab", "stages", "schema", "queries", "imported", "monosemanticity", "requirements-deepeval.lock",
        "requirements-bfcl.lock"]  # fmt: skip
STANDIN = """#!/bin/sh
# a stage stand-in: each output written (a file for *.json and *.duckdb, else a directory holding one file), with
# the paths inside it that other stages read (standin.paths)
write() {
  case "$1" in
    *.json|*.duckdb) mkdir -p "$(dirname "$1")"; echo "$1" > "$1" ;;
    *) mkdir -p "$1"; echo "$1" > "$1/standin" ;;
  esac
}
for out in "$@"; do
  write "$out"
  grep "^$out/" standin.paths | while read -r inner; do write "$inner"; done
done
"""
# paper 000, appendix "Hardware": observation and pruning of its largest model on one A100
STAGE_SECONDS = {"observe+select+prune, Qwen3.6-35B-A3B, EASY-EP (paper 000)": 775.0}


def sh(args: list[str], cwd: Path) -> float:
    env = dvc_environment()
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed in {cwd}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return time.perf_counter() - start


def standin_dvc_yaml(source: Path, target: Path) -> None:
    """A pipeline file with every stage's command replaced by the stand-in writing its outputs."""
    from ruamel.yaml import YAML

    yaml = YAML()
    data = yaml.load(source.read_text())
    for stage in data["stages"].values():
        outs = [next(iter(out)) if isinstance(out, dict) else out for out in stage.get("outs", [])]
        stage["cmd"] = "sh standin.sh " + " ".join(outs)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w") as handle:
        yaml.dump(data, handle)


def study(root: Path, models: int | None, ratios: int | None, criteria: int | None = None, seeds: int | None = None) -> Path:
    """A git + DVC repo of the paper's grid (or a slice of it) with stand-in commands and stand-in inputs."""
    from ruamel.yaml import YAML

    from expertlab.params import load_params

    root.mkdir(parents=True)
    for name in CODE:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, root / name)
    yaml = YAML()
    params = yaml.load((ROOT / "params.paper.yaml").read_text())
    if models:
        params["study"]["models"] = params["study"]["models"][-models:]  # the last: Table 2's, compared and quantized
    if ratios:  # the ones study.compare and study.quantize use, then the grid's first
        grid = params["study"]
        needed = [r for r in grid["ratios"] if r in {*grid["compare"]["ratios"], *grid["quantize"]["ratios"]}]
        grid["ratios"] = (needed + [r for r in grid["ratios"] if r not in needed])[: max(ratios, len(needed))]
    if criteria:  # the ones study.compare and study.quantize use first
        grid = params["study"]
        needed = [c for c in grid["criteria"] if c in {*grid["compare"]["criteria"], *grid["quantize"]["criteria"]}]
        grid["criteria"] = (needed + [c for c in grid["criteria"] if c not in needed])[: max(criteria, len(needed))]
    if seeds:
        params["study"]["seeds"] = params["study"]["seeds"][:seeds]
    with (root / "params.yaml").open("w") as handle:
        yaml.dump(params, handle)
    for path in layout.pipeline_files(ROOT):
        standin_dvc_yaml(ROOT / path, root / path)
    (root / "standin.sh").write_text(STANDIN)

    checked = load_params(root / "params.yaml")
    for model in checked.models:
        (root / "models" / model).mkdir(parents=True, exist_ok=True)
        (root / "models" / model / "config.json").write_text("{}")
    data_dir = root / checked.evaluation.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "README").write_text("stand-in\n")
    (root / ".gitignore").write_text("__pycache__/\n.expertlab/\n")
    sh(["git", "init", "-q"], root)
    sh([sys.executable, "-m", "dvc", "init", "-q"], root)
    shutil.copy2(ROOT / ".dvcignore", root / ".dvcignore")  # the study's, over `dvc init`'s
    (root / "standin.paths").write_text("".join(f"{path}\n" for path in read_paths(root)))
    sh(["git", "add", "-A"], root)
    sh(["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "paper grid, stand-in commands"], root)
    return root


def read_paths(root: Path) -> list[str]:
    """Every dependency path of the expanded pipeline that lies inside another stage's output."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        outs = {out.def_path for stage in repo.index.stages for out in stage.outs}
        deps = {dep.def_path for stage in repo.index.stages for dep in stage.deps}
    return sorted(dep for dep in deps if any(dep.startswith(out + "/") for out in outs))


def instances(root: Path) -> int:
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return len(repo.index.stages)


def instances_by_file(root: Path) -> dict[str, int]:
    """Stage instances per pipeline file (relative to `root`), as DVC expands them."""
    from collections import Counter

    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return dict(Counter(str(Path(stage.dvcfile.path).relative_to(root)) for stage in repo.index.stages))


def lock_rewrite(sample: dict, size: int, directory: Path) -> float:
    """Seconds of DVC's rewrite of a dvc.lock holding `size` instances like those of `sample` (a dvc.lock's
    stages): a round-trip load and dump of the whole file (dvc.utils.serialize.modify_yaml, as
    dvc.dvcfile.Lockfile.dump_stages does after every instance DVC runs or restores)."""
    import copy
    import itertools

    from dvc.utils.serialize import modify_yaml
    from ruamel.yaml import YAML

    entries = itertools.cycle(list(sample.values()))
    path = directory / f"dvc.{size}.lock"
    with path.open("w") as handle:  # copies: an object written twice would be written once, then as an alias
        stages = {f"stand-in@{i}": copy.deepcopy(next(entries)) for i in range(size)}
        YAML().dump({"schema": "2.0", "stages": stages}, handle)
    start = time.perf_counter()
    with modify_yaml(str(path)) as data:
        data["stages"]["stand-in@0"] = next(entries)
    seconds = time.perf_counter() - start
    path.unlink()
    return seconds


def lock_costs(slice_root: Path, by_file: dict[str, int], directory: Path) -> dict[str, tuple[int, float, float]]:
    """Per pipeline file at paper size: its instances n, DVC's lock rewrite t(n) at n instances, and what a run
    that adds all n pays in rewrites (t(1) + ... + t(n); the rewrite is linear in the lock's size, so n (t(1) + t(n)) / 2).
    The lock entries are the slice's own (its dvc.lock files after its repro); "one dvc.lock" is the whole grid's
    instances in a single pipeline file, as before the split."""
    from ruamel.yaml import YAML

    sample: dict = {}
    for path in layout.lock_files(slice_root):
        if (slice_root / path).exists():
            sample |= YAML(typ="safe").load((slice_root / path).read_text())["stages"]
    lock_rewrite(sample, 1, directory)  # DVC's and ruamel's lazy imports, left out of the timings
    one = lock_rewrite(sample, 1, directory)
    costs = {}
    for name, n in [*sorted(by_file.items()), ("one dvc.lock", sum(by_file.values()))]:
        at_n = lock_rewrite(sample, n, directory)
        costs[name] = (n, at_n, n * (one + at_n) / 2)
    return costs


def job(full: Path, work: Path, instances: list[Instance], slug: str) -> dict:
    """One dispatch job of `instances` (of the plan) on the repo at `full`, as `expertlab dispatch` sends it; its
    outcome."""
    from expertlab.dispatch.worker import JobSpec, run_job

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=full, capture_output=True, text=True, check=True).stdout.strip()
    sent = Job(tuple(instances))
    spec = JobSpec(targets=sent.targets, steps=sent.steps, sources=sent.sources, slug=slug, dispatch=1, attempt=0,
                   origin=str(full), commit=commit, work_dir=str(work), cache_dir=str(full / ".dvc" / "cache"),
                   shared_dir=str(work / "shared"))  # fmt: skip
    outcome = run_job(spec)
    if outcome["returncode"] != 0:
        raise SystemExit(f"the job of {sent.targets[0]} failed: {spec.log_path().read_text()[-3000:]}")
    return outcome


def coordinator_end(part: Path, work: Path) -> tuple[float, float]:
    """Seconds of the coordinator's `dvc checkout` and its final `dvc repro` on the slice, in a clone of it that
    holds the slice's dvc.lock files and its cache but none of its outputs (as after the jobs' lock entries
    were written there)."""
    clone = work / "coordinator"
    sh(["git", "clone", "-q", "--shared", str(part), str(clone)], work)
    sh([sys.executable, "-m", "dvc", "config", "--local", "cache.dir", str(part / ".dvc" / "cache")], clone)
    for lock in layout.lock_files(part):
        if (part / lock).exists():
            shutil.copy2(part / lock, clone / lock)
    checkout = sh([sys.executable, "-m", "dvc", *CHECKOUT], clone)
    repro = sh([sys.executable, "-m", "dvc", "repro", "report"], clone)
    return checkout, repro


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1, help="models of the paper's grid in the repro slice (the last ones)")
    parser.add_argument("--ratios", type=int, default=2, help="ratios of the paper's grid in the repro slice")
    parser.add_argument("--criteria", type=int, default=1, help="criteria in the repro slice (Table 2's first)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds in the repro slice")
    parser.add_argument("--stage-seconds", action="append", default=[], metavar="NAME=SECONDS",
                        help="a stage's own cost on a real model, to set orchestration beside (repeatable)")
    args = parser.parse_args()
    stage_costs = dict(STAGE_SECONDS)
    for entry in args.stage_seconds:
        name, _, seconds = entry.rpartition("=")
        stage_costs[name] = float(seconds)
    from expertlab.dispatch.plan import plan

    with tempfile.TemporaryDirectory(prefix="expertlab-bench-orchestration-") as tmp:
        part = study(Path(tmp) / "slice", args.models, args.ratios, args.criteria, args.seeds)
        n_part = instances(part)
        repro = sh([sys.executable, "-m", "dvc", "repro", "report"], part)  # as `expertlab run`: the study, no toy
        noop = sh([sys.executable, "-m", "dvc", "repro", "report"], part)
        status = sh([sys.executable, "-m", "dvc", "status"], part)
        print(f"slice ({args.models} model(s), {args.ratios} ratio(s), {args.criteria} criteria, {args.seeds} seed(s)): "
              f"{n_part} stage instances")  # fmt: skip
        print(f"  dvc repro with stand-in commands: {repro:.1f} s = {repro / n_part:.2f} s per instance")
        print(f"  no-op dvc repro: {noop:.1f} s; dvc status: {status:.1f} s (all up to date)")
        checkout, final = coordinator_end(part, Path(tmp))
        end = (checkout + final) / n_part
        print(f"  the coordinator's end: dvc checkout {checkout:.1f} s, dvc repro {final:.1f} s = {end:.3f} s per instance")

        full = study(Path(tmp) / "paper", None, None)
        n_full = instances(full)
        start = time.perf_counter()
        full_plan = plan(full, ["ingest", "report"])
        planning = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=full, capture_output=True)
        status_full = time.perf_counter() - start
        print(f"paper grid: {n_full} stage instances, {len(full_plan.waves)} waves")
        print(f"  dispatch planning (expand, dvc status, waves): {planning:.1f} s = {planning / n_full * 1000:.1f} ms per instance")
        print(f"  dvc status, nothing run yet: {status_full:.1f} s")

        by_model: dict[str | None, list[Instance]] = {}
        for instance in full_plan.instances:
            if instance.stage == "generate":
                by_model.setdefault(instance.model, []).append(instance)
        targets = max(by_model.values(), key=len)
        work = Path(tmp) / "work"
        first = job(full, work, targets[:1], "first")  # its upstream runs here, into the shared cache and run-cache
        single = job(full, work, targets[1:2], "single")
        grouped = job(full, work, targets[2:], "grouped")  # the variant's other task groups, as group_stages sends them
        per_grouped = grouped["seconds"] / len(grouped["targets"])
        generated = {instance.target for instance in targets}
        scores = [i for i in full_plan.instances if i.stage == "score" and generated & set(i.upstream)]
        scored = job(full, work, scores[: DispatchConfig().batch["score"]], "scores")  # the variant's, their upstream cached
        per_scored = scored["seconds"] / len(scored["targets"])
        print(f"  a dispatch job of one generate instance, upstream run first: {first['seconds']:.1f} s "
              f"(ran {len(first['ran'])}, restored {len(first['restored'])})")  # fmt: skip
        print(f"  a dispatch job of one generate instance, upstream from the run-cache: {single['seconds']:.1f} s "
              f"(ran {len(single['ran'])}, restored {len(single['restored'])})")  # fmt: skip
        print(f"  a dispatch job of {len(grouped['targets'])} generate instances of one variant: {grouped['seconds']:.1f} s "
              f"= {per_grouped:.1f} s per instance (ran {len(grouped['ran'])}, restored {len(grouped['restored'])})")  # fmt: skip
        print(f"  a dispatch job of that variant's {len(scored['targets'])} score instances (config batch): {scored['seconds']:.1f} s "
              f"= {per_scored:.1f} s per instance (ran {len(scored['ran'])}, restored {len(scored['restored'])})")  # fmt: skip

        locks = lock_costs(part, instances_by_file(full), Path(tmp))
        print("  DVC's rewrite of a pipeline file's dvc.lock, at paper size:")
        for name, (n, at_n, total) in locks.items():
            print(f"    {name}: {n} instances; one rewrite at that size {at_n:.2f} s; "
                  f"restored instance by instance, a whole run's rewrites {total / 3600:.2f} h")  # fmt: skip
        written = sum(at_n for name, (_, at_n, _) in locks.items() if name != "one dvc.lock")  # once per file
        print(f"  the coordinator writing every job's entries: {written:.1f} s once = {written / n_full * 1000:.1f} ms per instance")
        scale = n_full / n_part
        print(f"  at paper size (x{scale:.1f}): no-op repro {noop * scale:.0f} s, status {status * scale:.0f} s, "
              f"the coordinator's checkout and repro {(checkout + final) * scale:.0f} s (linear)")  # fmt: skip
        # a dispatched instance: its job (clone, repro on the paper grid, the stand-in command), its share of the
        # coordinator's end (the locks written once, checkout, the final repro's check of it) and of the planning
        shared = end + written / n_full + planning / n_full
        granularities = [("a generate instance alone in its job", single["seconds"]),
                         (f"a generate instance in a job of {len(grouped['targets'])}", per_grouped),
                         (f"a score instance in a job of {len(scored['targets'])}", per_scored)]  # fmt: skip
        for label, job_seconds in granularities:
            orchestration = job_seconds + shared
            print(f"orchestration per dispatched instance, {label}: {orchestration:.2f} s (under 5% of a stage of "
                  f"{20 * orchestration:.0f} s or more)")  # fmt: skip
            for stage, seconds in stage_costs.items():
                print(f"  {stage}: {seconds:.0f} s per instance on a real model -> orchestration {orchestration / seconds:.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
