"""Benchmark: one model stage command run cold (a process of its own) against warm (a fork of `expertlab run`'s
warm process), paired and interleaved, on a tiny Qwen3-MoE saved with a word-level tokenizer.

The command is `expertlab record-activations` on 16 short texts: it imports torch and transformers, loads
the model and runs one batch, as the toy study's generate, observe and prune instances do. Prints the
median seconds of each and their ratio; both runs' outputs are compared byte for byte. Exits non-zero
when the warm command is not at least twice as fast or the outputs differ.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PAIRS = 5
TARGET = 2.0
TEXTS = [f"the dose of drug {i} is {i % 7} mg for patients with fever and pain" for i in range(16)]


def build(model_dir: Path) -> None:
    from expertlab.data.tokenizer import build_tokenizer
    from expertlab.train import ToyModelConfig, build_model

    tokenizer = build_tokenizer(TEXTS, min_frequency=1)
    config = ToyModelConfig(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, head_dim=16, intermediate_size=64,
                            moe_intermediate_size=32, num_experts=8, top_k=2, max_position_embeddings=128)  # fmt: skip
    build_model(config, tokenizer, seed=0).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    from expertlab import warm

    expertlab = str(Path(sys.executable).parent / "expertlab")
    with tempfile.TemporaryDirectory(prefix="expertlab-bench-warm-") as tmp:
        root = Path(tmp)
        build(root / "model")
        corpus = root / "texts.jsonl"
        corpus.write_text("".join(json.dumps({"text": text}) + "\n" for text in TEXTS))

        def command(out: str) -> list[str]:
            return [expertlab, "record-activations", str(root / "model"), "--corpus", f"toy={corpus}", "--window", "8",
                    "--out", str(root / out)]  # fmt: skip

        cold_env = {key: value for key, value in os.environ.items() if key != warm.ENV_VAR}
        cold, hot = [], []
        with warm.process(cold_env) as (warm_env, log):
            timed(command("ready"), warm_env)  # the first waits for the server's imports: not counted
            for pair in range(PAIRS):
                cold.append(timed(command(f"cold{pair}"), cold_env))
                hot.append(timed(command(f"warm{pair}"), warm_env))
            ran_warm = sum(1 for record in warm.read_log(log) if record.get("warm"))
        same = all(
            (root / f"cold{pair}" / name).read_bytes() == (root / f"warm{pair}" / name).read_bytes()
            for pair in range(PAIRS) for name in ("windows.parquet", "activations.parquet", "meta.json")
        )  # fmt: skip
    ratio = statistics.median(cold) / statistics.median(hot)
    print(f"record-activations on a tiny Qwen3-MoE, {PAIRS} interleaved pairs: cold median {statistics.median(cold):.2f} s, "
          f"warm median {statistics.median(hot):.2f} s, ratio {ratio:.1f}x (target >= {TARGET}x); "
          f"{ran_warm} commands ran warm; outputs byte-identical: {same}")  # fmt: skip
    return 0 if ratio >= TARGET and same and ran_warm == PAIRS + 1 else 1


if __name__ == "__main__":
    sys.exit(main())
