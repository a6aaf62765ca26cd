"""Model dir + domain-labelled corpus -> DIR/windows.parquet, DIR/activations.parquet (routed entries) + DIR/meta.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from expertlab import layout
from stages.common import add_params_argument, load_optional_params, section

HELP = "record which experts the router selects on each window of a domain-labelled corpus (the second study)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="Hugging Face model directory")
    corpus = parser.add_mutually_exclusive_group(required=True)
    corpus.add_argument(
        "--corpus", nargs="+", metavar="DOMAIN=FILE.jsonl",
        help='the corpus by domain: lines {"text": ...} or {"messages": [...]}',
    )
    corpus.add_argument(
        "--calibration-sets", metavar="DIR",
        help="the study's calibration sets (data/calibration): monosemanticity.corpus's sets at monosemanticity.seed; needs --params",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--window", type=int, help="tokens per window (default: monosemanticity.window)")
    parser.add_argument(
        "--top-k", default="native", metavar="native|K",
        help="experts per token: native (the model's own, the default) or K, re-observing the model with top-k set "
        "to K in every MoE layer (a monosemanticity.top_k entry)",
    )  # fmt: skip
    parser.add_argument("--model", help="model name recorded in meta.json (default: the directory name)")
    add_params_argument(parser)


def corpus_files(args: argparse.Namespace, params) -> tuple[dict[str, Path], dict[str, str], int]:  # noqa: ANN001
    """(domain -> file, domain -> calibration set name, seed) from --corpus or the study's params."""
    if args.corpus:
        files = {}
        for entry in args.corpus:
            domain, sep, path = entry.partition("=")
            if not sep or not domain or not path:
                raise ValueError(f"--corpus: {entry!r} is not DOMAIN=FILE.jsonl")
            if domain in files:
                raise ValueError(f"--corpus: domain {domain!r} given twice")
            files[domain] = Path(path)
        return files, {domain: path.stem for domain, path in files.items()}, 0
    if params is None:
        raise ValueError("--calibration-sets needs --params (monosemanticity.corpus names the sets)")
    study = params.monosemanticity
    if not study.corpus:
        raise ValueError("monosemanticity.corpus names no calibration set")
    root = Path(args.calibration_sets)
    files = {domain: root / name / layout.calibration_set_name(study.seed) for domain, name in study.corpus.items()}
    return files, dict(study.corpus), study.seed


def top_k_setting(value: str) -> int | None:
    """--top-k's value: None for native, else a positive number of experts per token."""
    from expertlab.params import NATIVE

    if value == NATIVE:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"--top-k: {value!r} is neither {NATIVE!r} nor a positive number of experts per token")
    return int(value)


def run(args: argparse.Namespace) -> int:
    from expertlab.monosemanticity.activations import record_checkpoint

    params = load_optional_params(args)
    files, corpus, seed = corpus_files(args, params)
    from expertlab.params import Monosemanticity, default

    window = args.window or (params.monosemanticity.window if params else default(Monosemanticity, "window"))
    settings = section(params, "observe")
    run_fields = {"model": args.model or Path(args.model_dir).name, "seed": seed, "corpus": corpus}
    meta = record_checkpoint(args.model_dir, files, args.out, run_fields, window, settings, top_k_setting(args.top_k))
    routing = f"top-{meta.top_k}" + (" (its own)" if meta.top_k == meta.native_top_k else f" (re-observed; its own is top-{meta.native_top_k})")
    print(
        f"record-activations: {meta.documents} texts, {meta.windows} windows of {meta.window_tokens} tokens, "
        f"{len(meta.moe_layers)} MoE layers, {routing} -> {args.out}"
    )
    return 0
