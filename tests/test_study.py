"""`expertlab check` sizes a grid: its stage instances (DVC's own count), its judge prompts, and what of its
inputs is not there yet; the paper's grid (params.paper.yaml) is checked without its models or data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from expertlab import layout
from expertlab.params import load_params
from expertlab.study import judge_prompts_per_item, stage_instances
from tests.pipeline_study import ROOT


def dvc_stage_counts(root: Path) -> Counter[str]:
    """Instances per stage name as DVC expands the pipeline files over the params.yaml beside them."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return Counter(stage.name.split("@")[0] for stage in repo.index.stages)


def test_the_stage_instances_are_dvc_s_own_count() -> None:
    params = load_params(ROOT / "params.yaml")
    counted = stage_instances(params)
    assert {name: count for name, count in counted.items() if count} == dict(dvc_stage_counts(ROOT))
    # by hand: 54 pruned + 6 compared (dual, easy_ep, 0.5/0.75, 3 seeds) + 3 quantized, one task group
    assert counted["generate"] == 54 and counted["generate_compared"] == 6 and counted["judge_quantized"] == 3
    # biomed and general (the dual calibration's parts: no observation of its own) and tool (the tool-use corpus)
    assert counted["observe"] == 1 * 3 * 3


def test_the_paper_grid_is_dvc_s_count_too(tmp_path: Path) -> None:
    """The pipeline files over params.paper.yaml (as params.yaml): the same counts as `expertlab check` prints."""
    repo = tmp_path / "paper"
    repo.mkdir()
    for path in layout.pipeline_files(ROOT):
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, repo / path)
    shutil.copy(ROOT / "params.paper.yaml", repo / "params.yaml")
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=repo, check=True)
    counted = {name: count for name, count in stage_instances(load_params(repo / "params.yaml")).items() if count}
    found = dict(dvc_stage_counts(repo))
    assert found.pop("train_toy") == 1  # in the DAG, though no ancestor of report (`expertlab run`) runs it
    assert counted == found
    assert counted["prune"] == 4 * 3 * 6 * 7 == 504 and counted["generate"] == 504 * 5


def test_judge_prompts_per_item_by_hand() -> None:
    params = load_params(ROOT / "params.yaml")
    judged = 54 + 6 + 3  # pruned, compared, quantized variants
    assert judge_prompts_per_item(params) == (judged + 1) + judged  # absolute: the source's output too; relative
    params.judge.protocols = ["relative"]
    assert judge_prompts_per_item(params) == judged


def check(params: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "expertlab.cli", "check", "--params", str(params),
                           "--queries", str(ROOT / "queries")], capture_output=True, text=True, cwd=cwd)  # fmt: skip


def test_the_paper_grid_is_checked_and_sized_without_its_models_or_data(tmp_path: Path) -> None:
    result = check(ROOT / "params.paper.yaml", tmp_path)
    assert result.returncode == 2
    out = result.stdout
    assert "4 model(s)" in out and "7 ratio(s)" in out and "504 pruned variant(s), 6 more under dual" in out
    assert "3 of them also quantized (gptq-w4a16)" in out
    assert "judge prompts: 1030 per judged item per judge" in out and "x 3 judge(s)" in out  # 517 absolute + 513 relative
    missing = [line for line in out.splitlines() if line.startswith("  not there yet: ")]
    assert "  not there yet: models.qwen3_6-35b-a3b: no model directory at models/qwen3_6-35b-a3b" in "\n".join(missing)
    assert any("calibration 'medinst' (source medinst): nothing at data/sources/medinst" in line for line in missing)
    assert any("no local copy of source 'multi_news_plus'" in line for line in missing)
    assert len(missing) == 4 + 2 + 11  # models, calibration sources, task sources
    assert result.stderr.strip() == (
        f"expertlab check: error: {ROOT / 'params.paper.yaml'}: not there yet: models.gpt-oss-20b: no model directory at "
        "models/gpt-oss-20b (its ratios are checked once it is there) (and 16 more, each named by `expertlab check`)"
    )


def test_a_grid_whose_inputs_are_there_passes_and_counts_its_prepared_items(tmp_path: Path) -> None:
    """The models' config.json, the calibration and task sources' local copies: check passes; prepared task
    groups give the judged items, and the judge prompts their product."""
    params = ROOT / "params.paper.yaml"
    from transformers import AutoConfig

    routing = {  # the released models' routed experts and top-k, in each family's own config keys
        "gpt-oss-20b": ("gpt_oss", {"num_local_experts": 32, "num_experts_per_tok": 4}),
        "qwen3-30b-a3b-instruct-2507": ("qwen3_moe", {"num_experts": 128, "num_experts_per_tok": 8}),
        "nemotron-3-nano-30b-a3b": ("nemotron_h", {"n_routed_experts": 128, "num_experts_per_tok": 6}),
        "qwen3_6-35b-a3b": ("qwen3_5_moe", {"text_config": {"num_experts": 256, "num_experts_per_tok": 8}}),
    }
    for name, (family, counts) in routing.items():
        (tmp_path / "models" / name).mkdir(parents=True)
        config = AutoConfig.for_model(family, **counts).to_dict()
        (tmp_path / "models" / name / "config.json").write_text(json.dumps(config))
    shutil.copytree(ROOT / "tests" / "fixtures" / "sources", tmp_path / "data" / "sources")
    (tmp_path / "data" / "tasks" / "summaries").mkdir(parents=True)
    meta = {"kind": "task_items", "group": "summaries", "items": {"rct_summary": 5, "multixscience_summary": 2,
            "multinews_summary": 3}, "sources": {}, "options": {}}  # fmt: skip
    (tmp_path / "data" / "tasks" / "summaries" / "meta.json").write_text(json.dumps(meta))
    result = check(params, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not there yet" not in result.stdout
    assert "judged items (rct_summary 5, multixscience_summary 2, multinews_summary 3) x 3 judge(s)" in result.stdout
    assert f"= {1030 * 10 * 3} prompts" in result.stdout
