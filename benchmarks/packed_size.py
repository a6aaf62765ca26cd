"""Benchmark: on-disk size of a packed W4A16 checkpoint against the unquantized one it was made from.

Builds a random bfloat16 Qwen3-MoE of about 17 MiB whose layers are whole multiples of 128 columns wide
(so the study's scheme, params.yaml's `gptq-w4a16`, has real groups of 128), saves it as the
unquantized (pruned) checkpoint, then quantizes it as the quantize stage does (GPTQ calibrated on
random token ids, saved, packed) and prints the bytes of the routed experts' tensors and of the whole
weights file in each, and their ratios. Exits non-zero when the routed experts are not at least 3.5x smaller.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 3.5  # routed experts: bf16 (16 bits a weight) against 4 bits plus one bf16 scale per 128 weights


def build(model_dir: Path) -> None:
    import torch
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.manual_seed(0)
    config = Qwen3MoeConfig(
        vocab_size=1000, hidden_size=512, intermediate_size=1024, moe_intermediate_size=256,
        num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=4, head_dim=64,
        num_experts=8, num_experts_per_tok=2, max_position_embeddings=256,
    )
    Qwen3MoeForCausalLM(config).to(torch.bfloat16).save_pretrained(model_dir)


def tensor_bytes(model_dir: Path) -> tuple[int, int]:
    """(bytes of the routed experts' tensors, bytes of the weights file) of a one-file checkpoint."""
    from safetensors import safe_open

    path = model_dir / "model.safetensors"
    experts = 0
    with safe_open(path, "pt") as fh:
        for key in fh.keys():
            if ".mlp.experts." in key:
                tensor = fh.get_tensor(key)
                experts += tensor.numel() * tensor.element_size()
    return experts, path.stat().st_size


def quantize(source: Path, out: Path) -> str:
    import torch
    from transformers import AutoModelForCausalLM

    from expertlab.params import load_params
    from expertlab.quantize.checkpoint import scheme_from_spec
    from expertlab.quantize.model import quantize_model
    from expertlab.quantize.packed import pack_checkpoint

    name = "gptq-w4a16"
    scheme = scheme_from_spec(load_params(ROOT / "params.yaml").quantization[name])
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 1000, (4, 64), generator=generator), torch.ones(4, 64, dtype=torch.long))]
    model = AutoModelForCausalLM.from_pretrained(source).eval()
    done = quantize_model(model, batches, scheme, progress=False)
    model.save_pretrained(out)
    config = pack_checkpoint(model, done, scheme.grid, out)
    weights = config.config_groups["group_0"].weights
    return f"{name}: {weights.num_bits}-bit {weights.strategy} (group_size {weights.group_size})"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="expertlab-bench-") as tmp:
        source, packed = Path(tmp) / "pruned", Path(tmp) / "packed"
        build(source)
        scheme = quantize(source, packed)
        (source_experts, source_file), (packed_experts, packed_file) = tensor_bytes(source), tensor_bytes(packed)
    mib = 2**20
    print(f"scheme:          {scheme}")
    print(f"routed experts:  {source_experts / mib:.1f} MiB bf16 -> {packed_experts / mib:.1f} MiB packed, "
          f"{source_experts / packed_experts:.2f}x smaller (target {TARGET}x)")
    print(f"whole checkpoint: {source_file / mib:.1f} MiB -> {packed_file / mib:.1f} MiB, "
          f"{source_file / packed_file:.2f}x smaller (embeddings, lm_head, norms and routers stay bf16)")
    return 0 if source_experts / packed_experts >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
