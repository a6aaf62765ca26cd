"""GPU smoke test: prune a tiny checkpoint of every family and load and generate it with vLLM.

Never part of CI (vLLM needs a GPU). For each family's tiny model (tests/tiny_models): save it,
prune half of each routing group with `expertlab.moe.prune.prune_checkpoint`, then greedy-decode a
few prompts (token ids: the tiny models have no tokenizer) with transformers and with vLLM from
the pruned directory, and report whether vLLM loaded it, generated, and how many greedy tokens
agree with transformers. `--no-vllm` runs everything but vLLM (the CPU part is
tested in tests/test_scripts.py so this script cannot rot).

    make setup-gpu                                          # on a GPU machine: requirements-gpu.lock (vLLM, CUDA torch)
    .venv/bin/python scripts/gpu_smoke.py --out /tmp/smoke
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPTS = [[1, 2, 3], [10, 20, 30, 40], [5]]  # token ids below every tiny model's vocabulary size (64)
NEW_TOKENS = 8


def prepare(family: str, out: Path) -> Path:
    """Tiny source checkpoint and its pruned copy; returns the pruned directory."""
    from tests.test_families import example_mask
    from tests.tiny_models import build

    from expertlab.moe.prune import prune_checkpoint

    model = build(family)
    source, pruned = out / family / "source", out / family / "pruned"
    model.save_pretrained(source)
    (out / family / "mask.json").write_text(json.dumps(example_mask(model)))
    prune_checkpoint(source, out / family / "mask.json", pruned)
    return pruned


def transformers_tokens(model_dir: Path) -> list[list[int]]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    result = []
    for prompt in PROMPTS:
        ids = torch.tensor([prompt])
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None, min_new_tokens=NEW_TOKENS)
        result.append(out[0, ids.shape[1] :].tolist())
    return result


def vllm_tokens(model_dir: Path) -> list[list[int]]:
    from vllm import LLM, SamplingParams

    llm = LLM(
        model=str(model_dir), dtype="float32", enforce_eager=True, gpu_memory_utilization=0.3,
        max_model_len=64, skip_tokenizer_init=True,
    )
    params = SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS, min_tokens=NEW_TOKENS, ignore_eos=True)
    outputs = llm.generate([{"prompt_token_ids": prompt} for prompt in PROMPTS], params)
    return [list(output.outputs[0].token_ids) for output in outputs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="working directory (checkpoints and results.json)")
    parser.add_argument("--families", help="comma-separated subset (default: every registered family)")
    parser.add_argument("--no-vllm", action="store_true", help="prune and decode with transformers only")
    args = parser.parse_args()

    from tests.tiny_models import TINY

    families = args.families.split(",") if args.families else sorted(TINY)
    results = {}
    for family in families:
        row: dict[str, object] = {}
        try:
            pruned = prepare(family, args.out)
            reference = transformers_tokens(pruned)
            row["transformers"] = "ok"
            if not args.no_vllm:
                got = vllm_tokens(pruned)
                agree = sum(a == b for ref, out in zip(reference, got) for a, b in zip(ref, out))
                row.update(vllm="ok", greedy_tokens_agreeing=f"{agree}/{len(PROMPTS) * NEW_TOKENS}")
        except Exception as err:  # noqa: BLE001  (a family's failure is a result, the others still run)
            row["error"] = f"{type(err).__name__}: {err}"
            row["traceback"] = traceback.format_exc(limit=3)
        results[family] = row
        print(f"{family:<16} " + ", ".join(f"{k}={v}" for k, v in row.items() if k != "traceback"), flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all("error" not in row for row in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
