"""Benchmark: time(observe with all statistics) / time(plain forward) on the same tokens. Target <= 1.15.

Uses models/toy when it exists (after `make run`), otherwise a randomly initialised Qwen3-MoE of
the toy default size. Both timings come from this one run: each repeat times a plain pass and an
observed pass back to back, and the reported overhead is the median of those paired ratios, which
is robust to the machine's speed drifting between repeats (shared CPUs do).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from expertlab.moe.observe import observe_batches


class _Vocabulary:
    """Stands in for a tokenizer where only the vocabulary size and special ids matter."""

    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __len__(self) -> int:
        return 2048


def toy_sized_model() -> torch.nn.Module:
    """models/toy when trained, else a fresh model built from the default toy config."""
    from transformers import AutoModelForCausalLM

    from expertlab.train import ToyModelConfig, build_model

    if (Path("models/toy") / "config.json").is_file():
        return AutoModelForCausalLM.from_pretrained("models/toy").eval()
    return build_model(ToyModelConfig(), _Vocabulary(), seed=0).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    model = toy_sized_model()
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    batches = []
    for _ in range(args.batches):
        ids = torch.randint(0, vocab, (args.batch_size, args.seq_len), generator=generator)
        mask = torch.ones_like(ids)
        mask[: args.batch_size // 2, args.seq_len * 3 // 4 :] = 0  # some padding, as in real calibration batches
        batches.append((ids, mask))

    def plain() -> None:
        with torch.inference_mode():
            for ids, mask in batches:
                model(input_ids=ids, attention_mask=mask, use_cache=False)

    def observed() -> None:
        observe_batches(model, batches)

    plain(), observed()  # warm-up
    plain_times, observe_times = [], []
    for _ in range(args.repeats):
        for fn, sink in ((plain, plain_times), (observed, observe_times)):
            start = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - start)
    tokens = sum(int(mask.sum()) for _, mask in batches)
    ratios = sorted(o / p for p, o in zip(plain_times, observe_times))
    ratio = statistics.median(ratios)
    print(f"tokens per pass: {tokens}, experts implementation: {model.config._experts_implementation}")
    print(f"plain forward:  {statistics.median(plain_times):.3f} s (median of {args.repeats})")
    print(f"observe:        {statistics.median(observe_times):.3f} s (median of {args.repeats})")
    print(f"paired ratios:  min {ratios[0]:.3f}, max {ratios[-1]:.3f}")
    print(f"observe overhead = {ratio:.3f} (target <= 1.15: {'met' if ratio <= 1.15 else 'NOT met'})")


if __name__ == "__main__":
    main()
