"""Model dir + calibration JSONL -> DIR/expert_stats.parquet (one row per layer, expert) + DIR/meta.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.common import add_params_argument, load_optional_params

HELP = "one calibration pass recording per-(layer, expert) statistics for every criterion"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="Hugging Face model directory")
    parser.add_argument("--data", required=True, metavar="FILE.jsonl", help='calibration texts, lines {"text": ...}')
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--batch-size", type=int, help="sequences per forward pass (default 16 or observe.batch_size)")
    parser.add_argument("--max-length", type=int, help="tokens per sequence (default 256 or observe.max_length)")
    parser.add_argument(
        "--max-memory", metavar="SIZE",
        help='CPU memory for weights, e.g. "8GiB"; layers beyond it are loaded from disk one at a time '
        "(default: all in memory, or observe.max_memory)",
    )
    parser.add_argument("--model", help="model name recorded in meta.json (default: the directory name)")
    parser.add_argument("--calibration", default="custom", help="calibration name recorded in meta.json")
    parser.add_argument("--seed", type=int, default=0, help="calibration seed recorded in meta.json")
    add_params_argument(parser)


def read_texts(path: str | Path) -> list[str]:
    """The "text" of every line of a calibration JSONL file."""
    from expertlab.io import read_jsonl

    texts = []
    for number, row in enumerate(read_jsonl(path), start=1):
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise ValueError(f'{path}:{number}: expected an object with a "text" string')
        if not row["text"].strip():
            raise ValueError(f'{path}:{number}: the "text" is empty; a calibration sample must hold tokens')
        texts.append(row["text"])
    if not texts:
        raise ValueError(f"{path}: no calibration texts in it")
    return texts


def run(args: argparse.Namespace) -> int:
    params = load_optional_params(args)
    batch_size = args.batch_size or (params.observe.batch_size if params else 16)
    max_length = args.max_length or (params.observe.max_length if params else 256)
    max_memory = args.max_memory or (params.observe.max_memory if params else None)

    from expertlab.io import OutputDir, write_json

    output = OutputDir(args.out, "observe", inputs=[args.model_dir, args.data])
    output.check()
    texts = read_texts(args.data)

    from transformers import AutoTokenizer

    from expertlab.moe.families import adapter_for
    from expertlab.moe.observe import loaded_model, observe

    model_dir = Path(args.model_dir)
    with loaded_model(model_dir, max_memory) as model:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        adapter = adapter_for(model)
        routing = adapter.routing(model.config)
        frame = observe(model, tokenizer, texts, batch_size=batch_size, max_length=max_length)
    meta = {
        "kind": "observation",
        "model": args.model or model_dir.name,
        "calibration": args.calibration,
        "seed": args.seed,
        "model_type": model.config.model_type,
        "num_experts": routing.num_experts,
        "top_k": routing.top_k,
        "n_group": routing.n_group,
        "moe_layers": sorted(int(i) for i in frame["layer"].unique()),
        "samples": len(texts),
        "tokens": int(frame["tokens"].iloc[0]),
        "batch_size": batch_size,
        "max_length": max_length,
    }
    with output.writing() as tmp:
        frame.to_parquet(tmp / "expert_stats.parquet", index=False)
        write_json(tmp / "meta.json", meta)
    print(f"observe: {len(texts)} texts, {meta['tokens']} tokens, {len(meta['moe_layers'])} MoE layers -> {args.out}")
    return 0
