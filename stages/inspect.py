"""Model directory -> its MoE structure and parameter counts before and after pruning (files only)."""

from __future__ import annotations

import argparse
import json

HELP = "print a model's family, MoE layers, experts, top-k, routing and parameter counts before/after pruning"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="Hugging Face model directory (config.json + safetensors)")
    parser.add_argument(
        "--ratio", type=float, action="append", metavar="R",
        help="pruning ratio to size (repeatable; default 0.25, 0.5, 0.75)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    from expertlab.moe.summary import summarize

    summary = summarize(args.model_dir, args.ratio or [0.25, 0.5, 0.75])
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2))
        return 0
    s = summary
    layers = s.moe_layers
    shown = ", ".join(map(str, layers)) if len(layers) <= 12 else f"{layers[0]}..{layers[-1]}"
    print(f"{s.model_dir}: {s.family}")
    print(f"  MoE layers        {len(layers)} of {s.decoder_layers} decoder layers ({shown})")
    groups = f", {s.n_group} routing groups" if s.n_group > 1 else ""
    print(f"  routed experts    {s.num_experts} per layer, top-k {s.top_k}, {s.routing} routing{groups}")
    print(f"  shared experts    {s.shared_experts or 'none'}")
    share = s.routed_expert_parameters / s.parameters if s.parameters else 0.0
    print(f"  parameters        {s.parameters:,} ({s.routed_expert_parameters:,} in routed experts, {share:.1%})")
    for pruned in s.pruned:
        if pruned.parameters is None:
            print(f"  pruned {pruned.ratio:>5.3g}      refused: {pruned.refused}")
            continue
        change = pruned.parameters / s.parameters - 1 if s.parameters else 0.0
        print(
            f"  pruned {pruned.ratio:>5.3g}      {pruned.parameters:,} ({change:+.1%}), "
            f"{pruned.kept_per_layer} experts per layer kept, top-k {pruned.top_k}"
            + (" (reduced: needs select.allow_top_k_reduction)" if pruned.top_k < s.top_k else "")
        )
    return 0
