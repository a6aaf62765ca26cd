"""A study's stale stage instances, in waves of DAG order: what `expertlab dispatch` sends out.

A stage instance is stale when `dvc status` says it changed, or when something upstream of it is stale (it then
runs on the new inputs, or is restored from the run-cache when they come out the same). Wave 0 holds the stale
instances with nothing stale upstream, wave n those whose stale upstream lies in waves below n. The stages the
coordinator keeps (ingest, report) are left out, and must be downstream of everything dispatched.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MODEL_ROOTS = ("models/", "checkpoints/")  # a dependency under these is a model a stage loads


@dataclass(frozen=True)
class Instance:
    """One stage instance: its name (`generate@toy-biomed-0-reap-0.5-toy`, unique over the study's pipeline files)
    and its address for `dvc repro` (`pipelines/generations/dvc.yaml:generate@toy-biomed-0-reap-0.5-toy`)."""

    name: str
    stage: str  # its stage in its pipeline file (the name before "@")
    model: str | None  # the model directory it loads (a dependency under models/ or checkpoints/), if any
    target: str  # layout.stage_address of its pipeline file and name
    upstream: tuple[str, ...] = ()  # the addresses of every instance it depends on, at any depth, dependencies first
    sources: tuple[str, ...] = ()  # the .dvc files (`dvc add`, `dvc import`) of the data it depends on, at any depth


@dataclass(frozen=True)
class Job:
    """Instances run together in one clone by one `dvc repro`: one instance, or a stage's instances that load the
    same model (config group_stages), so the model is checked out once."""

    instances: tuple[Instance, ...]

    @property
    def stage(self) -> str:
        return self.instances[0].stage

    @property
    def targets(self) -> list[str]:
        return [instance.target for instance in self.instances]

    @property
    def steps(self) -> list[str]:
        """What the job's `dvc repro --single-item` goes through: each instance's upstream, then the instance, in
        order, each address once. Every such list is closed under dependencies and ordered dependencies first,
        so their concatenation with repeats dropped is too."""
        return list(dict.fromkeys(address for instance in self.instances for address in (*instance.upstream, instance.target)))

    @property
    def sources(self) -> list[str]:
        """The .dvc files of the data its instances depend on (checked out before the repro: DVC's repro only
        verifies that a data source is there)."""
        return list(dict.fromkeys(source for instance in self.instances for source in instance.sources))

    @property
    def slug(self) -> str:
        """A file name for the job: its first instance's name, and how many more it holds."""
        name = self.instances[0].name.replace("@", "-").replace("/", "_")
        return name if len(self.instances) == 1 else f"{name}+{len(self.instances) - 1}"


@dataclass(frozen=True)
class Plan:
    waves: list[list[Instance]]
    coordinator: list[str]  # stale stages the coordinator runs itself
    up_to_date: int  # pipeline stage instances with nothing to do

    @property
    def instances(self) -> list[Instance]:
        return [instance for wave in self.waves for instance in wave]


def plan(root: str | Path, coordinator: Collection[str]) -> Plan:
    """The stale stage instances of the DVC repo at `root`, in waves (see the module docstring). DVC's own API
    reads the repo in a process of its own (python -m expertlab.dispatch.plan), so its locks, logging and
    terminal handling never touch the coordinator's."""
    import json
    import subprocess

    from expertlab.errors import ExpertlabError

    # -P: this interpreter's expertlab, never a copy in the working directory
    result = subprocess.run(
        [sys.executable, "-P", "-m", "expertlab.dispatch.plan", str(root), *coordinator], capture_output=True, text=True
    )
    if result.returncode != 0:
        said = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise ExpertlabError(f"dispatch: cannot plan the study at {root}: {said}")
    data = json.loads(result.stdout)
    return Plan(
        waves=[[Instance(**instance | {key: tuple(instance[key]) for key in ("upstream", "sources")}) for instance in wave]
               for wave in data["waves"]],  # fmt: skip
        coordinator=data["coordinator"],
        up_to_date=data["up_to_date"],
    )


def plan_here(root: str | Path, coordinator: Collection[str]) -> Plan:
    """plan(), in this process."""
    import networkx as nx
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    from expertlab.errors import ExpertlabError

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edges run from a stage to the stages it depends on
        # `dvc status` names a stage by its address from the working directory, the jobs by its address from the root
        by_address = {stage.addressing: stage for stage in graph.nodes if isinstance(stage, PipelineStage)}
        stages = {stage.name: stage for stage in by_address.values()}
        changed = [by_address[address] for address in repo.status() if address in by_address]
        stale = {stage.name for stage in changed}
        for stage in changed:
            stale |= {s.name for s in nx.ancestors(graph, stage) if isinstance(s, PipelineStage)}
        level: dict[str, int] = {}
        order = [stage for stage in reversed(list(nx.topological_sort(graph))) if isinstance(stage, PipelineStage)]
        rank = {stage: index for index, stage in enumerate(order)}  # dependencies first
        for stage in order:
            if stage.name not in stale:
                continue
            upstream = [level[s.name] for s in graph.successors(stage) if isinstance(s, PipelineStage) and s.name in level]
            level[stage.name] = 1 + max(upstream) if upstream else 0
        kept = {name for name in stale if name.split("@")[0] in coordinator}
        for name in stale - kept:
            below = {s.name for s in nx.descendants(graph, stages[name]) if isinstance(s, PipelineStage)}
            if below & kept:
                raise ExpertlabError(
                    f"dispatch: {name} depends on {sorted(below & kept)[0]}, which the coordinator runs at the end"
                )
        waves: list[list[Instance]] = [[] for _ in range(1 + max((level[n] for n in stale - kept), default=-1))]
        for name in sorted(stale - kept):
            below = nx.descendants(graph, stages[name])
            upstream = tuple(_target(repo, s) for s in sorted((s for s in below if s in rank), key=rank.__getitem__))
            sources = tuple(sorted(_relative(repo, s.path) for s in below if s not in rank))
            waves[level[name]].append(Instance(name, name.split("@")[0], _model_of(stages[name]), _target(repo, stages[name]),
                                               upstream, sources))  # fmt: skip
        return Plan(
            waves=[wave for wave in waves if wave],
            coordinator=sorted(kept, key=lambda name: level[name]),
            up_to_date=len(stages) - len(stale),
        )


def _target(repo, stage) -> str:  # noqa: ANN001
    from expertlab import layout

    return layout.stage_address(Path(_relative(repo, stage.dvcfile.path)), stage.name)


def _relative(repo, path: str) -> str:  # noqa: ANN001
    return Path(path).relative_to(repo.root_dir).as_posix()


def _model_of(stage) -> str | None:  # noqa: ANN001
    for dep in stage.deps:
        if dep.def_path.startswith(MODEL_ROOTS):
            return dep.def_path
    return None


def jobs(wave: Sequence[Instance], group_stages: Collection[str], batch: Mapping[str, int] | None = None) -> list[Job]:
    """One job per instance, except that a wave's instances of a stage in `group_stages` that load the same model
    share one, and those of a stage in `batch` go out in jobs of at most that many (in the wave's order)."""
    batch = batch or {}
    grouped: dict[tuple[str, str | None], list[Instance]] = {}
    out: list[Job] = []
    for instance in wave:
        if instance.stage in batch:
            grouped.setdefault((instance.stage, None), []).append(instance)
        elif instance.model is None or instance.stage not in group_stages:
            out.append(Job((instance,)))
        else:
            grouped.setdefault((instance.stage, instance.model), []).append(instance)
    for (stage, model), group in grouped.items():
        size = batch[stage] if model is None else len(group)
        out += [Job(tuple(group[start : start + size])) for start in range(0, len(group), size)]
    return out


def main(argv: Sequence[str]) -> int:
    """python -m expertlab.dispatch.plan ROOT [COORDINATOR_STAGE ...]: the plan as JSON on stdout."""
    import json
    from dataclasses import asdict

    from expertlab.errors import ExpertlabError

    try:
        found = plan_here(argv[0], argv[1:])
    except ExpertlabError as err:
        print(err, file=sys.stderr)
        return 2
    print(json.dumps({"waves": [[asdict(i) for i in wave] for wave in found.waves], "coordinator": found.coordinator,
                      "up_to_date": found.up_to_date}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
