"""Benchmark: peak memory of observe with the model in memory vs. with a memory budget (layers from disk).

Builds a random Qwen3-MoE of about 400 MB (bf16) once, then observes the same calibration
batches in two fresh processes: all weights in memory, and with `max_memory` set far below the
model size. Prints each process's peak anonymous memory above its state after importing torch
(what the weights and activations take; file pages mapped from the checkpoint are excluded, the
kernel reclaims them) and its peak resident memory, the ratio of the first, and whether the two
statistics tables are identical (they must be).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys, threading, time
import torch
from expertlab.moe.observe import loaded_model, observe_batches

peak_anon = 0
def sample():  # anonymous resident memory: weights copied into the process, not file pages mapped from disk
    global peak_anon
    while True:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    peak_anon = max(peak_anon, int(line.split()[1]))
        time.sleep(0.005)
threading.Thread(target=sample, daemon=True).start()
model_dir, max_memory, out = sys.argv[1], (sys.argv[2] or None), sys.argv[3]
time.sleep(0.05)
baseline = peak_anon
generator = torch.Generator().manual_seed(0)
batches = [(torch.randint(0, 1000, (4, 64), generator=generator), torch.ones(4, 64, dtype=torch.long)) for _ in range(2)]
start = time.perf_counter()
with loaded_model(model_dir, max_memory) as model:
    frame = observe_batches(model, batches)
seconds = time.perf_counter() - start
frame.to_parquet(out)
time.sleep(0.05)
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "peak_anon_mb": (peak_anon - baseline) / 1024, "seconds": seconds}))
"""


def build(model_dir: Path) -> int:
    import torch
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.manual_seed(0)
    config = Qwen3MoeConfig(
        vocab_size=1000, hidden_size=512, intermediate_size=1024, moe_intermediate_size=512,
        num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4, head_dim=64,
        num_experts=32, num_experts_per_tok=4, max_position_embeddings=256,
    )
    model = Qwen3MoeForCausalLM(config).to(torch.bfloat16).eval()
    model.save_pretrained(model_dir)
    return sum(p.numel() * p.element_size() for p in model.parameters())


def observe_in_child(model_dir: Path, max_memory: str, out: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(model_dir), max_memory, str(out)], check=True, capture_output=True, text=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", default="64MB", help="max_memory of the offloaded run")
    args = parser.parse_args()

    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="expertlab-bench-") as tmp:
        tmp = Path(tmp)
        weight_mb = build(tmp / "model") / 2**20
        full = observe_in_child(tmp / "model", "", tmp / "full.parquet")
        offloaded = observe_in_child(tmp / "model", args.budget, tmp / "offloaded.parquet")
        same = pd.read_parquet(tmp / "full.parquet").equals(pd.read_parquet(tmp / "offloaded.parquet"))
    print(f"model weights:             {weight_mb:.0f} MiB (bf16)")
    for name, run in (("in memory", full), (f"max_memory {args.budget}", offloaded)):
        print(
            f"{name:<26} peak memory {run['peak_anon_mb']:.0f} MiB "
            f"(peak RSS {run['peak_rss_mb']:.0f} MiB), {run['seconds']:.1f} s"
        )
    print(f"peak memory ratio (offloaded / in memory) = {offloaded['peak_anon_mb'] / full['peak_anon_mb']:.3f}")
    print(f"identical statistics: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
