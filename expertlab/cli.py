"""The `expertlab` command: one subcommand per stage module in `stages/`, plus study-level commands."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import ModuleType

from expertlab.errors import ExpertlabError

# Offline by design: no hub, no telemetry, no tokenizer thread pools on 2-core machines.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_UPDATE_DOWNLOAD_COUNTS": "0",
    "HF_EVALUATE_OFFLINE": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}

# command name -> module under stages/ exposing `HELP`, `add_arguments(parser)` and `run(args)`.
COMMANDS: dict[str, str] = {
    "check": "stages.check",
    "run": "stages.run",
    "prepare": "stages.prepare",
    "prepare-tasks": "stages.prepare_tasks",
    "train-toy": "stages.train_toy",
    "observe": "stages.observe",
    "select": "stages.select",
    "prune": "stages.prune",
    "quantize": "stages.quantize",
    "inspect": "stages.inspect",
    "generate": "stages.generate",
    "score": "stages.score",
    "judge": "stages.judge",
    "import-masks": "stages.import_masks",
    "import-judgments": "stages.import_judgments",
    "ingest": "stages.ingest",
    "report": "stages.report",
    "sql": "stages.sql",
}


def _load(module_name: str) -> ModuleType:
    return importlib.import_module(module_name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="expertlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = _load(module_name)
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    args = build_parser().parse_args(argv)
    try:
        code = args.handler(args)
    except (ExpertlabError, FileNotFoundError, ValueError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"expertlab {args.command}: error: {message}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
