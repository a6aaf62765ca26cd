"""README, the pipeline files (dvc.yaml, pipelines/*/dvc.yaml), params.yaml, the CLI and the registries must not drift apart."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from expertlab.cli import COMMANDS, build_parser
from tests.pipeline_study import pipeline_stages

ROOT = Path(__file__).resolve().parents[1]
STAGES = {name: stage for name, (_, stage) in pipeline_stages().items()}  # every pipeline file's
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
README = (ROOT / "README.md").read_text()


def lookup(data: dict, dotted: str):  # noqa: ANN201
    node = data
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f"params.yaml lacks {dotted!r}"
        node = node[part]
    return node


def test_every_tracked_params_key_exists():
    for name, stage in STAGES.items():
        matrix = {}
        for axis, values in stage.get("matrix", {}).items():
            match = re.fullmatch(r"\$\{(.+)\}", values)
            assert match, f"stage {name}: matrix axes come from params.yaml"
            matrix[axis] = lookup(PARAMS, match.group(1))
            # a list, or a mapping whose keys are the axis values (task groups)
            assert isinstance(matrix[axis], (list, dict)), f"stage {name}: axis {axis}"
        for key in stage.get("params", []):
            if "${item." in key:  # one instance's own entry, e.g. study.tasks.${item.group}
                axis = re.search(r"\$\{item\.(\w+)\}", key).group(1)
                for value in matrix[axis]:
                    lookup(PARAMS, key.replace(f"${{item.{axis}}}", str(value)))
            else:
                lookup(PARAMS, key)


def test_every_stage_command_is_a_cli_command_and_its_code_is_a_dependency():
    for name, stage in STAGES.items():
        command = stage["cmd"].split()
        assert command[0] == "expertlab" and command[1] in COMMANDS, name
        module_file = COMMANDS[command[1]].replace(".", "/") + ".py"
        assert module_file in stage["deps"], f"stage {name} does not depend on {module_file}"
        data_dir = PARAMS["evaluation"]["data_dir"]
        built = ("models/", *(_static(out) for out in outputs()))  # models/<name>: the toy's, or given
        for dep in stage["deps"]:
            dep = dep.replace("${evaluation.data_dir}", data_dir)  # committed: must exist in a clean clone
            made = dep.startswith(built) or any(prefix.startswith(dep + "/") for prefix in built)
            if dep == data_dir or ("${" not in dep and not made):
                assert (ROOT / dep).exists(), f"stage {name}: dependency {dep} does not exist"


def outputs(stage: dict | None = None) -> list[str]:
    """The output paths of one stage (all stages: None), as written in its pipeline file."""
    stages = [stage] if stage is not None else STAGES.values()
    return [out if isinstance(out, str) else next(iter(out)) for s in stages for out in s.get("outs", [])]


def _static(path: str) -> str:
    """A path with its ${...} parts cut off: what every instance's path starts with."""
    return path.split("${")[0]


def test_every_stage_descends_from_the_params_check():
    """`dvc repro` validates params.yaml before anything else runs, whatever was edited."""
    def feeds(upstream: dict, stage: dict) -> bool:
        return any(
            _static(dep).startswith(_static(out)) or _static(out).startswith(_static(dep))
            for out in outputs(upstream) for dep in stage.get("deps", [])
            if _static(out) and _static(dep)
        )

    stages = STAGES
    reached = {"check"}
    grew = True
    while grew:
        grew = False
        for name, stage in stages.items():
            if name not in reached and any(feeds(stages[up], stage) for up in reached):
                reached.add(name)
                grew = True
    assert set(stages) == reached, f"stages not downstream of check: {sorted(set(stages) - reached)}"
    assert stages["check"]["deps"][0] == "params.yaml" and "params" not in stages["check"]


def test_every_pipeline_file_runs_its_stages_from_the_root_on_the_root_params():
    """A stage of pipelines/<kind>/dvc.yaml is written as if it were in dvc.yaml: DVC runs it in the study's root,
    tracks the root's params.yaml, and each kind's file holds only stages writing under that kind's directory."""
    from dvc.dependency import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        for stage in repo.index.stages:
            assert Path(stage.wdir) == ROOT, stage.addressing
            for dep in stage.deps:
                if isinstance(dep, ParamsDependency):
                    assert Path(dep.fs_path) == ROOT / "params.yaml", stage.addressing
    for name, (path, stage) in pipeline_stages().items():
        if path.parts[0] == "pipelines":
            assert all(_static(out).startswith(f"{path.parts[1]}/") for out in outputs(stage)), name


def test_every_cli_command_is_documented_in_the_readme():
    parser = build_parser()
    names = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    for name in names:
        assert f"expertlab {name}" in README or f"make {name}" in README, f"`expertlab {name}` is not in README.md"


def test_readme_tables_section_lists_every_query_and_store_table():
    for query in sorted((ROOT / "queries").glob("*.sql")):
        assert f"`{query.stem}`" in README, f"README does not document report table {query.stem}"
    ddl = (ROOT / "schema" / "expertlab.sql").read_text()
    for table in re.findall(r"^create (?:table|view) (\w+)", ddl, flags=re.M):
        assert f"`{table}`" in README, f"README does not document store table {table}"
