"""params (toy.world) -> OUT/{train.jsonl, pools/<domain>.jsonl, finetune/<domain>.jsonl, tasks/<task>.jsonl}: the toy world."""

from __future__ import annotations

import argparse

HELP = "build the toy world; write its training corpus, calibration pools, fine-tuning split and task files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", metavar="FILE", help="study params (default params.yaml)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory, e.g. data/toy")


def run(args: argparse.Namespace) -> int:
    from expertlab.data.toy import write_toy_data
    from expertlab.io import atomic_dir
    from expertlab.params import load_params

    params = load_params(args.params)
    with atomic_dir(args.out, owner="prepare", inputs=[args.params]) as tmp:
        counts = write_toy_data(params.toy.world, tmp)
    print(
        f"prepare: {counts['train']} training texts, pools of {params.toy.world.pool_size} per domain, "
        f"{counts['tasks']} task files -> {args.out}"
    )
    return 0
