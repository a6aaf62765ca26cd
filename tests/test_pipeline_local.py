"""End to end on a local checkpoint: the README's real-model recipe, in its own repo (a file of its own, so
that pytest-xdist runs it beside the micro study of test_pipeline.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from tests.pipeline_study import MICRO, commit, ran, sh, study_repo

pytestmark = pytest.mark.slow


def test_a_local_checkpoint_is_studied_without_training_the_toy(tmp_path: Path, tiny_moe_dir: Path):
    """The README's real-model recipe: a checkpoint under models/<name>, tracked by `dvc add`."""
    params = {**MICRO, "study": {**MICRO["study"], "models": ["tiny"]}, "models": {"tiny": {"family": "qwen3_moe"}}}
    repo = study_repo(tmp_path / "study", params)
    shutil.copytree(tiny_moe_dir, repo / "models" / "tiny")
    sh("dvc", "add", "-q", "models/tiny", cwd=repo)
    commit(repo, "a local checkpoint")
    output = sh("expertlab", "run", cwd=repo)
    assert "train_toy" not in ran(output) and not (repo / "models" / "toy").exists()
    expected = {"observe@tiny-biomed-0", "prune@tiny-biomed-0-reap-0.5", "quantize@tiny-biomed-0-reap-0.5-w4g16"}
    assert expected | {"report"} <= ran(output)
    assert "headline:" in output and "findings:" in output  # (a random tiny model scores 0: no rows to show)
    con = duckdb.connect(str(repo / "results.duckdb"), read_only=True)
    # the source, random and reap at 0.5, and reap at 0.5 quantized
    assert con.execute("select count(*) from variants where model = 'tiny'").fetchone() == (4,)
    assert con.execute("select distinct num_experts from observations").fetchall() == [(4,)]
