"""The `expertlab` command: one subcommand per stage module in `stages/`, plus study-level commands."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType

from expertlab import warm
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
    "dispatch": "stages.dispatch",
    "prepare": "stages.prepare",
    "prepare-tasks": "stages.prepare_tasks",
    "train-toy": "stages.train_toy",
    "calibrate": "stages.calibrate",
    "observe": "stages.observe",
    "record-activations": "stages.record_activations",
    "sample-experts": "stages.sample_experts",
    "explain-experts": "stages.explain_experts",
    "predict-experts": "stages.predict_experts",
    "select-experts": "stages.select_experts",
    "finetune": "stages.finetune",
    "select": "stages.select",
    "prune": "stages.prune",
    "quantize": "stages.quantize",
    "inspect": "stages.inspect",
    "generate": "stages.generate",
    "score": "stages.score",
    "judge": "stages.judge",
    "warm-verdicts": "stages.warm_verdicts",
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


# Failures the user can fix: the message names the file, key or sample, so one line says it all.
EXPECTED_ERRORS = (ExpertlabError, FileNotFoundError, ValueError, OSError)
TRACEBACK_DIR = Path(".expertlab") / "logs"


def _one_line(err: BaseException) -> str:
    message = err.args[0] if isinstance(err, KeyError) and err.args else err
    return str(message)


def _save_traceback(command: str, err: BaseException) -> Path:
    """The full traceback in a file of its own (under .expertlab/logs/, else the temp dir), for a bug report."""
    text = "".join(traceback.format_exception(err))
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    name = f"{command}-{stamp}-{os.getpid()}.txt"
    for directory in (TRACEBACK_DIR, Path(tempfile.gettempdir())):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / name).write_text(text)
            return directory / name
        except OSError:
            continue
    raise err


def main(argv: list[str] | None = None) -> int:
    """The console command: in a fork of `expertlab run`'s warm process when there is one, else here."""
    server = os.environ.get(warm.ENV_VAR)
    if argv is None and server:
        code = warm.run_warm(server, sys.argv[1:])
        if code is not None:
            return code
    return run_here(argv)


def run_here(argv: list[str] | None = None) -> int:
    """Parse and run one command in this process."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    args = build_parser().parse_args(argv)
    try:
        code = args.handler(args)
    except EXPECTED_ERRORS as err:
        print(f"expertlab {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"expertlab {args.command}: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130
    except Exception as err:  # a bug: one line here, the whole story in a file
        where = _save_traceback(args.command, err)
        summary = str(err).splitlines()[0][:300] if str(err).strip() else ""
        said = f"{type(err).__name__}: {summary}" if summary else type(err).__name__
        print(f"expertlab {args.command}: unexpected error ({said}); traceback written to {where}", file=sys.stderr)
        return 1
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
