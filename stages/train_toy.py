"""params (toy.model, toy.train) + training JSONL -> OUT: HF model directory, tokenizer, train_log.json."""

from __future__ import annotations

import argparse

HELP = "train the tiny Qwen3-MoE on the toy corpus; saves a standard HF model directory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", metavar="FILE", help="study params (default params.yaml)")
    parser.add_argument("--data", required=True, metavar="FILE.jsonl", help='training texts, lines {"text": ...}')
    parser.add_argument("--out", required=True, metavar="DIR", help="model directory to write, e.g. models/toy")


def run(args: argparse.Namespace) -> int:
    from expertlab.io import read_jsonl
    from expertlab.params import load_params
    from expertlab.train import train_toy_model

    params = load_params(args.params)
    texts, domains = [], []
    for number, row in enumerate(read_jsonl(args.data), start=1):
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise ValueError(f'{args.data}:{number}: expected an object with a "text" string')
        texts.append(row["text"])
        domains.append(row.get("domain"))
    if params.toy.train.domain_routed_fraction > 0 and None in domains:
        raise ValueError(f'{args.data}: toy.train.domain_routed_fraction > 0 needs a "domain" on every line')
    log = train_toy_model(
        texts, params.toy.model, params.toy.train, args.out, domains=domains, inputs=[args.data, args.params]
    )
    first, last = log["curve"][0]["lm_loss"], log["curve"][-1]["lm_loss"]
    print(
        f"train-toy: {log['parameters']:,} parameters, {params.toy.train.steps} steps in {log['seconds']:.0f} s, "
        f"lm loss {first:.3f} -> {last:.3f} -> {args.out}"
    )
    return 0
