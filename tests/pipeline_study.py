"""The micro study the end-to-end tests run: its params, and a git + DVC repo holding this project's pipeline files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from expertlab import layout
from expertlab.dispatch.worker import RAN, said

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PIPELINE_FILES = [*(path.as_posix() for path in layout.pipeline_files(ROOT)), ".dvcignore", ".dvc/config", ".dvc/.gitignore", "requirements-deepeval.lock", "requirements-bfcl.lock"]
PIPELINE_DIRS = ["expertlab", "stages", "schema", "queries", "imported", "monosemanticity", "data/sources"]


MICRO = {
    "study": {
        "models": ["toy"],
        "calibrations": ["biomed"],
        "seeds": [0],
        "criteria": ["random", "reap"],
        "ratios": [0.5],
        "tasks": {"toy": ["bio_qa", "bio_mcq", "general_arith", "general_mcq", "trial_summary", "tool_call"]},
        "compare": {"models": [], "calibrations": [], "criteria": [], "ratios": []},
        "quantize": {"schemes": ["w4g16"], "models": ["toy"], "criteria": ["reap"], "ratios": [0.5]},
    },
    "models": {"toy": {"family": "qwen3_moe", "toy": True}},
    "calibrations": {"biomed": {"source": "toy", "domains": ["biomedical"], "samples": 64},
                     "tool": {"source": "toy", "domains": ["tool_use"], "samples": 64}},
    "combined_calibrations": {},
    "observe": {"batch_size": 8, "max_length": 64},
    "select": {"allow_top_k_reduction": False},
    "evaluation": {"data_dir": "data/sources"},
    "generate": {"batch_size": 16},  # every item of every task (toy.world.eval_items)
    "score": {},
    "judges": {"grounding": {"backend": "grounding"}},
    "judge": {"judges": ["grounding"], "tasks": ["trial_summary"], "max_attempts": 6, "max_invalid": 3, "timeout_s": 60,
              "retry_invalid": False},
    "quantization": {"w4g16": {"method": "gptq", "bits": 4, "group_size": 16}},
    "monosemanticity": {
        "models": ["toy"], "corpus": {"biomedical": "biomed", "tool_use": "tool"}, "domains": ["biomedical", "tool_use"],
        "seed": 0, "window": 8,
        "sampling": {"explain_examples": 5, "test_examples": 5, "negatives": 5, "test_sampling": "quantiles", "quantiles": 5},
        "domain_prompts": {"biomedical": "medicine", "tool_use": "tool_use"}, "explainers": ["offline"], "predictor": "offline", "examples_per_prompt": 10,
        "top_k": ["native", 4],
    },
    "finetune": {
        "models": ["toy"], "domain": "tool_use", "layers": "best_lds", "experts_per_layer": 4,
        "strategies": ["full", "af", "edmrs", "lora"], "seeds": [0], "data": {"source": "toy", "path": None, "samples": 64, "seed": 0},
        "training": {"lr": 0.001, "min_lr": 0.0001, "batch_size": 16, "micro_batch_size": 16, "max_length": 96, "epochs": 1},
        "device": "cpu", "work_dir": ".expertlab/finetune",
    },
    # every number the queries read, as the default params.yaml gives them (dvc.yaml tracks each key); the
    # charts only inlined in index.html (their files: tests/test_queries.py)
    "report": yaml.safe_load((ROOT / "params.yaml").read_text())["report"]
    | {"print": ["headline", "findings"], "chart_formats": []},
    # The smallest toy that shows the findings on a real run (tests/test_pipeline.py asserts them): 16 experts
    # in two layers, 1000 steps (about 25 s single-threaded), routed by domain for the first 80% of them; numbers
    # up to 4, so the tiny model learns its arithmetic; 16 items per task, one generate batch
    "toy": {
        "world": {"drugs": 8, "countries": 8, "arith_max": 4, "train_examples_per_domain": 2000, "tool_train_examples": 500,
                  "tool_finetune_examples": 256, "pool_size": 128, "eval_items": 16},
        "model": {
            "hidden_size": 32,
            "num_layers": 2,
            "num_heads": 2,
            "num_kv_heads": 1,
            "head_dim": 16,
            "intermediate_size": 64,
            "moe_intermediate_size": 32,
            "num_experts": 16,
            "top_k": 2,
            "max_position_embeddings": 256,
        },
        "train": {
            "steps": 1000,
            "batch_size": 32,
            "seq_len": 96,
            "lr": 0.01,
            "warmup": 20,
            "threads": 1,
            "domain_routed_fraction": 0.8,
            "log_every": 100,
        },
    },
}


def sh(*args: str, cwd: Path) -> str:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def ran(output: str) -> set[str]:
    """The stage instances DVC's output says it ran, by name (without their pipeline file)."""
    return set(said(RAN, output))


def pipeline_stages(root: Path = ROOT) -> dict[str, tuple[Path, dict]]:
    """Every stage of the study's pipeline files, by name: its file (relative to `root`) and its YAML."""
    found: dict[str, tuple[Path, dict]] = {}
    for path in layout.pipeline_files(root):
        for name, stage in yaml.safe_load((root / path).read_text())["stages"].items():
            assert name not in found, f"stage {name} is in both {found[name][0]} and {path}"
            found[name] = (path, stage)
    return found


def target(name: str) -> str:
    """`dvc repro`'s address of a stage instance (`prune@toy-biomed-0-reap-0.5`) from its name."""
    path, _ = pipeline_stages()[name.split("@")[0]]
    return layout.stage_address(path, name)


def locked(repo: Path) -> dict[str, dict]:
    """Every stage instance the repo's dvc.lock files record, by name."""
    found: dict[str, dict] = {}
    for path in layout.lock_files(repo):
        if (repo / path).exists():
            found |= yaml.safe_load((repo / path).read_text())["stages"]
    return found


def commit(repo: Path, message: str) -> None:
    sh("git", "add", "-A", cwd=repo)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message, cwd=repo)


def study_repo(repo: Path, params: dict) -> Path:
    """A git repo at `repo` holding this project's pipeline files and `params` as params.yaml."""
    repo.mkdir(parents=True, exist_ok=True)
    for name in PIPELINE_FILES:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    for name in PIPELINE_DIRS:
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / ".gitignore").write_text("__pycache__/\n")
    sh("git", "init", "-q", cwd=repo)
    return repo
