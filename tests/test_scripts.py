"""scripts/gpu_smoke.py runs its CPU part (prune, reload, greedy decode) so it cannot rot between GPU runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_smoke_script_without_vllm(tmp_path):
    families = ["qwen3_moe", "gpt_oss", "deepseek_v3"]
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_smoke.py"), "--out", str(tmp_path), "--no-vllm",
         "--families", ",".join(families)],
        check=True, capture_output=True, text=True,
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert results == {family: {"transformers": "ok"} for family in families}
    for family in families:
        assert (tmp_path / family / "pruned" / "config.json").is_file()
